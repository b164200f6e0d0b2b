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
spools (:mod:`dirsync.sync.spool`), not in lists of objects.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ldap.filter

from dirsync.addresses.values import Problem as ValueProblem
from dirsync.addresses.values import mapped_problems, screen_for
from dirsync.config import Config, ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.entry import Entry, join_dn, make_rdn, normalize_dn, parent_dn, same_dn
from dirsync.errors import ConfigError, DirectoryError, EntryError
from dirsync.interrupt import stop_requested
from dirsync.ldif.changes import Change, add_change, rename_change
from dirsync.mapping.exportmap import exported_by
from dirsync.mapping.mapfile import (
    ANCHOR_ATTR,
    KIND_LIST,
    KIND_PERSON,
    SOURCE_ATTR,
    Selected,
    fingerprint,
    load_mapping,
)
from dirsync.mapping.templatebudget import RunBudget
from dirsync.mapping.templates import SourceView, TemplateError
from dirsync.state.runlife import AppliedSoFar
from dirsync.state.store import StateRow, StateStore
from dirsync.state.unconfirmed import Unconfirmed
from dirsync.sync.containers import container_adds, first_rdn
from dirsync.sync.ownership import AddressGuard, Lost
from dirsync.sync.pipeline import INTERRUPTED, Run, RunResult, SyncOptions, peak_memory_mb
from dirsync.sync.plan import (
    PHASE_ADD,
    PHASE_CONTAINER,
    PHASE_RENAME,
    PHASE_RENAME_FINAL,
    PHASES,
    EntryPlan,
    assign_dns,
    candidate_dns,
    delete_plan,
    lower_classes,
    member_key_fold,
    order_deletes,
    order_renames,
    owned_hash,
    place_dn,
    plan_entry,
    resolve_members,
    source_hash,
    target_entry,
)
from dirsync.sync.report import Problem, ReportItem
from dirsync.sync.spool import Spool, change_from_record, change_record

log = logging.getLogger("dirsync.engine")

#: Bump when the same mapping and source would give other hub entries, so
#: that every connection's next run is a full one. 3: source values are
#: checked against their syntax (dirsync.addresses.values) before mapping.
ENGINE_VERSION = 3

#: Hub entries read per search when a run compares re-mapped entries.
FETCH_CHUNK = 200

@dataclass(slots=True)
class HubRecord:
    dn: str
    hash: str | None = None                 # owned attributes (full runs only)
    classes: frozenset[str] | None = None   # lower-case object classes (full runs only)


@dataclass
class HubIndex:
    """What the import container holds, as far as one connection is concerned."""

    container_exists: bool = False
    ours: dict[str, HubRecord] = field(default_factory=dict)
    #: Normalized DN -> DN of entries right below the container that this
    #: connection does not own: a conflict if a source entry wants one.
    unowned: dict[str, str] = field(default_factory=dict)
    #: Entries with this connection's marker that cannot be matched (no
    #: anchor, or an anchor another entry has): reported and left alone.
    anomalies: list[tuple[str, str]] = field(default_factory=list)


# -- the import direction -----------------------------------------------------

@dataclass(slots=True)
class _Target:
    """A mapped source entry waiting in the spool for its DN."""

    anchor: str
    kind: str            # person | list | group (a list in group mode)
    hash: str
    rdn_value: str
    attrs: dict[str, list[bytes]]
    object_classes: list[str]
    members: list[str] | None
    line: int | None

    def record(self) -> tuple[Any, ...]:
        return (self.anchor, self.kind, self.hash, self.rdn_value, self.attrs,
                self.object_classes, self.members, self.line)


