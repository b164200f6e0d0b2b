"""Address translation through the hub, both ways.

Outbound (SMTP towards a foreign system):

* a recipient whose hub entry has a ``targetAddress`` goes to that address;
  otherwise to whichever of its primary proxy addresses of a routed type, or
  its own SMTP address, the router likes best;
* an IMCEA address at one of the relay's domains is decoded: if the foreign
  address it holds is a hub recipient's proxy or target address, mail goes
  to that recipient (a contact imported from a foreign system thus reaches
  its target, the foreign address); otherwise it travels on as a one-off
  address of its type;
* when several hub entries claim an address, the one the hub owns (without
  dirsync's ownership marker) takes it; with no single such entry the
  recipient waits (4.3.0), it never goes to an imported foreign contact;
* the sender becomes its primary proxy address of the outgoing type; without
  one an X.400 sender is mapped by RFC 2156 and any other sender travels as
  an SMTP one-off, unless the route demands a proxy.

Inbound (from the X.400 pickup): an O/R address that is a hub recipient's
proxy (or, for an originator, a contact's target address) becomes that
recipient's SMTP address; otherwise the RFC 2156 tables map it, and an
originator they cannot map is encapsulated as ``IMCEAX400-...@<imcea_domain>``.

The rules for addresses that cannot be mapped follow the connector
conventions (seeds/004, "Address Mapping Issues").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dirsync.addresses.imcea import EncapsulationError, decode_imcea, encode_imcea, is_imcea
from dirsync.addresses.x400 import (
    MappingTables,
    ORAddressError,
    parse_or_address,
    rfc822_to_x400,
    x400_to_rfc822,
)
from dirsync.relay.addresses import (
    SMTP,
    X400,
    AddressSyntaxError,
    TypedAddress,
    split_smtp,
)
from dirsync.relay.errors import AmbiguousAddress, Unmappable
from dirsync.relay.hub import HubEntry, HubLookup
from dirsync.relay.paths import check_mailbox, is_mailbox
from dirsync.relay.routing import Router

MAX_NESTING = 3  # IMCEASMTP inside IMCEASMTP...: refuse rather than recurse forever


@dataclass(frozen=True)
class Acceptance:
    """Whether the SMTP front takes a recipient, and the reply it gives."""

    accepted: bool
    reply: str


@dataclass(frozen=True)
class Resolution:
    """Where a recipient may go: its candidate addresses, best first on ties."""

    address: str
    candidates: tuple[TypedAddress, ...] = ()
    entry: HubEntry | None = None
    via: str = "smtp"  # hub | imcea | smtp
    error: Unmappable | None = None


def _same(a: TypedAddress, b: TypedAddress) -> bool:
    if a.type != b.type:
        return False
    try:
        return a.canonical().casefold() == b.canonical().casefold()
    except ORAddressError:
        return a.value.casefold() == b.value.casefold()


def _valid(address: TypedAddress) -> bool:
    """Whether an address from the hub can be read in its type's syntax."""
    try:
        address.canonical()
    except ORAddressError:
        return False
    return True


