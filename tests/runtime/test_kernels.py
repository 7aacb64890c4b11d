"""Kernels against float64 numpy references, finite differences and (when present) torch.

Every kind in KIND_ORDER must have cases here: the parametrised tests fail for a kind without.
A case is (input shapes, int attributes, float attributes, extras); for CONV, DECONV and FC the
int attributes end with the output channel count, which the ABI carries in row[OC].
"""

from __future__ import annotations

import zlib

import numba
import numpy as np
import pytest
from kernel_harness import Step, out_shape, param_shapes, ref_backward, ref_forward

from cnnc.runtime.kernels import loss
from cnnc.runtime.table import BACKWARD, FORWARD, KERNELS, KIND_ORDER


def case(ins, ints=(), floats=(), **extra):
    return dict(ins=[tuple(s) for s in ins], ints=tuple(ints), floats=tuple(floats), **extra)


def conv(c, h, w, o, k=(3, 3), s=(1, 1), p=(0, 0), d=(1, 1), g=1, bias=1, **extra):
    return case([(c, h, w)], (*k, *s, *p, *d, g, bias, o), **extra)


def deconv(c, h, w, o, k=(3, 3), s=(1, 1), p=(0, 0), d=(1, 1), g=1, bias=1, op=(0, 0)):
    return case([(c, h, w)], (*k, *s, *p, *d, g, bias, *op, o))


def pool(c, h, w, mode, k, s, p=(0, 0), cip=1, ceil=False):
    return case([(c, h, w)], (*k, *s, *p, mode, cip), ceil=ceil)


MAX, AVG, SUM = 0, 1, 2
BIG = (8, 32, 33)  # big enough at n=5 to take the parallel path of the elementwise kernels
SMALL = (3, 5, 4)

CASES = {
    "CONV": [
        conv(3, 9, 8, 4, p=(1, 1)),
        conv(4, 11, 10, 6, k=(3, 2), s=(2, 3), p=(1, 0), d=(2, 1), g=2),
        conv(6, 8, 9, 6, s=(2, 2), p=(1, 1), g=6),  # depthwise
        conv(3, 7, 7, 6, p=(2, 1), g=3, bias=0),  # depthwise with multiplier 2: grouped gemm
        conv(8, 6, 7, 5, k=(1, 1), bias=0),  # 1x1: no im2col
        conv(4, 5, 5, 6, k=(1, 1), g=2),  # grouped 1x1
        conv(4, 7, 7, 3, k=(1, 1), s=(2, 2)),  # strided 1x1: im2col
        conv(1, 12, 12, 6, k=(5, 5), p=(2, 2), need_dx=[False]),  # a first layer
        conv(6, 14, 14, 16, k=(5, 5)),  # LeNet conv2
    ],
    "DECONV": [
        deconv(4, 5, 5, 3, s=(2, 2), p=(1, 1), op=(1, 1)),
        deconv(4, 4, 6, 6, k=(2, 3), s=(2, 1), p=(0, 1), d=(1, 2), g=2, op=(1, 0)),
        deconv(6, 5, 4, 4, k=(1, 1), bias=0),  # 1x1: gemm straight into the output
        deconv(3, 3, 3, 2, k=(4, 4), p=(1, 1), d=(2, 2), op=(1, 1)),  # outpad >= stride
        deconv(8, 7, 7, 5, k=(3, 3), s=(2, 2)),
    ],
    "POOL": [
        pool(6, 8, 8, MAX, (2, 2), (2, 2)),
        pool(3, 10, 9, MAX, (3, 3), (2, 2), (1, 1), ceil=True),
        pool(4, 7, 9, MAX, (3, 2), (1, 2)),
        pool(3, 10, 9, AVG, (3, 3), (2, 2), (1, 1), cip=1, ceil=True),
        pool(3, 9, 10, AVG, (3, 3), (2, 2), (1, 1), cip=0, ceil=True),
        pool(6, 28, 28, AVG, (2, 2), (2, 2)),
        pool(2, 7, 8, SUM, (2, 3), (1, 2), (1, 1)),
        pool(5, 6, 7, AVG, (6, 7), (1, 1)),  # global average
        pool(5, 6, 7, MAX, (6, 7), (1, 1)),  # global max
    ],
    "FC": [
        case([(3, 4, 5)], (1, 7)),
        case([(10, 1, 1)], (0, 4)),
        case([(16, 5, 5)], (1, 120)),  # parallel: batch blocks, or feature blocks at n=1
    ],
    "FLATTEN": [case([(3, 4, 5)]), case([(7, 1, 1)]), case([BIG])],
    "RELU": [case([SMALL]), case([BIG])],
    "LEAKYRELU": [case([SMALL], floats=(0.1,)), case([BIG], floats=(0.01,))],
    "ELU": [case([SMALL], floats=(0.7,)), case([BIG], floats=(1.0,))],
    "TANH": [case([SMALL]), case([BIG])],
    "SIGMOID": [case([SMALL]), case([BIG])],
    "SOFTMAX": [case([(10, 1, 1)]), case([(4, 3, 5)]), case([(8, 40, 40)])],
    "BN": [
        case([(3, 4, 5)], floats=(1e-5, 0.1)),
        case([(6, 1, 1)], floats=(1e-3, 0.3)),
        case([(16, 16, 16)], floats=(1e-5, 0.1)),
    ],
    "DROPOUT": [case([SMALL], floats=(0.5,)), case([BIG], floats=(0.2,))],
    "LRN": [
        case([(7, 3, 4)], (5,), (0.5, 0.75, 2.0)),
        case([(5, 2, 3)], (4,), (0.1, 0.5, 1.0)),
        case([(3, 2, 2)], (1,), (0.3, 0.75, 1.0)),
        case([(12, 8, 8)], (3,), (1e-2, 0.75, 1.0)),
    ],
    "UPSAMPLE": [
        case([(3, 4, 5)], (2, 2)),
        case([(2, 3, 3)], (3, 1)),
        case([(4, 16, 16)], (1, 2)),
    ],
    "ADD": [
        case([SMALL, SMALL]),
        case([(2, 3, 3)] * 3, need_dx=[True, False, True]),
        case([BIG] * 3),
    ],
    "CONCAT": [
        case([(2, 3, 4), (1, 3, 4), (3, 3, 4)]),
        case([(4, 5, 5), (2, 5, 5)], need_dx=[False, True]),
        case([(8, 16, 16), (8, 16, 16), (16, 16, 16)]),
    ],
}


