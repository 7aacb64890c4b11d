"""Tests for cnnc.runtime.batches: normalisation, the validation split, shuffling and batches."""

from __future__ import annotations

import numpy as np
from data_helpers import errors, indexed, labelled

from cnnc.runtime.batches import (
    batch_count,
    compute_normalization,
    epoch_order,
    iter_batches,
    normalize,
    split_validation,
)
from cnnc.runtime.dataset import Dataset
from cnnc.runtime.sources import load_data

# ------------------------------------------------------------------------------ normalisation


def test_normalization_stats_and_apply():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 3, 4, 5), dtype=np.uint8)
    x[:, 2] = 7  # a constant channel
    ds = Dataset(x, np.zeros(50, np.int64), ("a",), "n")
    norm = compute_normalization(ds, chunk=7)
    assert set(norm) == {"mean", "std"} and all(type(v) is float for v in norm["mean"])
    u = x.astype(np.float64) / 255
    np.testing.assert_allclose(norm["mean"], u.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(norm["std"][:2], u.std(axis=(0, 2, 3))[:2], rtol=1e-7)
    assert norm["std"][2] == 1.0
    for k in ("mean", "std"):  # chunking does not change the result
        np.testing.assert_allclose(norm[k], compute_normalization(x)[k], rtol=1e-12)
    out = normalize(x, norm)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == x.shape
    np.testing.assert_allclose(out[:, :2].mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out[:, :2].std(axis=(0, 2, 3)), 1, atol=1e-4)
    # float [0, 1] data gives the same result as uint8 data
    f = (x / np.float32(255)).astype(np.float32)
    np.testing.assert_allclose(normalize(f, norm), out, atol=1e-5)
    np.testing.assert_allclose(compute_normalization(f)["mean"], norm["mean"], atol=1e-6)
    assert normalize(f, None) is not f
    assert "3" in errors(normalize, x, {"mean": [0.0], "std": [1.0]})


def test_bundled_sample_stats_are_fashion_mnist_like():
    norm = compute_normalization(load_data())
    assert abs(norm["mean"][0] - 0.286) < 0.01 and abs(norm["std"][0] - 0.353) < 0.01


# ------------------------------------------------------------------------------ batches


def test_validation_split_deterministic_stratified_disjoint():
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    ds = labelled(y)
    x_test = np.zeros((2, 1, 2, 2), np.uint8)
    ds = Dataset(ds.x, ds.y, ds.classes, "s", x_test, np.array([0, 1]))
    tr, va = split_validation(ds, 0.2, seed=3)
    tr2, va2 = split_validation(ds, 0.2, seed=3)
    np.testing.assert_array_equal(va.x, va2.x)
    np.testing.assert_array_equal(tr.y, tr2.y)
    assert len(va) == 20 and len(tr) == 80
    assert np.bincount(va.y).tolist() == [8, 6, 4, 2]
    assert tr.has_test and not va.has_test and va.name == "s (validation)"
    # disjoint and complete: identify samples by their pixels
    rows = {r.tobytes() for r in ds.x}
    assert {r.tobytes() for r in tr.x} | {r.tobytes() for r in va.x} == rows
    _, va3 = split_validation(ds, 0.2, seed=4)
    assert not np.array_equal(va.x, va3.x)


def test_validation_split_edges():
    ds = labelled([0, 1, 0, 1, 0])
    assert split_validation(ds, 0.0) == (ds, None)
    tr, va = split_validation(ds, 0.01)
    assert len(va) == 1 and len(tr) == 4
    for bad in (-0.1, 1.0):
        assert "fraction" in errors(split_validation, ds, bad)


def test_batches_cover_every_sample_once():
    ds = indexed(103)
    batches = list(iter_batches(ds, 10))
    assert len(batches) == batch_count(ds, 10) == 11
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(103))
    for xb, yb in batches:
        assert xb.dtype == np.float32 and xb.flags.c_contiguous and yb.dtype == np.int64
        np.testing.assert_allclose(xb, ds.x[yb] / 255, rtol=1e-6)
    shuffled = np.concatenate([b[1] for b in iter_batches(ds, 7, rng=np.random.default_rng(1))])
    assert sorted(shuffled.tolist()) == list(range(103)) and shuffled.tolist() != list(range(103))
    assert "at least 1" in errors(iter_batches, ds, 0)


def test_shuffling_reproducible_from_generator_state():
    ds = indexed(50)
    norm = compute_normalization(ds)

    def epoch(rng):
        return np.concatenate([y for _, y in iter_batches(ds, 8, norm=norm, rng=rng)])

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
    it = iter_batches(ds, 8, rng=c)
    assert c.bit_generator.state != before
    next(it)
    assert np.array_equal(epoch_order(5, None), np.arange(5))
