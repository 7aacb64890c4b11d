"""Kernels against float64 numpy references, finite differences and (when present) torch.

A case is the layer as a user writes it plus its input shape(s): `case("CONV 4@3x3 p1", "3x9x8")`,
`case("CONCAT", ["3x5x4", "2x5x4"])`, with extras as keywords (`need_dx=[False]`). The harness
reads the layer through the compiler and asks its registry entry for the rest, so adding a kind
is its registry entry, its kernel pair and one line here. Every kind in the registry must have a
case: `test_every_kind_has_a_case` fails for a kind without.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import zlib
from dataclasses import dataclass

import numba
import numpy as np
import pytest
from kernel_harness import Step, chw, resolve
from kernel_harness import ref_backward as _ref_backward
from kernel_harness import ref_forward as _ref_forward

from cnnc.compiler.layers import KINDS
from cnnc.runtime.kernels import activations, loss
from cnnc.runtime.kernels.droppath import sample_scale
from cnnc.runtime.table import BACKWARD, FORWARD, KERNELS, KIND_ORDER


@dataclass(frozen=True)
class Case:
    text: str  # the layer as a user writes it: "POOL avg 3x3 s2 p1 ceil exclude_pad"
    ins: tuple[str, ...]  # its input shapes: ("3x7x8",)
    need_dx: tuple[bool, ...] | None = None  # which inputs want a gradient (default: all)

    @property
    def kind(self) -> str:
        return self.text.split()[0]

    @property
    def id(self) -> str:
        """`CONV-4@3x3_p1-3x9x8`, `CONCAT-3x5x4+2x5x4`: the test id."""
        keyword, _, args = self.text.partition(" ")
        parts = [keyword, args.replace(" ", "_"), "+".join(self.ins)]
        if self.need_dx is not None:
            parts.append("dx" + "".join("1" if d else "0" for d in self.need_dx))
        return "-".join(p for p in parts if p)


def case(text: str, ins: str | list[str], need_dx: list[bool] | None = None) -> Case:
    ins = (ins,) if isinstance(ins, str) else tuple(ins)
    return Case(text, ins, None if need_dx is None else tuple(need_dx))


BIG = "8x32x33"  # big enough at n=5 to take the parallel path of the elementwise kernels
SMALL = "3x5x4"
HUGE = "16x128x128"  # the same for the per-channel and per-sample kinds

# Pointwise kinds: (f(x, attrs), f'(x, attrs), the torch function (F, x, attrs)), float64 numpy.
# A new pointwise kind's references are one row here.
POINTWISE = {
    "RELU": (lambda x, a: np.maximum(x, 0), lambda x, a: x > 0, lambda F, x, a: F.relu(x)),
    "RELU6": (
        lambda x, a: np.clip(x, 0, 6),
        lambda x, a: (x > 0) & (x < 6),
        lambda F, x, a: F.relu6(x),
    ),
    "LEAKYRELU": (
        lambda x, a: np.where(x > 0, x, a["slope"] * x),
        lambda x, a: np.where(x > 0, 1, a["slope"]),
        lambda F, x, a: F.leaky_relu(x, a["slope"]),
    ),
    "ELU": (
        lambda x, a: np.where(x > 0, x, a["alpha"] * (np.exp(x) - 1)),
        lambda x, a: np.where(x > 0, 1, a["alpha"] * np.exp(x)),
        lambda F, x, a: F.elu(x, a["alpha"]),
    ),
    "TANH": (lambda x, a: np.tanh(x), lambda x, a: 1 / np.cosh(x) ** 2, lambda F, x, a: F.tanh(x)),
    "SIGMOID": (
        lambda x, a: 1 / (1 + np.exp(-x)),
        lambda x, a: np.exp(-x) / (1 + np.exp(-x)) ** 2,
        lambda F, x, a: F.sigmoid(x),
    ),
    "SILU": (
        lambda x, a: x / (1 + np.exp(-x)),
        lambda x, a: (1 + np.exp(-x) + x * np.exp(-x)) / (1 + np.exp(-x)) ** 2,
        lambda F, x, a: F.silu(x),
    ),
    "HSWISH": (
        lambda x, a: x * np.clip(x + 3, 0, 6) / 6,
        lambda x, a: np.where(x <= -3, 0, np.where(x < 3, x / 3 + 0.5, 1)),
        lambda F, x, a: F.hardswish(x),
    ),
    "HSIGMOID": (
        lambda x, a: np.clip(x + 3, 0, 6) / 6,
        lambda x, a: ((x > -3) & (x < 3)) / 6,
        lambda F, x, a: F.hardsigmoid(x),
    ),
    "GELU": (
        lambda x, a: _gelu(x, a["tanh"])[0],
        lambda x, a: _gelu(x, a["tanh"])[1],
        lambda F, x, a: F.gelu(x, approximate="tanh" if a["tanh"] else "none"),
    ),
    "MISH": (
        lambda x, a: x * np.tanh(np.logaddexp(0, x)),
        lambda x, a: (
            np.tanh(np.logaddexp(0, x)) + x / (1 + np.exp(-x)) / np.cosh(np.logaddexp(0, x)) ** 2
        ),
        lambda F, x, a: F.mish(x),
    ),
}


def _gelu(x, tanh):
    """GELU and its derivative: x Phi(x) by erf, or by torch's tanh approximation."""
    if tanh:
        k, c = np.sqrt(2 / np.pi), 0.044715
        t = np.tanh(k * (x + c * x**3))
        return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * k * (1 + 3 * c * x**2)
    phi = np.vectorize(math.erf)(x / np.sqrt(2))
    return 0.5 * x * (1 + phi), 0.5 * (1 + phi) + x * np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi)


