"""Step 3 of an import (:class:`dirsync.sync.engine.ImportRun`): plan.

Each mapped entry gets its DN; what the hub holds for it is read in chunks
and compared (:mod:`dirsync.sync.plan`); anchors the source no longer has
are deleted; renames are ordered. Planned changes wait by phase in spools.
These functions are the run's methods (the run binds them).
"""

from __future__ import annotations

from typing import Any

import ldap.filter

from dirsync.directories import ReadOptions
from dirsync.entry import Entry, join_dn, make_rdn, normalize_dn, same_dn
from dirsync.ldif.changes import Change, rename_change
from dirsync.mapping.mapfile import (
    ANCHOR_ATTR,
    KIND_LIST,
    KIND_PERSON,
    SOURCE_ATTR,
)
from dirsync.state.store import StateRow
from dirsync.sync.containers import container_adds, first_rdn
from dirsync.sync.heldnames import HeldNames, not_kept
from dirsync.sync.importitems import _Target
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.ownership import Lost
from dirsync.sync.plan import (
    PHASE_CONTAINER,
    PHASE_RENAME,
    PHASE_RENAME_FINAL,
    PHASES,
    EntryPlan,
    assign_dns,
    delete_plan,
    lower_classes,
    order_deletes,
    order_renames,
    owned_hash,
    plan_entry,
    resolve_members,
    target_entry,
)
from dirsync.sync.report import Problem
from dirsync.sync.scratch import DiskMap, prefetch
from dirsync.sync.spool import Spool, change_from_record, change_record

#: Hub entries read per search when a run compares re-mapped entries.
FETCH_CHUNK = 200



def plan(run: ImportSteps) -> None:
    selected = run.selected
    ours = run.index.ours
    wanted_anchors = {a for a, _ in run.wanted}
    run.remapped.update(wanted_anchors)
    # Anchors the source no longer has (or now skips) go; entries with
    # errors stay as they are. With unreadable source entries, an
    # anchor that is simply missing may be one of them: hold it back.
    for anchor, record in not_kept(run):
        if anchor in wanted_anchors or anchor in run.held:
            continue
        if run.unreadable and anchor not in run.seen:
            run.counts.skipped += 1
            run.problems.append(Problem(
                "skipped", anchor, record.dn,
                f"not deleted: {run.unreadable} source entries could not be read, and "
                "this may be one of them", None))
            continue
        run.deletes.append(anchor)
    for dn, why in run.index.anomalies:
        run.counts.conflict += 1
        run.problems.append(Problem("conflict", None, dn, f"left alone: it {why}", None))

    # Where each re-mapped entry goes.
    deleted = set(run.deletes)
    run.deleted.update(deleted)
    # DNs the other entries of this connection keep (only needed to place some),
    # including those a first sync has just added.
    held_dns = HeldNames(run.placed_dns, ours, wanted_anchors | deleted)
    prefetch(ours, sorted(wanted_anchors))
    current = {a: r.dn for a in wanted_anchors if (r := ours.get(a)) is not None}
    assignment = assign_dns(run.wanted, current, held_dns, run.index.unowned,
                            rdn_attribute=selected.rdn_attribute, container=run.container)
    if run._groups:
        # Members are found by their DNs, those of entries left as they are
        # too (a kept entry is where the state and the hub say it is).
        for anchor, record in ours.pairs() if isinstance(ours, DiskMap) else ours.items():
            if anchor in run.kept:
                run.final_dns[anchor] = record.dn
    prefetch(ours, sorted(run.held))
    run.final_dns.update({a: r.dn for a in run.held if (r := ours.get(a)) is not None})
    run.final_dns.update(assignment.dns)

    for change in run.container_changes():
        run.new_item("container", None, change.dn,
                      EntryPlan("add", [(PHASE_CONTAINER, change)],
                                after=dict(change.attrs or {})), "", "")
    run.progress.start("comparing", len(run.targets))
    batch: list[_Target] = []
    for record in run.targets:
        target = _Target(*record)
        if target.anchor in assignment.conflicts:
            run.counts.conflict += 1
            run.problems.append(Problem("conflict", target.anchor, None,
                                         assignment.conflicts[target.anchor], target.line))
            continue
        batch.append(target)
        if len(batch) >= FETCH_CHUNK:
            run.plan_batch(batch)
            batch = []
    if batch:
        run.plan_batch(batch)
    run.plan_deletes()
    run.plan_renames()


