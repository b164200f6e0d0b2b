"""Delivery status notifications (RFC 3464) with RFC 3463 status codes.

A report is a ``multipart/report; report-type=delivery-status`` message
(RFC 3462) of three parts: a human-readable explanation, the
``message/delivery-status`` fields, and the original message
(``message/rfc822``) or only its header (``text/rfc822-headers``), as the
sender's RET asked (RFC 3461 section 4.3). Reports are sent with the null
reverse-path ``<>`` so that nobody ever reports on a report (RFC 3461
section 6.2, RFC 5321 section 4.5.5).

The statuses the relay gives (RFC 3463):

* 5.1.1 -- a recipient that cannot be mapped to an address of any route;
* 5.1.3 -- bad address syntax (a malformed target or encapsulated address);
* 5.1.7 -- a sender that cannot be mapped for where the message must go;
* 5.4.4 -- no route for the address;
* 5.4.6 -- a routing loop (too many ``Received:``/``X400-Received:`` headers);
* 4.4.7 -- the message stayed in the queue past ``max_queue_lifetime``;
* 2.0.0 -- relayed (with Action: relayed) to a hop that does not report on
  successful delivery itself.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dirsync.relay.message import split_header
from dirsync.relay.paths import check_mailbox

FULL_LIMIT = 1 << 20  # beyond this the original travels as its header only

_HUMAN = {
    "failed": "could not be delivered to",
    "delayed": "has not yet been delivered to",
    "relayed": "was relayed to a system that does not confirm delivery, for",
    "delivered": "was delivered to",
}


@dataclass(frozen=True)
class RecipientReport:
    """The per-recipient fields of a DSN (RFC 3464 section 2.3)."""

    final_recipient: str  # "rfc822; addr" or "x400; /G=.../"
    action: str           # failed | delayed | relayed | delivered
    status: str
    original_recipient: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None
    last_attempt: float | None = None
    will_retry_until: float | None = None
    text: str | None = None  # a sentence for the human-readable part


def rfc822_date(when: float) -> str:
    return email.utils.formatdate(when, localtime=False, usegmt=True)


def header_block(content: bytes) -> bytes:
    """The header of a message, up to and including the blank line."""
    return split_header(content)[0]


def _fields(lines: Sequence[tuple[str, str | None]]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in lines if value is not None)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _ascii_safe(text: str) -> str:
    # DSN fields are ASCII; an SMTPUTF8 address is written with its
    # non-ASCII bytes as xtext-like escapes rather than corrupting the field.
    # A control character (a hop's reply, a hub value) is escaped too: a CR
    # or LF here would start a header field of its own.
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _line(text: str) -> str:
    """Text for the human-readable part: one line, control characters escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def build_report(*, reporting_mta: str, postmaster: str, to: str,
                 recipients: Sequence[RecipientReport], original: bytes,
                 ret: str | None, envid: str | None, arrival: float,
                 received_from: str | None = None, now: float | None = None) -> bytes:
    """Build one DSN about ``recipients`` of one message, as bytes with CRLF line ends.

    ``ret`` is the sender's RET (None: the full message for failures, the
    header for other reports). Messages over 1 MiB are returned as header only.
    ``to`` and ``postmaster`` become header fields, so they must be valid
    mailboxes (:func:`~dirsync.relay.paths.check_mailbox` raises otherwise).
    """
    check_mailbox(to)
    check_mailbox(postmaster)
    now = time.time() if now is None else now
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    actions = {r.action for r in recipients}
    if "failed" in actions:
        subject = "Undelivered Mail Returned to Sender"
    elif "delayed" in actions:
        subject = "Delivery Status Notification (Delay)"
    else:
        subject = "Delivery Status Notification (Relay)"
    want_full = ret == "FULL" or (ret is None and "failed" in actions)
    full = want_full and len(original) <= FULL_LIMIT
    domain = reporting_mta

    head = _fields([
        ("From", f"Mail Delivery System <{postmaster}>"),
        ("To", f"<{to}>"),
        ("Subject", subject),
        ("Date", rfc822_date(now)),
        ("Message-ID", f"<{secrets.token_hex(10)}.dsn@{domain}>"),
        ("Auto-Submitted", "auto-replied"),  # RFC 3834
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"'),
    ])

    human = [f"This is the mail relay at {reporting_mta}.", ""]
    for r in recipients:
        who = r.original_recipient or r.final_recipient
        human.append(_line(f"Your message {_HUMAN.get(r.action, r.action)} "
                           f"{who.split(';', 1)[-1].strip()}."))
        if r.text:
            human.append(_line(f"  {r.text}"))
        human.append(_line(f"  Status: {r.status}" + (f" ({r.diagnostic})" if r.diagnostic
                                                      else "")))
        human.append("")
    human_text = "\r\n".join(human)
    human_bytes = human_text.encode("utf-8")
    human_cte = "7bit" if human_bytes.isascii() else "8bit"

    per_message = _fields([
        ("Reporting-MTA", f"dns; {reporting_mta}"),
        ("Original-Envelope-Id", _ascii_safe(envid) if envid else None),
        ("Received-From-MTA", _ascii_safe(f"dns; {received_from}") if received_from
         else None),
        ("Arrival-Date", rfc822_date(arrival)),
    ])
    blocks = [per_message]
    for r in recipients:
        blocks.append(_fields([
            ("Original-Recipient", _ascii_safe(r.original_recipient) if r.original_recipient
             else None),
            ("Final-Recipient", _ascii_safe(r.final_recipient)),
            ("Action", r.action),
            ("Status", r.status),
            ("Remote-MTA", _ascii_safe(r.remote_mta) if r.remote_mta else None),
            ("Diagnostic-Code", _ascii_safe(r.diagnostic) if r.diagnostic else None),
            ("Last-Attempt-Date", rfc822_date(r.last_attempt) if r.last_attempt else None),
            ("Will-Retry-Until", rfc822_date(r.will_retry_until) if r.will_retry_until
             else None),
        ]))
    status_part = "\r\n".join(blocks)

    if full:
        returned = original
        returned_type = "message/rfc822"
    else:
        returned = header_block(original)
        returned_type = "text/rfc822-headers"
    returned_cte = "7bit" if returned.isascii() else "8bit"

    parts = [
        head.encode(),
        b"\r\nThis is a MIME-encapsulated delivery status notification.\r\n",
        f"\r\n--{boundary}\r\n".encode(),
        _fields([("Content-Type", "text/plain; charset=utf-8"),
                 ("Content-Transfer-Encoding", human_cte)]).encode(),
        b"\r\n", human_bytes, b"\r\n",
        f"\r\n--{boundary}\r\n".encode(),
        b"Content-Type: message/delivery-status\r\n\r\n",
        status_part.encode(),
        f"\r\n--{boundary}\r\n".encode(),
        _fields([("Content-Type", returned_type),
                 ("Content-Transfer-Encoding", returned_cte)]).encode(),
        b"\r\n", returned,
        b"" if returned.endswith(b"\r\n") else b"\r\n",
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)


def is_report_content(content: bytes) -> bool:
    """True for a ``multipart/report`` delivery-status message, whatever its sender."""
    head = header_block(content).decode("latin-1").lower()
    unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ").replace("\n\t", " ")
    for line in unfolded.splitlines():
        if line.startswith("content-type:") and "multipart/report" in line \
                and "delivery-status" in line:
            return True
    return False