def ref_forward(kind, xs, ps, a, ctx):
    if kind in POINTWISE:
        return POINTWISE[kind][0](xs[0], a)
    return _ref_forward(kind, xs, ps, a, ctx)


def ref_backward(kind, xs, ps, a, ctx, dy):
    if kind in POINTWISE:
        return [dy * POINTWISE[kind][1](xs[0], a)], []
    return _ref_backward(kind, xs, ps, a, ctx, dy)


CASES = (
    case("CONV 4@3x3 p1", "3x9x8"),
    case("CONV 6@3x2 s2x3 p1x0 d2x1 g2", "4x11x10"),
    case("CONV 6@3x3 s2 p1 dw", "6x8x9"),  # depthwise
    case("CONV 6@3x3 p2x1 g3 nobias", "3x7x7"),  # depthwise with multiplier 2: grouped gemm
    case("CONV 5@1x1 nobias", "8x6x7"),  # 1x1: no im2col
    case("CONV 6@1x1 g2", "4x5x5"),  # grouped 1x1
    case("CONV 3@1x1 s2", "4x7x7"),  # strided 1x1: im2col
    case("CONV 6@5x5 p2", "1x12x12", need_dx=[False]),  # a first layer
    case("CONV 16@5x5", "6x14x14"),  # LeNet conv2
    case("CONV 4@3x3 s2 pad=0x0x1x1", "3x8x8"),  # TF "same" at stride 2: pad bottom/right
    case("CONV 6@3x2 pad=1x0x2x1 d2x1 g2", "4x9x8"),
    case("CONV 6@5x5 s2 p2x2x1x1 dw", "6x9x9"),  # depthwise, asymmetric
    case("CONV 5@3x3 p1 dw", "5x7x6"),  # depthwise at stride 1
    case("CONV 4@3x3 p2 d2 dw nobias", "4x6x7"),  # ... dilated
    case("CONV 3@5x5 p1x2 dw", "3x6x5"),  # ... unequal padding
    case("CONV 4@3x3 dw", "4x5x5"),  # ... unpadded
    case("CONV 3@1x1 dw", "3x4x4"),
    case("DECONV 3@3x3 s2 p1 op1", "4x5x5"),
    case("DECONV 6@2x3 s2x1 p0x1 d1x2 g2 op1x0", "4x4x6"),
    case("DECONV 4@1x1 nobias", "6x5x4"),  # 1x1: gemm straight into the output
    case("DECONV 2@4x4 p1 d2 op1", "3x3x3"),  # outpad >= stride
    case("DECONV 5@3x3 s2", "8x7x7"),
    case("POOL max 2x2 s2", "6x8x8"),
    case("POOL max 3x3 s2 p1 ceil", "3x10x9"),
    case("POOL max 3x2 s1x2", "4x7x9"),
    case("POOL avg 3x3 s2 p1 ceil", "3x10x9"),
    case("POOL avg 3x3 s2 p1 ceil exclude_pad", "3x9x10"),
    case("POOL avg 2x2 s2", "6x28x28"),
    case("POOL sum 2x3 s1x2 p1", "2x7x8"),
    case("POOL avg global", "5x6x7"),  # global average: the window is the whole 6x7 input
    case("POOL max global", "5x6x7"),  # global max
    case("POOL max 3x3 s2 p1 d2", "3x11x10"),  # dilated max (DeepLab-style)
    case("POOL max 2x3 s1x2 d2x1 ceil", "2x9x8"),
    case("POOL max 3x3 s2 pad=1x0x0x1", "3x8x9"),  # pads top, left, bottom, right
    case("POOL avg 3x3 s2 p0x1x1x0 ceil", "2x9x8"),
    case("POOL avg 3x3 s2 p1x1x0x0 exclude_pad", "2x8x8"),
    case("POOL sum 2x2 s2 pad=0x0x1x1", "2x7x7"),
    case("POOL avg adaptive 3x3", "4x7x8"),  # overlapping windows of 3 and 4
    case("POOL max adaptive 2x5", "3x9x7"),
    case("POOL avg adaptive 1x1", "6x5x5"),  # = global average
    case("POOL avg adaptive 4x4", "2x3x2"),  # more outputs than inputs: windows repeat
    case("FC 7", "3x4x5"),
    case("FC 4 nobias", "10x1x1"),
    case("FC 120", "16x5x5"),  # parallel: batch blocks, or feature blocks at n=1
    case("FLATTEN", "3x4x5"),
    case("FLATTEN", "7x1x1"),
    case("FLATTEN", BIG),
    case("RELU", SMALL),
    case("RELU", BIG),
    case("RELU6", SMALL),
    case("RELU6", BIG),
    case("LEAKYRELU 0.1", SMALL),
    case("LEAKYRELU 0.01", BIG),
    case("ELU 0.7", SMALL),
    case("ELU 1.0", BIG),
    case("TANH", SMALL),
    case("TANH", BIG),
    case("SIGMOID", SMALL),
    case("SIGMOID", BIG),
    case("SOFTMAX", "10x1x1"),
    case("SOFTMAX", "4x3x5"),
    case("SOFTMAX", "8x40x40"),
    case("BN eps=1e-5 momentum=0.1", "3x4x5"),
    case("BN eps=1e-3 momentum=0.3", "6x1x1"),
    case("BN", "16x16x16"),  # the defaults: eps 1e-5, momentum 0.1
    case("DROPOUT 0.5", SMALL),
    case("DROPOUT 0.2", BIG),
    case("LRN 5 alpha=0.5 beta=0.75 k=2.0", "7x3x4"),
    case("LRN 4 alpha=0.1 beta=0.5 k=1.0", "5x2x3"),
    case("LRN 1 alpha=0.3 beta=0.75 k=1.0", "3x2x2"),
    case("LRN 3 alpha=1e-2 beta=0.75 k=1.0", "12x8x8"),
    case("UPSAMPLE 2x2", "3x4x5"),
    case("UPSAMPLE 3x1", "2x3x3"),
    case("UPSAMPLE 1x2", "4x16x16"),
    case("UPSAMPLE bilinear 2", "3x4x5"),  # PyTorch's align_corners=False
    case("UPSAMPLE bilinear 3x2 align_corners", "2x3x4"),
    case("UPSAMPLE bilinear", "4x16x16"),
    case("UPSAMPLE bilinear", ["3x4x5", "1x13x9"]),  # to the size of the second input
    case("UPSAMPLE bilinear align_corners", ["2x5x3", "6x7x11"], need_dx=[True, False]),
    case("UPSAMPLE bilinear", ["2x9x8", "1x4x3"]),  # down as well as up
    case("UPSAMPLE", ["3x2x3", "1x4x9"]),  # nearest, to a whole multiple
    case("ADD", [SMALL, SMALL]),
    case("ADD", ["2x3x3"] * 3, need_dx=[True, False, True]),
    case("ADD", [BIG] * 3),
    case("CONCAT", ["2x3x4", "1x3x4", "3x3x4"]),
    case("CONCAT", ["4x5x5", "2x5x5"], need_dx=[False, True]),
    case("CONCAT", ["8x16x16", "8x16x16", "16x16x16"]),
    case("SILU", SMALL),
    case("SILU", BIG),
    case("HSWISH", SMALL),
    case("HSWISH", BIG),
    case("HSIGMOID", SMALL),
    case("HSIGMOID", BIG),
    case("GELU", SMALL),
    case("GELU tanh", SMALL),
    case("GELU", BIG),
    case("MISH", SMALL),
    case("MISH", BIG),
    case("PRELU", SMALL),
    case("PRELU", "7"),  # a flat vector: a slope per feature
    case("PRELU", BIG, need_dx=[False]),
    case("SCALE", SMALL),
    case("SCALE init=1e-6", "5"),
    case("SCALE", BIG),
    case("MUL", [SMALL, SMALL]),  # full shapes
    case("MUL", ["6x4x5", "6x1x1"]),  # squeeze-and-excitation: a Cx1x1 gate
    case("MUL", ["3x1x1", "3x4x4"], need_dx=[True, False]),  # the gate first
    case("MUL", ["5x3x3", "5"], need_dx=[False, True]),  # a flat gate, from an FC
    case("MUL", [BIG, "8x1x1"]),
    case("LN", "6x4x5"),
    case("LN eps=1e-6", "10"),  # a flat vector: over all of it
    case("LN", "5x17x19"),  # 323 pixels: a block of 256 and one of 67
    case("LN", "16x48x48"),  # parallel backward: per-thread parameter-gradient slots
    case("SLICE from=1 to=3", "4x3x5"),
    case("SLICE from=2", "5x2x2"),  # to the last channel
    case("SLICE to=3", "6"),
    case("SHUFFLE 2", "6x3x4"),
    case("SHUFFLE 3", "6x1x1"),
    case("SHUFFLE 4", BIG),
    case("DROPPATH 0.5", SMALL),
    case("DROPPATH 0.2", BIG),
    # big enough at n=5 to take the parallel path (work past config.SERIAL_WORK)
    case("PRELU", HUGE),
    case("CONV 16@3x3 p1 dw", HUGE),
    case("SCALE", HUGE),
    case("MUL", [HUGE, "16x1x1"]),
    case("SLICE from=3 to=11", HUGE),
    case("SHUFFLE 4", HUGE),
    case("DROPPATH 0.3", HUGE),
)


