"""Activations as forward/backward pairs: RELU, RELU6, LEAKYRELU, ELU, TANH, SIGMOID, SOFTMAX,
and SILU, HSWISH, HSIGMOID, GELU, MISH.

A pair works on plain float32 arrays: `x_forward(out, inp, ...)` writes out, and
`x_backward(dinp, dout, out, ...)` accumulates into dinp from the saved output alone:
RELU y > 0, RELU6 0 < y < 6, LEAKYRELU y > 0 ? 1 : slope, ELU y > 0 ? 1 : y + alpha,
TANH 1 - y^2, SIGMOID y(1 - y), HSIGMOID 0 < y < 1 ? 1/6 : 0.
SILU, HSWISH, GELU and MISH are not invertible, so theirs read the saved input instead:
`x_backward(dinp, dout, inp, ...)` (registry: saves "input"; `elementwise(..., reads="input")`).
They run in float32, tanh and erf as rational approximations that vectorise (`_tanh`, `_erf`),
SIGMOID and SILU with a float32 exp that vectorises (`_exp`), MISH's tanh(softplus(x)) from one
exp.
Pointwise kinds get their row adapters from `elementwise`, which cuts the flat n*C*H*W range into
one chunk per thread; SOFTMAX (over channels) cuts the n*H*W pixels.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from cnnc.compiler import abi

from .common import U, chunk, inp, nchunks, parallel_chunks, specialise
from .config import JIT


@njit(**JIT)
def relu_forward(out, inp):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = 0.0 if v <= 0.0 else v


@njit(**JIT)
def relu_backward(dinp, dout, out):
    for i in range(out.size):
        if out[U(i)] > 0.0:
            dinp[U(i)] += dout[U(i)]


@njit(**JIT)
def relu6_forward(out, inp):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = 0.0 if v <= 0.0 else (6.0 if v >= 6.0 else v)


@njit(**JIT)
def relu6_backward(dinp, dout, out):
    for i in range(out.size):
        v = out[U(i)]
        if v > 0.0 and v < 6.0:
            dinp[U(i)] += dout[U(i)]


@njit(**JIT)
def leakyrelu_forward(out, inp, slope):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = v if v > 0.0 else v * slope


@njit(**JIT)
def leakyrelu_backward(dinp, dout, out, slope):
    for i in range(out.size):
        dinp[U(i)] += dout[U(i)] if out[U(i)] > 0.0 else dout[U(i)] * slope


@njit(**JIT)
def elu_forward(out, inp, alpha):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = v if v > 0.0 else alpha * np.expm1(v)


@njit(**JIT)
def elu_backward(dinp, dout, out, alpha):
    for i in range(out.size):
        v = out[U(i)]
        dinp[U(i)] += dout[U(i)] if v > 0.0 else dout[U(i)] * (v + alpha)


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


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 `bits` (a bitcast, which vectorises)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(**JIT)
def _exp(x):
    """float32 exp as Cephes' expf (2^k times a polynomial of the remainder; measured within
    1.4 ulp of the exact value) with 2^k built from its bits: unlike the libm call it vectorises
    (SILU forward 2x faster). Clamped to the normal range, [1.2e-38, 2.4e38] (torch's float32 exp
    goes on to 0 and inf); NaN stays NaN."""
    lo, hi = np.float32(-87.33654), np.float32(88.37626)
    c = hi if x > hi else (lo if x < lo else x)
    c = c if x == x else np.float32(0.0)  # NaN to an int below would be undefined
    k = np.floor(c * np.float32(1.44269504088896341) + np.float32(0.5))
    r = c - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    e = (p * (r * r) + r + np.float32(1.0)) * _float32_from_bits((np.int32(k) + 127) << 23)
    return e if x == x else x


@njit(**JIT)
def tanh_forward(out, inp):
    for i in range(inp.size):
        out[U(i)] = _tanh(inp[U(i)])


@njit(**JIT)
def tanh_backward(dinp, dout, out):
    one = np.float32(1.0)
    for i in range(out.size):
        v = out[U(i)]
        dinp[U(i)] += dout[U(i)] * (one - v * v)


@njit(**JIT)
def sigmoid_forward(out, inp):
    one = np.float32(1.0)
    for i in range(inp.size):
        out[U(i)] = one / (one + _exp(-inp[U(i)]))


@njit(**JIT)
def sigmoid_backward(dinp, dout, out):
    one = np.float32(1.0)
    for i in range(out.size):
        v = out[U(i)]
        dinp[U(i)] += dout[U(i)] * (v * (one - v))


@njit(**JIT)
def softmax_forward(out, inp, C, HW, lo, hi):
    """Softmax over the C channels at pixels [lo, hi) of the (n, HW) grid of (n, C, HW) arrays."""
    for q in range(lo, hi):
        s, p = q // HW, q % HW
        b = s * C * HW + p
        m = -np.inf
        for c in range(C):
            m = max(m, inp[b + c * HW])
        z = 0.0
        for c in range(C):
            e = np.exp(np.float64(inp[b + c * HW]) - m)
            out[b + c * HW] = e
            z += e
        inv = 1.0 / z
        for c in range(C):
            out[b + c * HW] *= inv


@njit(**JIT)
def softmax_backward(dinp, dout, out, C, HW, lo, hi):
    for q in range(lo, hi):
        s, p = q // HW, q % HW
        b = s * C * HW + p
        dot = 0.0
        for c in range(C):
            dot += np.float64(dout[b + c * HW]) * out[b + c * HW]
        for c in range(C):
            i = b + c * HW
            dinp[U(i)] += out[U(i)] * (dout[U(i)] - dot)


@njit(**JIT)
def _sigmoid(v):
    return np.float32(1.0) / (np.float32(1.0) + _exp(-v))


@njit(**JIT)
def silu_forward(out, inp):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = v * _sigmoid(v)


@njit(**JIT)
def silu_backward(dinp, dout, inp):
    one = np.float32(1.0)
    for i in range(inp.size):
        v = inp[U(i)]
        s = _sigmoid(v)
        dinp[U(i)] += dout[U(i)] * (s * (one + v * (one - s)))


@njit(**JIT)
def hswish_forward(out, inp):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = 0.0 if v <= -3.0 else (v if v >= 3.0 else v * (v + 3.0) / 6.0)


@njit(**JIT)
def hswish_backward(dinp, dout, inp):
    """torch's branches: 0 up to -3, x/3 + 1/2 inside, 1 from 3 on."""
    for i in range(inp.size):
        v = inp[U(i)]
        if v >= 3.0:
            dinp[U(i)] += dout[U(i)]
        elif v > -3.0:
            dinp[U(i)] += dout[U(i)] * (v / 3.0 + 0.5)


