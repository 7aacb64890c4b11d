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

RELU, LEAKYRELU, ELU, TANH, SIGMOID, SOFTMAX = 0, 1, 2, 3, 4, 5


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


# ------------------------------------------------------------------------------- entry points
@njit(**JIT)
def _chunk(op, backward, c, nch, items, A, row, frow, n):
    lo, hi = chunk(c, nch, items)
    _, dxo, C, H, W = inp(row, 0)
    x, dx, y, dy = row[abi.IN + abi.IN_OFF] * n, dxo * n, row[abi.OUT] * n, row[abi.DOUT] * n
    if op == SOFTMAX:
        if backward:
            _softmax_bwd_range(A, y, dy, dx, C, H * W, lo, hi)
        else:
            _softmax_range(A, x, y, C, H * W, lo, hi)
    elif backward:
        _bwd_range(op, A, y, dy, dx, lo, hi, frow[0])
    else:
        _fwd_range(op, A, x, y, lo, hi, frow[0])


@njit(**PJIT)
def _run(op, backward, A, row, frow, n):
    """Chunks of the flat tensor (softmax: of the n * H * W pixels), one per thread."""
    _, dxo, C, H, W = inp(row, 0)
    if backward and dxo < 0:
        return
    items = n * H * W if op == SOFTMAX else n * C * H * W
    nch = nchunks(4 * n * C * H * W if op == SOFTMAX else n * C * H * W, items)
    if nch == 1:
        _chunk(op, backward, 0, 1, items, A, row, frow, n)
    else:
        for c in prange(nch):
            _chunk(op, backward, c, nch, items, A, row, frow, n)


@njit(**JIT)
def relu_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(RELU), np.bool_(False), A, row, frow, n)


@njit(**JIT)
def relu_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(RELU), np.bool_(True), A, row, frow, n)


@njit(**JIT)
def leakyrelu_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(LEAKYRELU), np.bool_(False), A, row, frow, n)


@njit(**JIT)
def leakyrelu_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(LEAKYRELU), np.bool_(True), A, row, frow, n)


@njit(**JIT)
def elu_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(ELU), np.bool_(False), A, row, frow, n)


@njit(**JIT)
def elu_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(ELU), np.bool_(True), A, row, frow, n)


@njit(**JIT)
def tanh_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(TANH), np.bool_(False), A, row, frow, n)


@njit(**JIT)
def tanh_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(TANH), np.bool_(True), A, row, frow, n)


@njit(**JIT)
def sigmoid_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(SIGMOID), np.bool_(False), A, row, frow, n)


@njit(**JIT)
def sigmoid_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(SIGMOID), np.bool_(True), A, row, frow, n)


@njit(**JIT)
def softmax_forward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(SOFTMAX), np.bool_(False), A, row, frow, n)


@njit(**JIT)
def softmax_backward(A, P, G, S, W, row, frow, n, training, seed):
    _run(np.int64(SOFTMAX), np.bool_(True), A, row, frow, n)
