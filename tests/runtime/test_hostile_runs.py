"""Issue 14, the runtime's side: exact gradients through a final SOFTMAX, BN refusing one value
per channel, a run interrupted in an epoch's last batch resuming, pipes refused as data."""

import os
import signal
from pathlib import Path

import numba
import numpy as np
import pytest

from cnnc.compiler.check import check
from cnnc.compiler.expand import expand
from cnnc.compiler.lower import lower
from cnnc.compiler.syntax import parse
from cnnc.runtime.dataset import DataError, limit
from cnnc.runtime.network import InputError, Network
from cnnc.runtime.sources import load_data
from cnnc.runtime.train import TrainConfig, Trainer, TrainingError


def build(text: str, batch: int) -> Network:
    return Network(check(expand(parse(text)), verify_expects=False), batch=batch, training=True)


def test_backward_through_a_final_softmax_is_the_same_every_call():
    net = build("input 4\nFC 3 -> SOFTMAX", 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 1, 1)).astype(np.float32)
    g = rng.standard_normal((2, 3)).astype(np.float32)
    net.forward(x, training=True)
    net.backward(g)
    first = net.G.copy()
    net.backward(g)
    assert np.allclose(net.G, first)
    net.loss_and_grad(x, np.array([0, 2]))
    net.forward(x, training=True)
    net.backward(g)
    assert np.allclose(net.G, first)
    # against the chain rule by hand: d softmax = s * (g - sum(g * s))
    flat = x.reshape(2, 4)
    w = net.P[:12].reshape(3, 4)
    s = np.exp(flat @ w.T + net.P[12:15])
    s /= s.sum(1, keepdims=True)
    dz = s * (g - (g * s).sum(1, keepdims=True))
    assert np.allclose(first[:12].reshape(3, 4), dz.T @ flat, atol=1e-5)


def test_bn_with_one_value_per_channel_is_refused_in_training():
    net = build("input 4\nFC 3 -> BN -> FC 2", 1)
    with pytest.raises(InputError, match="more than one value per channel"):
        net.loss_and_grad(np.ones((1, 4, 1, 1), np.float32), np.array([0]))
    with pytest.raises(InputError, match="batch of at least 2"):
        net.forward(np.ones((1, 4, 1, 1), np.float32), training=True)
    # inference uses the running statistics: one sample is fine
    net.forward(np.ones((1, 4, 1, 1), np.float32), training=False)


TINY = """network tiny
input 1x28x28
CONV 4@5x5 s2 -> BN -> RELU -> POOL max 2x2 -> FC 10 -> SOFTMAX
"""


@pytest.fixture(scope="module")
def sample():
    return limit(load_data(None), 600)


def config(**changes) -> TrainConfig:
    values = dict(epochs=2, batch=50, lr=0.05, momentum=0.9, schedule="cosine", seed=3)
    return TrainConfig(**{**values, **changes})


def test_a_last_batch_of_one_under_bn_is_refused_before_training(tmp_path, sample):
    spec = tmp_path / "tiny.cnn"
    spec.write_text("network t\ninput 1x28x28\nFC 8 -> BN -> RELU -> FC 10\n")
    trainer = None
    with pytest.raises(TrainingError, match="one value per channel"):
        trainer = Trainer(str(spec), config(batch=1), sample, tmp_path / "run", quiet=True)
    assert trainer is None


def test_interrupt_in_the_last_batch_of_an_epoch_resumes(tmp_path, sample, monkeypatch):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    first = Trainer(str(spec), config(), sample, tmp_path / "run", quiet=True)
    from cnnc.runtime.batches import batch_count

    batches = batch_count(first.train_set, 50)
    calls = {"n": 0}
    original = Network.loss_and_grad

    def interrupting(self, x, y):
        calls["n"] += 1
        if calls["n"] == batches:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)

    monkeypatch.setattr(Network, "loss_and_grad", interrupting)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.setattr(Network, "loss_and_grad", original)
    assert first.progress.batch_index == batches
    second = Trainer(str(spec), config(), sample, tmp_path / "run", quiet=True)
    second.resume(tmp_path / "run")
    result = second.run()
    assert len(result["epochs"]) >= 1