def the_case(text: str, ins: str | None = None) -> Case:
    """The one case written `text` (on input `ins`), for the tests that pick a case."""
    found = [c for c in CASES if c.text == text and ins in (None, *c.ins)]
    assert len(found) == 1, f"{len(found)} cases written {text!r}"
    return found[0]


def ids(cases) -> list[str]:
    return [c.id for c in cases]


def modes(kind):
    """(training,) variants to test: BN and DROPOUT behave differently in inference."""
    return (True, False) if kind in ("BN", "DROPOUT", "DROPPATH") else (True,)


def close(actual, expected, what, rtol=1e-4):
    expected = np.asarray(expected, np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=2e-5 * scale, err_msg=what)


def make_step(c: Case, n, rng):
    return Step(c.text, list(c.ins), n=n, need_dx=c.need_dx, rng=rng)


def bn_saved(st, state=None):
    """BN's state after its buffers (running mean, var): the batch mean and invstd it saves."""
    state = st.state() if state is None else state
    c = st.in_shapes[0][0]
    return state[2 * c : 4 * c].reshape(2, c)


def ctx_of(st, training, state0=None, seed=0):
    ctx = {"training": training, "out": st.out_shape}
    if st.kind == "DROPPATH":
        ctx["scale"] = np.array([sample_scale(seed, s, st.attrs["rate"]) for s in range(st.n)])
    if st.kind == "BN":
        running = st.buffers(state0)
        ctx["rm"] = running["running_mean"].astype(np.float64)
        ctx["rv"] = running["running_var"].astype(np.float64)
    if st.kind == "DROPOUT":
        ctx["mask"] = st.aux().astype(np.float64)
    return ctx


