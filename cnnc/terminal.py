"""Everything `cnnc` prints passes through `Escaping`: a class name, a data path or an echoed
source line can hold terminal escape sequences, and printing them raw lets a file drive the
user's terminal. Control characters other than newline, tab and carriage return (tqdm's
progress bar) are shown as `\\xNN` / `\\uNNNN` instead.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

_KEEP = {"\n", "\t", "\r"}
_TABLE = {
    code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)] if chr(code) not in _KEEP
}
# bidirectional overrides reorder what the eye sees (the "Trojan source" characters)
_TABLE |= {code: f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def escape(text: str) -> str:
    return text.translate(_TABLE)


class Escaping:
    """A text stream that escapes control characters before writing to the one it wraps."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escape(text))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextmanager
def escaped_output():
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Escaping(sys.stdout), Escaping(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
