"""The pure core of a sync: targets, DNs, per-entry changes, order, safety.

Nothing here does I/O. The engine (:mod:`dirsync.sync.engine`) reads the
directories and the state, and calls these functions on plain data, so
each rule (which DN an entry gets, what a changed entry needs, in which
order changes go out, when a run must stop) is tested table-style.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Protocol

from dirsync.config import Threshold
from dirsync.entry import Entry, dn_depth, join_dn, make_rdn, normalize_dn
from dirsync.ldif.changes import Change, Mod, add_change, modify_ops, rename_change, renamed_entry
from dirsync.mapping.mapfile import ANCHOR_ATTR, MARKER_CLASS, SOURCE_ATTR
from dirsync.schema import matcher
from dirsync.wording import plural

COUNT_NAMES = ("add", "modify", "rename", "delete", "unchanged", "skipped", "conflict", "error",
               "unknown", "not_attempted")

#: Apply phases, in order (PRODUCT.md, "What a sync run does", step 5).
PHASE_CONTAINER = 0     # the import container itself, when missing
PHASE_DELETE = 1        # children first; frees DNs for the renames and adds
PHASE_RENAME = 2        # before the modifies that follow them
PHASE_RENAME_FINAL = 3  # entries parked under a temporary name to break a cycle
PHASE_MODIFY = 4
PHASE_ADD = 5           # parents first
PHASE_GROUP = 6         # group adds and membership, after the members exist
PHASES = (PHASE_CONTAINER, PHASE_DELETE, PHASE_RENAME, PHASE_RENAME_FINAL, PHASE_MODIFY,
          PHASE_ADD, PHASE_GROUP)


@dataclass
class Counts:
    add: int = 0
    modify: int = 0
    rename: int = 0
    delete: int = 0
    unchanged: int = 0
    skipped: int = 0
    conflict: int = 0
    error: int = 0
    #: Entries whose change was sent when the connection was lost, with no
    #: answer: applied or not, the next run finds out.
    unknown: int = 0
    #: Entries a run that stopped early never sent a change of.
    not_attempted: int = 0

    def bump(self, name: str, by: int = 1) -> None:
        setattr(self, name, getattr(self, name) + by)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNT_NAMES}

    @property
    def changes(self) -> int:
        return self.add + self.modify + self.rename + self.delete


# -- hashes -------------------------------------------------------------------

def source_hash(entry: Entry) -> str:
    """A digest of a source entry as read (DN, attribute names and values).

    A reader that digests its records itself gives the entry that digest
    (a CSV row's, :meth:`dirsync.directories.csvfile.CSVDirectory.digests`):
    the state then holds what a changed file can be compared with row by
    row, without building entries (:mod:`dirsync.sync.filediff`).
    """
    if entry.digest is not None:
        return entry.digest
    attrs = entry.attrs
    # marshal gives one unambiguous byte string (any value may hold any byte)
    # in C, and one digest of it is cheap: hashing is a visible part of a no-op run.
    # Format 2: from 3 on, a value that something else also holds is written
    # with a flag, and the same entry would not always give the same digest.
    record = marshal.dumps((entry.dn, sorted([(name.lower(), attrs[name]) for name in attrs])), 2)
    return hashlib.blake2b(record, digest_size=16).hexdigest()


def owned_hash(attrs: Mapping[str, Iterable[bytes]], owned: frozenset[str]) -> str:
    """A digest of the owned attributes of an entry (object classes aside).

    Values are compared exactly and in any order: equal digests mean a
    modify would have nothing to do, unequal ones that the entry must be
    read and compared attribute by attribute.
    """
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted((n for n in attrs if n.lower() in owned and n.lower() != "objectclass"),
                       key=str.lower):
        values = sorted(attrs[name])
        if not values:
            continue
        digest.update(b"\x00" + name.lower().encode("ascii", "replace"))
        for value in values:
            digest.update(b"\x01" + value)
    return digest.hexdigest()


def lower_classes(values: Iterable[bytes]) -> frozenset[str]:
    return frozenset(v.decode("utf-8", "replace").lower() for v in values)


# -- target entries -----------------------------------------------------------

def target_entry(dn: str, attrs: Mapping[str, list[bytes]], object_classes: list[str], *,
                 rdn_attribute: str, rdn_value: str, anchor: str, connection: str,
                 members: list[str] | None = None, member_attribute: str = "member") -> Entry:
    """The hub entry a mapped source entry should be.

    It gets the mapping's object classes plus ``dirsyncObject``, its anchor
    and owner marker, the RDN value among its naming attribute's values,
    and for a group the member DNs (its own DN when it has no member: the
    schema of groupOfNames needs one, and pointing at itself adds nobody).
    """
    classes = list(object_classes)
    if MARKER_CLASS.lower() not in {c.lower() for c in classes}:
        classes.append(MARKER_CLASS)
    # What Entry.add does for each attribute, inline: a first sync builds
    # one of these per source entry.
    values_of: dict[str, list[bytes]] = {"objectClass": [c.encode("utf-8") for c in classes]}
    index = {"objectclass": "objectClass"}
    for name, values in attrs.items():
        lower = name.lower()
        stored = index.get(lower)
        if stored is None:
            index[lower] = name
            values_of[name] = list(values)
        else:
            values_of[stored].extend(values)
    entry = Entry.parsed(dn, values_of, index, None)
    rdn_bytes = rdn_value.encode("utf-8")
    present = entry.get(rdn_attribute)
    if rdn_bytes not in present:
        norm = matcher(rdn_attribute)
        if norm(rdn_bytes) not in {norm(v) for v in present}:
            entry.add(rdn_attribute, [rdn_bytes])
    if members is not None:
        entry.set(member_attribute, [m.encode("utf-8") for m in (members or [dn])])
    entry.set(ANCHOR_ATTR, [anchor.encode("utf-8")])
    entry.set(SOURCE_ATTR, [connection.encode("utf-8")])
    return entry


# -- distinguished names ------------------------------------------------------

def candidate_dns(anchor: str, rdn_value: str, rdn_attribute: str, container: str) -> list[str]:
    """The DN an entry wants, then the one it takes when another entry of the
    same connection already has that name: the anchor in parentheses."""
    return [join_dn(make_rdn(rdn_attribute, rdn_value), container),
            join_dn(make_rdn(rdn_attribute, f"{rdn_value} ({anchor})"), container)]


class Naming(Protocol):
    """Which DNs an entry of a given RDN value may have, in order of preference."""

    def candidates(self, anchor: str, value: str) -> Iterable[str]:
        """The DNs to try, the plain name first."""
        ...

    def keeps(self, anchor: str, value: str, dn: str) -> bool:
        """May an entry that is at ``dn`` stay there (one of its candidates)?"""
        ...


@dataclass(frozen=True)
class AnchorNames:
    """The name, then the name with the anchor in parentheses (:func:`candidate_dns`)."""

    rdn_attribute: str
    container: str

    def candidates(self, anchor: str, value: str) -> list[str]:
        return candidate_dns(anchor, value, self.rdn_attribute, self.container)

    def keeps(self, anchor: str, value: str, dn: str) -> bool:
        return normalize_dn(dn) in {normalize_dn(c) for c in self.candidates(anchor, value)}


@dataclass
class Assignment:
    dns: MutableMapping[str, str] = field(default_factory=dict)  # anchor -> DN
    conflicts: dict[str, str] = field(default_factory=dict)  # anchor -> why not


def assign_dns(wanted: Iterable[tuple[str, str]], current: Mapping[str, str],
               held: MutableMapping[str, str], unowned: Mapping[str, str], *, rdn_attribute: str,
               container: str, naming: Naming | None = None,
               dns: MutableMapping[str, str] | None = None,
               order: Callable[[Iterable[tuple[str, str]]], Iterable[tuple[str, str]]]
               = sorted) -> Assignment:
    """Give each (anchor, RDN value) a DN in the container.

    ``current``: where re-mapped entries are now (anchor -> DN), ``held``:
    normalized DNs that other entries of this connection keep (extended in
    place), ``unowned``: normalized DNs of entries dirsync does not own.
    An entry keeps its current DN when that is still one of its candidates,
    so full and incremental runs agree; otherwise it gets its name, or the
    first free one of its other candidates (``naming``; by default the name
    with the anchor) when another entry of the connection has it. A name
    taken by an entry dirsync does not own is a conflict, never an
    overwrite.

    ``dns`` receives the names given (a new dict by default); ``order`` sorts
    the entries to be placed by anchor (a run of millions passes a sort on
    disk): it must take them all before it gives the first.
    """
    names = naming or AnchorNames(rdn_attribute, container)
    result = Assignment() if dns is None else Assignment(dns=dns)

    def pending() -> Iterator[tuple[str, str]]:
        for anchor, value in wanted:
            now = current.get(anchor)
            if now is not None:
                key = normalize_dn(now)
                if key not in held and key not in unowned and names.keeps(anchor, value, now):
                    held[key] = anchor
                    result.dns[anchor] = now
                    continue
            yield anchor, value

    for anchor, value in order(pending()):
        dn, conflict = place_dn(anchor, names.candidates(anchor, value), held, unowned)
        if dn is not None:
            result.dns[anchor] = dn
        else:
            result.conflicts[anchor] = conflict or ""
    return result


def place_dn(anchor: str, candidates: Iterable[str], held: MutableMapping[str, str],
             unowned: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The first free candidate (taking it in ``held``), or None and why not."""
    tried = 0
    first = last = ""
    for candidate in candidates:
        key = normalize_dn(candidate)
        tried += 1
        if tried == 1:
            first = candidate
            if key in unowned:
                return None, (f"{candidate} is taken by an entry dirsync does not own "
                              f"({unowned[key]})")
        last = candidate
        if key in unowned:
            continue
        if key not in held:
            held[key] = anchor
            return candidate, None
    if tried == 2:
        return None, f"{first} and {last} are both taken by other entries of this connection"
    return None, (f"{first} and its {tried - 1} other names (up to {last}) are all taken by "
                  "other entries of this connection")


# -- per-entry changes --------------------------------------------------------

@dataclass
class EntryPlan:
    """What one entry needs: its changes by phase, and the report's view of it."""

    action: str                      # add | modify | rename | delete | unchanged
    changes: list[tuple[int, Change]] = field(default_factory=list)
    before: dict[str, list[bytes]] | None = None
    after: dict[str, list[bytes]] | None = None
    old_dn: str | None = None


def plan_entry(target: Entry, hub: Entry | None, owned: frozenset[str], *,
               group: bool = False) -> EntryPlan:
    """The changes that make the hub hold ``target`` (``hub``: what it holds now).

    Only the attributes in ``owned`` are compared; attributes an
    administrator added stay. Object classes are only ever added. A new DN
    is a modrdn (then a modify for what else changed), never a delete and
    an add, unless the structural class itself must change, which LDAP
    allows no other way.
    """
    late = PHASE_GROUP if group else PHASE_MODIFY
    if hub is None:
        return EntryPlan("add", [(PHASE_GROUP if group else PHASE_ADD, add_change(target))],
                         after=dict(target.attrs))
    hub_classes = lower_classes(hub.get("objectClass"))
    wanted_classes = target.texts("objectClass")
    if wanted_classes and wanted_classes[0].lower() not in hub_classes:
        # A contact that must become a group (or back): a new structural class.
        return EntryPlan("modify", [(PHASE_DELETE, Change("delete", hub.dn)),
                                    (PHASE_GROUP if group else PHASE_ADD, add_change(target))],
                         before=dict(hub.attrs), after=dict(target.attrs), old_dn=hub.dn
                         if normalize_dn(hub.dn) != normalize_dn(target.dn) else None)
    plan = EntryPlan("unchanged")
    current = hub
    if normalize_dn(hub.dn) != normalize_dn(target.dn):
        plan.action = "rename"
        plan.old_dn = hub.dn
        plan.changes.append((PHASE_RENAME, rename_change(hub.dn, target.dn)))
        current = renamed_entry(hub, target.dn)
    mods = modify_ops(current, target, only=owned)
    missing = [c.encode("utf-8") for c in wanted_classes if c.lower() not in hub_classes]
    if missing:
        mods.insert(0, Mod("add", "objectClass", missing))
    if mods:
        if plan.action == "unchanged":
            plan.action = "modify"
        plan.changes.append((late, Change("modify", target.dn, mods=mods)))
        touched = {m.attr.lower() for m in mods}
        plan.before = {k: list(v) for k, v in hub.attrs.items() if k.lower() in touched}
        plan.after = {k: list(v) for k, v in target.attrs.items() if k.lower() in touched}
    return plan


def delete_plan(dn: str, before: Entry | None) -> EntryPlan:
    return EntryPlan("delete", [(PHASE_DELETE, Change("delete", dn))],
                     before=dict(before.attrs) if before is not None else None)


# -- ordering -----------------------------------------------------------------

def order_deletes(dns: Iterable[str]) -> list[str]:
    """Children before parents."""
    return sorted(dns, key=lambda dn: -dn_depth(dn))


def order_renames(renames: list[tuple[str, str, str]],
                  temporary: Callable[[str, str, str], str]) -> list[tuple[str, str, str]]:
    """Order (anchor, old DN, new DN) renames so none lands on a DN still in use.

    A rename whose new DN is the old DN of another rename goes after it.
    As DNs are unique, the renames form chains and cycles; a cycle (A takes
    B's name while B takes A's) is broken by moving one of its entries to
    ``temporary(anchor, old_dn, new_dn)`` first and to its new DN last.
    """
    n = len(renames)
    by_old = {normalize_dn(old): i for i, (_, old, _) in enumerate(renames)}
    waits: list[int | None] = []   # i must wait until waits[i] has moved away
    for i, (_, _, new) in enumerate(renames):
        j = by_old.get(normalize_dn(new))
        waits.append(j if j is not None and j != i else None)
    first: list[tuple[str, str, str]] = []
    last: list[tuple[str, str, str]] = []
    parked: set[int] = set()
    color = [0] * n                # 0 unseen, 1 on the current walk, 2 done
    for start in range(n):
        path = []
        k: int | None = start
        while k is not None and color[k] == 0:
            color[k] = 1
            path.append(k)
            k = waits[k]
        if k is not None and color[k] == 1:
            anchor, old, new = renames[k]
            spare = temporary(anchor, old, new)
            first.append((anchor, old, spare))
            last.append((anchor, spare, new))
            parked.add(k)
            # Its old DN is free once it is parked: nobody waits for it.
            waits = [None if w == k else w for w in waits]
        for p in path:
            color[p] = 2
    order: list[tuple[str, str, str]] = []
    emitted = [False] * n
    for start in range(n):
        chain = []
        k = start
        while k is not None and not emitted[k] and k not in parked and k not in chain:
            chain.append(k)
            k = waits[k]
        for k in reversed(chain):
            emitted[k] = True
            order.append(renames[k])
    return first + order + last


# -- groups -------------------------------------------------------------------

def resolve_members(references: Iterable[str], keys: Mapping[str, str],
                    dns: Mapping[str, str], *, by_dn: bool) -> tuple[list[str], list[str]]:
    """Member references of a source list -> (hub DNs, unknown references).

    ``keys``: member key (folded) -> anchor; ``dns``: anchor -> hub DN.
    With ``by_dn`` the references are source DNs and compare as DNs,
    otherwise they compare case-insensitively.
    """
    found: list[str] = []
    seen: set[str] = set()
    unknown: list[str] = []
    for ref in references:
        key = member_key_fold(ref, by_dn)
        anchor = keys.get(key)
        dn = dns.get(anchor) if anchor is not None else None
        if dn is None:
            unknown.append(ref)
            continue
        norm = normalize_dn(dn)
        if norm not in seen:
            seen.add(norm)
            found.append(dn)
    return found, unknown


def member_key_fold(value: str, by_dn: bool) -> str:
    return normalize_dn(value) if by_dn else value.strip().casefold()


# -- safety -------------------------------------------------------------------

def safety_stop(*, deletes: int, held: int, threshold: Threshold, source_entries: int,
                allow_deletes: int | None, target: str = "the hub") -> str | None:
    """Why the run must stop before changing anything, or None.

    ``held``: entries ``target`` holds for this connection (the hub for an
    import, the foreign side for an export). An empty source while the
    target holds entries stops; so do more deletes than the threshold.
    ``allow_deletes`` approves up to that many deletes.
    """
    approved = allow_deletes is not None and deletes <= allow_deletes
    approve = (f"to let this run delete {'it' if deletes == 1 else 'them'}, run it again "
               f"with --allow-deletes {deletes}")
    if source_entries == 0 and held > 0 and not approved:
        return (f"the source is empty while {target} holds {plural(held, 'entry')} of this "
                f"connection; nothing was changed ({approve})")
    limit = threshold.limit(held)
    if deletes > limit and not approved:
        if threshold.percent is not None:
            allows = (f"delete_threshold = \"{threshold}\" allows at most {limit} in one run "
                      f"({threshold} of the {plural(held, 'entry')} {target} holds for this "
                      "connection)")
        else:
            allows = f"delete_threshold = {threshold} allows at most {limit} in one run"
        return (f"this run would delete {plural(deletes, 'entry')}, but {allows}; nothing was "
                f"changed ({approve}, or raise delete_threshold)")
    return None
