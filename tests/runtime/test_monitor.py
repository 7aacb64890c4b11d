"""monitor: best epoch, reduce-on-plateau and early stopping from epoch records."""

from cnnc.compiler.training import TrainConfig
from cnnc.runtime.monitor import Watch, metric_name, observe


def feed(values, name="val_loss", **config):
    watch, best = Watch(), []
    settings = TrainConfig(**config)
    for epoch, value in enumerate(values, start=1):
        if observe(watch, name, {"epoch": epoch, name: value}, settings):
            best.append(epoch)
    return watch, best


def test_best_is_the_lowest_loss_or_the_highest_accuracy():
    assert feed([0.9, 0.5, 0.7, 0.4, 0.6])[1] == [1, 2, 4]
    assert feed([0.5, 0.9, 0.7, 0.95], "val_acc")[1] == [1, 2, 4]


def test_early_stop_after_patience_epochs_without_improvement():
    watch, _ = feed([0.5, 0.4, 0.45, 0.41, 0.42], early_stop=3)
    assert watch.stopped and watch.best_epoch == 2 and watch.since_best == 3
    watch, _ = feed([0.5, 0.4, 0.45, 0.41], early_stop=3)
    assert not watch.stopped
    assert not feed([0.5, 0.6, 0.7, 0.8], early_stop=0)[0].stopped  # 0: never


def test_plateau_multiplies_the_lr_after_patience_then_counts_again():
    watch, _ = feed([1.0, 1.1, 1.2, 1.3, 1.4], schedule="plateau", patience=2, gamma=0.5)
    assert watch.lr_scale == 0.25
    watch, _ = feed([1.0, 1.1, 0.9, 1.0], schedule="plateau", patience=2, gamma=0.5)
    assert watch.lr_scale == 1.0  # the improvement at epoch 3 reset the count
    assert feed([1.0, 1.1, 1.2], schedule="cosine", patience=1)[0].lr_scale == 1.0


def test_without_validation_the_train_metric_stands_in():
    assert metric_name("val_acc", has_validation=False) == "train_acc"
    assert metric_name("val_acc", has_validation=True) == "val_acc"
    assert metric_name("train_loss", has_validation=True) == "train_loss"
