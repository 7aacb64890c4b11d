"""Tests for cnnc.compiler.layers: each kind's shape rule, parameters, MACs and receptive field,
checked by hand on known cases and against PyTorch's own modules on random configurations."""

from __future__ import annotations

import json
import math
from importlib.resources import files

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnc.compiler import report
from cnnc.compiler.check import Checked, check
from cnnc.compiler.errors import SpecError
from cnnc.compiler.expand import expand
from cnnc.compiler.layers import KIND_INDEX, KINDS, REGISTRY, describe
from cnnc.compiler.syntax import parse


def checked(text: str, shape: str = "3x16x16") -> Checked:
    return check(expand(parse(f"input {shape}\n{text}", "t.cnn")), verify_expects=False)


def layer(text: str, shape: str = "3x16x16"):
    """The last layer of a one-chain spec."""
    return checked(text, shape).layers[-1]


def shape_error(text: str, shape: str = "3x16x16"):
    with pytest.raises(SpecError) as caught:
        checked(text, shape)
    (diagnostic,) = caught.value.diagnostics
    return diagnostic


# ---- the registry ------------------------------------------------------------------------------


def test_registry_is_consistent():
    kinds = report.schema()["properties"]["layers"]["items"]["properties"]["kind"]["enum"]
    assert kinds == ["INPUT", *REGISTRY]
    shipped = json.loads(files("cnnc.compiler").joinpath("schemas/report.schema.json").read_text())
    assert "enum" not in shipped["properties"]["layers"]["items"]["properties"]["kind"]
    assert [KIND_INDEX[k.name] for k in KINDS] == list(range(len(KINDS)))
    for kind in KINDS:
        shorts = [o.short for o in kind.options if o.short]
        words = [w for o in kind.options for w in o.words]
        assert len(shorts) == len(set(shorts)) and len(words) == len(set(words)), kind.name
        assert sum(o.positional for o in kind.options) <= 1, kind.name


EVERY_KIND = {  # kinds whose bare keyword is not enough, or worth a richer case
    "CONV": "CONV 6@3x3 same dw",
    "DECONV": "DECONV 4@2x2 s2 op1",
    "POOL": "POOL avg 3x3 s2 p1 ceil",
    "FC": "FC 10 nobias",
    "LEAKYRELU": "LEAKYRELU 0.2",
    "BN": "BN eps=1e-3",
    "DROPOUT": "DROPOUT 0.3",
    "LRN": "LRN 3",
    "UPSAMPLE": "UPSAMPLE 2",
    "ADD": "a\na -> CONV 6@1x1 -> b\nADD(a, b)",
    "CONCAT": "a\na -> CONV 6@1x1 -> b\nCONCAT(a, b)",
    "MUL": "a\na -> POOL avg global -> CONV 6@1x1 -> HSIGMOID -> g\nMUL(a, g)",
    "SLICE": "SLICE from=1 to=4",
    "SHUFFLE": "SHUFFLE 3",
    "DROPPATH": "DROPPATH 0.2",
}


def example(kind: str) -> str:
    """A kind's case above, or the bare keyword (or `KIND(a, b)` for a merge) with defaults."""
    if kind in EVERY_KIND:
        return EVERY_KIND[kind]
    return f"a\na -> RELU -> b\n{kind}(a, b)" if REGISTRY[kind].merge else kind


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_shape_rules_are_pure_and_resolve_every_kernel_attribute(kind):
    graph = expand(parse(f"input 6x8x8\nRELU -> {example(kind)}", "t.cnn"))
    before = [dict(node.attrs) for node in graph.nodes]
    result = check(graph, verify_expects=False)
    assert [dict(node.attrs) for node in graph.nodes] == before  # rules write nothing back
    last = result.layers[-1]
    assert last.node.kind == kind
    ints = REGISTRY[kind].int_values(last.attrs)
    assert len(ints) == len(REGISTRY[kind].ints) and all(isinstance(v, int) for v in ints)
    assert len(REGISTRY[kind].float_values(last.attrs)) == len(REGISTRY[kind].floats)


