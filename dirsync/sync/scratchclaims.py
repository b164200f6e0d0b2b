"""The addresses a run's source entries claim, kept on disk.

:class:`dirsync.sync.ownership.Claims` remembers, for every address a
mapped source entry carries, which entry claimed it first and which
others claimed it too. A full read of a large directory claims every
address of it; :class:`DiskClaims` keeps them in two tables of the run's
scratch database (:mod:`dirsync.sync.scratch`) instead of in dictionaries.
Claims are written a batch at a time, in source order, so the first
claimant of an address is the same as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from dirsync.sync.ownership import Claims
from dirsync.sync.scratch import FLUSH, Scratch


class DiskClaims(Claims):
    """:class:`Claims` in the scratch database (same questions, same answers)."""

    def __init__(self, scratch: Scratch) -> None:
        super().__init__()
        self.db = scratch.db
        self.firsts = scratch.new_table()    # address key -> first anchor
        self.others = scratch.new_table()    # address key NUL anchor, of the later ones
        self._pending: list[tuple[str, str]] = []

    def claim(self, anchor: str, keys: Iterable[str]) -> None:
        self._pending.extend((key, anchor) for key in set(keys))
        if len(self._pending) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        # In order: the first row of a key takes it, later rows with
        # another anchor are the others.
        self.db.executemany(f"INSERT OR IGNORE INTO {self.firsts} VALUES (?1, ?2)", rows)
        self.db.executemany(
            f"INSERT OR IGNORE INTO {self.others} SELECT ?1 || char(0) || ?2, NULL "
            f"WHERE (SELECT value FROM {self.firsts} WHERE key = ?1) != ?2", rows)

    def first_claimant(self, key: str) -> str | None:
        self.flush()
        row = self.db.execute(f"SELECT value FROM {self.firsts} WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def claims(self, anchor: str, key: str) -> bool:
        if self.first_claimant(key) == anchor:
            return True
        return self.db.execute(f"SELECT 1 FROM {self.others} WHERE key=?",
                               (f"{key}\x00{anchor}",)).fetchone() is not None
