"""Step 3 of an export (:class:`dirsync.sync.exportrun.ExportRun`): plan.

Each recipient is mapped (:mod:`dirsync.mapping.exportmap`), given its
foreign DN and compared with the same pure functions as the import
(:mod:`dirsync.sync.plan`); planned changes wait by phase as :class:`_Item`
records. These functions are the run's methods (the run binds them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ldap.filter

from dirsync.directories import ReadOptions
from dirsync.entry import Entry, join_dn, make_rdn, normalize_dn, rdn_values, same_dn
from dirsync.ldif.changes import Change, rename_change
from dirsync.mapping.exportmap import (
    KIND_LIST,
)
from dirsync.mapping.templates import TemplateError
from dirsync.schema import matcher
from dirsync.state.store import StateRow
from dirsync.sync.containers import container_adds
from dirsync.sync.exportitems import _Item, _Wanted, item_payload, wanted_entry, wanted_from
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.plan import (
    PHASE_CONTAINER,
    PHASE_RENAME,
    PHASE_RENAME_FINAL,
    EntryPlan,
    assign_dns,
    delete_plan,
    order_deletes,
    order_renames,
    plan_entry,
)
from dirsync.sync.report import Problem
from dirsync.sync.scratch import DiskMap, disk_order, pairs, prefetch
from dirsync.sync.spool import change_record


#: Wanted recipients compared at a time: their payloads, their foreign entries
#: and names are read for the batch at once (an entry is kilobytes).
COMPARE_BATCH = 128


def wanted_records(run: ExportSteps) -> Iterator[_Wanted]:
    """Each wanted recipient's small record, in the order of the hub read."""
    return map(wanted_from, run.wanted)


def plan(run: ExportSteps) -> None:
    scratch = run.scratch
    run.refresh = scratch.map(tuple, lambda row: StateRow(*row))  # unchanged by comparing
    run.renames = []
    ours = run.ours
    # (Only the foreign entries found need asking whether they are wanted.
    # On disk, as what follows: one key per changed or re-mapped entry.)
    wanted_anchors = scratch.set()
    if ours:
        wanted_anchors.update(w.anchor for w in wanted_records(run) if w.anchor in ours)
    run.deletes = [a for a in ours
                    if a not in wanted_anchors and a not in run.kept and a not in run.held]
    deleted = set(run.deletes)
    # Names other entries of the connection keep: those of this run that are
    # not re-mapped, and (incremental) those of entries it does not plan.
    held_dns: DiskMap[str] = scratch.map().filtered()
    held_dns.update(pairs(run.others))
    current: DiskMap[str] = scratch.map()
    # (One pass: each foreign entry is read from its table once here.)
    for anchor, entry in pairs(ours):
        if anchor in wanted_anchors:
            current[anchor] = entry.dn
        elif anchor not in deleted:
            held_dns[normalize_dn(entry.dn)] = anchor
    run.final_dns = scratch.map()
    assignment = assign_dns(((w.anchor, w.rdn_value) for w in wanted_records(run)), current,
                            held_dns, run.unowned, rdn_attribute=run.rdn_attribute,
                            container=run.container, naming=run.naming, dns=run.final_dns,
                            order=disk_order(scratch))
    # (Disjoint from the names given: neither kept nor held is placed again.)
    for anchor, row in pairs(run.kept):
        run.final_dns[anchor] = row.dn
    run.final_dns.update({a: ours[a].dn for a in run.held if a in ours})

    if not run.container_exists and (len(run.wanted) or run.kept):
        for change in run.container_changes():
            run.add_item("container", None, EntryPlan(
                "add", [(PHASE_CONTAINER, change)], after=dict(change.attrs or {})),
                change.dn, "", "", None)
    owned = run.export.owned(rdn=not run.csv)
    if run.csv:
        owned |= {run.key_column.lower()}
    run.progress.start("comparing", len(run.wanted))
    # People first, then lists (whose members have their names by then); a
    # wanted recipient's entry is read back from its spool once, in order.
    lists: list[tuple[_Wanted, Entry, dict[str, Any]]] = []
    batch: list[tuple[_Wanted, Any]] = []

    def compare_batch() -> None:
        # Their names in one query, not one each.
        anchors = [w.anchor for w, _ in batch]
        prefetch(run.final_dns, anchors)
        prefetch(run.ours, anchors)
        for wanted, payload in batch:
            entry, extra = wanted_entry(payload)
            if wanted.kind == KIND_LIST:
                lists.append((wanted, entry, extra))
            else:
                run.compare(wanted, entry, extra, assignment.conflicts, owned)
        batch.clear()

    for pair in zip(wanted_records(run), run.wanted_payloads, strict=True):
        batch.append(pair)
        if len(batch) >= COMPARE_BATCH:
            compare_batch()
    compare_batch()
    for wanted, entry, extra in lists:
        run.compare(wanted, entry, extra, assignment.conflicts, owned)
    ordered = order_deletes(run.ours[a].dn for a in run.deletes)
    by_dn = {normalize_dn(run.ours[a].dn): a for a in run.deletes}
    for dn in ordered:
        anchor = by_dn[normalize_dn(dn)]
        run.add_item("delete", anchor, delete_plan(dn, run.ours[anchor]), dn, "", "",
                      None)
    run.plan_renames()