@pytest.mark.parametrize(
    "text",
    [
        "CONV 6@5x5",
        "CONV 6@5x3 s2 p1x2 d2 g3 nobias",
        "CONV 6@3x3 same dw",
        "DECONV 4@2x2 s2 op1",
        "POOL max 2x2 s2",
        "POOL avg 3x3 s1 p1 ceil exclude_pad",
        "POOL sum 2x2",
        "POOL avg global",
        "FC 10 nobias",
        "DROPOUT 0.25",
        "LEAKYRELU 0.2",
        "BN eps=0.001",
        "LRN 3 alpha=0.0002",
        "UPSAMPLE 2x3",
        "RELU",
        "GELU tanh",
        "GELU",
        "PRELU init=0.1",
        "SCALE init=1e-06",
        "LN eps=1e-06",
        "SLICE from=2 to=5",
        "SLICE to=3",
        "SHUFFLE 3",
        "DROPPATH 0.1",
    ],
)
def test_describe_writes_what_the_author_wrote(text):
    node = expand(parse(f"input 6x16x16\n{text}")).nodes[1]
    again = expand(parse(f"input 6x16x16\n{describe(node.kind, node.attrs)}")).nodes[1]
    assert again.attrs == node.attrs
    assert describe("INPUT", {}) == "input"


# ---- shape rules by hand -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape", "out"),
    [
        ("CONV 6@5x5", "1x28x28", (6, 24, 24)),
        ("CONV 6@5x5 p2", "1x28x28", (6, 28, 28)),
        ("CONV 8@3x3 s2 p1", "3x32x32", (8, 16, 16)),
        ("CONV 8@3x3 s2 p1", "3x33x31", (8, 17, 16)),
        ("CONV 8@3x3 d2", "3x16x16", (8, 12, 12)),
        ("CONV 8@3x3 d2 same", "3x16x15", (8, 16, 15)),
        ("CONV 8@5x1 same", "3x9x9", (8, 9, 9)),
        ("CONV kernel=3 p1 dw", "6x8x8", (6, 8, 8)),  # no filter count: keep the channels
        ("DECONV 4@2x2 s2", "8x7x7", (4, 14, 14)),
        ("DECONV 4@3x3 s2 p1 op1", "8x7x7", (4, 14, 14)),
        ("DECONV 4@3x3 d2", "8x7x7", (4, 11, 11)),
        ("POOL max 2x2", "3x9x9", (3, 4, 4)),  # the stride defaults to the window
        ("POOL max 2x2 s2 ceil", "3x9x9", (3, 5, 5)),
        ("POOL max 3x3 s2", "3x6x6", (3, 2, 2)),
        ("POOL max 3x3 s2 ceil", "3x6x6", (3, 3, 3)),
        # ceil would give 4, but that window would start in the right padding: PyTorch says 3
        ("POOL max 2x2 s2 p1 ceil", "3x5x5", (3, 3, 3)),
        ("POOL avg global", "3x7x5", (3, 1, 1)),
        ("POOL max 3x3 s1 same", "3x7x7", (3, 7, 7)),
        ("FC 10", "3x4x4", (10,)),
        ("FLATTEN", "3x4x5", (60,)),
        ("UPSAMPLE", "3x4x5", (3, 8, 10)),
        ("UPSAMPLE 3x1", "3x4x5", (3, 12, 5)),
        ("BN", "5", (5, 1, 1)),
        ("SLICE from=2 to=5", "6x4x4", (3, 4, 4)),
        ("SLICE from=2", "6x4x4", (4, 4, 4)),
        ("FC 8 -> SLICE to=3", "6x4x4", (3,)),
        ("SHUFFLE 2", "6x4x4", (6, 4, 4)),
        ("LN", "6x4x4", (6, 4, 4)),
        ("FC 8 -> LN", "6x4x4", (8,)),
        ("FC 4 -> BN", "5", (4,)),
    ],
)
def test_output_shapes(text, shape, out):
    assert layer(text, shape).shape == out


