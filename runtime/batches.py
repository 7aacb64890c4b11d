"""Normalisation, the validation split, shuffling and batches, all numpy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .dataset import DataError, Dataset

__all__ = [
    "batch_count",
    "compute_normalization",
    "epoch_order",
    "iter_batches",
    "normalize",
    "split_validation",
    "to_unit",
]


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
    """Hold out ``fraction`` of the training part, stratified by class (masks: at random) and
    fixed by ``seed``.

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
    if data.dense:  # masks have no one class to stratify by: a plain random split
        val = np.sort(rng.permutation(n)[:n_val])
        keep = np.setdiff1d(np.arange(n), val)
        rest = Dataset(
            data.x[keep], data.y[keep], data.classes, data.name, data.x_test, data.y_test
        )
        return rest, data.take(val, name=f"{data.name} (validation)")
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
    augment=None,
    start: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches ``(x, y)`` of the training part: x float32 (B, C, H, W) C-contiguous, normalised
    with ``norm`` (or just scaled to [0, 1]); y int64 (B,). Every sample exactly once; the last
    batch may be smaller. With ``rng`` the order is ``rng.permutation(len(data))``, drawn when
    this function is called (not lazily), so saving ``rng.bit_generator.state`` after the call
    and restoring it reproduces the next epoch's order. ``augment(x, batch_index)``, when given,
    transforms each batch's [0, 1] pixels before normalisation (see ``augment``); ``start``
    skips the batches before that index (a resumed epoch) without building them."""
    if int(batch_size) < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    order = epoch_order(len(data), rng)
    return _batches(data, order, int(batch_size), norm, augment, int(start))


def _batches(
    data: Dataset, order: np.ndarray, batch_size: int, norm: Mapping | None, augment, start: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(start * batch_size, len(order), batch_size):
        idx = order[i : i + batch_size]
        x = data.x[idx]
        if augment is not None:
            x = augment(to_unit(x), i // batch_size)
        yield normalize(x, norm), data.y[idx].copy()
