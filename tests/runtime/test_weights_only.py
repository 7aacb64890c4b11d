"""A weights-only file (what `cnnc export --to pytorch` and `cnnc import --weights-out` write)
loads for evaluation and export, and is refused, with the reason, as a run to resume."""

import shutil
from pathlib import Path

import pytest

from cnnc.cli import main
from cnnc.runtime import checkpoint

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    assert main(["export", "specs/lenet5.cnn", "--to", "pytorch", "-o", str(folder / "m.py")]) == 0
    (path,) = folder.glob("*.safetensors")
    return path


def test_a_weights_only_file_loads_without_training_state(weights):
    tensors, meta = checkpoint.load(weights)
    assert "progress" not in meta and "config" not in meta
    assert any(name.startswith("param/") for name in tensors)
    with pytest.raises(checkpoint.CheckpointError, match="weights only"):
        checkpoint.require_training_state(meta, weights)


def test_resuming_from_a_weights_only_file_is_a_clear_error(weights, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(weights, run / "checkpoint.safetensors")
    code = main(["train", "specs/lenet5.cnn", "--resume", str(run)])
    assert code != 0
    err = capsys.readouterr().err
    assert "holds weights only" in err and "Traceback" not in err
