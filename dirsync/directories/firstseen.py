"""Which keys of a stream come for the first time, in flat memory.

A file source rejects a row whose key an earlier row had. Remembering
every key in a set made reading a file of a million rows hold a million
strings; past :data:`MEMORY_KEYS` keys they go to a private temporary
SQLite database instead (deleted when closed, or when the process dies).
A Bloom filter (:mod:`dirsync.directories.bloom`) in front of it answers
"never seen" for nearly every new key without a query; only a key it may
have seen is looked up.
"""

from __future__ import annotations

import sqlite3

from dirsync.directories.bloom import Bloom

#: Keys kept in a set before they move to disk.
MEMORY_KEYS = 32768
#: Keys written to disk together.
_FLUSH = 4096


class FirstSeen:
    """Keys seen so far; :meth:`first_time` tells whether a key is new (and remembers it)."""

    def __init__(self, memory_keys: int = MEMORY_KEYS) -> None:
        self.memory_keys = memory_keys
        self._keys: set[str] = set()
        self._db: sqlite3.Connection | None = None
        self._bloom: Bloom | None = None    # made when the keys move to disk
        self._pending: list[tuple[str]] = []

    def first_time(self, key: str) -> bool:
        if self._db is None:
            if key in self._keys:
                return False
            self._keys.add(key)
            if len(self._keys) > self.memory_keys:
                self._spill()
            return True
        assert self._bloom is not None
        if self._bloom.maybe(key):
            self._flush()
            if self._db.execute("SELECT 1 FROM seen WHERE key=?", (key,)).fetchone():
                return False
        self._bloom.add(key)
        self._pending.append((key,))
        if len(self._pending) >= _FLUSH:
            self._flush()
        return True

    def _flush(self) -> None:
        if self._pending and self._db is not None:
            self._db.executemany("INSERT INTO seen VALUES (?)", self._pending)
            self._pending = []

    def _spill(self) -> None:
        # "" is SQLite's private temporary file; nothing here must outlive the read.
        db = sqlite3.connect("", isolation_level=None)
        db.execute("PRAGMA cache_size=-4096")
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("BEGIN")
        self._db = db
        self._bloom = Bloom()
        keys, self._keys = self._keys, set()
        for key in keys:
            self.first_time(key)
        self._flush()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._keys = set()
        self._bloom = None
        self._pending = []
