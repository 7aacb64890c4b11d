"""augment: a batch of [0, 1] pixels -> the same batch randomly transformed, all numpy.

Each transform is drawn per image and applied to the whole batch at once (one gather, one mask,
one multiply), on the [0, 1] pixels before normalisation, so padding and cutout fill with black
as torchvision's `RandomCrop(padding=p)` and Cutout do.

The random numbers of a batch come from `numpy.random.default_rng((seed, epoch, batch))`: a pure
function of the run's seed and the batch's place in training, like the dropout masks. A run
resumed in the middle of an epoch therefore draws the same transforms as one that never stopped,
with no generator state to checkpoint beyond the seed and the settings the checkpoint already
holds.

Order: flip, then one geometric gather (crop-with-padding shift + rotation/scale/translation,
nearest neighbour), then brightness/contrast/saturation, then cutout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .errors import DataError

_AUGMENT_STREAM = 0x417567  # keeps these draws apart from the shuffle's and dropout's


@dataclass(frozen=True)
class Augment:
    """What to draw per image; every field 0/False means off.

    crop: pad by this many pixels and crop back at a random place (a shift of -crop..crop)
    flip: mirror left-right with probability 1/2
    rotate: degrees, uniform in -rotate..rotate
    scale: zoom by a factor uniform in 1-scale..1+scale
    translate: pixels, uniform in -translate..translate along each axis
    brightness, contrast, saturation: factors uniform in 1-v..1+v (saturation needs 3 channels)
    cutout: side of a square set to 0 at a random centre (it may hang over the border)
    """

    crop: int = 0
    flip: bool = False
    rotate: float = 0.0
    scale: float = 0.0
    translate: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    cutout: int = 0

    @staticmethod
    def from_config(config) -> Augment:
        """The settings named `augment_<field>` on a TrainConfig (or any object)."""
        return Augment(**{f.name: getattr(config, f"augment_{f.name}") for f in fields(Augment)})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is True:
                parts.append(f.name)
            elif value:
                parts.append(f"{f.name}={value:g}")
        return " ".join(parts) or "none"

    def check(self, chw: tuple[int, int, int]) -> None:
        if self.saturation and chw[0] != 3:
            raise DataError(
                f"saturation jitter needs RGB images (3 channels), these have {chw[0]}; "
                "use brightness/contrast instead"
            )

    def __call__(self, x: np.ndarray, seed: int, epoch: int, batch: int) -> np.ndarray:
        """x: (B, C, H, W) float32 in [0, 1], C-contiguous; returns a new array."""
        rng = np.random.default_rng((_AUGMENT_STREAM, seed, epoch, batch))
        b, _, h, w = x.shape
        if self.flip:
            flipped = rng.random(b) < 0.5
            x = x.copy()
            x[flipped] = x[flipped, :, :, ::-1]
        if self.crop or self.rotate or self.scale or self.translate:
            x = _warp(x, self._matrices(rng, b, h, w))
        if self.brightness or self.contrast or self.saturation:
            x = _jitter(x, rng, self.brightness, self.contrast, self.saturation)
        if self.cutout:
            x = _cutout(x, rng, self.cutout)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _matrices(self, rng, b: int, h: int, w: int) -> np.ndarray:
        """(B, 2, 3) maps from output pixel (row, col, 1) to source pixel, about the centre."""
        angle = (
            np.radians(rng.uniform(-self.rotate, self.rotate, b)) if self.rotate else np.zeros(b)
        )
        zoom = rng.uniform(1 - self.scale, 1 + self.scale, b) if self.scale else np.ones(b)
        shift = np.zeros((b, 2))
        if self.crop:
            shift += rng.integers(-self.crop, self.crop + 1, (b, 2))
        if self.translate:
            shift += rng.uniform(-self.translate, self.translate, (b, 2))
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        linear = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)  # (B, 2, 2)
        offset = centre - linear @ centre - shift
        return np.concatenate([linear, offset[:, :, None]], axis=2)


def _warp(x: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of every image by its own affine map; outside is 0."""
    b, c, h, w = x.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    grid = np.stack([rows.ravel(), cols.ravel(), np.ones(h * w)])  # (3, H*W)
    source = np.rint(matrices @ grid).astype(np.int64)  # (B, 2, H*W)
    r, q = source[:, 0], source[:, 1]
    inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
    flat = np.where(inside, r * w + q, 0) + (np.arange(b) * (h * w))[:, None]
    planes = x.transpose(1, 0, 2, 3).reshape(c, b * h * w)
    out = planes[:, flat.ravel()] * inside.ravel()
    return out.reshape(c, b, h, w).transpose(1, 0, 2, 3)


def _jitter(x, rng, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """torchvision ColorJitter's brightness, contrast and saturation, in that order, clipped."""
    b = len(x)

    def factors(v):
        return rng.uniform(1 - v, 1 + v, b).astype(np.float32)[:, None, None, None]

    out = x.astype(np.float32, copy=True)
    if brightness:
        out *= factors(brightness)
        np.clip(out, 0.0, 1.0, out=out)
    if contrast:
        grey = _grey(out).mean(axis=(1, 2, 3), keepdims=True)
        out = grey + factors(contrast) * (out - grey)
        np.clip(out, 0.0, 1.0, out=out)
    if saturation:
        grey = _grey(out)
        out = grey + factors(saturation) * (out - grey)
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _grey(x: np.ndarray) -> np.ndarray:
    if x.shape[1] != 3:
        return x.mean(axis=1, keepdims=True)
    weights = np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]
    return (x * weights).sum(axis=1, keepdims=True)


def _cutout(x: np.ndarray, rng, size: int) -> np.ndarray:
    b, _, h, w = x.shape
    cy, cx = rng.integers(0, h, b), rng.integers(0, w, b)
    top, left = cy - size // 2, cx - size // 2
    rows = np.arange(h)[None, :]
    cols = np.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + size)[:, None])  # (B, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + size)[:, None])  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None, :, :]


def parse_augment(text: str) -> dict:
    """`--augment "crop=2 flip cutout=8"` -> {"augment_crop": 2, "augment_flip": True, ...}."""
    known = {f.name: f.type for f in fields(Augment)}
    if text.strip() == "none":
        return {f"augment_{f.name}": f.default for f in fields(Augment)}
    chosen = {}
    for token in text.replace(",", " ").split():
        name, _, value = token.partition("=")
        if name not in known:
            raise ValueError(f"unknown augmentation `{name}` (known: {', '.join(known)})")
        if known[name] == "bool":
            if value not in ("", "0", "1"):
                raise ValueError(f"`{name}` is a flag: write `{name}` or `{name}=0`")
            chosen[f"augment_{name}"] = value != "0"
            continue
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"`{name}` needs a number, e.g. `{name}=2`") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, not {value}")
        if known[name] == "int":
            if number != int(number):
                raise ValueError(f"`{name}` takes a whole number of pixels, not {value}")
            number = int(number)
        if name in ("scale", "brightness", "contrast", "saturation") and number >= 1:
            raise ValueError(f"`{name}` is a fraction below 1, not {value}")
        chosen[f"augment_{name}"] = number
    return chosen
