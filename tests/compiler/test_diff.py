"""cnnc diff: pairs of specs with known differences."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cnnc.cli import main
from cnnc.compiler.diff import check_source, compare, render_markdown, render_text

SPECS = Path(__file__).parents[2] / "specs"
LENET = (SPECS / "lenet5.cnn").read_text()


def differ(a: str, b: str) -> dict:
    return compare(check_source(a, "a.cnn"), check_source(b, "b.cnn"))


def test_the_same_spec_has_no_difference():
    found = differ(LENET, LENET.replace("RELU", "RELU ").replace("# LeNet", "# lenet"))
    assert found["same"] and found["layers"] == []
    assert "no architectural change" in render_text(found)


def test_a_changed_layer_and_the_shapes_downstream():
    found = differ(LENET, LENET.replace("CONV 16@5x5", "CONV 32@5x5"))
    changes = [(r["change"], (r["b"] or r["a"])["name"]) for r in found["layers"]]
    assert changes[0] == ("changed", "conv2")
    assert ("shape", "relu2") in changes and ("shape", "pool2") in changes
    assert ("shape", "fc1") in changes  # same output, more parameters
    conv2 = found["layers"][0]
    assert conv2["a"]["layer"] == "CONV 16@5x5" and conv2["b"]["layer"] == "CONV 32@5x5"
    assert conv2["delta"]["params"] == 16 * 6 * 25 + 16
    t = found["totals"]
    assert t["params"]["delta"] == t["params"]["b"] - t["params"]["a"]
    assert sum(r["delta"]["params"] for r in found["layers"]) == t["params"]["delta"]
    assert sum(r["delta"]["macs"] for r in found["layers"]) == t["macs"]["delta"]


def test_added_and_removed_layers():
    found = differ(LENET, LENET.replace("-> FC 84 -> RELU ", "-> DROPOUT 0.5 "))
    kinds = {(r["change"], (r["b"] or r["a"])["layer"]) for r in found["layers"]}
    assert ("removed", "FC 84") in kinds and ("added", "DROPOUT") in kinds
    assert sum(r["delta"]["params"] for r in found["layers"]) == found["totals"]["params"]["delta"]


def test_a_changed_receptive_field_is_a_total():
    found = differ(LENET, LENET.replace("CONV 6@5x5 s1 p2", "CONV 6@3x3 s1 p1"))
    assert found["totals"]["receptive_field"]["a"] != found["totals"]["receptive_field"]["b"]
    assert "receptive_field" in render_text(found)


def test_markdown_is_a_table_for_a_pull_request():
    text = render_markdown(differ(LENET, LENET.replace("FC 120", "FC 128")))
    assert text.startswith("### `lenet5`")
    assert "| changed | `fc1` | `FC 120 -> FC 128` |" in text
    assert "| params | 61,706 |" in text


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_formats(tmp_path, capsys):
    a, b = tmp_path / "a.cnn", tmp_path / "b.cnn"
    a.write_text(LENET)
    b.write_text(LENET.replace("FC 120", "FC 128"))
    code, out, _ = run(capsys, "diff", str(a), str(b))
    assert code == 0 and "~ fc1" in out and "FC 120 -> FC 128" in out
    code, out, _ = run(capsys, "diff", str(a), str(b), "--format", "json")
    data = json.loads(out)
    assert data["layers"][0]["change"] == "changed"
    assert run(capsys, "diff", str(a))[0] == 2  # a usage error


def git(cwd, *argv):
    subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(subprocess.run(["git", "--version"]).returncode, reason="needs git")
def test_cli_against_a_git_revision(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "net.cnn").write_text(LENET)
    (folder / "gone.cnn").write_text(LENET)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    (folder / "net.cnn").write_text(LENET.replace("FC 84", "FC 90"))
    (folder / "gone.cnn").unlink()
    (folder / "new.cnn").write_text(LENET)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "diff", "--git", "HEAD", "--format", "markdown", "--", "specs/")
    assert code == 0
    assert "`specs/gone.cnn`: deleted" in out and "`specs/new.cnn`: added" in out
    assert "`FC 84 -> FC 90`" in out
    assert run(capsys, "diff", "--git", "nosuchrev", "--", "specs/")[0] == 2
