"""The export run as its steps see it (:class:`dirsync.sync.exportrun.ExportRun` is one).

The export's steps are functions in modules of their own (exportscan,
exportread, exportplan, exportapply, exportrecord, exportchanges) whose
first parameter is the run. :class:`ExportSteps`, the run's base class,
declares what they may read, set and call on it, so that they are
type-checked without importing the run (which imports them and binds them
as its methods).
"""

from __future__ import annotations

from abc import abstractmethod
from collections import abc
from collections.abc import Iterable, Iterator, MutableMapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from dirsync.entry import Entry, normalize_dn
from dirsync.ldif.changes import Change
from dirsync.mapping.exportmap import ExportMapping
from dirsync.mapping.exportnames import NumberedNames
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR, Mapping
from dirsync.mapping.templates import TemplateError
from dirsync.state.store import StateRow
from dirsync.sync.adexport import ADExport
from dirsync.sync.changefeed import Feed
from dirsync.sync.exportitemlist import ItemList
from dirsync.sync.exportitems import _Item, _Wanted
from dirsync.sync.pipeline import Run
from dirsync.sync.plan import EntryPlan
from dirsync.sync.proxygen import Assigner, AssignmentStore
from dirsync.sync.report import ReportItem
from dirsync.sync.scratch import Scratch
from dirsync.sync.spool import Spool


