"""Entries and distinguished names as plain data.

An :class:`Entry` is a DN and its attributes; attribute names keep the case
they were written in but are looked up case-insensitively, values are bytes
(as python-ldap hands them over). DN handling goes through python-ldap's
``ldap.dn`` so escaping follows RFC 4514.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping

import ldap.dn

Attrs = dict[str, list[bytes]]


class Entry:
    """One directory entry: a DN and case-insensitively named attributes."""

    __slots__ = ("_index", "attrs", "digest", "dn", "line")

    def __init__(self, dn: str, attrs: Mapping[str, Iterable[bytes]] | None = None,
                 line: int | None = None) -> None:
        self.dn = dn
        self.attrs: Attrs = {}
        self._index: dict[str, str] = {}
        self.line = line
        #: The reader's digest of the record the entry was read from (a CSV
        #: row), when it made one; a change to its attributes clears it.
        self.digest: str | None = None
        if attrs:
            for name, values in attrs.items():
                self.add(name, values)

    @classmethod
    def from_server(cls, dn: str, attrs: dict[str, list[bytes]]) -> Entry:
        """An entry as a server returns it: attribute names already unique."""
        entry = cls.__new__(cls)
        entry.dn = dn
        entry.attrs = attrs
        entry._index = {name.lower(): name for name in attrs}
        entry.line = None
        entry.digest = None
        return entry

    @classmethod
    def parsed(cls, dn: str, attrs: Attrs, index: dict[str, str], line: int | None) -> Entry:
        """An entry a parser built itself, its lower-case ``index`` included."""
        entry = cls.__new__(cls)
        entry.dn = dn
        entry.attrs = attrs
        entry._index = index
        entry.line = line
        entry.digest = None
        return entry

    # -- access ----------------------------------------------------------
    def key(self, name: str) -> str | None:
        """The stored spelling of attribute ``name``, or None."""
        return self._index.get(name.lower())

    def get(self, name: str) -> list[bytes]:
        stored = self._index.get(name.lower())
        return self.attrs[stored] if stored is not None else []

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0].decode("utf-8", "replace") if values else None

    def texts(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self.get(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def names(self) -> list[str]:
        return list(self.attrs)

    # -- change ----------------------------------------------------------
    def add(self, name: str, values: Iterable[bytes]) -> None:
        self.digest = None
        stored = self._index.get(name.lower())
        if stored is None:
            self._index[name.lower()] = name
            self.attrs[name] = list(values)
        else:
            self.attrs[stored].extend(values)

    def set(self, name: str, values: Iterable[bytes]) -> None:
        self.remove(name)
        vals = list(values)
        if vals:
            self.add(name, vals)

    def remove(self, name: str) -> None:
        self.digest = None
        stored = self._index.pop(name.lower(), None)
        if stored is not None:
            del self.attrs[stored]

    def copy(self) -> Entry:
        return Entry(self.dn, {k: list(v) for k, v in self.attrs.items()}, self.line)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (normalize_dn(self.dn) == normalize_dn(other.dn)
                and _canon(self) == _canon(other))

    def __repr__(self) -> str:
        return f"Entry({self.dn!r}, {len(self.attrs)} attributes)"


def _canon(entry: Entry) -> dict[str, list[bytes]]:
    return {k.lower(): sorted(v) for k, v in entry.attrs.items()}


# -- distinguished names ----------------------------------------------------

def split_dn(dn: str) -> list[list[tuple[str, str, int]]]:
    """RFC 4514 parse; raises ``ValueError`` for a malformed DN."""
    try:
        return ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR as exc:
        raise ValueError(f"not a valid DN: {dn!r}") from exc


# A DN of plain RDNs (no escapes, quotes, multi-valued RDNs, or spaces next
# to separators) is already canonical up to case: the common case, and hot.
_PLAIN_DN = re.compile(r"[A-Za-z][\w-]*=[\w.@-](?:[\w .@-]*[\w.@-])?"
                       r"(?:,[A-Za-z][\w-]*=[\w.@-](?:[\w .@-]*[\w.@-])?)*")


# The caches below are small: a run meets a DN again soon after it first
# does (read, planned, applied), and each entry kept costs a key, a value
# and a link, some 200 bytes: at 65,536 they held 13 MB, which a large
# change filled and a small one did not.
@functools.lru_cache(maxsize=1 << 12)
def normalize_dn(dn: str) -> str:
    """A comparison key: attribute types and values case-folded, escapes canonical.

    Naming attributes (cn, ou, dc, uid, o, ...) are case-ignore in practice,
    so folding the values is the right equality for DNs.
    """
    if not dn:
        return ""
    if _PLAIN_DN.fullmatch(dn):
        return dn.casefold()
    try:
        parts = ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR:
        return dn.lower()
    return ldap.dn.dn2str(
        [sorted((t.lower(), v.casefold(), f) for t, v, f in rdn) for rdn in parts])


def same_dn(a: str, b: str) -> bool:
    return a == b or normalize_dn(a) == normalize_dn(b)


def display_dn(dn: str) -> str:
    """The one string form dirsync shows and records a DN in: RFC 4514 with
    special characters escaped by a backslash (``O'Neil\\, Pat``), as
    :func:`make_rdn` writes them; case and order kept.

    slapd returns the hex form (``O'Neil\\2C Pat``), which would make the
    same entry read differently in a run that created it and in the next.
    A DN without an escape or a quote is returned as it is.
    """
    if "\\" not in dn and '"' not in dn:
        return dn     # the common case, on the path of every entry read
    return _escaped_form(dn)


@functools.lru_cache(maxsize=1 << 12)
def _escaped_form(dn: str) -> str:
    try:
        return str(ldap.dn.dn2str(ldap.dn.str2dn(dn)))
    except ldap.DECODING_ERROR:
        return dn


@functools.lru_cache(maxsize=1 << 12)
def parent_dn(dn: str) -> str:
    if _PLAIN_DN.fullmatch(dn):
        # No escapes or quotes: every comma separates RDNs.
        return dn.partition(",")[2]
    parts = split_dn(dn)
    return ldap.dn.dn2str(parts[1:]) if len(parts) > 1 else ""


def rdn_of(dn: str) -> str:
    if _PLAIN_DN.fullmatch(dn):
        return dn.partition(",")[0]
    parts = split_dn(dn)
    return ldap.dn.dn2str(parts[:1]) if parts else ""


def dn_depth(dn: str) -> int:
    return len(split_dn(dn)) if dn else 0


def join_dn(rdn: str, parent: str) -> str:
    return f"{rdn},{parent}" if parent else rdn


def make_rdn(attr: str, value: str) -> str:
    """An RDN with ``value`` escaped per RFC 4514."""
    return f"{attr}={ldap.dn.escape_dn_chars(value)}"


def rdn_values(rdn: str) -> list[tuple[str, str]]:
    """(attribute, value) pairs of a (possibly multi-valued) RDN."""
    parts = split_dn(rdn)
    return [(t, v) for t, v, _ in parts[0]] if parts else []


def is_under(dn: str, base: str) -> bool:
    """True when ``dn`` is ``base`` or below it."""
    if not base:
        return True
    d, b = split_dn(dn), split_dn(base)
    if len(d) < len(b):
        return False
    fold = lambda parts: [sorted((t.lower(), v.casefold()) for t, v, _ in r) for r in parts]
    return fold(d[len(d) - len(b):]) == fold(b)


def iter_sorted_by_depth(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Parents before children (stable within one depth)."""
    return iter(sorted(entries, key=lambda e: dn_depth(e.dn)))


def rebase_dn(dn: str, old_base: str, new_base: str) -> str:
    """``dn`` (at or below ``old_base``) moved to sit below ``new_base`` instead."""
    parts = split_dn(dn)
    depth = len(split_dn(old_base))
    head = ldap.dn.dn2str(parts[: len(parts) - depth])
    return join_dn(head, new_base) if head else new_base
