"""Per-channel kinds as forward/backward pairs: PRELU, SCALE, MUL, SLICE and SHUFFLE.

Every pair works on (N, C, HW) float32 arrays (a flat vector is (N, F, 1)); backward accumulates
into the input gradients, and into dweight for PRELU and SCALE.

PRELU (y = x > 0 ? x : a_c x) and SCALE (y = s_c x) take channels [lo, hi) over every sample, so
a thread owns its channels' parameter gradients. An empty dinp (size 0) means nobody needs the
input gradient: only dweight is computed.

MUL multiplies two inputs elementwise; an input with one value per channel (a Cx1x1 gate, or a
flat C) is broadcast over the H x W pixels of the other, and its gradient sums over them. The
pair takes planes [lo, hi) (plane = sample * C + channel): a gate's value belongs to one plane,
so a thread owns the gate gradients it writes. `as_` / `bs` are each input's pixel stride, 1 for
a full input and 0 for a gate.

SLICE copies channels [start, start + C_out) of its input; SHUFFLE g is torch's channel shuffle
x.view(N, g, C/g, H, W).transpose(1, 2): output channel j * g + i is input channel i * C/g + j.
Both take samples [lo, hi).
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks, parallel_chunks
from .config import JIT, RJIT

SLICE_ROW = abi.int_offsets("SLICE")
SHUFFLE_ROW = abi.int_offsets("SHUFFLE")


# --------------------------------------------------------------------------------------- PRELU
@njit(**JIT)
def prelu_forward(out, inp, weight, N, C, HW, lo, hi):
    for c in range(lo, hi):
        a = weight[c]
        for s in range(N):
            base = (s * C + c) * HW
            for i in range(base, base + HW):
                v = inp[U(i)]
                out[U(i)] = v if v > 0.0 else a * v


@njit(**JIT)
def prelu_backward(dinp, dweight, dout, inp, weight, N, C, HW, lo, hi):
    for c in range(lo, hi):
        a, g = weight[c], 0.0
        for s in range(N):
            base = (s * C + c) * HW
            for i in range(base, base + HW):
                v, d = inp[U(i)], dout[U(i)]
                if v <= 0.0:
                    g += np.float64(d) * v
                if dinp.size:
                    dinp[U(i)] += d if v > 0.0 else a * d
        dweight[c] += g


# --------------------------------------------------------------------------------------- SCALE
@njit(**RJIT)
def _dot(a, i, b, j, m):
    """sum of a[i + p] * b[j + p] over p < m, in float64 vector lanes."""
    s = 0.0
    for p in range(m):
        s += np.float64(a[U(i + p)]) * b[U(j + p)]
    return s


@njit(**JIT)
def scale_forward(out, inp, weight, N, C, HW, lo, hi):
    for c in range(lo, hi):
        a = weight[c]
        for s in range(N):
            base = (s * C + c) * HW
            for i in range(base, base + HW):
                out[U(i)] = inp[U(i)] * a


@njit(**JIT)
def scale_backward(dinp, dweight, dout, inp, weight, N, C, HW, lo, hi):
    for c in range(lo, hi):
        a, g = weight[c], 0.0
        for s in range(N):
            base = (s * C + c) * HW
            g += _dot(dout, base, inp, base, HW)
            if dinp.size:
                for i in range(base, base + HW):
                    dinp[U(i)] += dout[U(i)] * a
        dweight[c] += g


# ----------------------------------------------------------------------------------------- MUL
@njit(**JIT)
def mul_forward(out, a, b, HW, as_, bs, lo, hi):
    """Planes [lo, hi): out = a * b, a gate (stride 0) repeated over the plane's HW pixels."""
    for q in range(lo, hi):
        y, x1, x2 = q * HW, q * (1 + as_ * (HW - 1)), q * (1 + bs * (HW - 1))
        if as_ and bs:
            for p in range(HW):
                out[U(y + p)] = a[U(x1 + p)] * b[U(x2 + p)]
        elif as_:  # the gate as a scalar: a loop over a run-time stride 0 does not vectorise
            g = b[U(x2)]
            for p in range(HW):
                out[U(y + p)] = a[U(x1 + p)] * g
        else:
            g = a[U(x1)]
            for p in range(HW):
                out[U(y + p)] = g * b[U(x2 + p)]


@njit(**JIT)
def mul_backward(da, dout, b, HW, as_, bs, lo, hi):
    """One input's gradient, planes [lo, hi): da += dout * b, summed over the plane for a gate.
    (The other input's gradient is this with the inputs' roles swapped.)"""
    for q in range(lo, hi):
        y, x1, x2 = q * HW, q * (1 + as_ * (HW - 1)), q * (1 + bs * (HW - 1))
        if as_ and bs:
            for p in range(HW):
                da[U(x1 + p)] += dout[U(y + p)] * b[U(x2 + p)]
        elif as_:  # b is the gate (see mul_forward)
            g = b[U(x2)]
            for p in range(HW):
                da[U(x1 + p)] += dout[U(y + p)] * g
        else:  # a is the gate: its gradient sums over the plane
            da[U(x1)] += _dot(dout, y, b, x2, HW)


