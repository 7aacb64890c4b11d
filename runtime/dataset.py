"""The data a run uses: :class:`Dataset` and the checks of a dataset against a spec.

Pixel convention
    A :class:`Dataset` keeps its pixels as read, in ``(N, C, H, W)`` order: ``uint8`` in
    ``0..255`` (IDX files, image folders, integer ``.npz`` arrays) or ``float32`` in ``[0, 1]``
    (float ``.npz`` arrays). ``batches.to_unit`` maps either to float32 in ``[0, 1]``;
    normalisation statistics (``batches.compute_normalization``) are per-channel mean and std of
    those ``[0, 1]`` values on the training part, and ``batches.normalize`` applies them.
    ``images.load_image`` gives ``[0, 1]`` float32 too, so ``predict`` on image files uses the
    same scale as training.

Readers live in ``readers`` (IDX, ``.npz``) and ``images`` (Pillow); ``sources`` resolves
``--data``; ``batches`` normalises, splits and batches. Every problem with the data raises
:class:`DataError`, whose message names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import DataError

__all__ = ["DataError", "Dataset", "check_input_shape", "check_num_classes", "limit", "shape_text"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and integer labels, with an optional held-out test part.

    ``x`` is ``(N, C, H, W)`` ``uint8`` (0..255) or ``float32`` (0..1); ``y`` is ``(N,)``
    ``int64`` in ``0..len(classes)-1``, or for segmentation ``(N, H, W)`` ``uint8`` masks of the
    images' height and width, labels in ``0..len(classes)-1`` or 255 (ignored).
    ``x_test``/``y_test`` follow the same rules with the same ``C, H, W``.
    The arrays are stored as read-only views.
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
            if isinstance(y, np.ndarray) and y.ndim == 3:
                _check_masks(self, x, y, xk, yk)
            elif not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
                raise DataError(
                    f"{self.name}: {yk} must be a 1-D int64 array (or (N, H, W) uint8 masks)"
                )
            if len(x) != len(y):
                raise DataError(f"{self.name}: {len(x)} images in {xk} but {len(y)} labels in {yk}")
            if len(x) == 0:
                raise DataError(f"{self.name}: {xk} holds no samples")
            if y.ndim == 1 and (y.min() < 0 or y.max() >= len(self.classes)):
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
                f"{self.name}: test images are {shape_text(self.x_test.shape[1:])} but training "
                f"images are {shape_text(self.x.shape[1:])}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def dense(self) -> bool:
        """Whether the labels are per-pixel masks (N, H, W) rather than one class per image."""
        return self.y.ndim == 3

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
        masks = f" with {shape_text(self.y.shape[1:])} masks" if self.dense else ""
        return (
            f"{self.name}: {n} images of {shape_text(self.shape)}{masks}, "
            f"{self.num_classes} classes"
        )


IGNORED_LABEL = 255  # the one mask value beyond the classes a Dataset accepts (VOC's "void")


def _check_masks(data: Dataset, x: np.ndarray, y: np.ndarray, xk: str, yk: str) -> None:
    if y.dtype != np.uint8:
        raise DataError(f"{data.name}: masks in {yk} must be uint8 class maps, not {y.dtype}")
    if y.shape[1:] != x.shape[2:]:
        raise DataError(
            f"{data.name}: masks in {yk} are {shape_text(y.shape[1:])} but the images in {xk} "
            f"are {shape_text(x.shape[2:])}; each mask must have its image's height and width"
        )
    labels = np.unique(y)
    bad = labels[(labels >= len(data.classes)) & (labels != IGNORED_LABEL)]
    if len(bad):
        raise DataError(
            f"{data.name}: mask labels in {yk} must lie in 0..{len(data.classes) - 1} "
            f"({len(data.classes)} classes) or be {IGNORED_LABEL} (ignored), found {int(bad[0])}"
        )


def shape_text(chw: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in chw)


def limit(dataset: Dataset, count: int) -> Dataset:
    """The first `count` training and test samples (a quick run, or a test's slice)."""
    part = dataset.take(range(min(count, len(dataset))))
    if dataset.x_test is None:
        return part
    keep = min(count, len(dataset.x_test))
    return replace(part, x_test=dataset.x_test[:keep], y_test=dataset.y_test[:keep])


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
            f"the spec expects input {shape_text(exp)} but the data is {shape_text(data.shape)} "
            f"({data.name}); use a spec with `input {shape_text(data.shape)}` or data with "
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