def regions(st, which):
    """Boolean mask over A of the tensors a kernel may write: 'forward' or 'backward'."""
    m = np.zeros(st.A.size, bool)

    def mark(off, shape):
        size = int(np.prod(shape))
        m[off * st.n : (off + size) * st.n] = True

    if which == "forward":
        mark(st.yoff, st.out_shape)
        if st.auxoff >= 0:
            mark(st.auxoff, st.in_shapes[0])
    else:
        for off, shape in zip(st.doffs, st.in_shapes, strict=True):
            if off >= 0:
                mark(off, shape)
    return m


def check_step(c: Case, n, training, seed=0):
    """Forward and backward of one case against the reference, as the executor runs them."""
    kind = c.kind
    rng = np.random.default_rng(zlib.crc32(repr((kind, n, training, c)).encode()))
    st = make_step(c, n, rng)
    A0, G0, S0 = st.A.copy(), st.G.copy(), st.S.copy()
    state0 = st.state().copy() if kind == "BN" else None
    st.run(training=training, seed=seed)

    xs = [st.x(j).astype(np.float64) for j in range(len(c.ins))]
    ps = [p.astype(np.float64) for p in st.params()]
    ctx = ctx_of(st, training, state0, seed)
    close(st.y(), ref_forward(kind, xs, ps, st.attrs, ctx), f"{kind} forward")
    writable = regions(st, "forward")
    assert np.array_equal(st.A[~writable], A0[~writable]), f"{kind} forward wrote outside y"
    if kind == "BN":
        check_bn_state(st, xs[0], state0, training)
    else:
        assert np.array_equal(st.S, S0)

    A1 = st.A.copy()
    st.run(backward=True, training=training, seed=seed)
    dy = st.dy().astype(np.float64)
    dxs, dps = ref_backward(kind, xs, ps, st.attrs, ctx, dy)
    for j in range(len(xs)):
        if st.doffs[j] >= 0:
            before = A1[st.doffs[j] * n : st.doffs[j] * n + st.dx(j).size].reshape(st.dx(j).shape)
            close(st.dx(j).astype(np.float64) - before, dxs[j], f"{kind} dx{j}")
    writable = regions(st, "backward")
    assert np.array_equal(st.A[~writable], A1[~writable]), f"{kind} backward wrote outside dx"
    for g, g0, ref in zip(st.grads(), st.params(G0), dps, strict=True):
        close(g.astype(np.float64) - g0, ref, f"{kind} parameter gradient")
    pend = st.poff + sum(p.size for p in st.params())
    assert np.array_equal(st.G[: st.poff], G0[: st.poff])
    assert np.array_equal(st.G[pend:], G0[pend:])
    return st


def check_bn_state(st, x, state0, training):
    if not training:
        np.testing.assert_array_equal(st.state(), state0)
        return
    mom, eps = st.attrs["momentum"], st.attrs["eps"]
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    unbiased = var * m / (m - 1) if m > 1 else var
    now, before = st.buffers(), st.buffers(state0)
    close(now["running_mean"], (1 - mom) * before["running_mean"] + mom * mean, "BN running mean")
    close(
        now["running_var"],
        (1 - mom) * before["running_var"] + mom * unbiased,
        "BN running var (unbiased)",
    )
    saved_mean, saved_invstd = bn_saved(st)
    close(saved_mean, mean, "BN saved mean")
    close(saved_invstd, 1 / np.sqrt(var + eps), "BN saved invstd")


# ------------------------------------------------------------------------------------ tests


def test_table_is_complete_and_ordered():
    assert set(KERNELS) == set(KIND_ORDER)
    assert len(FORWARD) == len(BACKWARD) == len(KINDS)
    for i, kind in enumerate(KINDS):
        assert (FORWARD[i], BACKWARD[i]) == KERNELS[kind.name]
        assert all(isinstance(f, numba.core.registry.CPUDispatcher) for f in KERNELS[kind.name])


def test_kind_order_matches_compiler_registry():
    assert tuple(k.name for k in KINDS) == KIND_ORDER


@pytest.mark.parametrize("kind", [k.name for k in KINDS])
def test_every_kind_has_a_case(kind):
    assert any(c.kind == kind for c in CASES), f"no test case for kernel kind {kind}"


@pytest.mark.parametrize("c", CASES, ids=ids(CASES))
def test_kernel_matches_reference(c):
    for n in (1, 5):
        for training in modes(c.kind):
            check_step(c, n, training)


