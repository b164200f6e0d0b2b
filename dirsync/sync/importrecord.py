"""Steps 5 and 6 of an import (:class:`dirsync.sync.engine.ImportRun`): record state, report.

The state store brought in line with what the run found and applied, and
what became of each planned entry, for the delta report. These functions
are the run's methods (the run binds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dirsync.state.store import StateRow
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.report import ReportItem


def record_state(run: ImportSteps, anchor: str, state: tuple[Any, ...]) -> None:
    if state[0] == "drop":
        run.state.drop(run.name, run.direction, anchor)
    elif state[0] == "put":
        run.state.put(run.name, run.direction, anchor,
                       StateRow(state[1], state[2], state[3]))


def finish_state(run: ImportSteps, interrupted: bool) -> None:
    """Bring the state in line with what this run found the hub to hold.

    Rows of applied changes are already written. Entries found unchanged
    by comparing get their rows; rows of anchors the hub does not hold
    go. After a full run the connection's rows are exactly what it found
    and applied (rows left from before, for entries with errors or gone
    from the hub, go). The fingerprint moves only when the run got to
    its end.
    """
    with run.state.transaction():
        if run.mode == "full" and not interrupted:
            for anchor in run.state.entries(run.name, run.direction):
                if anchor not in run.applied_anchors and anchor not in run.kept \
                        and anchor not in run.refresh:
                    run.state.drop(run.name, run.direction, anchor)
            for anchor, row in run.refresh.items():
                run.state.put(run.name, run.direction, anchor, row)
        else:
            for anchor, row in run.refresh.items():
                run.state.put(run.name, run.direction, anchor, row)
            for anchor in run.state_rows:
                if anchor not in run.index.ours and anchor not in run.applied_anchors:
                    run.state.drop(run.name, run.direction, anchor)
        if not interrupted:
            run.state.set_fingerprint(run.name, run.direction, run.fingerprint)


def report_items(run: ImportSteps) -> Iterator[ReportItem]:
    """The entries not reported yet, with what became of them."""
    for record in run.items:
        yield run.report_item(record)
    for item in sorted(run.inflight):
        yield run.report_item(run.inflight[item])
    run.inflight.clear()


def report_item(run: ImportSteps, record: tuple[Any, ...]) -> ReportItem:
    item, kind, anchor, action, dn, old_dn, before, after, notes = record
    error = None
    if not run.applied:
        status = "planned"
    elif item in run.failed:
        status = "failed"
        failure = run.failed[item]
        error = f"{failure.result}: {failure.message}" if failure.result else failure.message
    elif item in run.unknown:
        status = "unknown"
        error = ("sent, but the connection was lost before the answer; the next run "
                 "checks it")
    elif run.done.get(item, 0) >= run.item_changes.get(item, 0):
        status = "applied"
    elif run.done.get(item, 0):
        status = "partly applied"
        error = "stopped early; the next run applies the rest"
    else:
        status = "not attempted"
    return ReportItem(kind=kind, anchor=anchor, action=action, dn=dn, old_dn=old_dn,
                      status=status, error=error, before=before, after=after, notes=notes)
