"""Tests for cnnc.compiler.draw: the diagram's SVG is XML with one node per (folded) box and one
edge per input, its bytes do not depend on the process, blocks fold to `depth`, boxes never
overlap, skips go round the main column, and big specs draw fast."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from cnnc import cli_draw
from cnnc.compiler import draw, draw_paint
from cnnc.compiler.check import check, check_file
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse

SPECS = Path(__file__).parents[2] / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.cnn"))
NS = {"svg": "http://www.w3.org/2000/svg"}


def checked(source: str):
    return check(expand(parse(source, "t.cnn")), verify_expects=False)


def zoo(name: str):
    return check_file(str(SPECS / f"{name}.cnn"), verify_expects=False)


def parsed(text: str):
    root = ET.fromstring(text.encode())
    nodes = root.findall(".//svg:g[@class='node']", NS)
    edges = [g for g in root.iter(f"{{{NS['svg']}}}g") if g.get("class", "").startswith("edge ")]
    edges += root.findall(".//svg:g[@class='edge']", NS)
    return root, nodes, edges


RESIDUAL = """network residual
input 3x16x16
block res(c) {
  in -> CONV c@3x3 p1 -> BN -> RELU -> CONV c@3x3 p1 -> BN -> y
  ADD(in, y) -> RELU
}
CONV 8@3x3 p1 -> res(8) x3 -> POOL avg global -> FC 4 -> SOFTMAX
"""

TEN = """network ten
input 1x28x28
CONV 6@5x5 p2 -> RELU -> POOL max 2x2 -> CONV 16@5x5 -> RELU -> POOL max 2x2
  -> FC 120 -> RELU -> FC 10 -> SOFTMAX
