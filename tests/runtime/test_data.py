"""Tests for cnnc.runtime.data: readers, errors, normalisation, splits and batches.

Everything is written into tmp_path; nothing depends on Debian's dataset-fashion-mnist package.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import sys

import numpy as np
import pytest

from cnnc.runtime import data as D
from cnnc.runtime.data import DataError, Dataset

# ------------------------------------------------------------------------------ helpers

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    arr = np.asarray(arr)
    code = _CODES[arr.dtype] if code is None else code
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr, gz=False, **kw):
    raw = idx_bytes(arr, **kw)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def rand_images(n, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def idx_folder(folder, n_train=12, n_test=4, gz=True, sep="-", prefix="", test=True):
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    xtr, ytr = rand_images(n_train), np.arange(n_train, dtype=np.uint8) % 10
    write_idx(folder / f"{prefix}train-images{sep}idx3-ubyte{ext}", xtr, gz)
    write_idx(folder / f"{prefix}train-labels{sep}idx1-ubyte{ext}", ytr, gz)
    xte, yte = rand_images(n_test, seed=1), np.arange(n_test, dtype=np.uint8) % 10
    if test:
        write_idx(folder / f"{prefix}t10k-images{sep}idx3-ubyte{ext}", xte, gz)
        write_idx(folder / f"{prefix}t10k-labels{sep}idx1-ubyte{ext}", yte, gz)
    return xtr, ytr, xte, yte


def indexed(n, c=1, h=2, w=3):
    """A Dataset whose label is the sample's index, so batches can be traced back."""
    x = (np.arange(n * c * h * w) % 256).astype(np.uint8).reshape(n, c, h, w)
    return Dataset(x, np.arange(n, dtype=np.int64), tuple(map(str, range(n))), "idx")


def labelled(y, c=1, h=2, w=2, seed=0):
    y = np.asarray(y, dtype=np.int64)
    x = np.random.default_rng(seed).integers(0, 256, (len(y), c, h, w), dtype=np.uint8)
    return Dataset(x, y, tuple(map(str, range(int(y.max()) + 1))), "lab")


def errors(fn, *args, match=None, **kw):
    with pytest.raises(DataError, match=match) as e:
        fn(*args, **kw)
    return str(e.value)


# ------------------------------------------------------------------------------ bundled sample

SAMPLE_SHA256 = "b6db0d881a8f46dca3f951e2c475f83751d653fd8492ab007d948d41b5d23a2a"


def test_bundled_sample_is_small_balanced_and_well_formed():
    assert D.DEFAULT_SAMPLE.is_file()
    assert D.DEFAULT_SAMPLE.stat().st_size < 6_000_000
    for ds in (D.load_data(), D.load_data("default"), D.load_data(None)):
        assert ds.name == "fashion-mnist-sample"
        assert ds.shape == (1, 28, 28)
        assert ds.x.dtype == np.uint8 and ds.y.dtype == np.int64
        assert ds.x.shape == (8000, 1, 28, 28) and ds.x_test.shape == (2000, 1, 28, 28)
        assert ds.classes == D.FASHION_MNIST_CLASSES
        assert np.bincount(ds.y, minlength=10).tolist() == [800] * 10
        assert np.bincount(ds.y_test, minlength=10).tolist() == [200] * 10
        assert ds.y.min() >= 0 and ds.y.max() < 10
        assert ds.x.max() > 200  # real pixels, not zeros


