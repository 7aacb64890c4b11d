"""Tests for cnnc.runtime.show: filters and feature maps of run folders written the way
`cnnc train` writes them (a spec.cnn and a checkpoint from train.save_checkpoint), with random
weights and tiny specs so that the whole file runs in seconds."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

from cnnc.compiler.check import check_file  # noqa: E402
from cnnc.compiler.training import TrainConfig  # noqa: E402
from cnnc.runtime import checkpoint, show  # noqa: E402
from cnnc.runtime.network import Network  # noqa: E402
from cnnc.runtime.optim import Optimizer  # noqa: E402
from cnnc.runtime.train import Progress, optimizer_config, save_checkpoint  # noqa: E402

GRAY = """network tiny
input 1x12x12
CONV 4@3x3 p1 -> RELU -> POOL max 2x2 -> CONV 6@3x3 -> RELU -> FC 3 -> SOFTMAX
"""
RGB = """network tiny_rgb
input 3x10x10
CONV 5@3x3 p1 -> RELU -> CONV 12@3x3 -> RELU -> POOL avg global -> FC 4
"""
UNET = """network tiny_unet
input 1x8x8
CONV 4@3x3 p1 -> RELU -> e1
  -> POOL max 2x2 -> CONV 8@3x3 p1 -> RELU -> DECONV 4@2x2 s2 -> up
