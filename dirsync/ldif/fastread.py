"""The fast path of the LDIF reader (:meth:`LDIFReader._fast_records` in
:mod:`dirsync.ldif.io`): a file cut into blocks of lines, and a plain
content record read from its block without python-ldap's parser.

A record the fast path does not take (folded lines, base64, URLs, change
records, comments) goes to the full parser; this one only ever reads
what it can read exactly as that parser would.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from pathlib import Path

from dirsync.addresses.values import dn_problem
from dirsync.entry import Entry
from dirsync.errors import InputError
from dirsync.schema import ATTR_NAME


def strict_b64decode(data: bytes) -> bytes:
    # The standard decoder drops characters outside the alphabet; LDIF with
    # such characters is broken and must be refused, not silently mangled.
    return base64.b64decode(data.strip(), validate=True)


_FAST_CHUNK = 1 << 20
_NAMES_OK: dict[str, str] = {}  # descriptions ATTR_NAME accepted -> lower case


def blocks(path: Path, name: str) -> Iterator[tuple[int, list[str], bool]]:
    """(first line number, physical lines, ended by a newline) of each run of
    non-empty lines. Lines lose their ``\\n``, and the ``\\r`` of ``\\r\\n``."""
    lineno = 1  # number of the next line to come
    block: list[str] = []
    start = 1
    with open(path, "rb") as stream:
        carry = b""
        while True:
            chunk = stream.read(_FAST_CHUNK)
            data = carry + chunk
            if chunk:
                cut = data.rfind(b"\n") + 1
                if not cut:
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            if not data:
                break
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_utf8(data, exc, lineno, name) from exc
            lines = text.split("\n")
            last = lines.pop()  # "" after a final newline, else an unended line
            for line in lines:
                if line and line[-1] == "\r":
                    line = line[:-1]
                if line:
                    if not block:
                        start = lineno
                    block.append(line)
                elif block:
                    yield start, block, True
                    block = []
                lineno += 1
            if last:
                if not block:
                    start = lineno
                block.append(last)
                yield start, block, False
                block = []
            if not chunk:
                break
    if block:
        yield start, block, True


def _not_utf8(data: bytes, exc: UnicodeDecodeError, lineno: int, name: str) -> InputError:
    # The exact line of the first bad byte (a text stream decodes ahead, in
    # blocks, and can only tell roughly where).
    before = data[:exc.start]
    line_start = before.rfind(b"\n") + 1
    field = None
    head = data[line_start:exc.start]
    if b":" in head and not head.startswith((b" ", b"#")):
        field = head.split(b":", 1)[0].decode("ascii", "replace")
    return InputError(f"not UTF-8 ({exc.reason})", path=name,
                      line=lineno + before.count(b"\n"), field=field)


def plain_record(lines: list[str], start: int) -> Entry | None:
    """The content record in ``lines``, parsed as the lexer would, or None
    when the block is anything but a plain content record."""
    if not lines[0].startswith("dn:"):
        return None
    text = "\n".join(lines)
    if "\r" in text or "\n#" in text:
        return None  # a lone CR (a line break to a text stream) or a comment
    if "\n " in text:
        text = text.replace("\n ", "")  # RFC 2849 unfolding, as the lexer does it
    logical = text.split("\n")
    dn_rest = logical[0][3:]
    if dn_rest[:1] == " ":
        dn = dn_rest.lstrip()
    elif dn_rest[:1] == ":":
        try:
            dn = strict_b64decode(dn_rest[1:].encode("ascii")).decode("utf-8")
        except (ValueError, binascii.Error):
            return None
    elif dn_rest[:1] == "<":
        return None
    else:
        dn = dn_rest
    if dn and dn_problem(dn) is not None:
        return None  # the lexer says what is wrong with it
    if len(logical) > 1 and logical[1].startswith(("control:", "changetype:")):
        return None
    attrs: dict[str, list[bytes]] = {}
    index: dict[str, str] = {}  # lower-case name -> spelling first seen (as Entry keeps)
    names_ok = _NAMES_OK
    for line in logical[1:]:
        key, colon, rest = line.partition(":")
        if not colon:
            return None
        lower = names_ok.get(key)
        if lower is None:
            if not ATTR_NAME.match(key):
                return None
            lower = names_ok[key] = key.lower()
        head = rest[:1]
        if head == " ":
            value = rest.lstrip().encode("utf-8")
        elif head == ":":
            try:
                value = strict_b64decode(rest[1:].encode("ascii"))
            except (ValueError, binascii.Error):
                return None
        elif head == "<":
            return None
        else:
            value = rest.encode("utf-8")
        stored = index.get(lower)
        if stored is None:
            index[lower] = key
            attrs[key] = [value]
        else:
            attrs[stored].append(value)
    return Entry.parsed(dn, attrs, index, start)
