"""BN (batch normalisation), LRN (local response normalisation across channels) and LN (layer
normalisation over channels) as pairs.

BN works per channel on (N, C, HW) arrays: `bn_forward` / `bn_backward` take channels [lo, hi)
and the row adapter gives each thread a chunk of channels. Sums are in float64 with a two-pass
variance. Training normalises with the batch statistics, updates the running mean and the
running *unbiased* variance (torch), and saves mean and 1/std for backward, which recomputes
xhat from the input. Inference, forward and backward, uses the running statistics.
State layout at row[STATE]: running_mean (C), running_var (C), saved_mean (C), saved_invstd (C).
`bn_backward` accumulates into dweight and dbias, and into dinp unless dinp is empty (size 0:
nobody needs the input gradient).

LRN (torch.nn.LocalResponseNorm): b_c = a_c * s_c^-beta, s_c = k + alpha/size * sum a_c'^2 over
c' in [c - size//2, c + (size-1)//2]. `lrn_forward` / `lrn_backward` take samples [lo, hi) of
(N, C, HW) arrays. Forward accumulates the window sums in the output, then scales; backward
recomputes s per pixel into a small per-call scratch column.

LN (ConvNeXt's channels-first LayerNorm; a flat vector, seen as (F, 1, 1), is one pixel) normalises
the C channels of each pixel by their mean and biased variance, then scales and shifts per
channel. Its unit of work is a block of at most LN_BLOCK pixels of one sample, so that the inner
loops run over contiguous pixels (channel-strided loops per pixel were 3x slower than BN); the
block's per-pixel statistics live in a scratch of 4 * LN_BLOCK floats. `ln_forward` /
`ln_backward` take units [lo, hi); backward recomputes the statistics from the input. Threads
share the channels, so each chunk past the first sums its dweight and dbias into its workspace
slot, and the adapter adds the slots into G in chunk order after the parallel part.
Workspace slot of a thread: [dweight, dbias (2C) | mean, invstd, sg, sgx (B each)], B =
min(HW, LN_BLOCK).
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi
from cnnc.compiler.layers import LN_BLOCK

from .common import U, chunk, inp, nchunks, parallel_chunks
from .config import JIT, RJIT

BN_FLOAT = abi.float_offsets("BN")
LRN_ROW, LRN_FLOAT = abi.int_offsets("LRN"), abi.float_offsets("LRN")
LN_FLOAT = abi.float_offsets("LN")


# ------------------------------------------------------------------------------------------ BN
@njit(**RJIT)
def bn_forward(
    out, inp, weight, bias, running_mean, running_var, saved_mean, saved_invstd, N, C, HW, eps,
    momentum, training, lo, hi,
):  # fmt: skip
    M = N * HW
    for c in range(lo, hi):
        if training:
            s = 0.0
            for b in range(N):
                base = (b * C + c) * HW
                for i in range(base, base + HW):
                    s += inp[U(i)]
            mean = s / M
            v = 0.0
            for b in range(N):
                base = (b * C + c) * HW
                for i in range(base, base + HW):
                    d = inp[U(i)] - mean
                    v += d * d
            var = v / M
            invstd = 1.0 / np.sqrt(var + eps)
            unbiased = var * M / (M - 1) if M > 1 else var
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * unbiased
            saved_mean[c] = mean
            saved_invstd[c] = invstd
        else:
            mean = np.float64(running_mean[c])
            invstd = 1.0 / np.sqrt(running_var[c] + eps)
        m32 = np.float32(mean)
        scale = np.float32(weight[c] * invstd)
        shift = bias[c]
        for b in range(N):
            base = (b * C + c) * HW
            for i in range(HW):
                out[U(base + i)] = (inp[U(base + i)] - m32) * scale + shift


@njit(**RJIT)
def bn_backward(
    dinp, dweight, dbias, dout, inp, weight, running_mean, running_var, saved_mean, saved_invstd,
    N, C, HW, eps, training, lo, hi,
):  # fmt: skip
    M = N * HW
    for c in range(lo, hi):
        if training:
            mean, invstd = np.float64(saved_mean[c]), np.float64(saved_invstd[c])
        else:
            mean = np.float64(running_mean[c])
            invstd = 1.0 / np.sqrt(running_var[c] + eps)
        sdy, sdyx = 0.0, 0.0
        for b in range(N):
            base = (b * C + c) * HW
            for i in range(HW):
                g = np.float64(dout[U(base + i)])
                sdy += g
                sdyx += g * (inp[U(base + i)] - mean)
        dgamma = sdyx * invstd
        dweight[c] += dgamma
        dbias[c] += sdy
        if dinp.size == 0:
            continue
        # training: dx = k * (dy - sdy / M - xhat * dgamma / M), k = gamma * invstd
        k = weight[c] * invstd
        a, m32 = np.float32(k), np.float32(mean)
        b0 = np.float32(-k * sdy / M) if training else np.float32(0.0)
        b1 = np.float32(-k * invstd * dgamma / M) if training else np.float32(0.0)
        for b in range(N):
            base = (b * C + c) * HW
            for i in range(HW):
                j = base + i
                dinp[U(j)] += a * dout[U(j)] + b1 * (inp[U(j)] - m32) + b0


# ----------------------------------------------------------------------------------------- LRN
@njit(**JIT)
def lrn_forward(out, inp, C, HW, size, alpha, beta, k, lo, hi):
    a, bef, aft = alpha / size, size // 2, (size - 1) // 2
    for s in range(lo, hi):
        x = s * C * HW
        out[x : x + C * HW] = 0.0
        for c in range(C):  # out[c] = sum of x^2 over the window of c
            for c2 in range(max(c - bef, 0), min(c + aft + 1, C)):
                for i in range(HW):
                    v = inp[U(x + c2 * HW + i)]
                    out[U(x + c * HW + i)] += v * v
        for i in range(x, x + C * HW):
            out[U(i)] = inp[U(i)] * (k + a * out[U(i)]) ** -beta


@njit(**JIT)
def lrn_backward(dinp, dout, inp, C, HW, size, alpha, beta, k, lo, hi):
    a, bef, aft = alpha / size, size // 2, (size - 1) // 2
    sc = np.empty(C)  # s_c, then t_c = dy_c x_c s_c^(-beta-1)
    t = np.empty(C)
    for s in range(lo, hi):
        x = s * C * HW
        for p in range(HW):
            for c in range(C):
                q = 0.0
                for c2 in range(max(c - bef, 0), min(c + aft + 1, C)):
                    v = np.float64(inp[U(x + c2 * HW + p)])
                    q += v * v
                sc[c] = k + a * q
                i = x + c * HW + p
                t[c] = dout[U(i)] * inp[U(i)] * sc[c] ** (-beta - 1.0)
            for j in range(C):
                q = 0.0
                for c in range(max(j - aft, 0), min(j + bef + 1, C)):
                    q += t[c]
                i = x + j * HW + p
                dinp[U(i)] += dout[U(i)] * sc[j] ** -beta - 2.0 * a * beta * inp[U(i)] * q


# ------------------------------------------------------------------------------------------ LN


@njit(**JIT)
def _ln_stats(inp, base, C, HW, p0, p1, eps, mean, invstd):
    """mean[p - p0] and invstd[p - p0] of pixels [p0, p1) of the sample at base."""
    k = p1 - p0
    mean[:k] = 0.0
    invstd[:k] = 0.0
    for c in range(C):
        row = base + c * HW + p0
        for p in range(k):
            mean[U(p)] += inp[U(row + p)]
    for p in range(k):
        mean[U(p)] /= C
    for c in range(C):
        row = base + c * HW + p0
        for p in range(k):
            d = inp[U(row + p)] - mean[U(p)]
            invstd[U(p)] += d * d
    for p in range(k):
        invstd[U(p)] = 1.0 / np.sqrt(invstd[U(p)] / C + eps)


@njit(**JIT)
def _unit(q, HW):
    """(sample, first pixel, end pixel) of unit q."""
    blocks = (HW + LN_BLOCK - 1) // LN_BLOCK
    s, p0 = q // blocks, (q % blocks) * LN_BLOCK
    return s, p0, min(p0 + LN_BLOCK, HW)


@njit(**JIT)
def ln_forward(out, inp, weight, bias, scratch, C, HW, eps, lo, hi):
    B = min(HW, LN_BLOCK)
    mean, invstd = scratch[:B], scratch[B : 2 * B]
    for q in range(lo, hi):
        s, p0, p1 = _unit(q, HW)
        base = s * C * HW
        _ln_stats(inp, base, C, HW, p0, p1, eps, mean, invstd)
        for c in range(C):
            row, w, b = base + c * HW + p0, weight[c], bias[c]
            for p in range(p1 - p0):
                out[U(row + p)] = (inp[U(row + p)] - mean[U(p)]) * invstd[U(p)] * w + b


@njit(**JIT)
def ln_backward(dinp, dweight, dbias, dout, inp, weight, scratch, C, HW, eps, lo, hi):
    """dx = invstd (g - mean_c(g) - xhat mean_c(g xhat)), g = dy * weight; dinp may be empty."""
    B = min(HW, LN_BLOCK)
    mean, invstd, sg, sgx = (
        scratch[:B],
        scratch[B : 2 * B],
        scratch[2 * B : 3 * B],
        scratch[3 * B :],
    )
    for q in range(lo, hi):
        s, p0, p1 = _unit(q, HW)
        base, k = s * C * HW, p1 - p0
        _ln_stats(inp, base, C, HW, p0, p1, eps, mean, invstd)
        sg[:k] = 0.0
        sgx[:k] = 0.0
        for c in range(C):
            row, w = base + c * HW + p0, weight[c]
            dw, db = np.float32(0.0), np.float32(0.0)
            for p in range(k):
                xhat = (inp[U(row + p)] - mean[U(p)]) * invstd[U(p)]
                dy = dout[U(row + p)]
                dw += dy * xhat
                db += dy
                sg[U(p)] += dy * w
                sgx[U(p)] += dy * w * xhat
            dweight[c] += dw
            dbias[c] += db
        if dinp.size == 0:
            continue
        for p in range(k):
            sg[U(p)] /= C
            sgx[U(p)] /= C
        for c in range(C):
            row, w = base + c * HW + p0, weight[c]
            for p in range(k):
                xhat = (inp[U(row + p)] - mean[U(p)]) * invstd[U(p)]
                i = row + p
                dinp[U(i)] += invstd[U(p)] * (dout[U(i)] * w - sg[U(p)] - xhat * sgx[U(p)])


# ------------------------------------------------------------------------------- row adapters
@njit(**JIT)
def _bn_state(state, C):
    """(running_mean, running_var, saved_mean, saved_invstd) views of a BN step's 4C state."""
    return state[:C], state[C : 2 * C], state[2 * C : 3 * C], state[3 * C :]


