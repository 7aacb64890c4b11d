"""Issue 14: a run folder is never silently reused, locked while training, swept of leftovers."""

import os

import pytest

from cnnc.cli import main
from cnnc.compiler.files import UsageError
from cnnc.run_folder import claimed, resolve

SPEC = "network t\ninput 1x28x28\nFC 10 -> SOFTMAX\n"


def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path):
    (tmp_path / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(UsageError, match="--overwrite"):
        resolve(tmp_path, resume=False, overwrite=False)
    assert resolve(tmp_path, resume=True, overwrite=False) == tmp_path
    assert (tmp_path / "checkpoint.safetensors").exists()
    resolve(tmp_path, resume=False, overwrite=True)
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_an_existing_file_as_out_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        resolve(tmp_path / "file", resume=False, overwrite=False)


def test_a_live_lock_refuses_a_second_training_and_a_stale_one_is_taken(tmp_path):
    with claimed(tmp_path):
        (tmp_path / ".lock").write_text(str(os.getppid()))  # another live process
        with pytest.raises(UsageError, match="another training"), claimed(tmp_path):
            pass
    (tmp_path / ".lock").write_text("999999999")  # a process long gone
    (tmp_path / ".checkpoint.safetensors.tmp123").write_bytes(b"half")
    with claimed(tmp_path):
        assert not (tmp_path / ".checkpoint.safetensors.tmp123").exists()
    assert not (tmp_path / ".lock").exists()


def test_train_cli_refuses_a_used_folder_and_a_negative_seed(tmp_path, capsys):
    spec = tmp_path / "t.cnn"
    spec.write_text(SPEC)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    assert main(["train", str(spec), "--out", str(run), "--epochs", "1", "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(spec), "--seed", "-1"])
    assert exit_.value.code == 2
