"""POOL: max / avg / sum pooling as a forward/backward pair over (sample, channel) planes.

`pool_forward(out, inp, ...)` and `pool_backward(dinp, dout, inp, ...)` work on planes [lo, hi)
of (planes, H, W) inputs and (planes, Ho, Wo) outputs; backward accumulates into dinp. Windows
are clipped to the input (max ignores padding, as with torch's -inf padding); the avg divisor is
torch's: the window clipped to [-pad, size + pad) with count_pad, else the number of real
elements. Max backward recomputes the window and routes the gradient to the first maximum, so no
index buffer is needed. The row adapter gives each thread a chunk of planes.
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi
from cnnc.compiler.layers import POOL_MODES

from .common import U, chunk, inp, nchunks, out, parallel_chunks
from .config import JIT

MAX, AVG, SUM = POOL_MODES["max"], POOL_MODES["avg"], POOL_MODES["sum"]
POOL_ROW = abi.int_offsets("POOL")


@njit(**JIT)
def _window(o, stride, pad, k, size):
    """Clipped window [lo, hi) of output o, and its extent clipped to [-pad, size + pad)."""
    lo = o * stride - pad
    hi = min(lo + k, size + pad)
    padded = hi - lo
    return max(lo, 0), min(hi, size), padded


@njit(**JIT)
def _divisor(mode, count_pad, hlo, hhi, hpad, wlo, whi, wpad):
    if mode == SUM:
        return 1.0
    if count_pad:
        return float(hpad * wpad)
    return float((hhi - hlo) * (whi - wlo))


@njit(**JIT)
def _argmax(inp, x, W, hlo, hhi, wlo, whi):
    """Flat index (in the plane at x) of the first maximum of the window; NaN wins, as in torch."""
    best, m = hlo * W + wlo, -np.inf
    for h in range(hlo, hhi):
        for w in range(wlo, whi):
            v = inp[U(x + h * W + w)]
            if v > m or np.isnan(v):
                m, best = v, h * W + w
                if np.isnan(v):
                    return best
    return best


@njit(**JIT)
def pool_forward(
    out, inp, H, W, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, mode,
    count_pad, lo, hi,
):  # fmt: skip
    for q in range(lo, hi):  # plane q = sample * C + channel
        x, y = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            hlo, hhi, hpad = _window(oh, stride_h, pad_h, kernel_h, H)
            for ow in range(Wo):
                wlo, whi, wpad = _window(ow, stride_w, pad_w, kernel_w, W)
                if hlo >= hhi or wlo >= whi:
                    out[U(y + oh * Wo + ow)] = -np.inf if mode == MAX else 0.0
                elif mode == MAX:
                    out[U(y + oh * Wo + ow)] = inp[U(x + _argmax(inp, x, W, hlo, hhi, wlo, whi))]
                else:
                    s = 0.0
                    for h in range(hlo, hhi):
                        for w in range(wlo, whi):
                            s += inp[U(x + h * W + w)]
                    d = _divisor(mode, count_pad, hlo, hhi, hpad, wlo, whi, wpad)
                    out[U(y + oh * Wo + ow)] = s / d


@njit(**JIT)
def pool_backward(
    dinp, dout, inp, H, W, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, mode,
    count_pad, lo, hi,
):  # fmt: skip
    for q in range(lo, hi):
        x, dy = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            hlo, hhi, hpad = _window(oh, stride_h, pad_h, kernel_h, H)
            for ow in range(Wo):
                wlo, whi, wpad = _window(ow, stride_w, pad_w, kernel_w, W)
                if hlo >= hhi or wlo >= whi:
                    continue
                g = dout[U(dy + oh * Wo + ow)]
                if mode == MAX:
                    dinp[U(x + _argmax(inp, x, W, hlo, hhi, wlo, whi))] += g
                else:
                    d = _divisor(mode, count_pad, hlo, hhi, hpad, wlo, whi, wpad)
                    g = np.float32(g / d)
                    for h in range(hlo, hhi):
                        for w in range(wlo, whi):
                            dinp[U(x + h * W + w)] += g


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _window_attrs(row):
    """(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, mode, count_pad) of a POOL row."""
    return (
        row[POOL_ROW.kernel_h], row[POOL_ROW.kernel_w], row[POOL_ROW.stride_h],
        row[POOL_ROW.stride_w], row[POOL_ROW.pad_h], row[POOL_ROW.pad_w], row[POOL_ROW.mode],
        row[POOL_ROW.count_pad],
    )  # fmt: skip


@njit(**JIT)
def _forward_chunk(c, nch, planes, out, inp, H, W, Ho, Wo, row):
    lo, hi = chunk(c, nch, planes)
    kh, kw, sh, sw, ph, pw, mode, count_pad = _window_attrs(row)
    pool_forward(out, inp, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, mode, count_pad, lo, hi)


@njit(**JIT)
def _backward_chunk(c, nch, planes, dinp, dout, inp, H, W, Ho, Wo, row):
    lo, hi = chunk(c, nch, planes)
    kh, kw, sh, sw, ph, pw, mode, count_pad = _window_attrs(row)
    pool_backward(dinp, dout, inp, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, mode, count_pad, lo, hi)


_forward_chunks = parallel_chunks("pool_forward_chunks", _forward_chunk)
_backward_chunks = parallel_chunks("pool_backward_chunks", _backward_chunk)


@njit(**JIT)
def pool_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    y, _, _, Ho, Wo = out(row)
    planes = n * C
    work = planes * Ho * Wo * row[POOL_ROW.kernel_h] * row[POOL_ROW.kernel_w]
    xs, ys = A[x * n : (x + C * H * Wd) * n], A[y * n : (y + C * Ho * Wo) * n]
    _forward_chunks(nchunks(work, planes), (planes, ys, xs, H, Wd, Ho, Wo, row))


@njit(**JIT)
def pool_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    x, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    _, dy, _, Ho, Wo = out(row)
    planes = n * C
    work = planes * Ho * Wo * row[POOL_ROW.kernel_h] * row[POOL_ROW.kernel_w]
    m, mo = C * H * Wd * n, C * Ho * Wo * n
    dxs, dys, xs = A[dx * n : dx * n + m], A[dy * n : dy * n + mo], A[x * n : x * n + m]
    args = (planes, dxs, dys, xs, H, Wd, Ho, Wo, row)
    _backward_chunks(nchunks(work, planes), args)


POOL = pool_row_forward, pool_row_backward
