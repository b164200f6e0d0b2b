"""The run loop: read, map, compare by anchor, plan, check safety, apply, report.

The import direction (:class:`ImportRun`, a foreign directory into the
hub's import container) is one loop that every directory kind shares;
:func:`dirsync.sync.run.run` calls it for each connection that imports.
Its source is read whole or only what changed since its cursor
(:class:`dirsync.sync.cursor.Cursor`; where the import differs when it
reads only changes, :mod:`dirsync.sync.importchanges`):

1. scan the hub: every entry under the import container, by marker and
   anchor (the hub is the truth; the state store only saves work);
2. read the source, one entry at a time; an entry whose source hash, DN
   and mapping are as the state recorded is unchanged without mapping it,
   every other one is mapped;
3. give each mapped entry its DN, read what the hub holds for it, and plan
   its changes (:mod:`dirsync.sync.plan`); anchors the source no longer has are
   deleted;
4. stop before changing anything when a safety limit says so;
5. apply in phases (deletes, renames, modifies, adds, groups), recording
   each change in the state store once the hub confirms it;
6. write the delta report (:mod:`dirsync.sync.report`).

Large runs keep memory flat: mapped entries and planned changes wait in
spools (:mod:`dirsync.sync.spool`), not in lists of objects; what a run
knows entry by entry (the hub's records by anchor, the anchors seen, the
entries found unchanged, the DNs given out, the addresses claimed) lives
in tables of a private temporary database (:mod:`dirsync.sync.scratch`);
the state rows are read from the store as they are needed
(:class:`dirsync.state.staterows.StateRows`), a few hundred at a time.
"""

from __future__ import annotations

import logging
from collections.abc import MutableSet
from typing import Any

from dirsync.config import Config, ConnectionConfig
from dirsync.entry import normalize_dn
from dirsync.errors import EntryError
from dirsync.interrupt import stop_requested
from dirsync.mapping.mapfile import (
    Selected,
    fingerprint,
    load_mapping,
)
from dirsync.mapping.templatebudget import RunBudget
from dirsync.state.runlife import AppliedSoFar
from dirsync.state.store import StateRow, StateStore
from dirsync.state.unconfirmed import Unconfirmed
from dirsync.sync import (
    importapply,
    importchanges,
    importplan,
    importread,
    importrecord,
    importscan,
)
from dirsync.sync.importitems import HubIndex, HubRecord, _Target
from dirsync.sync.importplan import FETCH_CHUNK
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.ownership import AddressGuard
from dirsync.sync.pipeline import RunResult, SyncOptions
from dirsync.sync.report import Problem
from dirsync.sync.scratch import Scratch
from dirsync.sync.scratchclaims import DiskClaims

log = logging.getLogger("dirsync.engine")

# Importable from here as before the steps had modules of their own.
__all__ = ["ENGINE_VERSION", "FETCH_CHUNK", "HubIndex", "HubRecord", "ImportRun", "_Target",
           "run_import"]

#: Bump when the same mapping and source would give other hub entries, so
#: that every connection's next run is a full one. 3: source values are
#: checked against their syntax (dirsync.addresses.values) before mapping.
ENGINE_VERSION = 3


