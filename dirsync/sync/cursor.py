"""A run's cursor on its source: everything, or what changed since last time.

Both directions hold one :class:`Cursor` (``run.cursor``) and ask it, before
reading, whether this run reads everything or only the changes since the
stored cursors; its feed (:mod:`dirsync.sync.changefeed`) knows how the
source says what changed. What both directions share lives here once:

- an incremental run becomes a full one, with the reason logged, when the
  state is empty, when ``full_every`` has passed since the last full run,
  or when the feed cannot serve its cursor;
- entries that had errors do not hold the cursor back (one bad entry
  would make every later run re-read everything since): their UUIDs are
  kept (``retry-uuids``) and read again by the next run;
- a file source as it was last time ends the run at once;
- the cursors, the UUID maps and the retry set move only when the run ends
  well (:meth:`Cursor.commit`, STYLE.md item 4): never on a dry run, a
  safety stop, a stop on request or a server that went away; those runs
  read the same changes again next time. A file read with errors keeps no
  fingerprint, so the next run reads it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from dirsync.config import ConnectionConfig
from dirsync.state.store import StateStore
from dirsync.sync.changefeed import ChangeFeed, Changes, Feed, FileFeed
from dirsync.sync.changestate import ChangeState
from dirsync.sync.entryspool import EntrySpool
from dirsync.sync.plan import Counts
from dirsync.sync.report import Problems


class RunFields(Protocol):
    """What the cursor reads and sets of the run it serves
    (:class:`dirsync.sync.pipeline.Run`)."""

    name: str
    direction: str
    mode: str
    run_id: int
    state: StateStore
    counts: Counts
    connection: ConnectionConfig
    problems: Problems
    held: set[str]              # anchors with errors, left as they are


class Cursor:
    """One connection's direction: whether its run reads everything or the
    changes since the cursors, and the cursors moved when it ends well.

    ``by_uuid``: the direction's anchors are the source's UUIDs (the export);
    otherwise (the import) the UUID map turns anchors back into UUIDs.
    """

    def __init__(self, state: StateStore, connection: str, direction: str,
                 log: logging.Logger, *, by_uuid: bool) -> None:
        self.state = state
        self.tracking = ChangeState(state, connection, direction)
        self.log = log
        self.by_uuid = by_uuid
        self.feed: Feed | None = None       # set once the source is open
        #: What changed since the cursors, when this run reads only that.
        self.changes: Changes | None = None
        #: The UUID of the source entry being considered, and those with problems.
        self.current: str | None = None
        self.problem_uuids: set[str] = set()

    @property
    def method(self) -> str | None:
        """syncrepl | timestamp | dirsync | usn | file | None (read whole every time)."""
        return self.feed.method if self.feed is not None else None

    @property
    def incremental(self) -> bool:
        """Whether this run reads only what changed."""
        return self.changes is not None

    def held(self) -> int:
        """Entries in the state for this direction (counted once per run)."""
        return self.tracking.held()

    # -- before reading -------------------------------------------------------
    def start(self, run: RunFields) -> bool:
        """Decide full or incremental and read what changed; True when the
        source is a file as it was at the last run (nothing to read)."""
        if run.mode == "incremental":
            due = self.tracking.full_due(run.connection.full_every)
            if due:
                self.go_full(run, due)
        feed = self.feed
        if isinstance(feed, FileFeed):
            if not feed.changed(self.tracking):
                return run.mode == "incremental"
            if run.mode == "incremental" and feed.differ is not None:
                compared = feed.differ()
                if isinstance(compared, str):
                    self.log.info("%s: %s is compared entry by entry: %s", run.name,
                                  feed.path, compared)
                else:
                    self.changes = compared
            return False
        if not isinstance(feed, ChangeFeed) or run.mode != "incremental":
            return False
        found = feed.read_changes(self.tracking)
        if isinstance(found, str):
            self.go_full(run, found)
            return False
        # Entries that had errors last time are read again.
        retry = self.tracking.retry() - found.deleted
        if retry:
            keys = found.changed.keys() if isinstance(found.changed, EntrySpool) \
                else (uuid for uuid, _ in found.changed)
            retry.difference_update(keys)
        if retry:
            again = feed.read_uuids(sorted(retry))
            if isinstance(found.changed, EntrySpool):
                found.changed.extend(again.items())
            else:
                found.changed = [*found.changed, *again.items()]
            missing = retry - set(again)
            found.deleted |= missing if self.by_uuid else set(self.tracking.anchors_of(missing))
        self.changes = found
        return False

    def drop_changes(self) -> None:
        """Let go of the changes read: a spool of them closes its temporary
        file now, not when the collector finds it (a scheduler's process
        runs for months)."""
        if self.changes is not None and isinstance(self.changes.changed, EntrySpool):
            self.changes.changed.close()
        self.changes = None
        if isinstance(self.feed, ChangeFeed):
            self.feed.close_reads()

    def go_full(self, run: RunFields, why: str) -> None:
        self.log.info("%s: a full %s run: %s", run.name, run.direction, why, extra={"fields": {
            "connection": run.name, "run": run.run_id, "direction": run.direction,
            "action": "full-run", "result": why}})
        run.mode = "full"
        self.drop_changes()
        if self.feed is not None:
            self.feed.reset()
        run.state.set_run_mode(run.run_id, "full")

    def count_unchanged(self, run: RunFields, path: object) -> None:
        """The counts of a run whose source file is as last time: nothing read,
        nothing changed."""
        self.log.info("%s: %s is unchanged since the last run", run.name, path)
        run.counts.unchanged = self.held()
        # The rows skipped when this file was read are skipped still: say so
        # as the run that read it did (the file cursor moves only on a clean run).
        run.counts.skipped = int(run.state.last_counts(run.name, run.direction)
                                 .get("skipped", 0))

    # -- after the run ----------------------------------------------------------
    def retry_of(self, anchors: Iterable[str]) -> set[str]:
        """The UUIDs of the entries (by anchor) this run could not bring in step."""
        if self.by_uuid:
            return set(anchors)
        uuids = set(self.problem_uuids)
        by_anchor: dict[str, str] = {}
        if self.feed is not None and self.feed.streams:
            by_anchor = {a: u for u, a in self.feed.streams[0].read.items()}
        if self.changes is not None:
            known = self.changes.known
            by_anchor.update({known[u]: u for u in self.changes.deleted if u in known})
        uuids |= {by_anchor[a] for a in anchors if a in by_anchor}
        return uuids

    def commit(self, run: RunFields, failed: Iterable[str]) -> None:
        """The run ended well: store the cursors, the UUID maps and the UUIDs of
        the entries to read again: those with errors or conflicts, those held
        as they are, and those whose changes failed (``failed``, by anchor)."""
        anchors = {p.anchor for p in run.problems
                   if p.kind in ("error", "conflict") and p.anchor}
        failed = anchors | run.held | set(failed)
        feed = self.feed
        tracking = self.tracking
        with self.state.transaction():
            if isinstance(feed, FileFeed):
                feed.finish(clean=not (run.counts.error or run.counts.conflict))
            elif feed is not None:
                retry = self.retry_of(failed)
                # An import's anchor is not its UUID: a deleted entry's UUID
                # stays in the map while it is retried, to find its anchor again.
                feed.commit(run.mode == "full", set() if self.by_uuid else retry)
                tracking.set_retry(retry)
            if feed is not None:
                for name, value in feed.pending.items():
                    tracking.set_cursor(name, value)
            if run.mode == "full":
                tracking.mark_full()
