"""Which keys of a stream come for the first time, in flat memory.

A file source rejects a row whose key an earlier row had. Remembering
every key in a set made reading a file of a million rows hold a million
strings; past :data:`MEMORY_KEYS` keys they go to a private temporary
SQLite database instead (deleted when closed, or when the process dies).
A Bloom filter of fixed size in front of it answers "never seen" for
nearly every new key without a query; only a key it may have seen is
looked up.
"""

from __future__ import annotations

import sqlite3

#: Keys kept in a set before they move to disk.
MEMORY_KEYS = 32768
#: Keys written to disk together.
_FLUSH = 4096
#: The Bloom filter: 2**23 bits (1 MiB), three probes from the key's hash
#: (salted per process, so a crafted input cannot aim at its bits; a false
#: "maybe" only costs a query).
_BITS = 23
_MASK = (1 << _BITS) - 1


class FirstSeen:
    """Keys seen so far; :meth:`first_time` tells whether a key is new (and remembers it)."""

    def __init__(self, memory_keys: int = MEMORY_KEYS) -> None:
        self.memory_keys = memory_keys
        self._keys: set[str] = set()
        self._db: sqlite3.Connection | None = None
        self._bloom = bytearray()
        self._pending: list[tuple[str]] = []

    def first_time(self, key: str) -> bool:
        if self._db is None:
            if key in self._keys:
                return False
            self._keys.add(key)
            if len(self._keys) > self.memory_keys:
                self._spill()
            return True
        h = hash(key)
        bloom = self._bloom
        a, b, c = h & _MASK, (h >> _BITS) & _MASK, (h >> (2 * _BITS)) & _MASK
        if bloom[a >> 3] >> (a & 7) & 1 and bloom[b >> 3] >> (b & 7) & 1 \
                and bloom[c >> 3] >> (c & 7) & 1:
            self._flush()
            if self._db.execute("SELECT 1 FROM seen WHERE key=?", (key,)).fetchone():
                return False
        bloom[a >> 3] |= 1 << (a & 7)
        bloom[b >> 3] |= 1 << (b & 7)
        bloom[c >> 3] |= 1 << (c & 7)
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
        self._bloom = bytearray(1 << (_BITS - 3))
        keys, self._keys = self._keys, set()
        for key in keys:
            self.first_time(key)
        self._flush()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._keys = set()
        self._bloom = bytearray()
        self._pending = []
