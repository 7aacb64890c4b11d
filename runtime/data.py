"""Data for ``cnnc train``, ``eval`` and ``predict``: readers, normalisation, splits and batches.

Everything here is numpy only; Pillow is imported lazily, and only to read image files.

Pixel convention
    A :class:`Dataset` keeps its pixels as read, in ``(N, C, H, W)`` order: ``uint8`` in
    ``0..255`` (IDX files, image folders, integer ``.npz`` arrays) or ``float32`` in ``[0, 1]``
    (float ``.npz`` arrays). :func:`to_unit` maps either to float32 in ``[0, 1]``; normalisation
    statistics (:func:`compute_normalization`) are per-channel mean and std of those ``[0, 1]``
    values on the training part, and :func:`normalize` applies them. :func:`load_image` gives
    ``[0, 1]`` float32 too, so ``predict`` on image files uses the same scale as training.

Sources understood by :func:`load_data`
    ``None`` / ``"default"``    the bundled class-balanced Fashion-MNIST sample (8,000 + 2,000)
    ``"fashion-mnist"``, ``"mnist"``  the full set: four IDX files in ``data_dir``,
                                ``$CNNC_DATA/<name>``, ``$CNNC_DATA`` or
                                ``/usr/share/datasets/<name>`` (Debian's dataset-* packages)
    ``path.npz``                arrays ``x``, ``y`` [, ``x_test``, ``y_test``] or ``x_train``,
                                ``y_train`` [, ``x_test``, ``y_test``], optional ``classes``
    an IDX folder               ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``
                                and optionally the ``t10k-`` (or ``test-``) pair
    an IDX image file           its labels file is found next to it by the standard naming
    an image folder             ``root/<class>/*.png|jpg|jpeg|bmp``, or the same under
                                ``root/train/`` with an optional ``root/test/``

Array layout rule (``.npz`` and IDX)
    3-D ``(N, H, W)`` is one channel. 4-D is channels-last ``(N, H, W, C)`` when the last axis is
    1 or 3 and axis 1 is not; otherwise it is ``(N, C, H, W)``. So ``(N, 28, 28, 1)`` and
    ``(N, 32, 32, 3)`` are channels-last, ``(N, 1, 28, 28)`` and ``(N, 3, 32, 32)`` are not.

Every problem with the data raises :class:`DataError`, whose message names the file.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_SAMPLE",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "MNIST_CLASSES",
    "DataError",
    "Dataset",
    "batch_count",
    "check_input_shape",
    "check_num_classes",
    "compute_normalization",
    "epoch_order",
    "image_to_array",
    "iter_batches",
    "load_data",
    "load_image",
    "load_images",
    "normalize",
    "read_idx",
    "read_idx_dataset",
    "read_idx_folder",
    "read_image_folder",
    "read_npz",
    "split_validation",
    "to_unit",
]


class DataError(Exception):
    """A data source that cannot be used; the message names the file and what is wrong."""


FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

DEFAULT_SAMPLE = Path(__file__).with_name("data") / "fashion_mnist_sample.npz"
DEFAULT_NAME = "fashion-mnist-sample"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")  # Debian's dataset-* packages install here
NAMED_DATASETS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": FASHION_MNIST_CLASSES,
    "mnist": MNIST_CLASSES,
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------------------------
# Dataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and integer labels, with an optional held-out test part.

    ``x`` is ``(N, C, H, W)`` ``uint8`` (0..255) or ``float32`` (0..1); ``y`` is ``(N,)``
    ``int64`` in ``0..len(classes)-1``. ``x_test``/``y_test`` follow the same rules with the same
    ``C, H, W``. The arrays are stored as read-only views.
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    name: str
    x_test: np.ndarray | None = field(default=None)
    y_test: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        if (self.x_test is None) != (self.y_test is None):
            raise DataError(f"{self.name}: x_test and y_test must be given together")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        parts = [("x", "y")] + ([("x_test", "y_test")] if self.x_test is not None else [])
        for xk, yk in parts:
            x, y = getattr(self, xk), getattr(self, yk)
            if not isinstance(x, np.ndarray) or x.ndim != 4:
                raise DataError(f"{self.name}: {xk} must be a 4-D (N, C, H, W) array")
            if x.dtype not in (np.uint8, np.float32):
                raise DataError(f"{self.name}: {xk} must be uint8 or float32, not {x.dtype}")
            if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
                raise DataError(f"{self.name}: {yk} must be a 1-D int64 array")
            if len(x) != len(y):
                raise DataError(f"{self.name}: {len(x)} images in {xk} but {len(y)} labels in {yk}")
            if len(x) == 0:
                raise DataError(f"{self.name}: {xk} holds no samples")
            if y.min() < 0 or y.max() >= len(self.classes):
                raise DataError(
                    f"{self.name}: labels in {yk} must lie in 0..{len(self.classes) - 1} "
                    f"({len(self.classes)} classes), found {y.min()}..{y.max()}"
                )
            for k, a in ((xk, x), (yk, y)):
                v = a.view()
                v.flags.writeable = False
                object.__setattr__(self, k, v)
        if self.x_test is not None and self.x_test.shape[1:] != self.x.shape[1:]:
            raise DataError(
                f"{self.name}: test images are {_fmt(self.x_test.shape[1:])} but training "
                f"images are {_fmt(self.x.shape[1:])}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    def __len__(self) -> int:
        return len(self.y)

    def test(self) -> Dataset | None:
        """The held-out test part as a Dataset of its own, or None when there is none."""
        if self.x_test is None:
            return None
        return Dataset(self.x_test, self.y_test, self.classes, f"{self.name} (test)")

    def without_test(self) -> Dataset:
        return Dataset(self.x, self.y, self.classes, self.name)

    def take(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """The training samples at ``indices`` (copies), without the test part."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.x[idx], self.y[idx], self.classes, name or self.name)

    def describe(self) -> str:
        n = f"{len(self)}"
        if self.x_test is not None:
            n += f" training + {len(self.x_test)} test"
        return f"{self.name}: {n} images of {_fmt(self.shape)}, {self.num_classes} classes"


