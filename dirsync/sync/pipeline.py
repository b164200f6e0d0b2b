"""What every run shares, whichever its direction.

:class:`Run` is the lifecycle of one run of one connection in one direction:
open both sides, decide full or incremental from the mapping's fingerprint,
start the history row and the report (:meth:`Run.recorded`), run the steps,
then end the report, the history row and the result (:meth:`Run.conclude`),
and close both sides whatever happened. The import
(:class:`dirsync.sync.engine.ImportRun`) and the export
(:class:`dirsync.sync.exportrun.ExportRun`) fill in what differs: what the
mapping and fingerprint are (:meth:`Run.load`), what a run needs once both
sides are open (:meth:`Run.setup`), the steps themselves (``_run``), and
what the report says the source and the target were (:meth:`Run.report_fields`).
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirsync.config import Config, ConnectionConfig
from dirsync.directories.gcpause import frozen_heap
from dirsync.errors import DirsyncError
from dirsync.state.store import StateStore, now
from dirsync.sync.changefeed import Feed
from dirsync.sync.cursor import Cursor
from dirsync.sync.plan import Counts, safety_stop
from dirsync.sync.progress import Progress, Silent
from dirsync.sync.report import Problems, Report, ReportItem
from dirsync.sync.runlog import log_problems

#: The message of a run stopped by SIGINT or SIGTERM (status ``interrupted``).
INTERRUPTED = "interrupted on request; the rest is applied by the next run"


@dataclass
class SyncOptions:
    dry_run: bool = False
    full: bool = False
    allow_deletes: int | None = None
    progress: Progress = field(default_factory=Silent)


@dataclass
class RunResult:
    """One connection in one direction: what its ``--json`` line says."""

    connection: str
    direction: str
    mode: str
    dry_run: bool
    status: str                      # ok | errors | stopped | interrupted
    counts: Counts
    report: Path | None
    files: dict[str, Path]
    run_id: int
    started: str
    ended: str
    message: str | None = None

    @property
    def exit_status(self) -> int:
        return {"ok": 0, "errors": 1, "stopped": 3, "interrupted": 130}.get(self.status, 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "direction": self.direction,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "status": self.status,
            "counts": self.counts.as_dict(),
            "report": str(self.report) if self.report else None,
            "files": {k: str(v) for k, v in self.files.items()},
            "run": self.run_id,
            "started": self.started,
            "ended": self.ended,
            "message": self.message,
        }


def peak_memory_mb() -> float:
    """This process's peak resident memory, in MB.

    Linux's VmHWM counts only this program; ru_maxrss would also count the
    parent's memory from before exec().
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Run:
    """One run of one connection in one direction: the lifecycle both directions share."""

    direction: str
    target_words: str           # what the target is called in messages: "the hub"...
    unchanged_words: str        # the message of a run whose source file is as last time
    log: logging.Logger
    report: Report              # set by recorded() when the run starts
    fingerprint: str            # set by load()
    #: The source's cursor: everything, or what changed since (set by the direction).
    cursor: Cursor
    held: set[str]              # anchors with errors: left as they are (set by the read)

    def __init__(self, config: Config, connection: ConnectionConfig, state: StateStore,
                 options: SyncOptions) -> None:
        self.config = config
        self.connection = connection
        self.state = state
        self.options = options
        self.progress = options.progress
        self.name = connection.name
        self.counts = Counts()
        self.problems: Problems = []
        self.started = now()
        self.mode = "full"
        self.run_id = 0
        self.hub: Any = None
        self.foreign: Any = None
        self.held: set[str] = set()

    # -- what each direction fills in --------------------------------------
    def load(self) -> None:
        """Load the mapping and set :attr:`fingerprint` (before any directory opens)."""
        raise NotImplementedError

    def setup(self) -> None:
        """What the run needs once both directories are open."""

    def release(self) -> None:
        """Let go of what the run holds (spools), whatever happened."""

    def _run(self) -> RunResult:
        raise NotImplementedError

    def report_fields(self) -> dict[str, Any]:
        """What the report says the target, the source, the hub and the mapping were."""
        raise NotImplementedError

    def source(self) -> Any:
        """The directory this run reads (the other one is its target)."""
        raise NotImplementedError

    def source_feed(self) -> Feed | None:
        """How the source reads everything, or what changed since its cursor."""
        return None

    def accept_changes(self) -> None:
        """What the run needs to plan from the changes alone (when it reads only those)."""

    def held_count(self) -> int:
        """Entries of this connection the target holds, for the delete threshold."""
        raise NotImplementedError

    # -- the steps both directions take alike --------------------------------
    def begin(self) -> bool:
        """Read everything, or what changed since the source's cursor
        (:class:`dirsync.sync.cursor.Cursor`); True when the source is a file
        as it was at the last run, which ends the run at once."""
        # Asked here, inside the run's history: a source that cannot say
        # how it reads (a server gone) fails the run as any read would.
        self.cursor.feed = self.source_feed()
        if self.timed("change read", lambda: self.cursor.start(self)):
            return True
        if self.cursor.incremental:
            self.accept_changes()
        return False

    def end_unchanged(self) -> RunResult:
        self.cursor.count_unchanged(self, getattr(self.source(), "path", None))
        return self.conclude("ok", self.unchanged_words, iter(()))

    def timed(self, step: str, func: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return func()
        finally:
            self.log.debug("%s: %s took %.2fs (peak memory so far %.0f MB)", self.name, step,
                           time.perf_counter() - started, peak_memory_mb())

    def safety(self, deletes: int, source_entries: int) -> str | None:
        """Why the run must stop before changing anything, or None."""
        return safety_stop(deletes=deletes, held=self.held_count(),
                           threshold=self.connection.delete_threshold,
                           source_entries=source_entries,
                           allow_deletes=self.options.allow_deletes,
                           target=self.target_words)

    def status(self, stop: str | None, interrupted: bool, on_request: bool) -> str:
        """The run's status: stopped by a safety limit, interrupted on request,
        ended with errors (or a lost connection), or ok."""
        if stop is not None:
            return "stopped"
        if on_request:
            return "interrupted"
        if interrupted or self.counts.error or self.counts.conflict:
            return "errors"
        return "ok"

    # -- the lifecycle -----------------------------------------------------
    def __call__(self) -> RunResult:
        self.load()
        with frozen_heap():
            return self._call()

    def _call(self) -> RunResult:
        # Full when asked, or when anything that decides the result changed.
        stored = self.state.fingerprint(self.name, self.direction)
        self.mode = "full" if self.options.full or stored != self.fingerprint else "incremental"
        self.hub = self.config.directories[self.connection.hub].open()
        try:
            self.foreign = self.config.directories[self.connection.foreign].open()
            try:
                self.setup()
                return self.recorded()
            finally:
                self.release()
        finally:
            self.progress.finish()
            if self.foreign is not None:
                self.foreign.close()
            # A file hub writes itself back here, and only if changes were applied.
            self.hub.close()

    def recorded(self) -> RunResult:
        """Run the steps between the run's history row and its report: a run
        that fails is recorded as failed and its report dropped."""
        self.run_id = self.state.start_run(self.name, self.direction, self.mode,
                                           self.options.dry_run)
        self.report = Report.create(self.config.reports, self.name, self.direction,
                                    self.run_id, self.options.dry_run)
        try:
            result: RunResult = self.end_unchanged() if self.begin() else self._run()
            return result
        except DirsyncError as exc:
            self.state.end_run(self.run_id, "failed", self.counts.as_dict(), None, str(exc))
            self.report.discard()
            raise

    def conclude(self, status: str, message: str | None, items: Iterable[ReportItem],
                 files: dict[str, Path] | None = None) -> RunResult:
        """End the run: its problems logged, its report written, its history row
        ended, its result."""
        ended = now()
        log_problems(self.name, self.run_id, self.direction, self.problems)
        written = self.report.finish(
            run={"connection": self.name, "direction": self.direction, "mode": self.mode,
                 "dry_run": self.options.dry_run, "status": status, "run": self.run_id,
                 "started": self.started, "ended": ended, "message": message,
                 **self.report_fields()},
            counts=self.counts, items=items, problems=self.problems)
        written.update(files or {})
        self.state.end_run(self.run_id, status, self.counts.as_dict(), str(self.report.folder),
                           message)
        return RunResult(self.name, self.direction, self.mode, self.options.dry_run, status,
                         self.counts, self.report.folder, written, self.run_id, self.started,
                         ended, message)
