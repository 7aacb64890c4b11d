"""Reading a run's ``metrics.jsonl``: one JSON object per finished epoch.

The file is appended to by a process that can be killed at any byte, and it sits in a folder a
user may edit, so a reader keeps every well-formed epoch record and names the lines it skipped
(blank, not JSON, a truncated last line, not an epoch record) instead of failing on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["REQUIRED", "read_metrics"]

REQUIRED = ("epoch", "train_loss", "train_acc")


def _record(line: str) -> dict | str:
    """The epoch record on a line, or why it is not one."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(value, dict):
        return "not a JSON object"
    for key in REQUIRED:
        number = value.get(key)
        if isinstance(number, bool) or not isinstance(number, int | float):
            return f"no number `{key}`"
        if not math.isfinite(number):
            return f"`{key}` is not finite"
    return value


def read_metrics(path: str | Path) -> tuple[list[dict], list[str]]:
    """(epoch records in file order, one note per skipped line); a file that cannot be read is
    an empty list and one note."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        return [], [f"{path}: cannot read ({error.strerror or error})"]
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    records, notes = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        found = _record(line)
        if isinstance(found, dict):
            records.append(found)
            continue
        last = number == len(lines)  # no newline after it: cut off mid-write
        why = "a truncated last line" if last and found == "not JSON" else found
        notes.append(f"{path}:{number}: skipped, {why}")
    return records, notes
