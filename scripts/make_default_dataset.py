"""Make cnnc's bundled default dataset, runtime/data/fashion_mnist_sample.npz.

A class-balanced sample of Fashion-MNIST (MIT, Zalando Research): 800 images per class from the
training set and 200 per class from the test set, chosen with a fixed seed, kept in the original
order. The source is Debian's package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
or any folder with the four IDX files given with --source.

    python scripts/make_default_dataset.py [--source DIR] [--out FILE] [--check]

The .npz bytes vary with the zip timestamps, so the script prints a digest of the array contents;
--check recomputes the sample and compares it with the existing file instead of writing it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from cnnc.runtime.readers import FASHION_MNIST_CLASSES, read_idx_folder
from cnnc.runtime.sources import DEFAULT_SAMPLE

SEED = 20240601
TRAIN_PER_CLASS = 800
TEST_PER_CLASS = 200
SOURCE = Path("/usr/share/datasets/fashion-mnist")
KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")


def balanced(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of each class, drawn without replacement, in ascending order."""
    picks = []
    for c in range(len(FASHION_MNIST_CLASSES)):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise SystemExit(f"class {c} has only {len(idx)} samples, need {per_class}")
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def make(source: Path) -> dict[str, np.ndarray]:
    ds = read_idx_folder(source, name="fashion-mnist", classes=FASHION_MNIST_CLASSES)
    if ds.x_test is None or ds.shape != (1, 28, 28):
        raise SystemExit(f"{source}: expected Fashion-MNIST's train and t10k IDX files")
    rng = np.random.default_rng(SEED)
    tr = balanced(ds.y, TRAIN_PER_CLASS, rng)
    te = balanced(ds.y_test, TEST_PER_CLASS, rng)
    return {
        "x_train": np.ascontiguousarray(ds.x[tr], dtype=np.uint8),
        "y_train": ds.y[tr].astype(np.uint8),
        "x_test": np.ascontiguousarray(ds.x_test[te], dtype=np.uint8),
        "y_test": ds.y_test[te].astype(np.uint8),
        "classes": np.array(FASHION_MNIST_CLASSES, dtype=str),
    }


def digest(arrays: dict[str, np.ndarray], keys: tuple[str, ...] = KEYS) -> str:
    """The sha256 of the arrays' dtypes, shapes and bytes (the .npz container's own bytes
    carry timestamps)."""
    h = hashlib.sha256()
    for k in keys:
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def compare(content_digest: str, out: Path, keys: tuple[str, ...]) -> int:
    """--check: 0 if the file `out` holds the content of that digest, else 1."""
    with np.load(out, allow_pickle=False) as f:
        old = digest({k: f[k] for k in keys}, keys)
    print(f"{out}: {'matches' if old == content_digest else 'DIFFERS'} (content sha256 {old})")
    return 0 if old == content_digest else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE, help="folder with the 4 IDX files")
    ap.add_argument("--out", type=Path, default=DEFAULT_SAMPLE)
    ap.add_argument("--check", action="store_true", help="compare with --out, do not write")
    args = ap.parse_args(argv)
    arrays = make(args.source)
    d = digest(arrays)
    if args.check:
        return compare(d, args.out, KEYS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    n_tr, n_te = len(arrays["y_train"]), len(arrays["y_test"])
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {n_tr} train + {n_te} test images, {size} bytes")
    print(f"content sha256 {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
