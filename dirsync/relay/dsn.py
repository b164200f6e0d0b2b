"""RFC 3461 delivery status notification parameters: NOTIFY, ORCPT, RET, ENVID.

Pure functions. The SMTP front reads them with these, the queue stores them,
and the SMTP next hop passes them on when the hop offers DSN.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from dirsync.errors import InputError

NOTIFY_KEYWORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
RET_VALUES = frozenset({"FULL", "HDRS"})
MAX_ENVID = 100  # RFC 3461 section 4.4


class DsnSyntaxError(InputError):
    """A DSN parameter that does not follow RFC 3461 (answered with 501 5.5.4)."""


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 section 4 xtext: ``+HH`` for a byte, printable ASCII for itself."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            pair = text[i + 1:i + 3]
            if len(pair) != 2 or not all(c in "0123456789ABCDEF" for c in pair.upper()):
                raise DsnSyntaxError(f"{text!r}: '+' must be followed by two hex digits")
            out.append(int(pair, 16))
            i += 3
            continue
        if not 33 <= ord(ch) <= 126 or ch == "=":
            raise DsnSyntaxError(f"{text!r}: {ch!r} is not allowed in xtext")
        out.append(ord(ch))
        i += 1
    return out.decode("utf-8", errors="surrogateescape")


def xtext_encode(text: str) -> str:
    """Encode as RFC 3461 section 4 xtext."""
    out = []
    for byte in text.encode("utf-8", errors="surrogateescape"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


@dataclass(frozen=True)
class RecipientDsn:
    """The per-recipient DSN request (RFC 3461 sections 4.1 and 4.2).

    ``notify`` is None when NOTIFY was not given (failures and delays are
    then reported, RFC 3461 section 4.1), an empty set for NEVER.
    ``orcpt`` is ``(addr-type, address)`` with the xtext decoded.
    """

    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None

    def wants(self, event: str) -> bool:
        """Whether a report of ``event`` (SUCCESS, FAILURE, DELAY) is wanted."""
        if self.notify is None:
            return event in ("FAILURE", "DELAY")
        return event in self.notify

    @property
    def delay_explicit(self) -> bool:
        return self.notify is not None and "DELAY" in self.notify

    def to_json(self) -> dict[str, object]:
        return {"notify": None if self.notify is None else sorted(self.notify),
                "orcpt": list(self.orcpt) if self.orcpt else None}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RecipientDsn:
        notify = data.get("notify")
        orcpt = data.get("orcpt")
        words = frozenset(str(w) for w in notify) if isinstance(notify, list) else None
        pair = (str(orcpt[0]), str(orcpt[1])) if isinstance(orcpt, list) and orcpt else None
        return cls(words, pair)

    def rcpt_options(self) -> list[str]:
        """The RCPT TO parameters that pass this request on (RFC 3461 section 4)."""
        options = []
        if self.notify is not None:
            options.append("NOTIFY=" + (",".join(sorted(self.notify)) or "NEVER"))
        if self.orcpt is not None:
            options.append(f"ORCPT={self.orcpt[0]};{xtext_encode(self.orcpt[1])}")
        return options


def parse_notify(value: str) -> frozenset[str]:
    """NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 section 4.1)."""
    words = [w.strip().upper() for w in value.split(",")]
    if words == ["NEVER"]:
        return frozenset()
    if not words or any(w not in NOTIFY_KEYWORDS for w in words) or len(set(words)) != len(words):
        raise DsnSyntaxError(f"NOTIFY={value}: NEVER, or any of SUCCESS, FAILURE, DELAY")
    return frozenset(words)


def parse_orcpt(value: str) -> tuple[str, str]:
    """ORCPT=addr-type;xtext (RFC 3461 section 4.2)."""
    addr_type, semi, encoded = value.partition(";")
    if not semi or not addr_type or not encoded or not all(
            c in string.ascii_letters + string.digits + "-" for c in addr_type):
        raise DsnSyntaxError(f"ORCPT={value}: expected addr-type;xtext")
    return addr_type.lower(), xtext_decode(encoded)


def parse_ret(value: str) -> str:
    """RET=FULL or RET=HDRS (RFC 3461 section 4.3)."""
    upper = value.upper()
    if upper not in RET_VALUES:
        raise DsnSyntaxError(f"RET={value}: FULL or HDRS")
    return upper


def parse_envid(value: str) -> str:
    """ENVID=xtext, at most 100 characters (RFC 3461 section 4.4)."""
    if not value or len(value) > MAX_ENVID:
        raise DsnSyntaxError(f"ENVID must be 1 to {MAX_ENVID} characters")
    return xtext_decode(value)


def mail_options(ret: str | None, envid: str | None) -> list[str]:
    """The MAIL FROM parameters that pass RET and ENVID on."""
    options = []
    if ret:
        options.append(f"RET={ret}")
    if envid:
        options.append(f"ENVID={xtext_encode(envid)}")
    return options
