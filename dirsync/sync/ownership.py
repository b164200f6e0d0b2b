"""Addresses are owned: an imported entry never takes one another entry holds.

The relay routes mail by ``mail`` and proxy addresses, so an address held
by two hub entries sends mail to whichever the lookup finds first. An
import run therefore checks each address an entry is about to *get* (one
it does not hold in the hub yet) against:

- the hub: every entry under the hub's base that holds it, found by the
  ``mail`` and ``proxyAddresses`` equality indexes, a few hundred
  addresses per search (an OR filter), for the entries this run adds or
  modifies only;
- this run: two source entries that claim one address.

The entry that comes second loses the address: the value is left out of
it, the entry is synced otherwise, and the run reports a conflict naming
who holds the address (docs/schema.md, "Addresses are owned"). An
address counts as held by an entry of the same connection only while that
entry keeps it: one the run deletes, or maps without it, frees it.

Addresses compare case-insensitively, and a ``mail`` value is the same
address as an SMTP proxy address: ``mail: ted@x`` and ``smtp:TED@x`` clash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import ldap.filter

from dirsync.addresses.proxy import TYPED
from dirsync.directories.base import Directory, ReadOptions
from dirsync.entry import Entry, is_under
from dirsync.mapping.mapfile import ANCHOR_ATTR, SOURCE_ATTR

#: The attributes whose values are addresses someone owns.
ADDRESS_ATTRS = ("mail", "proxyAddresses")

#: Addresses per hub search (three filter terms at most each): the
#: addresses of one batch of a first sync (200 entries) in one search.
LOOKUP_CHUNK = 400


def address_key(attr: str, value: bytes) -> str:
    """What two address values are compared by: ``smtp:ted@x`` for both
    ``mail: Ted@X`` and ``proxyAddresses: SMTP:ted@x``."""
    text = value.decode("utf-8", "replace").strip()
    if attr.lower() == "mail":
        return "smtp:" + text.casefold()
    match = TYPED.match(text)
    if match is None:
        return text.casefold()
    return f"{match.group(1).casefold()}:{match.group(2).casefold()}"


_WANTED = frozenset(a.lower() for a in ADDRESS_ATTRS)


def entry_addresses(attrs: Entry | Mapping[str, Iterable[bytes]]
                    ) -> Iterator[tuple[str, str, bytes]]:
    """(key, attribute, value) of each address of an entry (or its attributes)."""
    if isinstance(attrs, Entry):
        for name in ADDRESS_ATTRS:
            stored = attrs.key(name)
            if stored is not None:
                for value in attrs.attrs[stored]:
                    yield address_key(name, value), stored, value
        return
    for name, values in attrs.items():
        if name.lower() in _WANTED:
            for value in values:
                yield address_key(name, value), name, value


def lookup_terms(attr: str, value: bytes) -> list[str]:
    """The filter terms that find a hub entry holding this address."""
    text = value.decode("utf-8", "replace").strip()
    escape = ldap.filter.escape_filter_chars
    if attr.lower() == "mail":
        return [f"(mail={escape(text)})", f"(proxyAddresses=smtp:{escape(text)})"]
    match = TYPED.match(text)
    terms = [f"(proxyAddresses={escape(text)})"]
    if match is not None and match.group(1).lower() == "smtp":
        terms.append(f"(mail={escape(match.group(2))})")
    return terms


def lookup_filters(wanted: Mapping[str, tuple[str, bytes]]) -> Iterator[str]:
    """OR filters for addresses (key -> (attribute, value)), a chunk at a time."""
    terms: list[str] = []
    count = 0
    for attr, value in wanted.values():
        terms.extend(lookup_terms(attr, value))
        count += 1
        if count >= LOOKUP_CHUNK:
            yield f"(|{''.join(terms)})"
            terms, count = [], 0
    if terms:
        yield f"(|{''.join(terms)})"


def _digest(key: str) -> int:
    # Eight bytes per address instead of the text: a full run of a large
    # directory claims every address of it.
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass
class Claims:
    """Which source entries of this run map to each address, in source order."""

    first: dict[int, str] = field(default_factory=dict)
    more: dict[int, set[str]] = field(default_factory=dict)

    def claim(self, anchor: str, keys: Iterable[str]) -> None:
        for key in set(keys):
            digest = _digest(key)
            holder = self.first.setdefault(digest, anchor)
            if holder != anchor:
                self.more.setdefault(digest, set()).add(anchor)

    def first_claimant(self, key: str) -> str | None:
        return self.first.get(_digest(key))

    def claims(self, anchor: str, key: str) -> bool:
        digest = _digest(key)
        return self.first.get(digest) == anchor or anchor in self.more.get(digest, ())


@dataclass(frozen=True)
class Holder:
    """A hub entry holding an address."""

    dn: str
    source: str | None      # its dirsyncSource (None: not created by dirsync)
    anchor: str | None

    def describe(self, connection: str) -> str:
        if self.source is None:
            return f"{self.dn} holds it (an entry dirsync did not create)"
        if self.source.casefold() == connection.casefold():
            return f"{self.dn} of this connection holds it"
        return f"{self.dn} of connection {self.source!r} holds it"


def holders_of(entries: Iterable[tuple[str, Mapping[str, list[bytes]], str | None,
                                       str | None]],
               keys: set[str]) -> dict[str, list[Holder]]:
    """key -> the entries (dn, attrs, source, anchor) that hold it, among ``keys``."""
    found: dict[str, list[Holder]] = {}
    for dn, attrs, source, anchor in entries:
        for key, _, _ in entry_addresses(attrs):
            if key in keys:
                holders = found.setdefault(key, [])
                if all(h.dn != dn for h in holders):
                    holders.append(Holder(dn, source, anchor))
    return found


def blocking(holders: Iterable[Holder], *, key: str, anchor: str, connection: str,
             claims: Claims, remapped: set[str] | frozenset[str],
             deleted: set[str] | frozenset[str]) -> Holder | None:
    """The hub entry that keeps ``key`` from ``anchor``, or None.

    An entry of another connection, or one dirsync did not create, keeps
    what it holds. So does an entry of this connection that this run
    neither deletes nor maps again; one that it maps again keeps the
    address only if its new mapping still claims it.
    """
    name = connection.casefold()
    for holder in holders:
        if holder.source is None or holder.source.casefold() != name or holder.anchor is None:
            return holder
        if holder.anchor == anchor or holder.anchor in deleted:
            continue
        if holder.anchor not in remapped or claims.claims(holder.anchor, key):
            return holder
    return None


#: What the hub search returns of an entry holding an address.
_HOLDER_ATTRS = ["mail", "proxyAddresses", SOURCE_ATTR, ANCHOR_ATTR]


@dataclass
class Lost:
    """A value left out of an entry, and why."""

    attr: str
    value: bytes
    why: str

    def text(self) -> str:
        return f"{self.attr} {self.value.decode('utf-8', 'replace')!r} left out: {self.why}"


class AddressGuard:
    """The address check of one import run (see the module's docstring)."""

    def __init__(self, hub: Directory, base: str, connection: str,
                 outside: Iterable[str] = ()) -> None:
        self.hub = hub
        self.base = base
        self.connection = connection
        #: Subtrees of the hub's server that are not the hub: a foreign
        #: directory on the same server holds the very addresses it exports.
        self.outside = [o for o in outside if o]
        self.claims = Claims()
        self._file_index: list[tuple[str, dict[str, list[bytes]], str | None,
                                     str | None]] | None = None
        self.searches = 0

    def claim(self, anchor: str, attrs: Mapping[str, Iterable[bytes]]) -> None:
        """A mapped source entry's addresses (in source order)."""
        self.claims.claim(anchor, [key for key, _, _ in entry_addresses(attrs)])

    def check(self, entries: Iterable[tuple[str, Entry, Entry | None]], *,
              remapped: set[str] | frozenset[str] = frozenset(),
              deleted: set[str] | frozenset[str] = frozenset()) -> dict[str, list[Lost]]:
        """Take from each (anchor, target, hub copy or None) the addresses it may
        not get; returns them by anchor. Only addresses the hub copy does
        not hold yet are looked up."""
        pending: list[tuple[str, Entry, list[tuple[str, str, bytes]]]] = []
        wanted: dict[str, tuple[str, bytes]] = {}
        for anchor, target, current in entries:
            held = {key for key, _, _ in entry_addresses(current)} if current else set()
            new = [item for item in entry_addresses(target) if item[0] not in held]
            if new:
                pending.append((anchor, target, new))
                for key, attr, value in new:
                    wanted.setdefault(key, (attr, value))
        if not wanted:
            return {}
        holders = self.lookup(wanted)
        if self.outside:
            holders = {key: [h for h in found
                             if not any(is_under(h.dn, o) for o in self.outside)]
                       for key, found in holders.items()}
        lost: dict[str, list[Lost]] = {}
        for anchor, target, new in pending:
            for key, attr, value in new:
                holder = blocking(holders.get(key, ()), key=key, anchor=anchor,
                                  connection=self.connection, claims=self.claims,
                                  remapped=remapped, deleted=deleted)
                if holder is not None:
                    why = holder.describe(self.connection)
                else:
                    first = self.claims.first_claimant(key)
                    if first is None or first == anchor:
                        continue
                    why = f"the source entry {first!r} claims it first in this run"
                lost.setdefault(anchor, []).append(Lost(attr, value, why))
                kept = [v for v in target.get(attr) if v != value]
                target.set(attr, kept)
        return lost

    def lookup(self, wanted: Mapping[str, tuple[str, bytes]]) -> dict[str, list[Holder]]:
        """key -> the hub entries holding it."""
        keys = set(wanted)
        if self.hub.kind != "ldap":
            if self._file_index is None:
                self._file_index = [
                    (e.dn, e.attrs, e.first(SOURCE_ATTR), e.first(ANCHOR_ATTR))
                    for e in self.hub.read(ReadOptions(base=self.base or None, scope="sub"))
                    if any(e.get(a) for a in ADDRESS_ATTRS)]
            return holders_of(self._file_index, keys)
        found: list[tuple[str, Mapping[str, list[bytes]], str | None, str | None]] = []
        for filt in lookup_filters(wanted):
            self.searches += 1
            for entry in self.hub.read(ReadOptions(base=self.base, scope="sub", filter=filt,
                                                   attrs=_HOLDER_ATTRS)):
                found.append((entry.dn, entry.attrs, entry.first(SOURCE_ATTR),
                              entry.first(ANCHOR_ATTR)))
        return holders_of(found, keys)