class ImportRun(Run):
    """One run of one connection, foreign directory -> hub import container."""

    direction = "import"
    target_words = "the hub"

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
        self.applied_anchors: set[str] = set()
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
    def load_state_rows(self) -> dict[str, StateRow]:
        """The state rows this run compares against (none in a full run)."""
        return self.state.entries(self.name) if self.mode == "incremental" else {}

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

    def hub_base(self) -> str:
        """Where addresses are looked up: the hub's base, else the naming
        context that holds the import container."""
        base = self.config.directories[self.connection.hub].base
        if base:
            return base
        if self.hub.kind == "ldap":
            root = self.hub.get("", ["namingContexts"])
            for context in (root.texts("namingContexts") if root is not None else []):
                if normalize_dn(self.container).endswith(normalize_dn(context)):
                    return context
        return self.container

    # -- 1. the hub --------------------------------------------------------
    def scan_hub(self) -> HubIndex:
        """Find this connection's entries under the import container, and the DNs of others.

        On an LDAP hub the server filters by marker, so only the anchor (and
        in a full run the owned attributes) of each of our entries crosses
        the wire; the entries right below the container that are not ours
        come from a one-level search. A file hub is read whole.
        """
        index = HubIndex()
        full = self.mode == "full"
        owned = self.selected.all_owned()
        attrs = [SOURCE_ATTR, ANCHOR_ATTR]
        if full:
            attrs += ["objectClass", *sorted(owned)]
        self.progress.start("scanning the hub")
        if self.hub.kind == "ldap":
            marker = f"({SOURCE_ATTR}={ldap.filter.escape_filter_chars(self.name)})"
            ours = self.hub.read(ReadOptions(base=self.container, scope="sub", filter=marker,
                                             attrs=attrs[1:] if not full else attrs))
            for entry in ours:
                self.index_entry(index, entry, owned, full, ours=True)
            others = self.hub.read(ReadOptions(base=self.container, scope="one",
                                               filter=f"(!{marker})", attrs=[SOURCE_ATTR]))
            for entry in others:
                index.unowned[normalize_dn(entry.dn)] = entry.dn
            index.container_exists = bool(index.ours or index.unowned or index.anomalies) \
                or self.hub.exists(self.container)
        else:
            name = self.name.casefold()
            for entry in self.hub.read(ReadOptions(base=self.container, scope="sub")):
                source = entry.get(SOURCE_ATTR)
                if source and source[0].decode("utf-8", "replace").casefold() == name:
                    self.index_entry(index, entry, owned, full, ours=True)
                    continue
                key = normalize_dn(entry.dn)
                if key == self.container_key:
                    index.container_exists = True
                elif normalize_dn(parent_dn(entry.dn)) == self.container_key:
                    index.unowned[key] = entry.dn
        for dn, _ in index.anomalies:
            # Not ours to change, but their DNs are taken all the same.
            index.unowned[normalize_dn(dn)] = dn
        if index.ours:
            index.container_exists = True
        return index

    def index_entry(self, index: HubIndex, entry: Entry, owned: frozenset[str], full: bool,
                    ours: bool) -> None:
        """One entry that carries this connection's marker."""
        self.progress.advance()
        anchor_values = entry.get(ANCHOR_ATTR)
        if not anchor_values:
            index.anomalies.append((entry.dn, "carries this connection's marker but no anchor"))
            return
        anchor = anchor_values[0].decode("utf-8", "replace")
        if anchor in index.ours:
            index.anomalies.append((entry.dn, (f"has the anchor {anchor!r} of "
                                              f"{index.ours[anchor].dn}")))
            return
        record = HubRecord(entry.dn)
        if full:
            record.hash = owned_hash(entry.attrs, owned)
            classes = lower_classes(entry.get("objectClass"))
            record.classes = self._classes.setdefault(classes, classes)
        index.ours[anchor] = record

    # -- 2. the source -----------------------------------------------------
    def source_entries_iter(self) -> Iterator[Entry]:
        """The source's entries, after checking that the templates' attributes exist."""
        mapping = self.selected.mapping
        foreign = self.foreign
        if foreign.kind == "ldap":
            known = foreign.attribute_types()
            if known:
                problems = mapping.check_source_names(
                    known, f"not an attribute type of {foreign.server_url}")
                if problems:
                    raise ConfigError(problems)
            options = ReadOptions(filter=mapping.source_filter,
                                  attrs=["*", *mapping.source_attributes])
            yield from foreign.read(options)
            return
        entries = iter(foreign.read())
        first = next(entries, None)
        header = getattr(foreign, "header", None) if foreign.kind == "csv" else None
        if header:
            problems = mapping.check_source_names(
                header, f"the columns of {foreign.path} are: {', '.join(header)}")
            if problems:
                raise ConfigError(problems)
        if first is not None:
            yield first
        yield from entries

    def read_source(self) -> None:
        self.begin_read()
        for entry in self.source_entries_iter():
            if stop_requested.is_set():
                return   # the run ends here (see _run); no plan on a partial read
            target = self.consider(entry)
            if target is not None:
                self.keep_target(target)
        self.end_read()

    def begin_read(self) -> None:
        selected = self.selected
        self.targets = Spool()
        self.wanted: list[tuple[str, str]] = []      # (anchor, RDN value) to place
        self.kept: dict[str, StateRow] = {}          # unchanged, known without mapping
        self.held: set[str] = set()                  # anchors with errors: left as they are
        self.seen: set[str] = set()
        self.member_keys: dict[str, str] = {}
        self.unreadable = 0                          # source entries without a known anchor
        self.source_entries = 0
        self._groups = selected.list_mode == "group" and selected.list_part is not None
        self._by_dn = selected.mapping.member_key == "dn"
        # Loop prevention: what this connection exported comes back marked.
        self._exported = exported_by(selected.mapping.export, self.name)
        self._returned = 0
        self.screen = screen_for(selected.mapping)
        self.progress.start("reading the source")

    def consider(self, entry: Entry) -> _Target | None:
        """One source entry: unchanged, skipped, an error, or a mapped target."""
        with self.budget.entry():
            return self.consider_mapped(entry)

    def consider_mapped(self, entry: Entry) -> _Target | None:
        selected = self.selected
        self.source_entries += 1
        self.progress.advance()
        if self._exported is not None and self._exported(entry):
            self._returned += 1
            return None
        view = selected.view(entry)
        try:
            anchor = selected.anchor(view)
        except TemplateError as exc:
            self.unreadable += 1
            self.entry_problem("error", entry, None, f"no anchor: {self.where(exc)}")
            return None
        if not anchor:
            self.unreadable += 1
            self.entry_problem("error", entry, None, "the anchor template yields nothing "
                               f"({selected.mapping.where('anchor.value')})")
            return None
        if anchor in self.seen:
            self.entry_problem("error", entry, anchor, "another source entry has the same "
                               f"anchor {anchor!r}: this one is skipped")
            return None
        row = self.state_rows.get(anchor)
        if row is not None:
            # Keep the state's copy of the anchor: nothing new stays in memory
            # for an unchanged entry.
            anchor = self._state_anchors.get(anchor, anchor)
        self.seen.add(anchor)
        view.extra["anchor"] = anchor
        digest = source_hash(entry)
        if self._groups:
            try:
                key = selected.member_key(view, anchor)
            except TemplateError as exc:
                key = ""
                self.problems.append(Problem("note", anchor, entry.dn, self.where(exc),
                                             entry.line))
            if key:
                self.member_keys[member_key_fold(key, self._by_dn)] = anchor
        if row is not None and row.hash == digest and row.kind != "group":
            record = self.index.ours.get(anchor)
            if record is not None and same_dn(record.dn, row.dn):
                self.kept[anchor] = row
                self.counts.unchanged += 1
                return None
        # Values are checked before mapping. An unchanged entry passed when
        # it was synced (the state holds hashes of accepted entries only).
        bad = self.screen.problems(entry.dn, entry.attrs)
        if bad:
            self.held.add(anchor)
            self.entry_problem("error", entry, anchor, self.bad_values(entry, bad))
            return None
        try:
            kind = selected.kind(view)
            if kind is None:
                self.counts.skipped += 1
                self.problems.append(Problem("skipped", anchor, entry.dn,
                                             self.skip_reason(view), entry.line))
                return None
            mapped = selected.map(view, anchor, kind)
        except TemplateError as exc:
            self.held.add(anchor)
            self.entry_problem("error", entry, anchor, self.where(exc))
            return None
        bad = mapped_problems(mapped.attrs)
        if bad:
            self.held.add(anchor)
            self.entry_problem("error", entry, anchor, "the mapping makes a bad address: "
                               + self.bad_values(entry, bad))
            return None
        if not mapped.rdn_value:
            self.held.add(anchor)
            self.entry_problem("error", entry, anchor, "the RDN template yields nothing ("
                               f"{selected.mapping.where('rdn.value')})")
            return None
        state_kind = "group" if kind == KIND_LIST and selected.list_mode == "group" else kind
        self.addresses.claim(anchor, mapped.attrs)
        return _Target(anchor, state_kind, digest, mapped.rdn_value, mapped.attrs,
                       mapped.object_classes, mapped.members, entry.line)

    def keep_target(self, target: _Target) -> None:
        """A mapped entry waits for the plan (its DN, its compare)."""
        self.targets.append(target.record())
        self.wanted.append((target.anchor, target.rdn_value))

    def end_read(self) -> None:
        if self._returned:
            self.counts.skipped += self._returned
            self.problems.append(Problem("note", None, None, f"{self._returned} source "
                                         "entries carry this connection's export marker: hub "
                                         "recipients exported here, not imported back", None))
        for rejected in getattr(self.foreign, "rejected", []):
            self.unreadable += 1
            self.counts.error += 1
            self.problems.append(Problem("error", None, rejected.dn, rejected.message,
                                         rejected.line))

    def stream_first_sync(self) -> str | None:
        """Read the source and add its entries to the hub in one pass.

        Only for a connection that owns nothing in the hub yet: no entry can
        be deleted or renamed, so no safety limit applies, and each entry
        gets its DN as it comes (the first of two with one name keeps it).
        Groups wait for the plan, which knows every member's DN. Returns why
        it stopped early, or None.
        """
        self.applied = True
        self.streaming = True
        self.begin_read()
        check = getattr(self.foreign, "check_readable", None)
        if check is not None:
            # A file that turns out not to be CSV halfway must stop the run
            # before the first add, as it would any other run; and its number
            # of rows makes a progress bar possible.
            self.progress.start("adding", check())
        entries = self.source_entries_iter()
        # The first entry is read before anything is written: a mapping that
        # reads attributes the source does not have stops the run here.
        first = next(entries, None)
        try:
            with self.hub_writes() as deferred:
                containers = self.container_changes()
                if containers:
                    self.apply_records(
                        ((self.new_item("container", None, c.dn, EntryPlan(
                            "add", [(PHASE_CONTAINER, c)], after=dict(c.attrs or {})),
                            "", "", spool=False)[0]) for c in containers), deferred)
                    self.index.container_exists = True
                if first is not None:
                    self.apply_records(self.streamed_adds(itertools.chain([first], entries)),
                                       deferred)
        except DirectoryError as exc:
            log.error("%s: %s", self.name, exc)
            self.count_unfinished()
            return f"stopped early, the rest is applied by the next run: {exc}"
        if stop_requested.is_set():
            self.count_unfinished()
            return INTERRUPTED
        self.end_read()
        return None

    def streamed_adds(self, entries: Iterable[Entry]) -> Iterator[tuple[Any, ...]]:
        selected = self.selected
        # Held back a few at a time: their addresses are looked up together.
        pending: list[tuple[_Target, Entry]] = []
        for entry in entries:
            target = self.consider(entry)
            if target is None:
                continue
            if target.kind == "group":
                self.keep_target(target)
                continue
            candidates = candidate_dns(target.anchor, target.rdn_value,
                                       selected.rdn_attribute, self.container)
            dn, conflict = place_dn(target.anchor, candidates, self.placed_dns,
                                    self.index.unowned)
            if dn is None:
                self.counts.conflict += 1
                self.problems.append(Problem("conflict", target.anchor, None,
                                             conflict or "", target.line))
                continue
            self.final_dns[target.anchor] = dn
            pending.append((target, self.build(target, dn, None)))
            if len(pending) >= FETCH_CHUNK:
                yield from self.streamed_batch(pending)
                pending = []
        yield from self.streamed_batch(pending)

    def streamed_batch(self, pending: list[tuple[_Target, Entry]]) -> Iterator[tuple[Any, ...]]:
        self.check_addresses([(target, built, None) for target, built in pending])
        for target, built in pending:
            plan = EntryPlan("add", [(PHASE_ADD, add_change(built))], after=dict(built.attrs))
            yield from self.new_item(target.kind, target.anchor, built.dn, plan, target.hash,
                                     target.kind, spool=False)

    def check_addresses(self, batch: list[tuple[_Target, Entry, Entry | None]]) -> None:
        """Leave out of each entry the addresses another entry holds or claims first.

        An entry that lost one is a conflict; its state row gets no source
        hash, so that the next run checks it again (the holder may let go).
        """
        lost = self.addresses.check(
            ((target.anchor, entry, current) for target, entry, current in batch),
            remapped=self.remapped, deleted=self.deleted)
        for target, entry, _ in batch:
            taken: list[Lost] | None = lost.get(target.anchor)
            if taken:
                target.hash = ""
                self.counts.conflict += 1
                self.problems.append(Problem("conflict", target.anchor, entry.dn,
                                             "; ".join(t.text() for t in taken), target.line))

    def build(self, target: _Target, dn: str, members: list[str] | None) -> Entry:
        selected = self.selected
        return target_entry(dn, target.attrs, target.object_classes,
                            rdn_attribute=selected.rdn_attribute, rdn_value=first_rdn(dn)[1],
                            anchor=target.anchor, connection=self.name, members=members,
                            member_attribute=selected.mapping.member_attribute)

    def bad_values(self, entry: Entry, problems: list[ValueProblem]) -> str:
        """File, line and fields of an entry whose values fail their syntax."""
        path = getattr(self.foreign, "path", None) or getattr(self.foreign, "name", "")
        at = f"{path}:{entry.line}" if entry.line is not None else str(path)
        return (f"{at}: " + "; ".join(str(p) for p in problems)
                + "; the entry is skipped (nothing of it is applied)")

    def where(self, exc: TemplateError) -> str:
        mapping = self.selected.mapping
        line = exc.line or mapping.line_of(exc.key)
        at = f"{mapping.path}:{line}" if line else str(mapping.path)
        return f"{at}: {exc.key}: {exc.message}"

    def skip_reason(self, view: SourceView) -> str:
        mapping = self.selected.mapping
        if mapping.skip is not None and mapping.skip.truth(view):
            return f"the mapping's skip rule: {mapping.skip.source}"
        return "a distribution list, and this connection has lists = \"skip\""

    def entry_problem(self, kind: str, entry: Entry, anchor: str | None, message: str) -> None:
        self.counts.bump(kind)
        self.problems.append(Problem(kind, anchor, entry.dn, message, entry.line))

    # -- 3. the plan -------------------------------------------------------
    def plan(self) -> None:
        selected = self.selected
        ours = self.index.ours
        wanted_anchors = {a for a, _ in self.wanted}
        self.remapped.update(wanted_anchors)
        # Anchors the source no longer has (or now skips) go; entries with
        # errors stay as they are. With unreadable source entries, an
        # anchor that is simply missing may be one of them: hold it back.
        for anchor, record in ours.items():
            if anchor in wanted_anchors or anchor in self.kept or anchor in self.held:
                continue
            if self.unreadable and anchor not in self.seen:
                self.counts.skipped += 1
                self.problems.append(Problem(
                    "skipped", anchor, record.dn,
                    f"not deleted: {self.unreadable} source entries could not be read, and "
                    "this may be one of them", None))
                continue
            self.deletes.append(anchor)
        for dn, why in self.index.anomalies:
            self.counts.conflict += 1
            self.problems.append(Problem("conflict", None, dn, f"left alone: it {why}", None))

        # Where each re-mapped entry goes.
        deleted = set(self.deletes)
        self.deleted.update(deleted)
        # DNs the other entries of this connection keep (only needed to place some),
        # including those a first sync has just added.
        held_dns = dict(self.placed_dns)
        if self.wanted:
            held_dns.update({normalize_dn(r.dn): a for a, r in ours.items()
                             if a not in wanted_anchors and a not in deleted})
        current = {a: ours[a].dn for a in wanted_anchors if a in ours}
        assignment = assign_dns(self.wanted, current, held_dns, self.index.unowned,
                                rdn_attribute=selected.rdn_attribute, container=self.container)
        self.final_dns.update({a: r.dn for a, r in self.kept.items()})
        self.final_dns.update({a: ours[a].dn for a in self.held if a in ours})
        self.final_dns.update(assignment.dns)

        for change in self.container_changes():
            self.new_item("container", None, change.dn,
                          EntryPlan("add", [(PHASE_CONTAINER, change)],
                                    after=dict(change.attrs or {})), "", "")
        self.progress.start("comparing", len(self.targets))
        batch: list[_Target] = []
        for record in self.targets:
            target = _Target(*record)
            if target.anchor in assignment.conflicts:
                self.counts.conflict += 1
                self.problems.append(Problem("conflict", target.anchor, None,
                                             assignment.conflicts[target.anchor], target.line))
                continue
            batch.append(target)
            if len(batch) >= FETCH_CHUNK:
                self.plan_batch(batch)
                batch = []
        if batch:
            self.plan_batch(batch)
        self.plan_deletes()
        self.plan_renames()

    def container_changes(self) -> list[Change]:
        """Adds for the import container and any missing parent (top first)."""
        if self.index.container_exists:
            return []
        return container_adds(self.hub, self.container,
                              self.config.directories[self.connection.hub].base,
                              f"{self.connection.key_path}.import_container")

    def new_plan(self) -> None:
        self.items = Spool()
        self.phase_spools: dict[int, Spool] = {p: Spool() for p in PHASES}
        # item, anchor, old DN, new DN, state record, entry action
        self.renames: list[tuple[int, str, str, str, tuple[Any, ...], str]] = []
        self.refresh: dict[str, StateRow] = {}      # found unchanged after comparing
        self.item_changes: dict[int, int] = {}      # item -> number of its changes
        self.notes: dict[str, list[str]] = {}       # anchor -> notes for the report
        self.final_dns: dict[str, str] = {}         # anchor -> the DN it ends up with
        self.placed_dns: dict[str, str] = {}        # normalized DN -> anchor (a first sync)
        self.deletes: list[str] = []
        # Anchors the plan maps again and deletes (for the address check).
        self.remapped: set[str] = set()
        self.deleted: set[str] = set()
        self.inflight: dict[int, tuple[Any, ...]] = {}  # applied at once, not yet reported
        self.next_item = 0
        self._state_anchors = {anchor: anchor for anchor in self.state_rows}

    def new_item(self, kind: str, anchor: str | None, dn: str, plan: EntryPlan, digest: str,
                 state_kind: str, spool: bool = True) -> list[tuple[Any, ...]]:
        """Record one entry's plan: for the report, and its changes by phase.

        Each change carries what the state store records once the hub has
        confirmed it: the entry's new DN (with the source hash only after
        its last change, so a half-done entry is compared again next time),
        or the removal of its row. With ``spool`` the changes wait in their
        phase; otherwise they are returned, to be applied at once, as
        (item, anchor, change, state, action).
        """
        item = self.next_item
        self.next_item += 1
        changes = plan.changes
        self.item_changes[item] = len(changes)
        counted = kind != "container"
        notes = self.notes.pop(anchor, []) if anchor else []
        if counted and (redone := self.unconfirmed.planned(anchor)) is not None:
            notes.append(redone)
        record = (item, kind, anchor, plan.action, dn, plan.old_dn, plan.before, plan.after,
                  notes)
        if spool:
            self.items.append(record)
        else:
            # Applied at once: reported as soon as the hub has answered.
            self.inflight[item] = record
        if counted:
            self.counts.bump(plan.action)
        action = plan.action if counted else ""
        now_records: list[tuple[Any, ...]] = []
        for position, (phase, change) in enumerate(changes):
            if not counted:
                state: tuple[Any, ...] = ("none",)
            elif change.kind == "delete":
                state = ("drop",)
            else:
                last = position == len(changes) - 1
                state = ("put", change.target_dn, digest if last else "", state_kind)
            if not spool:
                now_records.append((item, anchor, change, state, action))
            elif phase == PHASE_RENAME:
                self.renames.append((item, anchor or "", change.dn, change.target_dn, state,
                                     action))
            else:
                self.phase_spools[phase].append((item, anchor, change_record(change), state,
                                                 action))
        return now_records

    def plan_batch(self, batch: list[_Target]) -> None:
        selected = self.selected
        ours = self.index.ours
        full = self.mode == "full"
        built: list[tuple[_Target, Entry, frozenset[str]]] = []
        fetch: list[str] = []
        for target in batch:
            self.progress.advance()
            dn = self.final_dns[target.anchor]
            members = None
            if target.kind == "group":
                members, unknown = resolve_members(
                    target.members or [], self.member_keys, self.final_dns,
                    by_dn=selected.mapping.member_key == "dn")
                if unknown:
                    self.notes.setdefault(target.anchor, []).append(
                        "members not in the hub, left out: " + ", ".join(unknown))
            entry = self.build(target, dn, members)
            owned = selected.owned(KIND_PERSON if target.kind == KIND_PERSON else KIND_LIST)
            record = ours.get(target.anchor)
            if record is not None and full and record.hash is not None \
                    and record.classes is not None and same_dn(record.dn, dn) \
                    and record.hash == owned_hash(entry.attrs, owned) \
                    and lower_classes(entry.get("objectClass")) <= record.classes:
                self.unchanged(target, record.dn)
                continue
            built.append((target, entry, owned))
            if record is not None:
                fetch.append(target.anchor)
        found = self.fetch(fetch)
        self.check_addresses([(target, entry, found.get(target.anchor))
                              for target, entry, _ in built])
        for target, entry, owned in built:
            # An entry deleted by hand since the scan is simply added again.
            plan = plan_entry(entry, found.get(target.anchor), owned,
                              group=target.kind == "group")
            if plan.action == "unchanged":
                self.unchanged(target, entry.dn)
                continue
            self.new_item(target.kind, target.anchor, entry.dn, plan, target.hash, target.kind)

    def unchanged(self, target: _Target, dn: str) -> None:
        self.refresh[target.anchor] = StateRow(dn, target.hash, target.kind)
        self.counts.unchanged += 1
        notes = self.notes.pop(target.anchor, None)
        if (found := self.unconfirmed.unchanged(target.anchor)) is not None:
            notes = [*(notes or []), found]
        if notes:
            self.problems.append(Problem("note", target.anchor, dn, "; ".join(notes),
                                         target.line))

    def fetch(self, anchors: list[str]) -> dict[str, Entry]:
        """What the hub holds now for these anchors of this connection."""
        if not anchors:
            return {}
        ours = self.index.ours
        found: dict[str, Entry] = {}
        if self.hub.kind != "ldap":
            for anchor in anchors:
                entry = self.hub.get(ours[anchor].dn)
                if entry is not None:
                    found[anchor] = entry
            return found
        attrs = ["objectClass", *sorted(self.selected.all_owned())]
        marker = f"({SOURCE_ATTR}={ldap.filter.escape_filter_chars(self.name)})"
        for start in range(0, len(anchors), FETCH_CHUNK):
            chunk = anchors[start:start + FETCH_CHUNK]
            wanted = "".join(f"({ANCHOR_ATTR}={ldap.filter.escape_filter_chars(a)})"
                             for a in chunk)
            options = ReadOptions(base=self.container, scope="sub",
                                  filter=f"(&{marker}(|{wanted}))", attrs=attrs)
            for entry in self.hub.read(options):
                anchor = entry.first(ANCHOR_ATTR)
                if anchor is not None and anchor in ours and same_dn(entry.dn, ours[anchor].dn):
                    found[anchor] = entry
        return found

    def plan_deletes(self) -> None:
        ours = self.index.ours
        before = self.fetch(self.deletes)
        anchors = {normalize_dn(ours[a].dn): a for a in self.deletes}
        for dn in order_deletes(ours[a].dn for a in self.deletes):
            anchor = anchors[normalize_dn(dn)]
            self.new_item("delete", anchor, dn, delete_plan(dn, before.get(anchor)), "", "")

    def plan_renames(self) -> None:
        attribute = self.selected.rdn_attribute
        container = self.container

        def parking(anchor: str, old: str, new: str) -> str:
            value = first_rdn(new)[1]
            return join_dn(make_rdn(attribute, f"{value} (moving {anchor})"), container)

        planned = {r[1]: r for r in self.renames}
        ordered = order_renames([(r[1], r[2], r[3]) for r in self.renames], parking)
        moved: set[str] = set()
        for anchor, old, new in ordered:
            item, _, _, final, state, action = planned[anchor]
            phase = PHASE_RENAME_FINAL if anchor in moved else PHASE_RENAME
            moved.add(anchor)
            if not same_dn(new, final):
                # Parked under a temporary name; its final rename moves it on.
                state = ("put", new, "", state[3])
                self.item_changes[item] += 1
            self.phase_spools[phase].append(
                (item, anchor, change_record(rename_change(old, new)), state, action))

    def write_planned_ldif(self) -> None:
        for phase in PHASES:
            for _, _, record, _, _ in self.phase_spools[phase]:
                self.report.ldif(change_from_record(record))

    # -- 5. apply ----------------------------------------------------------
    def apply(self) -> str | None:
        """Apply phase by phase; returns why it stopped early, or None."""
        self.applied = True
        total = sum(len(self.phase_spools[p]) for p in PHASES)
        self.progress.start("applying", total)
        stopped: str | None = None
        try:
            with self.hub_writes() as deferred:
                for phase in PHASES:
                    spool = self.phase_spools[phase]
                    if len(spool):
                        self.apply_records(((item, anchor, change_from_record(record), state,
                                             action)
                                            for item, anchor, record, state, action in spool),
                                           deferred)
                    if stop_requested.is_set():
                        stopped = INTERRUPTED
                        break
        except DirectoryError as exc:
            log.error("%s: %s", self.name, exc)
            stopped = f"stopped early, the rest is applied by the next run: {exc}"
        if stopped is not None:
            self.count_unfinished()
        return stopped

    @contextmanager
    def hub_writes(self) -> Iterator[list[tuple[str, tuple[Any, ...]]] | None]:
        """Around applying: a file hub is written back, then its state rows.

        An LDAP hub confirms each change as it goes and its state row is
        written at once (``None`` is yielded); a file hub holds its changes
        in memory until it is flushed, so the rows wait in the yielded list.
        """
        if self.hub.kind == "ldap":
            yield None
            return
        deferred: list[tuple[str, tuple[Any, ...]]] = []
        try:
            yield deferred
        finally:
            self.hub.flush()
            with self.state.transaction():
                for anchor, state in deferred:
                    self.record_state(anchor, state)

    def apply_records(self, records: Iterable[tuple[Any, ...]],
                      deferred: list[tuple[str, tuple[Any, ...]]] | None) -> None:
        """Send (item, anchor, change, state, action) records; record each result.

        A change whose entry already failed is not sent (the modify after a
        failed rename would land on the wrong DN). SIGTERM stops the flow:
        the changes in flight finish and are recorded.
        """
        sent: deque[tuple[int, str | None, tuple[Any, ...], str]] = deque()
        if self.so_far is None:
            self.so_far = AppliedSoFar(self.state, self.run_id)

        def changes() -> Iterator[Change]:
            for item, anchor, change, state, action in records:
                if stop_requested.is_set():
                    return
                if item in self.failed:
                    continue
                sent.append((item, anchor, state, action))
                yield change

        for result in self.hub.apply(changes(), stop_on_error=False):
            item, anchor, state, action = sent.popleft()
            if not self.streaming:
                # A first sync counts source rows instead, as it reads them.
                self.progress.advance()
            if result.unknown:
                # Applied or not: not a failure, and not recorded in the state,
                # so that the next run compares it and says what it found.
                if item not in self.failed and item not in self.unknown and action:
                    self.counts.bump(action, -1)
                    self.counts.unknown += 1
                self.unknown[item] = anchor
                if item in self.inflight:
                    self.report.item(self.report_item(self.inflight.pop(item)))
                continue
            if result.error is not None:
                if item not in self.failed and action:
                    if item in self.unknown:
                        self.counts.unknown -= 1
                    else:
                        self.counts.bump(action, -1)
                    self.counts.error += 1
                self.failed[item] = result.error
                if item in self.inflight:
                    self.report.item(self.report_item(self.inflight.pop(item)))
                continue
            self.done[item] = self.done.get(item, 0) + 1
            self.report.ldif(result.change)
            if action and self.done[item] == self.item_changes.get(item):
                self.so_far.applied(action)
            if item in self.inflight and self.done[item] >= self.item_changes[item]:
                self.report.item(self.report_item(self.inflight.pop(item)))
            if anchor is None or state[0] == "none":
                continue
            self.applied_anchors.add(anchor)
            if deferred is not None:
                deferred.append((anchor, state))
            else:
                self.record_state(anchor, state)

    def count_unfinished(self) -> None:
        """After a stopped apply (the hub lost, or a stop on request): entries
        none of whose changes was sent leave their action's count and count
        as not attempted (the report marks them not applied). Entries with
        some changes confirmed stay counted as their action (the hub shows
        it; the next run does the rest); failed and unknown ones are counted
        already."""
        for record in itertools.chain(self.items, self.inflight.values()):
            item, kind, action = record[0], record[1], record[3]
            if kind == "container" or item in self.failed or item in self.unknown:
                continue
            if self.done.get(item, 0) == 0 and self.item_changes.get(item, 0) > 0:
                self.counts.bump(action, -1)
                self.counts.not_attempted += 1

    def record_state(self, anchor: str, state: tuple[Any, ...]) -> None:
        if state[0] == "drop":
            self.state.drop(self.name, self.direction, anchor)
        elif state[0] == "put":
            self.state.put(self.name, self.direction, anchor,
                           StateRow(state[1], state[2], state[3]))

    def finish_state(self, interrupted: bool) -> None:
        """Bring the state in line with what this run found the hub to hold.

        Rows of applied changes are already written. Entries found unchanged
        by comparing get their rows; rows of anchors the hub does not hold
        go. After a full run the connection's rows are exactly what it found
        and applied (rows left from before, for entries with errors or gone
        from the hub, go). The fingerprint moves only when the run got to
        its end.
        """
        with self.state.transaction():
            if self.mode == "full" and not interrupted:
                for anchor in self.state.entries(self.name, self.direction):
                    if anchor not in self.applied_anchors and anchor not in self.kept \
                            and anchor not in self.refresh:
                        self.state.drop(self.name, self.direction, anchor)
                for anchor, row in self.refresh.items():
                    self.state.put(self.name, self.direction, anchor, row)
            else:
                for anchor, row in self.refresh.items():
                    self.state.put(self.name, self.direction, anchor, row)
                for anchor in self.state_rows:
                    if anchor not in self.index.ours and anchor not in self.applied_anchors:
                        self.state.drop(self.name, self.direction, anchor)
            if not interrupted:
                self.state.set_fingerprint(self.name, self.direction, self.fingerprint)

    # -- 6. the report -----------------------------------------------------
    def report_items(self) -> Iterator[ReportItem]:
        """The entries not reported yet, with what became of them."""
        for record in self.items:
            yield self.report_item(record)
        for item in sorted(self.inflight):
            yield self.report_item(self.inflight[item])
        self.inflight.clear()

    def report_item(self, record: tuple[Any, ...]) -> ReportItem:
        item, kind, anchor, action, dn, old_dn, before, after, notes = record
        error = None
        if not self.applied:
            status = "planned"
        elif item in self.failed:
            status = "failed"
            failure = self.failed[item]
            error = f"{failure.result}: {failure.message}" if failure.result else failure.message
        elif item in self.unknown:
            status = "unknown"
            error = ("sent, but the connection was lost before the answer; the next run "
                     "checks it")
        elif self.done.get(item, 0) >= self.item_changes.get(item, 0):
            status = "applied"
        elif self.done.get(item, 0):
            status = "partly applied"
            error = "stopped early; the next run applies the rest"
        else:
            status = "not attempted"
        return ReportItem(kind=kind, anchor=anchor, action=action, dn=dn, old_dn=old_dn,
                          status=status, error=error, before=before, after=after, notes=notes)

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

