"""Delivery to an SMTP next hop with the standard library's smtplib.

One connection per attempt: EHLO, STARTTLS as the hop's setting says, MAIL,
one RCPT per recipient, DATA. Each recipient gets its own outcome, so a hop
that refuses some recipients and takes the others is handled: refused with
5xx means failed, with 4xx deferred, and the others go on to DATA. When the
hop offers DSN (RFC 3461) the sender's NOTIFY, ORCPT, RET and ENVID are
passed on and the hop reports from then on; when it does not, the caller
reports "relayed" itself to recipients that asked for NOTIFY=SUCCESS.

What goes out is what was checked: the relay writes ``MAIL FROM:<...>`` and
``RCPT TO:<...>`` itself, with the address that passed
:func:`~dirsync.relay.paths.check_mailbox` just before, byte for byte.
smtplib's own ``mail()``/``rcpt()`` re-parse the address with
``email.utils.parseaddr``, which turns ``"x\rBcc: a@b"@c`` into another
address than the one checked. The message's line ends are made CRLF before
DATA, so the dot-stuffing smtplib does is complete and no bare CR or LF can
end the message early at a hop that reads them as line ends.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from dirsync.addresses.imcea import encode_imcea
from dirsync.addresses.x400 import ORAddressError
from dirsync.relay.addresses import TypedAddress
from dirsync.relay.config import SmtpHopConfig
from dirsync.relay.dsn import RecipientDsn, mail_options
from dirsync.relay.errors import Unmappable
from dirsync.relay.paths import PathSyntaxError, check_mailbox

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")
_LINE_END = re.compile(rb"\r\n|\r|\n")


def crlf_lines(content: bytes) -> bytes:
    """``content`` with every line end (CRLF, bare CR, bare LF) written as CRLF."""
    return _LINE_END.sub(b"\r\n", content)


@dataclass(frozen=True)
class OutRecipient:
    """A recipient as the hop will see it, with the DSN request to pass on."""

    address: str
    dsn: RecipientDsn
    original: str  # the address the relay received, for a default ORCPT


@dataclass(frozen=True)
class Outcome:
    """What became of one recipient at a hop."""

    state: str  # ok | deferred | failed
    status: str
    diagnostic: str | None = None
    remote_mta: str | None = None
    dsn_passed: bool = False  # the hop took the DSN request over

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def _reply_text(message: bytes | str) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    return " ".join(message.split())


def outcome_for(code: int, message: bytes | str, host: str, *,
                dsn_passed: bool = False) -> Outcome:
    """Turn an SMTP reply into an outcome with an RFC 3463 status."""
    text = _reply_text(message)
    match = _ENHANCED.match(text)
    klass = str(code)[0] if 200 <= code < 600 else "4"
    status = match.group(1) if match and match.group(1)[0] == klass else f"{klass}.0.0"
    state = {"2": "ok", "4": "deferred", "5": "failed"}.get(klass, "deferred")
    return Outcome(state, status, f"smtp; {code} {text}".strip(), f"dns; {host}", dsn_passed)


class SmtpHop:
    """An SMTP next hop."""

    kind = "smtp"

    def __init__(self, config: SmtpHopConfig, helo: str, imcea_domain: str) -> None:
        self.config = config
        self.name = config.name
        self.helo = helo
        self.imcea_domain = imcea_domain

    def recipient_form(self, address: TypedAddress) -> str:
        """The envelope address a recipient gets here: SMTP as is, any other
        type IMCEA-encapsulated at the hop's ``domain`` (the foreign system's
        SMTP gateway decodes it)."""
        if address.is_smtp:
            return address.value
        if not self.config.domain:
            raise Unmappable(f"{address} cannot reach SMTP hop {self.name}: it has no domain "
                             "for encapsulated addresses")
        return self._encapsulate(address, self.config.domain)

    def sender_form(self, address: TypedAddress) -> str:
        """The MAIL FROM address: SMTP as is, a foreign address encapsulated at
        the relay's own IMCEA domain, so that replies come back through it."""
        if address.is_smtp:
            return address.value
        return self._encapsulate(address, self.imcea_domain)

    @staticmethod
    def _encapsulate(address: TypedAddress, domain: str) -> str:
        try:
            value = address.canonical()
        except ORAddressError as exc:
            raise Unmappable(f"{address}: {exc}", "5.1.3") from None
        return encode_imcea(address.type, value, domain)

    def _tls_context(self) -> ssl.SSLContext:
        if self.config.starttls == "required":
            ctx = ssl.create_default_context(cafile=str(self.config.ca_file)
                                             if self.config.ca_file else None)
        else:
            # Opportunistic TLS protects against passive listeners only; a
            # hop that cannot prove its name is still better encrypted.
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def deliver(self, sender: str, recipients: Sequence[OutRecipient], content: bytes, *,
                ret: str | None = None, envid: str | None = None, body8bit: bool = False,
                smtputf8: bool = False) -> list[Outcome]:
        """One delivery attempt; never raises for the hop's own failures."""
        cfg = self.config
        host = cfg.host
        try:
            with smtplib.SMTP(cfg.host, cfg.port, local_hostname=self.helo,
                              timeout=cfg.timeout) as client:
                return self._session(client, sender, recipients, content, ret=ret,
                                     envid=envid, body8bit=body8bit, smtputf8=smtputf8)
        except smtplib.SMTPServerDisconnected as exc:
            return [Outcome("deferred", "4.4.2", f"x-unix; connection to {host} lost: {exc}",
                            f"dns; {host}")] * len(recipients)
        except (smtplib.SMTPException, OSError) as exc:
            reason = "timed out" if isinstance(exc, socket.timeout) else str(exc) or type(exc).__name__
            return [Outcome("deferred", "4.4.1",
                            f"x-unix; cannot talk to {host}:{cfg.port}: {reason}",
                            f"dns; {host}")] * len(recipients)

    def _session(self, client: smtplib.SMTP, sender: str, recipients: Sequence[OutRecipient],
                 content: bytes, *, ret: str | None, envid: str | None, body8bit: bool,
                 smtputf8: bool) -> list[Outcome]:
        host = self.config.host
        content = crlf_lines(content)
        client.ehlo_or_helo_if_needed()
        if self.config.starttls != "off" and client.has_extn("starttls"):
            client.starttls(context=self._tls_context())
            client.ehlo()
        elif self.config.starttls == "required":
            return [Outcome("deferred", "4.7.0", f"x-unix; {host} does not offer STARTTLS",
                            f"dns; {host}")] * len(recipients)
        if smtputf8 and not client.has_extn("smtputf8"):
            return [Outcome("failed", "5.6.7", f"x-unix; {host} does not offer SMTPUTF8",
                            f"dns; {host}")] * len(recipients)
        dsn = client.has_extn("dsn")
        options = []
        if client.has_extn("size"):
            options.append(f"SIZE={len(content)}")
        if body8bit and client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if smtputf8:
            options.append("SMTPUTF8")
        if dsn:
            options += mail_options(ret, envid)
        try:
            if sender:
                check_mailbox(sender, utf8=smtputf8)
        except PathSyntaxError as exc:
            client.rset()
            return [Outcome("failed", "5.1.7", f"x-local; bad sender address: {exc}",
                            f"dns; {host}")] * len(recipients)
        if smtputf8:
            client.command_encoding = "utf-8"
        code, message = client.docmd("MAIL", f"FROM:<{sender}>" + "".join(
            f" {o}" for o in options))
        if code != 250:
            outcome = outcome_for(code, message, host)
            client.rset()
            return [outcome] * len(recipients)
        outcomes: list[Outcome | None] = []
        for rcpt in recipients:
            try:
                check_mailbox(rcpt.address, utf8=smtputf8)
            except PathSyntaxError as exc:
                outcomes.append(Outcome("failed", "5.1.3", f"x-local; bad recipient address: "
                                        f"{exc}", f"dns; {host}"))
                continue
            rcpt_options: list[str] = []
            if dsn:
                request = rcpt.dsn
                if request.orcpt is None:
                    request = RecipientDsn(request.notify, ("rfc822", rcpt.original))
                rcpt_options = request.rcpt_options()
            code, message = client.docmd("RCPT", f"TO:<{rcpt.address}>" + "".join(
                f" {o}" for o in rcpt_options))
            outcomes.append(None if code in (250, 251) else outcome_for(code, message, host))
        if all(o is not None for o in outcomes):
            client.rset()
            return [o for o in outcomes if o is not None]
        reply: bytes | str
        try:
            code, reply = client.data(content)
        except smtplib.SMTPDataError as exc:
            code, reply = exc.smtp_code, exc.smtp_error
        final = outcome_for(code, reply, host, dsn_passed=dsn)
        return [o if o is not None else final for o in outcomes]