@njit(**JIT)
def hsigmoid_forward(out, inp):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = 0.0 if v <= -3.0 else (1.0 if v >= 3.0 else (v + 3.0) / 6.0)


@njit(**JIT)
def hsigmoid_backward(dinp, dout, out):
    for i in range(out.size):
        v = out[U(i)]
        if v > 0.0 and v < 1.0:
            dinp[U(i)] += dout[U(i)] * np.float32(1.0 / 6.0)


@njit(**JIT)
def _erf(x):
    """float32 erf as Eigen's odd rational approximation (<= 5e-7 absolute error): vectorises,
    unlike the libm call (10x slower here)."""
    c = np.float32(4.0)  # erf(4) rounds to 1 in float32
    x = c if x > c else (-c if x < -c else x)
    x2 = x * x
    p = x2 * np.float32(-2.72614225801306e-10) + np.float32(2.77068142495902e-08)
    p = p * x2 + np.float32(-2.10102402082508e-06)
    p = p * x2 + np.float32(-5.69250639462346e-05)
    p = p * x2 + np.float32(-7.34990630326855e-04)
    p = p * x2 + np.float32(-2.95459980854025e-03)
    p = p * x2 + np.float32(-1.60960333262415e-02)
    q = x2 * np.float32(-1.45660718464996e-05) + np.float32(-2.13374055278905e-04)
    q = q * x2 + np.float32(-1.68282697438203e-03)
    q = q * x2 + np.float32(-7.37332916720468e-03)
    q = q * x2 + np.float32(-1.42647390514189e-02)
    return x * p / q


