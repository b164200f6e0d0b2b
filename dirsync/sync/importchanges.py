"""The import when its source says what changed (:class:`dirsync.sync.engine.ImportRun`).

The source's feed (:mod:`dirsync.sync.changefeed`; AD's in
:mod:`dirsync.sync.adchanges`) reads everything or the changes since its
cursor, through the run's :class:`dirsync.sync.cursor.Cursor`. These
functions are the run's steps where an incremental run differs from a full
one (the run binds them):

- the hub is not scanned: the state store (anchor -> DN and hash) is
  trusted, and only the entries being changed are fetched from the hub,
  with the hub names they may want (:func:`accept_changes`);
- a deleted entry is named by its UUID alone (RFC 4533 section 3.4), and
  the anchor is whatever the mapping makes it: the cursor's UUID map is how
  a delete finds the hub entry to remove;
- lists in group mode need every member, so any change makes a full run.

A full run (the first, ``--full``, every ``full_every``, a changed mapping,
a cookie the server refuses) reads everything and scans the hub; it
catches whatever drifted, and it leaves the cursors and the UUID map the
next incremental run starts from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from dirsync.config import ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.entry import Entry, normalize_dn
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR, Selected
from dirsync.mapping.templates import TemplateError
from dirsync.state.staterows import StateRows
from dirsync.state.store import StateRow, StateStore
from dirsync.sync import filediff, importplan, importread, importrecord, importscan
from dirsync.sync.adchanges import ADFeed
from dirsync.sync.changefeed import (
    AnchorOf,
    Changes,
    Feed,
    LDAPFeed,
    Stream,
    file_feed,
    ldap_method,
)
from dirsync.sync.cursor import Cursor
from dirsync.sync.importitems import HubIndex, HubRecord
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.plan import candidate_dns
from dirsync.sync.report import Problem

log = logging.getLogger("dirsync.incremental")


def new_cursor(state: StateStore, connection: ConnectionConfig) -> Cursor:
    return Cursor(state, connection.name, "import", log, by_uuid=False)


def anchor_of(selected: Selected) -> AnchorOf:
    """A source entry's anchor as the mapping makes it (empty when it cannot)."""
    def anchor(uuid: str, entry: Entry) -> str:
        try:
            return selected.anchor(selected.view(entry)) or ""
        except TemplateError:
            return ""
    return anchor


def source_feed(run: ImportSteps) -> Feed | None:
    """How the source reads everything, or what changed since its cursor."""
    source = run.foreign
    mapping = run.selected.mapping
    stream = Stream(ReadOptions(filter=mapping.source_filter,
                                attrs=["*", *mapping.source_attributes]),
                    run.cursor.tracking)
    anchor = anchor_of(run.selected)
    if source.kind == "ad":
        return ADFeed(source, stream, run.cursor.tracking, name=run.name,
                      anchor_of=anchor)
    if source.kind == "ldap":
        return LDAPFeed(source, ldap_method(source), [stream], server="the server",
                        anchor_of=anchor)
    feed = file_feed(source)
    if feed is not None and source.kind == "csv" and run.selected.list_mode != "group":
        # Lists as groups need every member: a changed file is read whole.
        def differ() -> Changes | str:
            return filediff.diff_file(source, run.cursor.tracking,
                                      lambda entry: anchor("", entry),
                                      lambda header: importread.check_columns(run, header))
        feed.differ = differ
    return feed


# -- reading only changes ------------------------------------------------------
def accept_changes(run: ImportSteps) -> None:
    """Plan from the changes alone: the state rows and hub names they touch."""
    changes, feed = run.cursor.changes, run.cursor.feed
    assert changes is not None and feed is not None
    if run.selected.list_mode == "group" and (changes.changed or changes.deleted):
        # A group's members are resolved against every entry of the source.
        run.cursor.go_full(run, "lists are synced as groups, and groups need every member")
        return
    selected = run.selected
    anchors: dict[str, str] = {}           # uuid -> anchor of each changed entry
    rdn_values: dict[str, str] = {}
    for uuid, entry in changes.changed:
        view = selected.view(entry)
        try:
            anchor = selected.anchor(view)
            kind = selected.kind(view)
            if anchor and kind is not None:
                view.extra["anchor"] = anchor
                rdn_values[anchor] = selected.map(view, anchor, kind).rdn_value
        except TemplateError:
            continue                       # reported when the entry is considered
        if anchor:
            anchors[uuid] = anchor
    known = changes.known
    deleted_anchors = {known[u] for u in changes.deleted if u in known}
    run.touched = run.cursor.tracking.rows({*anchors.values(), *deleted_anchors})
    run.new_anchors = set(anchors.values()) - set(run.touched)
    if feed.streams:
        feed.streams[0].read = anchors
        feed.streams[0].gone = changes.deleted
    # Names the changed entries may want that other entries hold. The
    # hub is asked about those names only, instead of being scanned.
    run.unowned_names = {}
    run.taken_by_ours = {}
    for anchor, value in rdn_values.items():
        if not value:
            continue
        row = run.touched.get(anchor)
        for candidate in candidate_dns(anchor, value, selected.rdn_attribute, run.container):
            key = normalize_dn(candidate)
            if row is not None and normalize_dn(row.dn) == key:
                break
            holder = run.hub.get(candidate, [SOURCE_ATTR, ANCHOR_ATTR]) \
                if run.hub.kind == "ldap" else run.hub.get(candidate)
            if holder is None:
                break
            source = (holder.first(SOURCE_ATTR) or "").casefold()
            other = holder.first(ANCHOR_ATTR)
            if source == run.name.casefold() and other:
                if other != anchor and other not in run.touched:
                    run.taken_by_ours[key] = other
            elif source != run.name.casefold():
                run.unowned_names[key] = holder.dn


