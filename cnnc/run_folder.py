"""A run folder is claimed before training writes into it: refused if it already holds a run
(unless `--resume` continues it or `--overwrite` replaces it; cnnc does not number runs, so a
name always means one run), locked against a second training, and swept of the temporary
files a killed save leaves behind.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from cnnc.compiler.files import UsageError

LOCK = ".lock"
RUN_FILES = ("checkpoint.safetensors", "metrics.jsonl", "spec.cnn", "curves.png")


def resolve(out: Path, resume: bool, overwrite: bool) -> Path:
    """The folder to train into, after refusing or clearing what is there."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"{out}: exists and is not a folder; give a run folder")
    held = [name for name in RUN_FILES if (out / name).exists() or (out / name).is_symlink()]
    if held and not resume and not overwrite:
        raise UsageError(
            f"{out}: already holds a run ({', '.join(held)}); continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )
    if overwrite and not resume:
        for name in held:
            (out / name).unlink()
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def claimed(out: Path):
    """Hold `out/.lock` (O_EXCL, no symlinks) while training; a lock whose process is gone is
    taken over."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{out}: cannot create the run folder ({error.strerror})") from None
    lock = out / LOCK
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(2):
        try:
            fd = os.open(lock, flags, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0) if not lock.is_symlink() else 0
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise UsageError(
                    f"{out}: another training (process {pid}) is writing into this folder"
                ) from None
            lock.unlink(missing_ok=True)
        except OSError as error:
            raise UsageError(f"{out}: cannot write into it ({error.strerror})") from None
    else:
        raise UsageError(f"{out}: cannot take its lock file {lock}")
    with os.fdopen(fd, "w") as handle:
        handle.write(str(os.getpid()))
    for leftover in out.glob(".*.tmp*"):  # a save or a plot killed half-way
        if leftover.is_file() or leftover.is_symlink():
            leftover.unlink(missing_ok=True)
    try:
        yield out
    finally:
        lock.unlink(missing_ok=True)
