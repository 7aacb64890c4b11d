"""How much memory the machine can give, and byte counts written for people.

Used to refuse, before allocating, what would otherwise die in numpy's ``MemoryError`` (or the
kernel's OOM killer): a data file whose header declares more than fits, a plan at a batch size
too large for the machine.
"""

from __future__ import annotations

import os

__all__ = ["available_bytes", "size_text"]


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
