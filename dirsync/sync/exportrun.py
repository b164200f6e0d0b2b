"""The export direction: the hub's export containers into a foreign directory.

One run of one connection, as PRODUCT.md's "What a sync run does" says,
the other way round from :class:`dirsync.sync.engine.ImportRun`:

1. scan the foreign side: every entry the connection exported before is
   found by the mapping's marker attribute (the connection's name) and its
   anchor attribute (the hub entry's ``entryUUID``); everything else there
   is the foreign system's own and is never changed;
2. read the hub: users, contacts and groups in every export container
   (subtree, the mapping's filter and the connection's ``export_filter``),
   leaving out what this connection imported from the same foreign system
   (loop prevention), and give each recipient its address of the foreign
   type (:mod:`dirsync.sync.proxygen`);
3. map each one (:mod:`dirsync.mapping.exportmap`), give it its foreign DN, plan
   adds, modifies, renames and deletes with the same pure functions as the
   import (:mod:`dirsync.sync.plan`);
4. stop before changing anything when a safety limit says so;
5. write generated proxy addresses back to the hub where the connection's
   ``proxy_writeback`` allows, then apply the foreign changes in phases,
   recording each in the state store once the foreign side confirms it (a
   file is written whole and atomically first, then its state rows);
6. write the delta report, with the change file the foreign system's import
   tool reads: LDIF change records, or for a CSV file a CSV of rows with an
   ``Action`` column (:mod:`dirsync.sync.changefile`).

The hub is read whole or only what changed since its cursors
(:class:`dirsync.sync.cursor.Cursor`); where the export differs when it
reads only changes is :mod:`dirsync.sync.exportchanges`.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from collections.abc import Set as AbstractSet
from typing import Any

from dirsync.config import Config, ConnectionConfig
from dirsync.directories.csvfile import ANCHOR_ATTR as CSV_RDN
from dirsync.entry import normalize_dn
from dirsync.errors import ConfigError
from dirsync.ldif.changes import Change
from dirsync.mapping.exportmap import (
    ExportMapping,
)
from dirsync.mapping.exportnames import NumberedNames
from dirsync.mapping.mapfile import fingerprint, load_mapping
from dirsync.state.store import StateRow, StateStore
from dirsync.sync import (
    exportapply,
    exportchanges,
    exportplan,
    exportread,
    exportrecord,
    exportscan,
)
from dirsync.sync.adexport import ADExport, ADNames
from dirsync.sync.exportitemlist import ItemList
from dirsync.sync.exportitems import _Item, _Wanted
from dirsync.sync.exportrecord import CSV_CHANGES, HUB_LDIF
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.pipeline import INTERRUPTED, RunResult, SyncOptions
from dirsync.sync.plan import (
    PHASES,
)
from dirsync.sync.problemspool import ProblemSpool
from dirsync.sync.proxygen import AssignmentStore
from dirsync.sync.scratch import Scratch
from dirsync.sync.spool import Spool
from dirsync.wording import plural

log = logging.getLogger("dirsync.export")

# Importable from here as before the steps had modules of their own.
__all__ = ["CSV_CHANGES", "EXPORT_VERSION", "HUB_LDIF", "ExportRun", "_Item", "_Wanted",
           "run_export"]

#: Bump when the same mapping and hub would give other foreign entries
#: (2: a second entry of one name is "Name (HR)" or "Name (2)", no longer
#: "Name (anchor)"; the first run after an upgrade is full and renames them).
EXPORT_VERSION = 2

#: Records each export spool keeps in memory (ExportRun.spool_items).
EXPORT_SPOOL_ITEMS = 256







class ExportRun(ExportSteps):
    """One run of one connection, hub export containers -> foreign directory.

    What its steps read, set and call is declared in
    :class:`dirsync.sync.exportsteps.ExportSteps`.
    """

    direction = "export"
    target_words = "the foreign side"
    unchanged_words = "hub unchanged"
    log = log
    #: records of each spool kept in memory before the rest go to disk: few,
    #: as a payload or a change record is kilobytes and a run has a dozen
    #: spools (4,096 each held 11 MB more at the peak of a first export of
    #: 30,000 entries)
    spool_items = EXPORT_SPOOL_ITEMS

    def __init__(self, config: Config, connection: ConnectionConfig, state: StateStore,
                 options: SyncOptions) -> None:
        super().__init__(config, connection, state, options)
        self.items = ItemList(self.spool_items)
        #: each item's payload (exportitems.item_payload), in the order of items
        self.payloads = Spool(self.spool_items)
        #: each wanted recipient's small record (exportitems.wanted_record), in order
        self.wanted = Spool(self.spool_items)
        #: each wanted recipient's payload (exportitems.wanted_payload), in order
        self.wanted_payloads = Spool(self.spool_items)
        #: phase -> [(item index, anchor, spool.change_record(change), state kind,
        #: digest)]
        self.phases: dict[int, Spool] = {p: Spool(self.spool_items) for p in PHASES}
        self.hub_changes: list[tuple[int, Change]] = []
        self.applied = False
        self.unreadable_rows = 0
        self.cursor = exportchanges.new_cursor(state, connection)
        # What an incremental run touches (exportchanges.accept_changes).
        self.touched: MutableMapping[str, StateRow] = {}
        self.changed_anchors: AbstractSet[str] = set()
        self.resolved: set[str] = set()     # hub DNs of list members looked up
        # Per-entry bookkeeping on disk (dirsync.sync.scratch), for the run's life.
        self.scratch = Scratch()
        # (An export may note something about every entry it writes.)
        self.problems = self.problem_spool = ProblemSpool(self.spool_items)

    # -- what the lifecycle (dirsync.sync.pipeline.Run) asks -------------
    def release(self) -> None:
        for spool in (self.payloads, self.wanted, self.wanted_payloads,
                      *self.phases.values()):
            spool.close()
        self.problem_spool.close()
        self.items.close()
        self.cursor.drop_changes()
        self.scratch.close()

    def load(self) -> None:
        mapping = load_mapping(self.connection.mapping_path, self.connection.variables)
        if mapping.export is None:
            raise ConfigError(f"{self.connection.key_path}.mapping: {mapping.path} has no "
                              "[export] section, which the export direction needs "
                              "(docs/export.md)")
        self.mapping = mapping
        self.export: ExportMapping = mapping.export
        if not self.connection.export_containers:
            raise ConfigError(f"{self.connection.key_path}.export_containers: none given; the "
                              "export direction reads one or more export containers")
        foreign_config = self.config.directories[self.connection.foreign]
        self.csv = foreign_config.kind == "csv"
        self.check_marker_names()
        self.fingerprint = fingerprint(
            mapping, engine=EXPORT_VERSION, connection=self.name,
            containers=[normalize_dn(c) for c in self.connection.export_containers],
            export_filter=self.connection.export_filter,
            foreign_container=self.connection.foreign_container,
            writeback=self.connection.proxy_writeback, hub=self.connection.hub,
            foreign=self.connection.foreign, kind=foreign_config.kind)

    def setup(self) -> None:
        foreign_config = self.config.directories[self.connection.foreign]
        self.container = "" if self.csv else (self.connection.foreign_container
                                              or foreign_config.base or "")
        if not self.csv and not self.container:
            raise ConfigError(f"{self.connection.key_path}.foreign_container: needed when "
                              f"the foreign directory {self.connection.foreign!r} has no "
                              "base: where exported entries go")
        self.rdn_attribute = CSV_RDN if self.csv else self.export.rdn_attribute
        #: anchor -> ``[export.rdn] qualifier``, filled as the hub is read
        self.qualifiers: MutableMapping[str, str] = self.scratch.map()
        #: AD's own rules (names, schema, unique addresses, write scope), or None
        self.ad = ADExport(self) if foreign_config.kind == "ad" else None
        names = ADNames if self.ad is not None else NumberedNames
        self.naming = names(self.rdn_attribute, self.container, self.qualifiers)
        self.assignments = AssignmentStore(self.state)

    def source(self) -> Any:
        return self.hub

    def report_fields(self) -> dict[str, Any]:
        containers = "; ".join(self.connection.export_containers)
        return {"container": f"{self.connection.foreign} {self.container}".strip(),
                "source": f"{self.connection.hub} ({containers})",
                "hub": self.connection.hub, "mapping": str(self.mapping.path)}

    def check_marker_names(self) -> None:
        if not self.csv:
            return
        for key, name in (("marker_attribute", self.export.marker_attribute),
                          ("anchor_attribute", self.export.anchor_attribute)):
            if name.lower() == CSV_RDN.lower():
                raise ConfigError(f"{self.mapping.where('export.' + key)}: {name} names the "
                                  "row key of a CSV directory; give a column name such as "
                                  "\"Sync Source\" / \"Sync Anchor\"")

    def _run(self) -> RunResult:
        log.info("%s: %s export run%s", self.name, self.mode,
                 " (dry run)" if self.options.dry_run else "")
        self.timed("foreign scan", self.scan_foreign)
        self.state_rows = self.timed("state rows", self.load_state_rows)
        self.timed("hub read", self.read_hub)
        self.timed("plan", self.plan)
        stop = self.safety(len(self.deletes), self.source_count())
        if stop is None and self.unreadable_rows:
            # The file is written whole: rows it could not read would be lost.
            stop = (f"{self.foreign.path} has {plural(self.unreadable_rows, 'row')} that "
                    "cannot be read, and writing the file back would drop them; nothing was changed "
                    "(fix or remove them first)")
        self.forget_plan()
        message = None
        interrupted = False
        if stop is not None:
            log.warning("%s: stopped: %s", self.name, stop)
            message = stop
        elif not self.options.dry_run:
            message = self.timed("apply", self.apply)
            interrupted = message is not None
        self.timed("change files", lambda: self.write_change_files(
            planned=stop is not None or self.options.dry_run))
        status = self.status(stop, interrupted, message is INTERRUPTED)
        if not self.options.dry_run and stop is None:
            self.timed("state", lambda: self.finish_state(interrupted))
        written = self.items.written("proxy")
        if message is None and written:
            message = f"{written} generated proxy address(es) written to the hub"
        return self.timed("report", lambda: self.conclude(
            status, message, self.report_items(), self.extra_files))

    def forget_plan(self) -> None:
        """Let go of what only the plan needed, one record per hub entry each:
        the apply, the state and the report do not read them."""
        self.wanted.close()
        self.wanted_payloads.close()
        self.by_hub_dn = {}
        self.final_dns = {}
        self.imported_here = {}

    # The steps live in modules of their own, one idea each; their functions
    # are this run's methods. Where a run that reads only changes differs,
    # the step is dirsync.sync.exportchanges's, which calls the full one.
    # -- 1. the foreign side (dirsync.sync.exportscan) ----------------------
    foreign_entries = exportscan.foreign_entries
    marked = exportscan.marked
    own_anchor = exportscan.own_anchor
    scan_foreign = exportchanges.scan_foreign
    conflict = exportscan.conflict

    # -- 1 and 2, reading only changes (dirsync.sync.exportchanges) -----------
    source_feed = exportchanges.hub_feed
    accept_changes = exportchanges.accept_changes
    load_state_rows = exportchanges.load_state_rows
    held_count = exportchanges.held_count
    source_count = exportchanges.source_count

    # -- 2. the hub (dirsync.sync.exportread) -------------------------------
    hub_filter = exportread.hub_filter
    hub_entries = exportchanges.hub_entries
    hub_proxy_addresses = exportread.hub_proxy_addresses
    hub_holds_address = exportread.hub_holds_address
    read_hub = exportchanges.read_hub
    prepare = exportread.prepare
    hold = exportread.hold
    entry_problem = exportread.entry_problem
    where = exportread.where
    plan_writeback = exportread.plan_writeback

    # -- 3. the plan (dirsync.sync.exportplan) ------------------------------
    plan = exportchanges.plan
    container_changes = exportplan.container_changes
    member_refs = exportchanges.member_refs
    native_ref = exportplan.native_ref
    foreign_entry = exportplan.foreign_entry
    join_cells = exportplan.join_cells
    compare = exportplan.compare
    add_item = exportplan.add_item
    keep_item = exportplan.keep_item
    plan_renames = exportplan.plan_renames

    # -- 5. apply (dirsync.sync.exportapply) --------------------------------
    apply = exportapply.apply
    apply_hub = exportapply.apply_hub
    apply_phase = exportapply.apply_phase
    record_result = exportapply.record_result

    # -- 5 and 6. state and the report (dirsync.sync.exportrecord) ----------
    record = exportrecord.record
    full_items = exportrecord.full_items
    finish_state = exportchanges.finish_state
    final_rows = exportrecord.final_rows
    store_rows = exportchanges.store_rows
    write_change_files = exportrecord.write_change_files
    report_items = exportrecord.report_items


def run_export(config: Config, connection: ConnectionConfig, state: StateStore,
               options: SyncOptions) -> RunResult:
    return ExportRun(config, connection, state, options)()

