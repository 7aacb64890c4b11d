"""Segmentation data: images with integer class masks, from an ``.npz`` or an images/masks folder.

``.npz``
    ``x`` (N, C, H, W) or (N, H, W, C) or (N, H, W) pixels and ``y`` (N, H, W) integer class
    maps (or ``x_train``/``y_train``), optionally ``x_test``/``y_test`` and a string ``classes``.
Folders (Pillow, ``cnnc[images]``)
    ``root/images/NAME.png|jpg`` with ``root/masks/NAME.png``, or the same pair under
    ``root/train/`` with an optional ``root/test/``. A mask is a palette PNG (its palette indices
    are the labels, as in Pascal VOC) or a greyscale PNG whose values are the labels; 255 marks
    pixels no loss or metric counts. An optional ``root/classes.txt`` names the classes, one a
    line.

Masks come out ``uint8`` (N, H, W) in a :class:`Dataset` (see ``dataset``); images are resized
to the spec's size bilinearly and masks with nearest-neighbour sampling, so labels stay labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dataset import IGNORED_LABEL, DataError, Dataset
from .images import IMAGE_EXTENSIONS, _convert, _open, _pil
from .readers import _as_pixels, _to_nchw

__all__ = ["is_mask_folder", "npz_holds_masks", "read_mask_folder", "read_mask_npz"]


def _as_masks(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 4 and 1 in (arr.shape[1], arr.shape[3]):
        arr = arr[:, 0] if arr.shape[1] == 1 else arr[..., 0]  # a channel axis of one
    if arr.ndim != 3:
        raise DataError(f"{where}: masks must be (N, H, W) class maps, got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise DataError(f"{where}: masks must hold integer class indices, not {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise DataError(
            f"{where}: mask labels must lie in 0..255 (255: ignored), found "
            f"{int(arr.min())}..{int(arr.max())}"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _default_classes(masks: Sequence[np.ndarray]) -> tuple[str, ...]:
    top = 0
    for m in masks:
        labels = np.unique(m)
        labels = labels[labels != IGNORED_LABEL]
        top = max(top, int(labels.max()) if len(labels) else 0)
    return tuple(str(i) for i in range(max(top + 1, 2)))


def npz_holds_masks(path: str | os.PathLike) -> bool:
    """Whether an .npz's labels are (N, H, W) maps; False for anything unreadable, which the
    classification reader then reports."""
    try:
        with np.load(path, allow_pickle=False) as f:
            key = "y" if "y" in f.files else "y_train"
            return key in f.files and f[key].ndim >= 3
    except Exception:
        return False


def read_mask_npz(path: str | os.PathLike, *, name: str | None = None) -> Dataset:
    """An ``.npz`` (never unpickled) of images and (N, H, W) masks; see the module docstring."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            xk, yk = ("x", "y") if "x" in keys else ("x_train", "y_train")
            if xk not in keys or yk not in keys:
                raise DataError(f"{path}: expected arrays x and y (or x_train and y_train)")
            if ("x_test" in keys) != ("y_test" in keys):
                raise DataError(f"{path}: x_test and y_test must be stored together")
            arrays = {k: f[k] for k in (xk, yk, "x_test", "y_test", "classes") if k in keys}
    except DataError:
        raise
    except Exception as e:  # zip, zlib, format and pickle errors all mean: unusable file
        raise DataError(f"{path}: not a readable .npz archive: {e}") from None

    def part(xk: str, yk: str) -> tuple[np.ndarray, np.ndarray]:
        x = _as_pixels(_to_nchw(arrays[xk], f"{path}[{xk}]"), f"{path}[{xk}]")
        return x, _as_masks(arrays[yk], f"{path}[{yk}]")

    x, y = part(xk, yk)
    x_test, y_test = part("x_test", "y_test") if "x_test" in arrays else (None, None)
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind not in "US":
            raise DataError(f"{path}: classes must be a 1-D string array, got {c.dtype} {c.shape}")
        classes = tuple(str(s) for s in c.tolist())
    else:
        classes = _default_classes([m for m in (y, y_test) if m is not None])
    return Dataset(x, y, classes, name or path.stem, x_test, y_test)


# --------------------------------------------------------------------------------------------
# images/ + masks/ folders


def is_mask_folder(root: Path) -> bool:
    """``root/images`` beside ``root/masks``, or that pair under ``root/train``."""
    return any(
        (root / s / "images").is_dir() and (root / s / "masks").is_dir() for s in ("", "train")
    )


def _read_mask(path: Path, size: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """A mask file as uint8 (H, W) labels; `size` is its image's (width, height) as stored."""
    Image = _pil()
    with _open(path) as img:
        if img.mode not in ("P", "L", "1") and not img.mode.startswith("I"):
            raise DataError(
                f"{path}: a mask must be a palette or greyscale PNG of class indices, not "
                f"mode {img.mode} (colour masks are not mapped to classes)"
            )
        if img.size != size:
            raise DataError(
                f"{path}: the mask is {img.size[1]}x{img.size[0]} but its image is "
                f"{size[1]}x{size[0]}"
            )
        labels = np.asarray(img).astype(np.int64)
        if img.size != (hw[1], hw[0]):
            resized = Image.fromarray(labels.astype(np.int32), mode="I")
            labels = np.asarray(resized.resize((hw[1], hw[0]), Image.Resampling.NEAREST))
        return _as_masks(labels[None], str(path))[0]


def _read_pairs(folder: Path, chw: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    images = sorted(
        p
        for p in (folder / "images").iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not images:
        raise DataError(f"{folder / 'images'}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    xs, ys = [], []
    for image in images:
        mask = folder / "masks" / f"{image.stem}.png"
        if not mask.is_file():
            raise DataError(f"{image}: no mask {mask}")
        with _open(image) as img:
            if chw is None:  # no spec: the first image's size and colours
                chw = (1 if img.mode in ("1", "L", "P", "I", "F") else 3, img.size[1], img.size[0])
            size = img.size
            xs.append(_convert(img, chw, str(image)))
        ys.append(_read_mask(mask, size, (int(chw[1]), int(chw[2]))))
    return np.stack(xs), np.stack(ys)


def read_mask_folder(root: str | os.PathLike, image_shape: Sequence[int] | None = None) -> Dataset:
    """``root/images`` + ``root/masks`` (or ``root/train/...`` and ``root/test/...``) as a
    Dataset; ``image_shape`` (C, H, W) converts and resizes to the spec's input."""
    root = Path(root)
    base = root if (root / "images").is_dir() else root / "train"
    x, y = _read_pairs(base, image_shape)
    x_test = y_test = None
    if base != root and (root / "test" / "images").is_dir():
        x_test, y_test = _read_pairs(root / "test", tuple(x.shape[1:]))
    names = root / "classes.txt"
    if names.is_file():
        classes = tuple(line.strip() for line in names.read_text().splitlines() if line.strip())
    else:
        classes = _default_classes([m for m in (y, y_test) if m is not None])
    return Dataset(x, y, classes, root.name, x_test, y_test)
