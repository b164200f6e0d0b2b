"""Template filters for foreign address formats (registered in :mod:`dirsync.mapping.templates`).

Foreign mail systems of the seeds take less than Unicode: MS Mail mailbox
names, GroupWise user IDs and cc:Mail names are plain ASCII, X.400 values
are PrintableStrings (X.208) with upper bounds on their length. These
filters turn hub values into what such an address can hold:

``ascii``
    ``Zoë Müller`` -> ``Zoe Muller``: letters lose their accents
    (Unicode NFKD), what has no ASCII form goes.
``x400(limit)``
    an X.400 attribute value: ASCII-folded, RFC 2156 section 3.4 escapes
    for the characters a PrintableString lacks (``@`` -> ``(a)``), cut to
    ``limit`` characters (X.411 upper bounds: surname 40, given name 16).
``mailboxes(type)``
    the RFC 1274 ``otherMailbox`` values (``x400$c=US;...``) of one
    mailbox type, without the type.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from dirsync.addresses.x400 import encode_printable

# Letters NFKD does not take apart.
_SPECIAL = str.maketrans({"ß": "ss", "Æ": "AE", "æ": "ae", "Ø": "O", "ø": "o", "Œ": "OE",
                          "œ": "oe", "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Þ": "Th",
                          "þ": "th", "ı": "i"})


def ascii_fold(value: Any) -> str:
    text = unicodedata.normalize("NFKD", str(value).translate(_SPECIAL))
    return "".join(c for c in text if c.isascii() and not unicodedata.combining(c))


def x400_value(value: Any, limit: int | None = None) -> str:
    """An X.400 PrintableString for ``value``; never cuts an escape in half."""
    out = ""
    for ch in ascii_fold(value):
        if ch in "\r\n\t" or not (ch.isprintable() or ch == " "):
            continue
        piece = encode_printable(ch)
        if limit is not None and len(out) + len(piece) > limit:
            break
        out += piece
    return out.strip()


def mailboxes(values: Any, kind: str) -> list[str]:
    items = values if isinstance(values, (list, tuple)) else [values]
    wanted = kind.casefold() + "$"
    found = []
    for item in items:
        text = str(item)
        if text.casefold().startswith(wanted):
            found.append(text[len(wanted):].strip())
    return [f for f in found if f]


FILTERS = {"ascii": ascii_fold, "x400": x400_value, "mailboxes": mailboxes}
