"""The state store: one embedded SQLite file (``state`` in the config).

Per connection and direction it holds the anchor-to-DN map with a hash of
each source entry as last synced, the connection's fingerprint (mapping
and settings), cursors, and the history of runs.

The hub is the truth and the state an accelerator: an entry whose source
hash, DN and fingerprint are unchanged needs no mapping and no compare.
A state row is written after the hub confirms the change it records
(a run commits them a batch at a time: :mod:`dirsync.state.writebehind`),
so a run killed at any moment leaves
rows that describe changes the hub really holds; whatever the hub holds
beyond that (an add confirmed but not yet recorded) is found by the next
run in the hub itself, by its marker and anchor.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives the
process being killed (the WAL is written before COMMIT returns), though
not a power cut in the last moments; the next run reconciles with the hub
either way.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Self

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    connection TEXT NOT NULL,
    direction TEXT NOT NULL,
    anchor TEXT NOT NULL,
    dn TEXT NOT NULL,
    hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (connection, direction, anchor)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints (
    connection TEXT NOT NULL,
    direction TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (connection, direction)
);
CREATE TABLE IF NOT EXISTS cursors (
    connection TEXT NOT NULL,
    direction TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (connection, direction, name)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    connection TEXT NOT NULL,
    direction TEXT NOT NULL,
    mode TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    started TEXT NOT NULL,
    ended TEXT,
    outcome TEXT,
    counts TEXT,
    report TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_connection ON runs (connection, id);
"""


class StateRow(NamedTuple):
    dn: str
    hash: str
    kind: str


@dataclass
class RunRecord:
    id: int
    connection: str
    direction: str
    mode: str
    dry_run: bool
    started: str
    ended: str | None
    outcome: str | None
    counts: dict[str, int]
    report: str | None
    message: str | None

    @property
    def duration(self) -> float | None:
        if not self.ended:
            return None
        return (datetime.fromisoformat(self.ended)
                - datetime.fromisoformat(self.started)).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.id, "connection": self.connection, "direction": self.direction,
                "mode": self.mode, "dry_run": self.dry_run, "started": self.started,
                "ended": self.ended, "duration": self.duration,
                "status": self.outcome or "running", "counts": self.counts,
                "report": self.report, "message": self.message}


_RUN_COLUMNS = ("id, connection, direction, mode, dry_run, started, ended, outcome, counts, "
                "report, message")


def _run_record(r: tuple[Any, ...]) -> RunRecord:
    return RunRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7],
                     json.loads(r[8]) if r[8] else {}, r[9], r[10])


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


