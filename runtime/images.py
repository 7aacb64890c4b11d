"""Image files through Pillow (optional, imported only when an image is read): single images
for ``predict`` and image-folder datasets, ``root/<class>/*.png`` or ``root/train|test/<class>/``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "describe_conversion",
    "image_to_array",
    "load_image",
    "load_images",
    "read_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "reading image files needs Pillow, which is not installed: pip install cnnc[images]"
        ) from None
    return Image


_GRAY_MODES = {"1", "L", "LA", "La", "I", "F"}


def _is_gray(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;16")


def _convert(img, chw: Sequence[int], where: str) -> np.ndarray:
    """A PIL image as uint8 (C, H, W) with C 1 (grayscale) or 3 (RGB), resized bilinearly."""
    Image = _pil()
    c, h, w = (int(d) for d in chw)
    if c not in (1, 3):
        raise DataError(f"{where}: images convert to 1 (grayscale) or 3 (RGB) channels, not {c}")
    if h < 1 or w < 1:
        raise DataError(f"{where}: cannot resize to {h}x{w}")
    try:
        img = img.convert("L" if c == 1 else "RGB")
        if img.size != (w, h):
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{where}: cannot decode image ({e})") from None
    return np.ascontiguousarray(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


def _open(path: Path):
    Image = _pil()
    if Path(path).exists() and not Path(path).is_file():  # a pipe would block forever
        raise DataError(f"{path}: not a regular file")
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:  # UnidentifiedImageError, truncated files, decoder errors
        raise DataError(f"{path}: not a readable image ({e})") from None
    return img


def image_to_array(img, chw: Sequence[int]) -> np.ndarray:
    """A PIL image as float32 (C, H, W) in [0, 1]: grayscale (C=1) or RGB (C=3), resized with
    bilinear filtering to H x W. Feed the result to :func:`normalize`."""
    return _convert(img, chw, "image").astype(np.float32) / np.float32(255)


def load_image(path: str | os.PathLike, chw: Sequence[int]) -> np.ndarray:
    """An image file (PNG, JPEG, BMP, any size or mode) as float32 (C, H, W) in [0, 1]."""
    path = Path(path)
    with _open(path) as img:
        return _convert(img, chw, str(path)).astype(np.float32) / np.float32(255)


def describe_conversion(path: str | os.PathLike, chw: Sequence[int]) -> str:
    """What load_image does to fit the file to `chw`, in words ("" when nothing): predict says
    it, since a colour photo turned grey or a 1000-pixel image shrunk to 28 may explain a guess."""
    c, h, w = (int(d) for d in chw)
    try:
        with _open(Path(path)) as img:
            mode, (width, height) = img.mode, img.size
    except DataError:
        return ""
    notes = []
    if c == 1 and not _is_gray(mode):
        notes.append(f"converted {mode} to grey")
    elif c == 3 and _is_gray(mode):
        notes.append("converted grey to RGB")
    if (width, height) != (w, h):
        notes.append(f"resized {height}x{width} to {h}x{w}")
    return ", ".join(notes) + " for the model's input" if notes else ""


def load_images(paths: Sequence[str | os.PathLike], chw: Sequence[int]) -> np.ndarray:
    """Several image files as one float32 (N, C, H, W) batch in [0, 1]."""
    c, h, w = (int(d) for d in chw)
    out = np.empty((len(paths), c, h, w), dtype=np.float32)
    for i, p in enumerate(paths):
        out[i] = load_image(p, (c, h, w))
    return out


def _class_folders(root: Path) -> list[Path]:
    try:
        dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"{root}: cannot list ({e.strerror or e})") from None
    if not dirs:
        raise DataError(
            f"{root}: no class folders; an image dataset is laid out as {root}/<class>/*.png "
            "(or .jpg, .jpeg, .bmp)"
        )
    return dirs


def _image_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{folder}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _read_class_tree(
    root: Path,
    classes: tuple[str, ...] | None,
    chw: Sequence[int] | None,
    resize: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images under root/<class>/. ``chw`` None: derive it from the images (all one size;
    grayscale only when every image is). ``resize`` False: every image must be ``chw``'s size."""
    Image = _pil()
    dirs = _class_folders(root)
    names = tuple(d.name for d in dirs)
    if classes is None:
        classes = names
    else:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DataError(
                f"{root}: class folders {', '.join(unknown)} are not among the training classes "
                f"({', '.join(classes)})"
            )
    files: list[tuple[Path, int]] = []
    for d in dirs:
        label = classes.index(d.name)
        files += [(p, label) for p in _image_files(d)]
    # header pass: modes and sizes without decoding pixels
    heads = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                heads.append((im.mode, im.size))
        except Exception as e:  # UnidentifiedImageError, OSError
            raise DataError(f"{p}: not a readable image ({e})") from None
    if chw is None:
        c = 1 if all(_is_gray(mode) for mode, _ in heads) else 3
        w, h = heads[0][1]
        chw = (c, h, w)
    if not resize:
        want = (int(chw[2]), int(chw[1]))
        for (p, _), (_, size) in zip(files, heads, strict=True):
            if size != want:
                raise DataError(
                    f"{root}: images differ in size: {files[0][0].relative_to(root)} is "
                    f"{want[1]}x{want[0]} but {p.relative_to(root)} is {size[1]}x{size[0]}; "
                    "pass image_shape (the spec's input) to resize them all"
                )
    x = np.empty((len(files), *(int(d) for d in chw)), dtype=np.uint8)
    for i, (p, _) in enumerate(files):
        with _open(p) as im:
            x[i] = _convert(im, chw, str(p))
    y = np.array([label for _, label in files], dtype=np.int64)
    return x, y, classes


def read_image_folder(
    root: str | os.PathLike,
    *,
    image_shape: Sequence[int] | None = None,
    name: str | None = None,
) -> Dataset:
    """Images in one folder per class, ``root/<class>/*.{png,jpg,jpeg,bmp}`` (classes sorted
    by folder name), or ``root/train/<class>/...`` with an optional ``root/test/<class>/...``.

    Without ``image_shape`` all images must have one size; they become one grayscale channel
    when every image is grayscale, else RGB. With ``image_shape=(C, H, W)`` each is converted
    and resized (bilinear) to it."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    resize = image_shape is not None
    sub = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    x_test = y_test = None
    if "train" in sub and sub <= {"train", "test"}:
        x, y, classes = _read_class_tree(root / "train", None, image_shape, resize)
        if "test" in sub:
            # the test part takes the training part's channels; its size must match unless resizing
            x_test, y_test, _ = _read_class_tree(root / "test", classes, x.shape[1:], resize)
    else:
        x, y, classes = _read_class_tree(root, None, image_shape, resize)
    return Dataset(x, y, classes, name or root.name, x_test, y_test)
