"""LDAP search filters (RFC 4515) evaluated on entries in memory.

An LDAP server evaluates a search filter itself; a file directory (an
LDIF hub) does not, so the export direction evaluates the mapping's and
the connection's filters here. Values compare by the attribute's matching
rule as far as :mod:`dirsync.schema` knows it (case-ignore for names and
addresses, exact otherwise). Extensible matches are refused: nothing
dirsync ships uses them, and a file cannot honour their matching rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dirsync.entry import Entry
from dirsync.schema import matcher

Predicate = Callable[[Entry], bool]

_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2})")
_ITEM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9;.-]*)(=|~=|>=|<=)(.*)$", re.DOTALL)


class FilterError(ValueError):
    """Not a filter this module can evaluate (RFC 4515 section 3 grammar)."""


@dataclass
class _Parser:
    text: str
    pos: int = 0

    def fail(self, message: str) -> FilterError:
        return FilterError(f"{self.text!r}: {message} at position {self.pos + 1}")

    def filter(self) -> Predicate:
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise self.fail("expected '('")
        self.pos += 1
        head = self.text[self.pos:self.pos + 1]
        if head in ("&", "|"):
            self.pos += 1
            parts = []
            while self.pos < len(self.text) and self.text[self.pos] == "(":
                parts.append(self.filter())
            result = _and(parts) if head == "&" else _or(parts)
        elif head == "!":
            self.pos += 1
            inner = self.filter()
            result = lambda entry: not inner(entry)
        else:
            end = self.text.find(")", self.pos)
            if end < 0:
                raise self.fail("missing ')'")
            result = _item(self.text[self.pos:end], self)
            self.pos = end
        if self.pos >= len(self.text) or self.text[self.pos] != ")":
            raise self.fail("expected ')'")
        self.pos += 1
        return result


def _and(parts: list[Predicate]) -> Predicate:
    return lambda entry: all(p(entry) for p in parts)


def _or(parts: list[Predicate]) -> Predicate:
    return lambda entry: any(p(entry) for p in parts)


def _unescape(value: str) -> bytes:
    """RFC 4515 value escapes (``\\2a`` is ``*``) to bytes."""
    out = bytearray()
    last = 0
    for match in _ESCAPE.finditer(value):
        out += value[last:match.start()].encode("utf-8")
        out.append(int(match.group(1), 16))
        last = match.end()
    out += value[last:].encode("utf-8")
    return bytes(out)


def _item(text: str, parser: _Parser) -> Predicate:
    match = _ITEM.match(text)
    if not match:
        raise parser.fail(f"not a simple filter item: {text!r} (extensible matches are "
                          "not supported)")
    attr, op, raw = match.groups()
    norm = matcher(attr)
    if op == "=" and raw == "*":
        return lambda entry: bool(entry.get(attr))
    if op == "=" and "*" in raw:
        pieces = [norm(_unescape(p)) for p in raw.split("*")]
        initial, final, middle = pieces[0], pieces[-1], pieces[1:-1]

        def substrings(entry: Entry) -> bool:
            for value in entry.get(attr):
                have = norm(value)
                if not have.startswith(initial):
                    continue
                at = len(initial)
                ok = True
                for part in middle:
                    found = have.find(part, at)
                    if found < 0:
                        ok = False
                        break
                    at = found + len(part)
                if ok and have[at:].endswith(final) and len(have) - at >= len(final):
                    return True
            return False
        return substrings
    wanted = norm(_unescape(raw))
    if op in ("=", "~="):
        if attr.lower() == "objectclass":
            # Object class names are case-ignore whatever the table says.
            low = wanted.lower()
            return lambda entry: any(v.lower() == low for v in entry.get(attr))
        return lambda entry: any(norm(v) == wanted for v in entry.get(attr))
    if op == ">=":
        return lambda entry: any(norm(v) >= wanted for v in entry.get(attr))
    return lambda entry: any(norm(v) <= wanted for v in entry.get(attr))


def compile_filter(text: str) -> Predicate:
    """A predicate for ``text``; raises :class:`FilterError` for what it cannot evaluate."""
    parser = _Parser(text.strip())
    predicate = parser.filter()
    if parser.pos != len(parser.text):
        raise parser.fail("text after the filter")
    return predicate
