"""Compile flags, the BLAS binding and numba's cache folder, in one place.

Every kernel module imports its decorator flags from here: ``@njit(**JIT)`` for serial code,
``@njit(**PJIT)`` for code with a ``prange``, ``@njit(**RJIT)`` for loops that sum into one
accumulator (see below). Importing this module also binds numba to scipy's OpenBLAS and limits
that BLAS to one thread: kernels call sgemm from inside ``prange`` loops, where a multithreaded
BLAS oversubscribes the cores (measured 20x slower).

LLVM optimises at -O2 (see below). Compiled kernels are cached in a folder named by a digest of
the kernel sources and the row ABI: numba checks only the timestamp of a function's own file, so a
cached executor or kernel would otherwise outlive a change to a kernel it calls, to a kind's row
layout or to the kind order.
"""

import hashlib
import os
from pathlib import Path

import numba
import scipy.linalg.cython_blas  # noqa: F401  (loads the OpenBLAS that numba_xxgemm calls)
from numba import types
from numba.np.linalg import ensure_blas
from threadpoolctl import threadpool_limits

from cnnc.compiler import abi

# LLVM at -O2 rather than numba's default -O3 (NUMBA_OPT, if set, still decides): measured
# 2026-12-03, the same step times (LeNet-5 at batch 1 and 64, the CIFAR net, the ResNet, the
# MobileNet-style net, the U-Net, within the machine's noise) for a fifth less compile time
# (LeNet-5's kernels in one process 22.7 -> 18.2 s). The kernels' hot loops vectorise at -O2.
if "NUMBA_OPT" not in os.environ:
    numba.config.OPT = numba.core.config._OptLevel(2)


def _kernel_digest() -> str:
    runtime = Path(__file__).resolve().parent.parent
    sources = sorted(runtime.glob("kernels/*.py")) + [runtime / "executor.py", runtime / "table.py"]
    compiler = Path(abi.__file__).resolve().parent
    sources += [compiler / "abi.py", compiler / "layers.py"]
    digest = hashlib.sha256(f"opt {numba.config.OPT}".encode())  # not in numba's own key
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def _cache_root() -> Path:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnc" / "numba"


numba.config.CACHE_DIR = str(_cache_root() / _kernel_digest())

ensure_blas()
numba.get_num_threads()  # starts numba's thread pool, registering the symbol used below
BLAS_LIMIT = threadpool_limits(1, user_api="blas")

JIT = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")
PJIT = dict(JIT, parallel=True)
# For loops that sum into one accumulator: without leave to reassociate the additions LLVM keeps
# them one chain, a floating-point add's latency (4 cycles) per element, and cannot vectorise
# them. With it the sum runs in vector lanes, in an order fixed at compile time (deterministic,
# but not the sequential order). No other fast-math flag: NaN and infinity still propagate.
RJIT = dict(JIT, fastmath={"reassoc", "contract"})

# Below this many (roughly) flops a kernel runs on the calling thread. A parallel region costs
# ~2 us on idle cores but milliseconds when another process holds one of them (the region waits
# for a descheduled thread): measured LeNet-5 inference at batch 1 went from 3.45 ms to 0.08 ms.
SERIAL_WORK = 1 << 20

_sig = types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp,
    types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
)  # fmt: skip
# Column-major ?gemm of the BLAS numba itself uses (scipy's OpenBLAS); cacheable.
xxgemm = types.ExternalFunction("numba_xxgemm", _sig)

# numba.get_num_threads() inside njit goes through a ctypes pointer, which blocks caching;
# the threading layer's own C symbol does not.
num_threads = types.ExternalFunction("get_num_threads", types.intc())
