"""Recipient lookups in the LDAP hub, with a small time-bounded cache.

The hub holds users (inetOrgPerson with ``mail``) and contacts
(``dirsyncObject`` with a ``targetAddress``); both may carry
``proxyAddresses`` (``TYPE:value``, upper-case type = primary). Lookups go
by ``mail``, by ``proxyAddresses=smtp:...`` and by a typed address in
``proxyAddresses`` or ``targetAddress``. The attributes match
case-insensitively (caseIgnoreMatch), so one filter finds a primary and a
secondary address alike.

python-ldap serialises calls on one connection with its own lock, so one
:class:`LdapHub` may be shared by the SMTP front and the delivery threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import ldap
import ldap.filter

from dirsync.addresses.x400 import ORAddressError, parse_or_address
from dirsync.directories.ldap import LDAPDirectory, TLSOptions
from dirsync.errors import DirsyncError, TransientDirectoryError
from dirsync.relay.addresses import SMTP, X400, AddressSyntaxError, TypedAddress, parse_typed
from dirsync.relay.config import HubConfig
from dirsync.relay.errors import AmbiguousAddress, HubRefused, HubUnavailable

log = logging.getLogger("dirsync.relay.hub")

_ATTRS = ["mail", "proxyAddresses", "targetAddress", "displayName", "cn", "dirsyncSource"]
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Proxy:
    """One proxy address; ``primary`` when its type was written upper-case."""

    address: TypedAddress
    primary: bool


@dataclass(frozen=True)
class HubEntry:
    """What the relay needs of one hub recipient."""

    dn: str
    mail: str | None
    display: str
    proxies: tuple[Proxy, ...] = ()
    target: TypedAddress | None = None
    imported: bool = False  # carries dirsyncSource: dirsync made it from a foreign system

    def primary(self, addr_type: str) -> TypedAddress | None:
        """The primary proxy address of a type (the first one if several are marked)."""
        wanted = addr_type.upper()
        for proxy in self.proxies:
            if proxy.primary and proxy.address.type == wanted:
                return proxy.address
        return None

    def smtp_address(self) -> str | None:
        """The recipient's own SMTP address: the primary SMTP proxy, else ``mail``."""
        primary = self.primary(SMTP)
        return primary.value if primary is not None else self.mail


class HubLookup(Protocol):
    """What translation needs of the hub; :class:`LdapHub` is the real one."""

    def by_smtp(self, address: str) -> HubEntry | None: ...

    def by_address(self, address: TypedAddress, *, targets: bool = True) -> HubEntry | None: ...


def _cause(exc: DirsyncError) -> str:
    cause = exc.__cause__
    return _describe(cause) if isinstance(cause, ldap.LDAPError) else str(exc)


def _text(values: list[bytes] | None) -> list[str]:
    return [v.decode("utf-8", errors="replace") for v in values or []]


def entry_from_ldap(dn: str, attrs: dict[str, list[bytes]]) -> HubEntry:
    """Build a :class:`HubEntry` from a search result; bad proxies are skipped."""
    lowered = {k.lower(): v for k, v in attrs.items()}
    proxies = []
    for raw in _text(lowered.get("proxyaddresses")):
        kind, colon, _ = raw.partition(":")
        try:
            typed = parse_typed(raw)
        except AddressSyntaxError:
            log.warning("%s: proxy address %r is not TYPE:value; ignored", dn, raw)
            continue
        proxies.append(Proxy(typed, primary=bool(colon) and kind.isupper()))
    target = None
    for raw in _text(lowered.get("targetaddress"))[:1]:
        try:
            target = parse_typed(raw)
        except AddressSyntaxError:
            log.warning("%s: targetAddress %r is not TYPE:value; ignored", dn, raw)
    mails = _text(lowered.get("mail"))
    mail = mails[0] if mails else None
    display = (_text(lowered.get("displayname")) or _text(lowered.get("cn")) or [""])[0]
    return HubEntry(dn=dn, mail=mail, display=display, proxies=tuple(proxies), target=target,
                    imported=bool(lowered.get("dirsyncsource")))


def choose_entry(what: str, entries: list[HubEntry]) -> HubEntry | None:
    """The one entry an address belongs to, when several hub entries claim it.

    One claimant: that entry. Several: the one the hub owns (no dirsync
    ownership marker), never one dirsync imported from a foreign system;
    when there is no such single entry, :class:`AmbiguousAddress` (temporary).
    """
    if not entries:
        return None
    if len(entries) == 1:
        return entries[0]
    entries = sorted(entries, key=lambda e: e.dn.lower())
    own = [e for e in entries if not e.imported]
    if len(own) == 1:
        log.warning("%d hub entries claim %s; using %s, the only one dirsync did not import",
                    len(entries), what, own[0].dn)
        return own[0]
    error = AmbiguousAddress(what, [e.dn for e in entries])
    log.warning("%s; mail to it is deferred (4.3.0) until one entry holds it", error)
    raise error