def test_merges():
    both = "CONV 4@3x3 p1 -> a\nin -> CONV 2@1x1 -> b\n"
    assert layer(both + "CONCAT(a, b, a)", "3x8x8").shape == (10, 8, 8)
    assert layer("CONV 3@1x1 -> a\nADD(a, in, a)", "3x8x8").shape == (3, 8, 8)
    assert layer("FC 4 -> a\nin -> FC 6 -> b\nCONCAT(a, b)", "3x8x8").shape == (10,)


def test_a_window_that_does_not_divide_evenly_records_its_arithmetic():
    assert layer("POOL max 2x2 s2", "3x5x5").rounded == "(5 + 2*0 - 2) / 2 + 1 = 2.5 -> 2"
    assert layer("POOL max 2x2 s2 ceil", "3x5x5").rounded.endswith("= 2.5 -> 3")
    assert layer("CONV 2@3x3 s2", "3x8x9").rounded == ("rows: (8 + 2*0 - 3) / 2 + 1 = 3.5 -> 3")
    assert layer("CONV 2@3x3 s2", "3x9x9").rounded == ""


@pytest.mark.parametrize(
    ("text", "shape", "message", "fix"),
    [
        (
            "CONV 32@5x5",
            "16x4x4",
            "CONV 32@5x5 needs at least 5 rows (kernel 5), but its padded input is 4 (4 + 2*0)",
            "pad it (`p2` gives 4 rows) or use a smaller kernel",
        ),
        (
            "CONV 2@3x3 d3",
            "1x9x6",
            "CONV 2@3x3 d3 needs at least 7 columns (kernel with dilation 7), "
            "but its padded input is 6",
            "`p3` gives 6 columns",
        ),
        ("POOL max 3x3", "1x2x9", "POOL max 3x3 needs at least 3 rows", "`p1` gives 1 rows"),
        ("POOL max 4x4 s3 ceil", "1x1x9", "POOL max 4x4 s3 ceil needs at least 2 rows", None),
        ("CONV 2@3x3 s2 same", "1x8x8", "`same` padding keeps the size only at stride 1", "`s1`"),
        ("CONV 2@4x4 same", "1x8x8", "`same` padding needs an odd kernel extent", None),
        ("POOL max 2x2 p2", "1x8x8", "POOL padding 2x2 is more than half the window 2x2", None),
        ("POOL max", "1x8x8", "POOL needs a window size such as 2x2, or `global`", None),
        ("CONV 6@3x3 g4", "2x8x8", "CONV with 4 groups needs input channels divisible by 4", None),
        ("CONV 6@3x3 g4", "4x8x8", "CONV with 4 groups needs filters divisible by 4", None),
        ("CONV 4@3x3 dw", "3x8x8", "CONV with 3 groups needs filters divisible by 3", None),
        ("DECONV 6@3x3 g4", "4x8x8", "DECONV with 4 groups needs channels divisible by 4", None),
        ("DECONV kernel=2 s2", "4x8x8", "DECONV needs its output channels", None),
        ("DECONV 4@3x3 same", "4x8x8", "DECONV does not take `same` padding", None),
        ("DECONV 4@2x2 s2 op2", "4x8x8", "output padding must be smaller than the stride", None),
        ("DECONV 4@1x1 p1", "4x1x1", "DECONV output would be -1x-1", "reduce the padding"),
        ("FC 4 -> CONV 2@1x1", "1x8x8", "CONV needs a CxHxW feature map", "before the first FC"),
        ("FLATTEN -> POOL max 2x2", "1x8x8", "POOL needs a CxHxW feature map", None),
        ("FC 4 -> LRN", "1x8x8", "LRN needs a CxHxW feature map", None),
        ("FC 4 -> UPSAMPLE", "1x8x8", "UPSAMPLE needs a CxHxW feature map", None),
        ("DROPOUT 1", "1x8x8", "DROPOUT must be in [0, 1), but is 1", None),
        ("BN eps=0", "1x8x8", "BN eps must be positive", None),
        ("BN momentum=2", "1x8x8", "BN momentum must be in [0, 1]", None),
        ("DROPPATH 1", "1x8x8", "DROPPATH must be in [0, 1), but is 1", None),
        ("LN eps=0", "1x8x8", "LN eps must be positive", None),
        (
            "SLICE from=2 to=9",
            "6x8x8",
            "SLICE takes channels [from, to) of its input, but `to=9` is past the 6 channels",
            "0 <= from < to <= 6",
        ),
        ("SLICE from=4 to=4", "6x8x8", "`from=4` is not below `to=4`", None),
        ("SLICE from=6", "6x8x8", "`from=6` is not below `to=6`", None),
        (
            "SHUFFLE 4",
            "6x8x8",
            "SHUFFLE 4 splits the channels into 4 groups, but 6 channels do not divide by 4",
            "(e.g. 2, 3, 6)",
        ),
    ],
)
def test_shape_rule_errors(text, shape, message, fix):
    diagnostic = shape_error(text, shape)
    assert message in diagnostic.message
    assert diagnostic.fix, "every mistake suggests a fix"
    if fix is not None:
        assert fix in diagnostic.fix


