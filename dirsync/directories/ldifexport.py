"""``dirsync export``: a directory as RFC 2849 LDIF, streamed.

Entries go to the writer as the directory's paged reads deliver them, so
memory does not grow with the directory. ``sort`` gives a deterministic,
diffable order: parents before children, siblings by normalized RDN,
attributes and values sorted; large sorts spill to disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

from dirsync.directories.base import Directory, ReadOptions
from dirsync.entry import Entry, split_dn
from dirsync.ldif.io import LDIFWriter
from dirsync.schema import is_operational


def hierarchical_key(dn: str) -> str:
    """Sort key putting every entry right before its subtree (RFC 4514 parts
    reversed, case-folded; \\x01 sorts below every printable character)."""
    parts = split_dn(dn)
    return "\x01".join(
        "+".join(sorted(f"{t.lower()}={v.casefold()}" for t, v, _ in rdn))
        for rdn in reversed(parts))


def select_attributes(entry: Entry, attrs: list[str] | None) -> Entry:
    """Apply an attribute list to an entry read from a file kind
    (a server applies it itself): '*' user attributes, '+' operational ones."""
    if attrs is None:
        wanted_all, wanted_op, names = True, False, set()
    else:
        wanted_all = "*" in attrs
        wanted_op = "+" in attrs
        names = {a.lower() for a in attrs if a not in ("*", "+")}
    kept = Entry(entry.dn)
    for name, values in entry.attrs.items():
        op = is_operational(name)
        if name.lower() in names or (op and wanted_op) or (not op and wanted_all):
            kept.add(name, values)
    return kept


def canonical(entry: Entry) -> Entry:
    ordered = Entry(entry.dn)
    for name in sorted(entry.attrs, key=lambda n: (n.lower() != "objectclass", n.lower())):
        ordered.add(name, sorted(entry.attrs[name]))
    return ordered


def sorted_entries(entries: Iterable[Entry]) -> Iterator[Entry]:
    try:
        from dirsync.ldif.extsort import sort_entries  # spills to disk for large inputs
    except ImportError:
        yield from sorted(entries, key=lambda e: hierarchical_key(e.dn))
        return
    yield from sort_entries(entries, hierarchical_key)


def export(directory: Directory, out: IO[str], options: ReadOptions, *,
           sort: bool = False, native: bool = True) -> int:
    """Write the entries as LDIF; returns how many were written.

    An LDAP directory in server order is written by the compiled reader
    when it can be (``native``); the output is the same either way.
    """
    writer = LDIFWriter(out)
    writer.version()
    if not sort and native and hasattr(directory, "write_ldif"):
        written = directory.write_ldif(options, out, writer)
        if written is not None:
            return int(written)
    entries: Iterable[Entry] = directory.read(options)
    if directory.kind not in ("ldap", "ad"):  # a server applies the list itself
        entries = (select_attributes(e, options.attrs) for e in entries)
    if sort:
        entries = (canonical(e) for e in sorted_entries(entries))
    count = 0
    for entry in entries:
        writer.entry(entry)
        count += 1
    return count
