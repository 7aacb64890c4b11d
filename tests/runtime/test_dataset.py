"""Tests for cnnc.runtime.dataset: Dataset and its checks against a spec."""

from __future__ import annotations

import numpy as np
from data_helpers import errors

from cnnc.runtime.dataset import Dataset, check_input_shape, check_num_classes

# ------------------------------------------------------------------------------ checks


def test_check_input_shape_message():
    ds = Dataset(np.zeros((1, 1, 28, 28), np.uint8), np.zeros(1, np.int64), ("a",), "fashion-mnist")
    check_input_shape(ds, (1, 28, 28))
    msg = errors(check_input_shape, ds, (3, 32, 32))
    assert msg == (
        "the spec expects input 3x32x32 but the data is 1x28x28 (fashion-mnist); use a spec "
        "with `input 1x28x28` or data with 3 channels of 32x32"
    )
    assert "1 channel of" in errors(check_input_shape, ds, (1, 32, 32))
    check_num_classes(ds, 1)
    assert "10 outputs" in errors(check_num_classes, ds, 10)


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