def container_changes(run: ImportSteps) -> list[Change]:
    """Adds for the import container and any missing parent (top first)."""
    if run.index.container_exists:
        return []
    return container_adds(run.hub, run.container,
                          run.config.directories[run.connection.hub].base,
                          f"{run.connection.key_path}.import_container")


def new_plan(run: ImportSteps) -> None:
    run.items = Spool()
    run.phase_spools = {p: Spool() for p in PHASES}
    # item, anchor, old DN, new DN, state record, entry action
    run.renames = []
    run.refresh = run.scratch.map(tuple, lambda row: StateRow(*row))  # unchanged by compare
    run.item_changes = {}      # item -> number of its changes
    run.notes = {}       # anchor -> notes for the report
    # anchor -> the DN it ends up with (those kept unchanged only for groups)
    run.final_dns = run.scratch.map()
    run.placed_dns = run.scratch.map()        # normalized DN -> anchor (a first sync)
    run.deletes = []
    # Anchors the plan maps again and deletes (for the address check).
    run.remapped = set()
    run.deleted = set()
    run.inflight = {}  # applied at once, not yet reported
    run.next_item = 0


def new_item(run: ImportSteps, kind: str, anchor: str | None, dn: str, plan: EntryPlan, digest: str,
             state_kind: str, spool: bool = True) -> list[tuple[Any, ...]]:
    """Record one entry's plan: for the report, and its changes by phase.

    Each change carries what the state store records once the hub has
    confirmed it: the entry's new DN (with the source hash only after
    its last change, so a half-done entry is compared again next time),
    or the removal of its row. With ``spool`` the changes wait in their
    phase; otherwise they are returned, to be applied at once, as
    (item, anchor, change, state, action).
    """
    item = run.next_item
    run.next_item += 1
    changes = plan.changes
    run.item_changes[item] = len(changes)
    counted = kind != "container"
    notes = run.notes.pop(anchor, []) if anchor else []
    if counted and (redone := run.unconfirmed.planned(anchor)) is not None:
        notes.append(redone)
    record = (item, kind, anchor, plan.action, dn, plan.old_dn, plan.before, plan.after,
              notes)
    if spool:
        run.items.append(record)
    else:
        # Applied at once: reported as soon as the hub has answered.
        run.inflight[item] = record
    if counted:
        run.counts.bump(plan.action)
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
            run.renames.append((item, anchor or "", change.dn, change.target_dn, state,
                                 action))
        else:
            run.phase_spools[phase].append((item, anchor, change_record(change), state,
                                             action))
    return now_records


def plan_batch(run: ImportSteps, batch: list[_Target]) -> None:
    selected = run.selected
    ours = run.index.ours
    full = run.mode == "full"
    built: list[tuple[_Target, Entry, frozenset[str]]] = []
    fetch: list[str] = []
    prefetch(ours, [target.anchor for target in batch])
    for target in batch:
        run.progress.advance()
        dn = run.final_dns[target.anchor]
        members = None
        if target.kind == "group":
            members, unknown = resolve_members(
                target.members or [], run.member_keys, run.final_dns,
                by_dn=selected.mapping.member_key == "dn")
            if unknown:
                run.notes.setdefault(target.anchor, []).append(
                    "members not in the hub, left out: " + ", ".join(unknown))
        entry = run.build(target, dn, members)
        owned = selected.owned(KIND_PERSON if target.kind == KIND_PERSON else KIND_LIST)
        record = ours.get(target.anchor)
        if record is not None and full and record.hash is not None \
                and record.classes is not None and same_dn(record.dn, dn) \
                and record.hash == owned_hash(entry.attrs, owned) \
                and lower_classes(entry.get("objectClass")) <= record.classes:
            run.unchanged(target, record.dn)
            continue
        built.append((target, entry, owned))
        if record is not None:
            fetch.append(target.anchor)
    found = run.fetch(fetch)
    run.check_addresses([(target, entry, found.get(target.anchor))
                          for target, entry, _ in built])
    for target, entry, owned in built:
        # An entry deleted by hand since the scan is simply added again.
        plan = plan_entry(entry, found.get(target.anchor), owned,
                          group=target.kind == "group")
        if plan.action == "unchanged":
            run.unchanged(target, entry.dn)
            continue
        run.new_item(target.kind, target.anchor, entry.dn, plan, target.hash, target.kind)


def unchanged(run: ImportSteps, target: _Target, dn: str) -> None:
    run.refresh[target.anchor] = StateRow(dn, target.hash, target.kind)
    run.counts.unchanged += 1
    notes = run.notes.pop(target.anchor, None)
    if (found := run.unconfirmed.unchanged(target.anchor)) is not None:
        notes = [*(notes or []), found]
    if notes:
        run.problems.append(Problem("note", target.anchor, dn, "; ".join(notes),
                                     target.line))


