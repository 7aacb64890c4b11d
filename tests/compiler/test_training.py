"""Tests for cnnc.compiler.training: the `train { }` section's settings and, above all, its
errors, each located at the setting (or the `key=value`) at fault, with its message and fix."""

from __future__ import annotations

import pytest

from cnnc.cli import main
from cnnc.compiler.check import check
from cnnc.compiler.errors import Loc, SpecError
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import Num, Setting, parse
from cnnc.compiler.training import DEFAULTS, TrainConfig, train_config

HEAD = "network t\ninput 1x8x8\nFC 3 -> SOFTMAX\ntrain {\n"  # the settings start on line 5


def source(*settings: str) -> str:
    return HEAD + "".join(f"  {s}\n" for s in settings) + "}\n"


def settings(*lines: str) -> dict:
    """The training settings of a spec whose `train` section holds `lines`; checks it too."""
    graph = expand(parse(source(*lines), "t.cnn"))
    check(graph, verify_expects=False)
    return train_config(graph.train, "t.cnn")


def errors(*lines: str) -> list:
    with pytest.raises(SpecError) as caught:
        check(expand(parse(source(*lines), "t.cnn")), verify_expects=False)
    return caught.value.diagnostics


def error(*lines: str):
    (diagnostic,) = errors(*lines)
    return diagnostic


def at(diagnostic) -> tuple[int, int, int]:
    """(line, first column, end column) of a diagnostic on one line."""
    assert diagnostic.loc.line == diagnostic.loc.end_line
    return diagnostic.loc.line, diagnostic.loc.col, diagnostic.loc.end_col


# ---- what is accepted --------------------------------------------------------------------------


def test_the_documented_section_sets_every_value_it_names():
    config = settings(
        "optimizer sgd lr=0.05 momentum=0.9 nesterov weight_decay=5e-4",
        "schedule step step=5 gamma=0.5",
        "epochs 3",
        "batch 32",
        "seed 0",
        "validation 0.1",
    )
    expected = dict(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="step",
        step=5,
        gamma=0.5,
        epochs=3,
        batch=32,
        seed=0,
        validation=0.1,
    )
    assert config == {**DEFAULTS, **expected}
    assert TrainConfig(**config).nesterov is True


def test_the_dense_loss_settings_take_an_ignore_label_and_one_weight_per_class():
    config = settings("ignore_index 0", "class_weights 1 4.5")
    assert config["ignore_index"] == 0 and config["class_weights"] == (1.0, 4.5)
    assert DEFAULTS["ignore_index"] == 255 and DEFAULTS["class_weights"] == ()
    assert "one number per class" in error("class_weights").message


def test_no_section_and_an_empty_one_give_the_defaults():
    graph = expand(parse("input 1x8x8\nFC 3\n", "t.cnn"))
    assert train_config(graph.train) == DEFAULTS
    assert settings() == DEFAULTS


def test_the_default_lr_follows_the_optimizer_unless_one_is_given():
    assert TrainConfig().lr == 0.05 and TrainConfig(optimizer="adam").lr == 1e-3
    assert TrainConfig.merged(settings("optimizer adamw"), {}).lr == 1e-3
    assert TrainConfig.merged(settings("optimizer adam lr=0.01"), {}).lr == 0.01
    assert TrainConfig.merged(settings(), {"optimizer": "adam"}).lr == 1e-3
    assert TrainConfig.merged(settings("optimizer sgd nesterov=0"), {}).nesterov is False


def test_the_command_line_overrides_the_spec_and_none_means_not_given():
    merged = TrainConfig.merged(settings("epochs 3", "lr 0.5"), {"epochs": 7, "lr": None})
    assert (merged.epochs, merged.lr) == (7, 0.5)


# ---- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "word", "hint"),
    [
        ("optimzer sgd", "optimizer", "did you mean `optimizer`?"),
        ("epoch 5", "epoch", "did you mean `epochs`?"),
        ("learning_rate 0.1", "learning_rate", None),
    ],
)
def test_an_unknown_setting_is_located_and_offers_the_nearest_key(line, word, hint):
    diagnostic = error(line)
    key = line.split()[0]
    assert diagnostic.message == f"train: unknown setting `{key}`"
    assert at(diagnostic) == (5, 3, 3 + len(line))
    if hint:
        assert diagnostic.fix == hint
    else:  # nothing close: the fix lists every setting there is
        assert diagnostic.fix.startswith("settings: optimizer, lr, momentum")
        assert "nesterov" not in diagnostic.fix


def test_a_flag_is_not_a_setting_of_its_own():
    diagnostic = error("nesterov")
    assert diagnostic.message == "train: unknown setting `nesterov`"
    assert at(diagnostic) == (5, 3, 11)