def test_mul_takes_one_shape_or_a_gate_per_channel():
    se = "in -> POOL avg global -> b\n"
    assert layer(se + "MUL(in, b)", "3x8x8").shape == (3, 8, 8)
    assert layer(se + "MUL(b, in)", "3x8x8").shape == (3, 8, 8)  # the gate may come first
    assert layer("in -> POOL avg global -> FC 3 -> g\nMUL(in, g)", "3x8x8").shape == (3, 8, 8)
    assert layer("CONV 3@1x1 -> b\nMUL(in, b)", "3x8x8").shape == (3, 8, 8)
    wrong = shape_error("in -> POOL avg global -> FC 4 -> g\nMUL(in, g)", "3x8x8")
    assert wrong.message == (
        "MUL needs two tensors of one shape, or a Cx1x1 gate with the other's channels, "
        "but gets 3x8x8 and 4"
    )
    assert "give the gate 3 channels (`CONV 3@1x1` or `FC 3`)" in wrong.fix
    sizes = shape_error("in -> POOL max 2x2 -> b\nMUL(in, b)", "3x8x8")
    assert "3x8x8 and 3x4x4" in sizes.message and "POOL avg global" in sizes.fix
    three = shape_error("MUL(in, in, in)", "3x8x8")
    assert three.message == "MUL multiplies two tensors, but gets 3"


def test_merge_errors():
    add = shape_error("CONV 4@3x3 -> a\nin -> CONV 2@3x3 -> b\nADD(a, b)", "3x8x8")
    assert add.message == "ADD needs inputs of one shape, but gets 4x6x6 and 2x6x6"
    assert "`CONV 4@1x1`" in add.fix and " s2" not in add.fix  # only the channels differ
    cat = shape_error("CONV 4@3x3 -> a\nin -> CONV 2@1x1 -> b\nCONCAT(a, b)", "3x8x8")
    assert cat.message == (
        "CONCAT joins channels and needs one spatial size, but gets 4x6x6, 2x8x8"
    )
    flat = shape_error("FC 4 -> a\nin -> CONV 2@1x1 -> b\nCONCAT(a, b)", "3x8x8")
    assert "CONCAT joins channels" in flat.message


