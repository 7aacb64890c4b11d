"""Loss and accuracy on the logits of the last step (not a layer kind)."""

import numpy as np
from numba import njit

from .config import JIT


@njit(**JIT)
def softmax_cross_entropy(A, logits_off, dlogits_off, classes, labels, n, smoothing=0.0):
    """Mean cross-entropy of softmax(logits) against integer labels, via log-sum-exp.

    With label smoothing e the target is (1 - e) * onehot + e / classes (torch's
    `label_smoothing`). Overwrites dlogits = (softmax - target) / n (the gradient of the mean
    loss) when dlogits_off >= 0. Offsets are per sample (scaled by n), like every arena offset.
    """
    x, d = logits_off * n, dlogits_off * n
    total = 0.0
    inv_n = 1.0 / n
    spread = smoothing / classes
    for s in range(n):
        b = x + s * classes
        m = -np.inf
        for c in range(classes):
            m = max(m, np.float64(A[b + c]))
        z = 0.0
        for c in range(classes):
            z += np.exp(A[b + c] - m)
        lse = m + np.log(z)
        y = labels[s]
        total += (1.0 - smoothing) * (lse - A[b + y])
        if smoothing != 0.0:
            for c in range(classes):
                total += spread * (lse - A[b + c])
        if d >= 0:
            g, r = d + s * classes, inv_n / z
            for c in range(classes):
                A[g + c] = np.exp(A[b + c] - m) * r - spread * inv_n
            A[g + y] -= (1.0 - smoothing) * inv_n
    return total * inv_n


@njit(**JIT)
def count_correct(A, logits_off, classes, labels, n):
    """How many samples have argmax(logits) == label (first maximum wins, as np.argmax)."""
    x, hits = logits_off * n, 0
    for s in range(n):
        b = x + s * classes
        best = 0
        for c in range(1, classes):
            if A[b + c] > A[b + best]:
                best = c
        if best == labels[s]:
            hits += 1
    return hits


@njit(**JIT)
def softmax_cross_entropy_map(
    A, logits_off, dlogits_off, classes, pixels, labels, weights, ignore, n
):
    """Per-pixel softmax cross-entropy of (n, classes, pixels) logits against (n * pixels,)
    integer labels, as PyTorch's F.cross_entropy(weight=weights, ignore_index=ignore): the mean
    of weights[label] * loss over the pixels whose label is not `ignore`, divided by the sum of
    those weights. Returns (loss, correct pixels, labelled pixels); a batch with every pixel
    ignored has loss 0 and a zero gradient (PyTorch gives NaN).

    Overwrites dlogits with the gradient of that loss when dlogits_off >= 0.
    """
    x, d = logits_off * n, dlogits_off * n
    weight_sum, counted = 0.0, 0
    for i in range(n * pixels):
        if labels[i] != ignore:
            weight_sum += weights[labels[i]]
            counted += 1
    scale = 1.0 / weight_sum if weight_sum > 0 else 0.0
    total, correct = 0.0, 0
    for s in range(n):
        base = x + s * classes * pixels
        for p in range(pixels):
            b = base + p
            y = labels[s * pixels + p]
            m, best = -np.inf, 0
            for c in range(classes):
                v = np.float64(A[b + c * pixels])
                if v > m:
                    m, best = v, c
            if y == ignore:
                if d >= 0:
                    for c in range(classes):
                        A[d + b - x + c * pixels] = 0.0
                continue
            if best == y:
                correct += 1
            z = 0.0
            for c in range(classes):
                z += np.exp(A[b + c * pixels] - m)
            w = weights[y] * scale
            total += w * (m + np.log(z) - A[b + y * pixels])
            if d >= 0:
                g, r = d + b - x, w / z
                for c in range(classes):
                    A[g + c * pixels] = np.exp(A[b + c * pixels] - m) * r
                A[g + y * pixels] -= w
    return total, correct, counted