def compare(run: ExportSteps, wanted: _Wanted, entry: Entry, extra: dict[str, Any],
            conflicts: dict[str, str], owned: frozenset[str]) -> None:
    """Map one recipient, compare it with its foreign entry, and plan what differs."""
    run.progress.advance()
    if wanted.anchor in conflicts:
        run.conflict(wanted.anchor, wanted.hub_dn, conflicts[wanted.anchor])
        return
    dn = run.final_dns[wanted.anchor]
    notes: list[str] = []
    if wanted.kind == KIND_LIST:
        refs, unknown = run.member_refs(wanted.member_dns)
        extra["members"] = refs
        if unknown:
            notes.append("members not exported to this system, left out: "
                         + ", ".join(unknown))
    view = run.export.view(entry, **extra)
    try:
        mapped = run.export.map(view, wanted.kind)
    except TemplateError as exc:
        run.hold(wanted.anchor, wanted.hub_dn, run.where(exc))
        return
    target = run.foreign_entry(dn, mapped.attrs, mapped.object_classes, wanted.anchor,
                               extra.get("members", []), wanted.kind == KIND_LIST)
    if run.ad is not None:
        run.ad.screen(wanted.anchor, wanted.hub_dn, target, run.ours.get(wanted.anchor))
    plan = plan_entry(target, run.ours.get(wanted.anchor), owned,
                      group=wanted.kind == KIND_LIST)
    if plan.action == "unchanged":
        run.refresh[wanted.anchor] = StateRow(target.dn, wanted.digest, wanted.kind)
        run.counts.unchanged += 1
        for note in notes:
            run.problems.append(Problem("note", wanted.anchor, target.dn, note))
        return
    run.add_item(wanted.kind, wanted.anchor, plan, target.dn, wanted.digest,
                 wanted.kind, target, notes)


def container_changes(run: ExportSteps) -> list[Change]:
    """Adds for the foreign container and any missing parent (top first)."""
    changes = container_adds(run.foreign, run.container,
                             run.config.directories[run.connection.foreign].base,
                             f"{run.connection.key_path}.foreign_container")
    if run.ad is not None:
        run.ad.container_only(changes)
    return changes


def member_refs(run: ExportSteps, member_dns: list[str]) -> tuple[list[str], list[str]]:
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
        anchor = run.by_hub_dn.get(key)
        ref = None
        if anchor is not None and anchor in run.final_dns:
            final = run.final_dns[anchor]
            ref = rdn_values(final)[0][1] if run.csv else final
        elif key in run.imported_here:
            ref = run.native_ref(run.imported_here[key])
        if ref:
            refs.setdefault(ref.casefold() if run.csv else normalize_dn(ref), ref)
        else:
            unknown.append(dn)
    return sorted(refs.values(), key=str.casefold), unknown


def native_ref(run: ExportSteps, anchor: str) -> str | None:
    if not anchor:
        return None
    if run.csv:
        return anchor
    if "=" in anchor:
        return anchor
    if not hasattr(run, "_by_uuid"):
        run._by_uuid = {}
    if anchor not in run._by_uuid:
        found = None
        base = run.config.directories[run.connection.foreign].base or ""
        if run.foreign.kind == "ad":
            for _, entry in run.foreign.read_guids([anchor]):
                found = entry.dn if entry is not None else None
        elif run.foreign.kind == "ldap":
            value = ldap.filter.escape_filter_chars(anchor)
            for entry in run.foreign.read(ReadOptions(base=base, scope="sub",
                                                       filter=f"(entryUUID={value})",
                                                       attrs=["1.1"])):
                found = entry.dn
        else:
            for entry in run.foreign.read(ReadOptions(base=base or None, scope="sub")):
                if entry.first("entryUUID") == anchor:
                    found = entry.dn
        run._by_uuid[anchor] = found or ""
    return run._by_uuid[anchor] or None


