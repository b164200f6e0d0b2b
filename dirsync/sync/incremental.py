"""Change detection for the import direction: read what changed, not what exists.

:class:`DetectingImportRun` is the import run of :mod:`dirsync.sync.engine`
with its source read and its hub scan replaced when the run is
incremental:

- an LDAP source with syncprov is read with an RFC 4533 refreshOnly search
  from the cookie of the last run; one without syncprov by a
  ``modifyTimestamp`` high-water mark, deletes found by comparing the set
  of surviving entryUUIDs with the UUID map;
- an ``ad`` source is read with DirSync from the cookie of the last run
  (:mod:`dirsync.sync.adchanges`): the objects it names are read whole by
  GUID, and those gone, moved out, disabled or hidden are deletes (an
  account without the DirSync right reads above a ``uSNChanged`` mark
  instead, and its deletes wait for a full run);
- a file source is not read at all when its fingerprint (size, mtime,
  content hash) is as recorded; a changed file is read whole and its
  entries compared with the state by hash, as in any run;
- the hub is not scanned: the state store (anchor -> DN and hash) is
  trusted, and only the entries being changed are fetched from the hub.

A full run (the first, ``--full``, every ``full_every``, a changed mapping,
a cookie the server refuses, lists in group mode) reads everything and
scans the hub; it catches whatever drifted, and it records the cookie, the
high-water mark and the UUID map that the next incremental run starts from.

Cursors move only at the end of a run that got there (STYLE.md item 4):
never on a dry run, a safety stop, a stop on request or a server that went
away; those runs read the same changes again next time. Entries with
errors do not hold the cursor back (one bad entry would make every later
run re-read everything since): their UUIDs are kept and read again by the
next run. A file source with errors keeps no fingerprint, so the next run
reads the file again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dirsync.config import Config, ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.directories.addirsync import MissingDirSyncRight
from dirsync.directories.syncrepl import (
    RefreshRequired,
    read_by_uuids,
    read_changes,
    read_since_timestamp,
)
from dirsync.entry import Entry, normalize_dn
from dirsync.errors import ConfigError
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR
from dirsync.mapping.templates import TemplateError
from dirsync.state.fingerprints import FileFingerprint
from dirsync.state.store import StateRow, StateStore
from dirsync.sync.adchanges import (
    read_ad_changes,
    read_usn_changes,
    start_cookie,
    start_usn_mark,
)
from dirsync.sync.changelog import logged
from dirsync.sync.changestate import (
    COOKIE,
    DIRSYNC,
    FILE,
    HIGH_WATER,
    USN,
    ChangeDetection,
    ChangeState,
)
from dirsync.sync.engine import HubIndex, HubRecord, ImportRun
from dirsync.sync.pipeline import RunResult, SyncOptions
from dirsync.sync.plan import candidate_dns

log = logging.getLogger("dirsync.incremental")

class DetectingImportRun(ChangeDetection, ImportRun):
    """An import run that reads only what changed when it can."""

    def __init__(self, config: Config, connection: ConnectionConfig, state: StateStore,
                 options: SyncOptions) -> None:
        super().__init__(config, connection, state, options)
        self.tracking = ChangeState(state, connection.name, self.direction)
        self.method: str | None = None          # syncrepl | dirsync | timestamp | file | None
        self.changed: list[tuple[str, Entry]] | None = None   # incremental LDAP reads
        self.deleted_uuids: set[str] = set()
        self.touched: dict[str, StateRow] = {}
        self.new_anchors: set[str] = set()
        self.uuid_pairs: dict[str, str] = {}    # uuid -> anchor, as read in this run
        self.anchor_uuids: dict[str, str] = {}  # anchor -> uuid, for entries with errors
        self.problem_uuids: set[str] = set()
        self.current_uuid: str | None = None
        self.new_cookie: str | None = None
        self.new_high_water: str | None = None
        self.file_print: FileFingerprint | None = None
        self.taken_by_ours: dict[str, str] = {}

    # -- deciding what to read ---------------------------------------------
    def _run(self) -> RunResult:
        if self.detect(self.foreign, lambda: self.timed("change read", self.read_ldap_changes)):
            return self.unchanged_source()
        return super()._run()

    def held_rows(self) -> int:
        return self.tracking.held()

    def go_full(self, why: str) -> None:
        log.info("%s: a full run: %s", self.name, why, extra={"fields": {
            "connection": self.name, "run": self.run_id, "action": "full-run",
            "result": why}})
        self.mode = "full"
        self.changed = None
        self.state.set_run_mode(self.run_id, "full")

    def read_options(self) -> ReadOptions:
        mapping = self.selected.mapping
        attrs = ["*", *mapping.source_attributes]
        if self.method == "timestamp":
            # The timestamp read asks for these; a full read must hash the same attributes.
            attrs += [a for a in ("entryUUID", "modifyTimestamp") if a not in attrs]
        return ReadOptions(filter=mapping.source_filter, attrs=attrs)

    def read_ldap_changes(self) -> None:
        """Read what changed since the stored cursor; a full run when that is not possible."""
        options = self.read_options()
        if self.method in ("dirsync", "usn"):
            cursor = self.tracking.cursor(DIRSYNC if self.method == "dirsync" else USN)
            if not cursor:
                self.go_full("no DirSync cookie stored")
                return
            try:
                if self.method == "dirsync":
                    ad = read_ad_changes(self.foreign, cursor, options)
                else:
                    ad = read_usn_changes(self.foreign, cursor, options)
            except MissingDirSyncRight as exc:
                # The full read finds the right missing again and starts a uSNChanged mark.
                self.go_full(f"DirSync is no longer allowed ({exc})")
                return
            except RefreshRequired as exc:
                self.go_full(f"the DC cannot serve the stored {self.method} cursor ({exc})")
                return
            if ad.unreadable:
                self.go_full(f"DirSync returned {ad.unreadable} change(s) that could not "
                             "be read")
                return
            changed = ad.changed
            known = self.tracking.anchors_of(
                ad.gone | {g for g, _ in changed} | self.tracking.retry())
            deleted = set(self.tracking.anchors_of(ad.gone))
            self.new_cookie = ad.cookie
        elif self.method == "syncrepl":
            cookie = self.tracking.cursor(COOKIE)
            if not cookie:
                self.go_full("no syncrepl cookie stored")
                return
            read = read_changes(self.foreign, cookie, options)
            try:
                changed = list(read)
            except RefreshRequired as exc:
                self.go_full(f"the server cannot serve the stored cookie ({exc})")
                return
            if read.present is None:
                known = self.tracking.anchors_of(read.deleted)
            else:
                known = self.tracking.all_uuids()
            deleted = read.deleted_among(set(known))
            self.new_cookie = read.cookie
        else:
            high_water = self.tracking.cursor(HIGH_WATER)
            if not high_water:
                self.go_full("no modifyTimestamp high-water mark stored")
                return
            stamped = read_since_timestamp(self.foreign, high_water, options)
            changed = stamped.changed
            known = self.tracking.all_uuids()
            deleted = set(known) - stamped.present
            self.new_high_water = stamped.high_water
        # Entries that had errors last time are read again.
        seen = {uuid for uuid, _ in changed}
        retry = self.tracking.retry() - seen - deleted
        if retry:
            found = self.read_by_uuid(sorted(retry), options)
            changed += found
            missing = retry - {uuid for uuid, _ in found}
            deleted |= set(self.tracking.anchors_of(missing))
        if self.selected.list_mode == "group" and (changed or deleted):
            # A group's members are resolved against every entry of the source.
            self.go_full("lists are synced as groups, and groups need every member")
            return
        self.changed = changed
        self.deleted_uuids = deleted
        self.prepare_touched(known)

    def read_by_uuid(self, uuids: list[str], options: ReadOptions) -> list[tuple[str, Entry]]:
        if self.method in ("dirsync", "usn"):
            return [(g, e) for g, e in self.foreign.read_guids(uuids, options=options)
                    if e is not None]
        return [(entry.first("entryUUID") or "", entry)
                for entry in read_by_uuids(self.foreign, uuids, options)]

    def prepare_touched(self, known: dict[str, str]) -> None:
        """The state rows and hub names the changes touch, and nothing else."""
        selected = self.selected
        anchors: dict[str, str] = {}           # uuid -> anchor of each changed entry
        rdn_values: dict[str, str] = {}
        for uuid, entry in self.changed or []:
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
        deleted_anchors = {known[u] for u in self.deleted_uuids if u in known}
        self.touched = self.tracking.rows({*anchors.values(), *deleted_anchors})
        self.new_anchors = set(anchors.values()) - set(self.touched)
        self.uuid_pairs = anchors
        self.anchor_uuids = {a: u for u, a in anchors.items()}
        self.anchor_uuids.update({known[u]: u for u in self.deleted_uuids if u in known})
        # Names the changed entries may want that other entries hold. The
        # hub is asked about those names only, instead of being scanned.
        self.unowned_names: dict[str, str] = {}
        for anchor, value in rdn_values.items():
            if not value:
                continue
            row = self.touched.get(anchor)
            for candidate in candidate_dns(anchor, value, selected.rdn_attribute,
                                           self.container):
                key = normalize_dn(candidate)
                if row is not None and normalize_dn(row.dn) == key:
                    break
                holder = self.hub.get(candidate, [SOURCE_ATTR, ANCHOR_ATTR]) \
                    if self.hub.kind == "ldap" else self.hub.get(candidate)
                if holder is None:
                    break
                source = (holder.first(SOURCE_ATTR) or "").casefold()
                other = holder.first(ANCHOR_ATTR)
                if source == self.name.casefold() and other:
                    if other != anchor and other not in self.touched:
                        self.taken_by_ours[key] = other
                elif source != self.name.casefold():
                    self.unowned_names[key] = holder.dn

    # -- the engine's hooks, when only changes are read ------------------------
    def incremental_read(self) -> bool:
        return self.mode == "incremental" and self.changed is not None

    def scan_hub(self) -> HubIndex:
        if not self.incremental_read():
            return super().scan_hub()
        index = HubIndex(container_exists=True)
        index.ours = {anchor: HubRecord(row.dn) for anchor, row in self.touched.items()}
        index.unowned = dict(self.unowned_names)
        return index

    def load_state_rows(self) -> Mapping[str, StateRow]:
        if self.incremental_read():
            return dict(self.touched)
        return super().load_state_rows()  # type: ignore[no-any-return]

    def first_sync(self) -> bool:
        if self.incremental_read():
            return False
        return super().first_sync()  # type: ignore[no-any-return]

    def held_count(self) -> int:
        if self.incremental_read():
            return self.held_rows()
        return super().held_count()  # type: ignore[no-any-return]

    def new_plan(self) -> None:
        super().new_plan()
        self.placed_dns.update(self.taken_by_ours)

    def end_read(self) -> None:
        super().end_read()
        if self.incremental_read():
            # For the empty-source check: what the source holds after these changes.
            gone = sum(1 for a in self.touched if a not in self.seen)
            self.source_entries = self.held_rows() - gone + len(self.new_anchors)
            # Entries no change touched are in step, as a full run would count them.
            self.counts.unchanged += max(self.held_rows() - len(self.touched), 0)

    def source_entries_iter(self) -> Iterator[Entry]:
        if self.method in ("dirsync", "usn"):
            yield from self.ad_entries()
            return
        if self.method not in ("syncrepl", "timestamp"):
            yield from super().source_entries_iter()
            return
        if self.incremental_read():
            for uuid, entry in self.changed or []:
                self.current_uuid = uuid
                yield entry
            self.current_uuid = None
            return
        known = self.foreign.attribute_types()
        mapping = self.selected.mapping
        if known:
            problems = mapping.check_source_names(
                known, f"not an attribute type of {self.foreign.server_url}")
            if problems:
                raise ConfigError(problems)
        options = self.read_options()
        if self.method == "syncrepl":
            read = read_changes(self.foreign, None, options)
            entries: Iterable[tuple[str, Entry]] = read
        else:
            entries = ((e.first("entryUUID") or "", e) for e in self.foreign.read(options))
        high_water: str | None = None
        for uuid, entry in entries:
            self.current_uuid = uuid
            self.remember_uuid(uuid, entry)
            if self.method == "timestamp":
                stamp = entry.first("modifyTimestamp")
                if stamp and (high_water is None or stamp > high_water):
                    high_water = stamp
            yield entry
        self.current_uuid = None
        if self.method == "syncrepl":
            self.new_cookie = read.cookie
        else:
            self.new_high_water = high_water

    def ad_entries(self) -> Iterator[Entry]:
        """AD's recipients: the changes, or a full read that starts a DirSync cursor."""
        if self.incremental_read():
            for uuid, entry in self.changed or []:
                self.current_uuid = uuid
                yield entry
            self.current_uuid = None
            return
        try:
            cookie = start_cookie(self.foreign)
            self.method = "dirsync"
        except MissingDirSyncRight as exc:
            log.warning("%s: changes are read by uSNChanged, deletes only by full runs: %s",
                        self.name, exc)
            cookie = start_usn_mark(self.foreign)
            self.method = "usn"
        for entry in super().source_entries_iter():
            uuid = entry.first("objectGUID") or ""
            self.current_uuid = uuid
            self.remember_uuid(uuid, entry)
            yield entry
        self.current_uuid = None
        self.new_cookie = cookie

    def remember_uuid(self, uuid: str, entry: Entry) -> None:
        if not uuid:
            return
        try:
            anchor = self.selected.anchor(self.selected.view(entry))
        except TemplateError:
            anchor = ""
        if anchor:
            self.uuid_pairs[uuid] = anchor
            self.anchor_uuids[anchor] = uuid

    def entry_problem(self, kind: str, entry: Entry, anchor: str | None, message: str) -> None:
        super().entry_problem(kind, entry, anchor, message)
        if self.current_uuid:
            self.problem_uuids.add(self.current_uuid)

    def apply_records(self, records: Iterable[tuple[Any, ...]],
                      deferred: list[tuple[str, tuple[Any, ...]]] | None) -> None:
        """Apply as the engine does, with one log event per change (--log-format json)."""
        hub = self.hub
        hub.apply = logged(hub.apply, self.name, self.run_id, self.direction)
        try:
            super().apply_records(records, deferred)
        finally:
            del hub.apply

    # -- after the run --------------------------------------------------------
    def finish_state(self, interrupted: bool) -> None:
        self.timed("state", lambda: super(DetectingImportRun, self).finish_state(interrupted))
        if interrupted:
            return
        tracking = self.tracking
        with self.state.transaction():
            if self.method == "file":
                clean = not (self.counts.error or self.counts.conflict)
                tracking.set_cursor(FILE, self.file_print.dumps()
                                    if clean and self.file_print else None)
            elif self.method in ("syncrepl", "dirsync", "usn", "timestamp"):
                if self.mode == "full":
                    tracking.replace(self.uuid_pairs.items())
                else:
                    tracking.forget(self.deleted_uuids - self.retry_uuids())
                    tracking.remember(self.uuid_pairs.items())
                if self.method == "syncrepl":
                    tracking.set_cursor(COOKIE, self.new_cookie)
                elif self.method in ("dirsync", "usn"):
                    tracking.set_cursor(DIRSYNC if self.method == "dirsync" else USN,
                                        self.new_cookie)
                    if self.mode == "full":  # the other cursor no longer holds
                        tracking.set_cursor(USN if self.method == "dirsync" else DIRSYNC,
                                            None)
                else:
                    tracking.set_cursor(HIGH_WATER, self.new_high_water)
                tracking.set_retry(self.retry_uuids())
            if self.mode == "full":
                tracking.mark_full()

    def retry_uuids(self) -> set[str]:
        """UUIDs of the entries this run could not bring in step."""
        uuids = set(self.problem_uuids)
        anchors = {p.anchor for p in self.problems
                   if p.kind in ("error", "conflict") and p.anchor}
        anchors |= self.held
        for record in self.items:
            if record[0] in self.failed and record[2]:
                anchors.add(record[2])
        uuids |= {self.anchor_uuids[a] for a in anchors if a in self.anchor_uuids}
        return uuids

    def unchanged_source(self) -> RunResult:
        """The source file is as last time: nothing to read, nothing to change."""
        log.info("%s: %s is unchanged since the last run", self.name, self.foreign.path)
        result: RunResult = self.finish_unchanged("source unchanged")
        return result


def run_detecting_import(config: Config, connection: ConnectionConfig, state: StateStore,
                         options: SyncOptions) -> RunResult:
    return DetectingImportRun(config, connection, state, options)()