def test_bundled_sample_content_matches_readme_digest():
    h = hashlib.sha256()
    with np.load(D.DEFAULT_SAMPLE, allow_pickle=False) as f:
        for k in ("x_train", "y_train", "x_test", "y_test", "classes"):
            a = np.ascontiguousarray(f[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    assert h.hexdigest() == SAMPLE_SHA256


# ------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = D.read_idx(write_idx(tmp_path / "a-idx3-ubyte", arr, gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz,sep", [(True, "-"), (False, "-"), (False, ".")])
def test_idx_folder_train_and_test(tmp_path, gz, sep):
    xtr, ytr, xte, yte = idx_folder(tmp_path / "digits", gz=gz, sep=sep)
    for ds in (D.read_idx_folder(tmp_path / "digits"), D.load_data(str(tmp_path / "digits"))):
        assert ds.shape == (1, 6, 5)
        np.testing.assert_array_equal(ds.x[:, 0], xtr)
        np.testing.assert_array_equal(ds.y, ytr)
        np.testing.assert_array_equal(ds.x_test[:, 0], xte)
        np.testing.assert_array_equal(ds.y_test, yte)
        assert ds.classes == D.MNIST_CLASSES
        assert ds.test().name.endswith("(test)") and len(ds.test()) == 4


def test_idx_folder_without_test_part(tmp_path):
    idx_folder(tmp_path / "d", test=False)
    ds = D.load_data(tmp_path / "d")
    assert not ds.has_test and ds.test() is None and len(ds) == 12


def test_idx_folder_named_fashion_gets_class_names(tmp_path):
    idx_folder(tmp_path / "my-fashion-mnist")
    ds = D.load_data(str(tmp_path / "my-fashion-mnist"))
    assert ds.classes == D.FASHION_MNIST_CLASSES


def test_idx_prefers_uncompressed_copy(tmp_path):
    idx_folder(tmp_path, gz=True)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 6, 5), np.uint8))
    assert D.read_idx_folder(tmp_path).x.max() == 0