def fetch(run: ImportSteps, anchors: list[str]) -> dict[str, Entry]:
    """What the hub holds now for these anchors of this connection."""
    if not anchors:
        return {}
    ours = run.index.ours
    found: dict[str, Entry] = {}
    if run.hub.kind != "ldap":
        for anchor in anchors:
            entry = run.hub.get(ours[anchor].dn)
            if entry is not None:
                found[anchor] = entry
        return found
    attrs = ["objectClass", *sorted(run.selected.all_owned())]
    marker = f"({SOURCE_ATTR}={ldap.filter.escape_filter_chars(run.name)})"
    for start in range(0, len(anchors), FETCH_CHUNK):
        chunk = anchors[start:start + FETCH_CHUNK]
        wanted = "".join(f"({ANCHOR_ATTR}={ldap.filter.escape_filter_chars(a)})"
                         for a in chunk)
        options = ReadOptions(base=run.container, scope="sub",
                              filter=f"(&{marker}(|{wanted}))", attrs=attrs)
        for entry in run.hub.read(options):
            anchor = entry.first(ANCHOR_ATTR)
            if anchor is not None and anchor in ours and same_dn(entry.dn, ours[anchor].dn):
                found[anchor] = entry
    return found


def plan_deletes(run: ImportSteps, before: dict[str, Entry] | None = None) -> None:
    """The deletes, in order; ``before``: what the hub holds for them, when
    the caller has read it already."""
    ours = run.index.ours
    prefetch(ours, run.deletes)
    if before is None:
        before = run.fetch(run.deletes)
    anchors = {normalize_dn(ours[a].dn): a for a in run.deletes}
    for dn in order_deletes(ours[a].dn for a in run.deletes):
        anchor = anchors[normalize_dn(dn)]
        run.new_item("delete", anchor, dn, delete_plan(dn, before.get(anchor)), "", "")


def plan_renames(run: ImportSteps) -> None:
    attribute = run.selected.rdn_attribute
    container = run.container

    def parking(anchor: str, old: str, new: str) -> str:
        value = first_rdn(new)[1]
        return join_dn(make_rdn(attribute, f"{value} (moving {anchor})"), container)

    planned = {r[1]: r for r in run.renames}
    ordered = order_renames([(r[1], r[2], r[3]) for r in run.renames], parking)
    moved: set[str] = set()
    for anchor, old, new in ordered:
        item, _, _, final, state, action = planned[anchor]
        phase = PHASE_RENAME_FINAL if anchor in moved else PHASE_RENAME
        moved.add(anchor)
        if not same_dn(new, final):
            # Parked under a temporary name; its final rename moves it on.
            state = ("put", new, "", state[3])
            run.item_changes[item] += 1
        run.phase_spools[phase].append(
            (item, anchor, change_record(rename_change(old, new)), state, action))


def write_planned_ldif(run: ImportSteps) -> None:
    for phase in PHASES:
        for _, _, record, _, _ in run.phase_spools[phase]:
            run.report.ldif(change_from_record(record))


def build(run: ImportSteps, target: _Target, dn: str, members: list[str] | None,
          rdn_value: str | None = None) -> Entry:
    """The hub entry of ``target`` at ``dn`` (whose RDN value is ``rdn_value``,
    read from ``dn`` when not given)."""
    selected = run.selected
    if rdn_value is None:
        rdn_value = first_rdn(dn)[1]
    return target_entry(dn, target.attrs, target.object_classes,
                        rdn_attribute=selected.rdn_attribute, rdn_value=rdn_value,
                        anchor=target.anchor, connection=run.name, members=members,
                        member_attribute=selected.mapping.member_attribute)


def check_addresses(run: ImportSteps, batch: list[tuple[_Target, Entry, Entry | None]]) -> None:
    """Leave out of each entry the addresses another entry holds or claims first.

    An entry that lost one is a conflict; its state row gets no source
    hash, so that the next run checks it again (the holder may let go).
    """
    lost = run.addresses.check(
        ((target.anchor, entry, current) for target, entry, current in batch),
        remapped=run.remapped, deleted=run.deleted)
    for target, entry, _ in batch:
        taken: list[Lost] | None = lost.get(target.anchor)
        if taken:
            target.hash = ""
            run.counts.conflict += 1
            run.problems.append(Problem("conflict", target.anchor, entry.dn,
                                         "; ".join(t.text() for t in taken), target.line))
