"""Step 5 of an import (:class:`dirsync.sync.engine.ImportRun`): apply.

Phase by phase (deletes, renames, modifies, adds, groups), or, on a first
sync, while the source is read; each change's state row is recorded as
soon as the hub confirms it. These functions are the run's methods (the
run binds them).
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from dirsync.entry import Entry
from dirsync.errors import DirectoryError
from dirsync.interrupt import stop_requested
from dirsync.ldif.changes import Change
from dirsync.state.runlife import AppliedSoFar
from dirsync.state.writebehind import write_behind
from dirsync.sync.changelog import logged
from dirsync.sync.importitems import _Target
from dirsync.sync.importplan import FETCH_CHUNK
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.pipeline import INTERRUPTED
from dirsync.sync.plan import (
    PHASE_ADD,
    PHASE_CONTAINER,
    PHASES,
    EntryPlan,
    candidate_dns,
    place_dn,
)
from dirsync.sync.report import Problem
from dirsync.sync.spool import change_from_record

log = logging.getLogger("dirsync.engine")



def stream_first_sync(run: ImportSteps) -> str | None:
    """Read the source and add its entries to the hub in one pass.

    Only for a connection that owns nothing in the hub yet: no entry can
    be deleted or renamed, so no safety limit applies, and each entry
    gets its DN as it comes (the first of two with one name keeps it).
    Groups wait for the plan, which knows every member's DN. Returns why
    it stopped early, or None.
    """
    run.applied = True
    run.streaming = True
    run.begin_read()
    check = getattr(run.foreign, "check_readable", None)
    if check is not None:
        # A file that turns out not to be CSV halfway must stop the run
        # before the first add, as it would any other run; and its number
        # of rows makes a progress bar possible.
        run.progress.start("adding", check())
    entries = run.source_entries_iter()
    # The first entry is read before anything is written: a mapping that
    # reads attributes the source does not have stops the run here.
    first = next(entries, None)
    try:
        with run.hub_writes() as deferred:
            containers = run.container_changes()
            if containers:
                run.apply_records(
                    ((run.new_item("container", None, c.dn, EntryPlan(
                        "add", [(PHASE_CONTAINER, c)], after=dict(c.attrs or {})),
                        "", "", spool=False)[0]) for c in containers), deferred)
                run.index.container_exists = True
            if first is not None:
                run.apply_records(run.streamed_adds(
                    run.looked_ahead(itertools.chain([first], entries))), deferred)
    except DirectoryError as exc:
        log.error("%s: %s", run.name, exc)
        run.count_unfinished()
        return f"stopped early, the rest is applied by the next run: {exc}"
    if stop_requested.is_set():
        run.count_unfinished()
        return INTERRUPTED
    run.end_read()
    return None


def streamed_adds(run: ImportSteps, entries: Iterable[Entry]) -> Iterator[tuple[Any, ...]]:
    selected = run.selected
    # Held back a few at a time: their addresses are looked up together.
    pending: list[tuple[_Target, Entry]] = []
    for entry in entries:
        target = run.consider(entry)
        if target is None:
            continue
        if target.kind == "group":
            run.keep_target(target)
            continue
        candidates = candidate_dns(target.anchor, target.rdn_value,
                                   selected.rdn_attribute, run.container)
        dn, conflict = place_dn(target.anchor, candidates, run.placed_dns,
                                run.index.unowned)
        if dn is None:
            run.counts.conflict += 1
            run.problems.append(Problem("conflict", target.anchor, None,
                                         conflict or "", target.line))
            continue
        if run._groups:
            # Groups find their members by DN (nothing else asks).
            run.final_dns[target.anchor] = dn
        # Its RDN value is the mapped one unless it took another name.
        pending.append((target, run.build(target, dn, None,
                                          target.rdn_value if dn == candidates[0] else None)))
        if len(pending) >= FETCH_CHUNK:
            yield from run.streamed_batch(pending)
            pending = []
    yield from run.streamed_batch(pending)


def streamed_batch(run: ImportSteps, pending: list[tuple[_Target, Entry]]) -> Iterator[tuple[Any, ...]]:
    run.check_addresses([(target, built, None) for target, built in pending])
    for target, built in pending:
        # ``built`` was made for this add alone and nothing changes it now:
        # the change and the report share its values instead of copies.
        plan = EntryPlan("add", [(PHASE_ADD, Change("add", built.dn, attrs=built.attrs))],
                         after=dict(built.attrs))
        yield from run.new_item(target.kind, target.anchor, built.dn, plan, target.hash,
                                 target.kind, spool=False)


def apply(run: ImportSteps) -> str | None:
    """Apply phase by phase; returns why it stopped early, or None."""
    run.applied = True
    total = sum(len(run.phase_spools[p]) for p in PHASES)
    run.progress.start("applying", total)
    stopped: str | None = None
    try:
        with run.hub_writes() as deferred:
            for phase in PHASES:
                spool = run.phase_spools[phase]
                if len(spool):
                    run.apply_records(((item, anchor, change_from_record(record), state,
                                         action)
                                        for item, anchor, record, state, action in spool),
                                       deferred)
                if stop_requested.is_set():
                    stopped = INTERRUPTED
                    break
    except DirectoryError as exc:
        log.error("%s: %s", run.name, exc)
        stopped = f"stopped early, the rest is applied by the next run: {exc}"
    if stopped is not None:
        run.count_unfinished()
    return stopped


@contextmanager
def hub_writes(run: ImportSteps) -> Iterator[list[tuple[str, tuple[Any, ...]]] | None]:
    """Around applying: a file hub is written back, then its state rows.

    An LDAP hub confirms each change as it goes and its state row is
    written at once (``None`` is yielded); a file hub holds its changes
    in memory until it is flushed, so the rows wait in the yielded list.
    """
    if run.hub.kind == "ldap":
        yield None
        return
    deferred: list[tuple[str, tuple[Any, ...]]] = []
    try:
        yield deferred
    finally:
        run.hub.flush()
        with run.state.transaction():
            for anchor, state in deferred:
                run.record_state(anchor, state)


def apply_records(run: ImportSteps, records: Iterable[tuple[Any, ...]],
                  deferred: list[tuple[str, tuple[Any, ...]]] | None) -> None:
    """Send (item, anchor, change, state, action) records; record each result.

    A change whose entry already failed is not sent (the modify after a
    failed rename would land on the wrong DN). SIGTERM stops the flow:
    the changes in flight finish and are recorded.
    """
    sent: deque[tuple[int, str | None, tuple[Any, ...], str]] = deque()
    if run.so_far is None:
        run.so_far = AppliedSoFar(run.state, run.run_id)

    def changes() -> Iterator[Change]:
        for item, anchor, change, state, action in records:
            if stop_requested.is_set():
                return
            if item in run.failed:
                continue
            sent.append((item, anchor, state, action))
            yield change

    # An LDAP hub has confirmed each change: its state row is written
    # within a fraction of a second, a batch at a time (a file hub's rows
    # wait in ``deferred`` until the file is written).
    def record(row: tuple[str, tuple[Any, ...]]) -> None:
        run.record_state(*row)

    # One log event per change (--log-format json).
    send = logged(run.hub.apply, run.name, run.run_id, run.direction)
    with write_behind(run.state, record) as recorded:
        for result in send(changes(), stop_on_error=False):
            item, anchor, state, action = sent.popleft()
            if not run.streaming:
                # A first sync counts source rows instead, as it reads them.
                run.progress.advance()
            if result.unknown:
                # Applied or not: not a failure, and not recorded in the state,
                # so that the next run compares it and says what it found.
                if item not in run.failed and item not in run.unknown and action:
                    run.counts.bump(action, -1)
                    run.counts.unknown += 1
                run.unknown[item] = anchor
                if item in run.inflight:
                    run.report.item(run.report_item(run.inflight.pop(item)))
                continue
            if result.error is not None:
                if item not in run.failed and action:
                    if item in run.unknown:
                        run.counts.unknown -= 1
                    else:
                        run.counts.bump(action, -1)
                    run.counts.error += 1
                run.failed[item] = result.error
                if item in run.inflight:
                    run.report.item(run.report_item(run.inflight.pop(item)))
                continue
            run.done[item] = run.done.get(item, 0) + 1
            run.report.ldif(result.change)
            if action and run.done[item] == run.item_changes.get(item):
                run.so_far.applied(action)
            if item in run.inflight and run.done[item] >= run.item_changes[item]:
                run.report.item(run.report_item(run.inflight.pop(item)))
                # Reported and done with: nothing asks about this item again.
                del run.done[item], run.item_changes[item]
            if anchor is None or state[0] == "none":
                continue
            run.applied_anchors.add(anchor)
            if deferred is not None:
                deferred.append((anchor, state))
            else:
                recorded.add((anchor, state))


def count_unfinished(run: ImportSteps) -> None:
    """After a stopped apply (the hub lost, or a stop on request): entries
    none of whose changes was sent leave their action's count and count
    as not attempted (the report marks them not applied). Entries with
    some changes confirmed stay counted as their action (the hub shows
    it; the next run does the rest); failed and unknown ones are counted
    already."""
    for record in itertools.chain(run.items, run.inflight.values()):
        item, kind, action = record[0], record[1], record[3]
        if kind == "container" or item in run.failed or item in run.unknown:
            continue
        if run.done.get(item, 0) == 0 and run.item_changes.get(item, 0) > 0:
            run.counts.bump(action, -1)
            run.counts.not_attempted += 1
