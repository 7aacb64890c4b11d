"""FC: y = x W^T + b on the input flattened to (n, I); one sgemm per thread block.

Forward splits the batch into one block per thread (or the output features, when n is smaller
than the thread count); backward gives each block a slice of the input features, for which it
computes dW[:, slice] += dy^T x[:, slice] and (for small n) dx[:, slice] += dy W[:, slice], or
the batch rows dx[rows] += dy[rows] W when n is large.
"""

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .common import BETA0, BETA1, NOTR, TR, chunk, inp, nchunks, out, sgemm
from .config import JIT, PJIT


@njit(**JIT)
def _dims(row):
    xo, dxo, C, H, W = inp(row, 0)
    yo, dyo, F, _, _ = out(row)
    return xo, dxo, yo, dyo, C * H * W, F, row[abi.PARAM], row[abi.ATTR] != 0


@njit(**JIT)
def _fwd(A, P, row, n, c, nch, by_batch):
    xo, _, yo, _, I, F, wo, has_bias = _dims(row)
    x, y = A.ctypes.data + 4 * xo * n, A.ctypes.data + 4 * yo * n
    w = P.ctypes.data + 4 * wo
    if by_batch:
        r0, r1 = chunk(c, nch, n)
        f0, f1 = 0, F
    else:
        r0, r1 = 0, n
        f0, f1 = chunk(c, nch, F)
    xr, wf, yb = x + 4 * r0 * I, w + 4 * f0 * I, y + 4 * (r0 * F + f0)
    sgemm(NOTR, TR, r1 - r0, f1 - f0, I, xr, I, wf, I, yb, F, BETA0)
    if has_bias:
        b = wo + F * I
        for r in range(r0, r1):
            yr = yo * n + r * F
            for f in range(f0, f1):
                A[yr + f] += P[b + f]


@njit(**JIT)
def _bwd(A, P, G, row, n, c, nch, dx_by_batch):
    xo, dxo, _, dyo, I, F, wo, _ = _dims(row)
    pA = A.ctypes.data
    x, dx, dy = pA + 4 * xo * n, pA + 4 * dxo * n, pA + 4 * dyo * n
    w, gw = P.ctypes.data + 4 * wo, G.ctypes.data + 4 * wo
    i0, i1 = chunk(c, nch, I)
    sgemm(TR, NOTR, F, i1 - i0, n, dy, F, x + 4 * i0, I, gw + 4 * i0, I, BETA1)  # dW += dy^T x
    if dxo < 0:
        return
    if dx_by_batch:
        r0, r1 = chunk(c, nch, n)
        sgemm(NOTR, NOTR, r1 - r0, I, F, dy + 4 * r0 * F, F, w, I, dx + 4 * r0 * I, I, BETA1)
    else:
        sgemm(NOTR, NOTR, n, i1 - i0, F, dy, F, w + 4 * i0, I, dx + 4 * i0, I, BETA1)


@njit(**PJIT)
def forward(A, P, G, S, W, row, frow, n, training, seed):
    """Blocks of the batch, one per thread (blocks of the features when n < threads)."""
    I, F = row[abi.IN + abi.IN_C] * row[abi.IN + abi.IN_H] * row[abi.IN + abi.IN_W], row[abi.OC]
    nt = nchunks(n * I * F, max(n, F))
    by_batch = n >= nt
    nch = min(nt, n) if by_batch else min(nt, F)
    if nch == 1:
        _fwd(A, P, row, n, np.int64(0), nch, by_batch)
    else:
        for c in prange(nch):
            _fwd(A, P, row, n, np.int64(c), nch, by_batch)


@njit(**PJIT)
def backward(A, P, G, S, W, row, frow, n, training, seed):
    """Blocks of the input features, one per thread: dW[:, block] and dx (see _bwd)."""
    I, F = row[abi.IN + abi.IN_C] * row[abi.IN + abi.IN_H] * row[abi.IN + abi.IN_W], row[abi.OC]
    nch = nchunks(2 * n * I * F, I)
    if nch == 1:
        _bwd(A, P, G, row, n, np.int64(0), nch, n >= nch)
    else:
        for c in prange(nch):
            _bwd(A, P, G, row, n, np.int64(c), nch, n >= nch)
    if row[abi.ATTR]:
        dy, b = row[abi.DOUT] * n, row[abi.PARAM] + F * I
        for r in range(n):
            for f in range(F):
                G[b + f] += A[dy + r * F + f]


fc_forward, fc_backward = forward, backward
