"""Elementwise activations and SOFTMAX.

One forward and one backward serve all six kinds (switching on row[KIND] outside the loops):
the flat (n * C * H * W) range, or for SOFTMAX the n * H * W pixels, is split into one chunk
per thread. Backward uses only the saved output y:
RELU y > 0, LEAKYRELU y > 0 ? 1 : slope, ELU y > 0 ? 1 : y + alpha, TANH 1 - y^2, SIGMOID y(1 - y).
"""

import numpy as np
from numba import njit, prange

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks
from .config import JIT, PJIT
from .kinds import ELU, LEAKYRELU, RELU, SOFTMAX, TANH


@njit(**JIT)
def _tanh(x):
    """float32 tanh as Eigen's odd rational approximation (<= 4e-7 relative error): unlike the
    libm call it vectorises, 10x faster."""
    c = np.float32(7.90531110763549805)  # tanh(c) rounds to 1 in float32
    x = c if x > c else (-c if x < -c else x)
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(**JIT)
def _fwd_range(op, A, x, y, lo, hi, a):
    a32 = np.float32(a)
    if op == RELU:
        for i in range(lo, hi):
            v = A[U(x + i)]
            A[U(y + i)] = 0.0 if v <= 0.0 else v
    elif op == LEAKYRELU:
        for i in range(lo, hi):
            v = A[U(x + i)]
            A[U(y + i)] = v if v > 0.0 else v * a32
    elif op == ELU:
        for i in range(lo, hi):
            v = A[U(x + i)]
            A[U(y + i)] = v if v > 0.0 else a32 * np.expm1(v)
    elif op == TANH:
        for i in range(lo, hi):
            A[U(y + i)] = _tanh(A[U(x + i)])
    else:
        one = np.float32(1.0)
        for i in range(lo, hi):
            A[U(y + i)] = one / (one + np.exp(-A[U(x + i)]))


@njit(**JIT)
def _bwd_range(op, A, y, dy, dx, lo, hi, a):
    a32, one = np.float32(a), np.float32(1.0)
    if op == RELU:
        for i in range(lo, hi):
            if A[U(y + i)] > 0.0:
                A[U(dx + i)] += A[U(dy + i)]
    elif op == LEAKYRELU:
        for i in range(lo, hi):
            A[U(dx + i)] += A[U(dy + i)] if A[U(y + i)] > 0.0 else A[U(dy + i)] * a32
    elif op == ELU:
        for i in range(lo, hi):
            v = A[U(y + i)]
            A[U(dx + i)] += A[U(dy + i)] if v > 0.0 else A[U(dy + i)] * (v + a32)
    elif op == TANH:
        for i in range(lo, hi):
            v = A[U(y + i)]
            A[U(dx + i)] += A[U(dy + i)] * (one - v * v)
    else:
        for i in range(lo, hi):
            v = A[U(y + i)]
            A[U(dx + i)] += A[U(dy + i)] * (v * (one - v))


# ------------------------------------------------------------------------------------- SOFTMAX
@njit(**JIT)
def _softmax_range(A, x, y, C, HW, lo, hi):
    """Softmax over channels at positions [lo, hi) of the flattened (n, HW) grid."""
    for q in range(lo, hi):
        s, p = q // HW, q % HW
        b = s * C * HW + p
        m = -np.inf
        for c in range(C):
            m = max(m, A[x + b + c * HW])
        z = 0.0
        for c in range(C):
            e = np.exp(np.float64(A[x + b + c * HW]) - m)
            A[y + b + c * HW] = e
            z += e
        inv = 1.0 / z
        for c in range(C):
            A[y + b + c * HW] *= inv


@njit(**JIT)
def _softmax_bwd_range(A, y, dy, dx, C, HW, lo, hi):
    for q in range(lo, hi):
        s, p = q // HW, q % HW
        b = s * C * HW + p
        dot = 0.0
        for c in range(C):
            dot += np.float64(A[dy + b + c * HW]) * A[y + b + c * HW]
        for c in range(C):
            i = b + c * HW
            A[U(dx + i)] += A[U(y + i)] * (A[U(dy + i)] - dot)


# ------------------------------------------------------------------------------- entry points
@njit(**JIT)
def _items(row, n):
    """(items, work): pixels for SOFTMAX (one softmax each), elements for the rest."""
    _, _, C, H, W = inp(row, 0)
    if row[abi.KIND] == SOFTMAX:
        return n * H * W, 4 * n * C * H * W
    return n * C * H * W, n * C * H * W


@njit(**JIT)
def _forward_chunk(c, nch, items, A, row, frow, n):
    lo, hi = chunk(c, nch, items)
    _, _, C, H, W = inp(row, 0)
    x, y = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n
    if row[abi.KIND] == SOFTMAX:
        _softmax_range(A, x, y, C, H * W, lo, hi)
    else:
        _fwd_range(row[abi.KIND], A, x, y, lo, hi, frow[0])


@njit(**JIT)
def _backward_chunk(c, nch, items, A, row, frow, n):
    lo, hi = chunk(c, nch, items)
    _, dxo, C, H, W = inp(row, 0)
    y, dy, dx = row[abi.OUT] * n, row[abi.DOUT] * n, dxo * n
    if row[abi.KIND] == SOFTMAX:
        _softmax_bwd_range(A, y, dy, dx, C, H * W, lo, hi)
    else:
        _bwd_range(row[abi.KIND], A, y, dy, dx, lo, hi, frow[0])


@njit(**PJIT)
def forward(A, P, G, S, W, row, frow, n, training, seed):
    """RELU, LEAKYRELU, ELU, TANH, SIGMOID, SOFTMAX: one chunk per thread."""
    items, work = _items(row, n)
    nch = nchunks(work, items)
    if nch == 1:
        _forward_chunk(np.int64(0), nch, items, A, row, frow, n)
    else:
        for c in prange(nch):
            _forward_chunk(np.int64(c), nch, items, A, row, frow, n)


@njit(**PJIT)
def backward(A, P, G, S, W, row, frow, n, training, seed):
    if row[abi.IN + abi.IN_DOFF] < 0:
        return
    items, work = _items(row, n)
    nch = nchunks(work, items)
    if nch == 1:
        _backward_chunk(np.int64(0), nch, items, A, row, frow, n)
    else:
        for c in prange(nch):
            _backward_chunk(np.int64(c), nch, items, A, row, frow, n)


relu_forward = leakyrelu_forward = elu_forward = tanh_forward = forward
sigmoid_forward = softmax_forward = forward
relu_backward = leakyrelu_backward = elu_backward = tanh_backward = backward
sigmoid_backward = softmax_backward = backward
