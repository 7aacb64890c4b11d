"""Segmentation metrics from a pixel confusion matrix: pixel accuracy, per-class IoU, mean IoU.

``confusion[true, predicted]`` counts pixels over a whole dataset (ignored pixels left out), so
every figure is exact over the dataset, not a mean of per-batch figures. IoU of a class is
TP / (TP + FP + FN); a class that is neither in the masks nor predicted has no IoU (NaN) and the
mean IoU leaves it out, as torchmetrics and mmsegmentation do.
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_pixels", "mean_iou", "per_class_iou", "pixel_accuracy", "summary"]


def add_pixels(confusion: np.ndarray, labels: np.ndarray, predicted: np.ndarray, ignore: int):
    """Count the pixels of `labels` (true) against `predicted` into `confusion`, in place."""
    k = confusion.shape[0]
    keep = labels != ignore
    pairs = labels[keep].astype(np.int64) * k + predicted[keep].astype(np.int64)
    confusion += np.bincount(pairs, minlength=k * k).reshape(k, k)


def pixel_accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    iou = per_class_iou(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def summary(confusion: np.ndarray) -> dict:
    """The figures as JSON-ready values (NaN as None)."""
    iou = per_class_iou(confusion)
    return {
        "pixel_accuracy": pixel_accuracy(confusion),
        "mean_iou": mean_iou(confusion),
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
    }