"""


def long_spec(blocks: int) -> str:
    """A residual network of `blocks` blocks (6 layers each, plus the stem and head)."""
    return (
        "input 3x32x32\n"
        "block res(c) {\n"
        "  in -> CONV c@3x3 p1 nobias -> BN -> RELU -> CONV c@3x3 p1 nobias -> y\n"
        "  ADD(in, y) -> RELU\n"
        "}\n"
        f"CONV 16@3x3 p1 -> res(16) x{blocks} -> POOL avg global -> FC 10 -> SOFTMAX\n"
    )


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("depth", [0, 1, 99])
def test_every_zoo_spec_draws_one_node_per_box_and_one_edge_per_input(name, depth):
    c = zoo(name)
    boxes, _ = draw.fold(c, depth)
    _, nodes, edges = parsed(draw.svg(c, depth))
    assert [n.get("id") for n in nodes] == [f"n{b.index}" for b in boxes]
    wanted = sorted((f"n{i}", f"n{b.index}") for b in boxes for i in b.inputs)
    assert sorted((e.get("data-from"), e.get("data-to")) for e in edges) == wanted
    # every layer is in exactly one box, and folding loses no connection: each node's inputs are
    # in its own box or in one of its box's inputs
    members = sorted(m for b in boxes for m in b.members)
    assert members == list(range(len(c.graph.nodes)))
    box_of = {m: b.index for b in boxes for m in b.members}
    for node in c.graph.nodes:
        for source in node.inputs:
            here, there = box_of[node.index], box_of[source]
            assert here == there or there in boxes[here].inputs


def test_all_expanded_is_one_box_per_layer_with_the_layers_own_words():
    c = zoo("lenet5")
    _, nodes, edges = parsed(draw.svg(c, depth=0))
    assert len(nodes) == len(c.graph.nodes) == 13 and len(edges) == 12
    text = " ".join("".join(n.itertext()) for n in nodes)
    assert "CONV 6@5x5 p2" in text and "6x28x28" in text and "156 params" in text
    assert "conv1" in text and "POOL max 2x2 s2" in text


def test_blocks_fold_with_their_repeat_count_and_open_with_depth():
    c = checked(RESIDUAL)
    folded, frames = draw.fold(c, 0)
    assert [b.kind for b in folded] == ["INPUT", "CONV", "BLOCK", "POOL", "FC", "SOFTMAX"]
    block = folded[2]
    assert block.title == "res(8) ×3" and block.repeat == 3 and len(block.members) == 21
    assert block.name == "res1–res3" and frames == []
    assert block.params == sum(c.layers[m].param_count for m in block.members)

    opened, frames = draw.fold(c, 1)
    assert len(opened) == len(c.graph.nodes)
    assert [f.key for f in frames] == ["res1", "res2", "res3"]
    assert frames[1].label == "res2: res(8) x3, #2"
    root, nodes, _ = parsed(draw.svg(c, 1))
    assert len(nodes) == len(c.graph.nodes)
    assert [g.get("data-block") for g in root.findall(".//svg:g[@class='frame']", NS)] == [
        "res1",
        "res2",
        "res3",
    ]
    # the named tensor of the block is shown where it is made
    assert any(b.tags == ("y",) for b in opened)


def test_nested_blocks_open_one_level_at_a_time():
    c = zoo("googlenet")
    counts = [len(draw.fold(c, depth)[0]) for depth in (0, 1, 2, 3)]
    assert counts[0] < counts[1] < counts[2] == counts[3] == len(c.graph.nodes)
    titles = [b.title for b in draw.fold(c, 1)[0]]
    assert "basic(c3, k=3, p=1)" in titles  # inner calls fold inside an opened inception
    assert "inception(64, 96, 128, 16, 32, 32)" in [b.title for b in draw.fold(c, 0)[0]]


def test_the_same_spec_gives_the_same_bytes_in_any_process():
    c = zoo("googlenet")
    assert draw.svg(c, 1) == draw.svg(c, 1)
    script = (
        "import sys; from cnnc.compiler import draw; from cnnc.compiler.check import check_file;"
        "sys.stdout.write(draw.svg(check_file(sys.argv[1], verify_expects=False), 1))"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script, str(SPECS / "googlenet.cnn")],
            capture_output=True,
            env=env,
            check=True,
        )
        outputs.add(run.stdout)
    assert outputs == {draw.svg(c, 1).encode()}


def _overlap(a, b) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


@pytest.mark.parametrize("name", ["resnet50", "googlenet", "unet_small", "squeezenet1_1"])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_boxes_never_overlap_and_arrows_point_down(name, depth):
    placed = draw.place(zoo(name), depth)
    rects = list(placed.rects.values())
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert not _overlap(a, b)
    for arrow in placed.arrows:
        source, target = placed.rects[arrow.source], placed.rects[arrow.target]
        assert source.y < target.y
        assert all(0 <= x <= placed.width and 0 <= y <= placed.height for x, y in arrow.points)


def test_residual_shortcuts_go_round_the_left_of_the_main_column():
    placed = draw.place(zoo("resnet50"), 1)
    skips = [a for a in placed.arrows if a.skip]
    assert len(skips) == 12  # the identity shortcuts; projections are branches of their own
    left = min(r.x for r in placed.rects.values())
    for arrow in skips:
        lane = min(x for x, _ in arrow.points)
        assert lane < left
        first, last = placed.rects[arrow.source], placed.rects[arrow.target]
        # nothing stands in the lane between its two ends
        for r in placed.rects.values():
            if first.y < r.y < last.y:
                assert r.x > lane
    # the projection shortcut runs in a column of its own, right of the main one
    names = {b.name: b.index for b in placed.boxes}
    main, side = placed.rects[names["bottleneck1.conv1"]], names["bottleneck1.conv4"]
    assert placed.rects[side].x > main.x + main.w


def test_the_unet_steps_right_as_it_shrinks_and_back_as_it_grows():
    placed = draw.place(zoo("unet_small"), 0)
    x = {b.name: placed.rects[b.index].x for b in placed.boxes}
    assert x["double1"] < x["double2"] < x["double3"]  # down the encoder, to the right
    assert x["double3"] > x["double4"] > x["double5"]  # up the decoder, back
    assert x["double2"] == x["double4"] and x["double1"] == x["double5"] == x["conv1"]
    skips = {
        (placed.boxes[a.source].name, placed.boxes[a.target].name) for a in placed.arrows if a.skip
    }
    assert skips == {("double1", "concat2"), ("double2", "concat1")}


def test_a_classifier_without_upsampling_stays_in_one_column():
    placed = draw.place(zoo("resnet50"), 0)
    assert len({r.x for r in placed.rects.values()}) == 1


@pytest.mark.parametrize(
    ("source", "most"),
    [(TEN, 1.0), (long_spec(40), 2.0)],  # 10 layers; 40 blocks x 6 + 4 = 244 layers
)
def test_specs_draw_fast(source, most):
    started = time.perf_counter()
    c = checked(source)
    for depth in (0, 1):
        text = draw.svg(c, depth)
    elapsed = time.perf_counter() - started
    assert len(c.graph.nodes) > (200 if most > 1 else 10)
    assert elapsed < most, f"{elapsed:.2f}s"
    assert len(parsed(text)[1]) == len(c.graph.nodes)


def test_html_is_one_page_with_the_diagram_and_the_table():
    page = draw_paint.html(zoo("lenet5"))
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</svg>" in page
    assert (
        "61,706" in page
        and "conv1" in page
        and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    )


def test_png_is_the_same_picture_painted_by_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    data = draw_paint.png(zoo("unet_small"))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    placed = draw.place(zoo("unet_small"))
    assert abs(width - placed.width * 1.5) <= 1 and abs(height - placed.height * 1.5) <= 1
    out = tmp_path / "net.png"
    assert command(["draw", str(SPECS / "lenet5.cnn"), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the command ------------------------------------------------------------------------------


def command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cnnc")
    cli_draw.add_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.run(args)


def test_draw_writes_svg_png_and_html(tmp_path, capsys):
    out = tmp_path / "net.svg"
    assert command(["draw", str(SPECS / "resnet18.cnn"), "-o", str(out), "--depth", "1"]) == 0
    assert ET.fromstring(out.read_bytes()).tag == "{http://www.w3.org/2000/svg}svg"
    assert "net.svg: resnet18" in capsys.readouterr().out
    page = tmp_path / "net.html"
    assert command(["draw", str(SPECS / "lenet5.cnn"), "-o", str(page)]) == 0
    assert "<table>" in page.read_text()
    assert command(["draw", str(SPECS / "lenet5.cnn"), "--input", "1x32x32"]) == 0
    assert "1x32x32" in capsys.readouterr().out  # no -o: the SVG on stdout


def test_draw_errors_are_exit_codes_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "bad.cnn"
    bad.write_text("input 1x4x4\nCONV 6@5x5 -> FC 10\n")
    assert command(["draw", str(bad), "-o", str(tmp_path / "x.svg")]) == 1
    err = capsys.readouterr().err
    assert "bad.cnn:2" in err and "^" in err and not (tmp_path / "x.svg").exists()
    assert command(["draw", str(tmp_path / "missing.cnn")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert command(["draw", str(tmp_path)]) == 2
    assert "folder" in capsys.readouterr().err
    assert command(["draw", str(SPECS / "lenet5.cnn"), "-o", str(tmp_path / "net.jpg")]) == 2
    assert ".svg, .png or .html" in capsys.readouterr().err
    out = tmp_path / "no" / "such" / "folder" / "net.svg"
    assert command(["draw", str(SPECS / "lenet5.cnn"), "-o", str(out)]) == 2
    assert "cannot write" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        command(["draw", str(SPECS / "lenet5.cnn"), "--depth", "-1"])
    assert exit_.value.code == 2


def test_png_without_matplotlib_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = command(["draw", str(SPECS / "lenet5.cnn"), "-o", str(tmp_path / "net.png")])
    assert code == 2 and "cnnc[plot]" in capsys.readouterr().err


def test_drawing_never_imports_numba_or_matplotlib():
    script = (
        "import sys; from cnnc.compiler import draw; from cnnc.compiler.check import check_file;"
        f"draw.svg(check_file({str(SPECS / 'resnet50.cnn')!r}), 1);"
        "print(sorted(m for m in ('numba', 'matplotlib', 'numpy') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
