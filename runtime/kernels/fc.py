"""FC: y = x W^T + b on the input flattened to (n, I); one sgemm per thread block.

The pair works on plain float32 arrays: `fc_forward(out, inp, weight, bias, B, I, F, part,
parts, by_rows)` and `fc_backward(dinp, dweight, dbias, dout, inp, weight, B, I, F, part, parts,
dinp_by_rows)` do block `part` of `parts` ((0, 1): all of it), each block owning what it writes.
An empty `bias` (`dbias`) means no bias, an empty `dinp` that nobody needs the input's gradient.

Forward splits the batch into one block per thread (or the output features, when n is smaller
than the thread count); backward gives each block a slice of the input features, for which it
computes dW[:, slice] += dy^T x[:, slice] and (for small n) dx[:, slice] += dy W[:, slice], or
the batch rows dx[rows] += dy[rows] W when n is large, and a slice of the features for db.
"""

from numba import njit

from cnnc.compiler import abi

from . import common
from .common import BETA0, BETA1, NOTR, TR, chunk, inp, nchunks, sgemm
from .config import JIT

FC_ROW = abi.int_offsets("FC")


@njit(**JIT)
def fc_forward(out, inp, weight, bias, B, I, F, part, parts, by_rows):
    """out (B, F) = inp (B, I) @ weight (F, I)^T + bias (F,), for block `part` of `parts`: a
    block of the batch rows when by_rows, else of the features."""
    if by_rows:
        r0, r1 = chunk(part, parts, B)
        f0, f1 = 0, F
    else:
        r0, r1 = 0, B
        f0, f1 = chunk(part, parts, F)
    x, y, w = inp.ctypes.data, out.ctypes.data, weight.ctypes.data
    xr, wf, yb = x + 4 * r0 * I, w + 4 * f0 * I, y + 4 * (r0 * F + f0)
    sgemm(NOTR, TR, r1 - r0, f1 - f0, I, xr, I, wf, I, yb, F, BETA0)
    if bias.size > 0:
        for r in range(r0, r1):
            yr = r * F
            for f in range(f0, f1):
                out[yr + f] += bias[f]


@njit(**JIT)
def fc_backward(dinp, dweight, dbias, dout, inp, weight, B, I, F, part, parts, dinp_by_rows):
    """Block `part` of `parts`, for its share of the input features: dweight[:, share] +=
    dout^T inp[:, share]; dinp += dout weight over its share of the batch rows (dinp_by_rows)
    or of the input features; dbias += the batch sum of dout over its share of the features."""
    x, dx, dy = inp.ctypes.data, dinp.ctypes.data, dout.ctypes.data
    w, gw = weight.ctypes.data, dweight.ctypes.data
    i0, i1 = chunk(part, parts, I)
    sgemm(TR, NOTR, F, i1 - i0, B, dy, F, x + 4 * i0, I, gw + 4 * i0, I, BETA1)  # dW += dy^T x
    if dinp.size > 0:
        if dinp_by_rows:
            r0, r1 = chunk(part, parts, B)
            sgemm(NOTR, NOTR, r1 - r0, I, F, dy + 4 * r0 * F, F, w, I, dx + 4 * r0 * I, I, BETA1)
        else:
            sgemm(NOTR, NOTR, B, i1 - i0, F, dy, F, w + 4 * i0, I, dx + 4 * i0, I, BETA1)
    if dbias.size > 0:
        f0, f1 = chunk(part, parts, F)
        for r in range(B):
            for f in range(f0, f1):
                dbias[f] += dout[r * F + f]


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _forward_chunk(c, nch, y, x, w, b, n, I, F, by_rows):
    fc_forward(y, x, w, b, n, I, F, c, nch, by_rows)


@njit(**JIT)
def _backward_chunk(c, nch, dx, dw, db, dy, x, w, n, I, F, dx_by_rows):
    fc_backward(dx, dw, db, dy, x, w, n, I, F, c, nch, dx_by_rows)


_forward_chunks = common.parallel_chunks("fc_forward_chunks", _forward_chunk)
_backward_chunks = common.parallel_chunks("fc_backward_chunks", _backward_chunk)


@njit(**JIT)
def fc_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    """Blocks of the batch, one per thread (blocks of the features when n < threads)."""
    xo, _, C, H, Wd = inp(row, 0)
    I, F, yo, wo = C * H * Wd, row[abi.OC], row[abi.OUT], row[abi.PARAM]
    nb = F if row[FC_ROW.bias] else 0
    nt = nchunks(n * I * F, max(n, F))
    by_rows = n >= nt
    nch = min(nt, n) if by_rows else min(nt, F)
    x, y, m = xo * n, yo * n, F * I
    args = (A[y : y + n * F], A[x : x + n * I], P[wo : wo + m], P[wo + m : wo + m + nb])
    _forward_chunks(nch, (*args, n, I, F, by_rows))


@njit(**JIT)
def fc_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    """Blocks of the input features, one per thread (see fc_backward)."""
    xo, dxo, C, H, Wd = inp(row, 0)
    I, F, dyo, wo = C * H * Wd, row[abi.OC], row[abi.DOUT], row[abi.PARAM]
    nb = F if row[FC_ROW.bias] else 0
    nch = nchunks(2 * n * I * F, I)
    x, dx, dy, m = xo * n, dxo * n, dyo * n, F * I
    dinp = A[dx : dx + n * I] if dxo >= 0 else A[:0]
    grads = (dinp, G[wo : wo + m], G[wo + m : wo + m + nb], A[dy : dy + n * F])
    _backward_chunks(nch, (*grads, A[x : x + n * I], P[wo : wo + m], n, I, F, n >= nch))


FC = fc_row_forward, fc_row_backward