@pytest.mark.parametrize("c", CASES, ids=ids(CASES))
def test_reference_gradient_matches_finite_differences(c):
    """The float64 references' backward is the derivative of their forward."""
    kind = c.kind
    rng = np.random.default_rng(zlib.crc32(repr(("finite differences", c)).encode()))
    layer = resolve(c.text, list(c.ins))
    ins, a = [chw(s) for s in layer.ins], layer.attrs
    for training in modes(kind):
        n = 2
        xs = [rng.standard_normal((n, *s)) for s in ins]
        out = chw(layer.out)
        ps = [rng.standard_normal(s) for s in layer.params.values()]
        ctx = {"training": training, "out": out}
        if kind == "BN":
            ctx["rm"], ctx["rv"] = rng.standard_normal(ins[0][0]), rng.uniform(0.5, 2, ins[0][0])
            ps[0] = rng.uniform(0.5, 1.5, ps[0].shape)
        if kind == "DROPOUT":
            ctx["mask"] = (rng.random((n, *ins[0])) > 0.5) * 2.0
        if kind == "DROPPATH":
            ctx["scale"] = np.array([0.0, 1 / (1 - a["rate"])])
        dy = rng.standard_normal((n, *out))

        def loss_of(xs=xs, ps=ps, ctx=ctx, dy=dy):
            return float((ref_forward(kind, xs, ps, a, ctx) * dy).sum())

        dxs, dps = ref_backward(kind, xs, ps, a, ctx, dy)
        for t, grad in [*zip(xs, dxs, strict=True), *zip(ps, dps, strict=True)]:
            flat, gflat = t.reshape(-1), np.asarray(grad).reshape(-1)
            for i in rng.choice(flat.size, min(flat.size, 25), replace=False):
                keep, h = flat[i], 1e-6
                flat[i] = keep + h
                up = loss_of()
                flat[i] = keep - h
                down = loss_of()
                flat[i] = keep
                num = (up - down) / (2 * h)
                assert abs(num - gflat[i]) <= 1e-5 * max(1.0, abs(num)), (kind, c, i)


def torch_pool(F, torch, x, a):
    """POOL through torch's own functions: adaptive, dilated, or padded first when the pads
    after the input differ from those before it."""
    if a["adaptive"]:
        size = a["adaptive_out"]
        pool = F.adaptive_max_pool2d if a["mode"] == "max" else F.adaptive_avg_pool2d
        return pool(x, size)
    args = dict(kernel_size=a["kernel"], stride=a["stride"], ceil_mode=a["ceil"])
    (ph, pw), (pb, pr) = a["pad"], a["pad_end"]
    sides = (pw, pr, ph, pb)
    symmetric = (ph, pw) == (pb, pr)
    pad = a["pad"] if symmetric else 0
    if a["mode"] == "max":
        x = x if symmetric else F.pad(x, sides, value=-float("inf"))
        return F.max_pool2d(x, **args, padding=pad, dilation=a["dilation"])
    if a["mode"] == "sum":
        return F.avg_pool2d(x if symmetric else F.pad(x, sides), **args, padding=pad,
                            divisor_override=1)  # fmt: skip
    if symmetric:
        return F.avg_pool2d(x, **args, padding=pad, count_include_pad=a["count_pad"])
    total = F.avg_pool2d(F.pad(x, sides), **args, divisor_override=1)
    if a["count_pad"]:  # the window clipped to the padded input
        ones = F.pad(torch.ones_like(x[:1, :1]), sides, value=1.0)
    else:
        ones = F.pad(torch.ones_like(x[:1, :1]), sides)
    return total / F.avg_pool2d(ones, **args, divisor_override=1)


# Dropout masks differ from torch's by design (checked against the stored mask above); torch
# checks dropout's inference path only.
TORCH_MODES = {"BN": (True, False), "DROPOUT": (False,), "DROPPATH": (False,)}


def torch_forward(F, torch, kind, xs, ps, a, training, state):
    x = xs[0]
    if kind == "CONV":
        b = ps[1] if a["bias"] else None
        (ph, pw), (pb, pr) = a["pad"], a["pad_end"]
        x = F.pad(x, (pw, pr, ph, pb))  # torch's order: left, right, top, bottom
        return F.conv2d(x, ps[0], b, a["stride"], 0, a["dilation"], a["groups"])
    if kind == "DECONV":
        b = ps[1] if a["bias"] else None
        return F.conv_transpose2d(
            x, ps[0], b, a["stride"], a["pad"], a["outpad"], a["groups"], a["dilation"]
        )
    if kind == "POOL":
        return torch_pool(F, torch, x, a)
    if kind == "FC":
        return F.linear(x.flatten(1), ps[0], ps[1] if a["bias"] else None)[:, :, None, None]
    if kind == "FLATTEN":
        return x.flatten(1)[:, :, None, None]
    if kind in POINTWISE:
        return POINTWISE[kind][2](F, x, a)
    if kind == "SOFTMAX":
        return F.softmax(x, dim=1)
    if kind == "BN":
        return F.batch_norm(x, state[0], state[1], ps[0], ps[1], training, a["momentum"], a["eps"])
    if kind == "LRN":
        return F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["k"])
    if kind == "UPSAMPLE" and a["mode"] == "bilinear":
        size = xs[1].shape[2:] if len(xs) > 1 else None
        scale = None if size is not None else tuple(float(v) for v in a["scale"])
        return F.interpolate(x, size, scale, mode="bilinear", align_corners=a["align_corners"])
    if kind == "UPSAMPLE":
        return F.interpolate(x, xs[1].shape[2:] if len(xs) > 1 else None,
                             None if len(xs) > 1 else a["scale"], mode="nearest")  # fmt: skip
    if kind == "DROPOUT":
        return F.dropout(x, a["rate"], training)
    if kind == "ADD":
        return sum(xs[1:], xs[0])
    if kind == "CONCAT":
        return torch.cat(xs, dim=1)
    if kind == "PRELU":
        return F.prelu(x, ps[0])
    if kind == "SCALE":
        return x * ps[0][:, None, None]
    if kind == "MUL":
        return xs[0] * xs[1]
    if kind == "LN":
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], ps[0], ps[1], a["eps"])
        return y.permute(0, 3, 1, 2)
    if kind == "SLICE":
        return x[:, a["from"] : a["to"]]
    if kind == "SHUFFLE":
        return F.channel_shuffle(x, a["groups"])
    if kind == "DROPPATH":
        return x  # inference: the identity (training masks are checked by their own tests)
    raise KeyError(kind)


