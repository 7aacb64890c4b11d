"""How much memory the machine can give, and byte counts written for people.

Used to refuse, before allocating, what would otherwise die in numpy's ``MemoryError`` (or the
kernel's OOM killer): a data file whose header declares more than fits, a plan at a batch size
too large for the machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .errors import ResourceError

__all__ = ["available_bytes", "bounded", "check_plan", "parse_size", "size_text"]

_limit: ContextVar[int | None] = ContextVar("max_memory", default=None)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def available_bytes() -> int | None:
    """Memory a new allocation can get: Linux's MemAvailable, else physical memory; None when
    the platform tells neither."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(count: int) -> str:
    """1536 -> '1.5 KiB'; exact bytes below 1 KiB."""
    value, unit = float(count), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def parse_size(text: str) -> int:
    """'2G', '512MiB', '1.5 GB', '1000000' -> bytes (K, M, G, T are powers of 1024)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not found:
        raise ValueError(f"`{text}` is not a size: give bytes or a number with K, M, G or T")
    value = int(float(found[1]) * _UNITS[found[2].lower()])
    if value < 1:
        raise ValueError(f"`{text}` is not a size: give at least one byte")
    return value


@contextmanager
def bounded(limit: int | None) -> Iterator[None]:
    """Within it, plans are checked against `limit` bytes instead of the memory available."""
    token = _limit.set(limit)
    try:
        yield
    finally:
        _limit.reset(token)


def check_plan(plan, batch: int, threads: int) -> None:
    """Refuse, before anything is allocated, a plan whose arenas at `batch` exceed the bound:
    `--max-memory` when given, else the memory available."""
    given = _limit.get()
    limit = given if given is not None else available_bytes()
    if limit is None:
        return
    need = plan.memory(batch, threads, optimizer_slots=0)["total"]
    if need <= limit:
        return
    one = plan.memory(1, threads, optimizer_slots=0)["total"]
    per_sample = plan.memory(2, threads, optimizer_slots=0)["total"] - one
    bound = (
        f"--max-memory {size_text(limit)} allows"
        if given is not None
        else f"the {size_text(limit)} of memory available"
    )
    mode = "training" if plan.training else "inference"
    fits = (limit - one) // per_sample + 1 if per_sample and one <= limit else 0
    advice = f"batch {fits} fits" if fits else f"even batch 1 needs {size_text(one)}"
    raise ResourceError(
        f"{plan.network} needs {size_text(need)} ({need:,} bytes) for {mode} at batch {batch}, "
        f"more than {bound}; {advice}"
    )
