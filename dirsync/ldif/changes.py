"""Change records and the attribute-level diff of two entries.

A :class:`Change` is one LDIF change record (RFC 2849): add, delete, modify
or modrdn. :func:`modify_ops` is the pure core of every modify dirsync
writes, whether from ``dirsync diff`` or a sync run: it compares two
entries attribute by attribute, by each attribute's matching rule.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from dirsync.entry import Attrs, Entry, join_dn, parent_dn, rdn_of, rdn_values
from dirsync.schema import matcher, spelling

ChangeKind = Literal["add", "delete", "modify", "modrdn"]
ModOp = Literal["add", "delete", "replace", "increment"]


@dataclass(slots=True)
class Mod:
    """One modification of one attribute; no values on delete = the whole attribute."""

    op: ModOp
    attr: str
    values: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Control:
    """An LDAP control a change record asks to send with its operation
    (RFC 2849 ``control:`` line, RFC 4511 section 4.1.11)."""

    oid: str
    critical: bool = False
    value: bytes | None = None


@dataclass(slots=True)
class Change:
    """One change record. ``line`` is where it starts in its LDIF file, if any."""

    kind: ChangeKind
    dn: str
    attrs: Attrs | None = None          # add
    mods: list[Mod] = field(default_factory=list)  # modify
    newrdn: str | None = None           # modrdn
    deleteoldrdn: bool = True
    newsuperior: str | None = None
    line: int | None = None
    controls: list[Control] = field(default_factory=list)

    @property
    def target_dn(self) -> str:
        """The DN the entry has after this change."""
        if self.kind != "modrdn" or self.newrdn is None:
            return self.dn
        parent = self.newsuperior if self.newsuperior is not None else parent_dn(self.dn)
        return join_dn(self.newrdn, parent)

    def describe(self) -> str:
        if self.kind == "modrdn":
            return f"modrdn {self.dn} -> {self.target_dn}"
        if self.kind == "modify":
            return f"modify {self.dn} ({', '.join(f'{m.op} {m.attr}' for m in self.mods)})"
        return f"{self.kind} {self.dn}"


def add_change(entry: Entry) -> Change:
    return Change("add", entry.dn, attrs={k: list(v) for k, v in entry.attrs.items()},
                  line=entry.line)


def rename_change(old_dn: str, new_dn: str, deleteoldrdn: bool = True) -> Change:
    """The modrdn that moves ``old_dn`` to ``new_dn`` (newsuperior only if it moves)."""
    old_parent, new_parent = parent_dn(old_dn), parent_dn(new_dn)
    from dirsync.entry import normalize_dn

    superior = None if normalize_dn(old_parent) == normalize_dn(new_parent) else new_parent
    return Change("modrdn", old_dn, newrdn=rdn_of(new_dn), deleteoldrdn=deleteoldrdn,
                  newsuperior=superior)


def _norm_set(values: Iterable[bytes], norm: Callable[[bytes], bytes]) -> dict[bytes, bytes]:
    return {norm(v): v for v in values}


@dataclass(frozen=True, slots=True)
class ValueChanges:
    """What became of the values of one attribute, compared by its matching rule.

    ``respelled``: (old, new) pairs equal by the rule but written differently
    (``Ted`` -> ``TED``); ``kept``: how many values stayed as they were.
    """

    removed: list[bytes]
    added: list[bytes]
    respelled: list[tuple[bytes, bytes]]
    kept: int
    duplicates: bool  # ``new`` holds two values equal by the rule


def value_changes(attr: str, old: list[bytes], new: list[bytes]) -> ValueChanges:
    """The value-level diff of ``attr``: a group that lost one of 500 members
    lost that one member, whatever order the two lists are in."""
    norm = matcher(attr)
    old_n, new_n = _norm_set(old, norm), _norm_set(new, norm)
    spell = spelling(attr)
    respelled = [(old_n[k], v) for k, v in new_n.items()
                 if k in old_n and old_n[k] != v and spell(old_n[k]) != spell(v)]
    return ValueChanges(removed=[v for k, v in old_n.items() if k not in new_n],
                        added=[v for k, v in new_n.items() if k not in old_n],
                        respelled=respelled,
                        kept=sum(1 for k in new_n if k in old_n) - len(respelled),
                        duplicates=len(new_n) != len(new))


def attribute_ops(attr: str, old: list[bytes], new: list[bytes]) -> list[Mod]:
    """The modifications that turn ``old`` values of ``attr`` into ``new``.

    Values are compared by the attribute's matching rule, so a server never
    sees an add of a value it already holds (which it would refuse). A change
    that is only in representation (``Ted`` -> ``TED`` for a case-ignore
    attribute) becomes a replace, so the new spelling arrives too.
    """
    if old == new or sorted(old) == sorted(new):
        return []
    if not new:
        return [Mod("delete", attr)]
    if not old:
        return [Mod("add", attr, list(new))]
    found = value_changes(attr, old, new)
    # Nothing kept: one replace is simpler than deleting every value.
    if found.respelled or found.duplicates or not found.kept:
        return [Mod("replace", attr, list(new))]
    ops: list[Mod] = []
    if found.removed:
        ops.append(Mod("delete", attr, found.removed))
    if found.added:
        ops.append(Mod("add", attr, found.added))
    return ops


def modify_ops(old: Entry, new: Entry, *, ignore: Collection[str] = (),
               only: Collection[str] | None = None) -> list[Mod]:
    """Attribute-level diff of two entries (names case-insensitive).

    ``ignore``: lower-case attribute names never compared. ``only``: if given,
    the lower-case names that are compared at all (the attributes a mapping
    owns); attributes outside it are left alone, whatever their values.
    The naming attribute values of the RDN are never deleted here: a rename
    is a modrdn of its own.
    """
    ops: list[Mod] = []
    seen: set[str] = set()
    for name, values in new.attrs.items():
        low = name.lower()
        seen.add(low)
        if low in ignore or (only is not None and low not in only):
            continue
        ops.extend(attribute_ops(name, old.get(name), values))
    for name in old.attrs:
        low = name.lower()
        if low in seen or low in ignore or (only is not None and low not in only):
            continue
        ops.append(Mod("delete", name))
    return _protect_rdn(ops, new.dn)


def _protect_rdn(ops: list[Mod], dn: str) -> list[Mod]:
    # An entry must keep its RDN values; a delete of them would be refused
    # with notAllowedOnRDN. The new values are present because the new entry
    # holds them, so only drop deletes of values the RDN still needs.
    try:
        naming = {(t.lower(), v.casefold()) for t, v in rdn_values(rdn_of(dn))}
    except ValueError:
        return ops
    if not naming:
        return ops
    kept: list[Mod] = []
    for mod in ops:
        low = mod.attr.lower()
        if mod.op == "delete" and any(t == low for t, _ in naming):
            if not mod.values:
                continue
            mod.values = [v for v in mod.values
                          if (low, v.decode("utf-8", "replace").casefold()) not in naming]
            if not mod.values:
                continue
        kept.append(mod)
    return kept


def renamed_entry(entry: Entry, new_dn: str, deleteoldrdn: bool = True) -> Entry:
    """What a server holds after a modrdn of ``entry`` to ``new_dn``.

    The old RDN values go (with deleteoldrdn), the new RDN values are added
    (RFC 4511 section 4.9). Diffing this against the wanted entry gives the
    modify that must follow the modrdn.
    """
    moved = entry.copy()
    moved.dn = new_dn
    old_rdn, new_rdn = rdn_values(rdn_of(entry.dn)), rdn_values(rdn_of(new_dn))
    if deleteoldrdn:
        for attr, value in old_rdn:
            norm = matcher(attr)
            gone = norm(value.encode("utf-8"))
            moved.set(attr, [v for v in moved.get(attr) if norm(v) != gone])
    for attr, value in new_rdn:
        norm = matcher(attr)
        have = {norm(v) for v in moved.get(attr)}
        if norm(value.encode("utf-8")) not in have:
            moved.add(attr, [value.encode("utf-8")])
    return moved
