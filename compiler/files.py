"""Spec files on disk: finding them, reading and checking one, writing results whole.

A missing, unreadable or unwritable file is a UsageError (exit 2), never an OSError traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class UsageError(Exception):
    """A bad command line or an unreadable file: exit 2."""


def spec_files(paths: list[str]) -> list[Path]:
    """The .cnn files named by `paths`; a folder stands for every .cnn file under it."""
    found = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            root = path.resolve()
            inside = sorted(
                p for p in path.rglob("*.cnn") if p.resolve().is_relative_to(root)
            )  # a symlink out of the folder is not part of it
            if not inside:
                raise UsageError(f"{text}: no .cnn files in this folder")
            found += inside
        elif path.exists() and not path.is_file():
            raise UsageError(f"{text}: not a regular file (a pipe or a device?); give a .cnn file")
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{text}: no such file or folder")
    return found


def load(path: str | Path, input_shape=None, verify_expects: bool = True, classes=None):
    """Parse, expand and check one spec file, at another input size or class count if given;
    SpecError or UsageError on failure."""
    from .check import check_file

    if Path(path).exists() and not (Path(path).is_file() or Path(path).is_dir()):
        raise UsageError(f"{path}: not a regular file (a pipe or a device?); give a .cnn file")
    try:
        return check_file(str(path), input_shape, verify_expects, classes)
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder; give a .cnn file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from None


def load_one(path: str, input_shape=None):
    """`load` for commands that take exactly one spec file; `expect` lines are not verified."""
    files = spec_files([path])
    if len(files) != 1 or Path(path).is_dir():
        raise UsageError(f"{path}: give one .cnn file")
    return load(files[0], input_shape, verify_expects=False)


def read_source(path) -> str | None:
    """The text to show under a diagnostic; no more than the parser would read (think /dev/zero)."""
    from .syntax import MAX_SOURCE_BYTES

    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_SOURCE_BYTES + 1).decode("utf-8-sig", "replace")
    except OSError:
        return None


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so a failure never leaves half a file;
    raises OSError."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        # O_EXCL | O_NOFOLLOW: never write through a planted symlink or into someone's file
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        temporary.unlink(missing_ok=True)
        with os.fdopen(os.open(temporary, flags, 0o644), "wb") as handle:
            handle.write(data)
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise OSError(errno.EEXIST, "exists and is not a regular file; not replacing it")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: str, text: str) -> None:
    """write_bytes_atomic of UTF-8 text; a failure is a UsageError naming the path."""
    try:
        write_bytes_atomic(path, text.encode())
    except OSError as error:
        raise UsageError(f"{path}: cannot write it ({error.strerror or error})") from None


def shape_arg(text: str) -> tuple[int, ...]:
    """argparse type of an input size such as 3x32x32."""
    import argparse

    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size such as 3x32x32") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size such as 3x32x32")
    return values
