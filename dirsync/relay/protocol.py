"""aiosmtpd's SMTP protocol with RFC 3461 delivery status notifications.

aiosmtpd 1.4 answers 555 to every MAIL or RCPT parameter it does not know,
before any handler hook runs, and upper-cases parameter values (ENVID and
ORCPT are case-sensitive xtext). :class:`DsnSMTP` replaces its MAIL and
RCPT commands with versions that read SIZE, BODY, SMTPUTF8, AUTH and the
DSN parameters RET, ENVID (MAIL) and NOTIFY, ORCPT (RCPT), advertises
``DSN`` in the EHLO reply, accepts the null reverse-path ``<>``, and turns an
exception in a hook into ``451 4.3.0`` (a temporary failure the client
retries) rather than aiosmtpd's permanent 500.

Paths are read by :mod:`.paths`, not by aiosmtpd's lenient ``_getaddr``
(which takes ``<dave@example.org`` and ``<dave example.org>``): a bad sender
is ``501 5.1.7``, a bad recipient ``501 5.1.3``, and the handler only ever
sees an address that passed. HELO/EHLO names with spaces or control
characters are refused too, since they are written into ``Received:``.

The division of labour: hooks only decide, by returning a reply; the
protocol records what a 2xx reply accepted. ``handle_MAIL`` and
``handle_RCPT`` therefore must not touch ``envelope.mail_from`` or
``envelope.rcpt_tos`` themselves. The parsed parameters are on the envelope
(:class:`DsnEnvelope`) when the hook runs: ``envelope.pending_dsn`` for the
recipient being decided.

This module uses aiosmtpd 1.4 internals (``_handle_hooks``,
``_ehlo_hook_ver``, ``_call_handler_hook``); the dependency
is pinned to 1.4.x for that reason.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax

from dirsync.relay.dsn import (
    DsnSyntaxError,
    RecipientDsn,
    parse_envid,
    parse_notify,
    parse_orcpt,
    parse_ret,
)
from dirsync.relay.paths import NeedsSmtpUtf8, PathSyntaxError, is_hostname, split_path

log = logging.getLogger("dirsync.relay.smtp")

TEMPFAIL = "451 4.3.0 Error: try again later"
_PARAM_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?$")


class DsnEnvelope(Envelope):
    """An aiosmtpd envelope plus the RFC 3461 parameters of MAIL and each RCPT."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_given = False  # mail_from is "" for <>, so it cannot tell
        self.ret: str | None = None
        self.envid: str | None = None
        self.body: str | None = None
        self.size: int | None = None
        self.rcpt_dsn: list[RecipientDsn] = []
        self.pending_dsn: RecipientDsn | None = None


def parse_params(text: str) -> dict[str, str | bool] | None:
    """ESMTP parameters (RFC 5321 section 4.1.2 ``esmtp-param``), keys upper-cased,
    values kept as written; None when malformed or a keyword repeats."""
    params: dict[str, str | bool] = {}
    for word in text.split():
        match = _PARAM_RE.match(word)
        if match is None:
            return None
        key = match.group(1).upper()
        if key in params:
            return None
        params[key] = match.group(2) if match.group(2) is not None else True
    return params


