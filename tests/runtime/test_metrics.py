"""Pixel accuracy, per-class IoU and mean IoU from a pixel confusion matrix."""

import math

import numpy as np

from cnnc.runtime import metrics


def test_pixels_are_counted_true_against_predicted_and_ignored_pixels_left_out():
    labels = np.array([[0, 0, 1], [1, 2, 255]])
    predicted = np.array([[0, 1, 1], [1, 0, 2]])
    confusion = np.zeros((3, 3), np.int64)
    metrics.add_pixels(confusion, labels, predicted, ignore=255)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert metrics.pixel_accuracy(confusion) == 3 / 5


def test_iou_is_tp_over_union_and_a_class_never_seen_is_left_out_of_the_mean():
    confusion = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    iou = metrics.per_class_iou(confusion)
    assert iou[0] == 5 / (5 + 1 + 2) and iou[1] == 3 / (3 + 2 + 1)
    assert math.isnan(iou[2])
    assert metrics.mean_iou(confusion) == (5 / 8 + 3 / 6) / 2
    assert metrics.summary(confusion)["per_class_iou"][2] is None


def test_all_background_prediction_scores_the_background_share_and_zero_item_iou():
    labels = np.zeros((4, 4), np.int64)
    labels[1:3, 1:3] = 1
    confusion = np.zeros((2, 2), np.int64)
    metrics.add_pixels(confusion, labels, np.zeros_like(labels), ignore=255)
    assert metrics.pixel_accuracy(confusion) == 12 / 16
    assert metrics.mean_iou(confusion) == (12 / 16 + 0) / 2