def cases_of(kind):
    cases = CASES.get(kind)
    assert cases, f"no test case for kernel kind {kind}"
    return cases


def modes(kind):
    """(training,) variants to test: BN and DROPOUT behave differently in inference."""
    return (True, False) if kind in ("BN", "DROPOUT") else (True,)


def close(actual, expected, what, rtol=1e-4):
    expected = np.asarray(expected, np.float64)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=2e-5 * scale, err_msg=what)


def make_step(kind, c, n, rng):
    return Step(
        kind, c["ins"], c["ints"], c["floats"], n=n, ceil=c.get("ceil", False), rng=rng,
        need_dx=c.get("need_dx"),
    )  # fmt: skip


def ctx_of(st, training, state0=None):
    ctx = {"training": training, "out": st.out_shape}
    if st.kind == "BN":
        state = st.state() if state0 is None else state0
        ctx["rm"], ctx["rv"] = state[0].astype(np.float64), state[1].astype(np.float64)
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


def check_step(kind, c, n, training, seed=0):
    """Forward and backward of one case against the reference, as the executor runs them."""
    rng = np.random.default_rng(zlib.crc32(repr((kind, n, training, c)).encode()))
    st = make_step(kind, c, n, rng)
    A0, G0, S0 = st.A.copy(), st.G.copy(), st.S.copy()
    state0 = st.state().copy() if kind == "BN" else None
    st.run(training=training, seed=seed)

    xs = [st.x(j).astype(np.float64) for j in range(len(c["ins"]))]
    ps = [p.astype(np.float64) for p in st.params()]
    ctx = ctx_of(st, training, state0)
    close(st.y(), ref_forward(kind, xs, ps, c["ints"], c["floats"], ctx), f"{kind} forward")
    writable = regions(st, "forward")
    assert np.array_equal(st.A[~writable], A0[~writable]), f"{kind} forward wrote outside y"
    if kind == "BN":
        check_bn_state(st, xs[0], state0, training)
    else:
        assert np.array_equal(st.S, S0)

    A1 = st.A.copy()
    st.run(backward=True, training=training, seed=seed)
    dy = st.dy().astype(np.float64)
    dxs, dps = ref_backward(kind, xs, ps, c["ints"], c["floats"], ctx, dy)
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
    s = st.state()
    if not training:
        np.testing.assert_array_equal(s, state0)
        return
    mom = st.floats[1]
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    unbiased = var * m / (m - 1) if m > 1 else var
    close(s[0], (1 - mom) * state0[0] + mom * mean, "BN running mean")
    close(s[1], (1 - mom) * state0[1] + mom * unbiased, "BN running var (unbiased)")
    close(s[2], mean, "BN saved mean")
    close(s[3], 1 / np.sqrt(var + st.floats[0]), "BN saved invstd")


