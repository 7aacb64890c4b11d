"""Dense prediction: the checks of mask data against a map output, evaluation over pixels, and
the pictures `predict` writes (a mask in class colours and an overlay on the input)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import metrics
from .batches import iter_batches
from .dataset import DataError, Dataset, shape_text
from .errors import TrainingError

__all__ = ["check_targets", "colourize", "evaluate_masks", "is_map", "overlay", "palette"]


def is_map(shape: Sequence[int]) -> bool:
    """Whether an output shape is a map (KxHxW with H*W > 1), scored per pixel."""
    return len(shape) == 3 and shape[1] * shape[2] > 1


def check_targets(data: Dataset, network) -> None:
    """Raise unless the data's labels fit the network's output: one class per image for a
    vector, masks of the output's height and width for a map, as many classes as it has."""
    from .dataset import check_num_classes

    shape = network.plan.tensors[network.plan.logits].shape
    if network.dense != data.dense:
        if network.dense:
            raise DataError(
                f"the spec's output is a {shape_text(shape)} map, so training needs a mask per "
                f"image ((N, H, W) labels), but {data.name} has one label per image; give "
                "--data a mask .npz or an images/ + masks/ folder"
            )
        raise DataError(
            f"{data.name} has a mask per image but the spec's output is {shape_text(shape)}, "
            "one vector per image; end the spec in a KxHxW map to train on masks"
        )
    if not network.dense:
        check_num_classes(data, network.classes)
        return
    if data.y.shape[1:] != tuple(shape[1:]):
        raise DataError(
            f"the spec's output is {shape_text(shape)} but the masks of {data.name} are "
            f"{shape_text(data.y.shape[1:])}; output and masks must have the same height and width"
        )
    if data.num_classes != network.classes:
        raise DataError(
            f"the spec's output has {network.classes} channels ({shape_text(shape)}) but "
            f"{data.name} has {data.num_classes} classes; make the last layer "
            f"{data.num_classes}@1x1"
        )
    ignore, k = network.ignore_index, network.classes
    for part in (data.y, data.y_test):
        if part is not None:
            labels = np.unique(part)
            bad = labels[(labels >= k) & (labels != ignore)]
            if len(bad):
                raise TrainingError(
                    f"{data.name}: mask label {int(bad[0])} is neither a class (0..{k - 1}) nor "
                    f"the ignore index {ignore}"
                )


def evaluate_masks(network, dataset: Dataset, norm, batch: int):
    """(mean pixel loss, pixel accuracy, pixel confusion matrix[true, predicted]) over a
    dataset; the loss is weighted and ignores pixels as training does."""
    k = network.classes
    confusion = np.zeros((k, k), np.int64)
    loss_sum = weight_sum = 0.0
    for x, y in iter_batches(dataset, batch, norm=norm):
        batch_loss, _ = network.evaluate(x, y)
        keep = y != network.ignore_index
        weight = float(network.class_weights[y[keep]].sum())
        loss_sum += batch_loss / len(y) * weight
        weight_sum += weight
        predicted = network.output().argmax(axis=1)
        metrics.add_pixels(confusion, y, predicted, network.ignore_index)
    return loss_sum / max(weight_sum, 1e-300), metrics.pixel_accuracy(confusion), confusion


# --------------------------------------------------------------------------------------------
# pictures


def palette(classes: int) -> np.ndarray:
    """(classes, 3) uint8 colours: Pascal VOC's palette (0 black, 1 dark red, 2 green, ...)."""
    colours = np.zeros((max(classes, 1), 3), np.uint8)
    for label in range(classes):
        value, shift = label, 7
        while value:
            for channel in range(3):
                colours[label, channel] |= ((value >> channel) & 1) << shift
            value, shift = value >> 3, shift - 1
    return colours


def colourize(mask: np.ndarray, classes: int) -> np.ndarray:
    """(H, W) labels to (H, W, 3) uint8 class colours."""
    return palette(classes)[np.minimum(mask, classes - 1)]


def overlay(image: np.ndarray, mask: np.ndarray, classes: int, alpha: float = 0.5) -> np.ndarray:
    """The (C, H, W) [0, 1] input with every non-background (label != 0) pixel tinted by its
    class colour, as (H, W, 3) uint8."""
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    rgb = np.clip(rgb.transpose(1, 2, 0) * 255.0, 0, 255)
    tint = colourize(mask, classes).astype(np.float64)
    painted = mask[..., None] != 0
    blended = np.where(painted, (1 - alpha) * rgb + alpha * tint, rgb)
    return np.round(blended).astype(np.uint8)


def write_mask_png(path: Path, mask: np.ndarray, classes: int) -> None:
    """A palette PNG: its pixel values are the labels, its palette the class colours (as VOC's
    SegmentationClass files), so it reads back as a mask."""
    from PIL import Image

    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette(max(classes, 1)).reshape(-1).tolist())
    _save(image, path)


def write_rgb_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    _save(Image.fromarray(pixels, mode="RGB"), path)


def _save(image, path: Path) -> None:
    import io

    from cnnc.compiler.files import UsageError, write_bytes_atomic

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as error:
        raise UsageError(f"{path}: cannot write it ({error.strerror or error})") from None
