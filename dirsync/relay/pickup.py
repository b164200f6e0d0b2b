"""The inbound X.400 pickup folder: gateway files become queued SMTP messages.

Each file (see :mod:`.gateway`) is read, its originator translated to SMTP
through the hub (or by the RFC 2156 tables, or IMCEA-encapsulated), each
recipient translated likewise, and the message queued durably; only then is
the file removed. A recipient with no SMTP form is queued as already failed
(5.1.1), so the ordinary machinery returns a non-delivery report to the
originator. A file that cannot be read as a gateway message is moved to
``bad/`` beside the files, never lost and never retried in a loop.

A crash after queueing but before the removal picks the file up again: the
pickup, like every hand-over in the relay, errs on the side of a duplicate.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from dirsync.addresses.imcea import encode_imcea
from dirsync.addresses.x400 import ORAddressError, parse_or_address
from dirsync.errors import InputError
from dirsync.relay.addresses import TypedAddress
from dirsync.relay.errors import AmbiguousAddress, HubUnavailable
from dirsync.relay.gateway import read_gateway_message
from dirsync.relay.message import received_header
from dirsync.relay.queue import Queue, QueuedMessage, Recipient, new_id
from dirsync.relay.tracking import Tracker
from dirsync.relay.translate import Translator

log = logging.getLogger("dirsync.relay.pickup")


class Pickup:
    """Scans one pickup folder; ``scan()`` is blocking and returns the queued ids."""

    def __init__(self, folder: Path, *, queue: Queue, translator: Translator, tracker: Tracker,
                 hostname: str, submit: Callable[[str, float], None]) -> None:
        self.folder = folder
        self.bad = folder / "bad"
        self.queue = queue
        self.translator = translator
        self.tracker = tracker
        self.hostname = hostname
        self.submit = submit

    def scan(self) -> list[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        queued = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                queue_id = self.take(path)
            except HubUnavailable as exc:
                log.warning("pickup paused: %s", exc)
                break  # the files stay; the next scan tries again
            if queue_id is not None:
                queued.append(queue_id)
        return queued

    def take(self, path: Path) -> str | None:
        """Queue one file and remove it; a bad file goes to ``bad/``."""
        try:
            gm = read_gateway_message(path)
        except (InputError, OSError) as exc:
            log.error("%s: not a gateway message (%s); moved to %s", path, exc, self.bad)
            self.bad.mkdir(exist_ok=True)
            shutil.move(str(path), self.bad / path.name)
            return None
        queue_id = new_id()
        sender = ""
        if gm.originator is not None:
            sender = self.translator.originator_to_smtp(gm.originator)
        recipients = [self._recipient(address) for address in gm.recipients]
        now = time.time()
        content = received_header(by=self.hostname, queue_id=queue_id, protocol="X400-pickup",
                                  when=now) + gm.content
        msg = QueuedMessage(id=queue_id, sender=sender, recipients=recipients, received_at=now,
                            hops=gm.hops, origin="pickup", next_attempt=now)
        self.queue.enqueue(msg, content)
        for rcpt in recipients:
            self.tracker.event("received", queue_id, rcpt.address, sender=sender,
                               source="x400-pickup", file=path.name, mts_id=gm.mts_id,
                               arrived_as=rcpt.arrived_as)
        path.unlink()
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.submit(queue_id, now)
        return queue_id


    def _recipient(self, address: TypedAddress) -> Recipient:
        """One inbound recipient, decided by the rule the SMTP front applies."""
        std = _std(address)
        try:
            smtp = self.translator.recipient_to_smtp(address)
        except AmbiguousAddress:
            # Several hub entries claim it: queue it in its IMCEA form, so
            # that delivery looks it up again and the recipient waits (4.3.0)
            # until one entry holds the address.
            imcea = encode_imcea(address.type, address.canonical(), self.translator.imcea_domain)
            return Recipient(imcea, arrived_as=str(address))
        if smtp is None:
            reason = f"{std} is not a recipient the relay can map to SMTP"
            return Recipient(std, arrived_as=str(address), error=("5.1.1", reason))
        # The gateway is trusted like an authenticated client (only it writes
        # the pickup folder); otherwise the same decision as RCPT TO.
        decision = self.translator.accept(smtp, authenticated=True)
        if decision.accepted or decision.reply.startswith("4"):
            return Recipient(smtp, arrived_as=str(address))
        _, status, text = decision.reply.split(" ", 2)
        log.info("%s: pickup recipient %s (%s) refused: %s", self.folder, std, smtp,
                 decision.reply)
        return Recipient(std, arrived_as=str(address), error=(status, f"{std}: {text}"))


def _std(address: TypedAddress) -> str:
    try:
        return parse_or_address(address.value).to_std()
    except ORAddressError:
        return address.value
