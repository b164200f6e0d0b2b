"""Change detection for the export direction: read what changed in the hub.

:class:`DetectingExportRun` is the export run of :mod:`dirsync.sync.exportrun`
with its hub read and its foreign scan narrowed when the run is incremental:

- an ``ldap`` hub with syncprov is read with an RFC 4533 refreshOnly search
  per export container (each container is its own sync search base, so
  each has its own cookie and its own map of the entryUUIDs it holds, which
  a present phase needs to tell what left that container); a hub without
  syncprov by a ``modifyTimestamp`` high-water mark per container, deletes
  found by comparing the surviving entryUUIDs with that map;
- an ``ldif`` hub is not read at all when its fingerprint is as recorded;
  a changed one is read whole and compared with the state by hash;
- the foreign side is not scanned when it is a directory: the export's
  state rows (anchor -> foreign DN and hash) are trusted and only the
  entries being changed are fetched. A foreign file is read and rewritten
  whole anyway (it is the product), but only the changed anchors are
  planned.

The export anchor is the hub entry's entryUUID, so a delete reported by
UUID names its state row directly.

A list names its members by their foreign names, which any member's
change may move: when anything changed, every exported list is read again
(by entryUUID) and compared, its unchanged members found in the hub by DN
and named from their state rows.

A full run (the first, ``--full``, every ``full_every``, a changed mapping,
a cookie the server refuses) reads everything, scans the foreign side and
records the cookies, high-water marks and UUID maps the next incremental
run starts from.

Cursors move only at the end of a run that got there (STYLE.md item 4):
never on a plan or dry run, a safety stop, a stop on request or a server
that went away. Entries with errors do not hold the cursor back: their
UUIDs are kept and read again by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from dirsync.config import Config, ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.directories.syncrepl import (
    RefreshRequired,
    read_by_uuids,
    read_changes,
    read_since_timestamp,
)
from dirsync.entry import Entry, is_under, normalize_dn, same_dn
from dirsync.mapping.exportmap import KIND_LIST
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR
from dirsync.state.fingerprints import FileFingerprint
from dirsync.state.store import StateRow, StateStore
from dirsync.sync.changestate import COOKIE, FILE, HIGH_WATER, ChangeDetection, ChangeState
from dirsync.sync.exportrun import ExportRun
from dirsync.sync.pipeline import RunResult, SyncOptions

log = logging.getLogger("dirsync.export")

#: The high-water mark of an export container that held nothing.
EPOCH = "19700101000000Z"

def _cursor(name: str, container: str) -> str:
    """One cursor per export container: ``syncrepl-cookie ou=people,dc=...``."""
    return f"{name} {container}"


class DetectingExportRun(ChangeDetection, ExportRun):
    """An export run that reads only what changed in the hub when it can."""

    def __init__(self, config: Config, connection: ConnectionConfig, state: StateStore,
                 options: SyncOptions) -> None:
        super().__init__(config, connection, state, options)
        self.tracking = ChangeState(state, connection.name, self.direction)
        self.method: str | None = None          # syncrepl | timestamp | file | None
        self.changed: list[tuple[str, Entry]] | None = None   # incremental LDAP reads
        self.gone: set[str] = set()             # anchors deleted from the export containers
        self.touched: dict[str, StateRow] = {}
        self.changed_anchors: set[str] = set()  # read or deleted in this run
        self.new_cursors: dict[str, str | None] = {}
        #: container key -> (UUIDs read in it, UUIDs gone from it) of this run
        self.container_uuids: dict[str, tuple[set[str], set[str]]] = {}
        self.file_print: FileFingerprint | None = None

    # -- deciding what to read ---------------------------------------------
    def _run(self) -> RunResult:
        if self.detect(self.hub, self.read_hub_changes):
            return self.unchanged_hub()
        return super()._run()

    def held_rows(self) -> int:
        return self.tracking.held()

    def go_full(self, why: str) -> None:
        log.info("%s: a full export run: %s", self.name, why, extra={"fields": {
            "connection": self.name, "run": self.run_id, "direction": self.direction,
            "action": "full-run", "result": why}})
        self.mode = "full"
        self.changed = None
        self.gone = set()
        self.new_cursors = {}
        self.container_uuids = {}
        self.state.set_run_mode(self.run_id, "full")

    def containers(self) -> list[tuple[str, str]]:
        """(container, its key) for each export container, once each."""
        found: dict[str, str] = {}
        for container in self.connection.export_containers:
            found.setdefault(normalize_dn(container), container)
        return [(c, k) for k, c in found.items()]

    def container_map(self, key: str) -> ChangeState:
        """The entryUUIDs one export container held at the last run."""
        return ChangeState(self.state, self.name, f"{self.direction} {key}")

    def hub_options(self, container: str) -> ReadOptions:
        attrs = self.export.read_attributes()
        if "entryUUID" not in attrs:
            attrs = [*attrs, "entryUUID"]
        if self.method == "timestamp" and "modifyTimestamp" not in attrs:
            # The timestamp read asks for it; a full read must hash the same attributes.
            attrs = [*attrs, "modifyTimestamp"]
        return ReadOptions(base=container, scope="sub", filter=self.hub_filter(), attrs=attrs)

    def read_hub_changes(self) -> None:
        """What changed in each export container since its cursor; else a full run."""
        changed: dict[str, Entry] = {}
        gone: set[str] = set()
        for container, key in self.containers():
            options = self.hub_options(container)
            uuids = self.container_map(key)
            if self.method == "syncrepl":
                cookie = self.tracking.cursor(_cursor(COOKIE, key))
                if not cookie:
                    self.go_full(f"no syncrepl cookie stored for {container}")
                    return
                read = read_changes(self.hub, cookie, options)
                try:
                    entries = list(read)
                except RefreshRequired as exc:
                    self.go_full(f"the hub cannot serve the stored cookie of {container} "
                                 f"({exc})")
                    return
                known = uuids.anchors_of(read.deleted) if read.present is None \
                    else uuids.all_uuids()
                gone_here = read.deleted_among(set(known))
                self.new_cursors[_cursor(COOKIE, key)] = read.cookie
            else:
                high_water = self.tracking.cursor(_cursor(HIGH_WATER, key))
                if not high_water:
                    self.go_full(f"no modifyTimestamp high-water mark stored for {container}")
                    return
                stamped = read_since_timestamp(self.hub, high_water, options)
                entries = stamped.changed
                gone_here = set(uuids.all_uuids()) - stamped.present
                self.new_cursors[_cursor(HIGH_WATER, key)] = stamped.high_water
            read_here = {uuid for uuid, _ in entries if uuid}
            self.container_uuids[key] = (read_here, gone_here)
            for uuid, entry in entries:
                if uuid:
                    changed.setdefault(uuid, self.with_uuid(uuid, entry))
            gone |= gone_here
        # Entries that had errors last time are read again.
        retry = self.tracking.retry() - set(changed) - gone
        if retry:
            found = self.read_by_uuid(sorted(retry))
            changed.update(found)
            gone |= retry - set(found)
        # An entry that left one container for another is moved, not deleted.
        gone -= set(changed)
        if changed or gone:
            # A list names its members by their foreign names, which any
            # member's change may move: every exported list is compared again.
            lists = self.list_anchors() - set(changed) - gone
            if lists:
                found = self.read_by_uuid(sorted(lists))
                changed.update(found)
                gone |= lists - set(found)
        self.changed = list(changed.items())
        self.gone = gone
        self.changed_anchors = {*changed, *gone}
        self.touched = self.tracking.rows(self.changed_anchors)

    @staticmethod
    def with_uuid(uuid: str, entry: Entry) -> Entry:
        if not entry.first("entryUUID"):
            entry.set("entryUUID", [uuid.encode()])
        return entry

    def read_by_uuid(self, uuids: list[str]) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for container, _ in self.containers():
            for entry in read_by_uuids(self.hub, uuids, self.hub_options(container)):
                uuid = entry.first("entryUUID")
                if uuid:
                    found.setdefault(uuid, entry)
        return found

    def list_anchors(self) -> set[str]:
        """The anchors of the lists this connection exports."""
        return {anchor for (anchor,) in self.state.db.execute(
            "SELECT anchor FROM entries WHERE connection=? AND direction=? AND kind=?",
            (self.name, self.direction, KIND_LIST))}

    # -- the export run's hooks, when only changes are read ---------------------
    def incremental_read(self) -> bool:
        return self.mode == "incremental" and self.changed is not None

    def hub_entries(self) -> Iterator[Entry]:
        if self.incremental_read():
            for _, entry in self.changed or []:
                yield entry
            return
        if self.method not in ("syncrepl", "timestamp"):
            yield from super().hub_entries()
            return
        seen: set[str] = set()
        nested = len(self.containers()) > 1      # (one container: no set of every DN)
        for container, key in self.containers():
            options = self.hub_options(container)
            held: set[str] = set()
            high_water: str | None = None
            if self.method == "syncrepl":
                read = read_changes(self.hub, None, options)
                entries: Iterator[tuple[str, Entry]] = iter(read)
            else:
                entries = ((e.first("entryUUID") or "", e) for e in self.hub.read(options))
            for uuid, entry in entries:
                if uuid:
                    held.add(uuid)
                    self.with_uuid(uuid, entry)
                if self.method == "timestamp":
                    stamp = entry.first("modifyTimestamp")
                    if stamp and (high_water is None or stamp > high_water):
                        high_water = stamp
                if nested:
                    dn = normalize_dn(entry.dn)
                    if dn in seen:
                        continue    # export containers may nest
                    seen.add(dn)
                yield entry
            self.container_uuids[key] = (held, set())
            if self.method == "syncrepl":
                self.new_cursors[_cursor(COOKIE, key)] = read.cookie
            else:
                # An empty container has no timestamp yet: start from the epoch,
                # so that the next run reads it incrementally rather than in full.
                self.new_cursors[_cursor(HIGH_WATER, key)] = high_water or EPOCH

    def load_state_rows(self) -> dict[str, StateRow]:
        if self.incremental_read():
            return dict(self.touched)
        return super().load_state_rows()

    def scan_foreign(self) -> None:
        if not self.incremental_read():
            super().scan_foreign()
            return
        if self.foreign.kind != "ldap" and not self.changed_anchors and not self.csv:
            # Nothing changed in the hub: nothing to plan, so the file is
            # neither written nor read (a CSV file is, for its change file).
            self.ours, self.unowned, self.others = {}, {}, {}
            self.container_exists = True
            return
        if self.foreign.kind != "ldap":
            # A file is rewritten whole, so it is read whole; only the
            # changed anchors are planned, the others keep their names.
            super().scan_foreign()
            # (A changed anchor without a row is still planned: a run killed
            # after writing the file and before its rows left it there.)
            for anchor in [a for a in self.ours if a not in self.changed_anchors]:
                # Not planned, but the connection's: its name is kept, as a
                # full run keeps it.
                self.others[normalize_dn(self.ours.pop(anchor).dn)] = anchor
            self.container_exists = True
            return
        self.ours = {}
        self.unowned = {}
        self.others = {}
        self.container_exists = True
        for anchor, row in self.touched.items():
            entry = self.foreign.get(row.dn, ["*"])
            if entry is None:
                continue        # gone from the foreign side: added again, as a full run would
            if self.own_anchor(entry) == anchor:
                self.ours[anchor] = entry

    def member_refs(self, member_dns: list[str]) -> tuple[list[str], list[str]]:
        if self.incremental_read():
            self.resolve_members(member_dns)
        return super().member_refs(member_dns)

    def resolve_members(self, member_dns: list[str]) -> None:
        """Members no change touched: found in the hub by DN, their foreign name
        taken from their state row (what a full run's read of them would give)."""
        containers = [c for c, _ in self.containers()]
        name = self.name.casefold()
        for dn in member_dns:
            key = normalize_dn(dn)
            if key in self.by_hub_dn or key in self.imported_here or key in self.resolved:
                continue
            self.resolved.add(key)
            if not any(is_under(dn, c) for c in containers):
                continue
            entry = self.hub.get(dn, ["entryUUID", SOURCE_ATTR, ANCHOR_ATTR])
            if entry is None:
                continue
            owner = entry.first(SOURCE_ATTR)
            if owner is not None and owner.casefold() == name:
                self.imported_here[key] = entry.first(ANCHOR_ATTR) or ""
                continue
            uuid = entry.first("entryUUID") or ""
            if not uuid or uuid in self.changed_anchors:
                continue        # a changed entry is in by_hub_dn when it is exported
            row = self.tracking.rows([uuid]).get(uuid)
            if row is not None and row.kind != "held":
                self.by_hub_dn[key] = uuid
                self.final_dns.setdefault(uuid, row.dn)

    def plan(self) -> None:
        self.resolved: set[str] = set()
        if self.incremental_read() and self.foreign.kind == "ldap":
            self.reserve_names()
        super().plan()

    def reserve_names(self) -> None:
        """The foreign names the changed entries may want that other entries hold:
        the foreign directory is asked about those names only, instead of scanned.

        A name held by another entry of the connection (one this run does not
        plan) is that entry's, as a full scan would find it; one held by an
        entry of someone else is the foreign system's.
        """
        for wanted in self.wanted:
            current = self.ours.get(wanted.anchor)
            for candidate in self.naming.candidates(wanted.anchor, wanted.rdn_value):
                if current is not None and same_dn(current.dn, candidate):
                    break
                key = normalize_dn(candidate)
                if key in self.others or key in self.unowned:
                    continue        # asked already, for an entry of the same name
                holder = self.foreign.get(candidate, ["*"])
                if holder is None:
                    break
                anchor = self.own_anchor(holder)
                if anchor is None:
                    self.unowned[key] = holder.dn
                elif anchor == wanted.anchor and current is None:
                    # Added by a run killed before its state row was written:
                    # this anchor's own entry, compared as a full scan would find it.
                    self.ours[anchor] = holder
                    break
                elif anchor == wanted.anchor:
                    # A second entry with this anchor: left alone, as a full scan leaves it.
                    self.unowned[key] = holder.dn
                elif anchor not in self.ours:
                    self.others[key] = anchor
                # (An entry of the connection that this run plans is placed by the plan.)

    def read_hub(self) -> None:
        super().read_hub()
        if self.incremental_read():
            # Entries no change touched are in step, as a full run would count them.
            self.counts.unchanged += max(self.held_rows() - len(self.touched), 0)

    def held_count(self) -> int:
        if self.incremental_read():
            return self.held_rows()
        return super().held_count()

    def source_count(self) -> int:
        if self.incremental_read():
            # What the export containers hold after these changes.
            new = sum(1 for w in self.wanted if w.anchor not in self.touched)
            return self.held_rows() - len(self.deletes) + new
        return super().source_count()

    # -- after the run --------------------------------------------------------
    def store_rows(self, rows: dict[str, StateRow]) -> None:
        if not self.incremental_read():
            super().store_rows(rows)
            return
        for anchor, row in rows.items():
            self.state.put(self.name, self.direction, anchor, row)
        for anchor in self.touched:
            if anchor not in rows and anchor not in self.ours:
                # Gone from the hub and from the foreign side: nothing left to track.
                self.state.drop(self.name, self.direction, anchor)

    def finish_state(self, interrupted: bool) -> None:
        super().finish_state(interrupted)
        if interrupted:
            return
        tracking = self.tracking
        with self.state.transaction():
            if self.method == "file":
                clean = not (self.counts.error or self.counts.conflict)
                tracking.set_cursor(FILE, self.file_print.dumps()
                                    if clean and self.file_print else None)
            elif self.method in ("syncrepl", "timestamp"):
                for _, key in self.containers():
                    read, gone = self.container_uuids.get(key, (set(), set()))
                    uuids = self.container_map(key)
                    if self.mode == "full":
                        uuids.replace((u, u) for u in read)
                    else:
                        uuids.forget(gone)
                        uuids.remember((u, u) for u in read)
                for name, value in self.new_cursors.items():
                    tracking.set_cursor(name, value)
                tracking.set_retry(self.retry_uuids())
            if self.mode == "full":
                tracking.mark_full()

    def retry_uuids(self) -> set[str]:
        """Anchors (entryUUIDs) of the entries this run could not bring in step."""
        anchors = {p.anchor for p in self.problems
                   if p.kind in ("error", "conflict") and p.anchor}
        anchors |= self.held
        anchors |= {i.anchor for i in self.items
                    if i.anchor and i.counted and i.error is not None}
        return anchors

    def unchanged_hub(self) -> RunResult:
        """The hub file is as last time: nothing to read, nothing to export."""
        log.info("%s: %s is unchanged since the last run", self.name, self.hub.path)
        result: RunResult = self.finish_unchanged("hub unchanged")
        return result


def run_detecting_export(config: Config, connection: ConnectionConfig, state: StateStore,
                         options: SyncOptions) -> RunResult:
    return DetectingExportRun(config, connection, state, options)()

