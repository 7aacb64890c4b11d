"""Tests for cnnc.compiler.report: the report dict (always validated against the shipped JSON
Schema), its terminal table and its Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cnnc.compiler import report
from cnnc.compiler.check import check, check_file
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse

SPECS = Path(__file__).parents[2] / "specs"


def built(source: str, batch: int = 1) -> dict:
    data = report.build(check(expand(parse(source, "t.cnn")), False), batch=batch)
    report.validate(data)
    return data


def spec_report(name: str, batch: int = 1) -> dict:
    data = report.build(check_file(str(SPECS / f"{name}.cnn"), verify_expects=False), batch=batch)
    report.validate(data)
    return data


def test_the_shipped_schema_is_a_valid_schema():
    jsonschema.Draft202012Validator.check_schema(report.schema())


@pytest.mark.parametrize("name", ["lenet5", "unet_small", "resnet_cifar", "fashion_small"])
def test_zoo_reports_validate_and_add_up(name):
    data = spec_report(name)
    rows = data["layers"]
    assert [row["index"] for row in rows] == list(range(len(rows)))
    assert data["totals"]["params"] == sum(row["params"] for row in rows)
    assert data["totals"]["macs"] == sum(row["macs"] for row in rows)
    assert data["totals"]["flops"] == 2 * data["totals"]["macs"]
    assert data["output_shape"] == rows[-1]["output_shape"] or name == "unet_small"
    assert json.loads(json.dumps(data)) == data  # plain JSON all the way down


def test_lenet5_rows():
    data = spec_report("lenet5")
    assert data["network"] == "lenet5" and data["input_shape"] == [1, 28, 28]
    first, conv1, _, pool1 = data["layers"][:4]
    assert first == {
        "index": 0,
        "name": "input",
        "kind": "INPUT",
        "layer": "input",
        "inputs": [],
        "output_shape": [1, 28, 28],
        "params": 0,
        "buffers": 0,
        "macs": 0,
        "receptive_field": [1, 1],
        "effective_stride": [1.0, 1.0],
        "line": 3,
    }
    assert (conv1["layer"], conv1["params"], conv1["macs"]) == ("CONV 6@5x5 p2", 156, 117_600)
    assert (pool1["receptive_field"], pool1["effective_stride"]) == ([6, 6], [2.0, 2.0])
    assert data["totals"] == {
        "params": 61_706,
        "trainable_params": 61_706,
        "buffers": 0,
        "macs": 416_520,
        "flops": 833_040,
    }
    assert [e["target"] for e in data["expects"]] == ["params", "macs", "output"]


def test_named_tensors_buffers_and_shape_expects():
    data = built(
        "input 3x8x8\nCONV 4@3x3 p1 nobias -> BN -> feat\nfeat -> FC 2\nexpect feat == 4x8x8"
    )
    assert data["named_tensors"] == {"feat": [4, 8, 8]}
    assert data["totals"]["buffers"] == 8
    assert data["expects"] == [{"target": "feat", "op": "==", "value": [4, 8, 8], "line": 4}]


def test_memory_scales_with_the_batch_but_parameters_do_not():
    one, four = spec_report("lenet5", 1)["memory"], spec_report("lenet5", 4)["memory"]
    assert (one["batch"], four["batch"]) == (1, 4)
    assert four["parameters"] == one["parameters"] >= 61_706 * 4
    assert four["forward_activations"] == 4 * one["forward_activations"]
    assert four["training_activations"] == 4 * one["training_activations"]


def test_merges_show_their_inputs_in_the_table():
    data = built("input 3x8x8\nCONV 3@1x1 -> a\nADD(a, in) -> FC 2")
    assert data["layers"][2]["inputs"] == ["conv1", "input"]
    text = report.render_text(data)
    assert "ADD(conv1, input)" in text


def test_text_table():
    text = report.render_text(spec_report("lenet5"))
    lines = text.splitlines()
    assert lines[0] == "lenet5: input 1x28x28 -> output 10"
    assert lines[2].split() == ["#", "name", "layer", "output", "params", "MACs", "RF"]
    conv1 = next(line for line in lines if " conv1 " in line)
    assert conv1.split() == ["1", "conv1", "CONV", "6@5x5", "p2", "6x28x28", "156", "117.60k", "5"]
    assert any(line.startswith("params ") and "61,706" in line for line in lines)
    assert any(line.startswith("FLOPs ") and "833,040" in line for line in lines)
    widths = {len(line) for line in lines[1:4:2]}
    assert len(widths) == 1  # the rules above and below the header match


def test_a_rectangular_receptive_field_shows_both_sides():
    text = report.render_text(built("input 1x16x16\nCONV 2@3x5 -> FC 2"))
    assert " 3x5" in text


def test_markdown_table():
    markdown = report.render_markdown(spec_report("lenet5"))
    lines = markdown.splitlines()
    assert lines[0] == "### `lenet5`: 1x28x28 → 10"
    assert lines[2] == "| # | name | layer | output | params | MACs | RF |"
    assert lines[3] == "| ---: | --- | --- | --- | ---: | ---: | ---: |"
    rows = [line for line in lines[4:] if line.startswith("| ") and "`" in line]
    assert len(rows) == 13
    assert rows[1] == "| 1 | `conv1` | `CONV 6@5x5 p2` | 6x28x28 | 156 | 117.60k | 5 |"
    assert any(line.startswith("| params | 61,706 (") for line in lines)
    assert "| FLOPs | 833,040 (2 x MACs) |" in lines


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0"), (999, "999"), (1_000, "1.00k"), (999_994, "999.99k"), (999_999, "1.00M")]
    + [(1.5e9, "1.50G"), (2e12, "2.00T"), (-1500, "-1.50k"), (0.5, "0.5")],
)
def test_human(count, text):
    assert report.human(count) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), ((1 << 20) - 1, "1.00 MiB")]
    + [(3 << 29, "1.50 GiB")],
)
def test_human_bytes(count, text):
    assert report.human_bytes(count) == text


def test_validate_rejects_a_broken_report():
    data = spec_report("lenet5")
    data["layers"][1]["macs"] = -1
    with pytest.raises(jsonschema.ValidationError):
        report.validate(data)


# ---- folding blocks, tensor names, wide and narrow tables, valid input sizes -------------------


def _zoo_report(name: str) -> dict:
    from cnnc.compiler.files import load_one

    return report.build(load_one(str(Path(__file__).parents[2] / "specs" / f"{name}.cnn")))


@pytest.mark.parametrize("name", ["resnet50", "googlenet", "densenet121", "unet_small"])
@pytest.mark.parametrize("depth", [1, 2])
def test_folded_totals_equal_the_unfolded(name, depth):
    built = _zoo_report(name)
    folded = report.fold(built, depth)
    for figure in ("params", "buffers", "macs"):
        assert sum(r[figure] for r in folded) == sum(r[figure] for r in built["layers"])
    assert folded[-1]["output_shape"] == built["output_shape"]
    assert len(folded) < len(built["layers"]) or depth > 1  # these nets nest one level


def test_depth_one_gives_a_row_per_block_call():
    built = _zoo_report("resnet18")
    rows = report.fold(built, 1)
    names = [r["name"] for r in rows]
    assert "basic1" in names and not any("." in n for n in names)
    block = next(r for r in rows if r["name"] == "basic1")
    assert (
        block["layer"] == "basic(64) x2" and block["params"] == 2 * 64 * 64 * 9 + 256
    )  # one call per repetition
    text = report.render_text(built, depth=1)
    assert "basic(64) x2" in text and "basic1.conv1" not in text


def test_tensor_names_are_a_column_and_merges_use_them():
    text = report.render_text(_zoo_report("unet_small"))
    header = text.splitlines()[2]
    assert header.split()[-1] == "tensor"
    assert any(line.rstrip().endswith("  e2") for line in text.splitlines())
    assert "CONCAT(deconv1, double2.relu2)" in text


def test_wide_and_max_width():
    built = _zoo_report("googlenet")
    wide = report.render_text(built, wide=True)
    assert all(word in wide.splitlines()[2] for word in ("kernel", "stride", "input"))
    narrow = report.render_text(built, depth=1, max_width=80)
    table = narrow.split("\nparams")[0].splitlines()[1:]
    assert max(map(len, table)) <= 80


def test_column_widths_do_not_depend_on_folding():
    built = _zoo_report("resnet18")
    plain, folded = report.render_text(built), report.render_text(built, depth=1)
    assert plain.splitlines()[2] == folded.splitlines()[2]


def test_sizes_of_a_unet_line_up_its_skips():
    from cnnc.compiler.expand import expand
    from cnnc.compiler.syntax import parse_file

    graph = expand(parse_file(str(Path(__file__).parents[2] / "specs" / "unet_small.cnn")))
    found = report.sizes(graph, 16, 80)
    assert found == list(range(16, 81, 4))
    assert "every multiple of 4" in report.render_sizes(found, 16, 80, graph.input_shape)


HEADS = (
    "input 3x16x16\n"
    "CONV 8@3x3 p1 s2 -> RELU -> f1\n"
    "f1 -> CONV 8@3x3 p1 s2 -> RELU -> f2\n"
    "f1 -> CONV 6@1x1 -> p3\n"
    "f2 -> POOL avg global -> FC 4 -> p4\n"
    "output p3, p4\n"
)


@pytest.mark.parametrize(("train", "loss"), [("", None), ("train {\n  loss p4\n}\n", "p4")])
def test_every_head_is_in_the_report(train, loss):
    built = report.build(check(expand(parse(HEADS + train, "h.cnn"))))
    report.validate(built)
    assert built["outputs"] == [
        {"name": "p3", "layer": "conv3", "shape": [6, 8, 8], "loss": loss == "p3"},
        {"name": "p4", "layer": "fc1", "shape": [4], "loss": loss == "p4"},
    ]
    title = report.render_text(built).split("\n")[0]
    tag = " (loss)" if loss else ""
    assert title == f"h: input 3x16x16 -> outputs p3 6x8x8, p4 4{tag}"
    assert f"→ p3 6x8x8, p4 4{tag}" in report.render_markdown(built).split("\n")[0]


def test_a_single_output_is_listed_as_output():
    built = report.build(check(expand(parse("input 1x4x4\nFC 3", "s.cnn"))))
    assert built["outputs"] == [{"name": "output", "layer": "fc1", "shape": [3], "loss": True}]


UNEVEN = (
    "input 1x16x24\nCONV 4@3x3 p1 -> e1\ne1 -> POOL max 2 -> POOL max 2 -> UPSAMPLE 4 -> u\n"
    "CONCAT(u, e1) -> CONV 2@3x5\n"
)


def test_sizes_at_a_fixed_aspect_keep_the_width_whole():
    graph = expand(parse(UNEVEN, "u.cnn"))
    found = report.sizes_at_aspect(graph, 8, 40, (2, 3))
    assert found == [(h, h * 3 // 2) for h in range(8, 41, 8)]  # 4 divides both, w = 1.5 h
    text = report.render_aspect(found, 8, 40, (2, 3), graph.input_shape)
    assert "height:width 2:3" in text and "8x12, 16x24, 24x36, 32x48, 40x60" in text


def test_sizes_per_axis_go_together():
    from cnnc.compiler.check import checks_at

    graph = expand(parse(UNEVEN, "u.cnn"))
    heights, widths = report.sizes_per_axis(graph, (4, 30), (5, 30))
    assert heights == list(range(4, 31, 4)) and widths == list(range(8, 31, 4))
    assert all(checks_at(graph, (1, h, w)) for h in heights for w in widths)
    assert not checks_at(graph, (1, 6, 8)) and not checks_at(graph, (1, 8, 6))
    text = report.render_axes(heights, widths, ((4, 30), (5, 30)), graph.input_shape)
    assert "heights 4..30: every multiple of 4 from 4 to 28" in text
    assert report.sizes_per_axis(graph, (5, 7), (5, 7)) == ([], [])
