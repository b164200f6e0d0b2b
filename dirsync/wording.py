"""Small pieces of the words dirsync shows people."""

from __future__ import annotations

#: Plurals that are not the word with an "s".
_IRREGULAR = {"entry": "entries", "was": "were", "address": "addresses", "is": "are"}


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 entry``, ``3 entries``, ``0 entries``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {many or _IRREGULAR.get(word, word + 's')}"
