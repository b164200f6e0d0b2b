"""The export when the hub says what changed (:class:`dirsync.sync.exportrun.ExportRun`).

The hub's feed (:mod:`dirsync.sync.changefeed`) reads the export containers
whole or the changes since their cursors, through the run's
:class:`dirsync.sync.cursor.Cursor`:

- an ``ldap`` hub with syncprov is read with an RFC 4533 refreshOnly search
  per export container (each container is its own sync search base, so
  each has its own cookie and its own map of the entryUUIDs it holds, which
  a present phase needs to tell what left that container); a hub without
  syncprov by a ``modifyTimestamp`` high-water mark per container, deletes
  found by comparing the surviving entryUUIDs with that map;
- an ``ldif`` hub is not read at all when its fingerprint is as recorded;
  a changed one is read whole and compared with the state by hash.

These functions are the run's steps where an incremental run differs from
a full one (the run binds them). The foreign side is not scanned when it
is a directory: the export's state rows (anchor -> foreign DN and hash)
are trusted and only the entries being changed are fetched. A foreign
file is read and rewritten whole anyway (it is the product), but only the
changed anchors are planned.

The export anchor is the hub entry's entryUUID, so a delete reported by
UUID names its state row directly.

A list names its members by their foreign names, which any member's
change may move: when anything changed, every exported list is read again
(by entryUUID) and compared, its unchanged members found in the hub by DN
and named from their state rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

from dirsync.config import ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.entry import Entry, is_under, normalize_dn, same_dn
from dirsync.mapping.exportmap import KIND_LIST
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR
from dirsync.state.staterows import StateRows
from dirsync.state.store import StateRow, StateStore
from dirsync.sync import exportplan, exportread, exportrecord, exportscan
from dirsync.sync.changefeed import Feed, LDAPFeed, Stream, file_feed, ldap_method
from dirsync.sync.changestate import ChangeState
from dirsync.sync.cursor import Cursor
from dirsync.sync.entryspool import EntrySpool
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.scratch import pairs

log = logging.getLogger("dirsync.export")

#: The high-water mark of an export container that held nothing.
EPOCH = "19700101000000Z"


def new_cursor(state: StateStore, connection: ConnectionConfig) -> Cursor:
    return Cursor(state, connection.name, "export", log, by_uuid=True)


def containers(run: ExportSteps) -> list[str]:
    """Each export container, once (the first spelling of a DN)."""
    found: dict[str, str] = {}
    for container in run.connection.export_containers:
        found.setdefault(normalize_dn(container), container)
    return list(found.values())


def hub_feed(run: ExportSteps) -> Feed | None:
    """How the hub reads its export containers, or what changed in them."""
    hub = run.hub
    if hub.kind != "ldap":
        return file_feed(hub)
    attrs = run.export.read_attributes()
    if "entryUUID" not in attrs:
        attrs = [*attrs, "entryUUID"]
    streams = [Stream(ReadOptions(base=c, scope="sub", filter=run.hub_filter(), attrs=attrs),
                      # The entryUUIDs one export container held at the last run.
                      ChangeState(run.state, run.name, f"{run.direction} {normalize_dn(c)}"),
                      container=c)
               for c in containers(run)]
    return LDAPFeed(hub, ldap_method(hub), streams, server="the hub", empty_mark=EPOCH)


# -- reading only changes ------------------------------------------------------
def accept_changes(run: ExportSteps) -> None:
    """Plan from the changes alone: each entry once, and every exported list."""
    changes = run.cursor.changes
    feed = run.cursor.feed
    assert changes is not None and isinstance(feed, LDAPFeed)
    # Each entry once (the first read), on disk: an entry is kilobytes; and
    # the UUIDs of those read, on disk too (a 1% change of a million is
    # 10,000 of them, with their state rows).
    changed = EntrySpool()
    seen = run.scratch.set()
    for uuid, entry in changes.changed:
        if uuid and uuid not in seen:
            seen.add(uuid)
            changed.append((uuid, entry))
    if isinstance(changes.changed, EntrySpool):
        changes.changed.close()
    # An entry that left one container for another is moved, not deleted.
    gone = {uuid for uuid in changes.deleted if uuid not in seen}
    if seen or gone:
        # A list names its members by their foreign names, which any
        # member's change may move: every exported list is compared again.
        lists = sorted(a for a in list_anchors(run) if a not in seen and a not in gone)
        if lists:
            found = feed.read_uuids(lists)
            changed.extend(found.items())
            seen.update(found)
            gone.update(a for a in lists if a not in found)
    changes.changed = changed
    changes.deleted = gone
    seen.update(gone)
    run.changed_anchors = seen
    run.touched = run.scratch.map(tuple, lambda row: StateRow(*row))
    run.touched.update(run.cursor.tracking.row_pairs(seen))


def list_anchors(run: ExportSteps) -> set[str]:
    """The anchors of the lists this connection exports."""
    return {anchor for (anchor,) in run.state.db.execute(
        "SELECT anchor FROM entries WHERE connection=? AND direction=? AND kind=?",
        (run.name, run.direction, KIND_LIST))}


# -- the steps, where an incremental run differs -----------------------------------
def hub_entries(run: ExportSteps) -> Iterator[Entry]:
    """The changed entries, or every entry of the export containers."""
    feed = run.cursor.feed
    if run.cursor.changes is not None:
        for _, entry in run.cursor.changes.changed:
            yield entry
    elif isinstance(feed, LDAPFeed):
        for _, entry in feed.read_all():
            yield entry
    else:
        yield from exportread.hub_entries(run)


def load_state_rows(run: ExportSteps) -> Mapping[str, StateRow]:
    """The rows the hash fast path compares with (none on a full run)."""
    if run.cursor.incremental:
        return run.touched
    if run.mode == "incremental":
        # A changed hub file read whole: its rows asked for one at a time.
        return StateRows(run.state, run.name, run.direction)
    return {}


def scan_foreign(run: ExportSteps) -> None:
    if not run.cursor.incremental:
        exportscan.scan_foreign(run)
        return
    if run.foreign.kind not in ("ldap", "ad") and not run.changed_anchors and not run.csv:
        # Nothing changed in the hub: nothing to plan, so the file is
        # neither written nor read (a CSV file is, for its change file).
        run.ours, run.unowned, run.others = {}, {}, {}
        run.container_exists = True
        return
    if run.foreign.kind not in ("ldap", "ad"):
        # A file is rewritten whole, so it is read whole; only the
        # changed anchors are planned, the others keep their names.
        # (A changed anchor without a row is still planned: a run killed
        # after writing the file and before its rows left it there.) An
        # entry not planned is the connection's: its name is kept, as a full
        # run keeps it, and the entry itself is not held.
        exportscan.scan_foreign(run, planned=run.changed_anchors.__contains__)
        run.container_exists = True
        return
    run.ours = run.scratch.entries()
    run.unowned = {}
    run.others = {}
    run.container_exists = True
    for anchor, row in pairs(run.touched):
        entry = run.foreign.get(row.dn, ["*"])
        if entry is None:
            continue        # gone from the foreign side: added again, as a full run would
        if run.own_anchor(entry) == anchor:
            run.ours[anchor] = entry


def member_refs(run: ExportSteps, member_dns: list[str]) -> tuple[list[str], list[str]]:
    if run.cursor.incremental:
        resolve_members(run, member_dns)
    return exportplan.member_refs(run, member_dns)


def resolve_members(run: ExportSteps, member_dns: list[str]) -> None:
    """Members no change touched: found in the hub by DN, their foreign name
    taken from their state row (what a full run's read of them would give)."""
    inside = containers(run)
    name = run.name.casefold()
    for dn in member_dns:
        key = normalize_dn(dn)
        if key in run.by_hub_dn or key in run.imported_here or key in run.resolved:
            continue
        run.resolved.add(key)
        if not any(is_under(dn, c) for c in inside):
            continue
        entry = run.hub.get(dn, ["entryUUID", SOURCE_ATTR, ANCHOR_ATTR])
        if entry is None:
            continue
        owner = entry.first(SOURCE_ATTR)
        if owner is not None and owner.casefold() == name:
            run.imported_here[key] = entry.first(ANCHOR_ATTR) or ""
            continue
        uuid = entry.first("entryUUID") or ""
        if not uuid or uuid in run.changed_anchors:
            continue        # a changed entry is in by_hub_dn when it is exported
        row = run.cursor.tracking.rows([uuid]).get(uuid)
        if row is not None and row.kind != "held":
            run.by_hub_dn[key] = uuid
            run.final_dns.setdefault(uuid, row.dn)


def plan(run: ExportSteps) -> None:
    run.resolved = set()
    if run.cursor.incremental and run.foreign.kind in ("ldap", "ad"):
        reserve_names(run)
    exportplan.plan(run)


def reserve_names(run: ExportSteps) -> None:
    """The foreign names the changed entries may want that other entries hold:
    the foreign directory is asked about those names only, instead of scanned.

    A name held by another entry of the connection (one this run does not
    plan) is that entry's, as a full scan would find it; one held by an
    entry of someone else is the foreign system's.
    """
    for wanted in exportplan.wanted_records(run):
        current = run.ours.get(wanted.anchor)
        for candidate in run.naming.candidates(wanted.anchor, wanted.rdn_value):
            if current is not None and same_dn(current.dn, candidate):
                break
            key = normalize_dn(candidate)
            if key in run.others or key in run.unowned:
                continue        # asked already, for an entry of the same name
            holder = run.foreign.get(candidate, ["*"])
            if holder is None:
                break
            anchor = run.own_anchor(holder)
            if anchor is None:
                run.unowned[key] = holder.dn
            elif anchor == wanted.anchor and current is None:
                # Added by a run killed before its state row was written:
                # this anchor's own entry, compared as a full scan would find it.
                run.ours[anchor] = holder
                break
            elif anchor == wanted.anchor:
                # A second entry with this anchor: left alone, as a full scan leaves it.
                run.unowned[key] = holder.dn
            elif anchor not in run.ours:
                run.others[key] = anchor
            # (An entry of the connection that this run plans is placed by the plan.)


def read_hub(run: ExportSteps) -> None:
    exportread.read_hub(run)
    if run.cursor.incremental:
        # Entries no change touched are in step, as a full run would count them.
        run.counts.unchanged += max(run.cursor.held() - len(run.touched), 0)


def held_count(run: ExportSteps) -> int:
    if run.cursor.incremental:
        return run.cursor.held()
    return len(run.ours)


def source_count(run: ExportSteps) -> int:
    if run.cursor.incremental:
        # What the export containers hold after these changes.
        new = sum(1 for w in exportplan.wanted_records(run) if w.anchor not in run.touched)
        return run.cursor.held() - len(run.deletes) + new
    return run.hub_entries_read

# -- after the run --------------------------------------------------------
def store_rows(run: ExportSteps, rows: Iterable[tuple[str, StateRow]]) -> None:
    if not run.cursor.incremental:
        exportrecord.store_rows(run, rows)
        return
    stored = run.scratch.set()      # (on disk: the entries the changes touched)
    for anchor, row in rows:
        run.state.put(run.name, run.direction, anchor, row)
        stored.add(anchor)
    for anchor in run.touched:
        if anchor not in stored and anchor not in run.ours:
            # Gone from the hub and from the foreign side: nothing left to track.
            run.state.drop(run.name, run.direction, anchor)


def finish_state(run: ExportSteps, interrupted: bool) -> None:
    exportrecord.finish_state(run, interrupted)
    if not interrupted:
        run.cursor.commit(run, failed_anchors(run))


def failed_anchors(run: ExportSteps) -> Iterator[str]:
    """Anchors (entryUUIDs) of the entries whose changes failed."""
    if not run.items.errors:
        return iter(())     # (the usual case: the items need not be read back)
    return (i.anchor for i in run.items if i.anchor and i.counted and i.error is not None)