# ---- parameters, buffers, MACs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape", "params", "buffers", "macs"),
    [
        ("CONV 6@5x5", "1x28x28", {"weight": (6, 1, 5, 5), "bias": (6,)}, {}, 6 * 24 * 24 * 25),
        ("CONV 8@3x3 g2 nobias", "4x8x8", {"weight": (8, 2, 3, 3)}, {}, 8 * 36 * 2 * 9),
        ("CONV 4@3x3 p1 dw", "4x8x8", {"weight": (4, 1, 3, 3), "bias": (4,)}, {}, 4 * 64 * 9),
        ("DECONV 6@2x2 s2 g2", "4x5x5", {"weight": (4, 3, 2, 2), "bias": (6,)}, {}, 100 * 3 * 4),
        ("FC 10", "3x4x4", {"weight": (10, 48), "bias": (10,)}, {}, 480),
        ("FC 10 nobias", "7", {"weight": (10, 7)}, {}, 70),
        (
            "BN",
            "5x3x3",
            {"weight": (5,), "bias": (5,)},
            {"running_mean": (5,), "running_var": (5,)},
            0,
        ),
        ("POOL max 2x2", "5x4x4", {}, {}, 0),
        ("RELU", "5x4x4", {}, {}, 0),
        ("UPSAMPLE", "5x4x4", {}, {}, 0),
        # issue 9's kinds, counted as torchinfo counts nn.PReLU(C), a channels-first
        # nn.LayerNorm(C), ConvNeXt's layer scale (C) and the rest (no parameters, no MACs)
        ("PRELU", "5x4x4", {"weight": (5,)}, {}, 0),
        ("FC 7 -> PRELU", "5x4x4", {"weight": (7,)}, {}, 0),  # a slope per feature
        ("LN", "5x4x4", {"weight": (5,), "bias": (5,)}, {}, 0),
        ("FC 7 -> LN", "5x4x4", {"weight": (7,), "bias": (7,)}, {}, 0),
        ("SCALE init=1e-6", "5x4x4", {"weight": (5,)}, {}, 0),
        ("SILU", "5x4x4", {}, {}, 0),
        ("HSWISH", "5x4x4", {}, {}, 0),
        ("HSIGMOID", "5x4x4", {}, {}, 0),
        ("GELU tanh", "5x4x4", {}, {}, 0),
        ("MISH", "5x4x4", {}, {}, 0),
        ("SLICE to=2", "5x4x4", {}, {}, 0),
        ("SHUFFLE 5", "5x4x4", {}, {}, 0),
        ("DROPPATH 0.1", "5x4x4", {}, {}, 0),
        ("in -> POOL avg global -> g\nMUL(in, g)", "5x4x4", {}, {}, 0),
    ],
)
def test_params_buffers_and_macs(text, shape, params, buffers, macs):
    found = layer(text, shape)
    assert (found.params, found.buffers, found.macs) == (params, buffers, macs)
    assert found.param_count == sum(math.prod(s) for s in params.values())


def test_lenet5_totals():
    spec = checked(
        "CONV 6@5x5 s1 p2 -> RELU -> POOL max 2x2 s2 -> CONV 16@5x5 -> RELU -> POOL max 2x2 s2\n"
        "  -> FC 120 -> RELU -> FC 84 -> RELU -> FC 10 -> SOFTMAX",
        "1x28x28",
    )
    assert (spec.params, spec.macs, spec.buffers) == (61_706, 416_520, 0)


# ---- receptive field and effective stride ------------------------------------------------------


def test_receptive_field_along_a_chain():
    spec = checked(
        "CONV 6@5x5 p2 -> RELU -> POOL max 2x2 s2 -> CONV 16@5x5 -> POOL max 2x2 s2 -> FC 10",
        "1x28x28",
    )
    assert [layer.rf[0] for layer in spec.layers] == [1, 5, 5, 6, 14, 16, 32]
    # FC acts as a convolution as large as its input map: 5x5 here, so its stride is 5
    assert [layer.jump[0] for layer in spec.layers] == [1, 1, 1, 2, 2, 4, 20]


def test_receptive_field_of_dilation_and_rectangles():
    spec = checked("CONV 2@3x5 d2 -> CONV 2@3x3 s2x1 -> CONV 2@3x3", "1x32x32")
    assert [layer.rf for layer in spec.layers] == [(1, 1), (5, 9), (7, 11), (11, 13)]
    assert spec.layers[-1].jump == (2, 1)


