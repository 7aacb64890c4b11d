"""POOL: max / avg / sum pooling, one (sample, channel) plane per work item.

Windows are clipped to the input (max ignores padding, as with torch's -inf padding); the avg
divisor is torch's: the window clipped to [-pad, size + pad) with count_include_pad, else the
number of real elements. Max backward recomputes the window and routes the gradient to the first
maximum, so no index buffer is needed.
"""

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks, out
from .config import JIT, PJIT

MAX, AVG, SUM = 0, 1, 2


@njit(**JIT)
def _attrs(row):
    a = abi.ATTR
    return (
        row[a], row[a + 1], row[a + 2], row[a + 3],
        row[a + 4], row[a + 5], row[a + 6], row[a + 7],
    )  # fmt: skip


@njit(**JIT)
def _window(o, stride, pad, k, size):
    """Clipped window [lo, hi) of output o, and its extent clipped to [-pad, size + pad)."""
    lo = o * stride - pad
    hi = min(lo + k, size + pad)
    padded = hi - lo
    return max(lo, 0), min(hi, size), padded


@njit(**JIT)
def _divisor(mode, cip, hlo, hhi, hpad, wlo, whi, wpad):
    if mode == SUM:
        return 1.0
    if cip:
        return float(hpad * wpad)
    return float((hhi - hlo) * (whi - wlo))


@njit(**JIT)
def _argmax(A, x, W, hlo, hhi, wlo, whi):
    """Flat index (in the plane) of the first maximum of the window; NaN wins, as in torch."""
    best, m = hlo * W + wlo, -np.inf
    for h in range(hlo, hhi):
        for w in range(wlo, whi):
            v = A[U(x + h * W + w)]
            if v > m or np.isnan(v):
                m, best = v, h * W + w
                if np.isnan(v):
                    return best
    return best


@njit(**JIT)
def _fwd(A, row, n, lo, hi):
    xo, _, C, H, W = inp(row, 0)
    yo, _, _, Ho, Wo = out(row)
    kh, kw, sh, sw, ph, pw, mode, cip = _attrs(row)
    for q in range(lo, hi):  # plane q = sample * C + channel
        x, y = xo * n + q * H * W, yo * n + q * Ho * Wo
        for oh in range(Ho):
            hlo, hhi, hpad = _window(oh, sh, ph, kh, H)
            for ow in range(Wo):
                wlo, whi, wpad = _window(ow, sw, pw, kw, W)
                if hlo >= hhi or wlo >= whi:
                    A[U(y + oh * Wo + ow)] = -np.inf if mode == MAX else 0.0
                elif mode == MAX:
                    A[U(y + oh * Wo + ow)] = A[U(x + _argmax(A, x, W, hlo, hhi, wlo, whi))]
                else:
                    s = 0.0
                    for h in range(hlo, hhi):
                        for w in range(wlo, whi):
                            s += A[U(x + h * W + w)]
                    A[U(y + oh * Wo + ow)] = s / _divisor(mode, cip, hlo, hhi, hpad, wlo, whi, wpad)


@njit(**JIT)
def _bwd(A, row, n, lo, hi):
    xo, dxo, C, H, W = inp(row, 0)
    _, dyo, _, Ho, Wo = out(row)
    kh, kw, sh, sw, ph, pw, mode, cip = _attrs(row)
    for q in range(lo, hi):
        x, dx, dy = xo * n + q * H * W, dxo * n + q * H * W, dyo * n + q * Ho * Wo
        for oh in range(Ho):
            hlo, hhi, hpad = _window(oh, sh, ph, kh, H)
            for ow in range(Wo):
                wlo, whi, wpad = _window(ow, sw, pw, kw, W)
                if hlo >= hhi or wlo >= whi:
                    continue
                g = A[U(dy + oh * Wo + ow)]
                if mode == MAX:
                    A[U(dx + _argmax(A, x, W, hlo, hhi, wlo, whi))] += g
                else:
                    g = np.float32(g / _divisor(mode, cip, hlo, hhi, hpad, wlo, whi, wpad))
                    for h in range(hlo, hhi):
                        for w in range(wlo, whi):
                            A[U(dx + h * W + w)] += g


@njit(**JIT)
def _split(row, n):
    """(planes, work): one (sample, channel) plane per item."""
    planes = n * row[abi.OC]
    return planes, planes * row[abi.OH] * row[abi.OW] * row[abi.ATTR] * row[abi.ATTR + 1]


@njit(**PJIT)
def forward(A, P, G, S, W, row, frow, n, training, seed):
    planes, work = _split(row, n)
    nch = nchunks(work, planes)
    if nch == 1:
        lo, hi = chunk(np.int64(0), nch, planes)
        _fwd(A, row, n, lo, hi)
    else:
        for c in prange(nch):
            lo, hi = chunk(np.int64(c), nch, planes)
            _fwd(A, row, n, lo, hi)


@njit(**PJIT)
def backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] < 0:
        return
    planes, work = _split(row, n)
    nch = nchunks(work, planes)
    if nch == 1:
        lo, hi = chunk(np.int64(0), nch, planes)
        _bwd(A, row, n, lo, hi)
    else:
        for c in prange(nch):
            lo, hi = chunk(np.int64(c), nch, planes)
            _bwd(A, row, n, lo, hi)


pool_forward, pool_backward = forward, backward