def _fmt(chw: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in chw)


# --------------------------------------------------------------------------------------------
# Array conversion shared by the readers


def _to_nchw(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 3:
        return arr[:, None, :, :]
    if arr.ndim == 4:
        if arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
            return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
        return arr
    raise DataError(
        f"{where}: images must be (N, H, W), (N, C, H, W) or (N, H, W, C), got shape "
        f"{tuple(arr.shape)}"
    )


def _as_pixels(arr: np.ndarray, where: str) -> np.ndarray:
    """(N, C, H, W) pixels as uint8 0..255 or float32 0..1, checked."""
    if arr.shape[0] == 0:
        raise DataError(f"{where}: holds no images")
    if min(arr.shape[1:]) == 0:
        raise DataError(f"{where}: images have an empty dimension, shape {tuple(arr.shape)}")
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{where}: integer pixel values must lie in 0..255, found {lo}..{hi}; "
                "store uint8 0..255 or float 0..1"
            )
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: pixel values include NaN or infinity")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise DataError(
                f"{where}: float pixel values must lie in [0, 1], found [{lo:g}, {hi:g}]; "
                "store uint8 0..255 or scale floats to [0, 1] (normalisation is done by cnnc)"
            )
        return np.clip(arr, 0.0, 1.0).astype(np.float32)
    raise DataError(f"{where}: pixel arrays must be numeric, not {arr.dtype}")


