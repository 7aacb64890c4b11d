"""FLATTEN, DROPOUT, UPSAMPLE, ADD and CONCAT: data movement, split into one chunk per thread.

DROPOUT draws u = hash(seed, flat index) in [0, 1) (splitmix64, counter-based: the same seed
gives the same mask whatever the thread count) and keeps an element when u >= p; the mask
(0 or 1/(1-p)) is stored in the AUX buffer for backward. Inference is a copy.
"""

import numpy as np
from cnnc.compiler import abi
from numba import njit, prange

from .common import chunk, inp, nchunks, out
from .config import JIT, PJIT


@njit(**JIT)
def _copy_range(A, src, dst, lo, hi):
    A[dst + lo : dst + hi] = A[src + lo : src + hi]


@njit(**JIT)
def _acc_range(A, src, dst, lo, hi):
    for i in range(lo, hi):
        A[dst + i] += A[src + i]


@njit(**PJIT)
def _copy(A, src, dst, m, accumulate):
    """A[dst:dst+m] (+)= A[src:src+m], in parallel chunks when large."""
    nch = nchunks(m, m)
    if nch == 1:
        if accumulate:
            _acc_range(A, src, dst, 0, m)
        else:
            _copy_range(A, src, dst, 0, m)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, m)
            if accumulate:
                _acc_range(A, src, dst, lo, hi)
            else:
                _copy_range(A, src, dst, lo, hi)


@njit(**JIT)
def _size(row, j):
    _, _, C, H, W = inp(row, j)
    return C * H * W


# ------------------------------------------------------------------------------------- FLATTEN
@njit(**JIT)
def flatten_forward(A, P, G, S, W, row, frow, n, training, seed):
    _copy(A, row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n, n * _size(row, 0), False)


@njit(**JIT)
def flatten_backward(A, P, G, S, W, row, frow, n, training, seed):
    dxo = row[abi.IN + abi.IN_DOFF]
    if dxo >= 0:
        _copy(A, row[abi.DOUT] * n, dxo * n, n * _size(row, 0), True)


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
def _dropout_range(A, x, y, mk, lo, hi, key, p, scale):
    zero = np.float32(0.0)
    for i in range(lo, hi):
        m = scale if uniform(key, i) >= p else zero
        A[mk + i] = m
        A[y + i] = A[x + i] * m


@njit(**JIT)
def _mask_grad_range(A, dy, dx, mk, lo, hi):
    for i in range(lo, hi):
        A[dx + i] += A[dy + i] * A[mk + i]


@njit(**PJIT)
def dropout_forward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row, 0)
    x, y = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n
    if not training:
        _copy(A, x, y, m, False)
        return
    p = frow[0]
    scale = np.float32(1.0 / (1.0 - p)) if p < 1.0 else np.float32(0.0)
    key = _mix(np.uint64(seed) ^ _GOLDEN)
    mk = row[abi.AUX] * n
    nch = nchunks(8 * m, m)
    if nch == 1:
        _dropout_range(A, x, y, mk, 0, m, key, p, scale)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, m)
            _dropout_range(A, x, y, mk, lo, hi, key, p, scale)


@njit(**PJIT)
def dropout_backward(A, P, G, S, W, row, frow, n, training, seed):
    dx = row[abi.IN + abi.IN_DOFF] * n
    if dx < 0:
        return
    m, dy = n * _size(row, 0), row[abi.DOUT] * n
    if not training:
        _copy(A, dy, dx, m, True)
        return
    mk = row[abi.AUX] * n
    nch = nchunks(m, m)
    if nch == 1:
        _mask_grad_range(A, dy, dx, mk, 0, m)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, m)
            _mask_grad_range(A, dy, dx, mk, lo, hi)


