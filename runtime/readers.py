"""File readers: IDX (MNIST, Fashion-MNIST, EMNIST) and ``.npz`` archives, each to a Dataset.

Array layout rule (``.npz`` and IDX)
    3-D ``(N, H, W)`` is one channel. 4-D is channels-last ``(N, H, W, C)`` when the last axis is
    1 or 3 and axis 1 is not; otherwise it is ``(N, C, H, W)``. So ``(N, 28, 28, 1)`` and
    ``(N, 32, 32, 3)`` are channels-last, ``(N, 1, 28, 28)`` and ``(N, 3, 32, 32)`` are not.

Pixels come out as ``uint8`` 0..255 or ``float32`` 0..1 (see ``dataset``); any problem raises
DataError naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset, shape_text
from .memory import available_bytes, size_text

__all__ = [
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "idx_files",
    "is_idx_file",
    "read_idx",
    "read_idx_dataset",
    "read_idx_folder",
    "read_npz",
]

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


MAX_CLASSES = 100_000  # a label above this is a damaged file, not a class index


def _top_label(ys: Sequence[np.ndarray | None], where: str) -> int:
    top = max(int(y.max()) for y in ys if y is not None and len(y))
    if top >= MAX_CLASSES:
        raise DataError(
            f"{where}: labels go up to {top}; labels are class indices 0..{MAX_CLASSES - 1} "
            "(is the label array damaged, or not labels at all?)"
        )
    return top


def _default_classes(*ys: np.ndarray | None, where: str = "labels") -> tuple[str, ...]:
    return tuple(str(i) for i in range(_top_label(ys, where) + 1))


def _check_classes(classes: tuple[str, ...], ys: Sequence[np.ndarray | None], where: str) -> None:
    top = _top_label(ys, where)
    if top >= len(classes):
        raise DataError(
            f"{where}: labels go up to {top} but only {len(classes)} class names are given"
        )


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST, EMNIST)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAME = re.compile(
    r"^(?P<prefix>.*?)(?P<split>train|t10k|test)-(?P<kind>images|labels)[-.]"
    r"(?P<idx>idx\d)-ubyte(?P<gz>\.gz)?$",
    re.IGNORECASE,
)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _idx_header(path: Path, raw: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dims, dtype, header bytes) from an IDX file's first bytes, all checked."""
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
    declared = header + math.prod(dims) * dtype.itemsize
    room = available_bytes()
    if room is not None and declared > room:
        raise DataError(
            f"{path}: its IDX header declares dims {'x'.join(map(str, dims))} of {dtype.name}, "
            f"{size_text(declared)}, more than the {size_text(room)} of memory available"
        )
    return dims, dtype, header


