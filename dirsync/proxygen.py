"""Proxy addresses for exported recipients: the seeds' recipient update service.

Every recipient a connection exports needs an address of the foreign
system's type (``MS:``, ``NOTES:``, ``X400:`` ...): that address is what
the foreign system sees, and what its mail comes back to. A recipient
that has a primary address of the type keeps it. One that has none gets
one from the mapping's ``proxy_address`` template, unique across the hub:
when another recipient holds it, a deterministic suffix goes on its
mailbox part (:func:`dirsync.proxy.with_suffix`), never a duplicate.

Where the generated address lives is the administrator's decision, made
per connection with ``proxy_writeback`` (docs/export.md):

``marked`` (the default)
    written to the hub's ``proxyAddresses`` only on entries that carry the
    ``dirsyncObject`` class: an administrator (or the provisioning tool)
    gives an entry that class to let dirsync stamp it.
``all``
    written to every exported recipient, adding ``dirsyncObject`` where it
    is missing: the seeds' behaviour, and the one exception to "nothing
    dirsync did not create is ever modified" (only values are added;
    nothing is replaced or removed).
``none``
    never written.

Entries created by an import connection are never written either: their
``proxyAddresses`` belong to that import's mapping, which would take the
value back out on its next compare. An address that is not written is
remembered in the state store, so it stays the same from run to run and
counts as taken for everyone else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dirsync.changes import Change, Mod
from dirsync.entry import Entry
from dirsync.mapping import MARKER_CLASS, SOURCE_ATTR
from dirsync.proxy import of_type, with_suffix
from dirsync.state import StateStore, now

WRITEBACK_MODES = ("marked", "all", "none")
DEFAULT_WRITEBACK = "marked"

#: How far a suffix goes before the template is declared hopeless.
SUFFIX_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS proxy_assignments (
    hub TEXT NOT NULL,
    anchor TEXT NOT NULL,
    type TEXT NOT NULL,
    address TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (hub, anchor, type)
) WITHOUT ROWID
"""


@dataclass(frozen=True)
class Writeback:
    """Whether a hub entry gets its generated address, and if not, why."""

    write: bool
    add_class: bool = False
    reason: str | None = None


def writeback_policy(entry: Entry, mode: str) -> Writeback:
    owner = entry.first(SOURCE_ATTR)
    if owner:
        return Writeback(False, reason=f"created by the import of connection {owner!r}: its "
                         "proxy addresses are that import's; kept in the state store")
    if mode == "none":
        return Writeback(False, reason="proxy_writeback = \"none\"; kept in the state store")
    marked = any(v.lower() == MARKER_CLASS.lower() for v in entry.texts("objectClass"))
    if mode == "marked" and not marked:
        return Writeback(False, reason=f"the entry has no objectClass {MARKER_CLASS} "
                         "(proxy_writeback = \"marked\"); kept in the state store")
    return Writeback(True, add_class=not marked)


@dataclass
class Assigned:
    """The address of the foreign type a recipient is exported with."""

    address: str                      # without the TYPE: prefix
    generated: bool                   # not (yet) a primary address on the hub entry
    values: list[str] | None = None   # proxyAddresses with it as primary, if generated


