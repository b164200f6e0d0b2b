"""Step 5 of an export (:class:`dirsync.sync.exportrun.ExportRun`): apply.

Generated proxy addresses go back to the hub first, then the foreign
changes in phases, each recorded in the state store once the foreign
side confirms it (a file is written whole and atomically first, then its
state rows). These functions are the run's methods (the run binds them).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from dirsync.errors import DirectoryError
from dirsync.interrupt import stop_requested
from dirsync.ldif.changes import Change
from dirsync.ldif.io import LDIFWriter
from dirsync.state.store import StateRow
from dirsync.state.writebehind import write_behind
from dirsync.sync.changelog import logged
from dirsync.sync.exportrecord import HUB_LDIF
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.pipeline import INTERRUPTED
from dirsync.sync.plan import (
    PHASES,
)
from dirsync.sync.spool import Spool, change_from_record

log = logging.getLogger("dirsync.export")



def apply(run: ExportSteps) -> str | None:
    """Hub write-backs, then the foreign phases; returns why it stopped early, or None."""
    run.applied = True
    stopped = None
    file_foreign = run.foreign.kind not in ("ldap", "ad")
    # (One row per change to a file: they wait on disk past a few thousand.)
    run.deferred = Spool(run.spool_items)
    total = sum(len(v) for v in run.phases.values())
    try:
        if run.hub_changes:
            # The hub holds an address before the foreign system learns it.
            run.apply_hub()
        run.progress.start("applying", total)
        for phase in PHASES:
            if run.phases[phase]:
                run.apply_phase(run.phases[phase], file_foreign)
            if stop_requested.is_set():
                stopped = INTERRUPTED
                break
    except DirectoryError as exc:
        log.error("%s: %s", run.name, exc)
        stopped = f"stopped early, the rest is applied by the next run: {exc}"
    if file_foreign:
        try:
            # The whole file, atomically; then the state rows that describe it.
            run.foreign.flush()
        except OSError as exc:
            raise DirectoryError(f"{run.connection.foreign}: cannot write "
                                 f"{run.foreign.path}: {exc.strerror}") from exc
        with run.state.transaction():
            for anchor, row in run.deferred:
                run.record(anchor, None if row is None else StateRow(*row))
        run.deferred.close()
    if stopped is not None:
        # As the import counts them (docs/operations.md): confirmed changes
        # are applied, unanswered ones unknown, unsent ones not attempted.
        for item in run.items:
            if item.counted and item.error is None and not item.unknown \
                    and item.done == 0 < item.changes:
                run.counts.bump(item.action, -1)
                run.counts.not_attempted += 1
    return stopped


def apply_hub(run: ExportSteps) -> None:
    path = run.report.folder / HUB_LDIF
    with open(path, "w", encoding="utf-8", newline="\n") as stream:
        writer = LDIFWriter(stream)
        writer.version()
        writer.comment(f"proxy addresses written to the hub {run.connection.hub} by "
                       f"export run {run.run_id} of connection {run.name}")
        stream.write("\n")
        changes = [c for _, c in run.hub_changes]
        for (index, _), result in zip(run.hub_changes,
                                      run.hub.apply(changes, stop_on_error=False)):
            item = run.items[index]
            if result.error is not None:
                item.error = result.error
                run.counts.error += 1
                continue
            item.done = 1
            writer.change(result.change)
    if run.hub.kind != "ldap":
        run.hub.flush()


def apply_phase(run: ExportSteps, records: Iterable[tuple[int, str | None, Any, str, str]],
                file_foreign: bool) -> None:
    """Send one phase's changes (records as :meth:`plan.add_item` spools them)."""
    # Results come back in the order the changes went out: what was sent and
    # not yet answered waits here, no more than the connection keeps in flight.
    sent: deque[tuple[int, str | None, str, str]] = deque()

    def changes() -> Iterator[Change]:
        for index, anchor, record, state_kind, digest in records:
            if stop_requested.is_set():
                return
            if run.items[index].error is not None:
                continue
            sent.append((index, anchor, state_kind, digest))
            yield change_from_record(record)

    send = logged(run.foreign.apply, run.name, run.run_id, run.direction)
    # A file's rows wait for the file (run.deferred); a server's are written as
    # it confirms each change, a batch at a time (dirsync.state.writebehind).
    def write(confirmed: tuple[str, StateRow | None]) -> None:
        run.record(*confirmed)

    with write_behind(run.state, write) as recorded:
        for result in send(changes(), stop_on_error=False):
            confirmed = run.record_result(result, sent.popleft(), file_foreign)
            if confirmed is not None:
                recorded.add(confirmed)


def record_result(run: ExportSteps, result: Any, sent: tuple[int, str | None, str, str],
                  file_foreign: bool) -> tuple[str, StateRow | None] | None:
    """What became of one change: its item's status; the state row a server's
    confirmation makes (anchor, row; None: a delete's row goes), else None."""
    index, anchor, state_kind, digest = sent
    run.progress.advance()
    item = run.items[index]
    if result.unknown:
        if item.error is None and not item.unknown and item.counted:
            run.counts.bump(item.action, -1)
            run.counts.unknown += 1
        item.unknown = True
        return None
    if result.error is not None:
        if item.error is None and item.counted:
            run.counts.bump(item.action, -1)
            run.counts.error += 1
        item.error = result.error
        return None
    item.done += 1
    run.report.ldif(result.change)
    if anchor is None:
        return None
    row = None if result.change.kind == "delete" else \
        StateRow(result.change.target_dn, digest, state_kind)
    if file_foreign:
        run.deferred.append((anchor, None if row is None else tuple(row)))
        return None
    return anchor, row
