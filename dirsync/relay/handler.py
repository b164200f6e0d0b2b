"""The relay's SMTP handler: answers hooks with reply codes, queues what it accepts.

It implements only the hooks it needs (STYLE.md item 9):

* ``handle_RCPT`` -- takes a recipient only if it is known to the hub or
  inside a configured address space; everything else is refused, so the
  relay is never an open relay;
* ``handle_DATA`` -- refuses data with a bare CR or LF (SMTP smuggling: see
  below), adds the trace header, writes the message to the queue (fsynced,
  file and folder) and only then answers 250;
* ``handle_exception`` -- any error in a hook is ``451 4.3.0``: the client
  keeps the message and tries again, nothing is lost or bounced.

aiosmtpd 1.4 ends DATA only at ``<CRLF>.<CRLF>``: it splits the data at CRLF,
so ``<LF>.<LF>``, ``<CR>.<CR>``, ``<CRLF>.<LF>`` and ``<LF>.<CRLF>`` stay
inside the message. A hop that reads a bare CR or LF as a line end would
see them as the end of the message and the rest as new commands, so the
relay does not take such data at all (RFC 5321 section 2.3.8: CR and LF
appear only together): ``550 5.6.0``, nothing queued.

Queueing and delivery live elsewhere (:mod:`.queue`, :mod:`.scheduler`,
:mod:`.delivery`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from dirsync.relay.message import count_trace, received_header
from dirsync.relay.protocol import TEMPFAIL, DsnEnvelope
from dirsync.relay.queue import Queue, QueuedMessage, Recipient, new_id
from dirsync.relay.tracking import Tracker
from dirsync.relay.translate import Translator

log = logging.getLogger("dirsync.relay.handler")

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
BARE_REPLY = ("550 5.6.0 Message refused: a bare <CR> or <LF> in the data "
              "(lines must end in <CRLF>)")


class RelayHandler:
    """aiosmtpd handler hooks for the relay."""

    def __init__(self, *, translator: Translator, queue: Queue, tracker: Tracker,
                 hostname: str, max_recipients: int, executor: Executor,
                 submit: Callable[[str, float], None]) -> None:
        self.translator = translator
        self.queue = queue
        self.tracker = tracker
        self.hostname = hostname
        self.max_recipients = max_recipients
        self.executor = executor
        self.submit = submit

    async def handle_RCPT(self, server: Any, session: Any, envelope: DsnEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        loop = asyncio.get_running_loop()
        # The hub lookup blocks (python-ldap); keep it off the event loop.
        decision = await loop.run_in_executor(
            self.executor, lambda: self.translator.accept(
                address, authenticated=bool(session.authenticated)))
        if not decision.accepted:
            log.info("%r: refused RCPT %s: %s", session.peer, address, decision.reply)
        return decision.reply

    async def handle_DATA(self, server: Any, session: Any, envelope: DsnEnvelope) -> str:
        content = envelope.original_content or b""
        bare = _BARE.search(content)
        if bare is not None:
            log.warning("%r: refused DATA from <%s>: a bare %s at byte %d", session.peer,
                        envelope.mail_from, "CR" if bare.group(0) == b"\r" else "LF",
                        bare.start())
            return BARE_REPLY
        queue_id = new_id()
        now = time.time()
        peer = session.peer[0] if isinstance(session.peer, tuple) else session.peer
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl:
            protocol += "S"
        if session.authenticated:
            protocol += "A"  # RFC 3848 protocol types
        trace = received_header(
            by=self.hostname, queue_id=queue_id, when=now, helo=session.host_name, peer=peer,
            protocol=protocol,
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None)
        msg = QueuedMessage(
            id=queue_id,
            sender=envelope.mail_from or "",
            recipients=[Recipient(addr, dsn) for addr, dsn in zip(envelope.rcpt_tos,
                                                                   envelope.rcpt_dsn)],
            received_at=now, ret=envelope.ret, envid=envelope.envid,
            hops=count_trace(content), origin="smtp", smtputf8=envelope.smtp_utf8,
            body=envelope.body, client=session.host_name, next_attempt=now,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.queue.enqueue, msg, trace + content)
        for rcpt in msg.recipients:
            self.tracker.event("received", queue_id, rcpt.address, sender=msg.sender,
                               size=len(content), client=peer, source="smtp")
        self.submit(queue_id, now)
        return f"250 2.0.0 OK queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("error in an SMTP hook: %s", error, exc_info=error)
        return TEMPFAIL
