"""Helpers shared by the kernels: row accessors, work splitting, a row-major sgemm, and
`specialise`, which makes one kind's row adapter or chunk runner from a shared template."""

import types

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .config import JIT, PJIT, SERIAL_WORK, num_threads, xxgemm

# Hot loops index with U(i): numba checks every signed index for wraparound (i < 0 means
# i + len), which blocks vectorisation; an unsigned index skips the check. U reinterprets a
# valid (non-negative) int64 index for free.
U = np.uint64

NOTR, TR = np.int64(ord("n")), np.int64(ord("t"))  # numpy scalars: not typed as literals
BETA0, BETA1 = np.bool_(False), np.bool_(True)  # sgemm overwrites C / accumulates into C
_CONST = np.array([0.0, 1.0], np.float32)  # [beta = 0, alpha = beta = 1]


@njit(**JIT)
def sgemm(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, acc):
    """Row-major C[m, n] (+)= op(A)[m, k] @ op(B)[k, n] on float32 pointers (ints).

    ``ta``/``tb`` are NOTR or TR; lda/ldb/ldc are the row strides of the stored matrices;
    ``acc`` selects beta = 1 (accumulate) over beta = 0 (overwrite). Implemented as the
    column-major product C^T = op(B)^T op(A)^T.
    """
    if m <= 0 or n <= 0:
        return
    base = _CONST.ctypes.data
    xxgemm(ord("s"), tb, ta, n, m, k, base + 4, b, ldb, a, lda, base + 4 if acc else base, c, ldc)


@njit(**JIT)
def nchunks(work, items):
    """How many parallel chunks to cut `items` independent items into, for `work` flops."""
    if work < SERIAL_WORK or items < 2:
        return 1
    return min(items, np.int64(num_threads()))


@njit(**JIT)
def chunk(c, nch, items):
    """Bounds of chunk c of nch over range(items)."""
    return c * items // nch, (c + 1) * items // nch


@njit(**JIT)
def inp(row, j):
    """(offset, grad offset, C, H, W) of input j."""
    b = abi.IN + abi.IN_STRIDE * j
    return (
        row[b + abi.IN_OFF],
        row[b + abi.IN_DOFF],
        row[b + abi.IN_C],
        row[b + abi.IN_H],
        row[b + abi.IN_W],
    )


@njit(**JIT)
def out(row):
    """(offset, grad offset, C, H, W) of the output."""
    return row[abi.OUT], row[abi.DOUT], row[abi.OC], row[abi.OH], row[abi.OW]


def specialise(template, name: str, flags: dict = JIT, **bindings):
    """`template` compiled with its free names bound to `bindings`, under its own name.

    One template serves several kinds (an elementwise adapter, a chunk runner) without a family
    kernel that switches on the kind. Not a closure: numba keys a closure's cache entry by the
    pickled cell contents, and a pickled dispatcher carries a fresh uuid per process, so a closure
    over a kernel would never load from the cache. A function with its own globals and qualname
    caches under that name.
    """
    function = types.FunctionType(template.__code__, {**template.__globals__, **bindings}, name)
    function.__qualname__ = function.__name__ = name
    function.__module__ = template.__module__
    function.__doc__ = template.__doc__
    return njit(**flags)(function)


def _run_chunks(nch, args):
    if nch == 1:
        body(np.int64(0), nch, *args)  # noqa: F821 - bound by specialise
    else:
        for c in prange(nch):
            body(np.int64(c), nch, *args)  # noqa: F821


def parallel_chunks(name: str, body):
    """run(nch, args) calls body(c, nch, *args) for each chunk c of nch: on the calling thread
    when nch is 1 (see nchunks: small work stays serial), else one chunk per thread."""
    return specialise(_run_chunks, name, PJIT, body=body)
