"""Steps 5 and 6 of an import (:class:`dirsync.sync.engine.ImportRun`): record state, report.

The state store brought in line with what the run found and applied, and
what became of each planned entry, for the delta report. These functions
are the run's methods (the run binds them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from dirsync.state.staterows import StateRows
from dirsync.state.store import StateRow
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.report import ReportItem
from dirsync.sync.scratch import DiskMap, Keyed, pairs
from dirsync.sync.spool import Spool


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
    stale: Iterable[str]
    with run.state.transaction():
        if run.mode == "full" and not interrupted:
            # Rows of anchors neither applied nor found unchanged go.
            # A full run keeps these three in its scratch database (begin_read,
            # new_plan); an incremental one never comes here.
            found = run.scratch.sorted_keys(*cast(list[Keyed], [run.applied_anchors, run.kept,
                                                                  run.refresh]))
            stale = missing_from(StateRows(run.state, run.name, run.direction), found)
        else:
            # Rows of anchors the hub does not hold and no change of this run made go.
            stale = rows_gone(run)
        for anchor in stale:
            run.state.drop(run.name, run.direction, anchor)
        for anchor, row in pairs(run.refresh):
            run.state.put(run.name, run.direction, anchor, row)
        if not interrupted:
            run.state.set_fingerprint(run.name, run.direction, run.fingerprint)


def rows_gone(run: ImportSteps) -> Iterable[str]:
    """The anchors of state rows the run compared against that the hub does not
    hold and that no change of this run wrote."""
    rows, ours = run.state_rows, run.index.ours
    if isinstance(rows, StateRows) and isinstance(ours, DiskMap):
        return missing_from(rows, run.scratch.sorted_keys(
            ours, cast(Keyed, run.applied_anchors)))
    return [a for a in rows if a not in ours and a not in run.applied_anchors]


def missing_from(anchors: Iterable[str], present: Iterable[str]) -> Spool:
    """The anchors (in order) that ``present`` (in the same order) lacks,
    spooled: the caller changes the rows that ``anchors`` is read from."""
    gone = Spool()
    others = iter(present)
    other = next(others, None)
    for anchor in anchors:
        while other is not None and other < anchor:
            other = next(others, None)
        if other != anchor:
            gone.append(anchor)
    return gone


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