@njit(**JIT)
def _bn_forward_chunk(c, nch, out, inp, weight, bias, state, N, C, HW, eps, momentum, training):
    lo, hi = chunk(c, nch, C)
    rmean, rvar, smean, sinv = _bn_state(state, C)
    bn_forward(
        out, inp, weight, bias, rmean, rvar, smean, sinv, N, C, HW, eps, momentum, training, lo, hi
    )


@njit(**JIT)
def _bn_backward_chunk(
    c, nch, dinp, dweight, dbias, dout, inp, weight, state, N, C, HW, eps, training
):
    lo, hi = chunk(c, nch, C)
    rmean, rvar, smean, sinv = _bn_state(state, C)
    bn_backward(
        dinp, dweight, dbias, dout, inp, weight, rmean, rvar, smean, sinv, N, C, HW, eps, training,
        lo, hi,
    )  # fmt: skip


_bn_forward_chunks = parallel_chunks("bn_forward_chunks", _bn_forward_chunk)
_bn_backward_chunks = parallel_chunks("bn_backward_chunks", _bn_backward_chunk)


@njit(**JIT)
def bn_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    y, po, m = row[abi.OUT] * n, row[abi.PARAM], n * C * H * Wd
    so = row[abi.STATE]
    args = (
        A[y : y + m], A[x * n : x * n + m], P[po : po + C], P[po + C : po + 2 * C],
        S[so : so + 4 * C], n, C, H * Wd, frow[BN_FLOAT.eps], frow[BN_FLOAT.momentum], training,
    )  # fmt: skip
    _bn_forward_chunks(nchunks(3 * m, C), args)


