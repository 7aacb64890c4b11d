"""BN (batch normalisation) and LRN (local response normalisation across channels).

BN works per channel (one chunk of channels per thread); sums are in float64 with a two-pass
variance. Training normalises with the batch statistics, updates the running mean and the
running *unbiased* variance (torch), and saves mean and 1/std for backward, which recomputes
xhat from the input. Inference, forward and backward, uses the running statistics.
State layout at row[STATE]: running_mean (C), running_var (C), saved_mean (C), saved_invstd (C).

LRN (torch.nn.LocalResponseNorm): b_c = a_c * s_c^-beta, s_c = k + alpha/size * sum a_c'^2 over
c' in [c - size//2, c + (size-1)//2]. Forward accumulates the window sums in the output, then
scales; backward recomputes s per pixel into a small per-chunk scratch column.
"""

import numpy as np
from cnnc.compiler import abi
from numba import njit, prange

from .common import chunk, inp, nchunks
from .config import JIT, PJIT


# ------------------------------------------------------------------------------------------ BN
@njit(**JIT)
def _bn_fwd_range(A, P, S, row, frow, n, training, lo, hi):
    xo, _, C, H, W = inp(row, 0)
    yo = row[abi.OUT]
    HW, M = H * W, n * H * W
    po, so = row[abi.PARAM], row[abi.STATE]
    eps, mom = frow[0], frow[1]
    for c in range(lo, hi):
        if training:
            s = 0.0
            for b in range(n):
                base = xo * n + (b * C + c) * HW
                for i in range(base, base + HW):
                    s += A[i]
            mean = s / M
            v = 0.0
            for b in range(n):
                base = xo * n + (b * C + c) * HW
                for i in range(base, base + HW):
                    d = A[i] - mean
                    v += d * d
            var = v / M
            invstd = 1.0 / np.sqrt(var + eps)
            unbiased = var * M / (M - 1) if M > 1 else var
            S[so + c] = (1.0 - mom) * S[so + c] + mom * mean
            S[so + C + c] = (1.0 - mom) * S[so + C + c] + mom * unbiased
            S[so + 2 * C + c] = mean
            S[so + 3 * C + c] = invstd
        else:
            mean = np.float64(S[so + c])
            invstd = 1.0 / np.sqrt(S[so + C + c] + eps)
        m32 = np.float32(mean)
        scale = np.float32(P[po + c] * invstd)
        shift = P[po + C + c]
        for b in range(n):
            xb, yb = xo * n + (b * C + c) * HW, yo * n + (b * C + c) * HW
            for i in range(HW):
                A[yb + i] = (A[xb + i] - m32) * scale + shift


@njit(**JIT)
def _bn_bwd_range(A, P, G, S, row, frow, n, training, lo, hi):
    xo, dxo, C, H, W = inp(row, 0)
    dyo = row[abi.DOUT]
    HW, M = H * W, n * H * W
    po, so = row[abi.PARAM], row[abi.STATE]
    for c in range(lo, hi):
        if training:
            mean, invstd = np.float64(S[so + 2 * C + c]), np.float64(S[so + 3 * C + c])
        else:
            mean = np.float64(S[so + c])
            invstd = 1.0 / np.sqrt(S[so + C + c] + frow[0])
        sdy, sdyx = 0.0, 0.0
        for b in range(n):
            xb, db = xo * n + (b * C + c) * HW, dyo * n + (b * C + c) * HW
            for i in range(HW):
                g = np.float64(A[db + i])
                sdy += g
                sdyx += g * (A[xb + i] - mean)
        dgamma = sdyx * invstd
        G[po + c] += dgamma
        G[po + C + c] += sdy
        if dxo < 0:
            continue
        # training: dx = k * (dy - sdy / M - xhat * dgamma / M), k = gamma * invstd
        k = P[po + c] * invstd
        a, m32 = np.float32(k), np.float32(mean)
        b0 = np.float32(-k * sdy / M) if training else np.float32(0.0)
        b1 = np.float32(-k * invstd * dgamma / M) if training else np.float32(0.0)
        for b in range(n):
            xb, db = xo * n + (b * C + c) * HW, dyo * n + (b * C + c) * HW
            gb = dxo * n + (b * C + c) * HW
            for i in range(HW):
                A[gb + i] += a * A[db + i] + b1 * (A[xb + i] - m32) + b0