def foreign_entry(run: ExportSteps, dn: str, attrs: dict[str, list[bytes]], classes: list[str],
                  anchor: str, members: list[str], is_list: bool) -> Entry:
    """The foreign entry a mapped hub recipient should be."""
    export = run.export
    entry = Entry(dn)
    if not run.csv and classes:
        entry.add("objectClass", [c.encode("utf-8") for c in classes])
    for name, values in attrs.items():
        entry.add(name, list(values))
    rdn_value = rdn_values(dn)[0][1]
    if run.csv:
        entry.set(run.key_column, [rdn_value.encode("utf-8")])
        run.join_cells(entry)
    else:
        norm = matcher(run.rdn_attribute)
        if norm(rdn_value.encode()) not in {norm(v) for v in entry.get(run.rdn_attribute)}:
            entry.add(run.rdn_attribute, [rdn_value.encode("utf-8")])
        if is_list and export.member_attribute:
            # groupOfNames needs a member: pointing at itself adds nobody.
            entry.set(export.member_attribute,
                      [m.encode("utf-8") for m in (members or [dn])])
    entry.set(export.marker_attribute, [run.name.encode("utf-8")])
    entry.set(export.anchor_attribute, [anchor.encode("utf-8")])
    return entry


def join_cells(run: ExportSteps, entry: Entry) -> None:
    """A CSV cell holds one value unless the directory splits that column: join
    several into one, as the file will hold them, so the next run compares equal."""
    layout = run.foreign.layout
    sep = layout.multi_value_separator
    for name in entry.names():
        values = entry.get(name)
        split = bool(sep) and (not layout.multi_valued or name in layout.multi_valued)
        if len(values) > 1 and not split:
            entry.set(name, [(sep or ";").encode().join(values)])


def add_item(run: ExportSteps, kind: str, anchor: str | None, plan: EntryPlan, dn: str, digest: str,
             state_kind: str, target: Entry | None,
             notes: list[str] | None = None) -> None:
    counted = kind != "container"
    item = _Item(kind, anchor, plan.action, dn, plan.old_dn, plan.before, plan.after,
                 list(notes or []), changes=len(plan.changes), target=target,
                 counted=counted, digest=digest)
    index = run.keep_item(item)
    if counted:
        run.counts.bump(plan.action)
    for position, (phase, change) in enumerate(plan.changes):
        last = position == len(plan.changes) - 1
        if phase == PHASE_RENAME:
            run.renames.append((index, anchor if counted else None, change, state_kind,
                                digest if last else ""))
        else:
            run.phases[phase].append((index, anchor if counted else None,
                                      change_record(change), state_kind,
                                      digest if last else ""))


def keep_item(run: ExportSteps, item: _Item) -> int:
    """Add a planned item (its payload to the spool); its index in ``run.items``."""
    run.payloads.append(item_payload(item))
    return run.items.append(item)


def plan_renames(run: ExportSteps) -> None:
    attribute = run.rdn_attribute
    container = run.container
    renames = run.renames

    def parking(anchor: str, old: str, new: str) -> str:
        value = rdn_values(new)[0][1]
        return join_dn(make_rdn(attribute, f"{value} (moving {anchor})"),
                       container if not run.csv else "")

    by_anchor = {r[1]: r for r in renames}
    ordered = order_renames([(r[1] or "", r[2].dn, r[2].target_dn) for r in renames],
                            parking)
    moved: set[str] = set()
    for anchor, old, new in ordered:
        index, _, change, state_kind, digest = by_anchor[anchor]
        phase = PHASE_RENAME_FINAL if anchor in moved else PHASE_RENAME
        moved.add(anchor)
        if not same_dn(new, change.target_dn):
            run.items[index].changes += 1
            digest = ""
        run.phases[phase].append((index, anchor, change_record(rename_change(old, new)),
                                  state_kind, digest))
