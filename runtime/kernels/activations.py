"""Elementwise activations and SOFTMAX.

The five pointwise activations share one parallel driver per direction that splits the flat
(n * C * H * W) range into one chunk per thread and runs a tight loop per op; the op is chosen
outside the loop. Backward uses only the saved output y:
RELU y > 0, LEAKYRELU y > 0 ? 1 : slope, ELU y > 0 ? 1 : y + alpha, TANH 1 - y^2, SIGMOID y(1 - y).
"""

import numpy as np
from cnnc.compiler import abi
from numba import njit, prange

from .common import chunk, inp, nchunks
from .config import JIT, PJIT

RELU, LEAKYRELU, ELU, TANH, SIGMOID = 0, 1, 2, 3, 4


@njit(**JIT)
def _fwd_range(op, A, x, y, lo, hi, a):
    a32 = np.float32(a)
    if op == RELU:
        for i in range(lo, hi):
            v = A[x + i]
            A[y + i] = 0.0 if v <= 0.0 else v
    elif op == LEAKYRELU:
        for i in range(lo, hi):
            v = A[x + i]
            A[y + i] = v if v > 0.0 else v * a32
    elif op == ELU:
        for i in range(lo, hi):
            v = A[x + i]
            A[y + i] = v if v > 0.0 else a32 * np.expm1(v)
    elif op == TANH:
        for i in range(lo, hi):
            A[y + i] = np.tanh(A[x + i])
    else:
        one = np.float32(1.0)
        for i in range(lo, hi):
            A[y + i] = one / (one + np.exp(-A[x + i]))


@njit(**JIT)
def _bwd_range(op, A, y, dy, dx, lo, hi, a):
    a32, one = np.float32(a), np.float32(1.0)
    if op == RELU:
        for i in range(lo, hi):
            if A[y + i] > 0.0:
                A[dx + i] += A[dy + i]
    elif op == LEAKYRELU:
        for i in range(lo, hi):
            A[dx + i] += A[dy + i] if A[y + i] > 0.0 else A[dy + i] * a32
    elif op == ELU:
        for i in range(lo, hi):
            v = A[y + i]
            A[dx + i] += A[dy + i] if v > 0.0 else A[dy + i] * (v + a32)
    elif op == TANH:
        for i in range(lo, hi):
            v = A[y + i]
            A[dx + i] += A[dy + i] * (one - v * v)
    else:
        for i in range(lo, hi):
            v = A[y + i]
            A[dx + i] += A[dy + i] * (v * (one - v))


@njit(**PJIT)
def _forward(op, A, row, frow, n):
    xo, _, C, H, W = inp(row, 0)
    m = n * C * H * W
    x, y, a = xo * n, row[abi.OUT] * n, frow[0]
    nch = nchunks(m, m)
    if nch == 1:
        _fwd_range(op, A, x, y, 0, m, a)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, m)
            _fwd_range(op, A, x, y, lo, hi, a)


@njit(**PJIT)
def _backward(op, A, row, frow, n):
    _, dxo, C, H, W = inp(row, 0)
    if dxo < 0:
        return
    m = n * C * H * W
    y, dy, dx, a = row[abi.OUT] * n, row[abi.DOUT] * n, dxo * n, frow[0]
    nch = nchunks(m, m)
    if nch == 1:
        _bwd_range(op, A, y, dy, dx, 0, m, a)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, m)
            _bwd_range(op, A, y, dy, dx, lo, hi, a)


@njit(**JIT)
def relu_forward(A, P, G, S, W, row, frow, n, training, seed):
    _forward(RELU, A, row, frow, n)


@njit(**JIT)
def relu_backward(A, P, G, S, W, row, frow, n, training, seed):
    _backward(RELU, A, row, frow, n)


@njit(**JIT)
def leakyrelu_forward(A, P, G, S, W, row, frow, n, training, seed):
    _forward(LEAKYRELU, A, row, frow, n)


@njit(**JIT)
def leakyrelu_backward(A, P, G, S, W, row, frow, n, training, seed):
    _backward(LEAKYRELU, A, row, frow, n)


@njit(**JIT)
def elu_forward(A, P, G, S, W, row, frow, n, training, seed):
    _forward(ELU, A, row, frow, n)


@njit(**JIT)
def elu_backward(A, P, G, S, W, row, frow, n, training, seed):
    _backward(ELU, A, row, frow, n)


@njit(**JIT)
def tanh_forward(A, P, G, S, W, row, frow, n, training, seed):
    _forward(TANH, A, row, frow, n)


@njit(**JIT)
def tanh_backward(A, P, G, S, W, row, frow, n, training, seed):
    _backward(TANH, A, row, frow, n)


@njit(**JIT)
def sigmoid_forward(A, P, G, S, W, row, frow, n, training, seed):
    _forward(SIGMOID, A, row, frow, n)


@njit(**JIT)
def sigmoid_backward(A, P, G, S, W, row, frow, n, training, seed):
    _backward(SIGMOID, A, row, frow, n)


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
            A[dx + i] += A[y + i] * (A[dy + i] - dot)


@njit(**PJIT)
def softmax_forward(A, P, G, S, W, row, frow, n, training, seed):
    xo, _, C, H, Wd = inp(row, 0)
    x, y, q = xo * n, row[abi.OUT] * n, n * H * Wd
    nch = nchunks(4 * q * C, q)
    if nch == 1:
        _softmax_range(A, x, y, C, H * Wd, 0, q)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, q)
            _softmax_range(A, x, y, C, H * Wd, lo, hi)


@njit(**PJIT)
def softmax_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dxo, C, H, Wd = inp(row, 0)
    if dxo < 0:
        return
    y, dy, dx, q = row[abi.OUT] * n, row[abi.DOUT] * n, dxo * n, n * H * Wd
    nch = nchunks(4 * q * C, q)
    if nch == 1:
        _softmax_bwd_range(A, y, dy, dx, C, H * Wd, 0, q)
    else:
        for c in prange(nch):
            lo, hi = chunk(c, nch, q)
            _softmax_bwd_range(A, y, dy, dx, C, H * Wd, lo, hi)