# ------------------------------------------------------------------------------------ tests


def test_table_is_complete_and_ordered():
    assert set(KERNELS) == set(KIND_ORDER)
    assert len(FORWARD) == len(BACKWARD) == len(KIND_ORDER)
    for i, kind in enumerate(KIND_ORDER):
        assert (FORWARD[i], BACKWARD[i]) == KERNELS[kind]
        assert all(isinstance(f, numba.core.registry.CPUDispatcher) for f in KERNELS[kind])


def test_kind_order_matches_compiler_registry():
    layers = pytest.importorskip("cnnc.compiler.layers")
    assert tuple(k.name for k in layers.KINDS) == KIND_ORDER


@pytest.mark.parametrize("kind", KIND_ORDER)
def test_kernel_matches_reference(kind):
    for c in cases_of(kind):
        for n in (1, 5):
            for training in modes(kind):
                check_step(kind, c, n, training)


@pytest.mark.parametrize("kind", KIND_ORDER)
def test_reference_gradient_matches_finite_differences(kind):
    """The float64 references' backward is the derivative of their forward."""
    rng = np.random.default_rng(1)
    for c in cases_of(kind):
        for training in modes(kind):
            ins, ints, floats = c["ins"], c["ints"], c["floats"]
            n = 2
            xs = [rng.standard_normal((n, *s)) for s in ins]
            out = out_shape(kind, ins, ints, c.get("ceil", False))
            ps = [rng.standard_normal(s) for s in param_shapes(kind, ins, ints, out)]
            ctx = {"training": training, "out": out}
            if kind == "BN":
                ctx["rm"], ctx["rv"] = (
                    rng.standard_normal(ins[0][0]),
                    rng.uniform(0.5, 2, ins[0][0]),
                )
                ps[0] = rng.uniform(0.5, 1.5, ps[0].shape)
            if kind == "DROPOUT":
                ctx["mask"] = (rng.random((n, *ins[0])) > 0.5) * 2.0
            dy = rng.standard_normal((n, *out))

            def loss_of(xs=xs, ps=ps, ctx=ctx, dy=dy, ints=ints, floats=floats):
                return float((ref_forward(kind, xs, ps, ints, floats, ctx) * dy).sum())

            dxs, dps = ref_backward(kind, xs, ps, ints, floats, ctx, dy)
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


# Dropout masks differ from torch's by design (checked against the stored mask above); torch
# checks dropout's inference path only.
TORCH_MODES = {"BN": (True, False), "DROPOUT": (False,)}


def torch_forward(F, torch, kind, xs, ps, ints, floats, c, training, state):
    x = xs[0]
    if kind == "CONV":
        kh, kw, sh, sw, ph, pw, dh, dw, g, bias = ints[:10]
        return F.conv2d(x, ps[0], ps[1] if bias else None, (sh, sw), (ph, pw), (dh, dw), g)
    if kind == "DECONV":
        kh, kw, sh, sw, ph, pw, dh, dw, g, bias, oph, opw = ints[:12]
        b = ps[1] if bias else None
        return F.conv_transpose2d(x, ps[0], b, (sh, sw), (ph, pw), (oph, opw), g, (dh, dw))
    if kind == "POOL":
        kh, kw, sh, sw, ph, pw, mode, cip = ints
        args = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw))
        args["ceil_mode"] = c.get("ceil", False)
        if mode == MAX:
            return F.max_pool2d(x, **args)
        if mode == AVG:
            return F.avg_pool2d(x, **args, count_include_pad=bool(cip))
        return F.avg_pool2d(x, **args, divisor_override=1)
    if kind == "FC":
        return F.linear(x.flatten(1), ps[0], ps[1] if ints[0] else None)[:, :, None, None]
    if kind == "FLATTEN":
        return x.flatten(1)[:, :, None, None]
    if kind == "RELU":
        return F.relu(x)
    if kind == "LEAKYRELU":
        return F.leaky_relu(x, floats[0])
    if kind == "ELU":
        return F.elu(x, floats[0])
    if kind == "TANH":
        return torch.tanh(x)
    if kind == "SIGMOID":
        return torch.sigmoid(x)
    if kind == "SOFTMAX":
        return F.softmax(x, dim=1)
    if kind == "BN":
        eps, mom = floats[:2]
        return F.batch_norm(x, state[0], state[1], ps[0], ps[1], training, mom, eps)
    if kind == "LRN":
        return F.local_response_norm(x, ints[0], *floats[:3])
    if kind == "UPSAMPLE":
        return F.interpolate(x, scale_factor=ints[:2], mode="nearest")
    if kind == "DROPOUT":
        return F.dropout(x, floats[0], training)
    if kind == "ADD":
        return sum(xs[1:], xs[0])
    if kind == "CONCAT":
        return torch.cat(xs, dim=1)
    raise KeyError(kind)


