"""POOL: max / avg / sum pooling as a forward/backward pair over (sample, channel) planes.

`pool_forward(out, inp, ...)` and `pool_backward(dinp, dout, inp, ...)` work on planes [lo, hi)
of (planes, H, W) inputs and (planes, Ho, Wo) outputs; backward accumulates into dinp. A window
starts at o * stride - pad (pad: top/left) and takes `kernel` taps `dilation` apart, clipped to
the input (max ignores padding, as with torch's -inf padding); padding may differ after the input
(pad_end: bottom/right), which only the output size and avg's divisor see. The avg divisor is
torch's: the window clipped to [-pad, size + pad_end) with count_pad, else the number of real
elements. An adaptive pool's window i is PyTorch's [floor(i * size / out), ceil((i + 1) * size /
out)). Max backward recomputes the window and routes the gradient to the first maximum, so no
index buffer is needed. The row adapter gives each thread a chunk of planes.
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi
from cnnc.compiler.layers import POOL_MODES

from .common import U, chunk, inp, nchunks, out, parallel_chunks
from .config import JIT, RJIT

MAX, AVG, SUM = POOL_MODES["max"], POOL_MODES["avg"], POOL_MODES["sum"]
POOL_ROW = abi.int_offsets("POOL")


@njit(**JIT)
def _window(o, stride, pad, pad_end, k, d, size, n_out, adaptive):
    """Taps [lo, hi) step d of output o clipped to the input, and its extent clipped to
    [-pad, size + pad_end) (what count_pad divides by)."""
    if adaptive:
        lo, hi = o * size // n_out, -((-(o + 1) * size) // n_out)
        return lo, hi, hi - lo
    lo = o * stride - pad
    hi = min(lo + d * (k - 1) + 1, size + pad_end)
    padded = hi - lo
    if lo < 0:  # the first tap at or after 0
        lo += -(lo // d) * d
    return lo, min(hi, size), padded


@njit(**JIT)
def _divisor(mode, count_pad, hlo, hhi, hpad, wlo, whi, wpad):
    if mode == SUM:
        return 1.0
    if count_pad:
        return float(hpad * wpad)
    return float((hhi - hlo) * (whi - wlo))  # (avg pools are never dilated)


@njit(**JIT)
def _argmax(inp, x, W, hlo, hhi, dh, wlo, whi, dw):
    """Flat index (in the plane at x) of the first maximum of the window; NaN wins, as in torch."""
    best, m = hlo * W + wlo, -np.inf
    for h in range(hlo, hhi, dh):
        for w in range(wlo, whi, dw):
            v = inp[U(x + h * W + w)]
            if v > m or np.isnan(v):
                m, best = v, h * W + w
                if np.isnan(v):
                    return best
    return best


@njit(**JIT)
def _is_plain_max(mode, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, adaptive):
    """A max pool whose every window lies inside the input, taps adjacent: the fast loops."""
    if mode != MAX or adaptive or ph != 0 or pw != 0 or dh != 1 or dw != 1:
        return False
    return (Ho - 1) * sh + kh <= H and (Wo - 1) * sw + kw <= W


@njit(**JIT)
def _beats(m, v):
    """Whether v takes over from the running maximum m: larger, or the first NaN."""
    return (m == m) & ((v > m) | (v != v))


@njit(**JIT)
def _first_max(m, v):
    """max(m, v) keeping the earlier of equal values and the first NaN: _argmax's rule without
    a branch (random data mispredicts one: measured 2.4x slower here; in _argmax's general loop
    the branch-free form was 1.45x slower, so that loop keeps its own form)."""
    return v if _beats(m, v) else m


@njit(**JIT)
def _plain_max_forward(out, y, inp, x, W, Ho, Wo, kh, kw, sh, sw):
    """One plane of a plain max pool: the first maximum of each window, or its first NaN (as
    _argmax picks them). 2x2 windows, the common case, are unrolled (1.8x faster)."""
    for oh in range(Ho):
        for ow in range(Wo):
            s = x + oh * sh * W + ow * sw
            m = inp[U(s)]
            if kh == 2 and kw == 2:
                m = _first_max(m, inp[U(s + 1)])
                m = _first_max(m, inp[U(s + W)])
                m = _first_max(m, inp[U(s + W + 1)])
            else:
                for i in range(kh):
                    for j in range(kw):
                        m = _first_max(m, inp[U(s + i * W + j)])
            out[U(y + oh * Wo + ow)] = m


@njit(**JIT)
def _plain_max_backward_2x2(dinp, dout, inp, x, dy, W, Ho, Wo, sh, sw):
    """One plane of a plain 2x2 max pool's backward: the gradient goes to _argmax's tap (the
    first maximum, the first NaN), found without a branch, and every tap takes a write (of g or
    0), which keeps the loop free of the data-dependent branches that random data mispredicts:
    64x6x28x28 -> 14x14 at one thread 814-837 -> 625-656 us, the same bits (ties and NaNs)."""
    zero = np.float32(0.0)
    for oh in range(Ho):
        for ow in range(Wo):
            s = x + oh * sh * W + ow * sw
            a, b = inp[U(s)], inp[U(s + 1)]
            c, d = inp[U(s + W)], inp[U(s + W + 1)]
            tb = _beats(a, b)
            tc = _beats(b if tb else a, c)
            td = _beats(c if tc else (b if tb else a), d)
            g = dout[U(dy + oh * Wo + ow)]
            dinp[U(s)] += zero if tb | tc | td else g
            dinp[U(s + 1)] += g if tb & ~tc & ~td else zero
            dinp[U(s + W)] += g if tc & ~td else zero
            dinp[U(s + W + 1)] += g if td else zero


@njit(**RJIT)
def pool_forward(
    out, inp, H, W, Ho, Wo, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, mode,
    count_pad, pad_end_h, pad_end_w, dilation_h, dilation_w, adaptive, lo, hi,
):  # fmt: skip
    dh, dw = dilation_h, dilation_w
    kh, kw, sh, sw, ph, pw = kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w
    if _is_plain_max(mode, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, adaptive):
        for q in range(lo, hi):
            _plain_max_forward(out, q * Ho * Wo, inp, q * H * W, W, Ho, Wo, kh, kw, sh, sw)
        return
    for q in range(lo, hi):  # plane q = sample * C + channel
        x, y = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            hlo, hhi, hpad = _window(oh, stride_h, pad_h, pad_end_h, kernel_h, dh, H, Ho, adaptive)
            for ow in range(Wo):
                wlo, whi, wpad = _window(
                    ow, stride_w, pad_w, pad_end_w, kernel_w, dw, W, Wo, adaptive
                )
                if hlo >= hhi or wlo >= whi:
                    out[U(y + oh * Wo + ow)] = -np.inf if mode == MAX else 0.0
                elif mode == MAX:
                    k = _argmax(inp, x, W, hlo, hhi, dh, wlo, whi, dw)
                    out[U(y + oh * Wo + ow)] = inp[U(x + k)]
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
    count_pad, pad_end_h, pad_end_w, dilation_h, dilation_w, adaptive, lo, hi,
):  # fmt: skip
    dh, dw = dilation_h, dilation_w
    kh, kw, sh, sw, ph, pw = kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w
    if kh == 2 and kw == 2 and _is_plain_max(mode, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw,
                                             adaptive):  # fmt: skip
        for q in range(lo, hi):
            _plain_max_backward_2x2(dinp, dout, inp, q * H * W, q * Ho * Wo, W, Ho, Wo, sh, sw)
        return
    for q in range(lo, hi):
        x, dy = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            hlo, hhi, hpad = _window(oh, stride_h, pad_h, pad_end_h, kernel_h, dh, H, Ho, adaptive)
            for ow in range(Wo):
                wlo, whi, wpad = _window(
                    ow, stride_w, pad_w, pad_end_w, kernel_w, dw, W, Wo, adaptive
                )
                if hlo >= hhi or wlo >= whi:
                    continue
                g = dout[U(dy + oh * Wo + ow)]
                if mode == MAX:
                    dinp[U(x + _argmax(inp, x, W, hlo, hhi, dh, wlo, whi, dw))] += g
                else:
                    d = _divisor(mode, count_pad, hlo, hhi, hpad, wlo, whi, wpad)
                    g = np.float32(g / d)
                    for h in range(hlo, hhi):
                        for w in range(wlo, whi):
                            dinp[U(x + h * W + w)] += g


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _window_attrs(row):
    """(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, mode, count_pad, pad_end_h,
    pad_end_w, dilation_h, dilation_w, adaptive) of a POOL row."""
    return (
        row[POOL_ROW.kernel_h], row[POOL_ROW.kernel_w], row[POOL_ROW.stride_h],
        row[POOL_ROW.stride_w], row[POOL_ROW.pad_h], row[POOL_ROW.pad_w], row[POOL_ROW.mode],
        row[POOL_ROW.count_pad], row[POOL_ROW.pad_end_h], row[POOL_ROW.pad_end_w],
        row[POOL_ROW.dilation_h], row[POOL_ROW.dilation_w], row[POOL_ROW.adaptive],
    )  # fmt: skip


@njit(**JIT)
def _forward_chunk(c, nch, planes, out, inp, H, W, Ho, Wo, row):
    lo, hi = chunk(c, nch, planes)
    pool_forward(out, inp, H, W, Ho, Wo, *_window_attrs(row), lo, hi)


@njit(**JIT)
def _backward_chunk(c, nch, planes, dinp, dout, inp, H, W, Ho, Wo, row):
    lo, hi = chunk(c, nch, planes)
    pool_backward(dinp, dout, inp, H, W, Ho, Wo, *_window_attrs(row), lo, hi)


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