class DsnSMTP(SMTP):
    """SMTP with DSN (RFC 3461) and a null reverse-path; see the module docstring."""

    def __init__(self, handler: Any, *, postmaster: str | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # RFC 5321 section 4.5.1: <Postmaster> without a domain reaches this address.
        self.postmaster = postmaster
        inner = self._handle_hooks.get("EHLO")
        if inner is not None and self._ehlo_hook_ver != "new":
            raise RuntimeError("DsnSMTP needs the 5-argument handle_EHLO hook")

        async def ehlo_hook(server: Any, session: Any, envelope: Any, hostname: str,
                            responses: list[str]) -> list[str]:
            if inner is not None:
                responses = await inner(server, session, envelope, hostname, responses)
            else:
                session.host_name = hostname
            # No AUTH line without mechanisms (a relay without a users file).
            responses = [r for r in responses if r.strip() != "250-AUTH"]
            # RFC 3461 section 4: advertise DSN; the last line stays last.
            return [*responses[:-1], "250-DSN", responses[-1]]

        self._handle_hooks["EHLO"] = ehlo_hook
        self._ehlo_hook_ver = "new"

    def _create_envelope(self) -> DsnEnvelope:
        return DsnEnvelope()

    async def handle_exception(self, error: Exception) -> str:
        """A failed hook is a temporary failure (451 4.3.0): the client retries."""
        if hasattr(self.event_handler, "handle_exception"):
            status = await self.event_handler.handle_exception(error)
            return str(status)
        peer = self.session.peer if self.session else None
        log.error("%r: error in an SMTP hook: %s", peer, error, exc_info=error)
        return TEMPFAIL

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        if hostname and not is_hostname(hostname):
            await self.push("501 5.5.4 Syntax: EHLO hostname (a domain or an address literal)")
            return
        await super().smtp_EHLO(hostname)  # type: ignore[arg-type]

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str | None) -> None:
        if hostname and not is_hostname(hostname):
            await self.push("501 5.5.4 Syntax: HELO hostname (a domain or an address literal)")
            return
        await super().smtp_HELO(hostname)  # type: ignore[arg-type]

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """MAIL FROM (RFC 5321 section 4.1.1.2) with RET and ENVID (RFC 3461 sections 4.3, 4.4)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("MAIL"):
            return
        assert self.session is not None and self.envelope is not None
        env = self.envelope
        assert isinstance(env, DsnEnvelope)
        syntaxerr = "501 5.5.4 Syntax: MAIL FROM:<address> [SP <mail-parameters>]"
        if arg is None or arg[:5].upper() != "FROM:":
            await self.push(syntaxerr)
            return
        if env.mail_given:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        try:
            # The path's syntax depends on SMTPUTF8, a parameter after it:
            # read the structure with UTF-8 allowed, then hold it to the rule.
            address, rest = split_path(arg[5:], utf8=True, null=True)
            params = parse_params(rest)
            utf8 = params is not None and "SMTPUTF8" in params and self.enable_SMTPUTF8
            if not utf8:
                split_path(arg[5:], utf8=False, null=True)
        except NeedsSmtpUtf8:
            await self.push("553 5.6.7 Non-ASCII sender address without SMTPUTF8")
            return
        except PathSyntaxError as exc:
            log.info("%r: refused MAIL FROM: %s", self.session.peer, exc)
            await self.push("501 5.1.7 Bad sender address syntax")
            return
        if rest.strip() and not self.session.extended_smtp:
            await self.push(syntaxerr)
            return
        if params is None:
            await self.push(syntaxerr)
            return
        try:
            body = params.pop("BODY", None)
            if body is not None:
                if not isinstance(body, str) or body.upper() not in ("7BIT", "8BITMIME"):
                    raise DsnSyntaxError("BODY must be 7BIT or 8BITMIME")
                body = body.upper()
            smtputf8 = params.pop("SMTPUTF8", False)
            if smtputf8 is not False and (smtputf8 is not True or not self.enable_SMTPUTF8):
                raise DsnSyntaxError("SMTPUTF8 takes no value and must be enabled")
            size = params.pop("SIZE", None)
            if size is not None and (not isinstance(size, str) or not size.isdigit()):
                raise DsnSyntaxError("SIZE must be a number")
            ret = params.pop("RET", None)
            ret = parse_ret(ret) if isinstance(ret, str) else ret
            envid = params.pop("ENVID", None)
            envid = parse_envid(envid) if isinstance(envid, str) else envid
            if ret is True or envid is True:
                raise DsnSyntaxError("RET and ENVID need a value")
            params.pop("AUTH", None)  # RFC 4954 section 5: a hint we may ignore
        except DsnSyntaxError as exc:
            await self.push(f"501 5.5.4 {exc.message}")
            return
        if params:
            await self.push("555 5.5.4 MAIL FROM parameters not recognized or not "
                            f"implemented: {', '.join(sorted(params))}")
            return
        if size is not None and self.data_size_limit and int(size) > self.data_size_limit:
            await self.push("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        options = rest.split()
        status = await self._call_handler_hook("MAIL", address, options)
        if status is MISSING:
            status = "250 2.1.0 Sender OK"
        if str(status).startswith("2"):
            env.mail_from = address
            env.mail_options = options
            env.mail_given = True
            env.smtp_utf8 = bool(smtputf8)
            env.body = body
            env.size = int(size) if size is not None else None
            env.ret = ret if isinstance(ret, str) else None
            env.envid = envid if isinstance(envid, str) else None
        await self.push(status)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """RCPT TO (RFC 5321 section 4.1.1.3) with NOTIFY and ORCPT (RFC 3461 sections 4.1, 4.2)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("RCPT"):
            return
        assert self.session is not None and self.envelope is not None
        env = self.envelope
        assert isinstance(env, DsnEnvelope)
        if not env.mail_given:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        syntaxerr = "501 5.5.4 Syntax: RCPT TO:<address> [SP <mail-parameters>]"
        if arg is None or arg[:3].upper() != "TO:":
            await self.push(syntaxerr)
            return
        try:
            address, rest = split_path(arg[3:], utf8=env.smtp_utf8, postmaster=True)
        except NeedsSmtpUtf8:
            await self.push("553 5.6.7 Non-ASCII recipient address without SMTPUTF8")
            return
        except PathSyntaxError as exc:
            log.info("%r: refused RCPT TO: %s", self.session.peer, exc)
            await self.push("501 5.1.3 Bad recipient address syntax")
            return
        if "@" not in address:  # the bare <Postmaster> split_path lets through
            if self.postmaster is None:
                await self.push("550 5.1.1 <postmaster>: no postmaster here")
                return
            address = self.postmaster
        if rest.strip() and not self.session.extended_smtp:
            await self.push(syntaxerr)
            return
        params = parse_params(rest)
        if params is None:
            await self.push(syntaxerr)
            return
        try:
            notify = params.pop("NOTIFY", None)
            orcpt = params.pop("ORCPT", None)
            if notify is True or orcpt is True:
                raise DsnSyntaxError("NOTIFY and ORCPT need a value")
            dsn = RecipientDsn(parse_notify(notify) if isinstance(notify, str) else None,
                               parse_orcpt(orcpt) if isinstance(orcpt, str) else None)
        except DsnSyntaxError as exc:
            await self.push(f"501 5.5.4 {exc.message}")
            return
        if params:
            await self.push("555 5.5.4 RCPT TO parameters not recognized or not "
                            f"implemented: {', '.join(sorted(params))}")
            return
        options = rest.split()
        env.pending_dsn = dsn
        status = await self._call_handler_hook("RCPT", address, options)
        env.pending_dsn = None
        if status is MISSING:
            status = "250 2.1.5 Recipient OK"
        if str(status).startswith("2"):
            env.rcpt_tos.append(address)
            env.rcpt_options.extend(options)
            env.rcpt_dsn.append(dsn)
        await self.push(status)
