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
from numba import njit, prange

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks
from .config import JIT, PJIT
from .kinds import BN


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
                    s += A[U(i)]
            mean = s / M
            v = 0.0
            for b in range(n):
                base = xo * n + (b * C + c) * HW
                for i in range(base, base + HW):
                    d = A[U(i)] - mean
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
                A[U(yb + i)] = (A[U(xb + i)] - m32) * scale + shift


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
                g = np.float64(A[U(db + i)])
                sdy += g
                sdyx += g * (A[U(xb + i)] - mean)
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
                A[U(gb + i)] += a * A[U(db + i)] + b1 * (A[U(xb + i)] - m32) + b0


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
                    v = A[U(x + c2 * HW + i)]
                    A[U(y + c * HW + i)] += v * v
        for i in range(C * HW):
            A[U(y + i)] = A[U(x + i)] * (k + a * A[U(y + i)]) ** -beta


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
                    v = np.float64(A[U(x + c2 * HW + p)])
                    q += v * v
                sc[c] = k + a * q
                t[c] = A[U(dy + c * HW + p)] * A[U(x + c * HW + p)] * sc[c] ** (-beta - 1.0)
            for j in range(C):
                q = 0.0
                for c in range(max(j - aft, 0), min(j + bef + 1, C)):
                    q += t[c]
                i = j * HW + p
                A[U(dx + i)] += A[U(dy + i)] * sc[j] ** -beta - 2.0 * a * beta * A[U(x + i)] * q


# ------------------------------------------------------------------------------- entry points
@njit(**JIT)
def _split(row, n):
    """(items, work): BN works on channels, LRN on samples."""
    m = n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    if row[abi.KIND] == BN:
        return row[abi.OC], 3 * m
    return n, row[abi.ATTR] * m


@njit(**JIT)
def _forward_chunk(c, nch, items, A, P, S, row, frow, n, training):
    lo, hi = chunk(c, nch, items)
    if row[abi.KIND] == BN:
        _bn_fwd_range(A, P, S, row, frow, n, training, lo, hi)
    else:
        _lrn_fwd_range(A, row, frow, n, lo, hi)


@njit(**JIT)
def _backward_chunk(c, nch, items, A, P, G, S, row, frow, n, training):
    lo, hi = chunk(c, nch, items)
    if row[abi.KIND] == BN:
        _bn_bwd_range(A, P, G, S, row, frow, n, training, lo, hi)
    elif row[abi.IN + abi.IN_DOFF] >= 0:
        _lrn_bwd_range(A, row, frow, n, lo, hi)


@njit(**PJIT)
def forward(A, P, G, S, W, row, frow, n, training, seed):
    """BN: one chunk of channels per thread; LRN: one chunk of samples per thread."""
    items, work = _split(row, n)
    nch = nchunks(work, items)
    if nch == 1:
        _forward_chunk(np.int64(0), nch, items, A, P, S, row, frow, n, training)
    else:
        for c in prange(nch):
            _forward_chunk(np.int64(c), nch, items, A, P, S, row, frow, n, training)


@njit(**PJIT)
def backward(A, P, G, S, W, row, frow, n, training, seed):
    items, work = _split(row, n)
    nch = nchunks(work, items)
    if nch == 1:
        _backward_chunk(np.int64(0), nch, items, A, P, G, S, row, frow, n, training)
    else:
        for c in prange(nch):
            _backward_chunk(np.int64(c), nch, items, A, P, G, S, row, frow, n, training)


bn_forward = lrn_forward = forward
bn_backward = lrn_backward = backward
