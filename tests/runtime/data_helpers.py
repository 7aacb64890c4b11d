"""IDX files and small datasets for the tests of the data modules (dataset, readers, images,
sources, batches)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from cnnc.runtime.dataset import DataError, Dataset

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
