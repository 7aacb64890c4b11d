"""FLATTEN, DROPOUT, UPSAMPLE, ADD and CONCAT: data movement as forward/backward pairs.

Each pair works on plain float32 arrays; backward accumulates into the input gradients. The row
adapters cut the work into one chunk per thread: elements (FLATTEN, DROPOUT, ADD), planes
(UPSAMPLE) or samples (CONCAT).

ADD and CONCAT take any number of inputs, so their pairs work on a branch or two and the adapter
calls them in input order: `add_forward(out, a, b)` writes the sum of the first two branches
(further ones are accumulated into out), `add_backward(dinp, dout)` gives one branch its
gradient, `concat_forward(out, inp, ...)` / `concat_backward(dinp, dout, ...)` move one branch's
channel range. A branch whose gradient offset is -1 gets no gradient.

UPSAMPLE bilinear is PyTorch's: output pixel o reads input coordinate src = (o + 0.5) * H / Ho -
0.5 clamped at 0 (align_corners: o * (H - 1) / (Ho - 1)), between rows floor(src) and the next,
weighted by the distance; backward scatters each output gradient to the same four taps. The
scale comes from the sizes, so a second input (`UPSAMPLE(y, x)`, x giving the size) is read by
nobody and gets no gradient.

DROPOUT draws u = hash(seed, flat index) in [0, 1) (splitmix64, counter-based: the same seed
gives the same mask whatever the thread count) and keeps an element when u >= rate; the mask
(0 or 1/(1-rate)) is stored in the AUX buffer for backward. Inference is a copy.
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi
from cnnc.compiler.layers import UPSAMPLE_MODES

from .common import U, chunk, inp, nchunks, parallel_chunks
from .config import JIT

DROPOUT_FLOAT = abi.float_offsets("DROPOUT")
UPSAMPLE_ROW = abi.int_offsets("UPSAMPLE")
BILINEAR = UPSAMPLE_MODES["bilinear"]


@njit(**JIT)
def _copy(dst, src):
    for i in range(dst.size):  # (a loop: slice assignment drags in costly-to-compile checks)
        dst[U(i)] = src[U(i)]


@njit(**JIT)
def _acc(dst, src):
    for i in range(dst.size):
        dst[U(i)] += src[U(i)]


# ------------------------------------------------------------------------------------- FLATTEN
@njit(**JIT)
def flatten_forward(out, inp):
    _copy(out, inp)


@njit(**JIT)
def flatten_backward(dinp, dout):
    _acc(dinp, dout)


# ------------------------------------------------------------------------------------- DROPOUT
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


@njit(**JIT)
def _mix(z):
    """splitmix64 finaliser (a bijection on uint64)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**JIT)
def uniform(key, i):
    """u in [0, 1) with 24 random bits, from a mixed seed `key` and a counter i."""
    return np.float64(_mix(key + np.uint64(i) * _GOLDEN) >> _S40) * (1.0 / 16777216.0)


@njit(**JIT)
def dropout_forward(out, mask, inp, rate, seed, training, lo, hi):
    """Elements [lo, hi): out = inp * mask, the mask drawn from (seed, element index); inference
    copies and leaves the mask alone."""
    if not training:
        _copy(out[lo:hi], inp[lo:hi])
        return
    zero = np.float32(0.0)
    scale = np.float32(1.0 / (1.0 - rate)) if rate < 1.0 else zero
    key = _mix(np.uint64(seed) ^ _GOLDEN)
    for i in range(lo, hi):
        m = scale if uniform(key, i) >= rate else zero
        mask[U(i)] = m
        out[U(i)] = inp[U(i)] * m


@njit(**JIT)
def dropout_backward(dinp, dout, mask, training, lo, hi):
    if not training:
        _acc(dinp[lo:hi], dout[lo:hi])
        return
    for i in range(lo, hi):
        dinp[U(i)] += dout[U(i)] * mask[U(i)]


