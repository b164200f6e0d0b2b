"""X.400 gateway queue folders: one message per file, the X.400 envelope as RFC 2156 headers.

Outbound, the relay writes each message for an X.400 hop as one file in the
hop's folder; inbound, a pickup folder holds files of the same kind written
by the gateway. A file is an RFC 822 message whose header starts with the
envelope fields of RFC 2156 section 5.3 (written here with the O/R
addresses in their ``std-or-address`` form)::

    X400-Received: by mta "relay.example.org" in /C=US/ADMD= /PRMD=Contoso/;
            Relayed; Sat, 21 Nov 2026 14:31:12 GMT
    X400-MTS-Identifier: [/C=US/ADMD= /PRMD=Contoso/;18a3f...]
    X400-Originator: /G=Ted/S=Bremer/O=SiteA/PRMD=Contoso/ADMD= /C=US/
    X400-Recipients: /G=Bob/S=Jones/O=SiteB/PRMD=Contoso/ADMD= /C=US/
    X400-Content-Type: P2-1988 (22)
    ...the message as received...

Files are written under a dot-prefixed temporary name, fsynced, renamed
into place and the folder fsynced, so a reader never sees half a file; a
reader ignores dot files. Commas inside O/R values in ``X400-Recipients``
are quoted with ``$``. A message without ``X400-Originator`` has the null
originator (it is a delivery report).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dirsync.addresses.x400 import (
    UB_DDA_TYPE,
    UB_DDA_VALUE,
    MappingTables,
    ORAddress,
    ORAddressError,
    encode_printable,
    parse_or_address,
    rfc822_to_x400,
)
from dirsync.errors import InputError
from dirsync.relay.addresses import X400, AddressSyntaxError, TypedAddress, parse_any
from dirsync.relay.errors import Unmappable
from dirsync.relay.message import count_trace, header_fields
from dirsync.relay.reports import rfc822_date
from dirsync.relay.smtp_hop import Outcome

CONTENT_TYPE = "P2-1988 (22)"  # RFC 2156: interpersonal messaging, 1988
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$")


class GatewayFileError(InputError):
    """A pickup file without the X.400 envelope the relay needs."""


def _word(text: str) -> str:
    return text if _ATOM.match(text) else '"' + text.replace('"', '\\"') + '"'


def x400_received(mta: str, global_domain: ORAddress, when: float,
                  action: str = "Relayed") -> str:
    """An ``X400-Received`` trace value (RFC 2156 section 5.3.7 ``x400-trace``)."""
    return f"by mta {_word(mta)} in {global_domain.global_domain()}; {action}; {rfc822_date(when)}"


def mts_identifier(global_domain: ORAddress, local: str) -> str:
    """An ``X400-MTS-Identifier`` value: ``[global-id;local-id]`` (RFC 2156 section 5.3.1)."""
    return f"[{global_domain.global_domain()};{local}]"


def _recipient_list(addresses: Sequence[ORAddress]) -> str:
    # Quote commas so the list splits back unambiguously; fold one per line.
    return ",\r\n\t".join(a.to_std().replace(",", "$,") for a in addresses)


def file_name(queue_id: str, recipients: Sequence[ORAddress]) -> str:
    """A name that is the same for the same message and recipients, so a
    retry after a crash replaces the file instead of adding a second copy."""
    digest = hashlib.sha1("\n".join(r.to_std() for r in recipients).lower().encode())
    return f"{queue_id}-{digest.hexdigest()[:10]}.eml"


def write_gateway_message(folder: Path, *, queue_id: str, originator: ORAddress | None,
                          recipients: Sequence[ORAddress], content: bytes, mta: str,
                          global_domain: ORAddress, when: float) -> Path:
    """Write one message into an X.400 gateway queue folder, atomically and durably."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = [
        ("X400-Received", x400_received(mta, global_domain, when)),
        ("X400-MTS-Identifier", mts_identifier(global_domain, queue_id)),
    ]
    if originator is not None:
        fields.append(("X400-Originator", originator.to_std()))
    fields += [
        ("X400-Recipients", _recipient_list(recipients)),
        ("X400-Content-Type", CONTENT_TYPE),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in fields).encode("ascii")
    name = file_name(queue_id, recipients)
    final = folder / name
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


@dataclass(frozen=True)
class GatewayMessage:
    """A message read from a pickup folder."""

    path: Path
    originator: TypedAddress | None
    recipients: tuple[TypedAddress, ...]
    mts_id: str | None
    hops: int
    content: bytes