# ------------------------------------------------------------------------------------ UPSAMPLE
@njit(**JIT)
def _up_range(A, row, n, lo, hi, backward):
    xo, dxo, _, H, W = inp(row, 0)
    yo, dyo, _, Ho, Wo = out(row)
    sh, sw = row[abi.ATTR], row[abi.ATTR + 1]
    for q in range(lo, hi):  # plane q = sample * C + channel
        if backward:
            x, y = dxo * n + q * H * W, dyo * n + q * Ho * Wo
            for h in range(H):
                for r in range(sh):
                    yr = y + (h * sh + r) * Wo
                    for w in range(W):
                        s = A[yr + w * sw]
                        for k in range(1, sw):
                            s += A[yr + w * sw + k]
                        A[x + h * W + w] += s
        else:
            x, y = xo * n + q * H * W, yo * n + q * Ho * Wo
            for h in range(H):
                yr = y + h * sh * Wo
                for w in range(W):
                    v = A[x + h * W + w]
                    for k in range(sw):
                        A[yr + w * sw + k] = v
                for r in range(1, sh):
                    A[yr + r * Wo : yr + (r + 1) * Wo] = A[yr : yr + Wo]


@njit(**PJIT)
def _upsample(A, row, n, backward):
    planes = n * row[abi.OC]
    nch = nchunks(planes * row[abi.OH] * row[abi.OW], planes)
    if nch == 1:
        _up_range(A, row, n, 0, planes, backward)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, planes)
            _up_range(A, row, n, lo, hi, backward)


@njit(**JIT)
def upsample_forward(A, P, G, S, W, row, frow, n, training, seed):
    _upsample(A, row, n, False)


@njit(**JIT)
def upsample_backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] >= 0:
        _upsample(A, row, n, True)


# ----------------------------------------------------------------------------------------- ADD
@njit(**JIT)
def _add_range(A, row, n, lo, hi):
    y = row[abi.OUT] * n
    _copy_range(A, row[abi.IN + abi.IN_OFF] * n, y, lo, hi)
    for j in range(1, row[abi.NIN]):
        _acc_range(A, row[abi.IN + abi.IN_STRIDE * j + abi.IN_OFF] * n, y, lo, hi)


@njit(**PJIT)
def add_forward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row, 0)
    nch = nchunks(m * row[abi.NIN], m)
    if nch == 1:
        _add_range(A, row, n, 0, m)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, m)
            _add_range(A, row, n, lo, hi)


@njit(**JIT)
def add_backward(A, P, G, S, W, row, frow, n, training, seed):
    m, dy = n * _size(row, 0), row[abi.DOUT] * n
    for j in range(row[abi.NIN]):
        dx = row[abi.IN + abi.IN_STRIDE * j + abi.IN_DOFF]
        if dx >= 0:
            _copy(A, dy, dx * n, m, True)


# -------------------------------------------------------------------------------------- CONCAT
@njit(**JIT)
def _concat_range(A, row, n, lo, hi, backward):
    Co, HW = row[abi.OC], row[abi.OH] * row[abi.OW]
    y = (row[abi.DOUT] if backward else row[abi.OUT]) * n
    for s in range(lo, hi):
        c0 = 0
        for j in range(row[abi.NIN]):
            xo, dxo, C, _, _ = inp(row, j)
            m, d = C * HW, y + (s * Co + c0) * HW
            if backward:
                if dxo >= 0:
                    _acc_range(A, d, dxo * n + s * m, 0, m)
            else:
                _copy_range(A, xo * n + s * m, d, 0, m)
            c0 += C


@njit(**PJIT)
def _concat(A, row, n, backward):
    nch = nchunks(n * row[abi.OC] * row[abi.OH] * row[abi.OW], n)
    if nch == 1:
        _concat_range(A, row, n, 0, n, backward)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, n)
            _concat_range(A, row, n, lo, hi, backward)


@njit(**JIT)
def concat_forward(A, P, G, S, W, row, frow, n, training, seed):
    _concat(A, row, n, False)


@njit(**JIT)
def concat_backward(A, P, G, S, W, row, frow, n, training, seed):
    _concat(A, row, n, True)
