"""A :class:`MemoryStore` whose entries wait in a private temporary SQLite file.

An LDIF directory is read whole, changed with a server's rules and written
back whole; held as Python objects, a file of a million entries took
gigabytes (about 3.5 KB an entry). Here each entry is one row (its
normalized DN, its depth for the write, its DN and attributes as
:mod:`marshal` bytes) of a database nobody else can open, which SQLite
deletes when it is closed or the process dies; only a few megabytes of its
pages stay in memory. The rules (entry exists, no such object, not allowed
on a non-leaf, a subtree rename) are :class:`MemoryStore`'s; only where
entries are kept differs. Entries come back in the order they were first
stored, as from a dict, and a changed entry keeps its place.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterator
from typing import Any

from dirsync.directories.base import ReadOptions
from dirsync.directories.memory import MemoryStore
from dirsync.entry import Entry, dn_depth, is_under, normalize_dn, parent_dn, rebase_dn
from dirsync.errors import EntryError
from dirsync.ldif.changes import Change, renamed_entry

#: Pages SQLite keeps in memory, in KiB.
CACHE_KIB = 8192
#: Rows read per query when entries are read in order.
PAGE = 1000


def _encode(entry: Entry) -> bytes:
    return marshal.dumps((entry.dn, entry.attrs, entry.line))


def _decode(data: bytes) -> Entry:
    dn, attrs, line = marshal.loads(data)
    return Entry.parsed(dn, attrs, {name.lower(): name for name in attrs}, line)


class DiskStore(MemoryStore):
    """Entries by normalized DN in a temporary table, in the order first stored."""

    def __init__(self) -> None:
        # (MemoryStore's dict of entries is not made: every access is overridden.)
        self._children: dict[str, int] = {}
        self._count = 0
        #: every depth an entry was stored at (one emptied since costs an empty read)
        self._depths: set[int] = set()
        #: a parent known to exist (adds below it need not ask)
        self._parent: str | None = None
        self._parent_depth = 0
        # "" is SQLite's private temporary file: nobody else can open it.
        self.db = sqlite3.connect("", isolation_level=None)
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA temp_store=FILE")
        self.db.execute("BEGIN")     # nothing here must outlive the process
        self.db.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, key TEXT NOT NULL "
                        "UNIQUE, depth INTEGER NOT NULL, dn TEXT NOT NULL, value BLOB NOT NULL)")

    def __len__(self) -> int:
        return self._count

    def _exists(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM entries WHERE key=?", (key,)).fetchone() \
            is not None

    def get(self, dn: str) -> Entry | None:
        row = self.db.execute("SELECT value FROM entries WHERE key=?",
                              (normalize_dn(dn),)).fetchone()
        return None if row is None else _decode(row[0])

    def add_entry(self, entry: Entry) -> None:
        """As :meth:`MemoryStore.add_entry`, in one query when the parent is known
        (the usual case: a file's entries and an export's adds share a parent)."""
        if not entry.attrs:
            raise EntryError(entry.dn, "no attributes provided", result="protocolError")
        parent = normalize_dn(parent_dn(entry.dn))
        if parent != self._parent:
            self._need_parent(entry.dn)
            if parent and self._exists(parent):
                self._parent = parent       # until something is deleted or renamed
                self._parent_depth = dn_depth(entry.dn) - 1
            depth = dn_depth(entry.dn)
        else:
            depth = self._parent_depth + 1
        key = normalize_dn(entry.dn)
        try:
            self.db.execute("INSERT INTO entries (key, depth, dn, value) VALUES (?, ?, ?, ?)",
                            (key, depth, entry.dn, _encode(entry)))
        except sqlite3.IntegrityError:
            raise EntryError(entry.dn, "entry already exists",
                             result="entryAlreadyExists") from None
        self._depths.add(depth)
        self._count += 1
        self._children[parent] = self._children.get(parent, 0) + 1

    def put(self, entry: Entry) -> None:
        key = normalize_dn(entry.dn)
        data = _encode(entry)
        depth = dn_depth(entry.dn)
        self._depths.add(depth)
        updated = self.db.execute("UPDATE entries SET dn=?, depth=?, value=? WHERE key=?",
                                  (entry.dn, depth, data, key)).rowcount
        if updated:
            return
        self.db.execute("INSERT INTO entries (key, depth, dn, value) VALUES (?, ?, ?, ?)",
                        (key, depth, entry.dn, data))
        self._count += 1
        parent = normalize_dn(parent_dn(entry.dn))
        self._children[parent] = self._children.get(parent, 0) + 1

    def _drop(self, dn: str) -> None:
        self._parent = None
        if self.db.execute("DELETE FROM entries WHERE key=?", (normalize_dn(dn),)).rowcount:
            self._count -= 1
        self._uncount(dn)

    def _rows(self, column: str) -> Iterator[tuple[int, Any]]:
        """(seq, column) of the entries stored when this began, in order, a page at
        a time (the store may change meanwhile, as a dict's copy would not see)."""
        (last,) = self.db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
        after = 0
        while True:
            page = self.db.execute(f"SELECT seq, {column} FROM entries WHERE seq > ? "
                                   "AND seq <= ? ORDER BY seq LIMIT ?",
                                   (after, last, PAGE)).fetchall()
            if not page:
                return
            yield from page
            after = page[-1][0]

    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        opts = options or ReadOptions()
        if opts.base and opts.scope == "base":
            found = self.get(opts.base)
            if found is not None:
                yield found
            return
        base_key = normalize_dn(opts.base) if opts.base else None
        for _, data in self._rows("value"):
            entry = _decode(data)
            if opts.base:
                if opts.scope == "one" and normalize_dn(parent_dn(entry.dn)) != base_key:
                    continue
                if opts.scope in ("sub", None) and not is_under(entry.dn, opts.base):
                    continue
            yield entry

    def by_depth(self) -> Iterator[Entry]:
        """Every entry, parents before children (as stored among equals)."""
        # A few depths, each read in the table's own order: no sort of the rows
        # (SELECT DISTINCT depth sorted them all: 8 MB more at 600,000 entries).
        for depth in sorted(self._depths):
            for (data,) in self.db.execute("SELECT value FROM entries WHERE depth=? ORDER BY seq",
                                           (depth,)):
                yield _decode(data)

    def _need_parent(self, dn: str) -> None:
        parent = parent_dn(dn)
        if parent and self._count and not self._exists(normalize_dn(parent)) and any(
                is_under(parent, held) for _, held in self._rows("dn")):
            raise EntryError(dn, "no such object: the parent entry does not exist",
                             result="noSuchObject")

    def _rename(self, entry: Entry, change: Change) -> None:
        new_dn = change.target_dn
        old_key, new_key = normalize_dn(entry.dn), normalize_dn(new_dn)
        if new_key != old_key and self._exists(new_key):
            raise EntryError(entry.dn, f"{new_dn} already exists", result="entryAlreadyExists")
        if change.newsuperior is not None:
            self._need_parent(new_dn)
        old_dn = entry.dn
        self._parent = None
        moved = renamed_entry(entry, new_dn, change.deleteoldrdn)
        (seq,) = self.db.execute("SELECT seq FROM entries WHERE key=?", (old_key,)).fetchone()
        if not self._children.get(old_key, 0):
            # A leaf (the usual rename): only its parent's count may move.
            self._replace(seq, moved)
            for parent, step in ((normalize_dn(parent_dn(old_dn)), -1),
                                 (normalize_dn(parent_dn(new_dn)), 1)):
                left = self._children.get(parent, 0) + step
                if left > 0:
                    self._children[parent] = left
                else:
                    self._children.pop(parent, None)
            return
        # A subtree rename carries the children along, each in its place.
        for child_seq, held in list(self._rows("dn")):
            if child_seq != seq and is_under(held, old_dn):
                child = self.get(held)
                assert child is not None
                child.dn = rebase_dn(held, old_dn, new_dn)
                self._replace(child_seq, child)
        self._replace(seq, moved)
        self._children = {}
        for _, held in self._rows("dn"):
            parent = normalize_dn(parent_dn(held))
            self._children[parent] = self._children.get(parent, 0) + 1

    def _replace(self, seq: int, entry: Entry) -> None:
        self._depths.add(dn_depth(entry.dn))
        self.db.execute("UPDATE entries SET key=?, depth=?, dn=?, value=? WHERE seq=?",
                        (normalize_dn(entry.dn), dn_depth(entry.dn), entry.dn,
                         _encode(entry), seq))

    def close(self) -> None:
        self.db.close()