@pytest.mark.parametrize("c", CASES, ids=ids(CASES))
def test_kernel_matches_torch(c):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    kind = c.kind
    rng = np.random.default_rng(zlib.crc32(repr(("torch", c)).encode()))
    for training in TORCH_MODES.get(kind, (True,)):
        st = make_step(c, 3, rng)
        state = (
            [torch.tensor(b, dtype=torch.float64) for b in st.buffers().values()]
            if kind == "BN"
            else None
        )
        st.run(training=training)
        xs = [
            torch.tensor(st.x(j), dtype=torch.float64, requires_grad=True)
            for j in range(len(c.ins))
        ]
        ps = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in st.params()]
        y = torch_forward(F, torch, kind, xs, ps, st.attrs, training, state)
        close(st.y(), y.detach().numpy(), f"{kind} forward vs torch")
        if kind == "BN" and training:
            close(st.buffers()["running_mean"], state[0].numpy(), "BN running mean vs torch")
            close(st.buffers()["running_var"], state[1].numpy(), "BN running var vs torch")
        dx0 = [st.dx(j).copy() if st.dx(j) is not None else None for j in range(len(xs))]
        g0 = [g.copy() for g in st.grads()]
        st.run(backward=True, training=training)
        y.backward(torch.tensor(st.dy(), dtype=torch.float64))
        for j, x in enumerate(xs):
            if dx0[j] is not None:  # (an input torch does not differentiate gets no gradient)
                expected = x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
                close(st.dx(j) - dx0[j], expected, f"{kind} dx{j} vs torch")
        for g, g_before, p in zip(st.grads(), g0, ps, strict=True):
            close(g - g_before, p.grad.numpy(), f"{kind} parameter gradient vs torch")


# ------------------------------------------------------------------------------ dropout


def dropout_step(p, seed, shape=BIG, n=5, training=True):
    st = Step(f"DROPOUT {p}", shape, n=n, rng=np.random.default_rng(3))
    st.run(training=training, seed=seed)
    return st


def test_dropout_mask_is_inverted_and_deterministic():
    p = 0.3
    a, b, other = dropout_step(p, 7), dropout_step(p, 7), dropout_step(p, 8)
    mask = a.aux()
    assert set(np.unique(mask)) == {np.float32(0.0), np.float32(1 / (1 - p))}
    np.testing.assert_array_equal(mask, b.aux())
    assert (mask != other.aux()).mean() > 0.2
    kept = (mask != 0).mean()
    assert abs(kept - (1 - p)) < 0.01, kept
    np.testing.assert_array_equal(a.y(), a.x() * mask)
    assert abs(mask.mean() - 1.0) < 0.02  # inverted scaling keeps the expectation


def test_dropout_mask_does_not_depend_on_thread_count():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = dropout_step(0.5, 11).aux().copy()
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(single, dropout_step(0.5, 11).aux())


def test_dropout_inference_is_identity():
    st = dropout_step(0.5, 1, training=False)
    np.testing.assert_array_equal(st.y(), st.x())


def test_droppath_drops_whole_samples_deterministically():
    p, n = 0.3, 400
    st = Step(f"DROPPATH {p}", SMALL, n=n, rng=np.random.default_rng(3))
    st.run(training=True, seed=7)
    x, y = st.x().reshape(n, -1), st.y().reshape(n, -1)
    dropped = (y == 0).all(axis=1)
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-6)
    assert abs(dropped.mean() - p) < 0.07, dropped.mean()
    again = Step(f"DROPPATH {p}", SMALL, n=n, rng=np.random.default_rng(3))
    again.run(training=True, seed=7)
    np.testing.assert_array_equal(again.y(), st.y())
    other = Step(f"DROPPATH {p}", SMALL, n=n, rng=np.random.default_rng(3))
    other.run(training=True, seed=8)
    assert (other.y().reshape(n, -1) == 0).all(axis=1).tolist() != dropped.tolist()
    st.run(training=False)
    np.testing.assert_array_equal(st.y(), st.x())  # inference: the identity


