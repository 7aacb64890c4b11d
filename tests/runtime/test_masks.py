"""Segmentation data: mask .npz archives, images/ + masks/ folders, and their errors."""

import numpy as np
import pytest
from data_helpers import errors

from cnnc.runtime.batches import split_validation
from cnnc.runtime.dataset import Dataset
from cnnc.runtime.masks import read_mask_folder, read_mask_npz
from cnnc.runtime.sources import load_data


def masks_npz(path, n=6, h=8, w=10, channels_last=False, **extra):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, h, w, 1) if channels_last else (n, 1, h, w), dtype=np.uint8)
    y = rng.integers(0, 3, (n, h, w)).astype(np.uint8)
    np.savez(path, x=x, y=y, **extra)
    return x, y


def test_npz_masks_read_as_uint8_maps_and_classes_default_to_the_labels(tmp_path):
    x, y = masks_npz(tmp_path / "m.npz", channels_last=True)
    data = load_data(tmp_path / "m.npz")
    assert data.dense and data.y.dtype == np.uint8 and data.y.shape == (6, 8, 10)
    assert data.x.shape == (6, 1, 8, 10) and np.array_equal(data.y, y)
    assert data.classes == ("0", "1", "2")
    assert "with 8x10 masks" in data.describe()


def test_the_ignore_label_is_no_class(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (4, 5, 5)).astype(np.uint8)
    y[:, 0, 0] = 255
    np.savez(tmp_path / "m.npz", x=np.zeros((4, 5, 5), np.uint8), y=y)
    assert read_mask_npz(tmp_path / "m.npz").classes == ("0", "1")


def test_mask_labels_out_of_range_and_wrong_sizes_are_clear_errors(tmp_path):
    masks_npz(tmp_path / "m.npz", classes=np.array(["a", "b"]))
    errors(load_data, tmp_path / "m.npz", match=r"mask labels in y must lie in 0\.\.1 .* found 2")
    np.savez(
        tmp_path / "s.npz", x=np.zeros((2, 1, 8, 8), np.uint8), y=np.zeros((2, 8, 6), np.uint8)
    )
    errors(load_data, tmp_path / "s.npz", match="masks in y are 8x6 but the images in x are 8x8")
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 1, 4, 4), np.uint8), y=np.zeros((2, 4, 4)))
    errors(load_data, tmp_path / "f.npz", match="integer class indices")
    np.savez(tmp_path / "big.npz", x=np.zeros((2, 1, 4, 4), np.uint8), y=np.full((2, 4, 4), 300))
    errors(load_data, tmp_path / "big.npz", match=r"0\.\.255")


def test_the_validation_split_of_masks_is_random_and_reproducible(tmp_path):
    masks_npz(tmp_path / "m.npz", n=20)
    data = load_data(tmp_path / "m.npz")
    rest, val = split_validation(data, 0.25, seed=3)
    assert (len(rest), len(val)) == (15, 5) and val.dense and rest.dense
    again = split_validation(data, 0.25, seed=3)[1]
    assert np.array_equal(val.x, again.x)


def _folder(root, n=3, mask_mode="P", size=(12, 10), mask_size=None):
    Image = pytest.importorskip("PIL.Image")
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(2)
    labels = []
    for i in range(n):
        w, h = size
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"im{i}.png"
        )
        mw, mh = mask_size or size
        label = np.zeros((mh, mw), np.uint8)
        label[: mh // 2] = 1
        label[:, : mw // 3] = 2
        mask = Image.fromarray(label if mask_mode != "RGB" else np.stack([label] * 3, -1))
        if mask_mode == "P":  # indices with VOC's first colours as palette
            mask = Image.fromarray(label, mode="P")
            mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        mask.save(root / "masks" / f"im{i}.png")
        labels.append(label)
    return labels


def test_an_images_and_masks_folder_reads_palette_masks_resized_nearest(tmp_path):
    labels = _folder(tmp_path / "seg")
    (tmp_path / "seg" / "classes.txt").write_text("sky\nsea\nrock\n")
    data = load_data(tmp_path / "seg", image_shape=(1, 6, 5))
    assert data.shape == (1, 6, 5) and data.y.shape == (3, 6, 5)
    assert data.classes == ("sky", "sea", "rock")
    assert set(np.unique(data.y)) == {0, 1, 2}  # nearest sampling: no new labels
    unscaled = read_mask_folder(tmp_path / "seg")
    assert np.array_equal(unscaled.y[0], labels[0]) and unscaled.shape == (3, 10, 12)


def test_folder_errors_name_the_file(tmp_path):
    _folder(tmp_path / "rgb", mask_mode="RGB")
    errors(load_data, tmp_path / "rgb", match="palette or greyscale PNG")
    _folder(tmp_path / "size", mask_mode="L", mask_size=(6, 5))
    errors(load_data, tmp_path / "size", match="the mask is 5x6 but its image is 10x12")
    _folder(tmp_path / "missing", mask_mode="L")
    (tmp_path / "missing" / "masks" / "im1.png").unlink()
    errors(load_data, tmp_path / "missing", match="no mask")


def test_a_dataset_refuses_masks_that_are_not_uint8():
    x = np.zeros((2, 1, 3, 3), np.uint8)
    errors(Dataset, x, np.zeros((2, 3, 3), np.int64), ("a", "b"), "d", match="uint8 class maps")
