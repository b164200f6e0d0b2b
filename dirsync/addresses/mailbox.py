"""The RFC 5321 Mailbox grammar (section 4.1.2), with the UTF-8 of RFC 6531.

One grammar for every reader of SMTP addresses: the value checks of foreign
data (:mod:`dirsync.addresses.values`) and the relay's strict path reader
(:mod:`dirsync.relay.paths`). A reader chooses which non-ASCII characters
it takes (none, :data:`SAFE_UTF8` or :data:`ANY_UTF8`) and adds its own
limits on top; the shapes of a dot-string, a quoted string, a domain and
an address literal are written once, here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import cache

#: RFC 5321 atext (RFC 5322 section 3.2.3), as the inside of a character class.
ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
#: RFC 5321 qtextSMTP: printable ASCII but '"' and '\'.
QTEXT = r"\x20\x21\x23-\x5b\x5d-\x7e"
#: RFC 5321 dcontent: printable ASCII but '[', '\' and ']'.
DCONTENT = r"\x21-\x5a\x5e-\x7e"

#: Every non-ASCII character (RFC 6531 section 3.3): for a reader that
#: refuses controls and non-UTF-8 bytes before the grammar sees the text.
ANY_UTF8 = "\u0080-\U0010ffff"
#: Non-ASCII without the C1 controls, the surrogates (bytes that were not
#: UTF-8 arrive as lone surrogates) and the line and paragraph separators.
SAFE_UTF8 = "\u00a0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff"

_TAG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_IPV4_FORM = r"(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}"
_LITERAL_FORM = re.compile(
    rf"{_IPV4_FORM}|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9-]*[A-Za-z0-9]:[{DCONTENT}]+")


@dataclass(frozen=True)
class Grammar:
    """The patterns (uncompiled, to be composed) of one reader's Mailbox."""

    dot_string: str
    quoted: str
    domain: str
    #: an address literal's brackets around dcontent; its inside is checked
    #: apart (:func:`is_address_literal`, :func:`is_literal_form`)
    literal: str
    #: ``local@domain`` with the named groups ``local`` and ``domain``
    mailbox: str

    @property
    def compiled(self) -> re.Pattern[str]:
        return _compile(self.mailbox)


@cache
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@cache
def grammar(non_ascii: str = "") -> Grammar:
    """The Mailbox grammar taking ``non_ascii`` (a character-class range) as
    atext, qtext and label characters; ``""`` is RFC 5321's ASCII only."""
    u = non_ascii
    atom = f"[{ATEXT}{u}]+"
    dot_string = rf"{atom}(?:\.{atom})*"
    quoted = rf'"(?:[{QTEXT}{u}]|\\[\x20-\x7e])*"'
    label = rf"[A-Za-z0-9{u}](?:[A-Za-z0-9{u}-]*[A-Za-z0-9{u}])?"
    domain = rf"{label}(?:\.{label})*"
    literal = rf"\[[{DCONTENT}]+\]"
    mailbox = rf"(?P<local>{dot_string}|{quoted})@(?P<domain>{domain}|{literal})"
    return Grammar(dot_string, quoted, domain, literal, mailbox)


def is_address_literal(literal: str) -> bool:
    """``[...]`` is an RFC 5321 address literal whose address parses: an IPv4
    address, ``IPv6:`` and an IPv6 address, or a General-address-literal (a
    standardized tag, ``:`` and dcontent)."""
    inner = literal[1:-1]
    tag, colon, value = inner.partition(":")
    if not colon:
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    if tag.upper() == "IPV6":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return False
        return True
    return _TAG.fullmatch(tag) is not None and bool(value)


def is_literal_form(literal: str) -> bool:
    """``[...]`` has the form of an address literal (dotted IPv4 numbers, or
    a tag, ``:`` and dcontent), without parsing the address it names."""
    return _LITERAL_FORM.fullmatch(literal[1:-1]) is not None
