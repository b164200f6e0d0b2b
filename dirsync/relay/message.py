"""Small helpers on raw message bytes: the header, trace counting, trace headers."""

from __future__ import annotations

import email.utils
import re
import time

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRACE = re.compile(rb"^(received|x400-received)[ \t]*:", re.IGNORECASE)


def split_header(content: bytes) -> tuple[bytes, bytes]:
    """The header (with its blank line) and the body of a message."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = content.find(sep)
        if end >= 0:
            return content[:end + len(sep)], content[end + len(sep):]
    return content, b""


def header_fields(content: bytes) -> list[tuple[str, str]]:
    """The unfolded header fields of a message, in order (RFC 5322 section 2.2.3)."""
    head, _ = split_header(content)
    fields: list[tuple[str, str]] = []
    for raw in head.replace(b"\r\n", b"\n").split(b"\n"):
        if not raw:
            continue
        line = raw.decode("utf-8", errors="replace")
        if line[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return fields


def count_trace(content: bytes) -> int:
    """How many ``Received:`` plus ``X400-Received:`` fields the header holds.

    Each MTA a message passes adds one (RFC 5321 section 4.4, RFC 2156
    ``X400-Received``); too many means the message is looping.
    """
    head, _ = split_header(content)
    return sum(1 for line in head.replace(b"\r\n", b"\n").split(b"\n") if _TRACE.match(line))


def received_header(*, by: str, queue_id: str, when: float | None = None,
                    helo: str | None = None, peer: str | None = None, protocol: str = "ESMTP",
                    recipient: str | None = None) -> bytes:
    """An RFC 5321 section 4.4 ``Received:`` field, folded, ending in CRLF.

    Every value must already have been checked (the HELO name and the
    recipient by the SMTP front); one with a control character would start a
    header field of its own, so it raises ``ValueError`` instead.
    """
    for value in (by, queue_id, helo, peer, protocol, recipient):
        if value is not None and _CONTROL.search(value):
            raise ValueError(f"{value!r}: control character in a Received: field")
    parts = []
    if helo or peer:
        parts.append(f"from {helo or 'unknown'}" + (f" ({peer})" if peer else ""))
    parts.append(f"by {by} (dirsync relay) with {protocol} id {queue_id}")
    if recipient:
        parts.append(f"for <{recipient}>")
    stamp = email.utils.formatdate(time.time() if when is None else when, usegmt=True)
    return ("Received: " + "\r\n\t".join(parts) + f";\r\n\t{stamp}\r\n").encode(
        "utf-8", errors="surrogateescape")
