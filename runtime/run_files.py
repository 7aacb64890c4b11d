"""The files of a run folder that training writes besides its checkpoint, written whole.

Every write goes through `compiler.files.write_atomic` (a temporary file opened O_EXCL |
O_NOFOLLOW, then a rename), so a symlink planted in the run folder is never written through and
a kill never leaves half a file. `metrics.jsonl` is rewritten from the history the checkpoint
holds, not appended to: a kill between the checkpoint's rename and the metrics write loses no
line, because the next run (or `--resume`) writes it again from the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnc.compiler.files import write_atomic, write_bytes_atomic

BEST = "best.safetensors"
SPEC = "spec.cnn"
METRICS = "metrics.jsonl"


def write(path: Path, text: str) -> None:
    write_atomic(str(path), text)


def write_metrics(path: Path, records: list[dict]) -> None:
    """metrics.jsonl: one JSON object per finished epoch, rewritten whole."""
    if not records and not path.exists():
        return
    write(path, "".join(json.dumps(record) + "\n" for record in records))


def write_png(path: Path, figure) -> None:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())
