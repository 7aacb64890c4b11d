"""Tests for cnnc.runtime.sources: resolving --data: the bundled sample, dataset names, paths.

Everything is written into tmp_path; nothing depends on Debian's dataset-fashion-mnist package.
"""

from __future__ import annotations

import hashlib

import numpy as np
from data_helpers import errors, idx_folder

from cnnc.runtime import sources
from cnnc.runtime.readers import FASHION_MNIST_CLASSES, MNIST_CLASSES
from cnnc.runtime.sources import DEFAULT_SAMPLE, load_data

# ------------------------------------------------------------------------------ bundled sample

SAMPLE_SHA256 = "b6db0d881a8f46dca3f951e2c475f83751d653fd8492ab007d948d41b5d23a2a"


def test_bundled_sample_is_small_balanced_and_well_formed():
    assert DEFAULT_SAMPLE.is_file()
    assert DEFAULT_SAMPLE.stat().st_size < 6_000_000
    for ds in (load_data(), load_data("default"), load_data(None)):
        assert ds.name == "fashion-mnist-sample"
        assert ds.shape == (1, 28, 28)
        assert ds.x.dtype == np.uint8 and ds.y.dtype == np.int64
        assert ds.x.shape == (8000, 1, 28, 28) and ds.x_test.shape == (2000, 1, 28, 28)
        assert ds.classes == FASHION_MNIST_CLASSES
        assert np.bincount(ds.y, minlength=10).tolist() == [800] * 10
        assert np.bincount(ds.y_test, minlength=10).tolist() == [200] * 10
        assert ds.y.min() >= 0 and ds.y.max() < 10
        assert ds.x.max() > 200  # real pixels, not zeros


def test_bundled_sample_content_matches_readme_digest():
    h = hashlib.sha256()
    with np.load(DEFAULT_SAMPLE, allow_pickle=False) as f:
        for k in ("x_train", "y_train", "x_test", "y_test", "classes"):
            a = np.ascontiguousarray(f[k])
            h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
            h.update(a.tobytes())
    assert h.hexdigest() == SAMPLE_SHA256


# ------------------------------------------------------------------------------ --data resolution


def test_named_dataset_lookup(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.delenv("CNNC_DATA", raising=False)
    msg = errors(load_data, "fashion-mnist")
    assert "not found" in msg and "CNNC_DATA" in msg and "dataset-fashion-mnist" in msg
    idx_folder(tmp_path / "system" / "fashion-mnist")
    ds = load_data("fashion-mnist")
    assert ds.name == "fashion-mnist" and ds.classes == FASHION_MNIST_CLASSES and ds.has_test
    idx_folder(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("CNNC_DATA", str(tmp_path / "env"))
    ds = load_data("MNIST")
    assert ds.name == "mnist" and ds.classes == MNIST_CLASSES and len(ds) == 3
    idx_folder(tmp_path / "explicit", n_train=5)
    assert len(load_data("mnist", data_dir=tmp_path / "explicit")) == 5


def test_load_data_bad_sources(tmp_path):
    msg = errors(load_data, str(tmp_path / "nope.npz"))
    assert "no such file or folder" in msg and "fashion-mnist" in msg
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    assert "unsupported data file" in errors(load_data, str(p))