@njit(**JIT)
def bn_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    x, dx, C, H, Wd = inp(row, 0)
    dy, po, m = row[abi.DOUT] * n, row[abi.PARAM], n * C * H * Wd
    so = row[abi.STATE]
    dinp = A[dx * n : dx * n + m] if dx >= 0 else A[:0]
    args = (
        dinp, G[po : po + C], G[po + C : po + 2 * C], A[dy : dy + m], A[x * n : x * n + m],
        P[po : po + C], S[so : so + 4 * C], n, C, H * Wd, frow[BN_FLOAT.eps], training,
    )  # fmt: skip
    _bn_backward_chunks(nchunks(3 * m, C), args)


@njit(**JIT)
def _lrn_forward_chunk(c, nch, N, out, inp, C, HW, size, alpha, beta, k):
    lo, hi = chunk(c, nch, N)
    lrn_forward(out, inp, C, HW, size, alpha, beta, k, lo, hi)


@njit(**JIT)
def _lrn_backward_chunk(c, nch, N, dinp, dout, inp, C, HW, size, alpha, beta, k):
    lo, hi = chunk(c, nch, N)
    lrn_backward(dinp, dout, inp, C, HW, size, alpha, beta, k, lo, hi)


_lrn_forward_chunks = parallel_chunks("lrn_forward_chunks", _lrn_forward_chunk)
_lrn_backward_chunks = parallel_chunks("lrn_backward_chunks", _lrn_backward_chunk)


