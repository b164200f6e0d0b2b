"""What an export into Active Directory (the ``ad`` kind) adds to the LDAP one.

Hub recipients become ``contact`` objects below the connection's
``foreign_container``. AD's own rules, on top of docs/export.md:

- **Names.** ``cn`` (the RDN) holds at most 64 characters: a longer name
  is cut (at a character, never inside a UTF-16 pair) so that the
  qualifier or number the clash rule adds (``Sam Wu (HR)``, ``Sam Wu (2)``)
  still fits; two names that are the same once cut are told apart by that
  rule. Line breaks and other control characters become spaces. The value
  is escaped by python-ldap (RFC 4514), as every RDN dirsync makes.
- **Lengths.** A value longer than its attribute's ``rangeUpper`` in the
  schema (``sn`` and ``givenName`` 64, ``displayName`` 256...) is cut to
  it, with a note; an address never is (AD refuses the entry instead).
- **Exchange attributes.** ``targetAddress``, ``mailNickname`` and
  ``msExchHideFromAddressLists`` are written only when the forest's schema
  has them (Exchange extends it); without them they are left out of every
  entry, and ``dirsync check`` says so.
- **Addresses are unique in the directory.** Before an entry gets an address
  it does not hold yet (``mail`` or ``proxyAddresses``), AD is asked who
  holds it (``mail`` and ``smtp:`` compare as one, any case): a full run
  reads every address of the domain once, an incremental run asks about
  its changed entries' new addresses only. An object
  held by anyone else (an AD user, a contact of another connection, another
  entry of this one) keeps it: the value is left out of the new entry and
  the run reports a conflict naming the holder, as the import's address
  ownership does (:mod:`dirsync.sync.ownership`).
- **Only contacts are the export's.** An object that carries the
  connection's marker but is not a ``contact`` (a user someone marked) is
  not the connection's: it is never changed or deleted.
- **Nothing outside the container.** The directory refuses, before sending
  it, any change whose DN is not below ``foreign_container``
  (:meth:`dirsync.directories.ad.ADDirectory.outside_scope`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from dirsync.directories.base import ReadOptions
from dirsync.entry import Entry, join_dn, make_rdn
from dirsync.errors import ConfigError
from dirsync.ldif.changes import Change
from dirsync.mapping.exportnames import NumberedNames
from dirsync.sync.ownership import (
    Claims,
    Holder,
    Lost,
    blocking,
    entry_addresses,
    holders_of,
    lookup_filters,
)
from dirsync.sync.report import Problem

#: The attributes only an Exchange-extended schema has.
EXCHANGE_ATTRIBUTES = ("targetAddress", "mailNickname", "msExchHideFromAddressLists")

#: Values never cut to fit: an address cut short is another address.
_ADDRESSES = frozenset({"mail", "proxyaddresses", "targetaddress"})

#: rangeUpper of ``cn`` in AD's schema (characters, i.e. UTF-16 code units).
CN_LIMIT = 64

#: The room a name keeps for itself when a qualifier is added to it.
MIN_NAME = 20


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, room: int) -> str:
    """``text`` cut to at most ``room`` UTF-16 code units, whole characters only,
    without trailing spaces (a cut must not leave one at the end of a name)."""
    if utf16_units(text) <= room:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > room:
            break
        out.append(ch)
        used += width
    return "".join(out).rstrip()


def name_text(value: str) -> str:
    """A name as AD can hold it: one line, spaces collapsed."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(cleaned.split())


class ADNames(NumberedNames):
    """:class:`NumberedNames` within AD's 64 characters of ``cn``."""

    def dn(self, value: str, n: int) -> str:
        suffix = "" if n == 1 else f" ({n})"
        name = fit(name_text(value), CN_LIMIT - utf16_units(suffix)) + suffix
        return join_dn(make_rdn(self.rdn_attribute, name), self.container)

    def qualified(self, anchor: str, value: str) -> str | None:
        qualifier = fit(name_text(self.qualifiers.get(anchor) or ""),
                        CN_LIMIT - MIN_NAME - 3)
        if not qualifier:
            return None
        suffix = f" ({qualifier})"
        name = fit(name_text(value), CN_LIMIT - utf16_units(suffix)) + suffix
        return join_dn(make_rdn(self.rdn_attribute, name), self.container)


def exchange_absent(known: Iterable[str] | None) -> list[str]:
    """The Exchange attributes a schema (lower-case names) lacks."""
    names = {k.lower() for k in known or ()}
    return [a for a in EXCHANGE_ATTRIBUTES if a.lower() not in names]


