"""The import run as its steps see it (:class:`dirsync.sync.engine.ImportRun` is one).

The import's steps are functions in modules of their own (importscan,
importread, importplan, importapply, importrecord, importchanges) whose
first parameter is the run. :class:`ImportSteps`, the run's base class,
declares what they may read, set and call on it, so that they are
type-checked without importing the run (which imports them and binds them
as its methods).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSet
from contextlib import AbstractContextManager
from typing import Any

from dirsync.addresses.values import Problem as ValueProblem
from dirsync.addresses.values import Screen
from dirsync.entry import Entry
from dirsync.errors import EntryError
from dirsync.ldif.changes import Change
from dirsync.mapping.mapfile import Selected
from dirsync.mapping.templatebudget import RunBudget
from dirsync.mapping.templates import SourceView, TemplateError
from dirsync.state.runlife import AppliedSoFar
from dirsync.state.store import StateRow
from dirsync.state.unconfirmed import Unconfirmed
from dirsync.sync.changefeed import Feed
from dirsync.sync.importitems import HubIndex, _Target
from dirsync.sync.ownership import AddressGuard
from dirsync.sync.pipeline import Run
from dirsync.sync.plan import EntryPlan
from dirsync.sync.report import ReportItem
from dirsync.sync.scratch import Scratch
from dirsync.sync.spool import Spool


class ImportSteps(Run):
    """What an import's steps read, set and call on their run."""

    # Set when the run is made and loaded.
    container: str                          # the hub's import container
    container_key: str
    selected: Selected                      # the mapping, as the connection selects it
    budget: RunBudget                       # what the templates may spend, entry by entry
    _classes: dict[frozenset[str], frozenset[str]]
    # Set when the run starts.
    unconfirmed: Unconfirmed
    addresses: AddressGuard
    index: HubIndex
    state_rows: Mapping[str, StateRow]
    # What an incremental run touches (importchanges.accept_changes).
    touched: dict[str, StateRow]
    new_anchors: set[str]
    unowned_names: dict[str, str]
    taken_by_ours: dict[str, str]
    # The source read (begin_read):
    targets: Spool
    wanted: list[tuple[str, str]]           # (anchor, RDN value) to place
    kept: MutableSet[str]                   # unchanged, known without mapping
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
    # The apply (apply, stream_first_sync): what happened to each planned item.
    applied: bool
    streaming: bool                         # a first sync, adding as it reads
    failed: dict[int, EntryError]
    unknown: dict[int, str | None]          # sent when the connection was lost, unanswered
    done: dict[int, int]
    applied_anchors: MutableSet[str]
    scratch: Scratch                        # per-entry bookkeeping on disk
    so_far: AppliedSoFar | None             # made when applying starts

    # -- 1. the hub (importscan; importchanges when reading only changes) ------
    @abstractmethod
    def hub_base(self) -> str: ...
    @abstractmethod
    def scan_hub(self) -> HubIndex: ...
    @abstractmethod
    def index_entry(self, index: HubIndex, entry: Entry, owned: frozenset[str], full: bool,
                    ours: bool) -> None: ...
    @abstractmethod
    def source_feed(self) -> Feed | None: ...
    @abstractmethod
    def accept_changes(self) -> None: ...
    @abstractmethod
    def load_state_rows(self) -> Mapping[str, StateRow]: ...
    @abstractmethod
    def first_sync(self) -> bool: ...
    @abstractmethod
    def held_count(self) -> int: ...

    # -- 2. the source (importread) -----------------------------------------------
    @abstractmethod
    def source_entries_iter(self) -> Iterator[Entry]: ...
    @abstractmethod
    def read_source(self) -> None: ...
    @abstractmethod
    def looked_ahead(self, entries: Iterable[Entry]) -> Iterator[Entry]: ...
    @abstractmethod
    def begin_read(self) -> None: ...
    @abstractmethod
    def consider(self, entry: Entry) -> _Target | None: ...
    @abstractmethod
    def consider_mapped(self, entry: Entry) -> _Target | None: ...
    @abstractmethod
    def keep_target(self, target: _Target) -> None: ...
    @abstractmethod
    def end_read(self) -> None: ...
    @abstractmethod
    def bad_values(self, entry: Entry, problems: list[ValueProblem]) -> str: ...
    @abstractmethod
    def where(self, exc: TemplateError) -> str: ...
    @abstractmethod
    def skip_reason(self, view: SourceView) -> str: ...
    @abstractmethod
    def entry_problem(self, kind: str, entry: Entry, anchor: str | None,
                      message: str) -> None: ...

    # -- 3. the plan (importplan) -------------------------------------------------
    @abstractmethod
    def plan(self) -> None: ...
    @abstractmethod
    def container_changes(self) -> list[Change]: ...
    @abstractmethod
    def new_plan(self) -> None: ...
    @abstractmethod
    def new_item(self, kind: str, anchor: str | None, dn: str, plan: EntryPlan, digest: str,
                 state_kind: str, spool: bool = True) -> list[tuple[Any, ...]]: ...
    @abstractmethod
    def plan_batch(self, batch: list[_Target]) -> None: ...
    @abstractmethod
    def unchanged(self, target: _Target, dn: str) -> None: ...
    @abstractmethod
    def fetch(self, anchors: list[str]) -> dict[str, Entry]: ...
    @abstractmethod
    def plan_deletes(self, before: dict[str, Entry] | None = None) -> None: ...
    @abstractmethod
    def plan_renames(self) -> None: ...
    @abstractmethod
    def write_planned_ldif(self) -> None: ...
    @abstractmethod
    def build(self, target: _Target, dn: str, members: list[str] | None,
              rdn_value: str | None = None) -> Entry: ...
    @abstractmethod
    def check_addresses(self, batch: list[tuple[_Target, Entry, Entry | None]]) -> None: ...

    # -- 5. apply (importapply) ---------------------------------------------------
    @abstractmethod
    def stream_first_sync(self) -> str | None: ...
    @abstractmethod
    def streamed_adds(self, entries: Iterable[Entry]) -> Iterator[tuple[Any, ...]]: ...
    @abstractmethod
    def streamed_batch(self, pending: list[tuple[_Target, Entry]]
                       ) -> Iterator[tuple[Any, ...]]: ...
    @abstractmethod
    def apply(self) -> str | None: ...
    @abstractmethod
    def hub_writes(self) -> AbstractContextManager[list[tuple[str, tuple[Any, ...]]] | None]: ...
    @abstractmethod
    def apply_records(self, records: Iterable[tuple[Any, ...]],
                      deferred: list[tuple[str, tuple[Any, ...]]] | None) -> None: ...
    @abstractmethod
    def count_unfinished(self) -> None: ...

    # -- 6. state and the report (importrecord) -------------------------------------
    @abstractmethod
    def record_state(self, anchor: str, state: tuple[Any, ...]) -> None: ...
    @abstractmethod
    def finish_state(self, interrupted: bool) -> None: ...
    @abstractmethod
    def report_items(self) -> Iterator[ReportItem]: ...
    @abstractmethod
    def report_item(self, record: tuple[Any, ...]) -> ReportItem: ...
