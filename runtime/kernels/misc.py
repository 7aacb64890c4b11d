"""FLATTEN, DROPOUT, UPSAMPLE, ADD and CONCAT: data movement, split into one chunk per thread.

DROPOUT draws u = hash(seed, flat index) in [0, 1) (splitmix64, counter-based: the same seed
gives the same mask whatever the thread count) and keeps an element when u >= p; the mask
(0 or 1/(1-p)) is stored in the AUX buffer for backward. Inference is a copy.
"""

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks
from .config import JIT, PJIT
from .kinds import ADD, CONCAT, DROPOUT, FLATTEN, UPSAMPLE


@njit(**JIT)
def _copy(A, src, dst, m):
    for i in range(m):  # (a loop: slice assignment drags in costly-to-compile checks)
        A[U(dst + i)] = A[U(src + i)]


@njit(**JIT)
def _acc(A, src, dst, m):
    for i in range(m):
        A[U(dst + i)] += A[U(src + i)]


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
        A[U(mk + i)] = m
        A[U(y + i)] = A[U(x + i)] * m


@njit(**JIT)
def _mask_grad_range(A, row, n, lo, hi):
    dx, dy, mk = row[abi.IN + abi.IN_DOFF] * n, row[abi.DOUT] * n, row[abi.AUX] * n
    for i in range(lo, hi):
        A[U(dx + i)] += A[U(dy + i)] * A[U(mk + i)]


