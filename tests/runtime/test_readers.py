"""Tests for cnnc.runtime.readers: the IDX and .npz readers and their errors.

Everything is written into tmp_path; nothing depends on Debian's dataset-fashion-mnist package.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from data_helpers import errors, idx_bytes, idx_folder, rand_images, write_idx

from cnnc.runtime.readers import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    read_idx,
    read_idx_dataset,
    read_idx_folder,
    read_npz,
)
from cnnc.runtime.sources import load_data

# ------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write_idx(tmp_path / "a-idx3-ubyte", arr, gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz,sep", [(True, "-"), (False, "-"), (False, ".")])
def test_idx_folder_train_and_test(tmp_path, gz, sep):
    xtr, ytr, xte, yte = idx_folder(tmp_path / "digits", gz=gz, sep=sep)
    for ds in (read_idx_folder(tmp_path / "digits"), load_data(str(tmp_path / "digits"))):
        assert ds.shape == (1, 6, 5)
        np.testing.assert_array_equal(ds.x[:, 0], xtr)
        np.testing.assert_array_equal(ds.y, ytr)
        np.testing.assert_array_equal(ds.x_test[:, 0], xte)
        np.testing.assert_array_equal(ds.y_test, yte)
        assert ds.classes == MNIST_CLASSES
        assert ds.test().name.endswith("(test)") and len(ds.test()) == 4


def test_idx_folder_without_test_part(tmp_path):
    idx_folder(tmp_path / "d", test=False)
    ds = load_data(tmp_path / "d")
    assert not ds.has_test and ds.test() is None and len(ds) == 12


def test_idx_folder_named_fashion_gets_class_names(tmp_path):
    idx_folder(tmp_path / "my-fashion-mnist")
    ds = load_data(str(tmp_path / "my-fashion-mnist"))
    assert ds.classes == FASHION_MNIST_CLASSES


def test_idx_prefers_uncompressed_copy(tmp_path):
    idx_folder(tmp_path, gz=True)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 6, 5), np.uint8))
    assert read_idx_folder(tmp_path).x.max() == 0


def test_idx_image_file_finds_labels_beside_it(tmp_path):
    xtr, ytr, xte, yte = idx_folder(tmp_path, gz=True)
    ds = load_data(str(tmp_path / "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(ds.x[:, 0], xte)
    np.testing.assert_array_equal(ds.y, yte)
    assert not ds.has_test


def test_idx_file_with_odd_name_is_sniffed_but_needs_labels(tmp_path):
    p = write_idx(tmp_path / "stuff.bin", rand_images(3), gz=True)
    msg = errors(load_data, str(p))
    assert "stuff.bin" in msg and "labels" in msg


def test_emnist_prefix_and_mapping(tmp_path):
    idx_folder(tmp_path, prefix="emnist-letters-", gz=True)
    (tmp_path / "emnist-letters-mapping.txt").write_text(
        "\n".join(f"{i} {65 + i}" for i in range(10)) + "\n"
    )
    ds = load_data(tmp_path)
    assert ds.name == "emnist-letters"
    assert ds.classes == tuple("ABCDEFGHIJ")


def test_idx_several_datasets_in_one_folder(tmp_path):
    idx_folder(tmp_path, prefix="emnist-letters-")
    idx_folder(tmp_path, prefix="emnist-digits-")
    assert "several datasets" in errors(read_idx_folder, tmp_path)
    ds = load_data(tmp_path / "emnist-digits-train-images-idx3-ubyte.gz")
    assert len(ds) == 12


def test_idx_four_dimensional_channels_last(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    ds = read_idx_folder(tmp_path)
    assert ds.shape == (3, 5, 6)
    np.testing.assert_array_equal(ds.x, x.transpose(0, 3, 1, 2))


def test_idx_error_truncated_gzip(tmp_path):
    blob = gzip.compress(idx_bytes(rand_images(50)))
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(blob[: len(blob) // 2])
    msg = errors(read_idx, p)
    assert str(p) in msg and "gzip" in msg


def test_idx_error_wrong_magic(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(b"\x01\x02\x08\x03" + bytes(100))
    msg = errors(read_idx, p)
    assert str(p) in msg and "not an IDX file" in msg


def test_idx_error_unknown_dtype_code(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 2) + b"ab")
    assert "type code 0x07" in errors(read_idx, p)


def test_idx_error_truncated_and_too_long(tmp_path):
    raw = idx_bytes(rand_images(3))
    p = tmp_path / "x"
    p.write_bytes(raw[:-7])
    assert "truncated" in errors(read_idx, p)
    p.write_bytes(raw + b"extra")
    assert "longer than" in errors(read_idx, p)
    p.write_bytes(raw[:9])  # header cut inside the dims
    assert "truncated IDX header" in errors(read_idx, p)
    p.write_bytes(b"\0\0")
    assert "too short" in errors(read_idx, p)
    p.write_bytes(bytes([0, 0, 8, 0]))
    assert "zero dimensions" in errors(read_idx, p)


def test_idx_error_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(5))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    msg = errors(load_data, tmp_path)
    assert "5 images" in msg and "4 labels" in msg


def test_idx_error_bad_dims(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(5, np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    assert "(N, rows, cols)" in errors(read_idx_folder, tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(5))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((5, 2), np.uint8))
    assert "1-D" in errors(read_idx_folder, tmp_path)


def test_idx_error_missing_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(5))
    assert "train-labels" in errors(read_idx_folder, tmp_path)
    assert "no labels file" in errors(read_idx_dataset, tmp_path / "train-images-idx3-ubyte")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rand_images(2))
    assert "no matching test" in errors(read_idx_folder, tmp_path)
    assert "cannot list" in errors(read_idx_folder, tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    assert "no IDX files" in errors(read_idx_folder, tmp_path / "empty")


# ------------------------------------------------------------------------------ .npz


def test_npz_x_y(tmp_path):
    x, y = rand_images(7), np.array([0, 1, 2, 0, 1, 2, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_data(str(tmp_path / "d.npz"))
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
    ds = read_npz(tmp_path / "d.npz")
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
    ds = read_npz(tmp_path / "d.npz")
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
    ds = read_npz(tmp_path / "d.npz")
    assert ds.shape == chw
    want = x.transpose(0, 3, 1, 2) if channels_last else x.reshape(4, *chw)
    np.testing.assert_array_equal(ds.x, want)


def test_npz_pixel_dtypes(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.full((2, 3, 3), 255, np.int64), y=[0, 1])
    assert read_npz(tmp_path / "a.npz").x.dtype == np.uint8
    np.savez(tmp_path / "b.npz", x=np.ones((2, 3, 3), bool), y=[0, 1])
    assert read_npz(tmp_path / "b.npz").x.max() == 255
    np.savez(tmp_path / "c.npz", x=np.full((2, 3, 3), 256, np.int64), y=[0, 1])
    assert "0..255" in errors(read_npz, tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=np.full((2, 3, 3), 255.0), y=[0, 1])
    assert "[0, 1]" in errors(read_npz, tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", x=np.full((2, 3, 3), np.nan), y=[0, 1])
    assert "NaN" in errors(read_npz, tmp_path / "e.npz")
    np.savez(tmp_path / "f.npz", x=np.full((2, 3, 3), "a"), y=[0, 1])
    assert "numeric" in errors(read_npz, tmp_path / "f.npz")


def test_npz_error_pickled_objects(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, x=np.array([object(), None], dtype=object), y=np.array([0, 1]))
    msg = errors(load_data, str(p))
    assert str(p) in msg and "pickled" in msg
    p2 = tmp_path / "evil2.npz"
    np.savez(p2, x=rand_images(2), y=[0, 1], classes=np.array(["a", 3], dtype=object))
    assert "pickled" in errors(read_npz, p2)


def test_npz_error_keys(tmp_path):
    np.savez(tmp_path / "a.npz", images=rand_images(2), labels=[0, 1])
    msg = errors(read_npz, tmp_path / "a.npz")
    assert "expected arrays x and y" in msg and "images, labels" in msg
    np.savez(tmp_path / "b.npz", x=rand_images(2))
    assert "expected arrays x and y" in errors(read_npz, tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=rand_images(2), y=[0, 1], x_test=rand_images(1))
    assert "x_test and y_test" in errors(read_npz, tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", x=rand_images(2), y=[0, 1], x_train=rand_images(2))
    assert "both x and x_train" in errors(read_npz, tmp_path / "d.npz")


def test_npz_error_contents(tmp_path):
    def bad(match, **arrays):
        np.savez(tmp_path / "e.npz", **arrays)
        msg = errors(read_npz, tmp_path / "e.npz", match=match)
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
    msg = errors(load_data, str(p))
    assert "junk.npz" in msg and "not an .npz archive" in msg
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=rand_images(200, 28, 28), y=np.zeros(200, np.int64))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:5000])
    assert "cut.npz" in errors(load_data, str(cut))
    npy = tmp_path / "single.npy"
    np.save(npy, rand_images(2))
    assert "single .npy" in errors(read_npz, npy)
    assert "no such file" in errors(read_npz, tmp_path / "missing.npz")


# ------------------------------------------------------------------------------ hostile files


def test_npz_member_that_is_not_npy_is_refused(tmp_path):
    import zipfile

    p = tmp_path / "odd.npz"
    np.savez(p, y=np.array([0, 1]))
    with zipfile.ZipFile(p, "a") as archive:
        archive.writestr("x", b"raw bytes, not an array")
    msg = errors(read_npz, p)
    assert "odd.npz" in msg and "`x` is not a .npy array" in msg


def test_npz_object_member_is_refused_before_it_is_read(tmp_path, monkeypatch):
    p = tmp_path / "objects.npz"
    np.savez(p, x=np.array([0, 1], dtype=object), y=np.array([0, 1]))
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", None)  # never reached
    msg = errors(read_npz, p)
    assert "objects.npz[x]" in msg and "Python objects" in msg


def test_npz_declaring_more_than_memory_is_refused(tmp_path, monkeypatch):
    from cnnc.runtime import readers

    p = tmp_path / "big.npz"
    np.savez(p, x=rand_images(4), y=np.arange(4))
    monkeypatch.setattr(readers, "available_bytes", lambda: 50)
    msg = errors(read_npz, p)
    assert "big.npz[x]" in msg and "120 bytes, more than the 50 bytes of memory" in msg


def test_non_utf8_class_names_are_located(tmp_path):
    p = tmp_path / "names.npz"
    np.savez(p, x=rand_images(2), y=np.array([0, 1]), classes=np.array([b"ok", b"\xff\xfe"]))
    assert "names.npz[classes]: class name 1 is not UTF-8" in errors(read_npz, p)
    idx_folder(tmp_path / "emnist", prefix="emnist-x-")
    (tmp_path / "emnist" / "emnist-x-mapping.txt").write_bytes(b"0 48\n1 \xff\n")
    assert "UTF-8" in errors(read_idx_folder, tmp_path / "emnist")


@pytest.mark.parametrize("line", ["0 99999999999", "999999999999999999999 65", "a b", "3", "-1 65"])
def test_emnist_mapping_lines_out_of_range_are_located(tmp_path, line):
    idx_folder(tmp_path, prefix="emnist-x-")
    (tmp_path / "emnist-x-mapping.txt").write_text(f"0 48\n{line}\n")
    msg = errors(read_idx_folder, tmp_path)
    assert "emnist-x-mapping.txt:2:" in msg and "<label> <character code>" in msg


def test_a_label_far_beyond_any_class_count_is_refused_fast(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", rand_images(2))
    labels = np.array([0, 2**30], dtype=np.int32)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, code=0x0C)
    msg = errors(read_idx_folder, tmp_path)
    assert "labels go up to 1073741824" in msg and "class indices" in msg
    np.savez(tmp_path / "d.npz", x=rand_images(2), y=np.array([0, 2**62]))
    assert "d.npz: labels go up to 4611686018427387904" in errors(read_npz, tmp_path / "d.npz")


def test_idx_header_declaring_more_than_memory_is_refused(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 9) + bytes(8))
    msg = errors(read_idx, p)
    assert str(p) in msg and "more than the" in msg and "of memory available" in msg


def test_gzip_bomb_is_not_decompressed_past_its_header(tmp_path, monkeypatch):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 4, 4)
    bomb = gzip.compress(header + bytes(32) + bytes(64 << 20))  # 64 MiB of zeros after the data
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(bomb)
    asked = []
    real = __import__("zlib").decompressobj

    class Counting:
        def __init__(self, *a, **kw):
            self.inner = real(*a, **kw)

        def decompress(self, data, max_length=0):
            asked.append(max_length)
            return self.inner.decompress(data, max_length)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    from cnnc.runtime import readers

    monkeypatch.setattr(readers.zlib, "decompressobj", Counting)
    msg = errors(read_idx, p)
    assert "longer than its header says" in msg and str(p) in msg
    assert asked and all(0 < n <= 1024 for n in asked)  # never the whole stream


def test_gzip_idx_truncated_anywhere_is_a_data_error(tmp_path):
    blob = gzip.compress(idx_bytes(rand_images(40)))
    p = tmp_path / "t-idx3-ubyte.gz"
    for cut in (3, 12, 30, len(blob) // 2, len(blob) - 4):
        p.write_bytes(blob[:cut])
        msg = errors(read_idx, p)
        assert str(p) in msg and ("truncated" in msg or "corrupt" in msg), (cut, msg)
    p.write_bytes(blob)
    assert read_idx(p).shape == (40, 6, 5)
