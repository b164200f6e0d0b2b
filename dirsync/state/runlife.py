"""Runs whose process died: the history says "running", the lock says nobody is.

A run is recorded when it starts and ended when it finishes. A process
killed in between (kill -9, the machine stopped) leaves a row without an
outcome. Every run holds its connection's lock (:mod:`dirsync.state.locks`), and
the kernel drops that lock with the process: so a row without an outcome
whose connection nobody holds belongs to a dead process. The next run of
the connection, and ``dirsync status``, end such rows as ``died``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from dirsync.state.locks import nobody_runs
from dirsync.state.store import RunRecord, StateStore

log = logging.getLogger("dirsync.run")

DIED = ("its process ended before the run did (killed, or the machine "
        "stopped); its counts are the changes the hub had confirmed a moment before; "
        "the next run picks up what it left")


def reap(state: StateStore, state_dir: Path, connection: str, *,
         holding: bool = False) -> list[RunRecord]:
    """End as ``died`` the connection's runs that no live process runs; returns them.

    ``holding``: the caller holds the connection's lock exclusively and has
    not started its own run yet, so any run still going is dead.
    """
    unfinished = state.unfinished_runs(connection)
    if not unfinished:
        return []
    if not holding and not nobody_runs(state_dir, connection):
        return []
    reaped = [r for r in unfinished if state.end_dead_run(r.id, DIED)]
    for record in reaped:
        record.outcome = "died"
        record.message = DIED
        log.warning("%s: run %d (%s, started %s) died without ending", connection, record.id,
                    record.direction, record.started, extra={"fields": {
                        "connection": connection, "run": record.id,
                        "direction": record.direction, "action": "run",
                        "result": "died", "started": record.started}})
    return reaped


class AppliedSoFar:
    """The changes the hub confirmed, by kind, written to the run's row now and then.

    A run's counts are recorded when it ends; one that dies never ends, and
    its row would say "no changes" after thousands. Every ``interval``
    seconds of applying, the counts so far go to the row (one UPDATE).
    """

    def __init__(self, state: StateStore, run_id: int, interval: float = 1.0) -> None:
        self.state = state
        self.run_id = run_id
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._due = time.monotonic() + interval

    def applied(self, action: str) -> None:
        self.counts[action] = self.counts.get(action, 0) + 1
        if time.monotonic() >= self._due:
            self.state.set_run_counts(self.run_id, self.counts)
            self._due = time.monotonic() + self.interval
