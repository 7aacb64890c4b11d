"""Resolving ``--data`` to a Dataset.

Sources understood by :func:`load_data`
    ``None`` / ``"default"``    the bundled class-balanced Fashion-MNIST sample (8,000 + 2,000),
                                or for a spec whose output is a map (``masks=True``) the
                                bundled segmentation sample (1,200 + 300 canvases with masks)
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
    a mask ``.npz`` or folder   ``y`` of shape (N, H, W), or ``root/images/`` + ``root/masks/``
                                (see ``masks``)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .dataset import DataError, Dataset
from .images import read_image_folder
from .masks import is_mask_folder, npz_holds_masks, read_mask_folder, read_mask_npz
from .readers import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    idx_files,
    is_idx_file,
    read_idx_dataset,
    read_idx_folder,
    read_npz,
)

__all__ = ["DEFAULT_SAMPLE", "NAMED_DATASETS", "load_data"]

DEFAULT_SAMPLE = Path(__file__).with_name("data") / "fashion_mnist_sample.npz"
DEFAULT_NAME = "fashion-mnist-sample"
SEGMENTATION_SAMPLE = Path(__file__).with_name("data") / "fashion_mnist_segments.npz"
SEGMENTATION_NAME = "fashion-mnist-segments"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")  # Debian's dataset-* packages install here
NAMED_DATASETS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": FASHION_MNIST_CLASSES,
    "mnist": MNIST_CLASSES,
}


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
        if d.is_dir() and any(k == ("", "train", "images") for k in idx_files(d)):
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
    masks: bool = False,
) -> Dataset:
    """Resolve ``--data``: None or "default" (bundled sample), "fashion-mnist" or "mnist" (full
    IDX set, searched in ``data_dir``, ``$CNNC_DATA``, ``/usr/share/datasets``), or a path to an
    ``.npz``, an IDX folder, an IDX images file, or an image-folder tree (``image_shape`` =
    the spec's ``(C, H, W)`` converts and resizes those images; other sources are not resized).
    ``masks``: the spec's output is a map, so the default is the segmentation sample."""
    if source is None or (isinstance(source, str) and source == "default"):
        if masks:
            return read_mask_npz(SEGMENTATION_SAMPLE, name=SEGMENTATION_NAME)
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
        if is_mask_folder(path):
            return read_mask_folder(path, image_shape=image_shape)
        if idx_files(path):
            named = path.name.lower()
            return read_idx_folder(path, name=named if named in NAMED_DATASETS else None)
        return read_image_folder(path, image_shape=image_shape)
    if not path.is_file():  # a pipe would block forever, a device could stream without end
        raise DataError(f"--data {str(source)!r}: not a regular file or a folder")
    if path.suffix.lower() == ".npz":
        return read_mask_npz(path) if npz_holds_masks(path) else read_npz(path)
    if is_idx_file(path):
        return read_idx_dataset(path)
    raise DataError(
        f"{path}: unsupported data file; expected an .npz archive, an IDX images file, or a "
        "folder (IDX files, or images in one sub-folder per class)"
    )