CONCAT(up, e1) -> CONV 4@3x3 p1 -> RELU -> CONV 2@1x1
"""


def make_run(folder: Path, source: str, classes=()) -> Path:
    """A run folder as `cnnc train --out folder` leaves it, with the initial random weights."""
    folder.mkdir(parents=True)
    spec = folder / "spec.cnn"
    spec.write_text(source)
    network = Network(check_file(str(spec), verify_expects=False), batch=2, seed=7)
    config = TrainConfig()
    channels = network.plan.input_shape[0]
    norm = {"mean": [0.5] * channels, "std": [0.25] * channels}
    optimizer = Optimizer(optimizer_config(config), network.P.size)
    save_checkpoint(
        folder / checkpoint.FILENAME, network, optimizer, source, config, Progress(), norm, classes
    )
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "gray": make_run(root / "gray", GRAY, ["cat", "dog", "bird"]),
        "rgb": make_run(root / "rgb", RGB),
        "unet": make_run(root / "unet", UNET, ["background", "thing"]),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    gray, rgb = root / "gray.png", root / "rgb.png"
    Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8)).save(gray)
    Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(rgb)
    return {"gray": gray, "rgb": rgb}


def picture(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_filters_of_the_first_convolution(runs):
    image = picture(show.filters(runs["gray"]))
    width, height = image.size
    assert 500 <= width <= 2000 and 200 <= height <= 2000


@pytest.mark.parametrize(
    ("run", "layer", "tiles"),
    [
        ("gray", None, 4),  # 4 filters of one channel
        ("gray", "conv2", 6 * 4),  # 6 filters, a tile per input channel
        ("rgb", None, 5),  # 5 colour filters
        ("rgb", "conv2", 12 * 5),  # 12 filters over 5 channels, a tile per channel
    ],
)
def test_filter_grids_have_a_tile_per_filter_and_channel(runs, layer, run, tiles, monkeypatch):
    drawn = []
    import matplotlib.axes

    original = matplotlib.axes.Axes.imshow

    def counting(self, data, *args, **kwargs):
        drawn.append(np.asarray(data))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", counting)
    picture(show.filters(runs[run], layer))
    assert len(drawn) == tiles
    for tile in drawn:  # each scaled to 0..1 by its own filter's range
        assert tile.min() >= 0 and tile.max() <= 1
    if run == "rgb" and layer is None:
        assert all(tile.shape == (3, 3, 3) for tile in drawn)  # in colour


def test_filters_over_many_channels_are_averaged(tmp_path, monkeypatch):
    run = make_run(tmp_path / "wide", "input 1x8x8\nCONV 9@3x3 -> RELU -> CONV 2@3x3 -> FC 2\n")
    drawn = []
    import matplotlib.axes

    original = matplotlib.axes.Axes.imshow
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "imshow",
        lambda self, data, *a, **k: drawn.append(data) or original(self, data, *a, **k),
    )
    picture(show.filters(run, "conv2"))
    assert len(drawn) == 2  # one tile per filter: the mean over its 9 input channels


def test_maps_of_a_classifier(runs, images):
    image = picture(show.maps(runs["gray"], images["gray"]))
    assert image.size[0] > 900 and image.size[1] > 500


def test_maps_of_a_unet_show_per_pixel_classes(runs, images):
    image = picture(show.maps(runs["unet"], images["gray"], layers="conv1,e1,up,concat1"))
    assert image.size[0] > 900
    picture(show.maps(runs["unet"], images["gray"]))


def test_maps_of_a_colour_network(runs, images):
    picture(show.maps(runs["rgb"], images["rgb"], layers=["conv1", "relu2"]))


def test_activations_are_every_tensor_of_the_forward_pass(runs):
    checked = check_file(str(runs["unet"] / "spec.cnn"), verify_expects=False)
    network = Network(checked, batch=1, training=False)
    x = np.random.default_rng(1).standard_normal(checked.graph.input_shape, dtype=np.float32)
    seen = show.activations(network, x)
    assert sorted(seen) == list(range(len(checked.layers)))
    for layer in checked.layers:
        assert seen[layer.node.index].shape == layer.shape
    names = {layer.node.name: layer.node.index for layer in checked.layers}
    np.testing.assert_array_equal(seen[names["relu1"]], np.maximum(seen[names["conv1"]], 0))
    pooled = seen[names["relu1"]].reshape(4, 4, 2, 4, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(seen[names["pool1"]], pooled)
    concat = np.concatenate([seen[names["deconv1"]], seen[names["relu1"]]])
    np.testing.assert_array_equal(seen[names["concat1"]], concat)
    np.testing.assert_allclose(seen[checked.graph.output], network.forward(x)[0], rtol=1e-6)


def test_wrong_layers_are_named_with_the_choices(runs, images):
    with pytest.raises(show.ShowError, match="`relu1` is not a convolution.*conv1, conv2"):
        show.filters(runs["gray"], "relu1")
    with pytest.raises(show.ShowError, match="did you mean `conv2`"):
        show.filters(runs["gray"], "conv3")
    with pytest.raises(show.ShowError, match="`reul1` is not a layer.*did you mean `relu1`"):
        show.maps(runs["gray"], images["gray"], layers="conv1,reul1")


# ---- the command ------------------------------------------------------------------------------


def command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cnnc")
    show.add_commands(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.run(args)


def test_show_writes_pictures(runs, images, tmp_path, capsys):
    out = tmp_path / "f.png"
    assert command(["show", "filters", str(runs["gray"]), "-o", str(out), "--layer", "conv2"]) == 0
    picture(out.read_bytes())
    out = tmp_path / "m.png"
    checkpoint_file = str(runs["gray"] / checkpoint.FILENAME)  # the checkpoint file works too
    assert command(["show", "maps", checkpoint_file, str(images["gray"]), "-o", str(out)]) == 0
    picture(out.read_bytes())
    assert "m.png: maps of" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "filters", "{tmp}/nowhere"], "no such run folder"),
        (["show", "filters", "{tmp}"], "no spec.cnn here"),
        (["show", "filters", "{gray}", "--layer", "fc1"], "is not a convolution"),
        (["show", "filters", "{gray}", "-o", "{tmp}/f.gif"], ".png, .svg or .pdf"),
        (["show", "maps", "{gray}", "{tmp}/none.png"], "no such file"),
        (["show", "maps", "{gray}", "{gray}/spec.cnn"], "not a readable image"),
        (["show", "filters", "{gray}", "-o", "{tmp}/no/such/f.png"], "cannot write"),
        (["show", "filters", "{nockpt}"], "no checkpoint"),
    ],
)
def test_show_errors_exit_2_with_a_message(runs, tmp_path, capsys, argv, message):
    (tmp_path / "nockpt").mkdir()
    (tmp_path / "nockpt" / "spec.cnn").write_text(GRAY)
    fill = {"tmp": tmp_path, "gray": runs["gray"], "nockpt": tmp_path / "nockpt"}
    assert command([a.format(**fill) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_a_run_whose_spec_does_not_check_exits_1(tmp_path, capsys):
    run = make_run(tmp_path / "run", GRAY)
    (run / "spec.cnn").write_text("input 1x4x4\nCONV 6@5x5 -> FC 3\n")
    assert command(["show", "filters", str(run)]) == 1
    assert "spec.cnn:2" in capsys.readouterr().err


def test_without_matplotlib_the_error_says_how_to_install_it(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert command(["show", "filters", str(runs["gray"]), "-o", "/tmp/never.png"]) == 2
    assert "pip install 'cnnc[plot]'" in capsys.readouterr().err


def test_building_the_parser_imports_nothing_heavy():
    import subprocess

    script = (
        "import argparse, sys; from cnnc.runtime import show;"
        "show.add_commands(argparse.ArgumentParser().add_subparsers());"
        "print(sorted(m for m in ('numba', 'numpy', 'matplotlib') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