# -- the steps, where an incremental run differs -----------------------------------
def scan_hub(run: ImportSteps) -> HubIndex:
    if not run.cursor.incremental:
        return importscan.scan_hub(run)
    index = HubIndex(container_exists=True)
    index.ours = {anchor: HubRecord(row.dn) for anchor, row in run.touched.items()}
    index.unowned = dict(run.unowned_names)
    return index


def load_state_rows(run: ImportSteps) -> Mapping[str, StateRow]:
    """The state rows this run compares against (none in a full run), read
    from the store as the run asks for them."""
    if run.cursor.incremental:
        return dict(run.touched)
    if run.mode == "incremental":
        return StateRows(run.state, run.name, run.direction)
    return {}


def first_sync(run: ImportSteps) -> bool:
    """Whether the hub holds nothing of this connection yet."""
    return not run.cursor.incremental and not run.index.ours


def held_count(run: ImportSteps) -> int:
    """How many entries the hub holds for this connection (for the safety limits)."""
    return run.cursor.held() if run.cursor.incremental else len(run.index.ours)


def new_plan(run: ImportSteps) -> None:
    importplan.new_plan(run)
    if run.cursor.incremental:
        run.placed_dns.update(run.taken_by_ours)


def plan_deletes(run: ImportSteps, before: dict[str, Entry] | None = None) -> None:
    """Deletes of entries the hub still holds. A run that trusts the state
    asks the hub first: an entry it no longer holds (deleted by hand, or by a
    run killed before it could record it) needs no delete, and its row goes."""
    if before is not None or not (run.cursor.incremental and run.deletes):
        importplan.plan_deletes(run, before)
        return
    found = run.fetch(run.deletes)
    ours = run.index.ours
    for anchor in [a for a in run.deletes if a not in found]:
        run.problems.append(Problem("note", anchor, ours[anchor].dn,
                                    "already gone from the hub; its state row goes", None))
        del ours[anchor]
    run.deletes = [a for a in run.deletes if a in found]
    importplan.plan_deletes(run, found)


def end_read(run: ImportSteps) -> None:
    importread.end_read(run)
    if run.cursor.incremental:
        held = run.cursor.held()
        # For the empty-source check: what the source holds after these changes.
        gone = sum(1 for a in run.touched if a not in run.seen)
        run.source_entries = held - gone + len(run.new_anchors)
        # Entries no change touched are in step, as a full run would count them.
        run.counts.unchanged += max(held - len(run.touched), 0)


def source_entries_iter(run: ImportSteps) -> Iterator[Entry]:
    """The changed entries, or the whole source; each entry's UUID noted for
    the entries with problems, read again next run."""
    cursor = run.cursor
    feed = cursor.feed
    if cursor.changes is not None:
        pairs: Iterator[tuple[str, Entry]] = iter(cursor.changes.changed)
    elif isinstance(feed, ADFeed):
        pairs = feed.read_all(lambda: importread.source_entries_iter(run))
    elif isinstance(feed, LDAPFeed):
        importread.check_attribute_types(run)
        pairs = feed.read_all()
    else:
        yield from importread.source_entries_iter(run)
        return
    for uuid, entry in pairs:
        cursor.current = uuid
        yield entry
    cursor.current = None


def entry_problem(run: ImportSteps, kind: str, entry: Entry, anchor: str | None,
                  message: str) -> None:
    importread.entry_problem(run, kind, entry, anchor, message)
    if run.cursor.current:
        run.cursor.problem_uuids.add(run.cursor.current)


def finish_state(run: ImportSteps, interrupted: bool) -> None:
    run.timed("state", lambda: importrecord.finish_state(run, interrupted))
    if not interrupted:
        run.cursor.commit(run, failed_anchors(run))


def failed_anchors(run: ImportSteps) -> Iterator[str]:
    """Anchors of the entries whose changes failed."""
    for record in run.items:
        if record[0] in run.failed and record[2]:
            yield record[2]