class ExportSteps(Run):
    """What an export's steps read, set and call on their run."""

    # Set when the run is made, loaded and set up.
    mapping: Mapping
    export: ExportMapping
    csv: bool                               # the foreign directory is a CSV file
    container: str                          # where exported entries go ("" for a file)
    rdn_attribute: str
    qualifiers: MutableMapping[str, str]    # anchor -> ``[export.rdn] qualifier``
    naming: NumberedNames
    assignments: AssignmentStore
    state_rows: abc.Mapping[str, StateRow]       # (StateRows or a scratch table: on disk)
    scratch: Scratch                        # per-entry tables on disk, for the run's life
    items: ItemList                         # the planned items, compact, by index
    #: each item's payload (hub entry, change, before and after), by index
    payloads: Spool
    #: phase -> [(item index, anchor, change record, state kind, digest)]
    phases: dict[int, Spool]
    #: records of each spool kept in memory before the rest go to disk
    spool_items: int
    hub_changes: list[tuple[int, Change]]
    applied: bool
    unreadable_rows: int
    # What an incremental run touches (exportchanges.accept_changes).
    touched: MutableMapping[str, StateRow]     # (a scratch table)
    changed_anchors: AbstractSet[str]          # (a scratch set)
    resolved: set[str]                      # hub DNs of list members looked up
    # The foreign scan (scan_foreign):
    ours: MutableMapping[str, Entry]        # anchor -> foreign entry (Scratch.entries)
    unowned: dict[str, str]
    others: MutableMapping[str, str]        # (on disk when a file is read to plan changes)
    container_exists: bool
    ad: ADExport | None                     # AD's own rules, or None
    # The hub read (read_hub):
    assigner: Assigner
    wanted: Spool                           # each wanted recipient's small record
    wanted_payloads: Spool                  # each wanted recipient's entry and values
    kept: MutableMapping[str, StateRow]     # unchanged by the state fast path
    by_hub_dn: MutableMapping[str, str]     # normalized hub DN -> anchor (exported)
    imported_here: dict[str, str]           # normalized hub DN -> foreign anchor
    hub_entries_read: int
    # The plan (plan, member_refs):
    refresh: MutableMapping[str, StateRow]  # found unchanged by comparing
    renames: list[tuple[int, str | None, Change, str, str]]
    deletes: list[str]
    final_dns: MutableMapping[str, str]
    _by_uuid: dict[str, str]
    # The apply and the report:
    deferred: Spool                         # (anchor, state row as a tuple, or None)
    extra_files: dict[str, Path]

    # -- what the steps ask of the run ----------------------------------------
    @staticmethod
    def hub_anchor(entry: Entry) -> str:
        """The hub entry's entryUUID; a file hub has none, so the entry's owner and
        foreign anchor for what dirsync created, else its DN."""
        uuid = entry.first("entryUUID")
        if uuid:
            return uuid
        owner, anchor = entry.first(SOURCE_ATTR), entry.first(ANCHOR_ATTR)
        if owner and anchor:
            return f"{owner}:{anchor}"
        return normalize_dn(entry.dn)

    @property
    def key_column(self) -> str:
        return str(self.foreign.key_column)

    # -- 1. the foreign side (exportscan; exportchanges when reading only changes) --
    @abstractmethod
    def foreign_entries(self) -> Iterator[Entry]: ...
    @abstractmethod
    def marked(self, entry: Entry) -> bool: ...
    @abstractmethod
    def own_anchor(self, entry: Entry) -> str | None: ...
    @abstractmethod
    def scan_foreign(self) -> None: ...
    @abstractmethod
    def conflict(self, anchor: str | None, dn: str | None, message: str,
                 line: int | None = None) -> None: ...
    @abstractmethod
    def source_feed(self) -> Feed | None: ...
    @abstractmethod
    def accept_changes(self) -> None: ...
    @abstractmethod
    def load_state_rows(self) -> abc.Mapping[str, StateRow]: ...
    @abstractmethod
    def held_count(self) -> int: ...
    @abstractmethod
    def source_count(self) -> int: ...

    # -- 2. the hub (exportread) ----------------------------------------------------
    @abstractmethod
    def hub_filter(self) -> str: ...
    @abstractmethod
    def hub_entries(self) -> Iterator[Entry]: ...
    @abstractmethod
    def hub_proxy_addresses(self) -> Iterator[str]: ...
    @abstractmethod
    def hub_holds_address(self, value: str) -> bool: ...
    @abstractmethod
    def read_hub(self) -> None: ...
    @abstractmethod
    def prepare(self, entry: Entry, anchor: str) -> _Wanted | None: ...
    @abstractmethod
    def hold(self, anchor: str, dn: str, message: str) -> None: ...
    @abstractmethod
    def entry_problem(self, kind: str, anchor: str | None, dn: str | None,
                      message: str) -> None: ...
    @abstractmethod
    def where(self, exc: TemplateError) -> str: ...
    @abstractmethod
    def plan_writeback(self, anchor: str, entry: Entry, change: Change) -> None: ...

    # -- 3. the plan (exportplan) ---------------------------------------------------
    @abstractmethod
    def plan(self) -> None: ...
    @abstractmethod
    def container_changes(self) -> list[Change]: ...
    @abstractmethod
    def member_refs(self, member_dns: list[str]) -> tuple[list[str], list[str]]: ...
    @abstractmethod
    def native_ref(self, anchor: str) -> str | None: ...
    @abstractmethod
    def foreign_entry(self, dn: str, attrs: dict[str, list[bytes]], classes: list[str],
                      anchor: str, members: list[str], is_list: bool) -> Entry: ...
    @abstractmethod
    def join_cells(self, entry: Entry) -> None: ...
    @abstractmethod
    def add_item(self, kind: str, anchor: str | None, plan: EntryPlan, dn: str, digest: str,
                 state_kind: str, target: Entry | None,
                 notes: list[str] | None = None) -> None: ...
    @abstractmethod
    def plan_renames(self) -> None: ...
    @abstractmethod
    def compare(self, wanted: _Wanted, entry: Entry, extra: dict[str, Any],
                conflicts: dict[str, str], owned: frozenset[str]) -> None: ...
    @abstractmethod
    def keep_item(self, item: _Item) -> int: ...
    @abstractmethod
    def forget_plan(self) -> None: ...

    # -- 5. apply (exportapply) -------------------------------------------------------
    @abstractmethod
    def apply(self) -> str | None: ...
    @abstractmethod
    def apply_hub(self) -> None: ...
    @abstractmethod
    def apply_phase(self, records: Iterable[tuple[int, str | None, Any, str, str]],
                    file_foreign: bool) -> None: ...
    @abstractmethod
    def record_result(self, result: Any, sent: tuple[int, str | None, str, str],
                      file_foreign: bool) -> tuple[str, StateRow | None] | None: ...

    # -- 5 and 6. state and the report (exportrecord) -----------------------------------
    @abstractmethod
    def record(self, anchor: str, row: StateRow | None) -> None: ...
    @abstractmethod
    def finish_state(self, interrupted: bool) -> None: ...
    @abstractmethod
    def final_rows(self) -> Iterator[tuple[str, StateRow]]: ...
    @abstractmethod
    def store_rows(self, rows: Iterable[tuple[str, StateRow]]) -> None: ...
    @abstractmethod
    def write_change_files(self, planned: bool) -> None: ...
    @abstractmethod
    def report_items(self) -> Iterator[ReportItem]: ...
    @abstractmethod
    def full_items(self) -> Iterator[_Item]: ...