# ------------------------------------------------------------------------------------ UPSAMPLE
@njit(**JIT)
def _up_fwd_range(A, row, n, lo, hi):
    _, _, _, H, W = inp(row, 0)
    Ho, Wo, sh, sw = row[abi.OH], row[abi.OW], row[abi.ATTR], row[abi.ATTR + 1]
    for q in range(lo, hi):  # plane q = sample * C + channel
        x, y = row[abi.IN + abi.IN_OFF] * n + q * H * W, row[abi.OUT] * n + q * Ho * Wo
        for oh in range(Ho):
            xr, yr = x + (oh // sh) * W, y + oh * Wo
            w, k = 0, 0
            for ow in range(Wo):  # w = ow // sw, counted
                A[U(yr + ow)] = A[U(xr + w)]
                k += 1
                if k == sw:
                    w, k = w + 1, 0


@njit(**JIT)
def _up_bwd_range(A, row, n, lo, hi):
    _, dxo, _, H, W = inp(row, 0)
    Ho, Wo, sh, sw = row[abi.OH], row[abi.OW], row[abi.ATTR], row[abi.ATTR + 1]
    for q in range(lo, hi):
        dx, dy = dxo * n + q * H * W, row[abi.DOUT] * n + q * Ho * Wo
        for oh in range(Ho):
            xr, yr = dx + (oh // sh) * W, dy + oh * Wo
            w, k = 0, 0
            for ow in range(Wo):
                A[U(xr + w)] += A[U(yr + ow)]
                k += 1
                if k == sw:
                    w, k = w + 1, 0


# -------------------------------------------------------------------------------- ADD, CONCAT
@njit(**JIT)
def _add_fwd_range(A, row, n, lo, hi):
    y = row[abi.OUT] * n
    _copy(A, row[abi.IN + abi.IN_OFF] * n + lo, y + lo, hi - lo)
    for j in range(1, row[abi.NIN]):
        _acc(A, row[abi.IN + abi.IN_STRIDE * j + abi.IN_OFF] * n + lo, y + lo, hi - lo)


@njit(**JIT)
def _add_bwd_range(A, row, n, lo, hi):
    for j in range(row[abi.NIN]):
        dx = row[abi.IN + abi.IN_STRIDE * j + abi.IN_DOFF]
        if dx >= 0:
            _acc(A, row[abi.DOUT] * n + lo, dx * n + lo, hi - lo)


@njit(**JIT)
def _concat_range(A, row, n, lo, hi, backward):
    """Samples [lo, hi): copy each input into its channel range of y, or (backward) add the
    matching range of dy into each input gradient."""
    Co, HW = row[abi.OC], row[abi.OH] * row[abi.OW]
    for s in range(lo, hi):
        d = (row[abi.DOUT] if backward else row[abi.OUT]) * n + s * Co * HW
        for j in range(row[abi.NIN]):
            xo, dxo, C, _, _ = inp(row, j)
            m = C * HW
            if not backward:
                _copy(A, xo * n + s * m, d, m)
            elif dxo >= 0:
                _acc(A, d, dxo * n + s * m, m)
            d += m


# ------------------------------------------------------------------------------- entry points
_FORWARD, _BACKWARD = np.bool_(False), np.bool_(True)  # numpy scalars are not typed as literals


@njit(**JIT)
def _split(row, n, training):
    """(items, work): elements (FLATTEN, DROPOUT, ADD), planes (UPSAMPLE) or samples (CONCAT)."""
    kind, m = row[abi.KIND], n * _size(row, 0)
    if kind == UPSAMPLE:
        return n * row[abi.OC], n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    if kind == CONCAT:
        return n, n * row[abi.OC] * row[abi.OH] * row[abi.OW]
    if kind == ADD:
        return m, m * row[abi.NIN]
    return m, 8 * m if kind == DROPOUT and training else m


@njit(**JIT)
def _forward_chunk(c, nch, items, A, row, frow, n, training, seed):
    lo, hi = chunk(c, nch, items)
    kind = row[abi.KIND]
    if kind == DROPOUT and training:
        _dropout_range(A, row, frow, n, seed, lo, hi)
    elif kind in (FLATTEN, DROPOUT):
        _copy(A, row[abi.IN + abi.IN_OFF] * n + lo, row[abi.OUT] * n + lo, hi - lo)
    elif kind == UPSAMPLE:
        _up_fwd_range(A, row, n, lo, hi)
    elif kind == ADD:
        _add_fwd_range(A, row, n, lo, hi)
    else:
        _concat_range(A, row, n, lo, hi, _FORWARD)


@njit(**JIT)
def _backward_chunk(c, nch, items, A, row, n, training):
    lo, hi = chunk(c, nch, items)
    kind = row[abi.KIND]
    if kind == DROPOUT and training:
        _mask_grad_range(A, row, n, lo, hi)
    elif kind in (FLATTEN, DROPOUT):
        _acc(A, row[abi.DOUT] * n + lo, row[abi.IN + abi.IN_DOFF] * n + lo, hi - lo)
    elif kind == UPSAMPLE:
        _up_bwd_range(A, row, n, lo, hi)
    elif kind == ADD:
        _add_bwd_range(A, row, n, lo, hi)
    else:
        _concat_range(A, row, n, lo, hi, _BACKWARD)


@njit(**PJIT)
def forward(A, P, G, S, W, row, frow, n, training, seed):
    """FLATTEN, DROPOUT, UPSAMPLE, ADD, CONCAT: one chunk of items per thread."""
    items, work = _split(row, n, training)
    nch = nchunks(work, items)
    if nch == 1:
        _forward_chunk(np.int64(0), nch, items, A, row, frow, n, training, seed)
    else:
        for c in prange(nch):
            _forward_chunk(np.int64(c), nch, items, A, row, frow, n, training, seed)


@njit(**PJIT)
def backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.KIND] != ADD and row[abi.KIND] != CONCAT and row[abi.IN + abi.IN_DOFF] < 0:
        return
    items, work = _split(row, n, training)
    nch = nchunks(work, items)
    if nch == 1:
        _backward_chunk(np.int64(0), nch, items, A, row, n, training)
    else:
        for c in prange(nch):
            _backward_chunk(np.int64(c), nch, items, A, row, n, training)


flatten_forward = dropout_forward = upsample_forward = add_forward = concat_forward = forward
flatten_backward = dropout_backward = upsample_backward = add_backward = backward
concat_backward = backward
