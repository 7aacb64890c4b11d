"""Compile flags and the BLAS binding, in one place.

Every kernel module imports its decorator flags from here: ``@njit(**JIT)`` for serial code,
``@njit(**PJIT)`` for code with a ``prange``. Importing this module also binds numba to scipy's
OpenBLAS and limits that BLAS to one thread: kernels call sgemm from inside ``prange`` loops,
where a multithreaded BLAS oversubscribes the cores (measured 20x slower).
"""

import numba
import scipy.linalg.cython_blas  # noqa: F401  (loads the OpenBLAS that numba_xxgemm calls)
from numba import types
from numba.np.linalg import ensure_blas
from threadpoolctl import threadpool_limits

ensure_blas()
numba.get_num_threads()  # starts numba's thread pool, registering the symbol used below
BLAS_LIMIT = threadpool_limits(1, user_api="blas")

JIT = dict(cache=True, fastmath=False, nogil=True, error_model="numpy")
PJIT = dict(JIT, parallel=True)

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