@njit(**JIT)
def _lrn_floats(frow):
    return frow[LRN_FLOAT.alpha], frow[LRN_FLOAT.beta], frow[LRN_FLOAT.k]


@njit(**JIT)
def lrn_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    y, size, m = row[abi.OUT] * n, row[LRN_ROW.size], n * C * H * Wd
    alpha, beta, k = _lrn_floats(frow)
    args = (n, A[y : y + m], A[x * n : x * n + m], C, H * Wd, size, alpha, beta, k)
    _lrn_forward_chunks(nchunks(size * m, n), args)


@njit(**JIT)
def lrn_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    x, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    dy, size, m = row[abi.DOUT] * n, row[LRN_ROW.size], n * C * H * Wd
    alpha, beta, k = _lrn_floats(frow)
    dinp, dout, xs = A[dx * n : dx * n + m], A[dy : dy + m], A[x * n : x * n + m]
    _lrn_backward_chunks(nchunks(size * m, n), (n, dinp, dout, xs, C, H * Wd, size, alpha, beta, k))


@njit(**JIT)
def _ln_units(n, HW):
    return n * ((HW + LN_BLOCK - 1) // LN_BLOCK)


@njit(**JIT)
def _ln_slots(W, ws, nch):
    """At most as many chunks as W has workspace slots (if threads grew since it was sized)."""
    if W.size < ws:
        raise ValueError("LN: the workspace W is smaller than row[WS]")
    return min(nch, W.size // ws)


@njit(**JIT)
def _ln_forward_chunk(c, nch, units, out, inp, weight, bias, W, ws, C, HW, eps):
    lo, hi = chunk(c, nch, units)
    scratch = W[c * ws + 2 * C : (c + 1) * ws]
    ln_forward(out, inp, weight, bias, scratch, C, HW, eps, lo, hi)


@njit(**JIT)
def _ln_backward_chunk(c, nch, units, dinp, grads, W, ws, dout, inp, weight, C, HW, eps):
    lo, hi = chunk(c, nch, units)
    if c > 0:  # chunk 0 accumulates straight into G, the others into their slots
        grads = W[c * ws : c * ws + 2 * C]
        grads[:] = 0.0
    scratch = W[c * ws + 2 * C : (c + 1) * ws]
    ln_backward(dinp, grads[:C], grads[C:], dout, inp, weight, scratch, C, HW, eps, lo, hi)


_ln_forward_chunks = parallel_chunks("ln_forward_chunks", _ln_forward_chunk)
_ln_backward_chunks = parallel_chunks("ln_backward_chunks", _ln_backward_chunk)


@njit(**JIT)
def ln_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    y, po, m, ws = row[abi.OUT] * n, row[abi.PARAM], n * C * H * Wd, row[abi.WS]
    units = _ln_units(n, H * Wd)
    nch = _ln_slots(W, ws, nchunks(4 * m, units))
    args = (A[y : y + m], A[x * n : x * n + m], P[po : po + C], P[po + C : po + 2 * C], W, ws)
    _ln_forward_chunks(nch, (units, *args, C, H * Wd, frow[LN_FLOAT.eps]))


@njit(**JIT)
def ln_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    x, dx, C, H, Wd = inp(row, 0)
    dy, po, m, ws = row[abi.DOUT] * n, row[abi.PARAM], n * C * H * Wd, row[abi.WS]
    units = _ln_units(n, H * Wd)
    nch = _ln_slots(W, ws, nchunks(8 * m, units))
    dinp = A[dx * n : dx * n + m] if dx >= 0 else A[:0]
    grads = G[po : po + 2 * C]
    args = (dinp, grads, W, ws, A[dy : dy + m], A[x * n : x * n + m], P[po : po + C], C, H * Wd)
    _ln_backward_chunks(nch, (units, *args, frow[LN_FLOAT.eps]))
    for t in range(1, nch):
        for i in range(2 * C):
            grads[i] += W[t * ws + i]


BN = bn_row_forward, bn_row_backward
LRN = lrn_row_forward, lrn_row_backward
LN = ln_row_forward, ln_row_backward