def test_receptive_field_over_a_dag_takes_the_widest_path():
    spec = checked(
        "CONV 2@7x7 p3 -> wide\nin -> CONV 2@1x1 -> narrow\nADD(wide, narrow) -> CONV 2@3x3 p1",
        "1x16x16",
    )
    add, last = spec.layers[-2], spec.layers[-1]
    assert (add.rf, last.rf) == ((7, 7), (9, 9))


def test_effective_stride_shrinks_through_upsampling():
    spec = checked("CONV 2@2x2 s2 -> DECONV 2@2x2 s2 -> UPSAMPLE -> CONV 2@3x3 p1", "1x16x16")
    assert [tuple(map(float, layer.jump)) for layer in spec.layers] == [
        (1.0, 1.0),
        (2.0, 2.0),
        (1.0, 1.0),
        (0.5, 0.5),
        (0.5, 0.5),
    ]
    # a 2x2 s2 DECONV and nearest upsampling read one input pixel per output pixel
    assert [layer.rf[0] for layer in spec.layers] == [1, 2, 2, 2, 3]


def test_global_pooling_sees_the_whole_map():
    spec = checked("CONV 2@3x3 p1 -> POOL avg global", "1x9x9")
    assert spec.layers[-1].rf == (11, 11)


# ---- PyTorch as the reference ------------------------------------------------------------------

torch = pytest.importorskip("torch", reason="PyTorch is not installed; its comparisons are skipped")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

torch.set_num_threads(1)
CHECKS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ours(text: str, c: int, h: int, w: int):
    """(output shape, params, buffers, MACs) of the last layer, or None when cnnc refuses it."""
    try:
        found = layer(text, f"{c}x{h}x{w}")
    except SpecError:
        return None
    return found.shape, found.param_count, found.buffer_count, found.macs


def theirs(make, c: int, h: int, w: int):
    """The same figures from a PyTorch module, or None when PyTorch refuses it."""
    try:
        module = make().eval()  # BN then takes any batch, even one value per channel
        with torch.no_grad(), FlopCounterMode(display=False) as flops:
            out = module(torch.zeros(1, c, h, w))
    except (RuntimeError, ValueError):
        return None
    if 0 in out.shape:  # PyTorch returns an empty tensor where cnnc reports an error
        return None
    buffers = sum(b.numel() for name, b in module.named_buffers() if name.startswith("running"))
    params = sum(p.numel() for p in module.parameters())
    return tuple(out.shape[1:]), params, buffers, flops.get_total_flops() // 2


sizes = st.integers(1, 12)
small = st.integers(1, 4)


@CHECKS
@given(
    c=st.integers(1, 6),
    h=sizes,
    w=sizes,
    per_group=small,
    groups=st.sampled_from([1, 1, 2, 3, "dw"]),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(small, small),
    pad=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    bias=st.booleans(),
)
def test_conv_matches_pytorch(c, h, w, per_group, groups, kernel, stride, pad, dilation, bias):
    g = c if groups == "dw" else groups
    filters = g * per_group
    text = (
        f"CONV {filters}@{kernel[0]}x{kernel[1]} s{stride[0]}x{stride[1]} p{pad[0]}x{pad[1]} "
        f"d{dilation[0]}x{dilation[1]} {'dw' if groups == 'dw' else f'g{g}'} "
        f"{'' if bias else 'nobias'}"
    )
    assert ours(text, c, h, w) == theirs(
        lambda: torch.nn.Conv2d(c, filters, kernel, stride, pad, dilation, g, bias), c, h, w
    )


@CHECKS
@given(
    c=st.integers(1, 6),
    h=sizes,
    w=sizes,
    filters=st.integers(1, 6),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    dilation=st.tuples(small, small),
    odd=st.booleans(),
)
def test_same_padding_matches_pytorch(c, h, w, filters, kernel, dilation, odd):
    kernel = tuple(k | 1 for k in kernel) if odd else kernel
    text = f"CONV {filters}@{kernel[0]}x{kernel[1]} d{dilation[0]}x{dilation[1]} same"
    found = ours(text, c, h, w)
    if any(d * (k - 1) % 2 for k, d in zip(kernel, dilation, strict=True)):
        assert found is None  # PyTorch pads one side more; cnnc asks for explicit padding
    else:
        make = lambda: torch.nn.Conv2d(c, filters, kernel, 1, "same", dilation)  # noqa: E731
        assert found == theirs(make, c, h, w)


