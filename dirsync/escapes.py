"""Text from foreign data made safe to show on a terminal or in a text report.

A value may hold control characters: an ANSI escape sequence would
recolour, clear or retitle the terminal of whoever reads the report, a
line break would forge a report line, and bidirectional overrides
(Unicode TR 9) make text read otherwise than it is. Text output shows
each such character as a ``\\xNN`` or ``\\uNNNN`` escape instead. JSON
and LDIF output keep values exact: their own escaping is unambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# C0 controls, DEL, C1 controls, line and paragraph separators, and the
# bidirectional marks, embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as an escape."""
    return _UNSAFE.sub(_escape_one, text) if _UNSAFE.search(text) else text


def line_writer(write: Callable[[str], Any]) -> Callable[[str], Any]:
    """``write`` for text made of lines: a final ``\\n`` is the writer's own
    line break and stays; every other control character is escaped."""
    def safe(text: str) -> Any:
        if text.endswith("\n"):
            return write(escape_controls(text[:-1]) + "\n")
        return write(escape_controls(text))
    return safe
