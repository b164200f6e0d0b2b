"""Proxy addresses: typed addresses of a recipient, ``TYPE:value``.

An upper-case type marks the primary address of that type (one per type),
a lower-case type a secondary one (the seeds' recipient update service).
Every proxy address is unique in the hub: a generated address that is
taken gets a deterministic suffix (``2``, ``3``, ...) at the place where
that address type keeps its mailbox name, never a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Proxy:
    type: str      # upper-case, e.g. SMTP, X400, MS, NOTES, GWISE, CCMAIL
    address: str
    primary: bool

    def __str__(self) -> str:
        return f"{self.type if self.primary else self.type.lower()}:{self.address}"

    @property
    def key(self) -> str:
        """Identity for uniqueness: type and address, case-insensitive."""
        return f"{self.type}:{self.address}".casefold()


# TYPE:value. A type is a letter, then letters, digits or dashes (at most
# 32 in all): never an '@', so that an SMTP address is not read as typed.
TYPED = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,31}):(.+)$", re.DOTALL)


def parse(value: str) -> Proxy:
    """``SMTP:ted@contoso.com`` -> Proxy('SMTP', 'ted@contoso.com', primary=True)."""
    match = TYPED.match(value)
    if match is None:
        raise ValueError(f"not a proxy address (TYPE:value): {value!r}")
    kind, address = match.groups()
    return Proxy(kind.upper(), address, kind.isupper())


def of_type(values: Iterable[str], kind: str) -> list[Proxy]:
    kind = kind.upper()
    found = []
    for value in values:
        try:
            proxy = parse(value)
        except ValueError:
            continue
        if proxy.type == kind:
            found.append(proxy)
    return found


def primary(values: Iterable[str], kind: str) -> Proxy | None:
    return next((p for p in of_type(values, kind) if p.primary), None)


# Where each address type keeps the part a suffix goes on: the mailbox
# name, before the domain or after the post office.
_SUFFIX_AT = {
    "SMTP": re.compile(r"^(?P<head>[^@]+)(?P<tail>@.*)$"),
    "NOTES": re.compile(r"^(?P<head>[^@]+)(?P<tail>@.*)$"),
    "MS": re.compile(r"^(?P<head>.*/[^/]*)(?P<tail>)$"),           # NETWORK/PO/MAILBOX
    "GWISE": re.compile(r"^(?P<head>.*\.[^.]*)(?P<tail>)$"),       # DOMAIN.PO.USER
    "CCMAIL": re.compile(r"^(?P<head>.*?)(?P<tail> at .*)$", re.IGNORECASE),  # Last, First at PO
    "X400": re.compile(r"^(?P<head>.*\bs=[^;]*)(?P<tail>;.*)$", re.IGNORECASE),  # surname
}


def with_suffix(kind: str, address: str, n: int) -> str:
    """``address`` with the number ``n`` on its mailbox part."""
    pattern = _SUFFIX_AT.get(kind.upper())
    match = pattern.match(address) if pattern else None
    if not match:
        return f"{address}{n}"
    return f"{match.group('head')}{n}{match.group('tail')}"


def assign(existing: list[str], kind: str, candidate: str,
           taken: Callable[[str], bool], *, limit: int = 1000) -> list[str] | None:
    """The proxy addresses after giving the recipient one of type ``kind``.

    Returns None when it already has one of that type (existing addresses
    are kept as they are). Otherwise ``candidate`` (the mapping template's
    result) is added — primary, since there is none of that type yet —
    with the first numeric suffix that makes it unique when ``taken``
    (case-insensitive ``TYPE:address`` in the hub) says it is in use.
    """
    if of_type(existing, kind):
        return None
    kind = kind.upper()
    address = candidate
    n = 1
    while taken(f"{kind}:{address}"):
        n += 1
        if n > limit:
            raise ValueError(f"no free {kind} address near {candidate!r}")
        address = with_suffix(kind, candidate, n)
    return [*existing, str(Proxy(kind, address, primary=True))]


def normalize(values: Iterable[str]) -> list[str]:
    """One primary per type: later upper-case duplicates of a type become secondary."""
    seen: set[str] = set()
    out = []
    for value in values:
        try:
            proxy = parse(value)
        except ValueError:
            out.append(value)
            continue
        if proxy.primary:
            if proxy.type in seen:
                proxy = Proxy(proxy.type, proxy.address, primary=False)
            seen.add(proxy.type)
        out.append(str(proxy))
    return out