# ------------------------------------------------------------------------------ SLICE, SHUFFLE
@njit(**JIT)
def slice_forward(out, inp, C, start, C_out, HW, lo, hi):
    m = C_out * HW
    for s in range(lo, hi):
        x, y = (s * C + start) * HW, s * m
        for i in range(m):
            out[U(y + i)] = inp[U(x + i)]


@njit(**JIT)
def slice_backward(dinp, dout, C, start, C_out, HW, lo, hi):
    m = C_out * HW
    for s in range(lo, hi):
        x, y = (s * C + start) * HW, s * m
        for i in range(m):
            dinp[U(x + i)] += dout[U(y + i)]


@njit(**JIT)
def shuffle_forward(out, inp, C, HW, groups, lo, hi):
    per = C // groups
    for s in range(lo, hi):
        for i in range(groups):
            for j in range(per):
                x, y = (s * C + i * per + j) * HW, (s * C + j * groups + i) * HW
                for p in range(HW):
                    out[U(y + p)] = inp[U(x + p)]


@njit(**JIT)
def shuffle_backward(dinp, dout, C, HW, groups, lo, hi):
    per = C // groups
    for s in range(lo, hi):
        for i in range(groups):
            for j in range(per):
                x, y = (s * C + i * per + j) * HW, (s * C + j * groups + i) * HW
                for p in range(HW):
                    dinp[U(x + p)] += dout[U(y + p)]


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _prelu_forward_chunk(c, nch, out, x, w, N, C, HW):
    lo, hi = chunk(c, nch, C)
    prelu_forward(out, x, w, N, C, HW, lo, hi)


@njit(**JIT)
def _prelu_backward_chunk(c, nch, dx, dw, dy, x, w, N, C, HW):
    lo, hi = chunk(c, nch, C)
    prelu_backward(dx, dw, dy, x, w, N, C, HW, lo, hi)


@njit(**JIT)
def _scale_forward_chunk(c, nch, out, x, w, N, C, HW):
    lo, hi = chunk(c, nch, C)
    scale_forward(out, x, w, N, C, HW, lo, hi)


@njit(**JIT)
def _scale_backward_chunk(c, nch, dx, dw, dy, x, w, N, C, HW):
    lo, hi = chunk(c, nch, C)
    scale_backward(dx, dw, dy, x, w, N, C, HW, lo, hi)


_prelu_forward_chunks = parallel_chunks("prelu_forward_chunks", _prelu_forward_chunk)
_prelu_backward_chunks = parallel_chunks("prelu_backward_chunks", _prelu_backward_chunk)
_scale_forward_chunks = parallel_chunks("scale_forward_chunks", _scale_forward_chunk)
_scale_backward_chunks = parallel_chunks("scale_backward_chunks", _scale_backward_chunk)


@njit(**JIT)
def _channel_forward_args(A, P, row, n):
    """(out, inp, weight, N, C, HW) of a one-input kind with a weight per channel."""
    x, _, C, H, Wd = inp(row, 0)
    m, po = n * C * H * Wd, row[abi.PARAM]
    y = row[abi.OUT] * n
    return A[y : y + m], A[x * n : x * n + m], P[po : po + C], n, C, H * Wd


@njit(**JIT)
def _channel_backward_args(A, P, G, row, n):
    """(dinp, dweight, dout, inp, weight, N, C, HW); dinp is empty when nobody needs it."""
    x, dx, C, H, Wd = inp(row, 0)
    m, po, dy = n * C * H * Wd, row[abi.PARAM], row[abi.DOUT] * n
    dinp = A[dx * n : dx * n + m] if dx >= 0 else A[:0]
    xs, w = A[x * n : x * n + m], P[po : po + C]
    return dinp, G[po : po + C], A[dy : dy + m], xs, w, n, C, H * Wd


@njit(**JIT)
def prelu_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    args = _channel_forward_args(A, P, row, n)
    _prelu_forward_chunks(nchunks(args[0].size, args[4]), args)


@njit(**JIT)
def prelu_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    args = _channel_backward_args(A, P, G, row, n)
    _prelu_backward_chunks(nchunks(2 * args[2].size, args[6]), args)


@njit(**JIT)
def scale_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    args = _channel_forward_args(A, P, row, n)
    _scale_forward_chunks(nchunks(args[0].size, args[4]), args)


@njit(**JIT)
def scale_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    args = _channel_backward_args(A, P, G, row, n)
    _scale_backward_chunks(nchunks(2 * args[2].size, args[6]), args)


