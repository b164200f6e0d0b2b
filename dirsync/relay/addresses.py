"""Typed addresses (``TYPE:value``) and the address forms the relay reads.

A typed address is what a proxy address or a target address holds:
``SMTP:ted@example.org``, ``X400:c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;``,
``MS:MICROSOFT/PO1/TEDB``. The type is compared upper-case; in the hub an
upper-case type marks the primary address of that type and a lower-case one
a secondary address.
"""

from __future__ import annotations

from dataclasses import dataclass

from dirsync.addresses.imcea import EncapsulationError, parse_one_off
from dirsync.addresses.proxy import TYPED
from dirsync.addresses.proxy import parse as parse_proxy
from dirsync.addresses.x400 import parse_or_address
from dirsync.errors import InputError

SMTP = "SMTP"
X400 = "X400"


class AddressSyntaxError(InputError):
    """Text that is none of the address forms the relay reads."""


@dataclass(frozen=True)
class TypedAddress:
    """An address of one type; ``display`` is an optional display name."""

    type: str
    value: str
    display: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", self.type.upper())

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @property
    def is_smtp(self) -> bool:
        return self.type == SMTP

    def one_off(self) -> str:
        """The MAPI one-off form ``Display Name[TYPE:address]``."""
        return f"{self.display}[{self.type}:{self.value}]"

    def canonical(self) -> str:
        """The value in the form address spaces and the hub compare.

        X.400 addresses print in the semicolon form whatever form they came
        in; SMTP domains are lower-cased (the local part may be case-exact).
        """
        if self.type == X400:
            return parse_or_address(self.value).to_semicolon()
        if self.type == SMTP:
            local, at, domain = self.value.rpartition("@")
            return f"{local}@{domain.lower()}" if at else self.value
        return self.value


def parse_typed(text: str) -> TypedAddress:
    """Read ``TYPE:value`` (as stored in proxyAddresses and targetAddress),
    by the rule the hub's proxy addresses are read with (dirsync.addresses.proxy)."""
    try:
        proxy = parse_proxy(text.strip())
    except ValueError:
        raise AddressSyntaxError(f"{text!r} is not a typed address (TYPE:value)") from None
    return TypedAddress(proxy.type, proxy.address)


def parse_any(text: str) -> TypedAddress:
    """Read any address form a person may type: one-off, ``TYPE:value``, O/R, SMTP.

    * ``Display Name[TYPE:address]`` -- a one-off address;
    * ``TYPE:value`` -- a typed address (the type has no ``@``);
    * ``/G=.../C=US/`` -- an X.400 O/R address in the slash form;
    * ``local@domain`` -- an SMTP address (IMCEA addresses stay SMTP here:
      the translator decides whether their domain is ours to decode).
    """
    stripped = text.strip()
    if stripped.endswith("]") and "[" in stripped:
        try:
            one_off = parse_one_off(stripped)
        except EncapsulationError:
            pass
        else:
            return TypedAddress(one_off.addr_type, one_off.address, one_off.display)
    if stripped.startswith("/"):
        parse_or_address(stripped)
        return TypedAddress(X400, stripped)
    if stripped.startswith("<") and stripped.endswith(">"):
        stripped = stripped[1:-1]
    match = TYPED.match(stripped)
    if match is not None and not stripped.startswith('"'):
        return TypedAddress(match.group(1), match.group(2))
    if "@" in stripped:
        return TypedAddress(SMTP, stripped)
    raise AddressSyntaxError(f"{text!r} is not an address (SMTP, TYPE:value, one-off or O/R)")


def split_smtp(address: str) -> tuple[str, str]:
    """Local part and lower-cased domain, split at the last ``@``."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressSyntaxError(f"{address!r} is not an SMTP address")
    return local, domain.lower()