_SQRT_HALF, _INV_SQRT_2PI = np.float32(math.sqrt(0.5)), np.float32(1.0 / math.sqrt(2.0 * math.pi))
_TANH_K, _TANH_C = np.float32(math.sqrt(2.0 / math.pi)), np.float32(0.044715)


@njit(**JIT)
def gelu_forward(out, inp, tanh):
    half, one = np.float32(0.5), np.float32(1.0)
    for i in range(inp.size):
        v = inp[U(i)]
        if tanh:
            out[U(i)] = half * v * (one + _tanh(_TANH_K * (v + _TANH_C * v * v * v)))
        else:
            out[U(i)] = half * v * (one + _erf(v * _SQRT_HALF))


@njit(**JIT)
def gelu_backward(dinp, dout, inp, tanh):
    half, one = np.float32(0.5), np.float32(1.0)
    for i in range(inp.size):
        v = inp[U(i)]
        if tanh:
            t = _tanh(_TANH_K * (v + _TANH_C * v * v * v))
            dv = _TANH_K * (one + np.float32(3.0) * _TANH_C * v * v)
            dinp[U(i)] += dout[U(i)] * (half * (one + t) + half * v * (one - t * t) * dv)
        else:
            d = half * (one + _erf(v * _SQRT_HALF)) + v * _INV_SQRT_2PI * np.exp(-half * v * v)
            dinp[U(i)] += dout[U(i)] * d


@njit(**JIT)
def _tanh_softplus(v):
    """tanh(log(1 + e^v)) = e(e + 2) / (e(e + 2) + 2), e = e^v: one exp; 1 in float32 past 20."""
    if v > np.float32(20.0):
        return np.float32(1.0)
    e = np.exp(v)
    p = e * (e + np.float32(2.0))
    return p / (p + np.float32(2.0))


@njit(**JIT)
def mish_forward(out, inp):
    for i in range(inp.size):
        v = inp[U(i)]
        out[U(i)] = v * _tanh_softplus(v)


@njit(**JIT)
def mish_backward(dinp, dout, inp):
    """d/dx x tanh(sp(x)) = tanh(sp) + x sigmoid(x) (1 - tanh(sp)^2)."""
    one = np.float32(1.0)
    for i in range(inp.size):
        v = inp[U(i)]
        t = _tanh_softplus(v)
        dinp[U(i)] += dout[U(i)] * (t + v * _sigmoid(v) * (one - t * t))


# ------------------------------------------------------------------------------- row adapters
def _no_floats(frow):
    return ()


def _one_float(frow):
    return (np.float32(frow[first]),)  # noqa: F821 - bound by specialise


def _forward_chunk(c, nch, A, x, y, m, frow):
    lo, hi = chunk(c, nch, m)
    forward(A[y + lo : y + hi], A[x + lo : x + hi], *floats(frow))  # noqa: F821


def _backward_chunk(c, nch, A, y, dy, dx, m, frow):
    lo, hi = chunk(c, nch, m)
    backward(A[dx + lo : dx + hi], A[dy + lo : dy + hi], A[y + lo : y + hi], *floats(frow))  # noqa: F821


def _row_forward(A, P, G, S, W, row, frow, n, training, seed):
    _, _, C, H, Wd = inp(row, 0)
    m = n * C * H * Wd
    run_forward(nchunks(m, m), (A, row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n, m, frow))  # noqa: F821


def _row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    m = n * C * H * Wd
    run_backward(nchunks(m, m), (A, row[abi.OUT] * n, row[abi.DOUT] * n, dx * n, m, frow))  # noqa: F821