def test_idx_image_file_finds_labels_beside_it(tmp_path):
    xtr, ytr, xte, yte = idx_folder(tmp_path, gz=True)
    ds = D.load_data(str(tmp_path / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(ds.x[:, 0], xte)
    np.testing.assert_array_equal(ds.y, yte)
    assert not ds.has_test


def test_idx_file_with_odd_name_is_sniffed_but_needs_labels(tmp_path):
    p = write_idx(tmp_path / "stuff.bin", rand_images(3), gz=True)
    msg = errors(D.load_data, str(p))
    assert "stuff.bin" in msg and "labels" in msg


def test_emnist_prefix_and_mapping(tmp_path):
    idx_folder(tmp_path, prefix="emnist-letters-", gz=True)
    (tmp_path / "emnist-letters-mapping.txt").write_text(
        "\n".join(f"{i} {65 + i}" for i in range(10)) + "\n"
    )
    ds = D.load_data(tmp_path)
    assert ds.name == "emnist-letters"
    assert ds.classes == tuple("ABCDEFGHIJ")


def test_idx_several_datasets_in_one_folder(tmp_path):
    idx_folder(tmp_path, prefix="emnist-letters-")
    idx_folder(tmp_path, prefix="emnist-digits-")
    assert "several datasets" in errors(D.read_idx_folder, tmp_path)
    ds = D.load_data(tmp_path / "emnist-digits-train-images-idx3-ubyte.gz")
    assert len(ds) == 12


def test_idx_four_dimensional_channels_last(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    ds = D.read_idx_folder(tmp_path)
    assert ds.shape == (3, 5, 6)
    np.testing.assert_array_equal(ds.x, x.transpose(0, 3, 1, 2))


def test_idx_error_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(rand_images(50)))
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(blob[: len(blob) // 2])
    msg = errors(D.read_idx, p)
    assert str(p) in msg and "gzip" in msg


def test_idx_error_wrong_magic(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(b"\x01\x02\x08\x03" + bytes(100))
    msg = errors(D.read_idx, p)
    assert str(p) in msg and "not an IDX file" in msg


def test_idx_error_unknown_dtype_code(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 2) + b"ab")
    assert "type code 0x07" in errors(D.read_idx, p)


def test_idx_error_truncated_and_too_long(tmp_path):
    raw = idx_bytes(rand_images(3))
    p = tmp_path / "x"
    p.write_bytes(raw[:-7])
    assert "truncated" in errors(D.read_idx, p)
    p.write_bytes(raw + b"extra")
    assert "longer than" in errors(D.read_idx, p)
    p.write_bytes(raw[:9])  # header cut inside the dims
    assert "truncated IDX header" in errors(D.read_idx, p)
    p.write_bytes(b"\0\0")
    assert "too short" in errors(D.read_idx, p)
    p.write_bytes(bytes([0, 0, 8, 0]))
    assert "zero dimensions" in errors(D.read_idx, p)


def test_idx_error_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(5))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    msg = errors(D.load_data, tmp_path)
    assert "5 images" in msg and "4 labels" in msg


def test_idx_error_bad_dims(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(5, np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    assert "(N, rows, cols)" in errors(D.read_idx_folder, tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(5))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((5, 2), np.uint8))
    assert "1-D" in errors(D.read_idx_folder, tmp_path)


def test_idx_error_missing_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(5))
    assert "train-labels" in errors(D.read_idx_folder, tmp_path)
    assert "no labels file" in errors(D.read_idx_dataset, tmp_path / "train-images-idx3-ubyte")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rand_images(2))
    assert "no matching test" in errors(D.read_idx_folder, tmp_path)
    assert "cannot list" in errors(D.read_idx_folder, tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    assert "no IDX files" in errors(D.read_idx_folder, tmp_path / "empty")


# ------------------------------------------------------------------------------ .npz


def test_npz_x_y(tmp_path):
    x, y = rand_images(7), np.array([0, 1, 2, 0, 1, 2, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = D.load_data(str(tmp_path / "d.npz"))
    assert ds.name == "d" and ds.shape == (1, 6, 5) and ds.classes == ("0", "1", "2")
    np.testing.assert_array_equal(ds.x[:, 0], x)
    assert not ds.has_test


def test_npz_train_test_and_classes(tmp_path):
    x = np.random.default_rng(0).random((6, 3, 4, 4), dtype=np.float32)
    np.savez_compressed(
        tmp_path / "d.npz",
        x_train=x,
        y_train=np.arange(6) % 3,
        x_test=x[:2],
        y_test=np.array([2, 0], dtype=np.int32),
        classes=np.array(["cat", "dog", "bird"]),
    )
    ds = D.read_npz(tmp_path / "d.npz")
    assert ds.x.dtype == np.float32 and ds.shape == (3, 4, 4)
    assert ds.classes == ("cat", "dog", "bird")
    assert ds.y_test.tolist() == [2, 0] and ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(ds.x, x)


def test_npz_x_with_test_and_byte_classes(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x=rand_images(4),
        y=np.array([0, 1, 0, 1]),
        x_test=rand_images(2),
        y_test=np.array([1, 1]),
        classes=np.array([b"no", b"yes"]),
    )
    ds = D.read_npz(tmp_path / "d.npz")
    assert ds.classes == ("no", "yes") and len(ds.test()) == 2


@pytest.mark.parametrize(
    "shape,chw,channels_last",
    [
        ((4, 28, 28), (1, 28, 28), False),
        ((4, 1, 28, 28), (1, 28, 28), False),
        ((4, 28, 28, 1), (1, 28, 28), True),
        ((4, 32, 32, 3), (3, 32, 32), True),
        ((4, 3, 32, 32), (3, 32, 32), False),
        ((4, 4, 8, 8), (4, 8, 8), False),
        ((4, 3, 5, 3), (3, 5, 3), False),  # ambiguous: axis 1 is 3, so channels-first
    ],
)
def test_npz_layout_rule(tmp_path, shape, chw, channels_last):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(4, dtype=np.int64))
    ds = D.read_npz(tmp_path / "d.npz")
    assert ds.shape == chw
    want = x.transpose(0, 3, 1, 2) if channels_last else x.reshape(4, *chw)
    np.testing.assert_array_equal(ds.x, want)


def test_npz_pixel_dtypes(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.full((2, 3, 3), 255, np.int64), y=[0, 1])
    assert D.read_npz(tmp_path / "a.npz").x.dtype == np.uint8
    np.savez(tmp_path / "b.npz", x=np.ones((2, 3, 3), bool), y=[0, 1])
    assert D.read_npz(tmp_path / "b.npz").x.max() == 255
    np.savez(tmp_path / "c.npz", x=np.full((2, 3, 3), 256, np.int64), y=[0, 1])
    assert "0..255" in errors(D.read_npz, tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=np.full((2, 3, 3), 255.0), y=[0, 1])
    assert "[0, 1]" in errors(D.read_npz, tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", x=np.full((2, 3, 3), np.nan), y=[0, 1])
    assert "NaN" in errors(D.read_npz, tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", x=np.full((2, 3, 3), "a"), y=[0, 1])
    assert "numeric" in errors(D.read_npz, tmp_path / "f.npz")


def test_npz_error_pickled_objects(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, x=np.array([object(), None], dtype=object), y=np.array([0, 1]))
    msg = errors(D.load_data, str(p))
    assert str(p) in msg and "pickled" in msg
    p2 = tmp_path / "evil2.npz"
    np.savez(p2, x=rand_images(2), y=[0, 1], classes=np.array(["a", 3], dtype=object))
    assert "pickled" in errors(D.read_npz, p2)


def test_npz_error_keys(tmp_path):
    np.savez(tmp_path / "a.npz", images=rand_images(2), labels=[0, 1])
    msg = errors(D.read_npz, tmp_path / "a.npz")
    assert "expected arrays x and y" in msg and "images, labels" in msg
    np.savez(tmp_path / "b.npz", x=rand_images(2))
    assert "expected arrays x and y" in errors(D.read_npz, tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=rand_images(2), y=[0, 1], x_test=rand_images(1))
    assert "x_test and y_test" in errors(D.read_npz, tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=rand_images(2), y=[0, 1], x_train=rand_images(2))
    assert "both x and x_train" in errors(D.read_npz, tmp_path / "d.npz")


def test_npz_error_contents(tmp_path):
    def bad(match, **arrays):
        np.savez(tmp_path / "e.npz", **arrays)
        msg = errors(D.read_npz, tmp_path / "e.npz", match=match)
        assert "e.npz" in msg

    bad("3 images in x but 2 labels", x=rand_images(3), y=[0, 1])
    bad("integers", x=rand_images(2), y=[0.0, 1.0])
    bad("one-hot", x=rand_images(2), y=np.eye(2, dtype=np.int64))
    bad("negative", x=rand_images(2), y=[0, -1])
    bad("up to 2 but only 2 class names", x=rand_images(2), y=[0, 2], classes=["a", "b"])
    bad("1-D string array", x=rand_images(2), y=[0, 1], classes=np.array([1, 2]))
    bad("no images", x=np.zeros((0, 3, 3), np.uint8), y=np.zeros(0, np.int64))
    bad("shape", x=np.zeros((2, 3), np.uint8), y=[0, 1])
    bad("x_test images are 1x2x2", x=rand_images(2), y=[0, 1], x_test=rand_images(1, 2, 2),
        y_test=[0])  # fmt: skip


def test_npz_error_bad_files(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"this is not a zip archive at all")
    msg = errors(D.load_data, str(p))
    assert "junk.npz" in msg and "not an .npz archive" in msg
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=rand_images(200, 28, 28), y=np.zeros(200, np.int64))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:5000])
    assert "cut.npz" in errors(D.load_data, str(cut))
    npy = tmp_path / "single.npy"
    np.save(npy, rand_images(2))
    assert "single .npy" in errors(D.read_npz, npy)
    assert "no such file" in errors(D.read_npz, tmp_path / "missing.npz")


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
    ds = D.load_data(str(tmp_path / "pets"))
    assert ds.classes == ("cat", "dog") and ds.name == "pets"
    assert ds.shape == (1, 4, 5) and ds.x.dtype == np.uint8
    assert ds.y.tolist() == [0, 0, 0, 1, 1]
    from PIL import Image

    np.testing.assert_array_equal(ds.x[0, 0], np.asarray(Image.open(tmp_path / "pets/cat/0.png")))


def test_image_folder_mixed_modes_become_rgb(tmp_path):
    _png_tree(tmp_path, {"a": 2})
    _png_tree(tmp_path, {"b": 1}, mode="RGB")
    ds = D.read_image_folder(tmp_path)
    assert ds.shape == (3, 4, 5)
    assert (ds.x[0, 0] == ds.x[0, 1]).all()  # a gray image replicated into RGB


def test_image_folder_sizes_and_resize(tmp_path):
    _png_tree(tmp_path, {"a": 1})
    _png_tree(tmp_path, {"b": 1}, size=(7, 7))
    msg = errors(D.read_image_folder, tmp_path)
    assert "differ in size" in msg and "b/0.png" in msg and "image_shape" in msg
    ds = D.load_data(tmp_path, image_shape=(3, 8, 9))
    assert ds.shape == (3, 8, 9)


def test_image_folder_train_test(tmp_path):
    _png_tree(tmp_path / "train", {"x": 2, "y": 2})
    _png_tree(tmp_path / "test", {"y": 1})
    ds = D.read_image_folder(tmp_path)
    assert ds.classes == ("x", "y") and len(ds) == 4
    assert ds.y_test.tolist() == [1]
    _png_tree(tmp_path / "test", {"z": 1})
    assert "not among the training classes" in errors(D.read_image_folder, tmp_path)


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    (tmp_path / "empty").mkdir()
    assert "no class folders" in errors(D.read_image_folder, tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    msg = errors(D.load_data, str(tmp_path / "empty"))
    assert "cls" in msg and "no images" in msg
    _png_tree(tmp_path / "bad", {"a": 1})
    (tmp_path / "bad" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    msg = errors(D.read_image_folder, tmp_path / "bad")
    assert "broken.png" in msg and "not a readable image" in msg
    assert "no such folder" in errors(D.read_image_folder, tmp_path / "nope")


def test_pillow_missing_gives_install_hint(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.png").write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert "pip install cnnc[images]" in errors(D.load_data, str(tmp_path))
    assert "pip install cnnc[images]" in errors(D.load_image, tmp_path / "a" / "0.png", (1, 2, 2))


def test_load_image_any_size_and_mode(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "red.png")
    Image.fromarray(np.full((10, 10), 128, np.uint8), "L").convert("RGB").save(
        tmp_path / "gray.jpg"
    )
    red = D.load_image(tmp_path / "red.png", (3, 32, 32))
    assert red.shape == (3, 32, 32) and red.dtype == np.float32
    np.testing.assert_allclose(red[:, 16, 16], [1, 0, 0])
    g = D.load_image(tmp_path / "red.png", (1, 28, 28))
    assert g.shape == (1, 28, 28) and 0.2 < g.mean() < 0.4  # luma of pure red
    batch = D.load_images([tmp_path / "red.png", tmp_path / "gray.jpg"], (1, 28, 28))
    assert batch.shape == (2, 1, 28, 28) and 0.45 < batch[1].mean() < 0.55
    with Image.open(tmp_path / "red.png") as im:
        assert D.image_to_array(im, (3, 5, 6)).shape == (3, 5, 6)
    assert "not 4" in errors(D.load_image, tmp_path / "red.png", (4, 8, 8))
    assert "no such file" in errors(D.load_image, tmp_path / "none.png", (1, 8, 8))
    out = D.normalize(red, {"mean": [0.5] * 3, "std": [0.5] * 3})
    np.testing.assert_allclose(out[:, 0, 0], [1, -1, -1])


# ------------------------------------------------------------------------------ --data resolution


def test_named_dataset_lookup(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.delenv("CNNC_DATA", raising=False)
    msg = errors(D.load_data, "fashion-mnist")
    assert "not found" in msg and "CNNC_DATA" in msg and "dataset-fashion-mnist" in msg
    idx_folder(tmp_path / "system" / "fashion-mnist")
    ds = D.load_data("fashion-mnist")
    assert ds.name == "fashion-mnist" and ds.classes == D.FASHION_MNIST_CLASSES and ds.has_test
    idx_folder(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("CNNC_DATA", str(tmp_path / "env"))
    ds = D.load_data("MNIST")
    assert ds.name == "mnist" and ds.classes == D.MNIST_CLASSES and len(ds) == 3
    idx_folder(tmp_path / "explicit", n_train=5)
    assert len(D.load_data("mnist", data_dir=tmp_path / "explicit")) == 5


def test_load_data_bad_sources(tmp_path):
    msg = errors(D.load_data, str(tmp_path / "nope.npz"))
    assert "no such file or folder" in msg and "fashion-mnist" in msg
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    assert "unsupported data file" in errors(D.load_data, str(p))


# ------------------------------------------------------------------------------ checks


def test_check_input_shape_message():
    ds = D.Dataset(
        np.zeros((1, 1, 28, 28), np.uint8), np.zeros(1, np.int64), ("a",), "fashion-mnist"
    )
    D.check_input_shape(ds, (1, 28, 28))
    msg = errors(D.check_input_shape, ds, (3, 32, 32))
    assert msg == (
        "the spec expects input 3x32x32 but the data is 1x28x28 (fashion-mnist); use a spec "
        "with `input 1x28x28` or data with 3 channels of 32x32"
    )
    assert "1 channel of" in errors(D.check_input_shape, ds, (1, 32, 32))
    D.check_num_classes(ds, 1)
    assert "10 outputs" in errors(D.check_num_classes, ds, 10)


def test_dataset_invariants():
    x = np.zeros((3, 1, 2, 2), np.uint8)
    y = np.array([0, 1, 1], np.int64)
    ds = Dataset(x, y, ("a", "b"), "t")
    assert x.flags.writeable and not ds.x.flags.writeable and not ds.y.flags.writeable
    assert "3 images" in errors(Dataset, x, y[:2], ("a", "b"), "t")
    assert "0..1" in errors(Dataset, x, y + 1, ("a", "b"), "t")
    assert "uint8 or float32" in errors(Dataset, x.astype(np.float64), y, ("a", "b"), "t")
    assert "together" in errors(Dataset, x, y, ("a", "b"), "t", x_test=x)
    assert "test images are 1x3x3" in errors(
        Dataset, x, y, ("a", "b"), "t", x_test=np.zeros((1, 1, 3, 3), np.uint8), y_test=y[:1]
    )
    assert ds.describe() == "t: 3 images of 1x2x2, 2 classes"


# ------------------------------------------------------------------------------ normalisation


def test_normalization_stats_and_apply():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 4, 5), dtype=np.uint8)
    x[:, 2] = 7  # a constant channel
    ds = Dataset(x, np.zeros(50, np.int64), ("a",), "n")
    norm = D.compute_normalization(ds, chunk=7)
    assert set(norm) == {"mean", "std"} and all(type(v) is float for v in norm["mean"])
    u = x.astype(np.float64) / 255
    np.testing.assert_allclose(norm["mean"], u.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(norm["std"][:2], u.std(axis=(0, 2, 3))[:2], rtol=1e-7)
    assert norm["std"][2] == 1.0
    for k in ("mean", "std"):  # chunking does not change the result
        np.testing.assert_allclose(norm[k], D.compute_normalization(x)[k], rtol=1e-12)
    out = D.normalize(x, norm)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == x.shape
    np.testing.assert_allclose(out[:, :2].mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, :2].std(axis=(0, 2, 3)), 1, atol=1e-4)
    # float [0, 1] data gives the same result as uint8 data
    f = (x / np.float32(255)).astype(np.float32)
    np.testing.assert_allclose(D.normalize(f, norm), out, atol=1e-5)
    np.testing.assert_allclose(D.compute_normalization(f)["mean"], norm["mean"], atol=1e-6)
    assert D.normalize(f, None) is not f
    assert "3" in errors(D.normalize, x, {"mean": [0.0], "std": [1.0]})


def test_bundled_sample_stats_are_fashion_mnist_like():
    norm = D.compute_normalization(D.load_data())
    assert abs(norm["mean"][0] - 0.286) < 0.01 and abs(norm["std"][0] - 0.353) < 0.01


# ------------------------------------------------------------------------------ batches


def test_validation_split_deterministic_stratified_disjoint():
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    ds = labelled(y)
    x_test = np.zeros((2, 1, 2, 2), np.uint8)
    ds = Dataset(ds.x, ds.y, ds.classes, "s", x_test, np.array([0, 1]))
    tr, va = D.split_validation(ds, 0.2, seed=3)
    tr2, va2 = D.split_validation(ds, 0.2, seed=3)
    np.testing.assert_array_equal(va.x, va2.x)
    np.testing.assert_array_equal(tr.y, tr2.y)
    assert len(va) == 20 and len(tr) == 80
    assert np.bincount(va.y).tolist() == [8, 6, 4, 2]
    assert tr.has_test and not va.has_test and va.name == "s (validation)"
    # disjoint and complete: identify samples by their pixels
    rows = {r.tobytes() for r in ds.x}
    assert {r.tobytes() for r in tr.x} | {r.tobytes() for r in va.x} == rows
    _, va3 = D.split_validation(ds, 0.2, seed=4)
    assert not np.array_equal(va.x, va3.x)


def test_validation_split_edges():
    ds = labelled([0, 1, 0, 1, 0])
    assert D.split_validation(ds, 0.0) == (ds, None)
    tr, va = D.split_validation(ds, 0.01)
    assert len(va) == 1 and len(tr) == 4
    for bad in (-0.1, 1.0):
        assert "fraction" in errors(D.split_validation, ds, bad)


def test_batches_cover_every_sample_once():
    ds = indexed(103)
    batches = list(D.iter_batches(ds, 10))
    assert len(batches) == D.batch_count(ds, 10) == 11
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(103))
    for xb, yb in batches:
        assert xb.dtype == np.float32 and xb.flags.c_contiguous and yb.dtype == np.int64
        np.testing.assert_allclose(xb, ds.x[yb] / 255, rtol=1e-6)
    shuffled = np.concatenate([b[1] for b in D.iter_batches(ds, 7, rng=np.random.default_rng(1))])
    assert sorted(shuffled.tolist()) == list(range(103)) and shuffled.tolist() != list(range(103))
    assert "at least 1" in errors(D.iter_batches, ds, 0)


def test_shuffling_reproducible_from_generator_state():
    ds = indexed(50)
    norm = D.compute_normalization(ds)

    def epoch(rng):
        return np.concatenate([y for _, y in D.iter_batches(ds, 8, norm=norm, rng=rng)])

    a, b = np.random.default_rng(42), np.random.default_rng(42)
    assert np.array_equal(epoch(a), epoch(b))
    state = a.bit_generator.state
    e2 = epoch(a)
    assert not np.array_equal(e2, epoch(np.random.default_rng(42)))
    restored = np.random.default_rng()
    restored.bit_generator.state = state
    assert np.array_equal(epoch(restored), e2)
    # the order is drawn when iter_batches is called, not when iteration starts
    c = np.random.default_rng(0)
    before = c.bit_generator.state
    it = D.iter_batches(ds, 8, rng=c)
    assert c.bit_generator.state != before
    next(it)
    assert np.array_equal(D.epoch_order(5, None), np.arange(5))