class ADExport:
    """The AD rules of one export run (see the module's docstring).

    ``run`` is the :class:`dirsync.sync.exportrun.ExportRun`; this object
    reads its foreign directory, export mapping and deletes, and reports
    through its ``conflict``.
    """

    def __init__(self, run: Any) -> None:
        self.run = run
        self.directory = run.foreign
        self.directory.write_scope = run.container
        self.claims = Claims()
        self.searches = 0
        self._absent: set[str] | None = None
        self._index: dict[str, list[Holder]] | None = None
        export = run.export
        self._holder_attrs = ["mail", "proxyAddresses", export.marker_attribute,
                              export.anchor_attribute]

    @property
    def absent(self) -> set[str]:
        """Lower-case names of the Exchange attributes this forest's schema lacks."""
        if self._absent is None:
            self._absent = {a.lower() for a in
                            exchange_absent(self.directory.attribute_types())}
        return self._absent

    def screen(self, anchor: str, hub_dn: str, target: Entry, current: Entry | None) -> None:
        """Make ``target`` fit AD: Exchange attributes the schema lacks left out,
        addresses someone else holds left out (each a conflict)."""
        limits = self.directory.length_limits()
        for name in list(target.attrs):
            if name.lower() in self.absent:
                target.remove(name)
                continue
            limit = limits.get(name.lower())
            if limit is None or name.lower() in _ADDRESSES:
                continue    # an address is never cut: AD refuses it whole
            values = target.get(name)
            cut = [fit(v.decode("utf-8", "replace"), limit).encode("utf-8") for v in values]
            if cut != values:
                target.set(name, cut)
                self.run.problems.append(Problem(
                    "note", anchor, hub_dn, f"{name} cut to {limit} characters, the most "
                    "Active Directory holds"))
        keys = [key for key, _, _ in entry_addresses(target)]
        self.claims.claim(anchor, keys)
        held = {key for key, _, _ in entry_addresses(current)} if current is not None else set()
        new = [item for item in entry_addresses(target) if item[0] not in held]
        if not new:
            return
        wanted: dict[str, tuple[str, bytes]] = {}
        for key, attr, value in new:
            wanted.setdefault(key, (attr, value))
        holders = self.lookup(wanted)
        deleted = set(self.run.deletes)
        lost: list[Lost] = []
        for key, attr, value in new:
            holder = blocking(holders.get(key, ()), key=key, anchor=anchor,
                              connection=self.run.name, claims=self.claims,
                              remapped=frozenset(), deleted=deleted)
            if holder is not None:
                why = self.describe(holder)
            else:
                first = self.claims.first_claimant(key)
                if first is None or first == anchor:
                    continue
                why = f"the hub entry with anchor {first} has it first in this run"
            lost.append(Lost(attr, value, why))
            target.set(attr, [v for v in target.get(attr) if v != value])
        for item in lost:
            self.run.conflict(anchor, hub_dn, item.text())

    @staticmethod
    def may_own(entry: Entry) -> bool:
        """Only a ``contact`` is ever the export's: a user, group or anything else
        that carries the marker (set by hand, or by mistake) is left alone."""
        return any(c.lower() == "contact" for c in entry.texts("objectClass"))

    def container_only(self, adds: list[Change]) -> None:
        """AD gets the container itself, never a parent of it: ConfigError otherwise."""
        if len(adds) > 1:
            raise ConfigError(
                f"{self.run.connection.key_path}.foreign_container: {adds[0].dn} does not "
                f"exist in Active Directory; dirsync creates {self.run.container} only "
                "when its parent exists, and writes nothing outside it")

    def describe(self, holder: Holder) -> str:
        if holder.source is not None and holder.source.casefold() == self.run.name.casefold():
            return f"{holder.dn} of this connection holds it in Active Directory"
        return f"{holder.dn} holds it in Active Directory"

    def lookup(self, wanted: dict[str, tuple[str, bytes]]) -> dict[str, list[Holder]]:
        """key -> the AD objects (any, below the naming context) that hold it.

        A full run, which maps every recipient, reads every address of the
        domain once (one paged search); an incremental run asks about the
        addresses of its changed entries only (indexed searches)."""
        if self.run.mode == "full":
            index = self.index()
            return {key: index[key] for key in wanted if key in index}
        found: list[tuple[str, dict[str, list[bytes]], str | None, str | None]] = []
        for filt in lookup_filters(wanted):
            found.extend(self.holders(filt))
        return holders_of(found, set(wanted))

    def holders(self, filt: str) -> Iterator[tuple[str, dict[str, list[bytes]], str | None,
                                                  str | None]]:
        export = self.run.export
        self.searches += 1
        options = ReadOptions(base=self.directory.naming_context(), scope="sub", filter=filt,
                              attrs=self._holder_attrs)
        for entry in self.directory.read_below(options):
            yield (entry.dn, entry.attrs, entry.first(export.marker_attribute),
                   entry.first(export.anchor_attribute))

    def index(self) -> dict[str, list[Holder]]:
        """Every address of the domain -> its holders (read once per run)."""
        if self._index is None:
            self._index = {}
            for dn, attrs, source, anchor in self.holders("(|(mail=*)(proxyAddresses=*))"):
                holder = Holder(dn, source, anchor)
                for key, _, _ in entry_addresses(attrs):
                    holders = self._index.setdefault(key, [])
                    if holder not in holders:
                        holders.append(holder)
        return self._index