def _as_labels(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        hint = "; one-hot labels? store y.argmax(1)" if arr.ndim == 2 else ""
        raise DataError(f"{where}: labels must be a 1-D array, got shape {tuple(arr.shape)}{hint}")
    if arr.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers (class indices), not {arr.dtype}")
    if len(arr) and int(arr.min()) < 0:
        raise DataError(f"{where}: labels must not be negative, found {int(arr.min())}")
    return arr.astype(np.int64)


def _default_classes(*ys: np.ndarray | None) -> tuple[str, ...]:
    top = max(int(y.max()) for y in ys if y is not None and len(y))
    return tuple(str(i) for i in range(top + 1))


def _check_classes(classes: tuple[str, ...], ys: Sequence[np.ndarray | None], where: str) -> None:
    top = max(int(y.max()) for y in ys if y is not None and len(y))
    if top >= len(classes):
        raise DataError(
            f"{where}: labels go up to {top} but only {len(classes)} class names are given"
        )


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST, EMNIST)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAME = re.compile(
    r"^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<kind>images|labels)[-.]"
    r"(?P<idx>idx\d)-ubyte(?P<gz>\.gz)?$",
    re.IGNORECASE,
)


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip or raw, told apart by magic bytes) as a native-endian array.

    Checks the magic (two zero bytes, a dtype code, the number of dimensions), the dtype code,
    the dimensions and that the file length is exactly header + data.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (it starts {raw[:4].hex(' ')}, expected 00 00 <type> <ndim>)"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(
            f"{path}: unknown IDX data type code 0x{code:02x} (known: "
            + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
            + ")"
        )
    if ndim == 0:
        raise DataError(f"{path}: IDX header gives zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path}: IDX file is {what}: dims {'x'.join(map(str, dims))} of {dtype.name} need "
            f"{expected} bytes, the file has {len(raw)}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def _idx_images(path: Path) -> np.ndarray:
    arr = read_idx(path)
    if arr.ndim not in (3, 4):
        raise DataError(
            f"{path}: an IDX image file holds (N, rows, cols) data, this one has shape "
            f"{tuple(arr.shape)}"
        )
    return _as_pixels(_to_nchw(arr, str(path)), str(path))


def _idx_labels(path: Path) -> np.ndarray:
    arr = read_idx(path)
    if arr.ndim != 1:
        raise DataError(f"{path}: an IDX label file holds 1-D data, this one has shape {arr.shape}")
    return _as_labels(arr, str(path))


def _idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = _idx_images(images), _idx_labels(labels)
    if len(x) != len(y):
        raise DataError(
            f"{images.name} has {len(x)} images but {labels.name} has {len(y)} labels "
            f"(in {images.parent})"
        )
    return x, y


def _idx_files(folder: Path) -> dict[tuple[str, str, str], Path]:
    """IDX files in a folder by (prefix, split, kind); split is 'train' or 'test'."""
    found: dict[tuple[str, str, str], Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot list ({e.strerror or e})") from None
    for p in entries:
        m = _IDX_NAME.match(p.name)
        if not m or not p.is_file():
            continue
        split = "train" if m["split"].lower() == "train" else "test"
        key = (m["prefix"], split, m["kind"].lower())
        # a gunzipped copy beside the .gz is preferred: same data, faster to read
        if key not in found or (found[key].suffix == ".gz" and p.suffix != ".gz"):
            found[key] = p
    return found


def _idx_classes(folder: Path, prefix: str, ys: Sequence[np.ndarray | None]) -> tuple[str, ...]:
    """Class names: an EMNIST ``<prefix>mapping.txt``, Fashion-MNIST's names, or the numbers."""
    mapping = folder / f"{prefix}mapping.txt"
    if mapping.is_file():
        names: dict[int, str] = {}
        try:
            for line in mapping.read_text().split("\n"):
                if line.strip():
                    label, code = line.split()[:2]
                    names[int(label)] = chr(int(code))
        except (ValueError, OSError) as e:
            raise DataError(f"{mapping}: expected lines '<label> <character code>' ({e})") from None
        top = max([*names, *(int(y.max()) for y in ys if y is not None)])
        return tuple(names.get(i, str(i)) for i in range(top + 1))
    hint = f"{folder.name} {prefix}".lower()
    if "fashion" in hint:
        return FASHION_MNIST_CLASSES
    return _default_classes(*ys)


def read_idx_folder(
    folder: str | os.PathLike, *, name: str | None = None, classes: Sequence[str] | None = None
) -> Dataset:
    """A folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and
    optionally ``t10k-images-idx3-ubyte[.gz]``/``t10k-labels-idx1-ubyte[.gz]`` (``test-`` and
    ``.idx3-ubyte`` spellings and EMNIST's ``emnist-<split>-`` prefixes are accepted)."""
    folder = Path(folder)
    found = _idx_files(folder)
    prefixes = sorted({k[0] for k in found})
    if not prefixes:
        raise DataError(
            f"{folder}: no IDX files (expected train-images-idx3-ubyte[.gz] and "
            "train-labels-idx1-ubyte[.gz])"
        )
    if len(prefixes) > 1:
        raise DataError(
            f"{folder}: holds IDX files of several datasets ("
            + ", ".join(repr(p or "(no prefix)") for p in prefixes)
            + "); pass the path of one images file instead"
        )
    prefix = prefixes[0]
    for kind in ("images", "labels"):
        if (prefix, "train", kind) not in found:
            raise DataError(f"{folder}: no {prefix}train-{kind} IDX file")
    x, y = _idx_pair(found[prefix, "train", "images"], found[prefix, "train", "labels"])
    x_test = y_test = None
    test_i, test_l = found.get((prefix, "test", "images")), found.get((prefix, "test", "labels"))
    if (test_i is None) != (test_l is None):
        have = test_i or test_l
        raise DataError(f"{folder}: {have.name} has no matching test images/labels file")
    if test_i is not None:
        x_test, y_test = _idx_pair(test_i, test_l)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{folder}: test images are {_fmt(x_test.shape[1:])} but training images "
                f"are {_fmt(x.shape[1:])}"
            )
    if classes is None:
        classes = _idx_classes(folder, prefix, (y, y_test))
    classes = tuple(classes)
    _check_classes(classes, (y, y_test), str(folder))
    if name is None:
        name = prefix.rstrip("-_.") or folder.name
    return Dataset(x, y, classes, name, x_test, y_test)


def _labels_beside(images: Path) -> Path:
    m = _IDX_NAME.match(images.name)
    if m is None or m["kind"].lower() != "images":
        raise DataError(
            f"{images}: cannot find its labels file: the name does not follow the IDX naming "
            "'<split>-images-idx3-ubyte[.gz]'; pass the folder or an .npz instead"
        )
    candidates = []
    for sep in ("-", "."):
        for gz in ("", ".gz"):
            candidates.append(f"{m['prefix']}{m['split']}-labels{sep}idx1-ubyte{gz}")
    for c in candidates:
        if (images.parent / c).is_file():
            return images.parent / c
    raise DataError(f"{images}: no labels file next to it (looked for {candidates[0]}[.gz])")


def read_idx_dataset(
    images: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """One IDX images file and its labels file (found next to it when not given)."""
    images = Path(images)
    labels = Path(labels) if labels is not None else _labels_beside(images)
    x, y = _idx_pair(images, labels)
    m = _IDX_NAME.match(images.name)
    prefix = m["prefix"] if m else ""
    classes = tuple(classes) if classes is not None else _idx_classes(images.parent, prefix, (y,))
    _check_classes(classes, (y,), str(images))
    if name is None:
        name = (prefix.rstrip("-_.") or images.parent.name) + (f" ({m['split']})" if m else "")
    return Dataset(x, y, classes, name)


def _looks_like_idx(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                head = g.read(4)
        else:
            with open(path, "rb") as f:
                head = f.read(4)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_DTYPES


# --------------------------------------------------------------------------------------------
# .npz


def read_npz(path: str | os.PathLike, *, name: str | None = None) -> Dataset:
    """An ``.npz`` archive (never unpickled) with arrays ``x`` and ``y`` (or ``x_train`` and
    ``y_train``), optionally ``x_test``/``y_test`` and a string array ``classes``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic == b"\x93NUMPY":
            raise DataError(f"{path}: a single .npy array, not an .npz archive with x and y")
        if magic[:2] != b"PK":
            raise DataError(f"{path}: not an .npz archive (no zip signature at its start)")
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single .npy array, not an .npz archive with x and y")
        with f:
            keys = set(f.files)
            if "x" in keys and "x_train" in keys:
                raise DataError(f"{path}: has both x and x_train; keep one of them")
            xk, yk = ("x", "y") if "x" in keys else ("x_train", "y_train")
            if xk not in keys or yk not in keys:
                raise DataError(
                    f"{path}: expected arrays x and y (or x_train and y_train), found "
                    + (", ".join(sorted(keys)) or "no arrays")
                )
            if ("x_test" in keys) != ("y_test" in keys):
                raise DataError(f"{path}: x_test and y_test must be stored together")
            arrays = {k: f[k] for k in (xk, yk, "x_test", "y_test", "classes") if k in keys}
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as e:  # zip, zlib, format and pickle errors all mean: unusable file
        msg = str(e)
        if "pickle" in msg.lower():
            msg = "holds pickled objects, which cnnc never loads; store plain numeric arrays"
        raise DataError(f"{path}: not a readable .npz archive: {msg}") from None

    def part(xk: str, yk: str) -> tuple[np.ndarray, np.ndarray]:
        x = _as_pixels(_to_nchw(arrays[xk], f"{path}[{xk}]"), f"{path}[{xk}]")
        y = _as_labels(arrays[yk], f"{path}[{yk}]")
        if len(x) != len(y):
            raise DataError(f"{path}: {len(x)} images in {xk} but {len(y)} labels in {yk}")
        return x, y

    x, y = part(xk, yk)
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, y_test = part("x_test", "y_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{path}: x_test images are {_fmt(x_test.shape[1:])} but {xk} images are "
                f"{_fmt(x.shape[1:])}"
            )
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind not in "US":
            raise DataError(f"{path}: classes must be a 1-D string array, got {c.dtype} {c.shape}")
        classes = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in c.tolist())
        _check_classes(classes, (y, y_test), str(path))
    else:
        classes = _default_classes(y, y_test)
    return Dataset(x, y, classes, name or path.stem, x_test, y_test)


# --------------------------------------------------------------------------------------------
# Images (Pillow, optional)


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


# --------------------------------------------------------------------------------------------
# --data resolution


def _named_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs += [Path(data_dir) / name, Path(data_dir)]
    env = os.environ.get("CNNC_DATA")
    if env:
        dirs += [Path(env) / name, Path(env)]
    dirs.append(SYSTEM_DATA_DIR / name)
    return dirs


def _load_named(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    dirs = _named_dirs(name, data_dir)
    for d in dirs:
        if d.is_dir() and any(k == ("", "train", "images") for k in _idx_files(d)):
            return read_idx_folder(d, name=name, classes=NAMED_DATASETS[name])
    fix = "apt install dataset-fashion-mnist, or put" if name == "fashion-mnist" else "Put"
    raise DataError(
        f"dataset {name!r} not found; looked for train-images-idx3-ubyte[.gz] in "
        + ", ".join(str(d) for d in dirs)
        + f". {fix} the four IDX files in a folder and set CNNC_DATA to it"
    )


def load_data(
    source: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    image_shape: Sequence[int] | None = None,
) -> Dataset:
    """Resolve ``--data``: None or "default" (bundled sample), "fashion-mnist" or "mnist" (full
    IDX set, searched in ``data_dir``, ``$CNNC_DATA``, ``/usr/share/datasets``), or a path to an
    ``.npz``, an IDX folder, an IDX images file, or an image-folder tree (``image_shape`` =
    the spec's ``(C, H, W)`` converts and resizes those images; other sources are not resized)."""
    if source is None or (isinstance(source, str) and source == "default"):
        return read_npz(DEFAULT_SAMPLE, name=DEFAULT_NAME)
    if isinstance(source, str) and source.lower() in NAMED_DATASETS:
        return _load_named(source.lower(), data_dir)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"--data {str(source)!r}: no such file or folder, and not a dataset name "
            f"(default, {', '.join(NAMED_DATASETS)})"
        )
    if path.is_dir():
        if _idx_files(path):
            named = path.name.lower()
            return read_idx_folder(path, name=named if named in NAMED_DATASETS else None)
        return read_image_folder(path, image_shape=image_shape)
    if path.suffix.lower() == ".npz":
        return read_npz(path)
    if _IDX_NAME.match(path.name) or _looks_like_idx(path):
        return read_idx_dataset(path)
    raise DataError(
        f"{path}: unsupported data file; expected an .npz archive, an IDX images file, or a "
        "folder (IDX files, or images in one sub-folder per class)"
    )


# --------------------------------------------------------------------------------------------
# Checks against a spec


def check_input_shape(data: Dataset, expected_chw: Sequence[int]) -> None:
    """Raise DataError unless the data's images are ``expected_chw`` = (C, H, W)."""
    exp = tuple(int(d) for d in expected_chw)
    if len(exp) != 3:
        raise DataError(f"expected input shape must be (C, H, W), got {tuple(expected_chw)}")
    if data.shape != exp:
        c, h, w = exp
        raise DataError(
            f"the spec expects input {_fmt(exp)} but the data is {_fmt(data.shape)} "
            f"({data.name}); use a spec with `input {_fmt(data.shape)}` or data with "
            f"{c} channel{'s' if c != 1 else ''} of {h}x{w}"
        )


def check_num_classes(data: Dataset, num_outputs: int) -> None:
    """Raise DataError unless the network's output count equals the data's class count."""
    if data.num_classes != int(num_outputs):
        raise DataError(
            f"the spec's network ends in {num_outputs} outputs but the data has "
            f"{data.num_classes} classes ({data.name}); make the last layer "
            f"{data.num_classes} wide"
        )


# --------------------------------------------------------------------------------------------
# Normalisation, validation split, shuffling and batches


def to_unit(x: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 is divided by 255, float32 is returned as is."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) * np.float32(1 / 255)
    return np.asarray(x, dtype=np.float32)


def compute_normalization(data: Dataset | np.ndarray, chunk: int = 4096) -> dict[str, list[float]]:
    """Per-channel mean and std of the [0, 1] pixels of ``data`` (a Dataset's training part or an
    (N, C, H, W) array), as plain floats: ``{"mean": [...], "std": [...]}``, one per channel.
    A constant channel gets std 1.0 so that normalising it cannot divide by zero."""
    x = data.x if isinstance(data, Dataset) else np.asarray(data)
    if x.ndim != 4 or len(x) == 0:
        raise DataError(f"normalisation needs a non-empty (N, C, H, W) array, got {x.shape}")
    c = x.shape[1]
    s = np.zeros(c, dtype=np.float64)
    ss = np.zeros(c, dtype=np.float64)
    for i in range(0, len(x), chunk):
        b = x[i : i + chunk].astype(np.float64)
        if x.dtype == np.uint8:
            b /= 255.0
        s += b.sum(axis=(0, 2, 3))
        ss += np.square(b).sum(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def normalize(x: np.ndarray, norm: Mapping[str, Sequence[float]] | None) -> np.ndarray:
    """(N, C, H, W) or (C, H, W) pixels to C-contiguous float32: ``(to_unit(x) - mean) / std``
    per channel, or just ``to_unit(x)`` when ``norm`` is None. Always a new array."""
    out = to_unit(x)
    if out is x:
        out = out.copy()
    if norm is None:
        return np.ascontiguousarray(out)
    c = out.shape[-3]
    mean = np.asarray(norm["mean"], dtype=np.float32)
    std = np.asarray(norm["std"], dtype=np.float32)
    if mean.shape != (c,) or std.shape != (c,):
        raise DataError(
            f"normalisation statistics are for {mean.size} channel(s) but the data has {c}"
        )
    out -= mean[:, None, None]
    out /= std[:, None, None]
    return np.ascontiguousarray(out)


def split_validation(
    data: Dataset, fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset | None]:
    """Hold out ``fraction`` of the training part, stratified by class and fixed by ``seed``.

    Returns (rest, validation); ``rest`` keeps the test part, both keep the original sample
    order. ``fraction`` 0 returns (data, None). The same data, fraction and seed always give the
    same split."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    n = len(data)
    n_val = round(fraction * n)
    if fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    if n_val == 0:
        return data, None
    rng = np.random.default_rng(seed)
    counts = np.bincount(data.y, minlength=data.num_classes)
    # largest-remainder allocation of n_val over the classes, proportional to their size
    quota = counts * (n_val / n)
    take = np.floor(quota).astype(np.int64)
    rest = n_val - int(take.sum())
    order = np.lexsort((np.arange(len(counts)), -(quota - take)))
    take[order[:rest]] += 1
    perm = rng.permutation(n)
    perm = perm[np.argsort(data.y[perm], kind="stable")]  # random order within each class
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    val = np.concatenate([perm[s : s + k] for s, k in zip(starts, take, strict=True)])
    val.sort()
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    keep = np.flatnonzero(mask)
    train = Dataset(data.x[keep], data.y[keep], data.classes, data.name, data.x_test, data.y_test)
    return train, data.take(val, name=f"{data.name} (validation)")


def epoch_order(n: int, rng: np.random.Generator | None) -> np.ndarray:
    """Sample order for one epoch: ``rng.permutation(n)`` (one draw), or 0..n-1 without rng."""
    return np.arange(n) if rng is None else rng.permutation(n)


def batch_count(n: int | Dataset, batch_size: int) -> int:
    n = len(n) if isinstance(n, Dataset) else int(n)
    return -(-n // int(batch_size))


def iter_batches(
    data: Dataset,
    batch_size: int,
    *,
    norm: Mapping[str, Sequence[float]] | None = None,
    rng: np.random.Generator | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches ``(x, y)`` of the training part: x float32 (B, C, H, W) C-contiguous, normalised
    with ``norm`` (or just scaled to [0, 1]); y int64 (B,). Every sample exactly once; the last
    batch may be smaller. With ``rng`` the order is ``rng.permutation(len(data))``, drawn when
    this function is called (not lazily), so saving ``rng.bit_generator.state`` after the call
    and restoring it reproduces the next epoch's order."""
    if int(batch_size) < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    order = epoch_order(len(data), rng)
    return _batches(data, order, int(batch_size), norm)


def _batches(
    data: Dataset, order: np.ndarray, batch_size: int, norm: Mapping | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        yield normalize(data.x[idx], norm), data.y[idx].copy()
