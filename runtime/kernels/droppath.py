"""DROPPATH (stochastic depth, torchvision's StochasticDepth(p, "row")) as a forward/backward pair.

While training, each sample's whole tensor is zeroed with probability `rate` and the survivors
are scaled by 1/(1 - rate); at inference it is the identity. Sample s is kept when
u = uniform(seed, s) >= rate, DROPOUT's counter-based draw with the sample as the counter: the
same seed gives the same samples whatever the thread count, and backward (called with the
forward's seed) redraws the mask instead of keeping a buffer. The pair takes samples [lo, hi)
of (N, m) arrays.
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks, parallel_chunks
from .config import JIT
from .misc import _GOLDEN, _mix, uniform

DROPPATH_FLOAT = abi.float_offsets("DROPPATH")


@njit(**JIT)
def sample_scale(seed, s, rate):
    """The factor of sample s in a training pass with this seed: 0 or 1/(1 - rate)."""
    if uniform(_mix(np.uint64(seed) ^ _GOLDEN), s) >= rate:
        return np.float32(1.0 / (1.0 - rate))
    return np.float32(0.0)


@njit(**JIT)
def droppath_forward(out, inp, m, rate, seed, training, lo, hi):
    for s in range(lo, hi):
        k = sample_scale(seed, s, rate) if training else np.float32(1.0)
        for i in range(s * m, (s + 1) * m):
            out[U(i)] = inp[U(i)] * k


@njit(**JIT)
def droppath_backward(dinp, dout, m, rate, seed, training, lo, hi):
    for s in range(lo, hi):
        k = sample_scale(seed, s, rate) if training else np.float32(1.0)
        if k != 0.0:
            for i in range(s * m, (s + 1) * m):
                dinp[U(i)] += dout[U(i)] * k


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _forward_chunk(c, nch, n, out, x, m, rate, seed, training):
    lo, hi = chunk(c, nch, n)
    droppath_forward(out, x, m, rate, seed, training, lo, hi)


@njit(**JIT)
def _backward_chunk(c, nch, n, dx, dy, m, rate, seed, training):
    lo, hi = chunk(c, nch, n)
    droppath_backward(dx, dy, m, rate, seed, training, lo, hi)


_forward_chunks = parallel_chunks("droppath_forward_chunks", _forward_chunk)
_backward_chunks = parallel_chunks("droppath_backward_chunks", _backward_chunk)


@njit(**JIT)
def droppath_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    m, y = C * H * Wd, row[abi.OUT] * n
    args = (A[y : y + n * m], A[x * n : (x + m) * n], m, frow[DROPPATH_FLOAT.rate], seed, training)
    _forward_chunks(nchunks(n * m, n), (n, *args))


@njit(**JIT)
def droppath_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    m, dy = C * H * Wd, row[abi.DOUT] * n
    args = (A[dx * n : (dx + m) * n], A[dy : dy + n * m], m, frow[DROPPATH_FLOAT.rate], seed)
    _backward_chunks(nchunks(n * m, n), (n, *args, training))


DROPPATH = droppath_row_forward, droppath_row_backward