@njit(**JIT)
def _lrn_fwd_range(A, row, frow, n, lo, hi):
    xo, _, C, H, W = inp(row, 0)
    yo, HW = row[abi.OUT], H * W
    size = row[abi.ATTR]
    alpha, beta, k = frow[0], frow[1], frow[2]
    a, bef, aft = alpha / size, size // 2, (size - 1) // 2
    for s in range(lo, hi):
        x, y = xo * n + s * C * HW, yo * n + s * C * HW
        A[y : y + C * HW] = 0.0
        for c in range(C):  # y[c] = sum of x^2 over the window of c
            for c2 in range(max(c - bef, 0), min(c + aft + 1, C)):
                for i in range(HW):
                    v = A[x + c2 * HW + i]
                    A[y + c * HW + i] += v * v
        for i in range(C * HW):
            A[y + i] = A[x + i] * (k + a * A[y + i]) ** -beta


@njit(**JIT)
def _lrn_bwd_range(A, row, frow, n, lo, hi):
    xo, dxo, C, H, W = inp(row, 0)
    dyo, HW = row[abi.DOUT], H * W
    size = row[abi.ATTR]
    alpha, beta, k = frow[0], frow[1], frow[2]
    a, bef, aft = alpha / size, size // 2, (size - 1) // 2
    sc = np.empty(C)  # s_c, then t_c = dy_c x_c s_c^(-beta-1)
    t = np.empty(C)
    for s in range(lo, hi):
        x, dy, dx = xo * n + s * C * HW, dyo * n + s * C * HW, dxo * n + s * C * HW
        for p in range(HW):
            for c in range(C):
                q = 0.0
                for c2 in range(max(c - bef, 0), min(c + aft + 1, C)):
                    v = np.float64(A[x + c2 * HW + p])
                    q += v * v
                sc[c] = k + a * q
                t[c] = A[dy + c * HW + p] * A[x + c * HW + p] * sc[c] ** (-beta - 1.0)
            for j in range(C):
                q = 0.0
                for c in range(max(j - aft, 0), min(j + bef + 1, C)):
                    q += t[c]
                i = j * HW + p
                A[dx + i] += A[dy + i] * sc[j] ** -beta - 2.0 * a * beta * A[x + i] * q


# ------------------------------------------------------------------------------- entry points
BN, LRN = 0, 1


@njit(**JIT)
def _chunk(op, backward, c, nch, items, A, P, G, S, row, frow, n, training):
    lo, hi = chunk(c, nch, items)
    if op == BN:
        if backward:
            _bn_bwd_range(A, P, G, S, row, frow, n, training, lo, hi)
        else:
            _bn_fwd_range(A, P, S, row, frow, n, training, lo, hi)
    elif backward:
        _lrn_bwd_range(A, row, frow, n, lo, hi)
    else:
        _lrn_fwd_range(A, row, frow, n, lo, hi)


@njit(**PJIT)
def _run(op, backward, A, P, G, S, row, frow, n, training):
    """BN: one chunk of channels per thread; LRN: one chunk of samples per thread."""
    m = n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    items = row[abi.OC] if op == BN else n
    nch = nchunks(3 * m if op == BN else row[abi.ATTR] * m, items)
    if nch == 1:
        _chunk(op, backward, 0, 1, items, A, P, G, S, row, frow, n, training)
    else:
        for c in prange(nch):
            _chunk(op, backward, c, nch, items, A, P, G, S, row, frow, n, training)


@njit(**JIT)
def bn_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(BN), np.bool_(False), A, P, G, S, row, frow, n, training)


@njit(**JIT)
def bn_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(BN), np.bool_(True), A, P, G, S, row, frow, n, training)


@njit(**JIT)
def lrn_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(LRN), np.bool_(False), A, P, G, S, row, frow, n, training)


@njit(**JIT)
def lrn_backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] >= 0:
        _run(np.int64(LRN), np.bool_(True), A, P, G, S, row, frow, n, training)