def test_an_option_a_setting_does_not_take_is_located_at_the_option():
    diagnostic = error("optimizer sgd gamma=0.1")
    assert diagnostic.message == "train: `optimizer` takes no `gamma`"
    assert at(diagnostic) == (5, 17, 26)
    assert diagnostic.fix == "it takes: lr, momentum, nesterov, weight_decay, beta1, beta2, eps"
    diagnostic = error("optimizer sgd foo")
    assert diagnostic.message == "train: `optimizer` takes no `foo`"
    assert at(diagnostic) == (5, 17, 20)


def test_a_plain_setting_takes_no_options():
    diagnostic = error("epochs 5 lr=0.1")
    assert diagnostic.message == "train: `epochs` takes one number, e.g. `epochs 10`"
    assert at(diagnostic) == (5, 3, 18)


# ---- names of optimizers, schedules and losses ------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("optimizer rmsprop", "train: `optimizer` is one of sgd, adam, adamw"),
        ("optimizer 3", "train: `optimizer` is one of sgd, adam, adamw"),
        ("optimizer", "train: `optimizer` is one of sgd, adam, adamw"),
        ("schedule linear", "train: `schedule` is one of constant, step, cosine, plateau"),
        ("loss mse", "train: `loss` is one of cross_entropy"),
    ],
)
def test_an_unknown_name_lists_the_known_ones(line, message):
    diagnostic = error(line)
    assert diagnostic.message == message
    assert at(diagnostic) == (5, 3, 3 + len(line))


# ---- wrong types -------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["lr sgd", "lr 0.1 0.2", "lr"])
def test_a_number_setting_takes_exactly_one_number(line):
    diagnostic = error(line)
    assert diagnostic.message == "train: `lr` takes one number, e.g. `lr 0.05`"
    assert at(diagnostic) == (5, 3, 3 + len(line))


@pytest.mark.parametrize("option", ["lr=abc", "lr=1-2", "lr=3x3"])
def test_an_option_needs_a_plain_number(option):
    diagnostic = error(f"optimizer sgd {option}")
    assert diagnostic.message == "train: `lr` needs a value, e.g. `lr=0.05`"
    assert at(diagnostic) == (5, 17, 17 + len(option))


def test_an_option_without_its_value_is_located_at_the_option():
    diagnostic = error("schedule step gamma")
    assert diagnostic.message == "train: `gamma` needs a value, e.g. `gamma=0.1`"
    assert at(diagnostic) == (5, 17, 22)


@pytest.mark.parametrize(
    ("line", "shown"),
    [("epochs 2.5", "2.5"), ("epochs 1e3", "1000.0"), ("batch 0", "0"), ("epochs 0", "0")],
)
def test_counts_must_be_positive_whole_numbers(line, shown):
    diagnostic = error(line)
    key = line.split()[0]
    assert diagnostic.message == f"train: `{key}` must be a positive whole number, not {shown}"
    assert at(diagnostic) == (5, 3, 3 + len(line))


def test_a_seed_may_be_zero_but_not_a_fraction():
    assert settings("seed 0")["seed"] == 0
    diagnostic = error("seed 1.5")
    assert diagnostic.message.startswith("train: `seed` must be a")
    assert "not 1.5" in diagnostic.message


@pytest.mark.parametrize("option", ["step=0", "step=2.5"])
def test_the_step_option_is_checked_like_the_setting(option):
    diagnostic = error(f"schedule step {option}")
    shown = option.partition("=")[2]
    assert diagnostic.message == f"train: `step` must be a positive whole number, not {shown}"
    assert at(diagnostic) == (5, 17, 17 + len(option))


def test_unit_suffixes_are_numbers_too():
    assert settings("epochs 1k")["epochs"] == 1000


# ---- out of range ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "1.5"])
def test_validation_is_a_fraction_below_one(value):
    diagnostic = error(f"validation {value}")
    assert diagnostic.message == f"train: `validation` is a fraction in [0, 1), not {value}"
    assert at(diagnostic) == (5, 3, 14 + len(value))


@pytest.mark.parametrize("line", ["lr -0.1", "momentum -0.9", "epochs -1", "validation -0.1"])
def test_a_negative_number_is_a_syntax_error_at_the_minus(line):
    diagnostic = error(line)
    minus = line.index("-")
    assert diagnostic.message.startswith("unexpected `-`")
    assert at(diagnostic) == (5, 3 + minus, 4 + minus)


def test_a_negative_option_value_is_refused_at_the_option():
    diagnostic = error("optimizer sgd lr=-1")
    assert diagnostic.message == "train: `lr` needs a value, e.g. `lr=0.05`"
    assert at(diagnostic) == (5, 17, 22)