def test_a_fifo_as_data_is_refused(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        load_data(str(fifo))
    from cnnc.runtime.images import load_image

    os.mkfifo(tmp_path / "image.png")
    with pytest.raises(DataError, match="not a regular file"):
        load_image(tmp_path / "image.png", (1, 28, 28))


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--momentum", "-5", "momentum is in [0, 1)"),
        ("--momentum", "1", "momentum is in [0, 1)"),
        ("--momentum", "nan", "momentum is in [0, 1)"),
        ("--weight-decay", "-1", "give 0 or more"),
        ("--weight-decay", "inf", "give 0 or more"),
        ("--lr", "1e999", "positive finite number"),
    ],
)
def test_optimizer_options_out_of_range_are_refused_with_the_range(capsys, option, value, expected):
    from cnnc.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "specs/lenet5.cnn", option, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: `{value}`" in err and expected in err and "Traceback" not in err


def test_momentum_of_one_or_more_in_a_train_section_is_located(tmp_path, capsys):
    from cnnc.cli import main

    spec = tmp_path / "m.cnn"
    spec.write_text("input 4\nFC 3\ntrain {\n  optimizer sgd momentum=1.5\n}\n")
    assert main(["train", str(spec), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:4:" in err and "`momentum` is a decay rate in [0, 1), not 1.5" in err


def test_a_plan_larger_than_memory_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    from cnnc.cli import main
    from cnnc.runtime import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)

    spec = tmp_path / "huge.cnn"
    spec.write_text("network huge\ninput 1x28x28\nCONV 1000000@3x3 -> POOL avg global -> FC 10\n")
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnc: error: huge needs ") and "for training at batch 64" in err
    assert (
        "more than the 1.0 GiB of memory available; even batch 1 needs" in err
        and "Traceback" not in err
    )
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_max_memory_bounds_the_plan_and_names_a_batch_that_fits():
    from cnnc.runtime import memory
    from cnnc.runtime.errors import ResourceError

    checked = check(expand(parse("network n\ninput 1x28x28\nCONV 8@3x3 -> FC 10")), False)
    with memory.bounded(2_000_000), pytest.raises(ResourceError) as refused:
        Network(checked, batch=256)
    message = str(refused.value)
    assert message.startswith("n needs ") and "for training at batch 256" in message
    assert "more than --max-memory 1.9 MiB allows; batch " in message
    fits = int(message.rsplit("batch ", 1)[1].split()[0])
    plan, threads = lower(checked, training=True), numba.get_num_threads()  # the figure is exact
    assert plan.memory(fits, threads, 0)["total"] <= 2_000_000
    assert plan.memory(fits + 1, threads, 0)["total"] > 2_000_000
    with memory.bounded(2_000_000):
        memory.check_plan(plan, fits, threads)


@pytest.mark.parametrize("text, size", [("4G", 4 << 30), ("512MiB", 512 << 20), ("1.5k", 1536),
                                        ("1000", 1000), (" 2 GB ", 2 << 30)])  # fmt: skip
def test_max_memory_sizes(text, size):
    from cnnc.runtime.memory import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "x", "-1G", "0", "4P", "1e9"])
def test_bad_max_memory_is_a_usage_error(capsys, text):
    from cnnc.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "specs/lenet5.cnn", "--max-memory", text])
    assert exited.value.code == 2
    assert "argument --max-memory" in capsys.readouterr().err


def test_ctrl_c_while_the_data_loads_exits_130_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    script = (
        "import os, signal, sys, time\n"
        # a terminal's Ctrl-C reaches a process whose SIGINT is the default; under a loaded
        # full run the child was seen inheriting an ignored SIGINT from the test process
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import cnnc.runtime.readers as readers\n"
        "def slow(*args, **kwargs):\n"
        "    signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, mid-read, to this thread\n"
        "    time.sleep(30)\n"
        "readers.read_npz = slow\n"
        "import cnnc.runtime.sources as sources\n"
        "sources.read_npz = slow\n"
        "from cnnc.cli import main\n"
        f"sys.exit(main(['train', 'specs/lenet5.cnn', '--out', {str(tmp_path / 'run')!r}]))\n"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "cnnc: interrupted\n"
    assert list(tmp_path.iterdir()) == []