def x400_variants(value: str) -> list[str]:
    """The spellings of an O/R address worth asking the hub for: as given, canonical."""
    variants = [value]
    try:
        canonical = parse_or_address(value).to_semicolon()
    except ORAddressError:
        return variants
    if canonical.lower() != value.lower():
        variants.append(canonical)
    return variants


class LdapHub:
    """Lookups against the LDAP hub named by ``relay.hub``."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self._conn: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, HubEntry | AmbiguousAddress | None]] = \
            OrderedDict()
        self._cache_lock = threading.Lock()

    # -- connection ------------------------------------------------------
    def connect(self) -> None:
        """Open and bind now, so ``relay serve`` fails fast on a bad hub."""
        with self._lock:
            self._conn = self._open()

    def _open(self) -> Any:
        # The same connection set-up as every other LDAP directory of dirsync
        # (TLS verification, StartTLS, SASL EXTERNAL over ldapi, anonymous
        # bind without a DN), with the relay's own error classes.
        cfg = self.config
        directory = LDAPDirectory(
            cfg.url, name=cfg.name, base=cfg.base, bind_dn=cfg.bind_dn, password=cfg.password,
            tls=TLSOptions(ca_file=str(cfg.ca_file) if cfg.ca_file else None,
                           starttls=cfg.starttls),
            timeout=cfg.timeout)
        try:
            conn = directory.conn
        except TransientDirectoryError as exc:
            raise HubUnavailable(f"hub {cfg.name} ({cfg.url}) is not answering: "
                                 f"{_cause(exc)}") from None
        except DirsyncError as exc:
            raise HubRefused(f"hub {cfg.name} ({cfg.url}) refused the bind: "
                             f"{_cause(exc)}") from None
        conn.set_option(ldap.OPT_TIMEOUT, cfg.timeout)
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.unbind_s()
                except ldap.LDAPError:
                    pass
                self._conn = None

    def _search(self, filterstr: str) -> list[tuple[str, dict[str, list[bytes]]]]:
        # One reconnect on a dropped connection; a second failure is transient.
        for attempt in (1, 2):
            with self._lock:
                if self._conn is None:
                    self._conn = self._open()
                conn = self._conn
            try:
                result = conn.search_st(self.config.base, ldap.SCOPE_SUBTREE, filterstr,
                                        _ATTRS, timeout=self.config.timeout)
                return [(dn, attrs) for dn, attrs in result if dn]
            except (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.CONNECT_ERROR) as exc:
                with self._lock:
                    self._conn = None
                if attempt == 2:
                    raise HubUnavailable(f"hub {self.config.name} is not answering: "
                                         f"{_describe(exc)}") from None
            except ldap.NO_SUCH_OBJECT:
                raise HubRefused(f"hub base {self.config.base!r} does not exist") from None
        raise AssertionError("unreachable")

    # -- cache -----------------------------------------------------------
    def _cached(self, key: str, filterstr: str, what: str) -> HubEntry | None:
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(key)
                if isinstance(hit[1], AmbiguousAddress):
                    raise hit[1]
                return hit[1]
        results = self._search(filterstr)
        entry: HubEntry | AmbiguousAddress | None
        try:
            entry = choose_entry(what, [entry_from_ldap(dn, attrs) for dn, attrs in results])
        except AmbiguousAddress as exc:
            entry = exc
        with self._cache_lock:
            self._cache[key] = (now + self.config.cache_ttl, entry)
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        if isinstance(entry, AmbiguousAddress):
            raise entry
        return entry

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # -- lookups ---------------------------------------------------------
    def by_smtp(self, address: str) -> HubEntry | None:
        """The entry whose ``mail`` or SMTP proxy address is ``address``
        (:func:`choose_entry` decides between several; may raise
        :class:`AmbiguousAddress`)."""
        esc = ldap.filter.escape_filter_chars(address)
        return self._cached(f"smtp:{address.lower()}",
                            f"(|(mail={esc})(proxyAddresses=smtp:{esc}))", address)

    def by_address(self, address: TypedAddress, *, targets: bool = True) -> HubEntry | None:
        """The entry with this typed address as a proxy (or, with ``targets``, its target)."""
        if address.type == SMTP:
            return self.by_smtp(address.value)
        values = x400_variants(address.value) if address.type == X400 else [address.value]
        terms = []
        for value in values:
            esc = ldap.filter.escape_filter_chars(f"{address.type}:{value}")
            terms.append(f"(proxyAddresses={esc})")
            if targets:
                terms.append(f"(targetAddress={esc})")
        key = f"{'t' if targets else 'p'}:{address.type}:{values[-1].lower()}"
        return self._cached(key, f"(|{''.join(terms)})", str(address))


def _describe(exc: ldap.LDAPError) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("desc") or exc) + (f" ({info['info']})" if info.get("info") else "")
