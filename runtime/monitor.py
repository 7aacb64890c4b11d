"""monitor: an epoch's record -> is it the best so far, should the lr drop, should training stop.

One metric (TrainConfig.monitor, default val_loss as in Keras) drives three decisions, each
checked after an epoch's validation: the best checkpoint (`best.safetensors`, rewritten whenever
the metric improves), reduce-on-plateau (lr *= gamma after `patience` epochs without
improvement, then the count starts again, as torch's ReduceLROnPlateau with cooldown 0), and
early stopping (after `early_stop` epochs without improvement). A run without a validation split
has no val_* metric: the train_* one of the same name stands in, and the trainer says so.

The state lives in Progress, so it is checkpointed and a resumed run decides as one that never
stopped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Watch:
    """What the monitor has seen: part of the checkpointed Progress."""

    best: float | None = None
    best_epoch: int = 0
    since_best: int = 0  # epochs since the best one (early stopping counts these)
    plateau_wait: int = 0  # epochs without improvement since the last lr drop
    lr_scale: float = 1.0  # the product of the plateau drops so far
    stopped: bool = False  # early stopping ended the run


def metric_name(monitor: str, has_validation: bool) -> str:
    if monitor.startswith("val_") and not has_validation:
        return "train_" + monitor.removeprefix("val_")
    return monitor


def better(name: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value > best if name.endswith("_acc") else value < best


def observe(watch: Watch, name: str, record: dict, config) -> bool:
    """Update `watch` with one epoch's record; True when this epoch is the best so far."""
    value = float(record[name])
    if better(name, value, watch.best):
        watch.best, watch.best_epoch = value, int(record["epoch"])
        watch.since_best = watch.plateau_wait = 0
        return True
    watch.since_best += 1
    watch.plateau_wait += 1
    if config.schedule == "plateau" and watch.plateau_wait >= config.patience:
        watch.lr_scale *= config.gamma
        watch.plateau_wait = 0
    if config.early_stop and watch.since_best >= config.early_stop:
        watch.stopped = True
    return False