@njit(**JIT)
def _mul_inputs(row, n):
    """(a, da, b, db, HW, a's stride, b's stride, planes): per-batch offsets of MUL's inputs."""
    a, da, _, ha, wa = inp(row, 0)
    b, db, _, hb, wb = inp(row, 1)
    HW = row[abi.OH] * row[abi.OW]
    as_, bs = 1 if ha * wa == HW else 0, 1 if hb * wb == HW else 0
    return a * n, da * n, b * n, db * n, HW, as_, bs, n * row[abi.OC]


@njit(**JIT)
def _mul_forward_chunk(c, nch, A, y, a, b, HW, as_, bs, planes):
    lo, hi = chunk(c, nch, planes)
    mul_forward(A[y:], A[a:], A[b:], HW, as_, bs, lo, hi)


@njit(**JIT)
def _mul_backward_chunk(c, nch, A, dy, a, da, b, db, HW, as_, bs, planes):
    lo, hi = chunk(c, nch, planes)
    if da >= 0:
        mul_backward(A[da:], A[dy:], A[b:], HW, as_, bs, lo, hi)
    if db >= 0:
        mul_backward(A[db:], A[dy:], A[a:], HW, bs, as_, lo, hi)


_mul_forward_chunks = parallel_chunks("mul_forward_chunks", _mul_forward_chunk)
_mul_backward_chunks = parallel_chunks("mul_backward_chunks", _mul_backward_chunk)


@njit(**JIT)
def mul_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    a, _, b, _, HW, as_, bs, planes = _mul_inputs(row, n)
    args = (A, row[abi.OUT] * n, a, b, HW, as_, bs, planes)
    _mul_forward_chunks(nchunks(planes * HW, planes), args)


@njit(**JIT)
def mul_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    a, da, b, db, HW, as_, bs, planes = _mul_inputs(row, n)
    args = (A, row[abi.DOUT] * n, a, da, b, db, HW, as_, bs, planes)
    _mul_backward_chunks(nchunks(2 * planes * HW, planes), args)


@njit(**JIT)
def _slice_forward_chunk(c, nch, out, x, C, start, C_out, HW, N):
    lo, hi = chunk(c, nch, N)
    slice_forward(out, x, C, start, C_out, HW, lo, hi)


@njit(**JIT)
def _slice_backward_chunk(c, nch, dx, dy, C, start, C_out, HW, N):
    lo, hi = chunk(c, nch, N)
    slice_backward(dx, dy, C, start, C_out, HW, lo, hi)


@njit(**JIT)
def _shuffle_forward_chunk(c, nch, out, x, C, HW, groups, N):
    lo, hi = chunk(c, nch, N)
    shuffle_forward(out, x, C, HW, groups, lo, hi)


@njit(**JIT)
def _shuffle_backward_chunk(c, nch, dx, dy, C, HW, groups, N):
    lo, hi = chunk(c, nch, N)
    shuffle_backward(dx, dy, C, HW, groups, lo, hi)


_slice_forward_chunks = parallel_chunks("slice_forward_chunks", _slice_forward_chunk)
_slice_backward_chunks = parallel_chunks("slice_backward_chunks", _slice_backward_chunk)
_shuffle_forward_chunks = parallel_chunks("shuffle_forward_chunks", _shuffle_forward_chunk)
_shuffle_backward_chunks = parallel_chunks("shuffle_backward_chunks", _shuffle_backward_chunk)


@njit(**JIT)
def slice_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    HW, C_out, y = H * Wd, row[abi.OC], row[abi.OUT] * n
    args = (A[y : y + n * C_out * HW], A[x * n : (x + C * HW) * n], C, row[SLICE_ROW.start])
    _slice_forward_chunks(nchunks(n * C_out * HW, n), (*args, C_out, HW, n))


@njit(**JIT)
def slice_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    HW, C_out, dy = H * Wd, row[abi.OC], row[abi.DOUT] * n
    args = (A[dx * n : (dx + C * HW) * n], A[dy : dy + n * C_out * HW], C, row[SLICE_ROW.start])
    _slice_backward_chunks(nchunks(n * C_out * HW, n), (*args, C_out, HW, n))


@njit(**JIT)
def shuffle_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    m, y = n * C * H * Wd, row[abi.OUT] * n
    args = (A[y : y + m], A[x * n : x * n + m], C, H * Wd, row[SHUFFLE_ROW.groups], n)
    _shuffle_forward_chunks(nchunks(m, n), args)


@njit(**JIT)
def shuffle_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    m, dy = n * C * H * Wd, row[abi.DOUT] * n
    args = (A[dx * n : dx * n + m], A[dy : dy + m], C, H * Wd, row[SHUFFLE_ROW.groups], n)
    _shuffle_backward_chunks(nchunks(m, n), args)


PRELU = prelu_row_forward, prelu_row_backward
SCALE = scale_row_forward, scale_row_backward
MUL = mul_row_forward, mul_row_backward
SLICE = slice_row_forward, slice_row_backward
SHUFFLE = shuffle_row_forward, shuffle_row_backward
