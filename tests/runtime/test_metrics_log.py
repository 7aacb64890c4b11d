"""Tests for cnnc.runtime.metrics_log: a metrics.jsonl with blank, garbage, truncated or foreign
gives its good records and names each skipped line; curves are drawn from what is left."""

import json

import pytest

from cnnc.runtime.metrics_log import read_metrics


def record(epoch: int, **extra) -> str:
    return json.dumps(
        {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.1 * epoch, **extra}
    )


def test_good_records_survive_odd_lines_and_each_skip_is_located(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        record(1),
        "",
        "   ",
        "garbage \x00\xff",
        "[1, 2]",
        '{"epoch": 2}',
        '{"epoch": 3, "train_loss": NaN, "train_acc": 0.5}',
        '{"epoch": true, "train_loss": 1, "train_acc": 0.5}',
        record(4, val_loss=0.5, val_acc=0.7),
        '{"epoch": 5, "train_lo',  # killed mid-append
    ]
    path.write_text("\n".join(lines))
    records, notes = read_metrics(path)
    assert [r["epoch"] for r in records] == [1, 4]
    assert notes == [
        f"{path}:4: skipped, not JSON",
        f"{path}:5: skipped, not a JSON object",
        f"{path}:6: skipped, no number `train_loss`",
        f"{path}:7: skipped, `train_loss` is not finite",
        f"{path}:8: skipped, no number `epoch`",
        f"{path}:10: skipped, a truncated last line",
    ]


def test_a_metrics_path_that_cannot_be_read_is_a_note_not_an_error(tmp_path):
    (tmp_path / "metrics.jsonl").mkdir()
    records, notes = read_metrics(tmp_path / "metrics.jsonl")
    assert records == [] and len(notes) == 1 and "cannot read" in notes[0]
    assert read_metrics(tmp_path / "missing.jsonl")[0] == []
    (tmp_path / "bytes.jsonl").write_bytes(b"\xff\xfe\n" + record(1).encode() + b"\n")
    records, notes = read_metrics(tmp_path / "bytes.jsonl")
    assert [r["epoch"] for r in records] == [1] and notes[0].endswith(":1: skipped, not JSON")


def test_curves_are_drawn_from_the_good_records(tmp_path):
    pytest.importorskip("matplotlib")
    from cnnc.runtime.train import plot_curves

    path = tmp_path / "metrics.jsonl"
    path.write_text(record(1, val_loss=0.9, val_acc=0.2) + "\nnot json\n" + record(2) + '\n{"ep')
    notes = plot_curves(path, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert [n.split(": ")[-1] for n in notes] == [
        "skipped, not JSON",
        "skipped, a truncated last line",
    ]