# ------------------------------------------------------------------------------------ UPSAMPLE
@njit(**JIT)
def upsample_forward(out, inp, H, W, Ho, Wo, scale_h, scale_w, lo, hi):
    """Nearest-neighbour upsampling of planes [lo, hi) of (planes, H, W) into (planes, Ho, Wo)."""
    for q in range(lo, hi):  # plane q = sample * C + channel
        x, y = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            xr, yr = x + (oh // scale_h) * W, y + oh * Wo
            w, k = 0, 0
            for ow in range(Wo):  # w = ow // scale_w, counted
                out[U(yr + ow)] = inp[U(xr + w)]
                k += 1
                if k == scale_w:
                    w, k = w + 1, 0


@njit(**JIT)
def upsample_backward(dinp, dout, H, W, Ho, Wo, scale_h, scale_w, lo, hi):
    for q in range(lo, hi):
        dx, dy = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            xr, yr = dx + (oh // scale_h) * W, dy + oh * Wo
            w, k = 0, 0
            for ow in range(Wo):
                dinp[U(xr + w)] += dout[U(yr + ow)]
                k += 1
                if k == scale_w:
                    w, k = w + 1, 0


@njit(**JIT)
def _bilinear_tap(o, size, n_out, align_corners):
    """(first tap, second tap, weight of the second) of output o along one axis, as torch."""
    if align_corners:
        src = o * (size - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        src = max((o + 0.5) * size / n_out - 0.5, 0.0)
    i0 = min(int(src), size - 1)
    i1 = i0 + 1 if i0 < size - 1 else i0
    return i0, i1, src - i0


@njit(**JIT)
def bilinear_forward(out, inp, H, W, Ho, Wo, align_corners, lo, hi):
    """Bilinear resize of planes [lo, hi) of (planes, H, W) into (planes, Ho, Wo)."""
    for q in range(lo, hi):
        x, y = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            h0, h1, lh = _bilinear_tap(oh, H, Ho, align_corners)
            r0, r1 = x + h0 * W, x + h1 * W
            for ow in range(Wo):
                w0, w1, lw = _bilinear_tap(ow, W, Wo, align_corners)
                top = (1.0 - lw) * inp[U(r0 + w0)] + lw * inp[U(r0 + w1)]
                bottom = (1.0 - lw) * inp[U(r1 + w0)] + lw * inp[U(r1 + w1)]
                out[U(y + oh * Wo + ow)] = (1.0 - lh) * top + lh * bottom


@njit(**JIT)
def bilinear_backward(dinp, dout, H, W, Ho, Wo, align_corners, lo, hi):
    for q in range(lo, hi):
        dx, dy = q * H * W, q * Ho * Wo
        for oh in range(Ho):
            h0, h1, lh = _bilinear_tap(oh, H, Ho, align_corners)
            r0, r1 = dx + h0 * W, dx + h1 * W
            for ow in range(Wo):
                w0, w1, lw = _bilinear_tap(ow, W, Wo, align_corners)
                g = dout[U(dy + oh * Wo + ow)]
                dinp[U(r0 + w0)] += np.float32((1.0 - lh) * (1.0 - lw) * g)
                dinp[U(r0 + w1)] += np.float32((1.0 - lh) * lw * g)
                dinp[U(r1 + w0)] += np.float32(lh * (1.0 - lw) * g)
                dinp[U(r1 + w1)] += np.float32(lh * lw * g)


# -------------------------------------------------------------------------------- ADD, CONCAT
@njit(**JIT)
def add_forward(out, a, b):
    """out = a + b (out may be a, but then only an accumulating loop vectorises)."""
    for i in range(out.size):
        out[U(i)] = a[U(i)] + b[U(i)]


@njit(**JIT)
def add_backward(dinp, dout):
    """One branch's gradient: dinp += dout."""
    _acc(dinp, dout)


@njit(**JIT)
def concat_forward(out, inp, C_out, c0, C, HW, lo, hi):
    """Samples [lo, hi): copy the (N, C, HW) branch into channels [c0, c0 + C) of out."""
    m = C * HW
    for s in range(lo, hi):
        y = (s * C_out + c0) * HW
        _copy(out[y : y + m], inp[s * m : (s + 1) * m])


@njit(**JIT)
def concat_backward(dinp, dout, C_out, c0, C, HW, lo, hi):
    """Samples [lo, hi): add channels [c0, c0 + C) of dout into the branch's gradient."""
    m = C * HW
    for s in range(lo, hi):
        y = (s * C_out + c0) * HW
        _acc(dinp[s * m : (s + 1) * m], dout[y : y + m])


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _size(row):
    """n-independent element count of input 0 (every input of an ADD)."""
    _, _, C, H, W = inp(row, 0)
    return C * H * W


@njit(**JIT)
def _flatten_forward_chunk(c, nch, out, inp):
    lo, hi = chunk(c, nch, out.size)
    flatten_forward(out[lo:hi], inp[lo:hi])


@njit(**JIT)
def _flatten_backward_chunk(c, nch, dinp, dout):
    lo, hi = chunk(c, nch, dinp.size)
    flatten_backward(dinp[lo:hi], dout[lo:hi])


_flatten_forward_chunks = parallel_chunks("flatten_forward_chunks", _flatten_forward_chunk)
_flatten_backward_chunks = parallel_chunks("flatten_backward_chunks", _flatten_backward_chunk)


@njit(**JIT)
def flatten_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row)
    x, y = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n
    _flatten_forward_chunks(nchunks(m, m), (A[y : y + m], A[x : x + m]))


@njit(**JIT)
def flatten_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, _, _, _ = inp(row, 0)
    if dx < 0:
        return
    m, dy = n * _size(row), row[abi.DOUT] * n
    _flatten_backward_chunks(nchunks(m, m), (A[dx * n : dx * n + m], A[dy : dy + m]))


@njit(**JIT)
def _dropout_forward_chunk(c, nch, out, mask, inp, rate, seed, training):
    lo, hi = chunk(c, nch, out.size)
    dropout_forward(out, mask, inp, rate, seed, training, lo, hi)


@njit(**JIT)
def _dropout_backward_chunk(c, nch, dinp, dout, mask, training):
    lo, hi = chunk(c, nch, dinp.size)
    dropout_backward(dinp, dout, mask, training, lo, hi)


_dropout_forward_chunks = parallel_chunks("dropout_forward_chunks", _dropout_forward_chunk)
_dropout_backward_chunks = parallel_chunks("dropout_backward_chunks", _dropout_backward_chunk)


@njit(**JIT)
def dropout_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row)
    x, y, mk = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n, row[abi.AUX] * n
    mask = A[mk : mk + m] if training else A[:0]  # inference reads no mask (none may exist)
    args = (A[y : y + m], mask, A[x : x + m], frow[DROPOUT_FLOAT.rate], seed, training)
    _dropout_forward_chunks(nchunks(8 * m if training else m, m), args)


@njit(**JIT)
def dropout_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, _, _, _ = inp(row, 0)
    if dx < 0:
        return
    m, dy, mk = n * _size(row), row[abi.DOUT] * n, row[abi.AUX] * n
    mask = A[mk : mk + m] if training else A[:0]
    args = (A[dx * n : dx * n + m], A[dy : dy + m], mask, training)
    _dropout_backward_chunks(nchunks(8 * m if training else m, m), args)


@njit(**JIT)
def _upsample_forward_chunk(c, nch, planes, out, inp, H, W, Ho, Wo, row):
    lo, hi = chunk(c, nch, planes)
    if row[UPSAMPLE_ROW.mode] == BILINEAR:
        bilinear_forward(out, inp, H, W, Ho, Wo, row[UPSAMPLE_ROW.align_corners], lo, hi)
    else:
        sh, sw = row[UPSAMPLE_ROW.scale_h], row[UPSAMPLE_ROW.scale_w]
        upsample_forward(out, inp, H, W, Ho, Wo, sh, sw, lo, hi)


@njit(**JIT)
def _upsample_backward_chunk(c, nch, planes, dinp, dout, H, W, Ho, Wo, row):
    lo, hi = chunk(c, nch, planes)
    if row[UPSAMPLE_ROW.mode] == BILINEAR:
        bilinear_backward(dinp, dout, H, W, Ho, Wo, row[UPSAMPLE_ROW.align_corners], lo, hi)
    else:
        sh, sw = row[UPSAMPLE_ROW.scale_h], row[UPSAMPLE_ROW.scale_w]
        upsample_backward(dinp, dout, H, W, Ho, Wo, sh, sw, lo, hi)


_upsample_forward_chunks = parallel_chunks("upsample_forward_chunks", _upsample_forward_chunk)
_upsample_backward_chunks = parallel_chunks("upsample_backward_chunks", _upsample_backward_chunk)


@njit(**JIT)
def upsample_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    y, Ho, Wo = row[abi.OUT] * n, row[abi.OH], row[abi.OW]
    planes = n * C
    mo = planes * Ho * Wo
    args = (planes, A[y : y + mo], A[x * n : x * n + planes * H * Wd], H, Wd, Ho, Wo, row)
    _upsample_forward_chunks(nchunks(4 * mo, planes), args)


@njit(**JIT)
def upsample_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    dy, Ho, Wo = row[abi.DOUT] * n, row[abi.OH], row[abi.OW]
    planes = n * C
    mo = planes * Ho * Wo
    args = (planes, A[dx * n : dx * n + planes * H * Wd], A[dy : dy + mo], H, Wd, Ho, Wo, row)
    _upsample_backward_chunks(nchunks(4 * mo, planes), args)


@njit(**JIT)
def _add_forward_chunk(c, nch, A, row, n, m):
    """Elements [lo, hi) of the sum of every input, in input order."""
    lo, hi = chunk(c, nch, m)
    y, a, b = row[abi.OUT] * n, inp(row, 0)[0] * n, inp(row, 1)[0] * n
    out = A[y + lo : y + hi]
    add_forward(out, A[a + lo : a + hi], A[b + lo : b + hi])
    for j in range(2, row[abi.NIN]):
        b = inp(row, j)[0] * n
        _acc(out, A[b + lo : b + hi])  # (not add_forward(out, out, b): aliasing stops SIMD)


@njit(**JIT)
def _add_backward_chunk(c, nch, A, row, n, m):
    lo, hi = chunk(c, nch, m)
    dy = row[abi.DOUT] * n
    for j in range(row[abi.NIN]):
        dx = inp(row, j)[1]
        if dx >= 0:
            add_backward(A[dx * n + lo : dx * n + hi], A[dy + lo : dy + hi])


_add_forward_chunks = parallel_chunks("add_forward_chunks", _add_forward_chunk)
_add_backward_chunks = parallel_chunks("add_backward_chunks", _add_backward_chunk)


@njit(**JIT)
def add_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row)
    _add_forward_chunks(nchunks(m * row[abi.NIN], m), (A, row, n, m))