@pytest.mark.parametrize("kind", KIND_ORDER)
def test_kernel_matches_torch(kind):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    for c in cases_of(kind):
        for training in TORCH_MODES.get(kind, (True,)):
            st = make_step(kind, c, 3, rng)
            state = (
                [torch.tensor(s, dtype=torch.float64) for s in st.state()[:2]]
                if kind == "BN"
                else None
            )  # noqa: E501
            st.run(training=training)
            xs = [
                torch.tensor(st.x(j), dtype=torch.float64, requires_grad=True)
                for j in range(len(c["ins"]))
            ]  # noqa: E501
            ps = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in st.params()]
            y = torch_forward(F, torch, kind, xs, ps, c["ints"], c["floats"], c, training, state)
            close(st.y(), y.detach().numpy(), f"{kind} forward vs torch")
            if kind == "BN" and training:
                close(st.state()[0], state[0].numpy(), "BN running mean vs torch")
                close(st.state()[1], state[1].numpy(), "BN running var vs torch")
            dx0 = [st.dx(j).copy() if st.dx(j) is not None else None for j in range(len(xs))]
            g0 = [g.copy() for g in st.grads()]
            st.run(backward=True, training=training)
            y.backward(torch.tensor(st.dy(), dtype=torch.float64))
            for j, x in enumerate(xs):
                if dx0[j] is not None:
                    close(st.dx(j) - dx0[j], x.grad.numpy(), f"{kind} dx{j} vs torch")
            for g, a, p in zip(st.grads(), g0, ps, strict=True):
                close(g - a, p.grad.numpy(), f"{kind} parameter gradient vs torch")


# ------------------------------------------------------------------------------ dropout


def dropout_step(p, seed, shape=BIG, n=5, training=True):
    st = Step("DROPOUT", [shape], floats=(p,), n=n, rng=np.random.default_rng(3))
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


# ------------------------------------------------------------------- threads and partitions


@pytest.mark.parametrize(
    "kind,c",
    [
        ("CONV", CASES["CONV"][-1]),
        ("CONV", CASES["CONV"][2]),
        ("DECONV", CASES["DECONV"][-1]),
        ("FC", CASES["FC"][-1]),
        ("BN", CASES["BN"][-1]),
    ],
)
def test_one_thread_and_all_threads_agree(kind, c):
    """Chunking (and the per-thread weight-gradient slots) do not change the results."""
    before = numba.get_num_threads()
    runs = []
    for threads in (1, before):
        numba.set_num_threads(threads)
        try:
            st = make_step(kind, c, 6, np.random.default_rng(4))
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
    c = CASES["CONV"][-1]
    st = make_step("CONV", c, 6, np.random.default_rng(6))
    st.W = np.full(st.ws, np.nan, np.float32)  # one slot, as if sized for one thread
    xs, ps = [st.x().astype(np.float64)], [p.astype(np.float64) for p in st.params()]
    g0 = [g.astype(np.float64) for g in st.grads()]
    st.run()
    st.run(backward=True)
    close(st.y(), ref_forward("CONV", xs, ps, c["ints"], (), {}), "forward")
    dps = ref_backward("CONV", xs, ps, c["ints"], (), {}, st.dy().astype(np.float64))[1]
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


def test_count_correct():
    logits = np.array([[0, 2, 1], [5, 5, 1], [0, 0, 3], [1, 0, 0]], np.float32)
    A = logits.reshape(-1).copy()
    labels = np.array([1, 0, 2, 2], np.int64)
    assert loss.count_correct(A, 0, 3, labels, 4) == 3
