"""Make cnnc's bundled segmentation sample, runtime/data/fashion_mnist_segments.npz.

Each sample is one Fashion-MNIST item (MIT, Zalando Research) scaled by a random factor and
placed at a random position on a 64x64 canvas with a random background level, a random linear
shading and Gaussian noise; its mask marks the item's pixels (1) against the background (0).
Training canvases use items of Fashion-MNIST's training set, test canvases items of its t10k set,
class-balanced, all drawn from one seeded numpy Generator, so the same source gives the same
arrays. The source is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or any
folder with the four IDX files (--source).

    python scripts/make_segmentation_sample.py [--source DIR] [--out FILE] [--check]
        [--masks binary|classes]

``--masks classes`` labels the item's pixels with its class + 1 (11 classes with background)
instead; the bundled file is binary (see runtime/data/README.md for why). --check recomputes the
arrays and compares their digest with the existing file instead of writing it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from make_default_dataset import balanced, compare, digest  # the sibling script

from cnnc.runtime.readers import FASHION_MNIST_CLASSES, read_idx_folder
from cnnc.runtime.sources import SEGMENTATION_SAMPLE

SEED = 20261202
SIZE = 64
TRAIN_PER_CLASS = 120
TEST_PER_CLASS = 30
SCALE = (0.8, 1.8)  # the 28x28 item becomes 22..50 pixels wide
ITEM_THRESHOLD = 0.1  # an item pixel is one brighter than this (of 1) before noise
NOISE = (0.02, 0.08)  # Gaussian noise std per canvas, of the 0..1 range
SOURCE = Path("/usr/share/datasets/fashion-mnist")
KEYS = ("x_train", "y_train", "x_test", "y_test", "classes", "item_train", "item_test")


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """A square float image resampled to size x size (pixel centres aligned, as PIL does)."""
    n = image.shape[0]
    coords = (np.arange(size) + 0.5) * (n / size) - 0.5
    coords = np.clip(coords, 0, n - 1)
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    t = coords - lo
    rows = image[lo] * (1 - t)[:, None] + image[hi] * t[:, None]
    return rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]


def canvas(item: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 64x64, item mask bool 64x64) from a 28x28 uint8 item."""
    side = int(round(28 * rng.uniform(*SCALE)))
    scaled = resize_bilinear(item.astype(np.float64) / 255.0, side)
    top, left = rng.integers(0, SIZE - side + 1, size=2)
    placed = np.zeros((SIZE, SIZE))
    placed[top : top + side, left : left + side] = scaled
    mask = placed > ITEM_THRESHOLD
    level = rng.uniform(0.0, 0.3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * np.arange(SIZE)[:, None] + np.sin(angle) * np.arange(SIZE)[None, :]
    shade = rng.uniform(0.0, 0.2) * (ramp - ramp.mean()) / (np.ptp(ramp) + 1e-9)
    gain = rng.uniform(0.6, 1.0)
    noise = rng.normal(0.0, rng.uniform(*NOISE), (SIZE, SIZE))
    pixels = np.clip(level + shade + gain * placed + noise, 0.0, 1.0)
    return np.round(pixels * 255).astype(np.uint8), mask


def part(x: np.ndarray, y: np.ndarray, rng, per_class: int, per_class_masks: bool):
    chosen = balanced(y, per_class, rng)
    images = np.zeros((len(chosen), 1, SIZE, SIZE), np.uint8)
    masks = np.zeros((len(chosen), SIZE, SIZE), np.uint8)
    for row, index in enumerate(chosen):
        image, mask = canvas(x[index, 0], rng)
        images[row, 0] = image
        masks[row] = mask * (y[index] + 1 if per_class_masks else 1)
    return images, masks, y[chosen].astype(np.uint8)


def make(source: Path, per_class_masks: bool = False) -> dict[str, np.ndarray]:
    ds = read_idx_folder(source, name="fashion-mnist", classes=FASHION_MNIST_CLASSES)
    if ds.x_test is None or ds.shape != (1, 28, 28):
        raise SystemExit(f"{source}: expected Fashion-MNIST's train and t10k IDX files")
    rng = np.random.default_rng(SEED)
    x_train, y_train, item_train = part(ds.x, ds.y, rng, TRAIN_PER_CLASS, per_class_masks)
    x_test, y_test, item_test = part(ds.x_test, ds.y_test, rng, TEST_PER_CLASS, per_class_masks)
    classes = ("background", *FASHION_MNIST_CLASSES) if per_class_masks else ("background", "item")
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "classes": np.array(classes, dtype=str),
        "item_train": item_train,  # the Fashion-MNIST class of each canvas's item
        "item_test": item_test,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="folder with the 4 IDX files")
    ap.add_argument("--out", type=Path, default=SEGMENTATION_SAMPLE)
    ap.add_argument("--masks", choices=("binary", "classes"), default="binary")
    ap.add_argument("--check", action="store_true", help="compare with --out, do not write")
    args = ap.parse_args(argv)
    arrays = make(args.source, per_class_masks=args.masks == "classes")
    d = digest(arrays, KEYS)
    if args.check:
        return compare(d, args.out, KEYS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    foreground = float((arrays["y_test"] > 0).mean())
    print(
        f"wrote {args.out}: {len(arrays['x_train'])} train + {len(arrays['x_test'])} test "
        f"canvases, {args.out.stat().st_size} bytes; test pixels {foreground:.3f} foreground"
    )
    print(f"content sha256 {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