def _idx_bytes(path: Path) -> bytes:
    """An IDX file's bytes, gunzipped when it starts with the gzip magic; a gzip stream is
    decompressed no further than its IDX header says the data goes (a small file that expands
    without end is refused, not decompressed)."""
    raw = _read_bytes(path)
    if raw[:2] != b"\x1f\x8b":
        return raw
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        head = inflate.decompress(raw, 4 + 4 * 255)
        if len(head) < 4 + 4 * 255 and not inflate.eof:
            raise DataError(f"{path}: corrupt or truncated gzip data (it ends inside the header)")
        dims, dtype, header = _idx_header(path, head)
        declared = header + math.prod(dims) * dtype.itemsize
        body = inflate.decompress(inflate.unconsumed_tail, max(declared - len(head), 0) + 1)
        data = head + body
        if len(data) > declared or inflate.unused_data:
            raise DataError(
                f"{path}: IDX file is longer than its header says: dims "
                f"{'x'.join(map(str, dims))} of {dtype.name} need {declared} bytes, the gzip "
                "stream holds more"
            )
        if not inflate.eof:
            raise DataError(f"{path}: corrupt or truncated gzip data (the stream does not end)")
    except zlib.error as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip or raw, told apart by magic bytes) as a native-endian array.

    Checks the magic (two zero bytes, a dtype code, the number of dimensions), the dtype code,
    the dimensions and that the file length is exactly header + data.
    """
    path = Path(path)
    raw = _idx_bytes(path)
    dims, dtype, header = _idx_header(path, raw)
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


def idx_files(folder: Path) -> dict[tuple[str, str, str], Path]:
    """IDX files in a folder by (prefix, split, kind); split is 'train' or 'test'."""
    found: dict[tuple[str, str, str], Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot list ({e.strerror or e})") from None
    for p in entries:
        m = IDX_NAME.match(p.name)
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
            lines = mapping.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{mapping}: cannot read as UTF-8 text ({e})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            fields = line.split()
            label = int(fields[0]) if len(fields) >= 2 and fields[0].isdigit() else -1
            code = int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else -1
            if not (0 <= label < MAX_CLASSES and 0 <= code <= 0x10FFFF):
                raise DataError(
                    f"{mapping}:{number}: expected '<label> <character code>' with a label "
                    f"0..{MAX_CLASSES - 1} and a code 0..{0x10FFFF}, got {line.strip()[:60]!r}"
                )
            names[label] = chr(code)
        top = max([*names, _top_label(ys, str(folder))])
        return tuple(names.get(i, str(i)) for i in range(top + 1))
    hint = f"{folder.name} {prefix}".lower()
    if "fashion" in hint:
        return FASHION_MNIST_CLASSES
    return _default_classes(*ys, where=str(folder))


def read_idx_folder(
    folder: str | os.PathLike, *, name: str | None = None, classes: Sequence[str] | None = None
) -> Dataset:
    """A folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and
    optionally ``t10k-images-idx3-ubyte[.gz]``/``t10k-labels-idx1-ubyte[.gz]`` (``test-`` and
    ``.idx3-ubyte`` spellings and EMNIST's ``emnist-<split>-`` prefixes are accepted)."""
    folder = Path(folder)
    found = idx_files(folder)
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
                f"{folder}: test images are {shape_text(x_test.shape[1:])} but training images "
                f"are {shape_text(x.shape[1:])}"
            )
    if classes is None:
        classes = _idx_classes(folder, prefix, (y, y_test))
    classes = tuple(classes)
    _check_classes(classes, (y, y_test), str(folder))
    if name is None:
        name = prefix.rstrip("-_.") or folder.name
    return Dataset(x, y, classes, name, x_test, y_test)


def _labels_beside(images: Path) -> Path:
    m = IDX_NAME.match(images.name)
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
    m = IDX_NAME.match(images.name)
    prefix = m["prefix"] if m else ""
    classes = tuple(classes) if classes is not None else _idx_classes(images.parent, prefix, (y,))
    _check_classes(classes, (y,), str(images))
    if name is None:
        name = (prefix.rstrip("-_.") or images.parent.name) + (f" ({m['split']})" if m else "")
    return Dataset(x, y, classes, name)


def is_idx_file(path: Path) -> bool:
    """Named like an IDX file, or starting with an IDX header (gzipped or not)."""
    return bool(IDX_NAME.match(path.name)) or _looks_like_idx(path)


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


def _npz_member(archive, key: str, path: Path) -> np.ndarray:
    """One array of an open archive; its .npy header is read first, so a member that is not
    .npy, holds objects, or declares more than memory holds is refused before it is read."""
    member = f"{key}.npy"
    if member not in archive.zip.namelist():
        raise DataError(f"{path}: its member `{key}` is not a .npy array")
    with archive.zip.open(member) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
        except (ValueError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}[{key}]: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise DataError(
            f"{path}[{key}]: holds Python objects (pickled), which cnnc never loads; store plain "
            "numeric arrays (strings as a fixed-width string array)"
        )
    size, room = math.prod(shape) * dtype.itemsize, available_bytes()
    if room is not None and size > room:
        raise DataError(
            f"{path}[{key}]: declares shape {tuple(shape)} of {dtype}, {size_text(size)}, more "
            f"than the {size_text(room)} of memory available"
        )
    return archive[key]


def _class_name(value, index: int, path: Path) -> str:
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"{path}[classes]: class name {index} is not UTF-8 text ({value[:40]!r})"
        ) from None


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
            arrays = {
                k: _npz_member(f, k, path)
                for k in (xk, yk, "x_test", "y_test", "classes")
                if k in keys
            }
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
                f"{path}: x_test images are {shape_text(x_test.shape[1:])} but {xk} images are "
                f"{shape_text(x.shape[1:])}"
            )
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind not in "US":
            raise DataError(f"{path}: classes must be a 1-D string array, got {c.dtype} {c.shape}")
        classes = tuple(_class_name(s, i, path) for i, s in enumerate(c.tolist()))
        _check_classes(classes, (y, y_test), str(path))
    else:
        classes = _default_classes(y, y_test, where=str(path))
    return Dataset(x, y, classes, name or path.stem, x_test, y_test)
