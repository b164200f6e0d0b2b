"""Foreign addresses inside other address forms: IMCEA encapsulation and one-off addresses.

Pure functions, no I/O.

*IMCEA encapsulation* (MS-OXCMAIL section 2.1.3.1.8) carries an address of
any type in an SMTP address: ``IMCEA<TYPE>-<encoded>@<domain>``. In the
encoded part letters, digits, ``-`` and ``=`` stand for themselves, ``/``
becomes ``_``, and every other byte of the UTF-8 address is ``+HH``
(upper-case hex). The address is split at its *last* ``@``, because the
encapsulated address may hold ``@`` itself (encoded, but decoders must not
depend on it)::

    X400:c=US;a= ;p=MS;o=PARIS;s=user;  at host.microsoft.com
    IMCEAX400-c=US+3Ba=+20+3Bp=MS+3Bo=PARIS+3Bs=user+3B@host.microsoft.com

A *one-off address* is the MAPI form of an address that has no directory
entry and is used for one message only: ``Display Name[TYPE:address]``, for
example ``Ted Bremer[NOTES:Ted@Exchange]``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from dirsync.errors import InputError

__all__ = [
    "Encapsulated",
    "EncapsulationError",
    "OneOff",
    "decode_imcea",
    "encode_imcea",
    "format_one_off",
    "is_imcea",
    "parse_one_off",
]


class EncapsulationError(InputError):
    """An IMCEA or one-off address that cannot be read or written."""


_PASS = frozenset(string.ascii_letters + string.digits + "-=")
_TYPE_RE = re.compile(r"^[A-Za-z0-9]+$")
_ONE_OFF_RE = re.compile(r"^(?P<display>.*?)\[(?P<type>[A-Za-z0-9][A-Za-z0-9-]*):"
                         r"(?P<address>.+)\]\s*$", re.DOTALL)


@dataclass(frozen=True)
class Encapsulated:
    """What an IMCEA address holds: the foreign address type and value, and the domain."""

    addr_type: str
    address: str
    domain: str


def _check_type(addr_type: str) -> str:
    if not _TYPE_RE.match(addr_type):
        raise EncapsulationError(f"address type {addr_type!r} must be letters and digits")
    return addr_type.upper()


def encode_imcea(addr_type: str, address: str, domain: str) -> str:
    """Encapsulate ``TYPE:address`` in an SMTP address at ``domain`` (MS-OXCMAIL 2.1.3.1.8)."""
    kind = _check_type(addr_type)
    if not address:
        raise EncapsulationError("cannot encapsulate an empty address")
    if not domain or "@" in domain:
        raise EncapsulationError(f"{domain!r} is not a domain for encapsulated addresses")
    out: list[str] = []
    for byte in address.encode("utf-8"):
        ch = chr(byte)
        if ch in _PASS:
            out.append(ch)
        elif ch == "/":
            out.append("_")
        else:
            out.append(f"+{byte:02X}")
    return f"IMCEA{kind}-{''.join(out)}@{domain}"


def is_imcea(address: str) -> bool:
    """True when the local part (before the last ``@``) has the ``IMCEA<TYPE>-`` form."""
    local, at, _ = address.rpartition("@")
    return bool(at) and re.match(r"^IMCEA[A-Za-z0-9]+-", local, re.IGNORECASE) is not None


def decode_imcea(address: str) -> Encapsulated:
    """Read an IMCEA address back into type, address and domain (MS-OXCMAIL 2.1.3.1.8).

    Raises :class:`EncapsulationError` when the address is not of the form
    ``IMCEA<TYPE>-<encoded>@<domain>``, a ``+`` is not followed by two hex
    digits, or the bytes are not UTF-8.
    """
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        raise EncapsulationError(f"{address!r} has no domain")
    if not local[:5].upper() == "IMCEA":
        raise EncapsulationError(f"{address!r} is not an IMCEA address")
    kind, dash, encoded = local[5:].partition("-")
    if not dash or not kind:
        raise EncapsulationError(f"{address!r}: expected IMCEA<TYPE>-<address>")
    kind = _check_type(kind)
    if not encoded:
        raise EncapsulationError(f"{address!r}: the encapsulated address is empty")
    raw = bytearray()
    i = 0
    while i < len(encoded):
        ch = encoded[i]
        if ch == "+":
            pair = encoded[i + 1:i + 3]
            if len(pair) != 2 or not all(c in string.hexdigits for c in pair):
                raise EncapsulationError(f"{address!r}: '+' at {i} is not followed by two "
                                         "hex digits")
            raw.append(int(pair, 16))
            i += 3
            continue
        if ch == "_":
            raw.append(ord("/"))
        elif ord(ch) < 128:
            raw.append(ord(ch))
        else:
            raise EncapsulationError(f"{address!r}: {ch!r} cannot appear in an IMCEA address")
        i += 1
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncapsulationError(f"{address!r}: the encapsulated address is not UTF-8") from exc
    return Encapsulated(kind, value, domain)


@dataclass(frozen=True)
class OneOff:
    """A one-off address ``Display Name[TYPE:address]``."""

    display: str
    addr_type: str
    address: str

    def __str__(self) -> str:
        return format_one_off(self.display, self.addr_type, self.address)


def parse_one_off(text: str) -> OneOff:
    """Read ``Display Name[TYPE:address]``; the display name may be empty.

    The address is what lies between the first ``[TYPE:`` the rest of the
    text can close and the final ``]``, so a display name may hold brackets.
    """
    match = _ONE_OFF_RE.match(text.strip())
    if match is None:
        raise EncapsulationError(f"{text!r} is not a one-off address (Display Name[TYPE:address])")
    return OneOff(match["display"].strip(), match["type"].upper(), match["address"])


def format_one_off(display: str, addr_type: str, address: str) -> str:
    """Write ``Display Name[TYPE:address]``."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9-]*$", addr_type):
        raise EncapsulationError(f"address type {addr_type!r} is not valid in a one-off address")
    if not address:
        raise EncapsulationError("a one-off address needs an address")
    return f"{display.strip()}[{addr_type.upper()}:{address}]"