class Translator:
    """Translates addresses using the hub, the router's types and the RFC 2156 tables."""

    def __init__(self, hub: HubLookup, router: Router, *, domains: Iterable[str],
                 imcea_domain: str, tables: MappingTables) -> None:
        self.hub = hub
        self.router = router
        self.domains = frozenset(d.lower() for d in domains) | {imcea_domain.lower()}
        self.imcea_domain = imcea_domain
        self.tables = tables

    def is_local(self, domain: str) -> bool:
        return domain.lower().strip(".") in self.domains

    # -- the SMTP front --------------------------------------------------
    def accept(self, address: str, *, authenticated: bool = False, _depth: int = 0) -> Acceptance:
        """Decide a recipient at any door (the SMTP front, the pickup): only
        routable or hub-known recipients, never an open relay.

        An address several hub entries claim, none of them clearly the hub's
        own, is a temporary failure (``451 4.3.0``), logged by the hub lookup.
        """
        try:
            return self._accept(address, authenticated=authenticated, _depth=_depth)
        except AmbiguousAddress:
            return Acceptance(False, f"451 4.3.0 <{address}>: several hub entries claim this "
                                     "address; try again later")

    def _accept(self, address: str, *, authenticated: bool, _depth: int) -> Acceptance:
        ok = Acceptance(True, "250 2.1.5 Recipient OK")
        try:
            _, domain = split_smtp(check_mailbox(address))
        except AddressSyntaxError:
            return Acceptance(False, f"501 5.1.3 <{address}>: bad recipient address syntax")
        if is_imcea(address) and self.is_local(domain):
            try:
                typed = self._decode(address)
            except Unmappable as exc:
                return Acceptance(False, f"553 5.1.3 <{address}>: {exc}")
            if typed.is_smtp:
                if _depth >= MAX_NESTING:
                    return Acceptance(False, f"553 5.1.3 <{address}>: nested too deep")
                return self._accept(typed.value, authenticated=authenticated, _depth=_depth + 1)
            if self.hub.by_address(typed, targets=True) is not None \
                    or self.router.best(typed, authenticated=authenticated) is not None:
                return ok
            return Acceptance(False, f"550 5.7.1 <{address}>: no address space for "
                                     f"{typed.type} addresses here")
        if self.hub.by_smtp(address) is not None:
            return ok
        if self.is_local(domain):
            return Acceptance(False, f"550 5.1.1 <{address}>: no such recipient here")
        if self.router.best(TypedAddress(SMTP, address), authenticated=authenticated) is not None:
            return ok
        return Acceptance(False, f"550 5.7.1 <{address}>: relaying denied")

    def _decode(self, address: str) -> TypedAddress:
        try:
            enc = decode_imcea(address)
        except EncapsulationError as exc:
            raise Unmappable(str(exc), "5.1.3") from None
        typed = TypedAddress(enc.addr_type, enc.address)
        if typed.type == X400:
            try:
                parse_or_address(typed.value)
            except ORAddressError as exc:
                raise Unmappable(str(exc), "5.1.3") from None
        return typed

    # -- recipients ------------------------------------------------------
    def resolve(self, address: str, *, arrived_as: TypedAddress | None = None,
                _depth: int = 0) -> Resolution:
        """The candidate addresses of one recipient.

        ``arrived_as`` is the foreign address the message was addressed to
        when it came in encapsulated or through the pickup; it is never a
        candidate of an entry without a target address, so a reply to a hub
        user's proxy is not sent back where it came from. An entry with a
        target address (a contact) goes to its target however it was
        addressed: that is where its mailbox is.

        An address several hub entries claim gives a resolution whose error
        has status 4.3.0: the recipient waits (see :func:`~.hub.choose_entry`).
        """
        try:
            return self._resolve(address, arrived_as=arrived_as, _depth=_depth)
        except AmbiguousAddress as exc:
            return Resolution(address, error=Unmappable(str(exc), exc.status))

    def _resolve(self, address: str, *, arrived_as: TypedAddress | None,
                 _depth: int) -> Resolution:
        try:
            _, domain = split_smtp(address)
        except AddressSyntaxError as exc:
            return Resolution(address, error=Unmappable(str(exc), "5.1.3"))
        if is_imcea(address) and self.is_local(domain):
            try:
                typed = self._decode(address)
            except Unmappable as exc:
                return Resolution(address, error=exc)
            if typed.is_smtp and _depth < MAX_NESTING:
                return self._resolve(typed.value, arrived_as=arrived_as, _depth=_depth + 1)
            entry = self.hub.by_address(typed, targets=True)
            if entry is not None:
                if entry.target is not None and not _valid(entry.target):
                    return Resolution(address, (), entry, "hub", Unmappable(
                        f"{address}: target address {entry.target} is malformed", "5.1.3"))
                return Resolution(address, self._candidates(entry, address, typed), entry,
                                  "hub")
            return Resolution(address, (typed,), None, "imcea")
        entry = self.hub.by_smtp(address)
        if entry is not None:
            if entry.target is not None and not _valid(entry.target):
                return Resolution(address, (), entry, "hub", Unmappable(
                    f"{address}: target address {entry.target} is malformed", "5.1.3"))
            return Resolution(address, self._candidates(entry, address, arrived_as), entry, "hub")
        return Resolution(address, (TypedAddress(SMTP, address),), None, "smtp")

    def _candidates(self, entry: HubEntry, address: str,
                    exclude: TypedAddress | None) -> tuple[TypedAddress, ...]:
        if entry.target is not None:
            found = [entry.target]
            exclude = None
        else:
            found = [p.address for p in entry.proxies
                     if p.primary and p.address.type != SMTP and p.address.type in self.router.types]
            found.append(TypedAddress(SMTP, entry.smtp_address() or address))
        named = [TypedAddress(a.type, a.value, entry.display) for a in found if _valid(a)]
        return tuple(a for a in named if exclude is None or not _same(a, exclude))

    # -- senders ---------------------------------------------------------
    def sender_for(self, sender: str, out_type: str, *,
                   require_proxy: bool = False) -> TypedAddress:
        """The sender's address of ``out_type`` (raises :class:`Unmappable`, status 5.1.7)."""
        out_type = out_type.upper()
        if not sender:
            return TypedAddress(SMTP, "")
        try:
            _, domain = split_smtp(sender)
        except AddressSyntaxError as exc:
            raise Unmappable(f"sender {sender!r}: {exc}", "5.1.7") from None
        if is_imcea(sender) and self.is_local(domain):
            # A foreign sender encapsulated earlier goes home in its own form.
            try:
                typed = self._decode(sender)
            except Unmappable as exc:
                raise Unmappable(f"sender {sender!r}: {exc}", "5.1.7") from None
            if typed.type == out_type:
                return typed
        entry = self.hub.by_smtp(sender)  # AmbiguousAddress: the attempt waits
        if entry is not None:
            primary = entry.primary(out_type)
            if primary is not None:
                return TypedAddress(primary.type, primary.value, entry.display)
        display = entry.display if entry else ""
        if out_type == SMTP:
            own = entry.smtp_address() if entry else None
            return TypedAddress(SMTP, own or sender, display)
        if require_proxy:
            raise Unmappable(f"sender {sender} has no primary {out_type} address in the hub",
                             "5.1.7")
        if out_type == X400:
            try:
                mapped = rfc822_to_x400(sender, self.tables)
            except ORAddressError as exc:
                raise Unmappable(f"sender {sender} has no X.400 form: {exc}", "5.1.7") from None
            return TypedAddress(X400, mapped.to_semicolon(), display)
        # Any other type: the SMTP address travels as a one-off.
        return TypedAddress(SMTP, sender, display)

    # -- inbound from the X.400 side -------------------------------------
    def originator_to_smtp(self, address: TypedAddress) -> str:
        """An inbound originator as SMTP: hub, else RFC 2156 tables, else IMCEA.

        Only a valid mailbox comes back (:func:`~.paths.check_mailbox`): a
        hub value or a table mapping that is not one gives way to the IMCEA
        form, which always is. An originator several hub entries claim is
        not looked up further: the IMCEA form names it without choosing.
        """
        try:
            entry = self.hub.by_address(address, targets=True)
        except AmbiguousAddress:
            entry = None
        own = entry.smtp_address() if entry is not None else None
        if own and is_mailbox(own):
            return own
        if address.type == X400:
            mapped = x400_to_rfc822(parse_or_address(address.value), self.tables)
            if mapped is not None and is_mailbox(mapped):
                return mapped
        return encode_imcea(address.type, address.canonical(), self.imcea_domain)

    def recipient_to_smtp(self, address: TypedAddress) -> str | None:
        """An inbound recipient as SMTP: a hub recipient's proxy, else RFC 2156; or None.

        Raises :class:`AmbiguousAddress` when several hub entries claim it.
        """
        entry = self.hub.by_address(address, targets=False)
        if entry is not None and entry.smtp_address():
            return entry.smtp_address()
        if address.type == X400:
            return x400_to_rfc822(parse_or_address(address.value), self.tables)
        return None
