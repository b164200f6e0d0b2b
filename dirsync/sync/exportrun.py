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

This module reads the hub and scans the foreign side in full; the run
that :mod:`dirsync.sync.exportchanges` builds on it reads only what changed
(through :meth:`ExportRun.hub_entries` and the hooks beside it).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap.filter

from dirsync.config import Config, ConnectionConfig
from dirsync.directories import ReadOptions
from dirsync.directories.csvfile import ANCHOR_ATTR as CSV_RDN
from dirsync.directories.ldapfilter import FilterError, compile_filter
from dirsync.entry import Entry, join_dn, make_rdn, normalize_dn, parent_dn, rdn_values, same_dn
from dirsync.errors import ConfigError, DirectoryError, EntryError
from dirsync.interrupt import stop_requested
from dirsync.ldif.changes import Change, rename_change
from dirsync.ldif.io import LDIFWriter
from dirsync.mapping.exportmap import (
    HUB_GROUP,
    KIND_LIST,
    KIND_PERSON,
    ExportMapping,
    proxy_of,
)
from dirsync.mapping.exportnames import NumberedNames, qualifier_text
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR, fingerprint, load_mapping
from dirsync.mapping.templates import TemplateError
from dirsync.schema import matcher
from dirsync.state.store import StateRow, StateStore
from dirsync.sync.changefile import write_csv_changes
from dirsync.sync.changelog import logged
from dirsync.sync.containers import container_adds
from dirsync.sync.pipeline import INTERRUPTED, Run, RunResult, SyncOptions
from dirsync.sync.plan import (
    PHASE_CONTAINER,
    PHASE_RENAME,
    PHASE_RENAME_FINAL,
    PHASES,
    EntryPlan,
    assign_dns,
    delete_plan,
    order_deletes,
    order_renames,
    plan_entry,
    source_hash,
)
from dirsync.sync.proxygen import Assigner, AssignmentStore, writeback_change, writeback_policy
from dirsync.sync.report import Problem, ReportItem
from dirsync.wording import plural

log = logging.getLogger("dirsync.export")

#: Bump when the same mapping and hub would give other foreign entries
#: (2: a second entry of one name is "Name (HR)" or "Name (2)", no longer
#: "Name (anchor)"; the first run after an upgrade is full and renames them).
EXPORT_VERSION = 2

#: Extra files of an export report, next to report.FILES.
HUB_LDIF = "hub-changes.ldif"
CSV_CHANGES = "changes.csv"


@dataclass(slots=True)
class _Wanted:
    """One hub recipient on its way to the foreign side."""

    anchor: str
    hub_dn: str
    kind: str                       # person | list
    hub_kind: str                   # user | contact | group
    rdn_value: str
    digest: str
    entry: Entry                    # the hub entry (lists are mapped once DNs are known)
    extra: dict[str, Any]
    member_dns: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    """One planned foreign (or hub) entry change, for the report and the change file."""

    kind: str
    anchor: str | None
    action: str
    dn: str
    old_dn: str | None
    before: dict[str, list[bytes]] | None
    after: dict[str, list[bytes]] | None
    notes: list[str]
    changes: int = 0
    done: int = 0
    error: EntryError | None = None
    target: Entry | None = None     # what the foreign entry should be (not for deletes)
    counted: bool = True
    unknown: bool = False           # sent when the connection was lost, unanswered


