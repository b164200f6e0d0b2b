"""A changed source file compared with the state row by row, by digest (the import).

A file says nothing of what changed in it: when its fingerprint moves, a
run used to read every row as an entry, work out its anchor with the
mapping, and look its state row and hub entry up, a few dozen microseconds
a row. An export written again in another order, or with 1% of its rows
changed, cost a million of those at a million rows.

Here the rows are only digested (:meth:`CSVDirectory.digests`, the digest
the state holds for each entry synced from a row) into a temporary table
of the state database, and merged in digest order with the state's rows:

- a row whose digest no state row has is new or changed;
- a state row whose digest no row has is changed or gone.

Only those rows are read again as entries, and the run goes on as one that
reads changes (:mod:`dirsync.sync.importchanges`): the state is trusted and
the hub is asked about the changed entries only, as when a directory says
what changed. What drifted in the hub behind the state's back is put right
by the next full run (``full_every``, ``--full``).

The comparison gives way to the entry-by-entry one, with the reason, when
it would not say the same: rows with the same key (the reader rejects the
later ones), an anchor that a changed row and an unchanged one share, or
more changes than :func:`limit` (a file mostly rewritten is as well read
whole).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from dirsync.directories.csvfile import CSVDirectory
from dirsync.entry import Entry
from dirsync.sync.changefeed import Changes
from dirsync.sync.changestate import ChangeState
from dirsync.sync.entryspool import EntrySpool

#: Changes (rows and state rows) read as changes at most, whatever the size.
MAX_CHANGES = 50_000
#: Rows of each side read at a time by the merge.
_BLOCK = 8192
_digest = itemgetter(0)

#: A source entry's anchor, or "" when the mapping makes none.
AnchorOf = Callable[[Entry], str]


def limit(held: int) -> int:
    """The most changes a run reads as changes: a tenth of what the state
    holds (at least 1,000), at most :data:`MAX_CHANGES`."""
    return min(MAX_CHANGES, max(1_000, held // 10))


def diff_file(source: CSVDirectory, tracking: ChangeState, anchor_of: AnchorOf,
              check_header: Callable[[list[str]], None]) -> Changes | str:
    """What changed in ``source`` (a CSV directory) since the state's rows of
    this connection's import (``tracking``); else why its entries must be
    compared one by one. ``check_header`` raises when the mapping names
    columns the file lacks.
    """
    most = limit(tracking.held())
    db = tracking.db
    # A transaction of its own, on the temporary database only: the state's
    # rows are read, never written, and nothing here outlives the comparison.
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        db.execute("CREATE TEMP TABLE filediff (digest TEXT, keyfold TEXT, line INTEGER, "
                   "last INTEGER)")
        # sqlite3 takes the rows from the iterator itself, in C.
        db.executemany("INSERT INTO temp.filediff VALUES (?, ?, ?, ?)", source.digests())
        if source.header:
            check_header(source.header)
        try:
            db.execute("CREATE UNIQUE INDEX temp.filediff_key ON filediff(keyfold)")
        except sqlite3.IntegrityError:
            return "rows share a key"
        db.execute("CREATE INDEX temp.filediff_digest ON filediff(digest, line, last)")
        found = _merge(db, tracking, most)
    finally:
        db.execute("DROP TABLE IF EXISTS temp.filediff")
        if own:
            db.execute("COMMIT")
    if isinstance(found, str):
        return found
    spans, gone = found
    changed = EntrySpool()
    anchors: set[str] = set()
    for entry in (source.read_lines(spans) if spans else ()):
        changed.append((f"line {entry.line}", entry))
        anchor = anchor_of(entry)
        if anchor:
            anchors.add(anchor)
    # A changed row whose anchor an unchanged row holds: two rows with one
    # anchor, which only an entry-by-entry read reports as it should.
    unchanged = set(tracking.rows(anchors)) - gone
    if unchanged:
        changed.close()
        return f"a changed row has the anchor {min(unchanged)!r} of an unchanged one"
    deleted = gone - anchors
    return Changes(changed, deleted, {anchor: anchor for anchor in deleted})


def _merge(db: sqlite3.Connection, tracking: ChangeState,
           most: int) -> tuple[dict[int, int], set[str]] | str:
    """(first line -> last line of the rows no state row has, anchors of the
    state rows no row has); else why not (past ``most`` of them, or state rows
    that share a digest).

    Both sides are read in digest order, a block at a time; the digests of
    both up to the smaller of their last ones are compared as sets (in C),
    the rest wait for the next block.
    """
    where = (tracking.connection, tracking.direction)
    gone: set[str] = {anchor for (anchor,) in db.execute(
        "SELECT anchor FROM entries WHERE connection=? AND direction=? AND hash = ''", where)}
    lines: dict[int, int] = {}
    rows = db.execute("SELECT digest, line, last FROM temp.filediff ORDER BY digest")
    held = db.execute("SELECT hash, anchor FROM entries WHERE connection=? AND direction=? "
                      "AND hash != '' ORDER BY hash", where)
    try:
        mine: list[tuple[Any, ...]] = []      # rows read, not compared yet
        theirs: list[tuple[str, Any]] = []    # state rows read, not compared yet
        last = ""
        while True:
            more_mine = rows.fetchmany(_BLOCK)
            more_theirs = held.fetchmany(_BLOCK)
            mine += more_mine
            theirs += more_theirs
            if not mine and not theirs:
                break
            # Everything up to the smaller last digest of a side not yet at its end.
            ends = [side[-1][0] for side, more in ((mine, more_mine), (theirs, more_theirs))
                    if more and side]
            bound = min(ends) if ends else None
            cut_mine = len(mine) if bound is None else bisect_right(mine, bound, key=_digest)
            cut_theirs = len(theirs) if bound is None else \
                bisect_right(theirs, bound, key=_digest)
            part_mine, mine = mine[:cut_mine], mine[cut_mine:]
            part_theirs, theirs = theirs[:cut_theirs], theirs[cut_theirs:]
            digests = {row[0] for row in part_mine}
            hashes = {digest for digest, _ in part_theirs}
            if len(hashes) < len(part_theirs) or (part_theirs and part_theirs[0][0] == last):
                return "state rows share a digest"
            if part_theirs:
                last = part_theirs[-1][0]
            lines.update((line, last) for digest, line, last in part_mine
                         if digest not in hashes)
            gone.update(anchor for digest, anchor in part_theirs if digest not in digests)
            if len(lines) + len(gone) > most:
                return f"more than {most:,} rows changed"
    finally:
        rows.close()
        held.close()
    if len(lines) + len(gone) > most:
        return f"more than {most:,} rows changed"
    return lines, gone