class ImportRun(ImportSteps):
    """One run of one connection, foreign directory -> hub import container.

    What its steps read, set and call is declared in
    :class:`dirsync.sync.importsteps.ImportSteps`.
    """

    direction = "import"
    target_words = "the hub"
    unchanged_words = "source unchanged"
    log = log

    def __init__(self, config: Config, connection: ConnectionConfig, state: StateStore,
                 options: SyncOptions) -> None:
        assert connection.import_container is not None
        super().__init__(config, connection, state, options)
        self.container = connection.import_container
        self.container_key = normalize_dn(self.container)
        self._classes: dict[frozenset[str], frozenset[str]] = {}
        # Set by apply(): what happened to each planned item.
        self.applied = False
        self.streaming = False          # a first sync, adding as it reads
        self.failed: dict[int, EntryError] = {}
        # Items with a change sent when the connection was lost, unanswered.
        self.unknown: dict[int, str | None] = {}
        self.done: dict[int, int] = {}
        # Per-entry bookkeeping on disk (dirsync.sync.scratch), for the run's life.
        self.scratch = Scratch()
        self.applied_anchors: MutableSet[str] = self.scratch.set()
        self.so_far: AppliedSoFar | None = None   # made when applying starts
        # What the mapping's templates may spend in this run, entry by entry.
        self.budget = RunBudget(config.template_limits)
        self.cursor = importchanges.new_cursor(state, connection)
        # What an incremental run touches (importchanges.accept_changes).
        self.touched: dict[str, StateRow] = {}
        self.new_anchors: set[str] = set()
        self.unowned_names: dict[str, str] = {}
        self.taken_by_ours: dict[str, str] = {}

    # -- what the lifecycle (dirsync.sync.pipeline.Run) asks -------------
    def load(self) -> None:
        mapping = load_mapping(self.connection.mapping_path, self.connection.variables)
        self.selected: Selected = mapping.select(self.connection.recipients,
                                                 self.connection.lists)
        self.fingerprint = fingerprint(
            mapping, engine=ENGINE_VERSION, connection=self.name, container=self.container_key,
            recipients=self.connection.recipients, lists=self.connection.lists,
            hub=self.connection.hub)

    def setup(self) -> None:
        export = self.selected.mapping.export
        if export is not None and self.foreign.kind == "ad":
            # AD is read by a list of attributes: the export marker must be
            # among them, and what the export wrote is no change to import.
            self.foreign.skip_exported(export.marker_attribute, self.name)

    def source(self) -> Any:
        return self.foreign

    def release(self) -> None:
        self.close_spools()
        self.cursor.drop_changes()
        self.scratch.close()

    def report_fields(self) -> dict[str, Any]:
        return {"container": self.container, "source": self.connection.foreign,
                "hub": self.connection.hub, "mapping": str(self.selected.mapping.path)}

    def _run(self) -> RunResult:
        log.info("%s: %s %s run%s", self.name, self.mode, self.direction,
                 " (dry run)" if self.options.dry_run else "")
        same_server = self.hub.kind == self.foreign.kind == "ldap" \
            and self.hub.server_url == self.foreign.server_url
        self.unconfirmed = Unconfirmed(self.state, self.name, self.direction)
        self.addresses = AddressGuard(self.hub, self.hub_base(), self.name,
                                      outside=[self.foreign.base] if same_server else [])
        self.addresses.claims = DiskClaims(self.scratch)
        self.index = self.timed("hub scan", self.scan_hub)
        self.state_rows = self.load_state_rows()
        self.new_plan()
        stop: str | None = None
        message: str | None = None
        # The first sync of a connection (the hub holds none of its entries)
        # has nothing to delete and no limit to check: its adds go to the hub
        # while the source is still being read, so that mapping overlaps the
        # server's work.
        if not self.options.dry_run and self.first_sync():
            message = self.timed("source read and adds", self.stream_first_sync)
        else:
            self.timed("source read", self.read_source)
        interrupted = message is not None
        if not interrupted and stop_requested.is_set():
            # Stopped while reading: a partial read must not plan deletes.
            interrupted = True
            message = "interrupted while reading the source; nothing was changed"
        if not interrupted:
            self.timed("plan", self.plan)
            stop = self.safety(len(self.deletes), self.source_entries)
            if stop is not None:
                log.warning("%s: stopped: %s", self.name, stop)
                message = stop
                self.write_planned_ldif()
            elif self.options.dry_run:
                self.write_planned_ldif()
            else:
                message = self.timed("apply", self.apply)
                interrupted = message is not None
        status = self.status(stop, interrupted, interrupted and stop_requested.is_set())
        if not self.options.dry_run and stop is None:
            self.finish_state(interrupted)
            self.unconfirmed.save(self.unknown.values())
        found = self.unconfirmed.summary()
        if found:
            self.problems.append(Problem("note", None, None, found, None))
        result: RunResult = self.timed("report", lambda: self.conclude(
            status, message, self.report_items()))
        return result

    # The steps live in modules of their own, one idea each; their functions
    # are this run's methods. Where a run that reads only changes differs,
    # the step is dirsync.sync.importchanges's, which calls the full one.
    # -- 1. the hub (dirsync.sync.importscan) -------------------------------
    hub_base = importscan.hub_base
    scan_hub = importchanges.scan_hub
    index_entry = importscan.index_entry

    # -- 1 and 2, reading only changes (dirsync.sync.importchanges) -----------
    source_feed = importchanges.source_feed
    accept_changes = importchanges.accept_changes
    load_state_rows = importchanges.load_state_rows
    first_sync = importchanges.first_sync
    held_count = importchanges.held_count

    # -- 2. the source (dirsync.sync.importread) ----------------------------
    source_entries_iter = importchanges.source_entries_iter
    read_source = importread.read_source
    looked_ahead = importread.looked_ahead
    begin_read = importread.begin_read
    consider = importread.consider
    consider_mapped = importread.consider_mapped
    keep_target = importread.keep_target
    end_read = importchanges.end_read
    bad_values = importread.bad_values
    where = importread.where
    skip_reason = importread.skip_reason
    entry_problem = importchanges.entry_problem

    # -- 3. the plan (dirsync.sync.importplan) ------------------------------
    plan = importplan.plan
    container_changes = importplan.container_changes
    new_plan = importchanges.new_plan
    new_item = importplan.new_item
    plan_batch = importplan.plan_batch
    unchanged = importplan.unchanged
    fetch = importplan.fetch
    plan_deletes = importchanges.plan_deletes
    plan_renames = importplan.plan_renames
    write_planned_ldif = importplan.write_planned_ldif
    build = importplan.build
    check_addresses = importplan.check_addresses

    # -- 5. apply (dirsync.sync.importapply) --------------------------------
    stream_first_sync = importapply.stream_first_sync
    streamed_adds = importapply.streamed_adds
    streamed_batch = importapply.streamed_batch
    apply = importapply.apply
    hub_writes = importapply.hub_writes
    apply_records = importapply.apply_records
    count_unfinished = importapply.count_unfinished

    # -- 6. state and the report (dirsync.sync.importrecord) ----------------
    record_state = importrecord.record_state
    finish_state = importchanges.finish_state
    report_items = importrecord.report_items
    report_item = importrecord.report_item

    def close_spools(self) -> None:
        for name in ("targets", "items"):
            spool = getattr(self, name, None)
            if spool is not None:
                spool.close()
        for spool in getattr(self, "phase_spools", {}).values():
            spool.close()


def run_import(config: Config, connection: ConnectionConfig, state: StateStore,
               options: SyncOptions) -> RunResult:
    return ImportRun(config, connection, state, options)()