class ExportRun(Run):
    """One run of one connection, hub export containers -> foreign directory."""

    direction = "export"
    target_words = "the foreign side"

    def __init__(self, config: Config, connection: ConnectionConfig, state: StateStore,
                 options: SyncOptions) -> None:
        super().__init__(config, connection, state, options)
        self.items: list[_Item] = []
        #: phase -> [(item index, anchor, change, state kind, digest)]
        self.phases: dict[int, list[tuple[int, str | None, Change, str, str]]] = {
            p: [] for p in PHASES}
        self.hub_changes: list[tuple[int, Change]] = []
        self.applied = False
        self.unreadable_rows = 0

    # -- what the lifecycle (dirsync.sync.pipeline.Run) asks -------------
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
        self.qualifiers: dict[str, str] = {}
        self.naming = NumberedNames(self.rdn_attribute, self.container, self.qualifiers)
        self.assignments = AssignmentStore(self.state)

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
        self.scan_foreign()
        self.state_rows = self.load_state_rows()
        self.read_hub()
        self.plan()
        stop = self.safety(len(self.deletes), self.source_count())
        if stop is None and self.unreadable_rows:
            # The file is written whole: rows it could not read would be lost.
            stop = (f"{self.foreign.path} has {plural(self.unreadable_rows, 'row')} that "
                    "cannot be read, and writing the file back would drop them; nothing was changed "
                    "(fix or remove them first)")
        message = None
        interrupted = False
        if stop is not None:
            log.warning("%s: stopped: %s", self.name, stop)
            message = stop
        elif not self.options.dry_run:
            message = self.apply()
            interrupted = message is not None
        self.write_change_files(planned=stop is not None or self.options.dry_run)
        status = self.status(stop, interrupted, message is INTERRUPTED)
        if not self.options.dry_run and stop is None:
            self.finish_state(interrupted)
        written = sum(1 for i in self.items if i.kind == "proxy" and i.changes
                      and i.done >= i.changes)
        if message is None and written:
            message = f"{written} generated proxy address(es) written to the hub"
        return self.conclude(status, message, self.report_items(), self.extra_files)

    # -- 1. the foreign side -----------------------------------------------
    def foreign_entries(self) -> Iterator[Entry]:
        if self.csv:
            yield from self.foreign.read()
            self.unreadable_rows = len(self.foreign.rejected)
            for rejected in self.foreign.rejected:
                self.problems.append(Problem("error", None, rejected.dn, "the foreign file has "
                                             f"a row that cannot be read: {rejected.message}",
                                             rejected.line))
            return
        if self.foreign.kind == "ldap":
            options = ReadOptions(base=self.container, scope="sub", attrs=["*"])
        else:
            options = ReadOptions(base=self.container, scope="sub")
        yield from self.foreign.read(options)

    def marked(self, entry: Entry) -> bool:
        """Does a foreign entry carry this connection's marker (is it the connection's)?"""
        owner = entry.first(self.export.marker_attribute)
        return owner is not None and owner.strip().casefold() == self.name.casefold()

    def own_anchor(self, entry: Entry) -> str | None:
        """The anchor of a foreign entry of this connection; None for anyone else's."""
        return (entry.first(self.export.anchor_attribute) or None) if self.marked(entry) \
            else None

    def scan_foreign(self) -> None:
        """Index the foreign side: our entries by anchor, the DNs of everyone else's."""
        self.ours: dict[str, Entry] = {}
        self.unowned: dict[str, str] = {}
        #: normalized DN -> anchor: names this connection's entries keep, for
        #: entries this run does not plan (an incremental run plans only changes)
        self.others: dict[str, str] = {}
        self.container_exists = self.csv
        anchor_attr = self.export.anchor_attribute
        container_key = normalize_dn(self.container)
        self.progress.start("scanning the foreign directory")
        for entry in self.foreign_entries():
            self.progress.advance()
            key = normalize_dn(entry.dn)
            if self.marked(entry):
                anchor = entry.first(anchor_attr)
                if not anchor:
                    self.conflict(None, entry.dn, f"carries this connection's marker but no "
                                  f"{anchor_attr}: left alone")
                    self.unowned[key] = entry.dn
                elif anchor in self.ours:
                    self.conflict(anchor, entry.dn, f"has the anchor of "
                                  f"{self.ours[anchor].dn}: left alone")
                    self.unowned[key] = entry.dn
                else:
                    self.ours[anchor] = entry
                continue
            if self.csv:
                self.unowned[key] = entry.dn
            elif key == container_key:
                self.container_exists = True
            elif normalize_dn(parent_dn(entry.dn)) == container_key:
                self.unowned[key] = entry.dn
        if self.ours:
            self.container_exists = True

    def load_state_rows(self) -> dict[str, StateRow]:
        """The rows the hash fast path compares with (none on a full run)."""
        if self.mode == "incremental":
            return self.state.entries(self.name, self.direction)
        return {}

    def held_count(self) -> int:
        """Foreign entries this connection holds, for the delete threshold."""
        return len(self.ours)

    def source_count(self) -> int:
        """Hub entries the export containers hold, for the empty-source check."""
        return self.hub_entries_read

    def conflict(self, anchor: str | None, dn: str | None, message: str,
                 line: int | None = None) -> None:
        self.counts.conflict += 1
        self.problems.append(Problem("conflict", anchor, dn, message, line))

    # -- 2. the hub --------------------------------------------------------
    def hub_filter(self) -> str:
        extra = self.connection.export_filter
        return f"(&{self.export.filter}{extra.strip()})" if extra else self.export.filter

    def hub_entries(self) -> Iterator[Entry]:
        """Every entry of every export container that passes the filters, once.

        This reads the hub in full; :mod:`dirsync.sync.exportchanges` overrides it
        with the entries a syncrepl or timestamp read reports as changed.
        """
        text = self.hub_filter()
        local: Callable[[Entry], bool] | None = None
        if self.hub.kind != "ldap":
            # A file hub does not evaluate filters; dirsync does.
            try:
                local = compile_filter(text)
            except FilterError as exc:
                raise ConfigError(f"{self.connection.key_path}: the export filter: {exc}") \
                    from exc
        seen: set[str] = set()
        for container in self.connection.export_containers:
            options = ReadOptions(base=container, scope="sub", filter=text,
                                  attrs=self.export.read_attributes())
            for entry in self.hub.read(options):
                if local is not None and not local(entry):
                    continue
                key = normalize_dn(entry.dn)
                if key in seen:
                    continue    # export containers may nest
                seen.add(key)
                yield entry

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

    def hub_proxy_addresses(self) -> Iterator[str]:
        """Every proxy address of the foreign type the hub holds (for uniqueness)."""
        kind = self.export.proxy_type
        base = self.config.directories[self.connection.hub].base or ""
        prefix = kind.casefold() + ":"
        if self.hub.kind == "ldap":
            value = ldap.filter.escape_filter_chars(kind + ":")
            options = ReadOptions(base=base, scope="sub", filter=f"(proxyAddresses={value}*)",
                                  attrs=["proxyAddresses"])
        else:
            options = ReadOptions(base=base or None, scope="sub")
        for entry in self.hub.read(options):
            for value in entry.texts("proxyAddresses"):
                if value.casefold().startswith(prefix):
                    yield value

    def hub_holds_address(self, value: str) -> bool:
        """Whether a hub entry holds ``value`` (``TYPE:address``, any case) in
        proxyAddresses: one equality search (``index proxyAddresses eq``)."""
        base = self.config.directories[self.connection.hub].base or ""
        wanted = value.casefold()
        options = ReadOptions(base=base, scope="sub",
                              filter=f"(proxyAddresses={ldap.filter.escape_filter_chars(value)})",
                              attrs=["proxyAddresses"])
        return any(v.casefold() == wanted for entry in self.hub.read(options)
                   for v in entry.texts("proxyAddresses"))

    def read_hub(self) -> None:
        export = self.export
        kind = export.proxy_type
        hub_name = self.connection.hub
        if self.mode == "incremental":
            # Only the anchors this run touches are looked up, and only the
            # addresses it is about to give out (STYLE: cost follows change).
            holds = self.hub_holds_address if self.hub.kind == "ldap" else None
            self.assigner = Assigner(kind, self.hub_proxy_addresses,
                                     self.assignments.view(hub_name, kind), hub_holds=holds)
        else:
            self.assigner = Assigner(kind, self.hub_proxy_addresses,
                                     self.assignments.load(hub_name, kind))
        name = self.name.casefold()
        self.wanted: list[_Wanted] = []
        self.kept: dict[str, StateRow] = {}      # unchanged by the state fast path
        self.held: set[str] = set()               # anchors with errors: left as they are
        self.by_hub_dn: dict[str, str] = {}       # normalized hub DN -> anchor (exported)
        self.imported_here: dict[str, str] = {}   # normalized hub DN -> foreign anchor
        self.hub_entries_read = 0
        seen: set[str] = set()
        rows = self.state_rows
        self.progress.start("reading the hub")
        for entry in self.hub_entries():
            self.progress.advance()
            self.hub_entries_read += 1
            owner = entry.first(SOURCE_ATTR)
            if owner is not None and owner.casefold() == name:
                # Loop prevention: imported from this very foreign system.
                self.imported_here[normalize_dn(entry.dn)] = entry.first(ANCHOR_ATTR) or ""
                continue
            anchor = self.hub_anchor(entry)
            if anchor in seen:
                self.entry_problem("error", anchor, entry.dn, "another hub entry has the same "
                                   "anchor: this one is skipped")
                continue
            seen.add(anchor)
            wanted = self.prepare(entry, anchor)
            if wanted is None:
                continue
            self.by_hub_dn[normalize_dn(entry.dn)] = anchor
            row = rows.get(anchor)
            current = self.ours.get(anchor)
            if row is not None and row.hash == wanted.digest and row.kind != KIND_LIST \
                    and current is not None and same_dn(current.dn, row.dn):
                self.kept[anchor] = StateRow(current.dn, row.hash, row.kind)
                self.counts.unchanged += 1
                continue
            self.wanted.append(wanted)

    def prepare(self, entry: Entry, anchor: str) -> _Wanted | None:
        """Classify one hub entry and give it its address; None when it is not exported."""
        export = self.export
        extra: dict[str, Any] = {"anchor": anchor, "connection": self.name}
        view = export.view(entry, **extra)
        try:
            if export.skip is not None and export.skip.truth(view):
                self.counts.skipped += 1
                self.problems.append(Problem("skipped", anchor, entry.dn, "the export's skip "
                                             f"rule: {export.skip.source}"))
                return None
            hub_kind = export.hub_kind(view)
            kind = KIND_LIST if hub_kind == HUB_GROUP else KIND_PERSON
            if kind == KIND_LIST and export.list_part is None:
                self.counts.skipped += 1
                self.problems.append(Problem("skipped", anchor, entry.dn, "a group, and the "
                                             "mapping has no [export.list]"))
                return None
            existing = entry.texts("proxyAddresses")
            assigned = self.assigner.assign(anchor, existing, lambda: export.candidate(view))
        except TemplateError as exc:
            self.hold(anchor, entry.dn, self.where(exc))
            return None
        except ValueError as exc:
            self.hold(anchor, entry.dn, str(exc))
            return None
        if assigned is None:
            self.hold(anchor, entry.dn, f"no {export.proxy_type} address: the template yields "
                      f"nothing ({self.mapping.where('export.proxy_address')})")
            return None
        notes: list[str] = []
        if assigned.replaces is not None:
            notes.append(f"{export.proxy_type}:{assigned.address} replaces "
                         f"{export.proxy_type}:{assigned.replaces}, which the hub entry no "
                         "longer makes; the old address stays a secondary")
        if assigned.generated and assigned.values is not None:
            policy = writeback_policy(entry, self.connection.proxy_writeback)
            address = f"{export.proxy_type}:{assigned.address}"
            if policy.write:
                change = writeback_change(entry, assigned.values, policy.add_class)
                if change is not None:
                    self.plan_writeback(anchor, entry, change)
            else:
                notes.append(f"{address} generated, not written to the hub: {policy.reason}")
        _, every = proxy_of(assigned.values or entry.texts("proxyAddresses"),
                            export.proxy_type)
        proxies: dict[str, str] = {}
        for address in (assigned.address, *every, *reversed(assigned.former)):
            proxies.setdefault(address.casefold(), address)
        extra.update(kind=hub_kind, proxy=assigned.address, proxies=list(proxies.values()),
                     members=[])
        view = export.view(entry, **extra)
        try:
            rdn_value = export.rdn.first(view)
            member_dns = export.members.strings(view) if kind == KIND_LIST else []
            if export.rdn_qualifier is not None:
                qualifier = qualifier_text(export.rdn_qualifier.first(view))
                if qualifier:
                    self.qualifiers[anchor] = qualifier
        except TemplateError as exc:
            self.hold(anchor, entry.dn, self.where(exc))
            return None
        if not rdn_value:
            self.hold(anchor, entry.dn, "the RDN template yields nothing "
                      f"({self.mapping.where('export.rdn.value')})")
            return None
        for note in notes:
            self.problems.append(Problem("note", anchor, entry.dn, note))
        digest = hashlib.blake2b(source_hash(entry).encode() + b"\0"
                                 + "\n".join(proxies.values()).encode("utf-8"),
                                 digest_size=16).hexdigest()
        return _Wanted(anchor, entry.dn, kind, hub_kind, rdn_value, digest, entry, extra,
                       member_dns)

    def hold(self, anchor: str, dn: str, message: str) -> None:
        """An entry that cannot be mapped: reported, its foreign entry left as it is."""
        self.held.add(anchor)
        self.entry_problem("error", anchor, dn, message)

    def entry_problem(self, kind: str, anchor: str | None, dn: str | None, message: str) -> None:
        self.counts.bump(kind)
        self.problems.append(Problem(kind, anchor, dn, message))

    def where(self, exc: TemplateError) -> str:
        line = exc.line or self.mapping.line_of(exc.key)
        at = f"{self.mapping.path}:{line}" if line else str(self.mapping.path)
        return f"{at}: {exc.key}: {exc.message}"

    def plan_writeback(self, anchor: str, entry: Entry, change: Change) -> None:
        touched = {m.attr.lower() for m in change.mods}
        before = {k: list(v) for k, v in entry.attrs.items() if k.lower() in touched}
        after = {k: list(v) for k, v in before.items()}
        for mod in change.mods:
            values = after.setdefault(mod.attr, [])
            if mod.op == "delete":
                after[mod.attr] = [v for v in values if v not in mod.values]
            else:
                values.extend(mod.values)
        after = {k: v for k, v in after.items() if v}
        item = _Item("proxy", anchor, "modify", entry.dn, None, before, after,
                     ["the recipient update service: a generated proxy address"], changes=1,
                     counted=False)
        self.items.append(item)
        self.hub_changes.append((len(self.items) - 1, change))

    # -- 3. the plan -------------------------------------------------------
    def plan(self) -> None:
        self.refresh: dict[str, StateRow] = {}    # found unchanged by comparing
        self.renames: list[tuple[int, str | None, Change, str, str]] = []
        wanted_anchors = {w.anchor for w in self.wanted}
        self.deletes = [a for a in self.ours
                        if a not in wanted_anchors and a not in self.kept and a not in self.held]
        deleted = set(self.deletes)
        # Names other entries of the connection keep: those of this run that are
        # not re-mapped, and (incremental) those of entries it does not plan.
        held_dns = dict(self.others)
        held_dns.update({normalize_dn(e.dn): a for a, e in self.ours.items()
                         if a not in wanted_anchors and a not in deleted})
        current = {a: self.ours[a].dn for a in wanted_anchors if a in self.ours}
        assignment = assign_dns([(w.anchor, w.rdn_value) for w in self.wanted], current,
                                held_dns, self.unowned, rdn_attribute=self.rdn_attribute,
                                container=self.container, naming=self.naming)
        self.final_dns = {a: r.dn for a, r in self.kept.items()}
        self.final_dns.update({a: self.ours[a].dn for a in self.held if a in self.ours})
        self.final_dns.update(assignment.dns)

        if not self.container_exists and (self.wanted or self.kept):
            for change in self.container_changes():
                self.add_item("container", None, EntryPlan(
                    "add", [(PHASE_CONTAINER, change)], after=dict(change.attrs or {})),
                    change.dn, "", "", None)
        owned = self.export.owned(rdn=not self.csv)
        if self.csv:
            owned |= {self.key_column.lower()}
        self.progress.start("comparing", len(self.wanted))
        for wanted in sorted(self.wanted, key=lambda w: w.kind == KIND_LIST):
            self.progress.advance()
            if wanted.anchor in assignment.conflicts:
                self.conflict(wanted.anchor, wanted.hub_dn, assignment.conflicts[wanted.anchor])
                continue
            dn = self.final_dns[wanted.anchor]
            notes: list[str] = []
            if wanted.kind == KIND_LIST:
                refs, unknown = self.member_refs(wanted.member_dns)
                wanted.extra["members"] = refs
                if unknown:
                    notes.append("members not exported to this system, left out: "
                                 + ", ".join(unknown))
            view = self.export.view(wanted.entry, **wanted.extra)
            try:
                mapped = self.export.map(view, wanted.kind)
            except TemplateError as exc:
                self.hold(wanted.anchor, wanted.hub_dn, self.where(exc))
                continue
            target = self.foreign_entry(dn, mapped.attrs, mapped.object_classes,
                                        wanted.anchor, wanted.extra.get("members", []),
                                        wanted.kind == KIND_LIST)
            plan = plan_entry(target, self.ours.get(wanted.anchor), owned,
                              group=wanted.kind == KIND_LIST)
            if plan.action == "unchanged":
                self.refresh[wanted.anchor] = StateRow(target.dn, wanted.digest, wanted.kind)
                self.counts.unchanged += 1
                for note in notes:
                    self.problems.append(Problem("note", wanted.anchor, target.dn, note))
                continue
            self.add_item(wanted.kind, wanted.anchor, plan, target.dn, wanted.digest,
                          wanted.kind, target, notes)
        ordered = order_deletes(self.ours[a].dn for a in self.deletes)
        by_dn = {normalize_dn(self.ours[a].dn): a for a in self.deletes}
        for dn in ordered:
            anchor = by_dn[normalize_dn(dn)]
            self.add_item("delete", anchor, delete_plan(dn, self.ours[anchor]), dn, "", "",
                          None)
        self.plan_renames()

    def container_changes(self) -> list[Change]:
        """Adds for the foreign container and any missing parent (top first)."""
        return container_adds(self.foreign, self.container,
                              self.config.directories[self.connection.foreign].base,
                              f"{self.connection.key_path}.foreign_container")

    @property
    def key_column(self) -> str:
        return str(self.foreign.key_column)

    def member_refs(self, member_dns: list[str]) -> tuple[list[str], list[str]]:
        """How the foreign side names a list's members: (references, unknown members).

        An exported member is named by its foreign DN (for a CSV file, its
        key). A member this connection imported from the same foreign
        system is named by its own foreign identity: for a CSV file the
        import anchor (the bundled file mappings anchor by the key column),
        for a directory its DN, or the entry whose entryUUID the anchor is.
        """
        refs: dict[str, str] = {}
        unknown: list[str] = []
        for dn in member_dns:
            key = normalize_dn(dn)
            anchor = self.by_hub_dn.get(key)
            ref = None
            if anchor is not None and anchor in self.final_dns:
                final = self.final_dns[anchor]
                ref = rdn_values(final)[0][1] if self.csv else final
            elif key in self.imported_here:
                ref = self.native_ref(self.imported_here[key])
            if ref:
                refs.setdefault(ref.casefold() if self.csv else normalize_dn(ref), ref)
            else:
                unknown.append(dn)
        return sorted(refs.values(), key=str.casefold), unknown

    def native_ref(self, anchor: str) -> str | None:
        if not anchor:
            return None
        if self.csv:
            return anchor
        if "=" in anchor:
            return anchor
        if not hasattr(self, "_by_uuid"):
            self._by_uuid: dict[str, str] = {}
        if anchor not in self._by_uuid:
            found = None
            base = self.config.directories[self.connection.foreign].base or ""
            if self.foreign.kind == "ldap":
                value = ldap.filter.escape_filter_chars(anchor)
                for entry in self.foreign.read(ReadOptions(base=base, scope="sub",
                                                           filter=f"(entryUUID={value})",
                                                           attrs=["1.1"])):
                    found = entry.dn
            else:
                for entry in self.foreign.read(ReadOptions(base=base or None, scope="sub")):
                    if entry.first("entryUUID") == anchor:
                        found = entry.dn
            self._by_uuid[anchor] = found or ""
        return self._by_uuid[anchor] or None

    def foreign_entry(self, dn: str, attrs: dict[str, list[bytes]], classes: list[str],
                      anchor: str, members: list[str], is_list: bool) -> Entry:
        """The foreign entry a mapped hub recipient should be."""
        export = self.export
        entry = Entry(dn)
        if not self.csv and classes:
            entry.add("objectClass", [c.encode("utf-8") for c in classes])
        for name, values in attrs.items():
            entry.add(name, list(values))
        rdn_value = rdn_values(dn)[0][1]
        if self.csv:
            entry.set(self.key_column, [rdn_value.encode("utf-8")])
            self.join_cells(entry)
        else:
            norm = matcher(self.rdn_attribute)
            if norm(rdn_value.encode()) not in {norm(v) for v in entry.get(self.rdn_attribute)}:
                entry.add(self.rdn_attribute, [rdn_value.encode("utf-8")])
            if is_list and export.member_attribute:
                # groupOfNames needs a member: pointing at itself adds nobody.
                entry.set(export.member_attribute,
                          [m.encode("utf-8") for m in (members or [dn])])
        entry.set(export.marker_attribute, [self.name.encode("utf-8")])
        entry.set(export.anchor_attribute, [anchor.encode("utf-8")])
        return entry

    def join_cells(self, entry: Entry) -> None:
        """A CSV cell holds one value unless the directory splits that column: join
        several into one, as the file will hold them, so the next run compares equal."""
        layout = self.foreign.layout
        sep = layout.multi_value_separator
        for name in entry.names():
            values = entry.get(name)
            split = bool(sep) and (not layout.multi_valued or name in layout.multi_valued)
            if len(values) > 1 and not split:
                entry.set(name, [(sep or ";").encode().join(values)])

    def add_item(self, kind: str, anchor: str | None, plan: EntryPlan, dn: str, digest: str,
                 state_kind: str, target: Entry | None,
                 notes: list[str] | None = None) -> None:
        counted = kind != "container"
        item = _Item(kind, anchor, plan.action, dn, plan.old_dn, plan.before, plan.after,
                     list(notes or []), changes=len(plan.changes), target=target,
                     counted=counted)
        self.items.append(item)
        index = len(self.items) - 1
        if counted:
            self.counts.bump(plan.action)
        for position, (phase, change) in enumerate(plan.changes):
            last = position == len(plan.changes) - 1
            record = (index, anchor if counted else None, change, state_kind,
                      digest if last else "")
            if phase == PHASE_RENAME:
                self.renames.append(record)
            else:
                self.phases[phase].append(record)

    def plan_renames(self) -> None:
        attribute = self.rdn_attribute
        container = self.container
        renames = self.renames

        def parking(anchor: str, old: str, new: str) -> str:
            value = rdn_values(new)[0][1]
            return join_dn(make_rdn(attribute, f"{value} (moving {anchor})"),
                           container if not self.csv else "")

        by_anchor = {r[1]: r for r in renames}
        ordered = order_renames([(r[1] or "", r[2].dn, r[2].target_dn) for r in renames],
                                parking)
        moved: set[str] = set()
        for anchor, old, new in ordered:
            index, _, change, state_kind, digest = by_anchor[anchor]
            phase = PHASE_RENAME_FINAL if anchor in moved else PHASE_RENAME
            moved.add(anchor)
            if not same_dn(new, change.target_dn):
                self.items[index].changes += 1
                digest = ""
            self.phases[phase].append((index, anchor, rename_change(old, new), state_kind,
                                       digest))

    # -- 5. apply ----------------------------------------------------------
    def apply(self) -> str | None:
        """Hub write-backs, then the foreign phases; returns why it stopped early, or None."""
        self.applied = True
        stopped = None
        file_foreign = self.foreign.kind != "ldap"
        self.deferred: list[tuple[str, StateRow | None]] = []
        total = sum(len(v) for v in self.phases.values())
        try:
            if self.hub_changes:
                # The hub holds an address before the foreign system learns it.
                self.apply_hub()
            self.progress.start("applying", total)
            for phase in PHASES:
                if self.phases[phase]:
                    self.apply_phase(self.phases[phase], file_foreign)
                if stop_requested.is_set():
                    stopped = INTERRUPTED
                    break
        except DirectoryError as exc:
            log.error("%s: %s", self.name, exc)
            stopped = f"stopped early, the rest is applied by the next run: {exc}"
        if file_foreign:
            try:
                # The whole file, atomically; then the state rows that describe it.
                self.foreign.flush()
            except OSError as exc:
                raise DirectoryError(f"{self.connection.foreign}: cannot write "
                                     f"{self.foreign.path}: {exc.strerror}") from exc
            with self.state.transaction():
                for anchor, row in self.deferred:
                    self.record(anchor, row)
        if stopped is not None:
            # As the import counts them (docs/operations.md): confirmed changes
            # are applied, unanswered ones unknown, unsent ones not attempted.
            for item in self.items:
                if item.counted and item.error is None and not item.unknown \
                        and item.done == 0 < item.changes:
                    self.counts.bump(item.action, -1)
                    self.counts.not_attempted += 1
        return stopped

    def apply_hub(self) -> None:
        path = self.report.folder / HUB_LDIF
        with open(path, "w", encoding="utf-8", newline="\n") as stream:
            writer = LDIFWriter(stream)
            writer.version()
            writer.comment(f"proxy addresses written to the hub {self.connection.hub} by "
                           f"export run {self.run_id} of connection {self.name}")
            stream.write("\n")
            changes = [c for _, c in self.hub_changes]
            for (index, _), result in zip(self.hub_changes,
                                          self.hub.apply(changes, stop_on_error=False)):
                item = self.items[index]
                if result.error is not None:
                    item.error = result.error
                    self.counts.error += 1
                    continue
                item.done = 1
                writer.change(result.change)
        if self.hub.kind != "ldap":
            self.hub.flush()

    def apply_phase(self, records: list[tuple[int, str | None, Change, str, str]],
                    file_foreign: bool) -> None:
        sent: list[tuple[int, str | None, str, str]] = []

        def changes() -> Iterator[Change]:
            for index, anchor, change, state_kind, digest in records:
                if stop_requested.is_set():
                    return
                if self.items[index].error is not None:
                    continue
                sent.append((index, anchor, state_kind, digest))
                yield change

        position = 0
        send = logged(self.foreign.apply, self.name, self.run_id, self.direction)
        for result in send(changes(), stop_on_error=False):
            index, anchor, state_kind, digest = sent[position]
            position += 1
            self.progress.advance()
            item = self.items[index]
            if result.unknown:
                if item.error is None and not item.unknown and item.counted:
                    self.counts.bump(item.action, -1)
                    self.counts.unknown += 1
                item.unknown = True
                continue
            if result.error is not None:
                if item.error is None and item.counted:
                    self.counts.bump(item.action, -1)
                    self.counts.error += 1
                item.error = result.error
                continue
            item.done += 1
            self.report.ldif(result.change)
            if anchor is None:
                continue
            row = None if result.change.kind == "delete" else \
                StateRow(result.change.target_dn, digest, state_kind)
            if file_foreign:
                self.deferred.append((anchor, row))
            else:
                self.record(anchor, row)

    def record(self, anchor: str, row: StateRow | None) -> None:
        if row is None:
            self.state.drop(self.name, self.direction, anchor)
        else:
            self.state.put(self.name, self.direction, anchor, row)

    def finish_state(self, interrupted: bool) -> None:
        """Rows for every exported entry as the foreign side now holds it; the
        generated addresses remembered; the fingerprint moved if the run ended."""
        with self.state.transaction():
            for anchor, address in self.assigner.changed.items():
                self.assignments.put(self.connection.hub, self.export.proxy_type, anchor,
                                     address)
            if interrupted:
                return
            self.store_rows(self.final_rows())
            self.state.set_fingerprint(self.name, self.direction, self.fingerprint)

    def final_rows(self) -> dict[str, StateRow]:
        """The state rows of the entries this run saw, as the foreign side now holds them."""
        rows = dict(self.kept)
        rows.update(self.refresh)
        digests = {w.anchor: w.digest for w in self.wanted}
        for item in self.items:
            if item.kind in ("delete", "container", "proxy") or item.anchor is None:
                continue
            if item.error is None and item.done >= item.changes and item.target is not None:
                rows[item.anchor] = StateRow(item.target.dn, digests.get(item.anchor, ""),
                                             item.kind)
        for anchor in self.held:
            if anchor in self.ours and anchor not in rows:
                rows[anchor] = StateRow(self.ours[anchor].dn, "", "held")
        return rows

    def store_rows(self, rows: dict[str, StateRow]) -> None:
        """A full run saw every entry: its rows are the whole state."""
        self.state.replace_all(self.name, self.direction, list(rows.items()))

    # -- 6. the report -----------------------------------------------------
    def write_change_files(self, planned: bool) -> None:
        """The planned LDIF (for plan and stops), and the CSV change file."""
        self.extra_files: dict[str, Path] = {}
        if planned:
            for phase in PHASES:
                for _, _, change, _, _ in self.phases[phase]:
                    self.report.ldif(change)
            if self.hub_changes:
                path = self.report.folder / HUB_LDIF
                with open(path, "w", encoding="utf-8", newline="\n") as stream:
                    writer = LDIFWriter(stream)
                    writer.version()
                    writer.comment("proxy addresses to write to the hub (plan: nothing was "
                                   "applied)")
                    stream.write("\n")
                    for _, change in self.hub_changes:
                        writer.change(change)
        if self.hub_changes:
            self.extra_files["hub_ldif"] = self.report.folder / HUB_LDIF
        if self.csv:
            path = self.report.folder / CSV_CHANGES
            write_csv_changes(path, self.foreign, self.items, planned=planned)
            self.extra_files["changes_csv"] = path

    def report_items(self) -> Iterator[ReportItem]:
        for item in self.items:
            error = None
            if not self.applied:
                status = "planned"
            elif item.error is not None:
                status = "failed"
                error = f"{item.error.result}: {item.error.message}" if item.error.result \
                    else item.error.message
            elif item.unknown:
                status = "unknown"
            elif item.done >= item.changes:
                status = "applied"
            else:
                status = "partly applied" if item.done else "not attempted"
            yield ReportItem(kind=item.kind, anchor=item.anchor, action=item.action,
                             dn=item.dn, old_dn=item.old_dn, status=status, error=error,
                             before=item.before, after=item.after, notes=item.notes)


def run_export(config: Config, connection: ConnectionConfig, state: StateStore,
               options: SyncOptions) -> RunResult:
    return ExportRun(config, connection, state, options)()

