"""FLATTEN, DROPOUT, UPSAMPLE, ADD and CONCAT: data movement, split into one chunk per thread.

DROPOUT draws u = hash(seed, flat index) in [0, 1) (splitmix64, counter-based: the same seed
gives the same mask whatever the thread count) and keeps an element when u >= p; the mask
(0 or 1/(1-p)) is stored in the AUX buffer for backward. Inference is a copy.
"""

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .common import chunk, inp, nchunks
from .config import JIT, PJIT


@njit(**JIT)
def _copy_range(A, src, dst, lo, hi):
    A[dst + lo : dst + hi] = A[src + lo : src + hi]


@njit(**JIT)
def _acc_range(A, src, dst, lo, hi):
    for i in range(lo, hi):
        A[dst + i] += A[src + i]


@njit(**JIT)
def _size(row, j):
    _, _, C, H, W = inp(row, j)
    return C * H * W


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
def _dropout_range(A, row, frow, n, seed, lo, hi):
    x, y, mk = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n, row[abi.AUX] * n
    p, zero = frow[0], np.float32(0.0)
    scale = np.float32(1.0 / (1.0 - p)) if p < 1.0 else zero
    key = _mix(np.uint64(seed) ^ _GOLDEN)
    for i in range(lo, hi):
        m = scale if uniform(key, i) >= p else zero
        A[mk + i] = m
        A[y + i] = A[x + i] * m


@njit(**JIT)
def _mask_grad_range(A, row, n, lo, hi):
    dx, dy, mk = row[abi.IN + abi.IN_DOFF] * n, row[abi.DOUT] * n, row[abi.AUX] * n
    for i in range(lo, hi):
        A[dx + i] += A[dy + i] * A[mk + i]


# ------------------------------------------------------------------------------------ UPSAMPLE
@njit(**JIT)
def _up_range(A, row, n, lo, hi, backward):
    xo, dxo, _, H, W = inp(row, 0)
    yo, dyo, Ho, Wo = row[abi.OUT], row[abi.DOUT], row[abi.OH], row[abi.OW]
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


# -------------------------------------------------------------------------------- ADD, CONCAT
@njit(**JIT)
def _add_range(A, row, n, lo, hi):
    y = row[abi.OUT] * n
    _copy_range(A, row[abi.IN + abi.IN_OFF] * n, y, lo, hi)
    for j in range(1, row[abi.NIN]):
        _acc_range(A, row[abi.IN + abi.IN_STRIDE * j + abi.IN_OFF] * n, y, lo, hi)


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


# ------------------------------------------------------------------------------- entry points
COPY, ACC, DROPOUT_F, DROPOUT_B, UPSAMPLE_F, UPSAMPLE_B, ADD_F, CONCAT_F, CONCAT_B = range(9)


@njit(**JIT)
def _chunk(op, c, nch, items, A, row, frow, n, seed, src, dst):
    lo, hi = chunk(c, nch, items)
    if op == COPY:
        _copy_range(A, src, dst, lo, hi)
    elif op == ACC:
        _acc_range(A, src, dst, lo, hi)
    elif op == DROPOUT_F:
        _dropout_range(A, row, frow, n, seed, lo, hi)
    elif op == DROPOUT_B:
        _mask_grad_range(A, row, n, lo, hi)
    elif op == UPSAMPLE_F:
        _up_range(A, row, n, lo, hi, False)
    elif op == UPSAMPLE_B:
        _up_range(A, row, n, lo, hi, True)
    elif op == ADD_F:
        _add_range(A, row, n, lo, hi)
    else:
        _concat_range(A, row, n, lo, hi, op == CONCAT_B)


@njit(**PJIT)
def _run(op, items, work, A, row, frow, n, seed, src, dst):
    """`items` independent items (elements, planes or samples) in one chunk per thread."""
    nch = nchunks(work, items)
    if nch == 1:
        _chunk(op, 0, 1, items, A, row, frow, n, seed, src, dst)
    else:
        for c in prange(nch):
            _chunk(op, c, nch, items, A, row, frow, n, seed, src, dst)


@njit(**JIT)
def _copy(A, row, frow, n, src, dst, accumulate):
    """A[dst:] (+)= A[src:] over input 0's size; src and dst are per-sample offsets."""
    m = n * _size(row, 0)
    op = np.int64(ACC if accumulate else COPY)
    _run(op, m, m, A, row, frow, n, 0, src * n, dst * n)


@njit(**JIT)
def flatten_forward(A, P, G, S, W, row, frow, n, training, seed):
    _copy(A, row, frow, n, row[abi.IN + abi.IN_OFF], row[abi.OUT], False)


@njit(**JIT)
def flatten_backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] >= 0:
        _copy(A, row, frow, n, row[abi.DOUT], row[abi.IN + abi.IN_DOFF], True)


@njit(**JIT)
def dropout_forward(A, P, G, S, W, row, frow, n, training, seed):
    if training:
        m = n * _size(row, 0)
        _run(np.int64(DROPOUT_F), m, 8 * m, A, row, frow, n, seed, 0, 0)
    else:
        _copy(A, row, frow, n, row[abi.IN + abi.IN_OFF], row[abi.OUT], False)


@njit(**JIT)
def dropout_backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] < 0:
        return
    if training:
        m = n * _size(row, 0)
        _run(np.int64(DROPOUT_B), m, m, A, row, frow, n, seed, 0, 0)
    else:
        _copy(A, row, frow, n, row[abi.DOUT], row[abi.IN + abi.IN_DOFF], True)


@njit(**JIT)
def upsample_forward(A, P, G, S, W, row, frow, n, training, seed):
    planes = n * row[abi.OC]
    work = planes * row[abi.OH] * row[abi.OW]
    _run(np.int64(UPSAMPLE_F), planes, work, A, row, frow, n, seed, 0, 0)


@njit(**JIT)
def upsample_backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] >= 0:
        planes = n * row[abi.OC]
        work = planes * row[abi.OH] * row[abi.OW]
        _run(np.int64(UPSAMPLE_B), planes, work, A, row, frow, n, seed, 0, 0)


@njit(**JIT)
def add_forward(A, P, G, S, W, row, frow, n, training, seed):
    m = n * _size(row, 0)
    _run(np.int64(ADD_F), m, m * row[abi.NIN], A, row, frow, n, seed, 0, 0)


@njit(**JIT)
def add_backward(A, P, G, S, W, row, frow, n, training, seed):
    for j in range(row[abi.NIN]):
        dx = row[abi.IN + abi.IN_STRIDE * j + abi.IN_DOFF]
        if dx >= 0:
            _copy(A, row, frow, n, row[abi.DOUT], dx, True)


@njit(**JIT)
def concat_forward(A, P, G, S, W, row, frow, n, training, seed):
    work = n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    _run(np.int64(CONCAT_F), n, work, A, row, frow, n, seed, 0, 0)


@njit(**JIT)
def concat_backward(A, P, G, S, W, row, frow, n, training, seed):
    work = n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    _run(np.int64(CONCAT_B), n, work, A, row, frow, n, seed, 0, 0)
