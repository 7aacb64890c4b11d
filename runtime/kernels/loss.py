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
