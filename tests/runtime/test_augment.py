"""augment: each transform against a plain reference, determinism per (seed, epoch, batch)."""

import numpy as np
import pytest

from cnnc.runtime.augment import Augment, parse_augment
from cnnc.runtime.dataset import DataError


def images(b=16, c=1, h=12, w=10, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, c, h, w), dtype=np.float32)


def test_off_is_identity_and_false():
    x = images()
    assert not Augment()
    assert np.array_equal(Augment()(x, 0, 0, 0), x)


def test_same_seed_epoch_and_batch_give_the_same_batch_and_others_differ():
    x = images()
    a = Augment(crop=2, flip=True, rotate=10, scale=0.1, translate=1.0, contrast=0.3, cutout=4)
    first = a(x, 7, 1, 3)
    assert np.array_equal(first, a(x, 7, 1, 3))
    for other in ((8, 1, 3), (7, 2, 3), (7, 1, 4)):
        assert not np.array_equal(first, a(x, *other))
    assert first.dtype == np.float32 and first.flags.c_contiguous and first.shape == x.shape


def test_flip_mirrors_about_half_the_images():
    x = images(b=200)
    out = Augment(flip=True)(x, 0, 0, 0)
    mirrored = [np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x, strict=True)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 60 < sum(mirrored) < 140


def test_crop_with_padding_equals_pad_then_crop():
    x = images(b=50)
    p = 3
    out = Augment(crop=p)(x, 1, 0, 0)
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, w = x.shape[2:]
    shifts = set()
    for o, pad in zip(out, padded, strict=True):
        matches = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if np.array_equal(o, pad[:, dy : dy + h, dx : dx + w])
        ]
        assert matches, "every output is one crop of the padded image"
        shifts.add(matches[0])
    assert len(shifts) > 10  # the offsets vary


def test_rotation_by_zero_and_scale_one_is_identity_and_rotation_keeps_the_centre():
    x = images(b=4, h=11, w=11)
    assert np.array_equal(Augment(rotate=1e-9)(x, 0, 0, 0), x)
    out = Augment(rotate=30)(x, 0, 0, 0)
    assert np.array_equal(out[:, :, 5, 5], x[:, :, 5, 5])


def test_cutout_zeroes_one_square_at_most_size_squared():
    x = images(b=64) + 0.5  # no zeros in the input
    out = Augment(cutout=4)(x, 0, 0, 0)
    zeros = (out == 0).all(axis=1).sum(axis=(1, 2))
    assert zeros.max() == 16 and zeros.min() >= 0
    assert np.array_equal(out[out != 0], x[out != 0])


def test_brightness_and_contrast_stay_in_range_and_saturation_needs_rgb():
    x = images(b=32, c=3)
    out = Augment(brightness=0.5, contrast=0.5, saturation=0.5)(x, 0, 0, 0)
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, x)
    with pytest.raises(DataError, match="RGB"):
        Augment(saturation=0.2).check((1, 28, 28))


def test_parse_augment():
    assert parse_augment("crop=2 flip cutout=8") == {
        "augment_crop": 2,
        "augment_flip": True,
        "augment_cutout": 8,
    }
    assert parse_augment("none")["augment_flip"] is False
    for bad, message in (
        ("flop", "unknown augmentation `flop`"),
        ("crop=1.5", "whole number"),
        ("brightness=2", "fraction below 1"),
        ("rotate=x", "needs a number"),
        ("flip=2", "is a flag"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_augment(bad)