def test_droppath_draw_does_not_depend_on_thread_count():
    before = numba.get_num_threads()
    runs = []
    for threads in (1, before):
        numba.set_num_threads(threads)
        try:
            st = Step("DROPPATH 0.5", BIG, n=128, rng=np.random.default_rng(5))  # parallel
            st.run(training=True, seed=11)
            st.run(backward=True, training=True, seed=11)
        finally:
            numba.set_num_threads(before)
        runs.append(st.A.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


# ------------------------------------------------------------------- threads and partitions

PARTITIONED = [
    the_case("CONV 16@5x5"),
    the_case("CONV 6@3x3 s2 p1 dw"),
    the_case("DECONV 5@3x3 s2"),
    the_case("FC 120"),
    the_case("BN", "16x16x16"),
    the_case("LN", "16x48x48"),
    the_case("PRELU", HUGE),
    the_case("SCALE", HUGE),
    the_case("MUL", HUGE),
    the_case("SLICE from=3 to=11", HUGE),
    the_case("SHUFFLE 4", HUGE),
    the_case("DROPPATH 0.3", HUGE),
]


@pytest.mark.parametrize("c", PARTITIONED, ids=ids(PARTITIONED))
def test_one_thread_and_all_threads_agree(c):
    """Chunking (and the per-thread weight-gradient slots) do not change the results."""
    before = numba.get_num_threads()
    runs = []
    for threads in (1, before):
        numba.set_num_threads(threads)
        try:
            st = make_step(c, 6, np.random.default_rng(4))
            st.run()
            st.run(backward=True)
        finally:
            numba.set_num_threads(before)
        runs.append(st)
    one, many = runs
    close(many.y(), one.y(), "forward")
    close(many.A, one.A, "arena after backward")
    close(many.G, one.G, "parameter gradients")


def test_conv_uses_no_more_workspace_slots_than_it_is_given():
    c = the_case("CONV 16@5x5")
    st = make_step(c, 6, np.random.default_rng(6))
    st.W = np.full(st.ws, np.nan, np.float32)  # one slot, as if sized for one thread
    xs, ps = [st.x().astype(np.float64)], [p.astype(np.float64) for p in st.params()]
    g0 = [g.astype(np.float64) for g in st.grads()]
    st.run()
    st.run(backward=True)
    close(st.y(), ref_forward("CONV", xs, ps, st.attrs, {}), "forward")
    dps = ref_backward("CONV", xs, ps, st.attrs, {}, st.dy().astype(np.float64))[1]
    for g, a, ref in zip(st.grads(), g0, dps, strict=True):
        close(g - a, ref, "parameter gradient")
    st.W = np.zeros(st.ws - 1, np.float32)
    with pytest.raises(ValueError, match="workspace"):
        st.run()


# --------------------------------------------------------------------------------- loss


def test_softmax_cross_entropy_is_stable_and_exact():
    rng = np.random.default_rng(5)
    n, k = 6, 10
    logits = rng.standard_normal((n, k)) * 30 + np.array([0, 1000, -1000, 0, 0, 50])[:, None]
    logits = logits.astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    A = np.full(3 * k * n, np.nan, np.float32)
    A[k * n : 2 * k * n] = logits.reshape(-1)  # per-sample offset k
    value = loss.softmax_cross_entropy(A, k, 2 * k, k, labels, n)
    x = logits.astype(np.float64)
    lse = x.max(1) + np.log(np.exp(x - x.max(1, keepdims=True)).sum(1))
    assert np.isfinite(value)
    assert abs(value - (lse - x[np.arange(n), labels]).mean()) < 1e-9 * max(1, abs(value))
    p = np.exp(x - lse[:, None])
    p[np.arange(n), labels] -= 1
    close(A[2 * k * n :].reshape(n, k), p / n, "dlogits")
    assert np.isnan(A[: k * n]).all()  # nothing else written

    A[2 * k * n :] = 123.0  # overwrite, not accumulate
    loss.softmax_cross_entropy(A, k, 2 * k, k, labels, n)
    close(A[2 * k * n :].reshape(n, k), p / n, "dlogits overwrite")


def test_softmax_cross_entropy_with_label_smoothing_matches_torch_and_its_gradient():
    rng = np.random.default_rng(6)
    n, k, e = 5, 7, 0.2
    logits = (rng.standard_normal((n, k)) * 4).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    A = np.zeros(2 * k * n, np.float32)
    A[: k * n] = logits.reshape(-1)
    value = loss.softmax_cross_entropy(A, 0, k, k, labels, n, e)
    x = logits.astype(np.float64)
    log_p = x - (x.max(1) + np.log(np.exp(x - x.max(1, keepdims=True)).sum(1)))[:, None]
    target = np.full((n, k), e / k)
    target[np.arange(n), labels] += 1 - e
    assert abs(value - -(target * log_p).sum(1).mean()) < 1e-6
    close(A[k * n :].reshape(n, k), (np.exp(log_p) - target) / n, "dlogits")
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(x), torch.tensor(labels), label_smoothing=e
    )
    assert abs(value - float(expected)) < 1e-6


def test_count_correct():
    logits = np.array([[0, 2, 1], [5, 5, 1], [0, 0, 3], [1, 0, 0]], np.float32)
    A = logits.reshape(-1).copy()
    labels = np.array([1, 0, 2, 2], np.int64)
    assert loss.count_correct(A, 0, 3, labels, 4) == 3


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (2, 1, 0), (3, 2, 0), (3, 1, 0), (3, 2, 1)])
def test_max_pool_takes_the_first_maximum_and_keeps_nan(k, s, p):
    """Ties and NaN through the unrolled 2x2 (strided and overlapping), the plain kxk and the
    padded (general) loops: forward is torch's (NaN wins), and the gradient goes to the first of
    equal maxima, or to the first NaN."""
    from cnnc.runtime.kernels.pool import MAX, pool_backward, pool_forward

    torch = pytest.importorskip("torch")
    planes, H, W = 6, 7, 8
    x = np.random.default_rng(k + s + p).integers(0, 3, (planes, H, W)).astype(np.float32)
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    dy = np.arange(1, planes * Ho * Wo + 1, dtype=np.float32)
    attrs = (H, W, Ho, Wo, k, k, s, s, p, p, MAX, 0, 0, 0, 1, 1, 0, 0, planes)
    dx = np.zeros(x.size, np.float32)
    pool_backward(dx, dy, x.reshape(-1), *attrs)
    xt = torch.tensor(x[None], requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, k, s, p)
    yt.backward(torch.tensor(dy.reshape(1, planes, Ho, Wo)))
    np.testing.assert_array_equal(dx, xt.grad.numpy().reshape(-1))
    x[0, 1, 1] = x[3, 4, 5] = np.nan
    y = np.zeros(planes * Ho * Wo, np.float32)
    pool_forward(y, x.reshape(-1), *attrs)
    expected = torch.nn.functional.max_pool2d(torch.tensor(x[None]), k, s, p).numpy()
    np.testing.assert_array_equal(y, expected.reshape(-1))
    dx[:] = 0.0
    pool_backward(dx, dy, x.reshape(-1), *attrs)
    xt = torch.tensor(x[None], requires_grad=True)
    torch.nn.functional.max_pool2d(xt, k, s, p).backward(torch.tensor(dy.reshape(yt.shape)))
    np.testing.assert_array_equal(dx, xt.grad.numpy().reshape(-1))


