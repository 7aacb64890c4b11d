"""The `train { ... }` section: training defaults a spec carries, checked like the rest of it.

train {
  optimizer sgd lr=0.05 momentum=0.9 nesterov weight_decay=5e-4
  schedule cosine            # constant | step step=5 gamma=0.1 | cosine
  epochs 10
  batch 64
  augment crop=2 flip cutout=8   # crop flip rotate scale translate brightness contrast
                                 # saturation cutout (runtime/augment.py says what each does)
  label_smoothing 0.1
  monitor val_acc            # val_loss | val_acc | train_loss | train_acc: picks best.safetensors
  early_stop 5               # stop after 5 epochs without improvement of `monitor` (0: never)
  schedule plateau gamma=0.5 patience=2   # lr *= gamma after 2 epochs without improvement
}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import Problems, did_you_mean
from .syntax import KwArg, Num, Ref, Setting


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting with its default; a spec's `train` section and the command line
    override them in that order.

    The defaults are the recipe the bundled specs' train sections use, SGD with Nesterov
    momentum 0.9, lr 0.05, weight decay 5e-4 and a per-step cosine decay to 0 (the usual CIFAR
    ResNet recipe): on the bundled sample it beat the old constant lr 0.01 on lenet5_classic
    (validation 0.858 vs 0.830) and cifar_net (test 0.882 vs 0.866) in the default 10 epochs.
    Adam and AdamW default to lr 1e-3, their papers' and PyTorch's default, unless one is given.
    """

    optimizer: str = "sgd"
    lr: float | None = None  # None: 0.05 for sgd, 1e-3 for adam and adamw
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    schedule: str = "cosine"
    step: int = 10
    gamma: float = 0.1
    epochs: int = 10
    batch: int = 64
    seed: int = 0
    validation: float = 0.0
    loss: str = "cross_entropy"
    ignore_index: int = 255  # a map output's pixels with this label count in no loss or metric
    class_weights: tuple[float, ...] = ()  # a map output's per-class loss weights; () = all 1
    label_smoothing: float = 0.0
    monitor: str = "val_loss"
    early_stop: int = 0
    patience: int = 2
    augment_crop: int = 0
    augment_flip: bool = False
    augment_rotate: float = 0.0
    augment_scale: float = 0.0
    augment_translate: float = 0.0
    augment_brightness: float = 0.0
    augment_contrast: float = 0.0
    augment_saturation: float = 0.0
    augment_cutout: int = 0

    def __post_init__(self):
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR.get(self.optimizer, DEFAULT_LR["sgd"]))

    @staticmethod
    def merged(spec_settings: dict, overrides: dict) -> TrainConfig:
        chosen = {k: v for k, v in overrides.items() if v is not None}
        return TrainConfig(**{**spec_settings, **chosen})


DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3, "adamw": 1e-3}
DEFAULTS = {**asdict(TrainConfig()), "lr": None}
EXAMPLES = {**DEFAULTS, "lr": DEFAULT_LR["sgd"]}  # a value to show in "e.g." of a message
CHOICES = {
    "optimizer": ("sgd", "adam", "adamw"),
    "schedule": ("constant", "step", "cosine", "plateau"),
    "loss": ("cross_entropy",),
    "monitor": ("val_loss", "val_acc", "train_loss", "train_acc"),
}
AUGMENTS = tuple(k[len("augment_") :] for k in DEFAULTS if k.startswith("augment_"))
FLAGS = {"nesterov"} | {f"augment_{name}" for name in AUGMENTS if name == "flip"}
WHOLE = {"epochs", "batch", "seed", "step", "early_stop", "patience", "augment_crop"}
WHOLE |= {"augment_cutout", "ignore_index"}
FRACTIONS = {"label_smoothing", "augment_scale", "augment_brightness", "augment_contrast"}
FRACTIONS |= {"augment_saturation"}
LISTS = {"class_weights"}  # one number per class: `class_weights 1 4`
# which keys may follow each setting as key=value
OPTIONS = {
    "optimizer": ("lr", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps"),
    "schedule": ("step", "gamma", "patience"),
}


def _number(key: str, value, problems: Problems, loc):
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(f"train: `{key}` needs a number", loc)
        return None
    least = 0 if key in ("seed", "early_stop", "ignore_index") or key.startswith("augment_") else 1
    if key in WHOLE and (not isinstance(value, int) or value < least):
        problems.add(f"train: `{key}` must be a positive whole number, not {value}", loc)
        return None
    if key == "validation" and not 0 <= value < 1:
        problems.add(f"train: `validation` is a fraction in [0, 1), not {value}", loc)
        return None
    if key not in WHOLE and value < 0:
        problems.add(f"train: `{key}` must not be negative", loc)
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.add(f"train: `{key}` must be a finite number", loc)
        return None
    if key in FRACTIONS and not 0 <= value < 1:
        problems.add(f"train: `{key.removeprefix('augment_')}` is a fraction in [0, 1)", loc)
        return None
    if key in ("beta1", "beta2", "momentum") and not 0 <= value < 1:
        problems.add(f"train: `{key}` is a decay rate in [0, 1), not {value}", loc)
        return None
    return value


def _head_value(values) -> bool:
    """`loss p3`, `loss cross_entropy p3`: a last name that is not a loss names the head."""
    last = values[-1]
    return isinstance(last, Ref) and last.name not in CHOICES["loss"] and len(values) <= 2


def loss_head(settings: tuple[Setting, ...]) -> tuple[str, object, object] | None:
    """The output the loss reads, as the train section names it (`loss head`): the name, its
    place and the setting's place."""
    for setting in settings:
        if setting.key == "loss" and setting.values and _head_value(list(setting.values)):
            last = setting.values[-1]
            return last.name, last.loc, setting.loc
    return None


def train_config(settings: tuple[Setting, ...], path: str = "<spec>") -> dict:
    """The spec's training defaults over DEFAULTS; raises SpecError on unknown keys or values."""
    problems = Problems(path)
    config = dict(DEFAULTS)
    given: dict[str, object] = {}

    def first_time(name: str, loc) -> bool:
        if name in given:
            problems.add(
                f"train: `{name}` is given twice (already on line {given[name].line})",
                loc,
                fix="keep one of them",
            )
            return False
        given[name] = loc
        return True

    for setting in settings:
        key = setting.key
        if key == "augment":
            _augment(setting, config, problems, first_time)
            continue
        if key in DEFAULTS and key not in FLAGS and not first_time(key, setting.loc):
            continue
        if key not in DEFAULTS or key in FLAGS or key.startswith("augment_"):
            hint = did_you_mean(key, SETTINGS)
            problems.add(
                f"train: unknown setting `{key}`",
                setting.loc,
                fix=hint or "settings: " + ", ".join(SETTINGS),
            )
            continue
        values = list(setting.values)
        if key == "loss" and values and _head_value(values):
            values.pop()  # the head it reads: checked against the outputs by check.py
            if not values:
                continue
        if key in CHOICES:
            if not values or not isinstance(values[0], Ref) or values[0].name not in CHOICES[key]:
                problems.add(f"train: `{key}` is one of {', '.join(CHOICES[key])}", setting.loc)
                continue
            config[key] = values.pop(0).name
        elif key in LISTS:
            if not values or not all(isinstance(v, Num) for v in values):
                problems.add(
                    f"train: `{key}` takes one number per class, e.g. `{key} 1 4`", setting.loc
                )
                continue
            numbers = [_number(key, v.value, problems, setting.loc) for v in values]
            config[key] = tuple(float(v) for v in numbers if v is not None)
            values = []
        elif len(values) != 1 or not isinstance(values[0], Num):
            problems.add(
                f"train: `{key}` takes one number, e.g. `{key} {EXAMPLES[key]}`", setting.loc
            )
            continue
        else:
            value = _number(key, values.pop(0).value, problems, setting.loc)
            if value is not None:
                config[key] = value
        for extra in values:
            allowed = OPTIONS.get(key, ())
            name = extra.key if isinstance(extra, KwArg) else getattr(extra, "name", None)
            if name not in allowed:
                problems.add(
                    f"train: `{key}` takes no `{name or extra}`",
                    extra.loc,
                    fix=f"it takes: {', '.join(allowed)}" if allowed else None,
                )
            elif not first_time(name, extra.loc):
                continue
            elif name in FLAGS and isinstance(extra, KwArg):
                value = extra.value.value if isinstance(extra.value, Num) else None
                if value in (0, 1) and not isinstance(value, bool):
                    config[name] = bool(value)  # `nesterov=0` means off, not on
                else:
                    problems.add(
                        f"train: `{name}` is a flag: write `{name}` or `{name}=0`", extra.loc
                    )
            elif name in FLAGS:
                config[name] = True
            elif isinstance(extra, KwArg) and isinstance(extra.value, Num):
                value = _number(name, extra.value.value, problems, extra.loc)
                if value is not None:
                    config[name] = value
            else:
                problems.add(
                    f"train: `{name}` needs a value, e.g. `{name}={EXAMPLES[name]}`", extra.loc
                )
    problems.raise_if_any()
    return config


SETTINGS = [k for k in DEFAULTS if k not in FLAGS and not k.startswith("augment_")] + ["augment"]


def _augment(setting: Setting, config: dict, problems: Problems, first_time) -> None:
    """`augment crop=2 flip cutout=8`: each name a flag or name=number."""
    if not setting.values:
        problems.add("train: `augment` needs at least one of " + ", ".join(AUGMENTS), setting.loc)
    for value in setting.values:
        name = value.key if isinstance(value, KwArg) else getattr(value, "name", None)
        if name not in AUGMENTS:
            hint = did_you_mean(str(name), list(AUGMENTS))
            problems.add(
                f"train: `augment` takes no `{name or value}`",
                value.loc,
                fix=hint or "it takes: " + ", ".join(AUGMENTS),
            )
            continue
        key = f"augment_{name}"
        if not first_time(key, value.loc):
            continue
        number = (
            value.value.value if isinstance(value, KwArg) and isinstance(value.value, Num) else None
        )
        if key in FLAGS:
            if isinstance(value, Ref) or (number in (0, 1) and not isinstance(number, bool)):
                config[key] = True if isinstance(value, Ref) else bool(number)
            else:
                problems.add(f"train: `{name}` is a flag: write `{name}` or `{name}=0`", value.loc)
        elif number is None:
            problems.add(f"train: augmentation `{name}` needs a value, e.g. `{name}=2`", value.loc)
        else:
            checked = _number(key, number, problems, value.loc)
            if checked is not None:
                config[key] = float(checked) if key not in WHOLE else checked
