"""What change detection keeps in the state store, beside the entries.

- the cursors of a connection's direction (a syncrepl cookie, a
  ``modifyTimestamp`` high-water mark, a file fingerprint, the time of the
  last full reconcile, the UUIDs of entries to read again), through the
  store's own ``cursors`` table;
- the map of source entryUUIDs to anchors: RFC 4533 reports a deleted entry
  by its UUID alone (section 3.4), and the anchor is whatever the mapping
  makes it, so the map is how a delete finds the hub entry to remove.

Reads of state rows by anchor live here too, so that an incremental run
loads the rows its changes touch and not every row of the connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from dirsync.state.store import StateRow, StateStore

#: Cursor names (the ``name`` column of the ``cursors`` table).
COOKIE = "syncrepl-cookie"
HIGH_WATER = "modify-timestamp"
FILE = "file-fingerprint"
DIRSYNC = "dirsync-cookie"
USN = "usn-mark"
LAST_FULL = "last-full"
RETRY = "retry-uuids"

#: SQLite's default limit on the parameters of one statement is 999 (older builds).
_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uuids (
    connection TEXT NOT NULL,
    direction TEXT NOT NULL,
    uuid TEXT NOT NULL,
    anchor TEXT NOT NULL,
    PRIMARY KEY (connection, direction, uuid)
) WITHOUT ROWID
"""


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    chunk: list[str] = []
    for value in values:
        chunk.append(value)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class ChangeState:
    """One connection's direction: its cursors, UUID map and rows by anchor."""

    def __init__(self, state: StateStore, connection: str, direction: str) -> None:
        self.state = state
        self.db = state.db
        self.connection = connection
        self.direction = direction
        self.db.execute(_SCHEMA)
        self._held: int | None = None

    # -- cursors -----------------------------------------------------------
    def cursor(self, name: str) -> str | None:
        return self.state.cursor(self.connection, self.direction, name)

    def set_cursor(self, name: str, value: str | None) -> None:
        """Store a cursor (None forgets it); joins an open transaction."""
        if value is None:
            self.db.execute("DELETE FROM cursors WHERE connection=? AND direction=? AND name=?",
                            (self.connection, self.direction, name))
        else:
            self.state.set_cursor(self.connection, self.direction, name, value)

    def last_full(self) -> datetime | None:
        value = self.cursor(LAST_FULL)
        return datetime.fromisoformat(value) if value else None

    def mark_full(self) -> None:
        self.set_cursor(LAST_FULL, datetime.now(UTC).isoformat(timespec="seconds"))

    def retry(self) -> set[str]:
        value = self.cursor(RETRY)
        return set(json.loads(value)) if value else set()

    def set_retry(self, uuids: set[str]) -> None:
        self.set_cursor(RETRY, json.dumps(sorted(uuids)) if uuids else None)

    # -- the UUID map --------------------------------------------------------
    def anchors_of(self, uuids: Iterable[str]) -> dict[str, str]:
        """UUID -> anchor for those of ``uuids`` the map knows."""
        found: dict[str, str] = {}
        for chunk in _chunks(uuids):
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(
                f"SELECT uuid, anchor FROM uuids WHERE connection=? AND direction=? "
                f"AND uuid IN ({marks})", (self.connection, self.direction, *chunk)))
        return found

    def all_uuids(self) -> dict[str, str]:
        return dict(self.db.execute(
            "SELECT uuid, anchor FROM uuids WHERE connection=? AND direction=?",
            (self.connection, self.direction)))

    def gone_except(self, present: Iterable[str]) -> dict[str, str]:
        """UUID -> anchor of the map's UUIDs that ``present`` (every UUID a
        server still holds) does not list.

        ``present`` streams into a temporary table and the two are compared
        there: a million UUIDs as a set beside the map as a dict were some
        300 MB.
        """
        db = self.db
        # The temporary database only: nothing here outlives the comparison.
        own = not db.in_transaction
        if own:
            db.execute("BEGIN")
        try:
            db.execute("CREATE TEMP TABLE present_uuids (uuid TEXT PRIMARY KEY) WITHOUT ROWID")
            db.executemany("INSERT OR IGNORE INTO temp.present_uuids VALUES (?)",
                           ((uuid,) for uuid in present))
            return dict(db.execute(
                "SELECT uuid, anchor FROM uuids WHERE connection=? AND direction=? AND uuid "
                "NOT IN (SELECT uuid FROM temp.present_uuids)", (self.connection, self.direction)))
        finally:
            db.execute("DROP TABLE IF EXISTS temp.present_uuids")
            if own:
                db.execute("COMMIT")

    def remember(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO uuids VALUES (?, ?, ?, ?)",
                            ((self.connection, self.direction, u, a) for u, a in pairs))

    def forget(self, uuids: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM uuids WHERE connection=? AND direction=? AND uuid=?",
                            ((self.connection, self.direction, u) for u in uuids))

    def replace(self, pairs: Iterable[tuple[str, str]]) -> None:
        """The map after a full read: exactly ``pairs``."""
        self.db.execute("DELETE FROM uuids WHERE connection=? AND direction=?",
                        (self.connection, self.direction))
        self.remember(pairs)

    # -- state rows by anchor --------------------------------------------------
    def rows(self, anchors: Iterable[str]) -> dict[str, StateRow]:
        return dict(self.row_pairs(anchors))

    def row_pairs(self, anchors: Iterable[str]) -> Iterator[tuple[str, StateRow]]:
        """(anchor, state row) of those of ``anchors`` the state holds, a chunk
        at a time (a run that stores them on disk never holds them all)."""
        for chunk in _chunks(anchors):
            marks = ",".join("?" * len(chunk))
            for anchor, dn, hash_, kind in self.db.execute(
                    f"SELECT anchor, dn, hash, kind FROM entries WHERE connection=? "
                    f"AND direction=? AND anchor IN ({marks})",
                    (self.connection, self.direction, *chunk)).fetchall():
                yield anchor, StateRow(dn, hash_, kind)

    def count(self) -> int:
        return self.state.count(self.connection, self.direction)

    def held(self) -> int:
        """Rows in the state, counted once per run: a count scans them."""
        if self._held is None:
            self._held = self.count()
        return self._held

    def full_due(self, full_every: float) -> str | None:
        """Why an incremental run must be a full one after all, or None."""
        if self.held() == 0:
            return "the state holds no entries"
        last = self.last_full()
        if last is None:
            return "no full run recorded"
        age = (datetime.now(UTC) - last).total_seconds()
        if age >= full_every:
            return f"the last full run was {age / 3600:.1f} h ago (full_every)"
        return None