def _row_backward_from_input(A, P, G, S, W, row, frow, n, training, seed):
    x, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    m = n * C * H * Wd
    run_backward(nchunks(m, m), (A, x * n, row[abi.DOUT] * n, dx * n, m, frow))  # noqa: F821


def elementwise(kind: str, forward, backward, reads: str = "output"):
    """The (forward, backward) row adapters of a pointwise kind whose backward reads its output
    (or its input: `reads="input"`); the kind's float attributes (at most one) are passed to the
    pair after the arrays."""
    name, offsets = kind.lower(), abi.float_offsets(kind)
    if len(offsets) > 1:
        raise ValueError(f"{kind}: elementwise adapters pass at most one float attribute")
    floats = (
        specialise(_one_float, f"{name}_floats", first=offsets[0])
        if offsets
        else specialise(_no_floats, f"{name}_floats")
    )
    forward_chunk = specialise(
        _forward_chunk, f"{name}_forward_chunk", forward=forward, floats=floats
    )
    backward_chunk = specialise(
        _backward_chunk, f"{name}_backward_chunk", backward=backward, floats=floats
    )
    run_forward = parallel_chunks(f"{name}_forward_chunks", forward_chunk)
    run_backward = parallel_chunks(f"{name}_backward_chunks", backward_chunk)
    return (
        specialise(_row_forward, f"{name}_row_forward", run_forward=run_forward),
        specialise(
            _row_backward if reads == "output" else _row_backward_from_input,
            f"{name}_row_backward",
            run_backward=run_backward,
        ),
    )


RELU = elementwise("RELU", relu_forward, relu_backward)
RELU6 = elementwise("RELU6", relu6_forward, relu6_backward)
LEAKYRELU = elementwise("LEAKYRELU", leakyrelu_forward, leakyrelu_backward)
ELU = elementwise("ELU", elu_forward, elu_backward)
TANH = elementwise("TANH", tanh_forward, tanh_backward)
SIGMOID = elementwise("SIGMOID", sigmoid_forward, sigmoid_backward)
SILU = elementwise("SILU", silu_forward, silu_backward, reads="input")
HSWISH = elementwise("HSWISH", hswish_forward, hswish_backward, reads="input")
HSIGMOID = elementwise("HSIGMOID", hsigmoid_forward, hsigmoid_backward)
GELU = elementwise("GELU", gelu_forward, gelu_backward, reads="input")
MISH = elementwise("MISH", mish_forward, mish_backward, reads="input")


@njit(**JIT)
def _softmax_forward_chunk(c, nch, A, x, y, m, C, HW):
    lo, hi = chunk(c, nch, m)
    softmax_forward(A[y:], A[x:], C, HW, lo, hi)


@njit(**JIT)
def _softmax_backward_chunk(c, nch, A, y, dy, dx, m, C, HW):
    lo, hi = chunk(c, nch, m)
    softmax_backward(A[dx:], A[dy:], A[y:], C, HW, lo, hi)


_softmax_forward_chunks = parallel_chunks("softmax_forward_chunks", _softmax_forward_chunk)
_softmax_backward_chunks = parallel_chunks("softmax_backward_chunks", _softmax_backward_chunk)


@njit(**JIT)
def softmax_row_forward(A, P, G, S, W, row, frow, n, training, seed):
    _, _, C, H, Wd = inp(row, 0)
    pixels = n * H * Wd
    x, y = row[abi.IN + abi.IN_OFF] * n, row[abi.OUT] * n
    _softmax_forward_chunks(nchunks(4 * pixels * C, pixels), (A, x, y, pixels, C, H * Wd))


@njit(**JIT)
def softmax_row_backward(A, P, G, S, W, row, frow, n, training, seed):
    _, dx, C, H, Wd = inp(row, 0)
    if dx < 0:
        return
    pixels = n * H * Wd
    args = (A, row[abi.OUT] * n, row[abi.DOUT] * n, dx * n, pixels, C, H * Wd)
    _softmax_backward_chunks(nchunks(4 * pixels * C, pixels), args)


SOFTMAX = softmax_row_forward, softmax_row_backward