def test_hard_activations_take_torchs_branch_at_the_kinks():
    from cnnc.runtime.kernels.activations import (
        hsigmoid_backward,
        hsigmoid_forward,
        hswish_backward,
        hswish_forward,
    )

    x = np.array([-3.5, -3.0, -1.5, 3.0, 3.5], np.float32)
    y, dx = np.zeros_like(x), np.zeros_like(x)
    hswish_forward(y, x)
    hswish_backward(dx, np.ones_like(x), x)
    np.testing.assert_array_equal(y, [0.0, 0.0, -0.375, 3.0, 3.5])
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 1.0, 1.0])  # torch 2.x: 0 at -3, 1 at 3
    hsigmoid_forward(y, x)
    dx[:] = 0.0
    hsigmoid_backward(dx, np.ones_like(x), y)
    np.testing.assert_array_equal(y, [0.0, 0.0, 0.25, 1.0, 1.0])
    np.testing.assert_allclose(dx, [0.0, 0.0, 1 / 6, 0.0, 0.0])


def _map_loss_case(seed, n=3, k=4, h=5, w=6, ignore=255, weights=None, ignored=0.2):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, k, h, w)) * 4).astype(np.float32)
    labels = rng.integers(0, k, (n, h, w))
    labels[rng.random((n, h, w)) < ignored] = ignore
    size = n * k * h * w
    A = np.full(3 * size, np.nan, np.float32)
    A[size : 2 * size] = logits.reshape(-1)  # per-sample offset k*h*w
    dA = np.ones(k) if weights is None else np.asarray(weights, np.float64)
    args = (A, k * h * w, 2 * k * h * w, k, h * w, labels.reshape(-1).astype(np.int64), dA)
    return logits, labels, args


@pytest.mark.parametrize(
    "seed, ignore, weights",
    [(0, 255, None), (1, 255, [0.5, 2.0, 1.0, 3.0]), (2, 0, None), (3, 2, [1.0, 0.0, 2.0, 1.0])],
)
def test_map_cross_entropy_and_its_gradient_match_torch(seed, ignore, weights):
    torch = pytest.importorskip("torch")
    n, k, h, w = 3, 4, 5, 6
    logits, labels, args = _map_loss_case(seed, ignore=ignore, weights=weights)
    A = args[0]
    value, correct, counted = loss.softmax_cross_entropy_map(*args, ignore, n)
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float64)
    expected = torch.nn.functional.cross_entropy(
        x, torch.tensor(labels), weight=weight, ignore_index=ignore
    )
    expected.backward()
    assert abs(value - expected.item()) < 1e-6 * max(1.0, abs(expected.item()))
    close(A[2 * A.size // 3 :].reshape(n, k, h, w), x.grad.numpy(), "dlogits")
    assert np.isnan(A[: A.size // 3]).all()  # nothing else written
    kept = labels != ignore
    assert counted == kept.sum()
    assert correct == (logits.argmax(1) == labels)[kept].sum()


def test_map_cross_entropy_with_every_pixel_ignored_is_zero_not_nan():
    logits, labels, args = _map_loss_case(4, ignored=1.0)
    value, correct, counted = loss.softmax_cross_entropy_map(*args, 255, 3)
    assert (value, correct, counted) == (0.0, 0, 0)
    assert not args[0][2 * args[0].size // 3 :].any()  # a zero gradient, written whole


def test_relu6_pair_clips_at_six_on_plain_arrays():
    from cnnc.runtime.kernels.activations import relu6_backward, relu6_forward

    x = np.array([-1.0, 0.5, 5.5, 6.0, 9.0], np.float32)
    y, dx = np.zeros_like(x), np.ones_like(x)
    relu6_forward(y, x)
    relu6_backward(dx, np.full_like(x, 2.0), y)
    np.testing.assert_array_equal(y, [0.0, 0.5, 5.5, 6.0, 6.0])
    np.testing.assert_array_equal(dx, [1.0, 3.0, 3.0, 1.0, 1.0])  # accumulates where 0 < y < 6


@pytest.mark.parametrize("environ, level", [({}, "2"), ({"NUMBA_OPT": "3"}, "3")])
def test_kernels_compile_at_llvm_o2_unless_numba_opt_says_otherwise(environ, level):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"} | environ
    code = "import numba; import cnnc.runtime.kernels.config; print(int(numba.config.OPT))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == level


@numba.njit(cache=True)
def _exp_of_each(x, out):
    for i in range(x.size):
        out[i] = activations._exp(x[i])


def test_vectorised_exp_is_within_two_ulp_of_exp_and_keeps_nan():
    x = np.concatenate([np.linspace(-87.3, 88.3, 400_001), [0.0, -0.0, 1e-30, -1e-30]])
    x = x.astype(np.float32)
    got = np.empty_like(x)
    _exp_of_each(x, got)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(got - exact) / exact) <= 2 * 2.0**-24
    edges = np.array([np.nan, np.inf, -np.inf, 200.0, -200.0], np.float32)
    out = np.empty_like(edges)
    _exp_of_each(edges, out)
    assert np.isnan(out[0])
    assert out[1] == out[3] and 2.4e38 < out[1] < 2.41e38  # clamped to the normal range
    assert out[2] == out[4] and 1.175e-38 < out[2] < 1.176e-38