def test_a_negative_value_that_reaches_the_pass_is_refused():
    """The grammar has no negative literals; the pass still refuses one built by hand."""
    here = Loc(5, 3, 5, 10)
    with pytest.raises(SpecError) as caught:
        train_config((Setting("lr", (Num(-0.1, here),), here),), "t.cnn")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.message == "train: `lr` must not be negative"
    assert (diagnostic.loc, diagnostic.path) == (here, "t.cnn")


@pytest.mark.parametrize("line", ["beta1 1.5", "beta2 1", "optimizer adam beta1=1"])
def test_adam_betas_must_be_below_one(line):
    diagnostic = error(line)
    assert "beta" in diagnostic.message and "[0, 1)" in diagnostic.message


# ---- flags and duplicates ----------------------------------------------------------------------


def test_a_flag_given_a_value_is_refused_or_honoured():
    try:
        config = settings("optimizer sgd nesterov=0")
    except SpecError as caught:
        (diagnostic,) = caught.diagnostics
        assert "nesterov" in diagnostic.message
        assert at(diagnostic) == (5, 17, 27)
    else:
        assert config["nesterov"] is False


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        (("epochs 5", "epochs 10"), 6),
        (("optimizer sgd lr=0.1", "lr 0.2"), 6),
        (("optimizer adam lr=0.1 lr=0.2",), 5),
        (("epochs 5", "}", "train {", "epochs 10"), 8),
    ],
)
def test_a_key_given_twice_is_refused_at_the_second(lines, line):
    diagnostic = error(*lines)
    assert diagnostic.loc.line == line
    assert "twice" in diagnostic.message or "already" in diagnostic.message


# ---- every problem in one run, and how `cnnc check` shows them ---------------------------------


def test_every_independent_problem_is_reported_in_order():
    found = errors("optimzer sgd", "epoch 3", "lr abc", "schedule step step=0")
    assert [(d.loc.line, d.loc.col) for d in found] == [(5, 3), (6, 3), (7, 3), (8, 17)]
    assert [d.message for d in found] == [
        "train: unknown setting `optimzer`",
        "train: unknown setting `epoch`",
        "train: `lr` takes one number, e.g. `lr 0.05`",
        "train: `step` must be a positive whole number, not 0",
    ]


def test_train_errors_come_with_the_shape_errors_of_the_same_spec():
    text = "input 1x4x4\nCONV 2@5x5\ntrain {\n  epoch 3\n}\n"
    with pytest.raises(SpecError) as caught:
        check(expand(parse(text, "t.cnn")), verify_expects=False)
    lines = [d.loc.line for d in caught.value.diagnostics]
    assert lines == [2, 4]


def test_cnnc_check_prints_the_located_error_with_a_caret_and_the_fix(tmp_path, capsys):
    path = tmp_path / "t.cnn"
    path.write_text(source("epochs 3", "optimzer sgd"))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out  # `check` reports every file on stdout, errors included
    assert f"{path}:6:3: error: train: unknown setting `optimzer`" in out
    assert "\n    optimzer sgd\n    ^^^^^^^^^^^^\n" in out
    assert "fix: did you mean `optimizer`?" in out


def test_augment_label_smoothing_monitor_early_stop_and_plateau_are_settings():
    got = settings(
        "augment crop=2 flip rotate=10 cutout=8 brightness=0.2",
        "label_smoothing 0.1",
        "monitor val_acc",
        "early_stop 4",
        "schedule plateau gamma=0.5 patience=3",
    )
    assert (got["augment_crop"], got["augment_flip"], got["augment_cutout"]) == (2, True, 8)
    assert (got["augment_rotate"], got["augment_brightness"]) == (10.0, 0.2)
    assert got["augment_scale"] == 0.0 and got["label_smoothing"] == 0.1
    assert (got["monitor"], got["early_stop"]) == ("val_acc", 4)
    assert (got["schedule"], got["gamma"], got["patience"]) == ("plateau", 0.5, 3)
    TrainConfig(**got)  # every key is a field


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("augment flop", "`augment` takes no `flop`"),
        ("augment crop", "`crop` needs a value"),
        ("augment flip=3", "`flip` is a flag"),
        ("augment crop=1.5", "positive whole number"),
        ("augment contrast=1.5", "fraction in [0, 1)"),
        ("augment", "needs at least one of"),
        ("label_smoothing 1", "fraction in [0, 1)"),
        ("monitor accuracy", "`monitor` is one of"),
        ("augment_crop 2", "unknown setting `augment_crop`"),
    ],
)
def test_bad_augment_and_monitor_settings_are_located(line, message):
    diagnostic = error(line)
    assert message in diagnostic.message, diagnostic.message
    assert diagnostic.loc.line == 5
