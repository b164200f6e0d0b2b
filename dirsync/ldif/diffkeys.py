"""``dirsync diff --key``'s index: key value -> DN on both sides, and the renames found.

It lives in an SQLite file in the work folder (two rows per keyed entry,
no entry bodies), so rename detection stays within bounded memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dirsync.errors import InputError


@dataclass(frozen=True, slots=True)
class Rename:
    old_key: str
    new_key: str
    new_dn: str
    old_dn: str


class KeyIndex:
    """Key value -> DN on both sides, and the renames found, in SQLite.

    Sort keys are stored as UTF-8 BLOBs: compared bytewise they keep the
    order of the Python strings (NUL included).
    """

    def __init__(self, path: Path, names: dict[str, str]) -> None:
        self.names = names
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript("""
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA temp_store = FILE;
            PRAGMA cache_size = -16000;
            CREATE TABLE old (k BLOB, skey BLOB, dn TEXT, line INTEGER);
            CREATE TABLE new (k BLOB, skey BLOB, dn TEXT, line INTEGER);
            CREATE TABLE renames (old_skey BLOB PRIMARY KEY, new_skey BLOB, new_dn TEXT,
                                  old_dn TEXT) WITHOUT ROWID;
            CREATE INDEX renames_new ON renames(new_skey);
            BEGIN;
        """)
        self.renamed = 0

    def close(self) -> None:
        self.db.close()

    def insert(self, side: str, rows: list[tuple[bytes | None, bytes, str, int]]) -> None:
        # Keyless entries matter on the OLD side only (where DNs get reused).
        if side == "new":
            rows = [r for r in rows if r[0] is not None]
        self.db.executemany(f"INSERT INTO {side} VALUES (?, ?, ?, ?)", rows)

    def finish(self) -> None:
        """Index both sides, refusing a key value held by two entries."""
        self.db.execute("COMMIT")
        for side in ("old", "new"):
            try:
                self.db.execute(f"CREATE UNIQUE INDEX {side}_k ON {side}(k)")
            except sqlite3.IntegrityError:
                first, second, dn = self.db.execute(
                    f"SELECT MIN(line), MAX(line), MIN(dn) FROM {side} WHERE k = "
                    f"(SELECT k FROM {side} WHERE k IS NOT NULL GROUP BY k "
                    f"HAVING COUNT(*) > 1 ORDER BY MIN(line) LIMIT 1)").fetchone()
                raise InputError(f"key value of {dn!r} also held by the entry at line {first}",
                                 path=self.names[side], line=second, field="key") from None
        self.db.execute("CREATE INDEX old_skey ON old(skey)")
        self.db.execute("BEGIN")

    def moves(self) -> Iterator[tuple[str, str, str]]:
        """(old key, new key, new DN) of entries matched by key at another DN,
        in order of the old key."""
        cursor = self.db.execute(
            "SELECT o.skey, n.skey, n.dn FROM old o JOIN new n ON n.k = o.k "
            "WHERE o.k IS NOT NULL AND o.skey != n.skey ORDER BY o.skey")
        for old_key, new_key, new_dn in cursor:
            yield old_key.decode("utf-8"), new_key.decode("utf-8"), new_dn

    def has_moves(self) -> bool:
        return self.db.execute(
            "SELECT 1 FROM old o JOIN new n ON n.k = o.k WHERE o.k IS NOT NULL "
            "AND o.skey != n.skey LIMIT 1").fetchone() is not None

    def new_dn(self, k: bytes) -> str | None:
        row = self.db.execute("SELECT dn FROM new WHERE k = ?", (k,)).fetchone()
        return row[0] if row else None

    def old_at(self, skey: str) -> bool:
        return self.db.execute("SELECT 1 FROM old WHERE skey = ?",
                               (skey.encode("utf-8"),)).fetchone() is not None

    def add_rename(self, rename: Rename) -> None:
        self.db.execute("INSERT INTO renames VALUES (?, ?, ?, ?)",
                        (rename.old_key.encode("utf-8"), rename.new_key.encode("utf-8"),
                         rename.new_dn, rename.old_dn))
        self.renamed += 1

    def rename_to(self, new_key: str) -> Rename | None:
        row = self.db.execute("SELECT old_skey, new_dn, old_dn FROM renames WHERE new_skey = ?",
                              (new_key.encode("utf-8"),)).fetchone()
        if row is None:
            return None
        return Rename(row[0].decode("utf-8"), new_key, row[1], row[2])

    def rename_of(self, old_key: str) -> Rename | None:
        row = self.db.execute("SELECT new_skey, new_dn, old_dn FROM renames WHERE old_skey = ?",
                              (old_key.encode("utf-8"),)).fetchone()
        if row is None:
            return None
        return Rename(old_key, row[0].decode("utf-8"), row[1], row[2])
