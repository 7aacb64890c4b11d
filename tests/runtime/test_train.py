"""Training end to end on slices of the bundled data: learning, exact resume, NaN handling."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from cnnc.cli import main
from cnnc.runtime import checkpoint
from cnnc.runtime.dataset import limit
from cnnc.runtime.network import Network
from cnnc.runtime.sources import load_data
from cnnc.runtime.train import TrainConfig, Trainer, TrainingError, learning_rate

TINY = """network tiny
input 1x28x28
CONV 8@5x5 s2 -> BN -> RELU -> POOL max 2x2 -> DROPOUT 0.2 -> FC 10 -> SOFTMAX
"""


@pytest.fixture(scope="module")
def sample():
    return limit(load_data(None), 1200)


def write_spec(folder: Path, text: str = TINY) -> str:
    path = folder / "tiny.cnn"
    path.write_text(text)
    return str(path)


def config(**changes) -> TrainConfig:
    values = dict(epochs=2, batch=50, lr=0.05, momentum=0.9, schedule="cosine", seed=3)
    return TrainConfig(**{**values, **changes})


def test_loss_falls_and_accuracy_beats_chance(tmp_path, sample):
    trainer = Trainer(write_spec(tmp_path), config(), sample, tmp_path / "run", quiet=True)
    result = trainer.run()
    losses = [epoch["train_loss"] for epoch in result["epochs"]]
    assert losses[1] < losses[0] < 2.3
    assert result["test_acc"] > 0.55  # chance is 0.10
    assert (tmp_path / "run" / checkpoint.FILENAME).exists()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path, sample, monkeypatch):
    spec = write_spec(tmp_path)
    straight = Trainer(spec, config(), sample, tmp_path / "straight", quiet=True)
    straight.run()
    expected = straight.network.state_dict()

    calls = {"n": 0}
    original = Network.loss_and_grad

    def interrupting(self, x, y):
        calls["n"] += 1
        if calls["n"] == 30:  # mid-way through the second epoch
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)

    monkeypatch.setattr(Network, "loss_and_grad", interrupting)
    first = Trainer(spec, config(), sample, tmp_path / "resumed", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.setattr(Network, "loss_and_grad", original)
    assert first.progress.epoch == 1 and 0 < first.progress.batch_index < 24

    second = Trainer(spec, config(), sample, tmp_path / "resumed", quiet=True)
    second.resume(tmp_path / "resumed")
    second.run()
    for name, value in second.network.state_dict().items():
        assert np.array_equal(value, expected[name]), name


def test_nan_stops_training_names_the_step_and_keeps_the_checkpoint(tmp_path, sample):
    spec = write_spec(tmp_path, TINY.replace("-> BN ", ""))
    run = tmp_path / "run"
    good = Trainer(spec, config(epochs=1), sample, run, quiet=True)
    good.run()
    saved = (run / checkpoint.FILENAME).read_bytes()

    diverging = Trainer(
        spec, config(epochs=3, lr=1e12, schedule="constant"), sample, run, quiet=True
    )
    diverging.resume(run)
    with pytest.raises(TrainingError) as error:
        diverging.run()
    message = str(error.value)
    assert f"NaN or infinite at step {diverging.network.steps_run} (epoch " in message
    assert "layer `" in message or "gradient of `" in message
    assert f"the last good checkpoint {run / checkpoint.FILENAME} is intact" in message
    assert (run / checkpoint.FILENAME).read_bytes() == saved


def test_resume_refuses_another_spec(tmp_path, sample):
    spec = write_spec(tmp_path)
    Trainer(spec, config(epochs=1), sample, tmp_path / "run", quiet=True).run()
    other = tmp_path / "other.cnn"
    other.write_text(TINY.replace("8@5x5", "4@5x5"))
    trainer = Trainer(str(other), config(), sample, tmp_path / "run2", quiet=True)
    with pytest.raises(checkpoint.CheckpointError, match="different spec"):
        trainer.resume(tmp_path / "run")


def test_loading_weights_into_another_spec_names_the_first_mismatch(tmp_path, sample, capsys):
    spec = write_spec(tmp_path)
    Trainer(spec, config(epochs=1), sample, tmp_path / "run", quiet=True).run()
    other = tmp_path / "other.cnn"
    other.write_text(TINY.replace("8@5x5", "4@5x5"))
    code = main(["eval", str(other), "--weights", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "tensor `conv1.weight` has shape (8, 1, 5, 5) in the weights but (4, 1, 5, 5)" in err


def test_schedules():
    c = config(epochs=4, lr=1.0, schedule="step", step=2, gamma=0.5)
    assert [learning_rate(c, e, 0, 10) for e in range(4)] == [1.0, 1.0, 0.5, 0.5]
    c = config(epochs=2, lr=1.0, schedule="cosine")
    assert learning_rate(c, 0, 0, 10) == 1.0
    assert learning_rate(c, 1, 0, 10) == pytest.approx(0.5)
    assert learning_rate(config(schedule="constant", lr=0.3), 5, 3, 10) == 0.3


def test_command_line_train_eval_predict(tmp_path, capsys):
    spec = write_spec(tmp_path)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            spec,
            "--epochs",
            "1",
            "--limit",
            "600",
            "--batch",
            "64",
            "--quiet",
            "--out",
            str(run),
        ]
    )
    assert code == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["eval", spec, "--weights", str(run), "--format", "json"]) == 0
    assert '"confusion"' in capsys.readouterr().out
    pil = pytest.importorskip("PIL.Image")
    image = tmp_path / "shirt.png"
    pil.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(image)
    assert main(["predict", spec, "--weights", str(run), str(image)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(str(image)) and line.count(",") == 2


def test_train_rejects_data_of_the_wrong_shape(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY.replace("1x28x28", "3x32x32"))
    assert main(["train", spec, "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert "3x32x32" in capsys.readouterr().err


def test_todays_layers_train_with_cnnc_train(tmp_path):
    """SE (MUL), SILU, LN and DROPPATH learn: `cnnc train` on the bundled data lowers the loss."""
    import json

    spec = Path(__file__).parents[2] / "specs" / "tiny_efficientnet.cnn"
    run = tmp_path / "run"
    args = ["train", str(spec), "--epochs", "2", "--limit", "640", "--batch", "32"]
    assert main([*args, "--out", str(run), "--quiet"]) == 0
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [epoch["train_loss"] for epoch in epochs]
    assert len(losses) == 2 and losses[1] < losses[0] < 2.4, losses
