"""Tests for the `cnnc` command: check, report and compile, their formats and exit codes
(0 fine, 1 a spec error or a failed `expect`, 2 a usage or I/O error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cnnc.cli import main

SPECS = Path(__file__).parents[2] / "specs"
LENET = str(SPECS / "lenet5.cnn")
GOOD = "input 1x8x8\nCONV 2@3x3 -> FC 3\nexpect output == 3\n"
BROKEN = "input 1x8x8\nCONV 2@3x3 s -> FC 0\n"


def schema(name: str) -> dict:
    return json.loads((Path(__file__).parents[2] / "compiler/schemas" / name).read_text())


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def specs(tmp_path: Path):
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    return write


# ---- check -------------------------------------------------------------------------------------


def test_check_a_good_spec(capsys):
    code, out, err = run(capsys, "check", LENET)
    assert code == 0 and err == ""
    assert out == f"{LENET}: ok  lenet5: 61,706 params, 416,520 MACs, output 10\n"


def test_check_a_folder_recursively(capsys, specs, tmp_path):
    specs("a.cnn", GOOD)
    specs("deeper/b.cnn", GOOD)
    specs("notes.txt", "not a spec")
    code, out, _ = run(capsys, "check", str(tmp_path))
    assert code == 0
    assert out.splitlines()[-1] == "2 specs checked: 2 ok, 0 with errors"


def test_check_reports_every_error_and_goes_on_to_the_next_file(capsys, specs):
    bad, good = specs("bad.cnn", BROKEN), specs("good.cnn", GOOD)
    code, out, _ = run(capsys, "check", bad, good)
    assert code == 1
    assert f"{bad}:2:12: error: `s` needs a number" in out
    assert f"{bad}:2:20: error: FC units must be a positive whole number" in out
    assert "  CONV 2@3x3 s -> FC 0\n             ^\n" in out
    assert f"{good}: ok" in out
    assert out.splitlines()[-1] == "2 specs checked: 1 ok, 1 with errors"


def test_a_failed_expect_exits_1(capsys, specs):
    path = specs("e.cnn", GOOD.replace("== 3", "== 4"))
    code, out, _ = run(capsys, "check", path)
    assert code == 1 and "expect output == 4 failed: it is 3" in out


def test_an_input_override(capsys, specs):
    path = specs("n.cnn", "input 1x8x8\nCONV 2@3x3 -> FC 3\n")
    assert run(capsys, "check", "--input", "1x16x16", path)[0] == 0
    code, out, _ = run(capsys, "check", "--input", "1x2x2", path)
    assert code == 1 and "needs at least 3 rows" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "missing.cnn"], "missing.cnn: no such file or folder"),
        (["check", "{tmp}/empty"], "no .cnn files in this folder"),
        (["check", "{tmp}/folder.cnn"], "no .cnn files in this folder"),
        (["report", "{tmp}"], "give one .cnn file"),
        (["report", "missing.cnn"], "no such file or folder"),
        (["compile", "{good}", "-o", "{tmp}/no/such/dir/plan.json"], "cannot write it"),
    ],
)
def test_usage_and_io_errors_exit_2(capsys, specs, tmp_path, argv, message):
    (tmp_path / "folder.cnn").mkdir()
    (tmp_path / "empty").mkdir()
    good = specs("sub/good.cnn", GOOD)
    argv = [a.format(tmp=tmp_path, good=good) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_folder_named_like_a_spec_inside_a_folder_is_an_io_error(capsys, tmp_path):
    (tmp_path / "x.cnn").mkdir()
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 2 and "is a folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_exits_2(capsys, specs):
    path = specs("locked.cnn", GOOD)
    os.chmod(path, 0)
    code, _, err = run(capsys, "check", path)
    assert code == 2 and "cannot read it" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["check", LENET, "--format", "xml"],
        ["check", LENET, "--input", "3x32"],
        ["check", LENET, "--input", "0x8x8"],
        ["report", LENET, "--batch", "0"],
        ["report", LENET, "--batch", "two"],
        ["frobnicate"],
    ],
)
def test_bad_command_lines_exit_2(capsys, argv):
    assert run(capsys, *argv)[0] == 2


def test_check_json(capsys, specs):
    bad, good = specs("bad.cnn", BROKEN), specs("good.cnn", GOOD)
    code, out, _ = run(capsys, "check", "--format", "json", bad, good)
    assert code == 1
    data = json.loads(out)
    assert (data["ok"], data["checked"], data["failed"]) == (False, 2, 1)
    first, second = data["files"]
    assert first["path"] == bad and first["ok"] is False
    assert [(d["line"], d["col"]) for d in first["diagnostics"]] == [(2, 12), (2, 20)]
    assert set(first["diagnostics"][0]) == {
        "severity",
        "message",
        "line",
        "col",
        "end_line",
        "end_col",
        "notes",
        "fix",
    }
    assert second == {
        "path": good,
        "ok": True,
        "network": "good",
        "params": 2 * 9 + 2 + 2 * 36 * 3 + 3,
        "macs": 2 * 36 * 9 + 72 * 3,
        "output_shape": [3],
        "outputs": {"output": [3]},
        "diagnostics": [],
    }


def test_check_github_annotations(capsys, tmp_path):
    path = tmp_path / "a,b:c.cnn"
    path.write_text("input 1x4x4\nCONV 2@5x5\n")
    code, out, _ = run(capsys, "check", "--format", "github", str(path))
    assert code == 1
    (line,) = out.splitlines()
    escaped = str(path).replace(":", "%3A").replace(",", "%2C")
    assert line.startswith(
        f"::error file={escaped},line=2,col=1,endLine=2,endColumn=11,title=cnnc::"
        "CONV 2@5x5 needs at least 5 rows"
    )
    assert "%0Ashapes so far: input 1x4x4%0Afix: pad it" in line


def test_check_github_prints_nothing_for_good_specs(capsys):
    assert run(capsys, "check", "--format", "github", LENET)[:2] == (0, "")


# ---- report ------------------------------------------------------------------------------------


def test_report_text(capsys):
    code, out, _ = run(capsys, "report", LENET)
    assert code == 0
    assert out.startswith("lenet5: input 1x28x28 -> output 10\n")
    assert "conv1" in out and "training total @ batch 1" in out


def test_report_json_validates_against_the_shipped_schema(capsys):
    code, out, _ = run(capsys, "report", LENET, "--format", "json", "--batch", "8")
    assert code == 0
    data = json.loads(out)
    jsonschema.validate(data, schema("report.schema.json"))
    assert data["memory"]["batch"] == 8 and data["totals"]["params"] == 61_706


def test_report_json_with_an_input_override(capsys):
    code, out, _ = run(capsys, "report", LENET, "--format", "json", "--input", "1x32x32")
    data = json.loads(out)
    jsonschema.validate(data, schema("report.schema.json"))
    assert code == 0 and data["input_shape"] == [1, 32, 32]
    assert data["layers"][4]["output_shape"] == [16, 12, 12]


def test_report_markdown(capsys):
    code, out, _ = run(capsys, "report", LENET, "--format", "markdown")
    assert code == 0 and out.startswith("### `lenet5`: 1x28x28 → 10\n")


def test_report_ignores_expectations_but_not_errors(capsys, specs):
    code, _, _ = run(capsys, "report", specs("e.cnn", GOOD.replace("== 3", "== 4")))
    assert code == 0
    code, out, err = run(capsys, "report", specs("bad.cnn", BROKEN))
    assert code == 1 and out == ""
    assert "bad.cnn:2:12: error:" in err and "  CONV 2@3x3 s -> FC 0" in err


# ---- compile -----------------------------------------------------------------------------------


def test_compile_writes_a_plan_that_validates(capsys, tmp_path):
    target = tmp_path / "plan.json"
    code, out, _ = run(capsys, "compile", LENET, "-o", str(target), "--batch", "2")
    assert code == 0 and out.startswith("lenet5: training plan")
    jsonschema.validate(json.loads(target.read_text()), schema("plan.schema.json"))
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed into place


# ---- the installed command ---------------------------------------------------------------------


def test_the_command_runs_without_importing_numba_or_jsonschema():
    probe = (
        "import sys\n"
        "from cnnc.cli import main\n"
        f"code = main(['check', {LENET!r}])\n"
        "heavy = sorted(m for m in ('numba', 'jsonschema', 'torch') if m in sys.modules)\n"
        "print(code, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines()[-1] == "0 []"


def test_report_depth_wide_and_sizes(capsys):
    code, out, _ = run(capsys, "report", str(SPECS / "resnet18.cnn"), "--depth", "1", "--wide")
    assert code == 0 and "basic(64) x2" in out and "kernel" in out
    code, out, _ = run(capsys, "report", str(SPECS / "resnet18.cnn"), "--max-width", "70")
    assert code == 0
    assert max(len(line) for line in out.split("\nparams")[0].splitlines()[1:]) <= 70
    code, out, _ = run(
        capsys, "report", str(SPECS / "unet_small.cnn"), "--sizes", "--range", "16..64"
    )
    assert code == 0 and "every multiple of 4 from 16 to 64" in out
    assert run(capsys, "report", LENET, "--sizes", "--range", "9..3")[0] == 2


def test_report_sizes_works_when_the_spec_does_not_check(specs, capsys):
    path = specs("odd.cnn", "input 1x30x30\nPOOL max 2x2 -> POOL max 2x2 -> e\nCONCAT(e, e)\n")
    code, out, _ = run(capsys, "report", path, "--sizes", "--range", "16..24", "--format", "json")
    assert code == 0 and json.loads(out)["sizes"] == list(range(16, 25))


def test_report_sizes_of_a_non_square_input(specs, capsys):
    path = specs("wide.cnn", "input 3x48x64\nCONV 8@3x3 p1 -> POOL max 2 -> POOL max 2 -> FC 2\n")
    code, out, _ = run(capsys, "report", path, "--sizes", "--range", "6..12", "--format", "json")
    assert code == 0 and json.loads(out)["aspect"] == [3, 4]  # the input's own ratio
    assert json.loads(out)["sizes"] == [[6, 8], [9, 12], [12, 16]]
    code, out, _ = run(capsys, "report", path, "--sizes", "--range", "4..6", "--aspect", "1:1")
    assert code == 0 and out.splitlines()[1] == "  4..6"
    argv = ["report", path, "--sizes", "--range", "3..6", "--width-range", "4..9"]
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert (code, json.loads(out)["heights"], json.loads(out)["widths"]) == (
        0,
        [4, 5, 6],
        [4, 5, 6, 7, 8, 9],
    )
    assert run(capsys, "report", path, "--sizes", "--aspect", "3:0")[0] == 2


def test_train_with_several_heads_and_no_loss_named_stops_before_any_work(specs, capsys, tmp_path):
    path = specs(
        "heads.cnn",
        "input 1x8x8\nCONV 4@3x3 -> t\nt -> FC 3 -> a\nt -> FC 2 -> b\noutput a, b\n",
    )
    code, _, err = run(capsys, "train", path, "--out", str(tmp_path / "run"))
    assert code == 1 and ":5:1: error: the network has 2 outputs (a, b)" in err
    assert "`loss a`" in err and not (tmp_path / "run").exists()
