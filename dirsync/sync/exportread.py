"""Step 2 of an export (:class:`dirsync.sync.exportrun.ExportRun`): read the hub.

Users, contacts and groups in every export container, leaving out what
this connection imported from the same foreign system (loop prevention);
each recipient gets its address of the foreign type
(:mod:`dirsync.sync.proxygen`) and waits for the plan as a :class:`_Wanted`.
These functions are the run's methods (the run binds them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import ldap.filter

from dirsync.directories import ReadOptions
from dirsync.directories.ldapfilter import FilterError, compile_filter
from dirsync.entry import Entry, normalize_dn, same_dn
from dirsync.errors import ConfigError
from dirsync.ldif.changes import Change
from dirsync.mapping.exportmap import (
    HUB_GROUP,
    KIND_LIST,
    KIND_PERSON,
    proxy_of,
)
from dirsync.mapping.exportnames import qualifier_text
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR
from dirsync.mapping.templates import TemplateError
from dirsync.state.store import StateRow
from dirsync.sync.exportitems import _Item, _Wanted, wanted_payload, wanted_record
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.plan import (
    source_hash,
)
from dirsync.sync.proxygen import Assigner, writeback_change, writeback_policy
from dirsync.sync.report import Problem
from dirsync.sync.spool import Spool


def hub_filter(run: ExportSteps) -> str:
    extra = run.connection.export_filter
    return f"(&{run.export.filter}{extra.strip()})" if extra else run.export.filter


def hub_entries(run: ExportSteps) -> Iterator[Entry]:
    """Every entry of every export container that passes the filters, once.

    This reads the hub in full; :mod:`dirsync.sync.exportchanges` overrides it
    with the entries a syncrepl or timestamp read reports as changed.
    """
    text = run.hub_filter()
    local: Callable[[Entry], bool] | None = None
    if run.hub.kind != "ldap":
        # A file hub does not evaluate filters; dirsync does.
        try:
            local = compile_filter(text)
        except FilterError as exc:
            raise ConfigError(f"{run.connection.key_path}: the export filter: {exc}") \
                from exc
    seen: set[str] = set()
    # Export containers may nest: several are read with a set of the DNs seen
    # (one is not: that set would hold every DN of the hub).
    nested = len(run.connection.export_containers) > 1
    for container in run.connection.export_containers:
        options = ReadOptions(base=container, scope="sub", filter=text,
                              attrs=run.export.read_attributes())
        for entry in run.hub.read(options):
            if local is not None and not local(entry):
                continue
            if nested:
                key = normalize_dn(entry.dn)
                if key in seen:
                    continue
                seen.add(key)
            yield entry


def hub_proxy_addresses(run: ExportSteps) -> Iterator[str]:
    """Every proxy address of the foreign type the hub holds (for uniqueness)."""
    kind = run.export.proxy_type
    base = run.config.directories[run.connection.hub].base or ""
    prefix = kind.casefold() + ":"
    if run.hub.kind == "ldap":
        value = ldap.filter.escape_filter_chars(kind + ":")
        options = ReadOptions(base=base, scope="sub", filter=f"(proxyAddresses={value}*)",
                              attrs=["proxyAddresses"])
    else:
        options = ReadOptions(base=base or None, scope="sub")
    for entry in run.hub.read(options):
        for value in entry.texts("proxyAddresses"):
            if value.casefold().startswith(prefix):
                yield value


def hub_holds_address(run: ExportSteps, value: str) -> bool:
    """Whether a hub entry holds ``value`` (``TYPE:address``, any case) in
    proxyAddresses: one equality search (``index proxyAddresses eq``)."""
    base = run.config.directories[run.connection.hub].base or ""
    wanted = value.casefold()
    options = ReadOptions(base=base, scope="sub",
                          filter=f"(proxyAddresses={ldap.filter.escape_filter_chars(value)})",
                          attrs=["proxyAddresses"])
    return any(v.casefold() == wanted for entry in run.hub.read(options)
               for v in entry.texts("proxyAddresses"))


def read_hub(run: ExportSteps) -> None:
    export = run.export
    kind = export.proxy_type
    hub_name = run.connection.hub
    # The addresses generated before are looked up one anchor at a time, and
    # what this run gives out waits on disk: one record per recipient either
    # way, which a million would make hundreds of megabytes in memory.
    # Incremental, only the addresses about to be given out are asked of the
    # hub (STYLE: cost follows change).
    holds = run.hub_holds_address if run.mode == "incremental" and run.hub.kind == "ldap" \
        else None
    run.assigner = Assigner(kind, run.hub_proxy_addresses,
                             run.assignments.view(hub_name, kind), hub_holds=holds,
                             scratch=run.scratch)
    name = run.name.casefold()
    # One record per hub entry each: in a spool or a scratch table, not in memory.
    run.wanted = Spool(run.spool_items)
    run.kept = run.scratch.map(tuple, lambda row: StateRow(*row))   # state fast path
    run.held = set()               # anchors with errors: left as they are
    run.by_hub_dn = run.scratch.map()       # normalized hub DN -> anchor (exported)
    run.imported_here = {}   # normalized hub DN -> foreign anchor
    run.hub_entries_read = 0
    seen = run.scratch.set()
    rows = run.state_rows
    run.progress.start("reading the hub")
    for entry in run.hub_entries():
        run.progress.advance()
        run.hub_entries_read += 1
        owner = entry.first(SOURCE_ATTR)
        if owner is not None and owner.casefold() == name:
            # Loop prevention: imported from this very foreign system.
            run.imported_here[normalize_dn(entry.dn)] = entry.first(ANCHOR_ATTR) or ""
            continue
        anchor = run.hub_anchor(entry)
        if anchor in seen:
            run.entry_problem("error", anchor, entry.dn, "another hub entry has the same "
                               "anchor: this one is skipped")
            continue
        seen.add(anchor)
        wanted = run.prepare(entry, anchor)
        if wanted is None:
            continue
        run.by_hub_dn[normalize_dn(entry.dn)] = anchor
        row = rows.get(anchor)
        # (The foreign entry is looked up only when the state row says unchanged.)
        current = run.ours.get(anchor) if row is not None and row.hash == wanted.digest \
            and row.kind != KIND_LIST else None
        if row is not None and current is not None and same_dn(current.dn, row.dn):
            run.kept[anchor] = StateRow(current.dn, row.hash, row.kind)
            run.counts.unchanged += 1
            continue
        run.wanted.append(wanted_record(wanted))
        run.wanted_payloads.append(wanted_payload(wanted))


def prepare(run: ExportSteps, entry: Entry, anchor: str) -> _Wanted | None:
    """Classify one hub entry and give it its address; None when it is not exported."""
    export = run.export
    extra: dict[str, Any] = {"anchor": anchor, "connection": run.name}
    view = export.view(entry, **extra)
    try:
        if export.skip is not None and export.skip.truth(view):
            run.counts.skipped += 1
            run.problems.append(Problem("skipped", anchor, entry.dn, "the export's skip "
                                         f"rule: {export.skip.source}"))
            return None
        hub_kind = export.hub_kind(view)
        kind = KIND_LIST if hub_kind == HUB_GROUP else KIND_PERSON
        if kind == KIND_LIST and export.list_part is None:
            run.counts.skipped += 1
            run.problems.append(Problem("skipped", anchor, entry.dn, "a group, and the "
                                         "mapping has no [export.list]"))
            return None
        existing = entry.texts("proxyAddresses")
        assigned = run.assigner.assign(anchor, existing, lambda: export.candidate(view))
    except TemplateError as exc:
        run.hold(anchor, entry.dn, run.where(exc))
        return None
    except ValueError as exc:
        run.hold(anchor, entry.dn, str(exc))
        return None
    if assigned is None:
        run.hold(anchor, entry.dn, f"no {export.proxy_type} address: the template yields "
                  f"nothing ({run.mapping.where('export.proxy_address')})")
        return None
    notes: list[str] = []
    if assigned.replaces is not None:
        notes.append(f"{export.proxy_type}:{assigned.address} replaces "
                     f"{export.proxy_type}:{assigned.replaces}, which the hub entry no "
                     "longer makes; the old address stays a secondary")
    if assigned.generated and assigned.values is not None:
        policy = writeback_policy(entry, run.connection.proxy_writeback)
        address = f"{export.proxy_type}:{assigned.address}"
        if policy.write:
            change = writeback_change(entry, assigned.values, policy.add_class)
            if change is not None:
                run.plan_writeback(anchor, entry, change)
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
                run.qualifiers[anchor] = qualifier
    except TemplateError as exc:
        run.hold(anchor, entry.dn, run.where(exc))
        return None
    if not rdn_value:
        run.hold(anchor, entry.dn, "the RDN template yields nothing "
                  f"({run.mapping.where('export.rdn.value')})")
        return None
    for note in notes:
        run.problems.append(Problem("note", anchor, entry.dn, note))
    digest = hashlib.blake2b(source_hash(entry).encode() + b"\0"
                             + "\n".join(proxies.values()).encode("utf-8"),
                             digest_size=16).hexdigest()
    return _Wanted(anchor, entry.dn, kind, hub_kind, rdn_value, digest, entry, extra,
                   member_dns)


def hold(run: ExportSteps, anchor: str, dn: str, message: str) -> None:
    """An entry that cannot be mapped: reported, its foreign entry left as it is."""
    run.held.add(anchor)
    run.entry_problem("error", anchor, dn, message)


def entry_problem(run: ExportSteps, kind: str, anchor: str | None, dn: str | None, message: str) -> None:
    run.counts.bump(kind)
    run.problems.append(Problem(kind, anchor, dn, message))


def where(run: ExportSteps, exc: TemplateError) -> str:
    line = exc.line or run.mapping.line_of(exc.key)
    at = f"{run.mapping.path}:{line}" if line else str(run.mapping.path)
    return f"{at}: {exc.key}: {exc.message}"


def plan_writeback(run: ExportSteps, anchor: str, entry: Entry, change: Change) -> None:
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
    run.hub_changes.append((run.keep_item(item), change))
