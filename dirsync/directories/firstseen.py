"""Which keys of a stream come for the first time, in flat memory.

A file source rejects a row whose key an earlier row had. Remembering
every key in a set made reading a file of a million rows hold a million
strings; past :data:`MEMORY_KEYS` keys they go to a private temporary
SQLite database instead (deleted when closed, or when the process dies),
asked a batch at a time.
"""

from __future__ import annotations

import sqlite3

#: Keys kept in a set before they move to disk.
MEMORY_KEYS = 32768
#: Keys per ``IN (...)`` query (below SQLite's oldest parameter limit of 999).
_CHUNK = 500


class FirstSeen:
    """Keys seen so far; :meth:`first_times` tells which of a batch are new."""

    def __init__(self, memory_keys: int = MEMORY_KEYS) -> None:
        self.memory_keys = memory_keys
        self._keys: set[str] = set()
        self._db: sqlite3.Connection | None = None

    def first_times(self, keys: list[str]) -> list[bool]:
        """For each key in order: True if no key before it (in this batch or an
        earlier one) was the same. The keys are remembered."""
        if self._db is None and len(self._keys) + len(keys) > self.memory_keys:
            self._spill()
        db = self._db
        known: set[str] = self._keys
        if db is not None:
            known = set()
            wanted = list(dict.fromkeys(keys))
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                known.update(k for (k,) in db.execute(
                    f"SELECT key FROM seen WHERE key IN ({marks})", chunk))
        new: list[bool] = []
        added: list[str] = []
        for key in keys:
            fresh = key not in known
            new.append(fresh)
            if fresh:
                known.add(key)
                added.append(key)
        if db is not None:
            db.executemany("INSERT INTO seen VALUES (?)", ((k,) for k in added))
        return new

    def _spill(self) -> None:
        # "" is SQLite's private temporary file; nothing here must outlive the read.
        db = sqlite3.connect("", isolation_level=None)
        db.execute("PRAGMA cache_size=-4096")
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("BEGIN")
        db.executemany("INSERT INTO seen VALUES (?)", ((k,) for k in self._keys))
        self._keys = set()
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._keys = set()