@CHECKS
@given(
    c=st.integers(1, 6),
    h=sizes,
    w=sizes,
    per_group=small,
    groups=st.sampled_from([1, 1, 2, 3]),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(small, small),
    pad=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    outpad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    bias=st.booleans(),
)
def test_deconv_matches_pytorch(
    c, h, w, per_group, groups, kernel, stride, pad, outpad, dilation, bias
):
    filters = groups * per_group
    text = (
        f"DECONV {filters}@{kernel[0]}x{kernel[1]} s{stride[0]}x{stride[1]} p{pad[0]}x{pad[1]} "
        f"op{outpad[0]}x{outpad[1]} d{dilation[0]}x{dilation[1]} g{groups} "
        f"{'' if bias else 'nobias'}"
    )
    assert ours(text, c, h, w) == theirs(
        lambda: torch.nn.ConvTranspose2d(
            c, filters, kernel, stride, pad, outpad, groups, bias, dilation
        ),
        c,
        h,
        w,
    )


@CHECKS
@given(
    c=st.integers(1, 4),
    h=sizes,
    w=sizes,
    mode=st.sampled_from(["max", "avg"]),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(small, small),
    pad=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    ceil=st.booleans(),
)
def test_pool_matches_pytorch(c, h, w, mode, kernel, stride, pad, ceil):
    text = (
        f"POOL {mode} {kernel[0]}x{kernel[1]} s{stride[0]}x{stride[1]} p{pad[0]}x{pad[1]} "
        f"{'ceil' if ceil else ''}"
    )
    pool = torch.nn.MaxPool2d if mode == "max" else torch.nn.AvgPool2d
    assert ours(text, c, h, w) == theirs(lambda: pool(kernel, stride, pad, ceil_mode=ceil), c, h, w)


@CHECKS
@given(c=st.integers(1, 6), h=sizes, w=sizes, units=st.integers(1, 50), bias=st.booleans())
def test_fc_matches_pytorch(c, h, w, units, bias):
    expected = theirs(
        lambda: torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(c * h * w, units, bias=bias)
        ),
        c,
        h,
        w,
    )
    assert ours(f"FC {units} {'' if bias else 'nobias'}", c, h, w) == expected


@CHECKS
@given(c=st.integers(1, 8), h=sizes, w=sizes, scale=st.tuples(small, small))
def test_bn_global_pool_and_upsample_match_pytorch(c, h, w, scale):
    assert ours("BN", c, h, w) == theirs(lambda: torch.nn.BatchNorm2d(c), c, h, w)
    assert ours("POOL avg global", c, h, w) == theirs(
        lambda: torch.nn.AdaptiveAvgPool2d(1), c, h, w
    )
    assert ours(f"UPSAMPLE {scale[0]}x{scale[1]}", c, h, w) == theirs(
        lambda: torch.nn.Upsample(scale_factor=scale, mode="nearest"), c, h, w
    )


@pytest.mark.parametrize(
    "text",
    [
        "SILU",
        "HSWISH",
        "HSIGMOID",
        "GELU",
        "GELU tanh",
        "MISH",
        "PRELU",
        "SCALE init=1e-6",
        "LN eps=1e-6",
        "SLICE from=1 to=3",
        "SHUFFLE 2",
        "DROPPATH 0.2",
    ],
)
def test_todays_layers_count_as_their_torch_twins(text):
    """Shape, parameters and MACs as torch counts its modules (nn.PReLU(C), nn.LayerNorm(C),
    ...): activations, LN and SCALE have no MACs."""
    from cnnc.runtime import to_torch

    one_layer = checked(text, "4x5x6")  # the twin module of the spec holds just this layer
    assert ours(text, 4, 5, 6) == theirs(lambda: to_torch.build(one_layer), 4, 5, 6)
