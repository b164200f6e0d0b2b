"""Entries kept on disk for a run's life: their record, and a spool of (key, entry).

An entry is kilobytes as objects (its attribute dict, lists and values);
the entries a 1% change of a million reads again, or finds on the foreign
side, held as objects took tens of megabytes. :func:`entry_record` makes
one a plain tuple that :mod:`marshal` stores (in a
:class:`dirsync.sync.spool.Spool` or a :mod:`dirsync.sync.scratch` table),
:func:`entry_from_record` makes it again: a new copy each time it is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from dirsync.entry import Entry
from dirsync.sync.spool import Spool

#: Records an :class:`EntrySpool` keeps in memory before the rest go to disk.
MEMORY_ENTRIES = 256


def entry_record(entry: Entry) -> tuple[Any, ...]:
    return (entry.dn, entry.attrs, entry.line, entry.digest)


def entry_from_record(record: tuple[Any, ...]) -> Entry:
    dn, attrs, line, digest = record
    entry = Entry.parsed(dn, attrs, {name.lower(): name for name in attrs}, line)
    entry.digest = digest
    return entry


class EntrySpool:
    """(key, entry) pairs in the order appended, read back any number of times
    (each entry a new copy: a change to one is not kept)."""

    def __init__(self, pairs: Iterable[tuple[str, Entry]] = (),
                 memory_items: int = MEMORY_ENTRIES) -> None:
        self._spool = Spool(memory_items)
        self.extend(pairs)

    def append(self, pair: tuple[str, Entry]) -> None:
        key, entry = pair
        self._spool.append((key, entry_record(entry)))

    def extend(self, pairs: Iterable[tuple[str, Entry]]) -> None:
        for pair in pairs:
            self.append(pair)

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        for key, record in self._spool:
            yield key, entry_from_record(record)

    def keys(self) -> Iterator[str]:
        """The keys in order, without making the entries again."""
        for key, _ in self._spool:
            yield key

    def __len__(self) -> int:
        return len(self._spool)

    def close(self) -> None:
        self._spool.close()
