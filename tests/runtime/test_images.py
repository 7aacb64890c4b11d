"""Tests for cnnc.runtime.images: image files and image folders (Pillow).

Everything is written into tmp_path; nothing depends on Debian's dataset-fashion-mnist package.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from data_helpers import errors

from cnnc.runtime.batches import normalize
from cnnc.runtime.images import image_to_array, load_image, load_images, read_image_folder
from cnnc.runtime.sources import load_data

# ------------------------------------------------------------------------------ images (Pillow)


def _png_tree(root, spec, size=(5, 4), mode="L"):
    """spec: {class: count}; writes PIL images of `size` (w, h) and `mode`."""
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for cls, n in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / cls / f"{i}.png"
            )
    return root


def test_image_folder_grayscale(tmp_path):
    _png_tree(tmp_path / "pets", {"dog": 2, "cat": 3})
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("ignored")
    ds = load_data(str(tmp_path / "pets"))
    assert ds.classes == ("cat", "dog") and ds.name == "pets"
    assert ds.shape == (1, 4, 5) and ds.x.dtype == np.uint8
    assert ds.y.tolist() == [0, 0, 0, 1, 1]
    from PIL import Image

    np.testing.assert_array_equal(ds.x[0, 0], np.asarray(Image.open(tmp_path / "pets/cat/0.png")))


def test_image_folder_mixed_modes_become_rgb(tmp_path):
    _png_tree(tmp_path, {"a": 2})
    _png_tree(tmp_path, {"b": 1}, mode="RGB")
    ds = read_image_folder(tmp_path)
    assert ds.shape == (3, 4, 5)
    assert (ds.x[0, 0] == ds.x[0, 1]).all()  # a gray image replicated into RGB


def test_image_folder_sizes_and_resize(tmp_path):
    _png_tree(tmp_path, {"a": 1})
    _png_tree(tmp_path, {"b": 1}, size=(7, 7))
    msg = errors(read_image_folder, tmp_path)
    assert "differ in size" in msg and "b/0.png" in msg and "image_shape" in msg
    ds = load_data(tmp_path, image_shape=(3, 8, 9))
    assert ds.shape == (3, 8, 9)


def test_image_folder_train_test(tmp_path):
    _png_tree(tmp_path / "train", {"x": 2, "y": 2})
    _png_tree(tmp_path / "test", {"y": 1})
    ds = read_image_folder(tmp_path)
    assert ds.classes == ("x", "y") and len(ds) == 4
    assert ds.y_test.tolist() == [1]
    _png_tree(tmp_path / "test", {"z": 1})
    assert "not among the training classes" in errors(read_image_folder, tmp_path)


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    (tmp_path / "empty").mkdir()
    assert "no class folders" in errors(read_image_folder, tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    msg = errors(load_data, str(tmp_path / "empty"))
    assert "cls" in msg and "no images" in msg
    _png_tree(tmp_path / "bad", {"a": 1})
    (tmp_path / "bad" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    msg = errors(read_image_folder, tmp_path / "bad")
    assert "broken.png" in msg and "not a readable image" in msg
    assert "no such folder" in errors(read_image_folder, tmp_path / "nope")


def test_pillow_missing_gives_install_hint(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert "pip install cnnc[images]" in errors(load_data, str(tmp_path))
    assert "pip install cnnc[images]" in errors(load_image, tmp_path / "a" / "0.png", (1, 2, 2))


def test_load_image_any_size_and_mode(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "red.png")
    Image.fromarray(np.full((10, 10), 128, np.uint8), "L").convert("RGB").save(
        tmp_path / "gray.jpg"
    )
    red = load_image(tmp_path / "red.png", (3, 32, 32))
    assert red.shape == (3, 32, 32) and red.dtype == np.float32
    np.testing.assert_allclose(red[:, 16, 16], [1, 0, 0])
    g = load_image(tmp_path / "red.png", (1, 28, 28))
    assert g.shape == (1, 28, 28) and 0.2 < g.mean() < 0.4  # luma of pure red
    batch = load_images([tmp_path / "red.png", tmp_path / "gray.jpg"], (1, 28, 28))
    assert batch.shape == (2, 1, 28, 28) and 0.45 < batch[1].mean() < 0.55
    with Image.open(tmp_path / "red.png") as im:
        assert image_to_array(im, (3, 5, 6)).shape == (3, 5, 6)
    assert "not 4" in errors(load_image, tmp_path / "red.png", (4, 8, 8))
    assert "no such file" in errors(load_image, tmp_path / "none.png", (1, 8, 8))
    out = normalize(red, {"mean": [0.5] * 3, "std": [0.5] * 3})
    np.testing.assert_allclose(out[:, 0, 0], [1, -1, -1])