class AssignmentStore:
    """Generated addresses by hub, anchor and type, in the state file (own table)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.db: sqlite3.Connection = state.db
        with state.transaction():
            self.db.execute(_SCHEMA)

    def load(self, hub: str, kind: str) -> dict[str, str]:
        rows = self.db.execute("SELECT anchor, address FROM proxy_assignments "
                               "WHERE hub=? AND type=?", (hub, kind))
        return {anchor: address for anchor, address in rows}

    def put(self, hub: str, kind: str, anchor: str, address: str) -> None:
        with self.state.transaction():
            self.db.execute("INSERT OR REPLACE INTO proxy_assignments VALUES (?, ?, ?, ?, ?)",
                            (hub, anchor, kind, address, now()))


class Assigner:
    """Unique addresses of one type across one hub.

    ``hub_addresses`` is called once, when an address must be checked: it
    returns every ``TYPE:address`` of this type the hub holds (any case).
    ``remembered`` holds the addresses generated earlier, by anchor.
    """

    def __init__(self, kind: str, hub_addresses: Callable[[], Iterable[str]],
                 remembered: dict[str, str]) -> None:
        self.kind = kind.upper()
        self._load = hub_addresses
        self._hub: set[str] | None = None
        self.remembered = dict(remembered)
        # key -> anchor of every remembered or newly generated address
        self._owner = {self.key(a): anchor for anchor, a in remembered.items()}
        self.changed: dict[str, str] = {}    # anchor -> address to remember

    def key(self, address: str) -> str:
        return f"{self.kind}:{address}".casefold()

    def _hub_keys(self) -> set[str]:
        if self._hub is None:
            self._hub = {v.casefold() for v in self._load()}
        return self._hub

    def taken(self, address: str, anchor: str, own: Iterable[str]) -> bool:
        key = self.key(address)
        if key in {f"{self.kind}:{a}".casefold() for a in own}:
            return False
        owner = self._owner.get(key)
        if owner is not None and owner != anchor:
            return True
        return key in self._hub_keys()

    def assign(self, anchor: str, existing: list[str],
               candidate: Callable[[], str]) -> Assigned | None:
        """The address ``anchor`` is exported with; None when the template yields nothing.

        ``existing``: the entry's proxyAddresses values. A primary of the
        type is used as it is. Otherwise the remembered address, while
        nobody else holds it; otherwise the template's, with a suffix as
        long as it is taken. An address the entry holds as a secondary is
        promoted rather than suffixed.
        """
        own = [p.address for p in of_type(existing, self.kind)]
        primary = next((p.address for p in of_type(existing, self.kind) if p.primary), None)
        if primary is not None:
            return Assigned(primary, generated=False)
        address = self.remembered.get(anchor)
        if address is None or self.taken(address, anchor, own):
            base = candidate()
            if not base:
                return None
            address = base
            n = 1
            while self.taken(address, anchor, own):
                n += 1
                if n > SUFFIX_LIMIT:
                    raise ValueError(f"no free {self.kind} address near {base!r}")
                address = with_suffix(self.kind, base, n)
        if self.remembered.get(anchor) != address:
            self.changed[anchor] = address
        self.remembered[anchor] = address
        self._owner[self.key(address)] = anchor
        return Assigned(address, generated=True, values=with_primary(existing, self.kind,
                                                                     address))


def with_primary(existing: list[str], kind: str, address: str) -> list[str]:
    """``existing`` with ``TYPE:address`` as the primary of its type (a secondary
    holding the same address is promoted in place; everything else is kept)."""
    wanted = f"{kind}:{address}".casefold()
    out = []
    placed = False
    for value in existing:
        if value.casefold() == wanted:
            out.append(f"{kind}:{address}")
            placed = True
        else:
            out.append(value)
    if not placed:
        out.append(f"{kind}:{address}")
    return out


def writeback_change(entry: Entry, values: list[str], add_class: bool) -> Change | None:
    """The modify that gives a hub entry its new proxyAddresses (values only added,
    a promoted secondary replaced by its primary spelling)."""
    old = entry.texts("proxyAddresses")
    old_exact = set(old)
    new_exact = set(values)
    mods = []
    if add_class:
        mods.append(Mod("add", "objectClass", [MARKER_CLASS.encode()]))
    removed = [v for v in old if v not in new_exact]
    added = [v for v in values if v not in old_exact]
    if removed:
        mods.append(Mod("delete", "proxyAddresses", [v.encode("utf-8") for v in removed]))
    if added:
        mods.append(Mod("add", "proxyAddresses", [v.encode("utf-8") for v in added]))
    if not removed and not added:
        return None
    return Change("modify", entry.dn, mods=mods)