@njit(**JIT)
def add_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row)
    _add_backward_chunks(nchunks(m * row[abi.NIN], m), (A, row, n, m))


@njit(**JIT)
def _concat_forward_chunk(c, nch, A, row, n):
    """Samples [lo, hi) of every branch, each into its channel range of the output."""
    lo, hi = chunk(c, nch, n)
    Co, HW = row[abi.OC], row[abi.OH] * row[abi.OW]
    y, c0 = row[abi.OUT] * n, 0
    out = A[y : y + n * Co * HW]
    for j in range(row[abi.NIN]):
        x, _, C, _, _ = inp(row, j)
        concat_forward(out, A[x * n : (x + C * HW) * n], Co, c0, C, HW, lo, hi)
        c0 += C


@njit(**JIT)
def _concat_backward_chunk(c, nch, A, row, n):
    lo, hi = chunk(c, nch, n)
    Co, HW = row[abi.OC], row[abi.OH] * row[abi.OW]
    dy, c0 = row[abi.DOUT] * n, 0
    dout = A[dy : dy + n * Co * HW]
    for j in range(row[abi.NIN]):
        _, dx, C, _, _ = inp(row, j)
        if dx >= 0:
            concat_backward(A[dx * n : (dx + C * HW) * n], dout, Co, c0, C, HW, lo, hi)
        c0 += C


_concat_forward_chunks = parallel_chunks("concat_forward_chunks", _concat_forward_chunk)
_concat_backward_chunks = parallel_chunks("concat_backward_chunks", _concat_backward_chunk)


@njit(**JIT)
def concat_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    work = n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    _concat_forward_chunks(nchunks(work, n), (A, row, n))


@njit(**JIT)
def concat_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    work = n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    _concat_backward_chunks(nchunks(work, n), (A, row, n))


FLATTEN = flatten_row_forward, flatten_row_backward
DROPOUT = dropout_row_forward, dropout_row_backward
UPSAMPLE = upsample_row_forward, upsample_row_backward
ADD = add_row_forward, add_row_backward
CONCAT = concat_row_forward, concat_row_backward
