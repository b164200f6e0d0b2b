"""Steps 5 and 6 of an export (:class:`dirsync.sync.exportrun.ExportRun`): record state, report.

The state store brought in line with what the run found and applied, the
change file the foreign system's import tool reads, and what became of
each planned entry. These functions are the run's methods (the run binds
them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from dirsync.ldif.io import LDIFWriter
from dirsync.state.store import StateRow
from dirsync.sync.changefile import write_csv_changes
from dirsync.sync.exportitems import _Item, with_payload
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.plan import (
    PHASES,
)
from dirsync.sync.report import ReportItem
from dirsync.sync.scratch import pairs
from dirsync.sync.spool import change_from_record

#: Extra files of an export report, next to report.FILES.
HUB_LDIF = "hub-changes.ldif"


CSV_CHANGES = "changes.csv"

#: Items whose confirmation makes no state row of their own.
NO_ROW = frozenset({"delete", "container", "proxy"})



def record(run: ExportSteps, anchor: str, row: StateRow | None) -> None:
    if row is None:
        run.state.drop(run.name, run.direction, anchor)
    else:
        run.state.put(run.name, run.direction, anchor, row)


def finish_state(run: ExportSteps, interrupted: bool) -> None:
    """Rows for every exported entry as the foreign side now holds it; the
    generated addresses remembered; the fingerprint moved if the run ended."""
    with run.state.transaction():
        for anchor, address in pairs(run.assigner.changed):
            run.assignments.put(run.connection.hub, run.export.proxy_type, anchor,
                                 address)
        if interrupted:
            return
        run.store_rows(run.final_rows())
        run.state.set_fingerprint(run.name, run.direction, run.fingerprint)


def final_rows(run: ExportSteps) -> Iterator[tuple[str, StateRow]]:
    """The state rows of the entries this run saw, as the foreign side now holds
    them, as (anchor, row) pairs made as they are written: where an anchor comes
    twice, the later row is the one (an entry held back only when nothing else
    says where it is)."""
    for anchor in run.held:
        if anchor in run.ours:
            yield anchor, StateRow(run.ours[anchor].dn, "", "held")
    yield from pairs(run.kept)
    yield from pairs(run.refresh)
    for anchor, dn, digest, kind in run.items.confirmed(NO_ROW):
        yield anchor, StateRow(dn, digest, kind)


def store_rows(run: ExportSteps, rows: Iterable[tuple[str, StateRow]]) -> None:
    """A full run saw every entry: its rows are the whole state."""
    run.state.replace_all(run.name, run.direction, rows)


def write_change_files(run: ExportSteps, planned: bool) -> None:
    """The planned LDIF (for plan and stops), and the CSV change file."""
    run.extra_files = {}
    if planned:
        for phase in PHASES:
            for _, _, record, _, _ in run.phases[phase]:
                run.report.ldif(change_from_record(record))
        if run.hub_changes:
            path = run.report.folder / HUB_LDIF
            with open(path, "w", encoding="utf-8", newline="\n") as stream:
                writer = LDIFWriter(stream)
                writer.version()
                writer.comment("proxy addresses to write to the hub (plan: nothing was "
                               "applied)")
                stream.write("\n")
                for _, change in run.hub_changes:
                    writer.change(change)
    if run.hub_changes:
        run.extra_files["hub_ldif"] = run.report.folder / HUB_LDIF
    if run.csv:
        path = run.report.folder / CSV_CHANGES
        write_csv_changes(path, run.foreign, run.full_items(), planned=planned)
        run.extra_files["changes_csv"] = path


def full_items(run: ExportSteps) -> Iterator[_Item]:
    """Each planned item whole (its payload read back from the spool), in order."""
    for item, payload in zip(run.items, run.payloads, strict=True):
        yield with_payload(item, payload)


def report_items(run: ExportSteps) -> Iterator[ReportItem]:
    for item in run.full_items():
        error = None
        if not run.applied:
            status = "planned"
        elif item.error is not None:
            status = "failed"
            error = f"{item.error.result}: {item.error.message}" if item.error.result \
                else item.error.message
        elif item.unknown:
            status = "unknown"
        elif item.done >= item.changes:
            status = "applied"
        else:
            status = "partly applied" if item.done else "not attempted"
        yield ReportItem(kind=item.kind, anchor=item.anchor, action=item.action,
                         dn=item.dn, old_dn=item.old_dn, status=status, error=error,
                         before=item.before, after=item.after, notes=item.notes)
