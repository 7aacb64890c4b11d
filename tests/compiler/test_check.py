"""Tests for cnnc.compiler.check: shapes through the whole graph, totals, `expect` lines, and
shape errors that show the arithmetic and the smallest fix, every independent one in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnc.compiler.check import Checked, check, check_file, verify
from cnnc.compiler.errors import SpecError
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse

SPECS = Path(__file__).parents[2] / "specs"
LENET = (
    "network lenet5\ninput 1x28x28\n"
    "CONV 6@5x5 s1 p2 -> RELU -> POOL max 2x2 s2\n"
    "  -> CONV 16@5x5 -> RELU -> POOL max 2x2 s2\n"
    "  -> FC 120 -> RELU -> FC 84 -> RELU -> FC 10 -> SOFTMAX\n"
)


def checked(source: str, verify_expects: bool = True) -> Checked:
    return check(expand(parse(source, "t.cnn")), verify_expects)


def errors(source: str) -> list:
    with pytest.raises(SpecError) as caught:
        checked(source)
    return caught.value.diagnostics


def error(source: str):
    (diagnostic,) = errors(source)
    return diagnostic


# ---- a whole network ---------------------------------------------------------------------------


def test_lenet5_shapes_and_totals():
    spec = checked(LENET)
    assert [layer.shape for layer in spec.layers] == [
        (1, 28, 28),
        (6, 28, 28),
        (6, 28, 28),
        (6, 14, 14),
        (16, 10, 10),
        (16, 10, 10),
        (16, 5, 5),
        (120,),
        (120,),
        (84,),
        (84,),
        (10,),
        (10,),
    ]
    assert (spec.params, spec.buffers, spec.macs) == (61_706, 0, 416_520)
    assert spec.output is spec.layers[-1]
    assert [layer.node.name for layer in spec.inputs_of(spec.layers[4])] == ["pool1"]


def test_bn_counts_weight_and_bias_as_params_and_running_stats_as_buffers():
    spec = checked("input 3x8x8\nCONV 4@3x3 nobias -> BN -> FC 2")
    assert (spec.params, spec.buffers) == (4 * 3 * 9 + 8 + 4 * 36 * 2 + 2, 8)


def test_check_file_and_an_input_override():
    spec = check_file(str(SPECS / "lenet5.cnn"))
    assert spec.params == 61_706 and spec.layers[0].shape == (1, 28, 28)
    bigger = check_file(str(SPECS / "lenet5.cnn"), (1, 32, 32), verify_expects=False)
    assert bigger.layers[4].shape == (16, 12, 12)
    with pytest.raises(SpecError, match="expect params == 61,706 failed"):
        check_file(str(SPECS / "lenet5.cnn"), (1, 32, 32))


# ---- expect ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "expect params == 61706",
        "expect params != 1",
        "expect params <= 62k",
        "expect params < 0.1M",
        "expect params >= 61706",
        "expect params > 61705",
        "expect trainable == 61706",
        "expect buffers == 0",
        "expect macs == 416520",
        "expect flops == 833040",
        "expect output == 10",
        "expect output != 10x1x1",
        "expect conv2 == 16x10x10",
        "expect pool2 == 16x5x5",
        "expect feat == 16x5x5",
    ],
)
def test_expectations_that_hold(line):
    source = LENET.replace("POOL max 2x2 s2\n  -> FC", "POOL max 2x2 s2 -> feat\n  -> FC")
    checked(source + line)


@pytest.mark.parametrize(
    ("line", "message", "fix"),
    [
        ("expect params == 61705", "expect params == 61,705 failed: it is 61,706", "update"),
        ("expect params <= 60k", "expect params <= 60,000 failed: it is 61,706", None),
        ("expect macs > 1G", "expect macs > 1,000,000,000 failed: it is 416,520", None),
        ("expect output == 10x1", "expect output == 10x1 failed: it is 10", "update"),
        ("expect conv1 == 6x24x24", "expect conv1 == 6x24x24 failed: it is 6x28x28", "update"),
        ("expect output <= 10", "expect: a shape can only be compared with == or !=", "== 10`"),
        ("expect params == 3x3", "expect: `params` is a number, not a shape", "== 61706`"),
        ("expect parms == 1", "expect: unknown figure or tensor `parms`", "`params`?"),
        ("expect nothing == 1", "expect: unknown figure or tensor `nothing`", "use params"),
    ],
)
def test_expectations_that_fail(line, message, fix):
    diagnostic = error(LENET + line)
    assert diagnostic.message == message
    assert diagnostic.loc.line == 6
    assert (fix is None and diagnostic.fix is None) or fix in diagnostic.fix


def test_every_failed_expectation_is_reported_and_can_be_skipped():
    source = LENET + "expect params == 1\nexpect macs == 2\nexpect output == 10\nexpect x == 3"
    assert [d.loc.line for d in errors(source)] == [6, 7, 9]
    assert checked(source, verify_expects=False).params == 61_706


def test_verify_returns_none_when_it_holds():
    spec = checked(LENET + "expect params == 61706")
    assert verify(spec, spec.graph.expects[0], "t.cnn") is None


# ---- shape errors ------------------------------------------------------------------------------


def test_a_kernel_larger_than_its_input_reads_like_the_sketch():
    source = (
        "input 1x28x28\n"
        "CONV 6@5x5 -> POOL max 2x2 s2 -> CONV 16@5x5 -> POOL max 2x2 s2 -> CONV 32@5x5 -> FC 10\n"
    )
    diagnostic = error(source)
    assert diagnostic.render(source).splitlines() == [
        "t.cnn:2:68: error: CONV 32@5x5 needs at least 5 rows (kernel 5), "
        "but its padded input is 4 (4 + 2*0)",
        "  CONV 6@5x5 -> POOL max 2x2 s2 -> CONV 16@5x5 -> POOL max 2x2 s2 -> CONV 32@5x5 -> FC 10",
        "                                                                     ^^^^^^^^^^^",
        "  shapes so far: input 1x28x28 -> CONV 6@5x5: 6x24x24 -> POOL max 2x2 s2: 6x12x12 -> "
        "CONV 16@5x5: 16x8x8 -> POOL max 2x2 s2: 16x4x4",
        "  fix: pad it (`p2` gives 4 rows) or use a smaller kernel; or feed an input of 1x32x32",
    ]


def test_a_merge_of_sizes_that_were_rounded_shows_the_arithmetic_and_a_working_input():
    diagnostic = error(
        "input 1x63x63\n"
        "CONV 4@3x3 p1 -> e1\n"
        "e1 -> POOL max 2x2 s2 -> DECONV 4@2x2 s2 -> u1\n"
        "CONCAT(u1, e1) -> CONV 2@1x1\n"
    )
    assert diagnostic.message == (
        "CONCAT joins channels and needs one spatial size, but gets 4x62x62, 4x63x63"
    )
    assert diagnostic.notes == (
        "line 3: POOL max 2x2 s2 does not divide evenly: (63 + 2*0 - 2) / 2 + 1 = 31.5 -> 31",
    )
    assert diagnostic.fix.endswith("; or feed an input of 1x62x62")
    assert (diagnostic.loc.line, diagnostic.loc.col) == (4, 1)


def test_the_suggested_input_passes_the_whole_network():
    source = (SPECS / "unet_small.cnn").read_text().replace("input 1x64x64", "input 1x61x61")
    diagnostic = errors(source)[0]
    suggested = diagnostic.fix.rsplit("feed an input of ", 1)[1]
    assert suggested == "1x60x60"  # the nearest multiple of 4: the net pools twice
    assert checked(source.replace("input 1x61x61", f"input {suggested}"), False)


def test_no_input_is_suggested_when_no_size_helps():
    diagnostic = error("input 3x8x8\nCONV 2@3x3 -> a\nin -> CONV 2@1x1 -> b\nADD(a, b)")
    assert diagnostic.message == "ADD needs inputs of one shape, but gets 2x6x6 and 2x8x8"
    assert "feed an input" not in diagnostic.fix
    channels = error("input 3x8x8\nCONV 2@1x1 -> a\nin -> CONV 4@1x1 -> b\nADD(a, b)")
    assert "feed an input" not in channels.fix and channels.notes == ()


def test_independent_shape_errors_are_all_reported_and_dependent_ones_are_not():
    found = errors(
        "input 3x8x8\n"
        "CONV 2@9x9 -> RELU -> CONV 2@3x3 -> a\n"  # fails; RELU and CONV after it are skipped
        "in -> FC 4 -> POOL max 2x2 -> b\n"  # fails independently
        "in -> CONV 2@1x1 g2 -> c\n"  # fails independently
        "CONCAT(a, b, c)\n"  # skipped: its inputs failed
    )
    assert [(d.loc.line, d.message.split()[0]) for d in found] == [
        (2, "CONV"),
        (3, "POOL"),
        (4, "CONV"),
    ]


def test_an_error_inside_a_block_names_the_call():
    found = errors(
        "input 3x8x8\nblock b(k) {\n  in -> CONV 2@k -> out\n}\nb(3) -> b(3) -> b(3) -> b(3)"
    )
    assert len(found) == 1
    assert found[0].loc.line == 3
    assert "in the block called at line 5" in found[0].notes


def test_tensors_and_parameters_past_the_bound():
    huge = error("input 1024x1024x1024\nRELU")  # the input bound catches it first
    assert "too large" in huge.message
    wide = error("input 1x1x1\nUPSAMPLE 1000000x1000 -> UPSAMPLE 1x1000")
    assert "past the bound of 2,147,483,648" in wide.message and "values per sample" in wide.message
    heavy = error("input 1000x1x1\nFC 1000000 -> FC 1000000")
    assert heavy.message == "FC has 1,000,001,000,000 parameters, past the bound of 2,147,483,648"
    assert heavy.loc.col == 15


def test_a_channels_last_input_is_suspected_in_the_error():
    with pytest.raises(SpecError) as caught:
        check(expand(parse("input 32x32x3\nCONV 6@5x5 -> FC 10", "t.cnn")))
    notes = caught.value.diagnostics[0].notes
    assert any("for 3 channels of 32x32 (channels last) write `input 3x32x32`" in n for n in notes)


@pytest.mark.parametrize(
    "second, fix",
    [
        ("CONV 8@3x3 p1", "project the narrower branch to 8 channels (`CONV 8@1x1` on it)"),
        ("CONV 4@3x3 p1 s2", "project the larger shortcut (`CONV 4@1x1 s2` on it)"),
    ],
)
def test_the_add_fix_suggests_a_stride_only_when_the_sizes_differ(second, fix):
    text = f"input 3x8x8\nCONV 4@3x3 p1 -> a\na -> {second} -> b\nADD(a, b)"
    with pytest.raises(SpecError) as caught:
        check(expand(parse(text, "t.cnn")))
    assert caught.value.diagnostics[0].fix.startswith(fix)


# ---- expect on a tensor inside a block call ------------------------------------------------------

BLOCKS = (
    "input 3x16x16\n"
    "block basic(c) {\n  in -> CONV c@3x3 p1 -> y\n  y -> POOL max 2 -> z\n  ADD(z, z)\n}\n"
    "block stage(c) { basic(c) -> basic(c) }\n"
    "basic(4) -> stage(8) -> FC 10\n"
)


@pytest.mark.parametrize(
    "line",
    [
        "expect basic1.y == 4x16x16",
        "expect basic1.z == 4x8x8",
        "expect stage1.basic2.y == 8x4x4",
        "expect basic1.conv1 == 4x16x16",
        "expect stage1.basic1.add1 != 8x8x8",
    ],
)
def test_expect_names_a_tensor_inside_a_block_call(line):
    assert checked(BLOCKS + line + "\n").graph.expects[0].target == line.split()[1]


def test_expect_on_an_unknown_block_tensor_suggests_the_near_one():
    diagnostic = error(BLOCKS + "expect basic1.w == 4x16x16\n")
    assert (diagnostic.loc.line, diagnostic.loc.col) == (9, 8)
    assert diagnostic.loc.end_col == 16 and "did you mean `basic1." in diagnostic.fix


def test_a_block_reading_in_h_is_expanded_again_at_another_input_size():
    source = (
        "input 3x8x8\nblock b() {\n  if in.h > 8 {\n    POOL max 2\n  }\n  CONV 4@3x3\n}\n"
        "b() -> FC 10\n"
    )
    from cnnc.compiler.check import checks_at
    from cnnc.compiler.expand import at_input

    graph = expand(parse(source, "t.cnn"))
    assert [n.kind for n in graph.nodes] == ["INPUT", "CONV", "FC"]
    big = at_input(graph, (3, 16, 16))
    assert [n.kind for n in big.nodes] == ["INPUT", "POOL", "CONV", "FC"]
    assert check(big).output.shape == (10,) and checks_at(graph, (3, 16, 16))
    assert not checks_at(graph, (3, 2, 2))


# ---- several outputs -----------------------------------------------------------------------------

HEADS = (
    "input 3x16x16\n"
    "CONV 8@3x3 p1 s2 -> RELU -> f1\n"
    "f1 -> CONV 8@3x3 p1 s2 -> RELU -> f2\n"
    "f1 -> CONV 6@1x1 -> p3\n"
    "f2 -> POOL avg global -> FC 4 -> p4\n"
    "output p3, p4\n"
)


def test_expect_names_each_head():
    c = checked(HEADS + "expect p3 == 6x8x8\nexpect p4 == 4\n")
    assert [(name, layer.shape) for name, layer in c.outputs] == [("p3", (6, 8, 8)), ("p4", (4,))]


def test_expect_output_with_several_heads_asks_for_a_name():
    diagnostic = error(HEADS + "expect output == 4\n")
    assert (diagnostic.loc.line, diagnostic.loc.col) == (7, 8)
    assert "2 outputs (p3, p4)" in diagnostic.message and "`expect p3 == 6x8x8`" in diagnostic.fix


def test_the_train_section_names_the_head_the_loss_reads():
    from cnnc.compiler.check import require_loss_head

    for setting, index in (("loss p4", 7), ("loss cross_entropy p3", 5)):
        c = checked(HEADS + f"train {{\n  {setting}\n}}\n")
        assert c.graph.output == index and c.graph.loss_chosen and c.output.node.index == index
        require_loss_head(c)
    with pytest.raises(SpecError, match=r"2 outputs \(p3, p4\)") as caught:
        require_loss_head(checked(HEADS))
    assert caught.value.diagnostics[0].loc.line == 6


def test_a_loss_on_an_unknown_head_is_located():
    diagnostic = error(HEADS + "train {\n  loss p5\n}\n")
    assert (diagnostic.loc.line, diagnostic.loc.col) == (8, 8)
    assert "no output `p5` (outputs: p3, p4)" in diagnostic.message
    assert "`output` line" in diagnostic.fix


def test_a_shape_error_above_a_syntax_error_is_reported_with_it(tmp_path):
    path = tmp_path / "t.cnn"
    path.write_text(
        "input 1x28x28\nCONV 6@50x5 -> RELU -> a\na -> FC 10 ;\nFC 3 -> -> RELU\n"
        "block b() { CONV 4@99x99 }\n"  # below the first syntax error: not searched
    )
    with pytest.raises(SpecError) as caught:
        check_file(str(path))
    found = [(d.loc.line, d.loc.col, d.message.split(";")[0]) for d in caught.value.diagnostics]
    assert [(line, col) for line, col, _ in found] == [(2, 1), (3, 12), (4, 9)]
    assert "needs at least 50 rows" in found[0][2]
