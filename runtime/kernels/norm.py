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
channel. `ln_forward` / `ln_backward` take pixels [lo, hi) of the (N, HW) grid; backward
recomputes the statistics from the input. Threads share the channels, so each chunk past the
first sums its dweight and dbias into its workspace slot (W[c * row[WS]:], 2C floats), and the
adapter adds the slots into G in chunk order after the parallel part.
"""

import numpy as np
from numba import njit

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks, parallel_chunks
from .config import JIT

BN_FLOAT = abi.float_offsets("BN")
LRN_ROW, LRN_FLOAT = abi.int_offsets("LRN"), abi.float_offsets("LRN")
LN_FLOAT = abi.float_offsets("LN")


# ------------------------------------------------------------------------------------------ BN
@njit(**JIT)
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


@njit(**JIT)
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
def _ln_stats(inp, b, C, HW, eps):
    """Mean and 1/std over the C channels of the pixel at b (channel stride HW), in float64."""
    s = 0.0
    for c in range(C):
        s += inp[U(b + c * HW)]
    mean = s / C
    v = 0.0
    for c in range(C):
        d = inp[U(b + c * HW)] - mean
        v += d * d
    return mean, 1.0 / np.sqrt(v / C + eps)


@njit(**JIT)
def ln_forward(out, inp, weight, bias, C, HW, eps, lo, hi):
    for q in range(lo, hi):
        b = (q // HW) * C * HW + q % HW
        mean, invstd = _ln_stats(inp, b, C, HW, eps)
        for c in range(C):
            i = b + c * HW
            out[U(i)] = (inp[U(i)] - mean) * invstd * weight[c] + bias[c]


@njit(**JIT)
def ln_backward(dinp, dweight, dbias, dout, inp, weight, C, HW, eps, lo, hi):
    """dx = invstd (g - mean(g) - xhat mean(g xhat)), g = dy * weight; dinp may be empty."""
    for q in range(lo, hi):
        b = (q // HW) * C * HW + q % HW
        mean, invstd = _ln_stats(inp, b, C, HW, eps)
        sg, sgx = 0.0, 0.0
        for c in range(C):
            i = b + c * HW
            xhat = (inp[U(i)] - mean) * invstd
            dy = np.float64(dout[U(i)])
            dweight[c] += dy * xhat
            dbias[c] += dy
            g = dy * weight[c]
            sg += g
            sgx += g * xhat
        if dinp.size == 0:
            continue
        sg, sgx = sg / C, sgx / C
        for c in range(C):
            i = b + c * HW
            xhat = (inp[U(i)] - mean) * invstd
            dinp[U(i)] += invstd * (dout[U(i)] * weight[c] - sg - xhat * sgx)


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
def _ln_forward_chunk(c, nch, pixels, out, inp, weight, bias, C, HW, eps):
    lo, hi = chunk(c, nch, pixels)
    ln_forward(out, inp, weight, bias, C, HW, eps, lo, hi)


@njit(**JIT)
def _ln_backward_chunk(c, nch, pixels, dinp, grads, W, ws, dout, inp, weight, C, HW, eps):
    lo, hi = chunk(c, nch, pixels)
    if c > 0:  # chunk 0 accumulates straight into G, the others into their slots
        grads = W[c * ws : c * ws + 2 * C]
        grads[:] = 0.0
    ln_backward(dinp, grads[:C], grads[C:], dout, inp, weight, C, HW, eps, lo, hi)


_ln_forward_chunks = parallel_chunks("ln_forward_chunks", _ln_forward_chunk)
_ln_backward_chunks = parallel_chunks("ln_backward_chunks", _ln_backward_chunk)


@njit(**JIT)
def ln_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    x, _, C, H, Wd = inp(row, 0)
    y, po, m, pixels = row[abi.OUT] * n, row[abi.PARAM], n * C * H * Wd, n * H * Wd
    args = (A[y : y + m], A[x * n : x * n + m], P[po : po + C], P[po + C : po + 2 * C], C, H * Wd)
    _ln_forward_chunks(nchunks(4 * m, pixels), (pixels, *args, frow[LN_FLOAT.eps]))


@njit(**JIT)
def ln_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    x, dx, C, H, Wd = inp(row, 0)
    dy, po, m, pixels = row[abi.DOUT] * n, row[abi.PARAM], n * C * H * Wd, n * H * Wd
    ws = row[abi.WS]
    if W.size < ws:
        raise ValueError("LN: the workspace W is smaller than row[WS]")
    nch = min(nchunks(8 * m, pixels), W.size // ws)  # at most one chunk per workspace slot
    dinp = A[dx * n : dx * n + m] if dx >= 0 else A[:0]
    grads = G[po : po + 2 * C]
    args = (dinp, grads, W, ws, A[dy : dy + m], A[x * n : x * n + m], P[po : po + C], C, H * Wd)
    _ln_backward_chunks(nch, (pixels, *args, frow[LN_FLOAT.eps]))
    for t in range(1, nch):
        for i in range(2 * C):
            grads[i] += W[t * ws + i]


BN = bn_row_forward, bn_row_backward
LRN = lrn_row_forward, lrn_row_backward
LN = ln_row_forward, ln_row_backward