def _split_recipients(value: str) -> list[str]:
    out, current, it = [], [], iter(value)
    for ch in it:
        if ch == "$":
            current.append(ch + (next(it, "")))
        elif ch == ",":
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return [item.replace("$,", ",").strip() for item in out if item.strip()]


def _x400_address(text: str, where: str, path: Path) -> TypedAddress:
    """An O/R address in any textual form, ``X400:...``, or a one-off address."""
    text = text.strip()
    try:
        return TypedAddress(X400, parse_or_address(text).to_semicolon())
    except ORAddressError:
        pass
    try:
        typed = parse_any(text)
        if typed.type == X400:
            parse_or_address(typed.value)
        return typed
    except (AddressSyntaxError, ORAddressError) as exc:
        raise GatewayFileError(f"{where}: {exc}", path=str(path), field=where) from None


def read_gateway_message(path: Path) -> GatewayMessage:
    """Read a pickup file: the envelope from its X400 fields, and the whole content."""
    content = path.read_bytes()
    fields = header_fields(content)
    values: dict[str, list[str]] = {}
    for name, value in fields:
        values.setdefault(name.lower(), []).append(value)
    recipients_raw = values.get("x400-recipients")
    if not recipients_raw:
        raise GatewayFileError("no X400-Recipients field", path=str(path),
                               field="X400-Recipients")
    recipients = tuple(_x400_address(item, "X400-Recipients", path)
                       for raw in recipients_raw for item in _split_recipients(raw))
    if not recipients:
        raise GatewayFileError("X400-Recipients is empty", path=str(path),
                               field="X400-Recipients")
    originator_raw = values.get("x400-originator")
    originator = (_x400_address(originator_raw[0], "X400-Originator", path)
                  if originator_raw and originator_raw[0] else None)
    mts = values.get("x400-mts-identifier")
    return GatewayMessage(path=path, originator=originator, recipients=recipients,
                          mts_id=mts[0] if mts else None, hops=count_trace(content),
                          content=content)


class X400Hop:
    """A next hop that is an X.400 gateway queue folder."""

    kind = "x400"

    def __init__(self, name: str, folder: Path, *, mta: str, global_domain: ORAddress,
                 tables: MappingTables) -> None:
        self.name = name
        self.folder = folder
        self.mta = mta
        self.global_domain = global_domain
        self.tables = tables

    def recipient_form(self, address: TypedAddress) -> ORAddress:
        """The O/R address a recipient gets here (raises :class:`Unmappable`).

        X.400 addresses are themselves; SMTP addresses are mapped by RFC 2156
        (tables, else ``DDA:RFC-822`` at the gateway); any other type travels
        as a domain-defined attribute of its own type at the gateway.
        """
        if address.type == X400:
            try:
                return parse_or_address(address.value)
            except ORAddressError as exc:
                raise Unmappable(f"{address}: {exc}", "5.1.3") from None
        if address.is_smtp:
            try:
                return rfc822_to_x400(address.value, self.tables)
            except ORAddressError as exc:
                raise Unmappable(f"{address.value} has no X.400 form: {exc}") from None
        if self.tables.gateway is None:
            raise Unmappable(f"{address} has no X.400 form (no relay.x400.gateway)")
        try:
            value = encode_printable(address.value)
        except ORAddressError as exc:
            raise Unmappable(f"{address} has no X.400 form: {exc}") from None
        if len(value) > UB_DDA_VALUE or len(address.type) > UB_DDA_TYPE:
            raise Unmappable(f"{address} is too long for a domain-defined attribute")
        return replace(self.tables.gateway, dda=((address.type, value),))

    def sender_form(self, address: TypedAddress) -> ORAddress | None:
        if address.is_smtp and not address.value:
            return None
        return self.recipient_form(address)

    def deliver(self, originator: ORAddress | None, recipients: Sequence[ORAddress],
                content: bytes, *, queue_id: str) -> list[Outcome]:
        try:
            path = write_gateway_message(
                self.folder, queue_id=queue_id, originator=originator, recipients=recipients,
                content=content, mta=self.mta, global_domain=self.global_domain,
                when=time.time())
        except OSError as exc:
            return [Outcome("deferred", "4.3.0", f"x-local; cannot write to {self.folder}: "
                                                 f"{exc.strerror or exc}")] * len(recipients)
        return [Outcome("ok", "2.0.0", f"x-local; queued as {path.name}")] * len(recipients)
