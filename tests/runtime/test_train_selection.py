"""Validation-driven training end to end: best.safetensors, early stopping, the plateau schedule,
label smoothing, augmented runs resumed bit for bit, and run-folder files written safely."""

import json
import os
import signal

import numpy as np
import pytest

from cnnc.runtime import checkpoint, run_files
from cnnc.runtime.dataset import limit
from cnnc.runtime.network import Network
from cnnc.runtime.sources import load_data
from cnnc.runtime.train import TrainConfig, Trainer

TINY = """network tiny
input 1x28x28
CONV 8@5x5 s2 -> BN -> RELU -> POOL max 2x2 -> DROPOUT 0.2 -> FC 10 -> SOFTMAX
"""
AUGMENTED = dict(augment_crop=2, augment_flip=True, augment_rotate=8.0, augment_cutout=6)


@pytest.fixture(scope="module")
def sample():
    return limit(load_data(None), 1200)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "tiny.cnn"
    path.write_text(TINY)
    return str(path)


def config(**changes) -> TrainConfig:
    values = dict(epochs=2, batch=50, lr=0.05, momentum=0.9, schedule="cosine", seed=3)
    return TrainConfig(**{**values, **changes})


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_best_checkpoint_holds_the_epoch_with_the_best_monitored_metric(tmp_path, spec, sample):
    run = tmp_path / "run"
    # a constant lr far too high makes the validation loss wander, so the best is not the last
    settings = config(epochs=4, lr=0.5, schedule="constant", validation=0.2, monitor="val_loss")
    result = Trainer(spec, settings, sample, run, quiet=True).run()
    losses = [r["val_loss"] for r in records(run)]
    best_epoch = int(np.argmin(losses)) + 1
    assert result["best_epoch"] == best_epoch
    meta = checkpoint.load(run / run_files.BEST)[1]
    assert meta["progress"]["epoch"] == best_epoch
    assert meta["progress"]["watch"]["best"] == pytest.approx(min(losses))
    if best_epoch != 4:
        assert "best_test_acc" in result


def test_early_stop_ends_the_run_and_a_resume_does_not_restart_it(tmp_path, spec, sample):
    run = tmp_path / "run"
    # val_acc of a run whose lr is 0 never improves after epoch 1
    settings = config(epochs=6, lr=1e-12, validation=0.2, monitor="val_acc", early_stop=2)
    trainer = Trainer(spec, settings, sample, run, quiet=True)
    trainer.run()
    assert len(records(run)) == 3  # epoch 1 is the best, 2 and 3 are not: stop
    again = Trainer(spec, settings, sample, run, quiet=True)
    again.resume(run)
    assert again.run()["epochs"] == []
    assert len(records(run)) == 3


def test_plateau_schedule_drops_the_lr(tmp_path, spec, sample):
    run = tmp_path / "run"
    settings = config(
        epochs=4,
        lr=1e-12,
        schedule="plateau",
        patience=1,
        gamma=0.5,
        validation=0.2,
        monitor="val_acc",
    )
    Trainer(spec, settings, sample, run, quiet=True).run()
    # val_acc does not move with lr ~0: every epoch after the first drops the lr once
    lrs = [r["lr"] / 1e-12 for r in records(run)]
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.25])


def test_label_smoothing_changes_the_loss_but_not_the_run_otherwise(tmp_path, spec, sample):
    plain = Trainer(spec, config(epochs=1), sample, tmp_path / "a", quiet=True).run()
    smooth = Trainer(
        spec, config(epochs=1, label_smoothing=0.2), sample, tmp_path / "b", quiet=True
    ).run()
    assert smooth["epochs"][0]["train_loss"] > plain["epochs"][0]["train_loss"]


def test_an_augmented_run_interrupted_and_resumed_ends_bit_identical(
    tmp_path, spec, sample, monkeypatch
):
    settings = config(validation=0.2, schedule="plateau", patience=1, **AUGMENTED)
    straight = Trainer(spec, settings, sample, tmp_path / "straight", quiet=True)
    straight.run()
    expected = straight.network.state_dict()
    unaugmented = Trainer(spec, config(validation=0.2), sample, tmp_path / "plain", quiet=True)
    unaugmented.run()
    assert not np.array_equal(
        unaugmented.network.state_dict()["fc1.weight"], expected["fc1.weight"]
    )

    calls = {"n": 0}
    original = Network.loss_and_grad

    def interrupting(self, x, y):
        calls["n"] += 1
        if calls["n"] == 25:  # in the second epoch
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)

    monkeypatch.setattr(Network, "loss_and_grad", interrupting)
    first = Trainer(spec, settings, sample, tmp_path / "resumed", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.setattr(Network, "loss_and_grad", original)
    assert first.progress.epoch == 1 and first.progress.batch_index > 0

    second = Trainer(spec, settings, sample, tmp_path / "resumed", quiet=True)
    second.resume(tmp_path / "resumed")
    second.run()
    for name, value in second.network.state_dict().items():
        assert np.array_equal(value, expected[name]), name

    def learned(run):
        timing = ("seconds", "images_per_s")
        return [{k: v for k, v in r.items() if k not in timing} for r in records(run)]

    assert learned(tmp_path / "resumed") == learned(tmp_path / "straight")


def test_a_metrics_line_lost_to_a_kill_is_written_again_from_the_checkpoint(tmp_path, spec, sample):
    run = tmp_path / "run"
    Trainer(spec, config(epochs=1), sample, run, quiet=True).run()
    (run / "metrics.jsonl").write_text("")  # killed after the rename, before the metrics write
    trainer = Trainer(spec, config(epochs=2), sample, run, quiet=True)
    trainer.resume(run)
    trainer.run()
    assert [r["epoch"] for r in records(run)] == [1, 2]


def test_run_files_are_not_written_through_symlinks(tmp_path, spec, sample):
    run = tmp_path / "run"
    Trainer(spec, config(epochs=1), sample, run, quiet=True).run()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("spec.cnn", "metrics.jsonl"):
        (run / name).unlink()
        (run / name).symlink_to(victim)
        trainer = Trainer(spec, config(epochs=2), sample, run, quiet=True)
        trainer.resume(run)
        with pytest.raises(Exception, match="not a regular file"):
            trainer.run()
        assert victim.read_text() == "precious"
        (run / name).unlink()
