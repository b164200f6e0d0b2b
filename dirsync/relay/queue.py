"""The durable message queue: one file per message, fsynced before the relay says 250.

A message file ``<queue>/<id>.msg`` holds three things in order:

1. one line of JSON: the envelope (sender, recipients with their DSN
   requests, RET, ENVID, arrival time, trace hop count, content length);
2. the message content, exactly as received plus the relay's trace header;
3. a journal: one JSON line per change of state (a recipient relayed,
   delivered or failed; an attempt made and when the next one is due).

The file is written under ``<queue>/tmp/``, fsynced, renamed into place and
the folder fsynced (STYLE.md item 3: the reply that confirms the message is
given only after both). Journal lines are appended and fsynced, so a
recipient once recorded as delivered is never delivered again after a
restart. A crash in the middle of a journal line leaves a partial last line,
which loading cuts off. When every recipient is final the file is removed;
should the removal be lost in a crash, the reloaded file has nothing left to
do and is removed again.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirsync.relay.dsn import RecipientDsn
from dirsync.relay.errors import RelayStartError

log = logging.getLogger("dirsync.relay.queue")

PENDING = "pending"
RELAYED = "relayed"      # handed to an SMTP next hop
DELIVERED = "delivered"  # written to an X.400 gateway queue
FAILED = "failed"
FINAL = frozenset({RELAYED, DELIVERED, FAILED})


def new_id() -> str:
    """A queue id: time-ordered, unique, safe in file names and MTS identifiers."""
    return f"{time.time_ns():x}{secrets.token_hex(4)}"


@dataclass
class Recipient:
    """One recipient of a queued message and where it stands."""

    address: str
    dsn: RecipientDsn = field(default_factory=RecipientDsn)
    arrived_as: str | None = None  # TYPE:value it was addressed to, if it came in foreign
    state: str = PENDING
    status: str | None = None       # RFC 3463 status of the final outcome
    diagnostic: str | None = None   # "smtp; 550 ..." for the report
    final_recipient: str | None = None  # "rfc822; addr" or "x400; /G=.../"
    remote_mta: str | None = None
    delay_reported: bool = False
    # Known to be undeliverable when queued ((status, reason)): the first
    # attempt fails it with a report, like any other failure.
    error: tuple[str, str] | None = None

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"a": self.address, "dsn": self.dsn.to_json()}
        if self.arrived_as:
            data["as"] = self.arrived_as
        if self.error:
            data["err"] = list(self.error)
        return data

    def apply(self, record: dict[str, Any]) -> None:
        if "state" in record:
            self.state = record["state"]
            self.status = record.get("status")
            self.diagnostic = record.get("diag")
            self.final_recipient = record.get("final")
            self.remote_mta = record.get("mta")
        if record.get("delayed"):
            self.delay_reported = True

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipient:
        rcpt = cls(data["a"], RecipientDsn.from_json(data.get("dsn") or {}), data.get("as"))
        if data.get("err"):
            rcpt.error = (data["err"][0], data["err"][1])
        return rcpt


@dataclass
class QueuedMessage:
    """A message in the queue; its content stays on disk until an attempt reads it."""

    id: str
    sender: str  # "" is the null reverse-path <>
    recipients: list[Recipient]
    received_at: float = field(default_factory=time.time)
    ret: str | None = None
    envid: str | None = None
    hops: int = 0
    origin: str = "smtp"  # smtp | pickup | report
    smtputf8: bool = False
    body: str | None = None  # BODY= of MAIL FROM (8BITMIME)
    client: str | None = None  # who handed it to us, for the report's Received-From-MTA
    attempts: int = 0
    next_attempt: float = 0.0
    path: Path | None = None
    content_offset: int = 0
    content_length: int = 0
    journal_end: int = 0

    @property
    def is_report(self) -> bool:
        """A delivery report (null sender): never reported on itself (RFC 3461 section 6.2)."""
        return self.sender == "" or self.origin == "report"

    def pending(self) -> list[tuple[int, Recipient]]:
        return [(i, r) for i, r in enumerate(self.recipients) if r.pending]

    def header(self) -> dict[str, Any]:
        return {
            "v": 1, "id": self.id, "sender": self.sender,
            "rcpts": [r.to_json() for r in self.recipients],
            "received": self.received_at, "ret": self.ret, "envid": self.envid,
            "hops": self.hops, "origin": self.origin, "smtputf8": self.smtputf8,
            "body": self.body, "client": self.client, "length": self.content_length,
        }

    def read_content(self) -> bytes:
        assert self.path is not None
        with open(self.path, "rb") as f:
            f.seek(self.content_offset)
            data = f.read(self.content_length)
        if len(data) != self.content_length:
            raise OSError(f"{self.path}: content is shorter than its envelope says")
        return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Queue:
    """The queue folder and the messages in it (in memory: envelopes only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path / "tmp"
        self.corrupt = path / "corrupt"
        self._messages: dict[str, QueuedMessage] = {}
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------
    def open(self) -> list[QueuedMessage]:
        """Create the folders, drop unacknowledged temporaries, load every message.

        Raises :class:`RelayStartError` when the folder cannot be written.
        """
        try:
            for folder in (self.path, self.tmp):
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.tmp / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RelayStartError(f"queue folder {self.path} is not writable: "
                                  f"{exc.strerror}") from None
        for leftover in self.tmp.iterdir():
            # Never acknowledged to a client: the client still has the message.
            leftover.unlink(missing_ok=True)
        loaded = []
        for path in sorted(self.path.glob("*.msg")):
            try:
                msg = self._load(path)
            except (OSError, ValueError, KeyError) as exc:
                log.error("%s: unreadable queue file (%s); moved to %s", path, exc,
                          self.corrupt)
                self.corrupt.mkdir(exist_ok=True)
                shutil.move(str(path), self.corrupt / path.name)
                continue
            if not msg.pending():
                path.unlink(missing_ok=True)
                continue
            with self._lock:
                self._messages[msg.id] = msg
            loaded.append(msg)
        return loaded

    def _load(self, path: Path) -> QueuedMessage:
        with open(path, "r+b") as f:
            first = f.readline()
            if not first.endswith(b"\n"):
                raise ValueError("envelope line is incomplete")
            head = json.loads(first)
            offset = len(first)
            length = int(head["length"])
            f.seek(offset + length)
            tail = f.read()
            msg = QueuedMessage(
                id=head["id"], sender=head["sender"],
                recipients=[Recipient.from_json(r) for r in head["rcpts"]],
                received_at=head["received"], ret=head.get("ret"), envid=head.get("envid"),
                hops=head.get("hops", 0), origin=head.get("origin", "smtp"),
                smtputf8=head.get("smtputf8", False), body=head.get("body"),
                client=head.get("client"), path=path, content_offset=offset,
                content_length=length,
            )
            if os.fstat(f.fileno()).st_size < offset + length:
                raise ValueError("content is truncated")
            good = 0
            for line in tail.split(b"\n")[:-1]:
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                self._apply(msg, record)
                good += len(line) + 1
            msg.journal_end = offset + length + good
            if good != len(tail):
                # A journal line cut short by a crash: cut it off for good.
                f.truncate(msg.journal_end)
                f.flush()
                os.fsync(f.fileno())
        return msg

    @staticmethod
    def _apply(msg: QueuedMessage, record: dict[str, Any]) -> None:
        if "r" in record:
            msg.recipients[record["r"]].apply(record)
        if "attempts" in record:
            msg.attempts = record["attempts"]
            msg.next_attempt = record.get("next", 0.0)

    # -- operations ------------------------------------------------------
    def enqueue(self, msg: QueuedMessage, content: bytes) -> QueuedMessage:
        """Write a new message durably; when this returns, 250 may be said."""
        msg.content_length = len(content)
        head = json.dumps(msg.header(), separators=(",", ":")).encode() + b"\n"
        final = self.path / f"{msg.id}.msg"
        tmp = self.tmp / f"{msg.id}.msg"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(head)
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
            _fsync_dir(self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        msg.path = final
        msg.content_offset = len(head)
        msg.journal_end = len(head) + len(content)
        with self._lock:
            self._messages[msg.id] = msg
        return msg

    def record(self, msg: QueuedMessage, records: Iterable[dict[str, Any]]) -> None:
        """Append journal records durably, then apply them in memory."""
        lines = [json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records]
        if not lines:
            return
        assert msg.path is not None
        data = b"".join(lines)
        with open(msg.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        msg.journal_end += len(data)
        for line in lines:
            self._apply(msg, json.loads(line))

    def remove(self, msg: QueuedMessage) -> None:
        """Forget a message whose recipients are all final."""
        with self._lock:
            self._messages.pop(msg.id, None)
        if msg.path is not None:
            msg.path.unlink(missing_ok=True)

    def get(self, msg_id: str) -> QueuedMessage | None:
        with self._lock:
            return self._messages.get(msg_id)

    def __iter__(self) -> Iterator[QueuedMessage]:
        with self._lock:
            return iter(list(self._messages.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)