#: How long a statement waits for another process or thread's lock.
_BUSY_TIMEOUT = 30.0


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to write-ahead logging, once for all its users.

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy wait, when another connection opens
    the file at the same moment (two connections of one schedule starting
    on the same tick did): so the mode is read first (it persists in the
    file) and the switch is retried while someone else holds the file.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class StateStore:
    """One SQLite state file; safe to open from several processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction below is explicit.
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=_BUSY_TIMEOUT)
        _use_wal(self.db)
        self.db.execute("PRAGMA synchronous=NORMAL")
        # A run commits once per change: checkpoint (and flush to disk) every
        # 8,192 pages instead of 1,000, so that a large run does not keep the
        # disk busy while the directory server waits for it, and give the WAL
        # file back down to 64 MB afterwards.
        self.db.execute("PRAGMA wal_autocheckpoint=8192")
        self.db.execute("PRAGMA journal_size_limit=67108864")
        self._depth = 0
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            found = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if found is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer dirsync "
                                   f"(state schema {found[0]})")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- entries ---------------------------------------------------------
    def entries(self, connection: str, direction: str = "import") -> dict[str, StateRow]:
        rows = self.db.execute(
            "SELECT anchor, dn, hash, kind FROM entries WHERE connection=? AND direction=?",
            (connection, direction))
        return {anchor: StateRow(dn, hash_, kind) for anchor, dn, hash_, kind in rows}

    def count(self, connection: str, direction: str = "import") -> int:
        return int(self.db.execute(
            "SELECT count(*) FROM entries WHERE connection=? AND direction=?",
            (connection, direction)).fetchone()[0])

    def put(self, connection: str, direction: str, anchor: str, row: StateRow) -> None:
        """Record one entry: committed at once, unless inside :meth:`transaction`.

        Outside a transaction the one statement is its own transaction
        (SQLite's autocommit), which costs a third of BEGIN, INSERT, COMMIT.
        """
        self.db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                        (connection, direction, anchor, row.dn, row.hash, row.kind))

    def drop(self, connection: str, direction: str, anchor: str) -> None:
        """Forget one entry: committed at once, unless inside :meth:`transaction`."""
        self.db.execute("DELETE FROM entries WHERE connection=? AND direction=? AND anchor=?",
                        (connection, direction, anchor))

    def replace_all(self, connection: str, direction: str,
                    rows: Iterable[tuple[str, StateRow]]) -> None:
        """Forget every row of the connection and write ``rows`` instead."""
        with self.transaction():
            self.db.execute("DELETE FROM entries WHERE connection=? AND direction=?",
                            (connection, direction))
            self.db.executemany(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                ((connection, direction, anchor, r.dn, r.hash, r.kind) for anchor, r in rows))

    # -- fingerprints and cursors ----------------------------------------
    def fingerprint(self, connection: str, direction: str = "import") -> str | None:
        found = self.db.execute(
            "SELECT fingerprint FROM fingerprints WHERE connection=? AND direction=?",
            (connection, direction)).fetchone()
        return found[0] if found else None

    def set_fingerprint(self, connection: str, direction: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)",
                            (connection, direction, value, now()))

    def cursor(self, connection: str, direction: str, name: str) -> str | None:
        """A stored cursor (a syncrepl cookie, a file hash ...), or None."""
        found = self.db.execute(
            "SELECT value FROM cursors WHERE connection=? AND direction=? AND name=?",
            (connection, direction, name)).fetchone()
        return found[0] if found else None

    def set_cursor(self, connection: str, direction: str, name: str, value: str) -> None:
        """Advance a cursor; call it only at the end of a successful run."""
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?, ?)",
                            (connection, direction, name, value, now()))

    def forget(self, connection: str, direction: str = "import") -> None:
        """Drop everything known about a connection's direction (not its history)."""
        with self.transaction():
            for table in ("entries", "fingerprints", "cursors"):
                self.db.execute(f"DELETE FROM {table} WHERE connection=? AND direction=?",
                                (connection, direction))

    # -- run history -----------------------------------------------------
    def start_run(self, connection: str, direction: str, mode: str, dry_run: bool) -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO runs (connection, direction, mode, dry_run, started) "
                "VALUES (?, ?, ?, ?, ?)", (connection, direction, mode, int(dry_run), now()))
        return int(cursor.lastrowid or 0)

    def set_run_mode(self, run_id: int, mode: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE runs SET mode=? WHERE id=?", (mode, run_id))

    def end_run(self, run_id: int, outcome: str, counts: dict[str, int],
                report: str | None = None, message: str | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET ended=?, outcome=?, counts=?, report=?, message=? WHERE id=?",
                (now(), outcome, json.dumps(counts), report, message, run_id))

    def unfinished_runs(self, connection: str) -> list[RunRecord]:
        """The connection's runs the history shows as still going, oldest first."""
        rows = self.db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE connection=? AND outcome IS NULL "
            "ORDER BY id", (connection,)).fetchall()
        return [_run_record(r) for r in rows]

    def set_run_counts(self, run_id: int, counts: dict[str, int]) -> None:
        """The counts so far of a run still going (a run that dies keeps them)."""
        self.db.execute("UPDATE runs SET counts=? WHERE id=? AND outcome IS NULL",
                        (json.dumps(counts), run_id))

    def last_counts(self, connection: str, direction: str) -> dict[str, int]:
        """The counts of the connection's last sync (not a plan) that ended ``ok``."""
        found = self.db.execute(
            "SELECT counts FROM runs WHERE connection=? AND direction=? AND dry_run=0 "
            "AND outcome='ok' ORDER BY id DESC LIMIT 1", (connection, direction)).fetchone()
        return json.loads(found[0]) if found and found[0] else {}

    def end_dead_run(self, run_id: int, message: str) -> bool:
        """Mark a run whose process is gone as ``died``; False if it had ended meanwhile."""
        with self.transaction():
            cursor = self.db.execute(
                "UPDATE runs SET outcome='died', message=? WHERE id=? AND outcome IS NULL",
                (message, run_id))
        return cursor.rowcount > 0

    def runs(self, connection: str | None = None, limit: int = 10) -> list[RunRecord]:
        """The newest runs first."""
        query = f"SELECT {_RUN_COLUMNS} FROM runs"
        params: tuple[Any, ...] = ()
        if connection is not None:
            query += " WHERE connection=?"
            params = (connection,)
        query += " ORDER BY id DESC LIMIT ?"
        rows = self.db.execute(query, (*params, limit)).fetchall()
        return [_run_record(r) for r in rows]

    def connections(self) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT connection FROM runs ORDER BY connection")
        return [r[0] for r in rows]
