"""The run loop: read, map, compare by anchor, plan, check safety, apply, report.

The import direction (:class:`ImportRun`, a foreign directory into the
hub's import container) is one loop that every directory kind shares;
:func:`dirsync.sync.run.run` calls it (through its change detection,
:mod:`dirsync.sync.incremental`) for each connection that imports:

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
   each change in the state store as soon as the hub confirms it;
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
import time
from collections.abc import Callable, Mapping, MutableMapping, MutableSet
from typing import Any

from dirsync.addresses.values import Screen
from dirsync.config import Config, ConnectionConfig
from dirsync.entry import Entry, normalize_dn
from dirsync.errors import EntryError
from dirsync.interrupt import stop_requested
from dirsync.mapping.mapfile import (
    Selected,
    fingerprint,
    load_mapping,
)
from dirsync.mapping.templatebudget import RunBudget
from dirsync.state.runlife import AppliedSoFar
from dirsync.state.staterows import StateRows
from dirsync.state.store import StateRow, StateStore
from dirsync.state.unconfirmed import Unconfirmed
from dirsync.sync import importapply, importplan, importread, importrecord, importscan
from dirsync.sync.importplan import FETCH_CHUNK
from dirsync.sync.importread import _Target
from dirsync.sync.importscan import HubIndex, HubRecord
from dirsync.sync.ownership import AddressGuard
from dirsync.sync.pipeline import Run, RunResult, SyncOptions, peak_memory_mb
from dirsync.sync.report import Problem
from dirsync.sync.scratch import Scratch
from dirsync.sync.scratchclaims import DiskClaims
from dirsync.sync.spool import Spool

log = logging.getLogger("dirsync.engine")

# Importable from here as before the steps had modules of their own.
__all__ = ["ENGINE_VERSION", "FETCH_CHUNK", "HubIndex", "HubRecord", "ImportRun", "_Target",
           "run_import"]

#: Bump when the same mapping and source would give other hub entries, so
#: that every connection's next run is a full one. 3: source values are
#: checked against their syntax (dirsync.addresses.values) before mapping.
ENGINE_VERSION = 3


class ImportRun(Run):
    """One run of one connection, foreign directory -> hub import container."""

    direction = "import"
    target_words = "the hub"

    # Set by the steps' functions (the modules named below), declared here.
    # The source read (begin_read):
    targets: Spool
    wanted: list[tuple[str, str]]           # (anchor, RDN value) to place
    kept: MutableSet[str]                   # unchanged, known without mapping
    held: set[str]                          # anchors with errors: left as they are
    seen: MutableSet[str]
    member_keys: dict[str, str]
    unreadable: int                         # source entries without a known anchor
    source_entries: int
    screen: Screen
    _groups: bool
    _by_dn: bool
    _exported: Callable[[Entry], bool] | None   # loop prevention: exported here, marked
    _returned: int
    # The plan (new_plan):
    items: Spool
    phase_spools: dict[int, Spool]
    # item, anchor, old DN, new DN, state record, entry action
    renames: list[tuple[int, str, str, str, tuple[Any, ...], str]]
    refresh: MutableMapping[str, StateRow]  # found unchanged after comparing
    item_changes: dict[int, int]            # item -> number of its changes
    notes: dict[str, list[str]]             # anchor -> notes for the report
    final_dns: MutableMapping[str, str]     # anchor -> the DN it ends up with (not kept)
    placed_dns: MutableMapping[str, str]    # normalized DN -> anchor (a first sync)
    deletes: list[str]
    remapped: set[str]                      # anchors the plan maps again (address check)
    deleted: set[str]                       # anchors the plan deletes (address check)
    inflight: dict[int, tuple[Any, ...]]    # applied at once, not yet reported
    next_item: int
    _peeked: Any                            # the anchor worked out while reading ahead

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

    # -- what the lifecycle (dirsync.sync.pipeline.Run) asks -------------
    def load(self) -> None:
        mapping = load_mapping(self.connection.mapping_path, self.connection.variables)
        self.selected: Selected = mapping.select(self.connection.recipients,
                                                 self.connection.lists)
        self.fingerprint = fingerprint(
            mapping, engine=ENGINE_VERSION, connection=self.name, container=self.container_key,
            recipients=self.connection.recipients, lists=self.connection.lists,
            hub=self.connection.hub)

    def release(self) -> None:
        self.close_spools()
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

    # Hooks that a run reading only changes (dirsync.sync.incremental) replaces.
    def load_state_rows(self) -> Mapping[str, StateRow]:
        """The state rows this run compares against (none in a full run), read
        from the store as the run asks for them."""
        if self.mode == "incremental":
            return StateRows(self.state, self.name, self.direction)
        return {}

    def first_sync(self) -> bool:
        """Whether the hub holds nothing of this connection yet."""
        return not self.index.ours

    def held_count(self) -> int:
        """How many entries the hub holds for this connection (for the safety limits)."""
        return len(self.index.ours)

    def timed(self, step: str, func: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return func()
        finally:
            log.debug("%s: %s took %.2fs (peak memory so far %.0f MB)", self.name, step,
                      time.perf_counter() - started, peak_memory_mb())

    # The steps live in modules of their own, one idea each; their functions
    # are this run's methods (a run that reads only changes,
    # dirsync.sync.incremental, overrides some of them).
    # -- 1. the hub (dirsync.sync.importscan) -------------------------------
    hub_base = importscan.hub_base
    scan_hub = importscan.scan_hub
    index_entry = importscan.index_entry

    # -- 2. the source (dirsync.sync.importread) ----------------------------
    source_entries_iter = importread.source_entries_iter
    read_source = importread.read_source
    looked_ahead = importread.looked_ahead
    begin_read = importread.begin_read
    consider = importread.consider
    consider_mapped = importread.consider_mapped
    keep_target = importread.keep_target
    end_read = importread.end_read
    bad_values = importread.bad_values
    where = importread.where
    skip_reason = importread.skip_reason
    entry_problem = importread.entry_problem

    # -- 3. the plan (dirsync.sync.importplan) ------------------------------
    plan = importplan.plan
    container_changes = importplan.container_changes
    new_plan = importplan.new_plan
    new_item = importplan.new_item
    plan_batch = importplan.plan_batch
    unchanged = importplan.unchanged
    fetch = importplan.fetch
    plan_deletes = importplan.plan_deletes
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
    finish_state = importrecord.finish_state
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

