"""Tests for cnnc.runtime.checkpoint and the trainer's use of it: exact round trips of weights,
BN buffers, optimizer state and metadata; refusals that name the file and the tensor at fault;
damaged files that give a CheckpointError, not a traceback; and atomic writes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from cnnc.cli import main
from cnnc.compiler.check import check_file
from cnnc.runtime import checkpoint
from cnnc.runtime.dataset import Dataset
from cnnc.runtime.errors import CheckpointError
from cnnc.runtime.network import Network
from cnnc.runtime.optim import Optimizer
from cnnc.runtime.train import (
    Progress,
    TrainConfig,
    Trainer,
    load_weights,
    optimizer_config,
    save_checkpoint,
)

TINY = "network tiny\ninput 1x8x8\nCONV 4@3x3 -> BN -> RELU -> FC 3 -> SOFTMAX\n"
CLASSES = ("a", "b", "c")
NORM = {"mean": [0.25], "std": [0.5]}


def write_spec(folder: Path, text: str = TINY, name: str = "tiny.cnn") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def dataset(n: int = 12) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
    return Dataset(x, np.arange(n, dtype=np.int64) % 3, CLASSES, "synthetic")


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"optimizer": "adam", "lr": 0.01, "batch": 4, "epochs": 2, **changes})


def trained(spec: str, settings: TrainConfig, steps: int = 3) -> tuple[Network, Optimizer]:
    """A network and its optimizer after a few steps on random data: every tensor non-trivial."""
    network = Network(check_file(spec, verify_expects=False), batch=settings.batch, seed=1)
    optimizer = Optimizer(optimizer_config(settings), network.P.size)
    rng = np.random.default_rng(2)
    for _ in range(steps):
        x = rng.standard_normal((settings.batch, 1, 8, 8)).astype(np.float32)
        network.loss_and_grad(x, rng.integers(0, 3, settings.batch))
        optimizer.step(network.P, network.G, settings.lr)
    return network, optimizer


def progress(network: Network) -> Progress:
    rng_state = np.random.default_rng(9).bit_generator.state  # holds 128-bit integers
    return Progress(1, 2, rng_state, network.steps_run, (3.25, 5, 8))


def save_run(folder: Path, spec: str, settings: TrainConfig) -> tuple[Network, Optimizer, Path]:
    network, optimizer = trained(spec, settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / checkpoint.FILENAME
    source = Path(spec).read_text()
    save_checkpoint(path, network, optimizer, source, settings, progress(network), NORM, CLASSES)
    return network, optimizer, path


def valid_meta(**changes) -> dict:
    """Metadata the schema accepts, as the trainer writes it."""
    meta = {
        "spec_hash": "0" * 64,
        "network": "tiny",
        "config": asdict(config()),
        "progress": asdict(Progress()),
        "normalization": NORM,
        "classes": list(CLASSES),
        "optimizer_steps": 0,
    }
    return {**meta, **changes}


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, NaN included."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---- round trips -------------------------------------------------------------------------------


def test_tensors_and_metadata_round_trip_bit_for_bit(tmp_path):
    odd = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38, 1 / 3], np.float32)
    tensors = {
        "param/w": np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32),
        "param/odd": odd,
        "optim/slot0": (np.arange(7, dtype=np.float64) / 7).astype(np.float32),
        "param/strided": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],  # a view
    }
    rng = {"bit_generator": "PCG64", "state": {"state": 2**127 + 1, "inc": 3}, "has_uint32": 0,
           "uinteger": 0}  # fmt: skip
    meta = valid_meta(
        progress=asdict(Progress(rng_state=rng, sums=(0.1 + 0.2, 1, 2))),
        classes=["épocas", "b", "c"],
        extra={"list": [1, None]},  # keys the schema does not know are kept
    )
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, tensors, meta)
    loaded, loaded_meta = checkpoint.load(path)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert same(loaded[name], np.ascontiguousarray(value)), name
    assert loaded_meta == json.loads(json.dumps(meta))
    assert checkpoint.split(loaded, "param/").keys() == {"w", "odd", "strided"}


def test_a_run_folder_resolves_to_its_checkpoint(tmp_path):
    checkpoint.save(tmp_path / checkpoint.FILENAME, {"x": np.zeros(1, np.float32)}, valid_meta())
    assert checkpoint.resolve(tmp_path) == tmp_path / checkpoint.FILENAME
    assert checkpoint.load(tmp_path)[1]["network"] == "tiny"


def test_a_training_checkpoint_holds_weights_buffers_state_and_metadata(tmp_path):
    spec = write_spec(tmp_path)
    settings = config()
    network, optimizer, path = save_run(tmp_path / "run", spec, settings)
    tensors, meta = checkpoint.load(path)
    for name, value in network.parameters().items():
        assert same(tensors[f"param/{name}"], value), name
    for name, value in network.buffers().items():
        assert same(tensors[f"buffer/{name}"], value), name
        assert value.any()  # training moved the running statistics
    for name, value in optimizer.state.items():
        assert same(tensors[f"optim/{name}"], value), name
    assert set(tensors) == (
        {f"param/{k}" for k in network.parameters()}
        | {f"buffer/{k}" for k in network.buffers()}
        | {"optim/slot0", "optim/slot1"}
    )
    assert meta == json.loads(
        json.dumps(
            {  # JSON: the sums tuple comes back as a list
                "run": {},  # how the command line named data and limit (none here)
                "spec_hash": checkpoint.spec_hash(TINY),
                "network": "tiny",
                "config": asdict(settings),
                "progress": asdict(progress(network)),
                "normalization": NORM,
                "classes": list(CLASSES),
                "optimizer_steps": 3,
            }
        )
    )


def test_load_weights_into_an_inference_network_is_exact(tmp_path):
    spec = write_spec(tmp_path)
    network, _, path = save_run(tmp_path / "run", spec, config())
    fresh = Network(check_file(spec, verify_expects=False), batch=2, training=False, seed=5)
    meta = load_weights(fresh, tmp_path / "run")
    assert meta["network"] == "tiny"
    expected = network.state_dict()
    for name, value in fresh.state_dict().items():
        assert same(value, expected[name]), name


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_resume_restores_everything_and_the_next_step_is_identical(tmp_path, optimizer):
    spec = write_spec(tmp_path)
    settings = config(optimizer=optimizer, nesterov=optimizer == "sgd")
    network, original, path = save_run(tmp_path / "run", spec, settings)
    trainer = Trainer(spec, settings, dataset(), tmp_path / "resumed", quiet=True)
    trainer.resume(tmp_path / "run")
    expected = network.state_dict()
    for name, value in trainer.network.state_dict().items():
        assert same(value, expected[name]), name
    assert trainer.optimizer.state.keys() == original.state.keys()
    for name, value in original.state.items():
        assert same(trainer.optimizer.state[name], value), name
    assert trainer.optimizer.steps == original.steps == 3
    assert trainer.progress == progress(network)
    assert trainer.network.steps_run == network.steps_run
    assert trainer.norm == NORM

    x = np.random.default_rng(4).standard_normal((4, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    for net, opt in ((network, original), (trainer.network, trainer.optimizer)):
        net.loss_and_grad(x, y)
        opt.step(net.P, net.G, settings.lr)
    assert same(trainer.network.P, network.P)
    assert same(trainer.network.S, network.S)


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("CONV 4@3x3", "CONV 2@3x3"),
            "tensor `conv1.weight` has shape (4, 1, 3, 3) in the weights but (2, 1, 3, 3) in "
            "this spec",
        ),
        (  # conv1 and bn1 fit: the first tensor that does not is named, not the ones after
            ("FC 3", "FC 5"),
            "tensor `fc1.weight` has shape (3, 144) in the weights but (5, 144) in this spec",
        ),
        (("-> BN ", ""), "the weights have a tensor `bn1.bias` that this spec lacks"),
        (
            ("FC 3 ->", "FC 3 -> BN ->"),
            "the weights have no tensor `bn2.weight` that this spec needs",
        ),
    ],
)
def test_loading_into_another_spec_names_the_file_and_the_first_mismatch(tmp_path, change, message):
    spec = write_spec(tmp_path)
    _, _, path = save_run(tmp_path / "run", spec, config())
    other = write_spec(tmp_path, TINY.replace(*change), "other.cnn")
    network = Network(check_file(other, verify_expects=False), batch=2)
    before = network.state_dict()
    with pytest.raises(CheckpointError) as caught:
        load_weights(network, path)
    assert str(caught.value) == f"{path}: {message}"
    for name, value in network.state_dict().items():  # nothing was half-loaded
        assert same(value, before[name]), name


def test_cnnc_eval_names_the_mismatching_tensor_without_a_traceback(tmp_path, capsys):
    spec = write_spec(tmp_path)
    save_run(tmp_path / "run", spec, config())
    other = write_spec(tmp_path, TINY.replace("CONV 4@3x3", "CONV 2@3x3"), "other.cnn")
    assert main(["eval", other, "--weights", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnc: error: ")
    assert "tensor `conv1.weight` has shape (4, 1, 3, 3) in the weights" in err
    assert "Traceback" not in err


def test_resume_refuses_a_checkpoint_of_another_spec(tmp_path):
    _, _, path = save_run(tmp_path / "run", write_spec(tmp_path), config())
    other = write_spec(tmp_path, TINY.replace("network tiny", "network other"), "other.cnn")
    trainer = Trainer(other, config(), dataset(), tmp_path / "resumed", quiet=True)
    with pytest.raises(CheckpointError) as caught:
        trainer.resume(path)
    assert str(caught.value) == (
        f"{path}: it was trained from a different spec (the spec's hash differs)"
    )


def test_resume_refuses_optimizer_state_that_does_not_fit(tmp_path):
    spec = write_spec(tmp_path)
    _, _, path = save_run(tmp_path / "run", spec, config(optimizer="adam"))
    trainer = Trainer(spec, config(optimizer="sgd"), dataset(), tmp_path / "resumed", quiet=True)
    with pytest.raises(CheckpointError) as caught:
        trainer.resume(path)
    assert str(caught.value) == f"{path}: its optimizer state `slot1` does not fit this optimizer"


def test_resume_refuses_optimizer_state_that_is_missing(tmp_path):
    spec = write_spec(tmp_path)
    _, _, path = save_run(tmp_path / "run", spec, config(optimizer="sgd"))
    trainer = Trainer(spec, config(optimizer="adam"), dataset(), tmp_path / "resumed", quiet=True)
    with pytest.raises(CheckpointError, match="slot1"):
        trainer.resume(path)


# ---- damaged files -----------------------------------------------------------------------------


def good_checkpoint(folder: Path) -> bytes:
    path = folder / "good.safetensors"
    checkpoint.save(path, {"param/w": np.arange(64, dtype=np.float32)}, valid_meta())
    return path.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-5],  # the end of the tensor data lost
        lambda data: data[: len(data) // 2],
        lambda data: data[:8],  # the header length only
        lambda data: data[:3],
        lambda data: b"",
        lambda data: b"this is not a checkpoint at all\n" * 4,
        lambda data: bytes(range(256)),
    ],
    ids=["tail", "half", "header-length", "three-bytes", "empty", "text", "binary"],
)
def test_a_truncated_or_garbage_file_is_a_checkpoint_error_naming_it(tmp_path, damage):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(damage(good_checkpoint(tmp_path)))
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    assert str(caught.value).startswith(f"{path}: not a readable safetensors file (")


def test_a_safetensors_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(path))
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    assert str(caught.value) == f"{path}: not a cnnc checkpoint (no `{checkpoint.FORMAT}` metadata)"


@pytest.mark.parametrize("metadata", [{"meta": "{not json"}, {}], ids=["bad-json", "no-meta"])
def test_damaged_metadata_is_refused(tmp_path, metadata):
    from safetensors.numpy import save_file

    path = tmp_path / "c.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(path), {"format": checkpoint.FORMAT, **metadata})
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    assert str(caught.value) == f"{path}: its metadata is damaged (not JSON)"


@pytest.mark.parametrize("where", ["missing.safetensors", "empty-folder"])
def test_no_checkpoint_at_the_path_is_refused(tmp_path, where):
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(tmp_path / where)
    expected = tmp_path / where
    if expected.is_dir():
        expected = expected / checkpoint.FILENAME
    assert str(caught.value) == f"{expected}: no checkpoint here"


def test_cnnc_eval_of_a_truncated_checkpoint_is_an_error_not_a_traceback(tmp_path, capsys):
    spec = write_spec(tmp_path)
    _, _, path = save_run(tmp_path / "run", spec, config())
    path.write_bytes(path.read_bytes()[:-100])
    assert main(["eval", spec, "--weights", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnc: error: {path}: not a readable safetensors file (")
    assert "Traceback" not in err


# ---- atomic writes -----------------------------------------------------------------------------


def test_a_write_goes_to_a_temporary_file_in_the_folder_renamed_over_the_old(tmp_path, monkeypatch):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, {"w": np.zeros(3, np.float32)}, valid_meta(optimizer_steps=1))
    renames = []
    original = os.replace

    def spy(source, target):
        renames.append((Path(source), Path(target)))
        assert Path(target).read_bytes() == old  # the old one is whole until the rename
        original(source, target)

    old = path.read_bytes()
    monkeypatch.setattr(os, "replace", spy)
    checkpoint.save(path, {"w": np.ones(3, np.float32)}, valid_meta(optimizer_steps=2))
    ((source, target),) = renames
    assert target == path and source.parent == path.parent and source != path
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.FILENAME]
    assert checkpoint.load(path)[1]["optimizer_steps"] == 2


def test_a_failed_write_leaves_the_old_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    import safetensors.numpy

    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, {"w": np.zeros(3, np.float32)}, valid_meta(optimizer_steps=1))
    old = path.read_bytes()

    def failing(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x10\x00\x00\x00half a hea")  # what a full disk leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing)
    with pytest.raises(CheckpointError, match="No space left.*previous checkpoint is intact"):
        checkpoint.save(path, {"w": np.ones(3, np.float32)}, valid_meta(optimizer_steps=2))
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.FILENAME]


def test_a_failed_rename_leaves_the_old_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, {"w": np.zeros(3, np.float32)}, valid_meta(optimizer_steps=1))
    old = path.read_bytes()

    def failing(source, target):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(CheckpointError, match="Input/output error.*previous checkpoint is intact"):
        checkpoint.save(path, {"w": np.ones(3, np.float32)}, valid_meta(optimizer_steps=2))
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.FILENAME]


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def failing(source, target):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(CheckpointError, match="nothing was saved"):
        save_run(tmp_path / "run", write_spec(tmp_path), config())
    assert list((tmp_path / "run").iterdir()) == []


# ---- hostile metadata and tensors --------------------------------------------------------------


def rewrite(path: Path, meta=None, tensors=None, sha256=True) -> None:
    """Save a checkpoint file by hand, as an editor or a bit flip would leave it."""
    from safetensors.numpy import save_file

    tensors = tensors or {"param/w": np.arange(4, dtype=np.float32)}
    metadata = {
        "format": checkpoint.FORMAT,
        "meta": meta if isinstance(meta, str) else json.dumps(meta),
    }
    if sha256:
        metadata["sha256"] = json.dumps(checkpoint._digests(tensors))
    save_file(tensors, str(path), metadata)


def refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def without(key: str) -> dict:
    meta = valid_meta()
    del meta[key]
    return meta


@pytest.mark.parametrize(
    "meta, expected",
    [
        ([1, 2], "is not of type 'object'"),
        (without("progress"), "'progress' is a dependency of 'config'"),
        (without("network"), "'network' is a required property"),
        (
            valid_meta(config={"optimizer": "rmsprop"}),
            "`config.optimizer`: 'rmsprop' is not one of",
        ),
        (valid_meta(config={"schedule": "linear"}), "`config.schedule`: 'linear' is not one of"),
        (valid_meta(config={"learning_rate": 0.1}), "'learning_rate' was unexpected"),
        (valid_meta(config={"epochs": "10"}), "`config.epochs`: '10' is not of type 'integer'"),
        (valid_meta(config={"momentum": -5}), "`config.momentum`: -5 is less than the minimum"),
        (valid_meta(config={"weight_decay": -1}), "`config.weight_decay`: -1 is less than"),
        (valid_meta(config={"nesterov": 1}), "`config.nesterov`: 1 is not of type 'boolean'"),
        (valid_meta(classes="abc"), "`classes`: 'abc' is not of type 'array'"),
        (valid_meta(optimizer_steps=-1), "`optimizer_steps`: -1 is less than the minimum"),
        (valid_meta(normalization={"mean": [0.1], "std": [0]}), "`normalization.std.0`"),
        (valid_meta(progress={**asdict(Progress()), "rng_state": {"x": 1}}), "progress.rng_state"),
        (valid_meta(progress={**asdict(Progress()), "sums": [0, 1]}), "`progress.sums`"),
        ('{"lr": Infinity}', "not JSON"),
        ('{"lr": 1e999}', "not JSON"),
        ("[" * 100000, "not JSON"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, str) else None,
)
def test_metadata_is_validated_and_what_is_wrong_is_named(tmp_path, meta, expected):
    path = tmp_path / "edited.safetensors"
    rewrite(path, meta)
    message = refusal(path)
    assert "its metadata is damaged" in message and expected in message, message


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.float16, np.float64])
def test_tensors_that_are_not_float32_are_refused_not_converted(tmp_path, dtype):
    path = tmp_path / "typed.safetensors"
    rewrite(path, valid_meta(), {"param/w": np.ones(4, dtype)})
    assert f"tensor `param/w` is {np.dtype(dtype)}; cnnc checkpoints hold float32 only" in refusal(
        path
    )


def test_a_flipped_byte_in_tensor_data_is_detected(tmp_path):
    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(
        path, {"param/a": np.zeros(8, np.float32), "param/w": np.ones(64, np.float32)}, valid_meta()
    )
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # inside the last tensor's data
    path.write_bytes(bytes(data))
    assert "does not match its checksum: the file is corrupted" in refusal(path)
    rewrite(path, valid_meta(), sha256=False)  # written before checksums existed: still loads
    assert checkpoint.load(path)[1]["network"] == "tiny"


def test_checksums_that_name_other_tensors_are_refused(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "c.safetensors"
    metadata = {
        "format": checkpoint.FORMAT,
        "meta": json.dumps(valid_meta()),
        "sha256": '{"x": "0"}',
    }
    save_file({"param/w": np.zeros(2, np.float32)}, str(path), metadata)
    assert "checksums are damaged" in refusal(path)


def test_metadata_that_does_not_fit_the_network_is_refused_in_eval(tmp_path, capsys):
    spec = write_spec(tmp_path)
    _, _, path = save_run(tmp_path / "run", spec, config())
    tensors, meta = checkpoint.load(path)
    for change, expected in [
        ({"classes": ["a", "b"]}, "names 2 classes but the network has 3 outputs"),
        ({"normalization": {"mean": [0.1, 0.2], "std": [1, 1]}}, "normalization `mean` has 2"),
    ]:
        checkpoint.save(path, tensors, {**meta, **change})
        assert main(["eval", spec, "--weights", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cnnc: error: {path}: ") and expected in err, err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    "where, error, reason",
    [
        # what safetensors raised on a full 64 KiB tmpfs and on one remounted read-only
        ("save_file", "serializing: I/O error: No space left on device (os error 28)", "No space"),
        ("save_file", "serializing: I/O error: Read-only file system (os error 30)", "Read-only"),
        ("fsync", OSError(28, "No space left on device"), "No space left on device"),
        ("replace", OSError(30, "Read-only file system"), "Read-only file system"),
    ],
)
def test_a_full_disk_or_read_only_folder_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, where, error, reason
):
    import safetensors
    import safetensors.numpy

    path = tmp_path / checkpoint.FILENAME
    checkpoint.save(path, {"w": np.zeros(3, np.float32)}, valid_meta(optimizer_steps=1))
    old = path.read_bytes()

    def fail(*args, **kwargs):
        if where == "save_file":
            Path(args[1]).write_bytes(b"\x10\x00")  # what a full disk leaves
            raise safetensors.SafetensorError(f"Error while {error}")
        raise error

    target = {"save_file": safetensors.numpy, "fsync": os, "replace": os}[where]
    monkeypatch.setattr(target, where, fail)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(path, {"w": np.ones(3, np.float32)}, valid_meta(optimizer_steps=2))
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot save the checkpoint (") and reason in message
    assert message.endswith("the previous checkpoint is intact")
    monkeypatch.undo()
    assert path.read_bytes() == old and os.listdir(tmp_path) == [checkpoint.FILENAME]


def test_eval_on_data_with_more_classes_than_outputs_is_a_data_error(tmp_path, capsys):
    spec = write_spec(tmp_path)
    save_run(tmp_path / "run", spec, config())
    data = tmp_path / "six.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), y=np.arange(12) % 6)
    assert main(["eval", spec, "--weights", str(tmp_path / "run"), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err == "cnnc: error: six: labels go up to 5 but the network has 3 outputs; evaluate " \
        "on data with the classes it was trained on\n"  # fmt: skip
