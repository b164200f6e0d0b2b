"""The hub's DN and anchor of each entry of a connection, read in C.

An import run that compares by state (not a full one) needs of each hub
entry of its connection only the DN and the anchor. Taken through
python-ldap, each entry becomes a dictionary of lists first, which made
scanning a hub of a million entries take seconds. The compiled reader
(:mod:`dirsync.ldif._ldifstream`, the one ``dirsync export`` writes LDIF
with) writes the search results to a temporary file instead, unfolded,
and the two lines wanted are picked from it here.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from dirsync.directories import ReadOptions
from dirsync.ldif.io import LDIFWriter

#: Wide enough that no line is folded.
_NO_FOLD = 1 << 30


def dn_and_anchor(hub: Any, options: ReadOptions, anchor_attr: str
                  ) -> Iterator[tuple[str, str | None]] | None:
    """(DN, first anchor value or None) of each entry ``hub.read(options)`` would
    give; None, having read nothing, when the compiled reader cannot be used."""
    write = getattr(hub, "write_ldif", None)
    if write is None:
        return None
    spill = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="dirsync-scan-")  # noqa: SIM115
    try:
        written = write(options, spill, LDIFWriter(spill, cols=_NO_FOLD))
    except BaseException:
        spill.close()
        raise
    if written is None:
        spill.close()
        return None
    return _parse(spill, anchor_attr.lower().encode("ascii"))


def _value(rest: bytes) -> bytes:
    if rest.startswith(b":"):
        return base64.b64decode(rest[1:].strip())
    return rest[1:] if rest.startswith(b" ") else rest


def _parse(spill: IO[str], anchor_attr: bytes) -> Iterator[tuple[str, str | None]]:
    try:
        fd = spill.fileno()
        os.lseek(fd, 0, os.SEEK_SET)
        with open(fd, "rb", closefd=False, buffering=1 << 20) as raw:
            dn: str | None = None
            anchor: str | None = None
            for line in raw:
                if line == b"\n":
                    if dn is not None:
                        yield dn, anchor
                    dn = anchor = None
                    continue
                name, _, rest = line.rstrip(b"\n").partition(b":")
                name = name.lower()
                if name == b"dn":
                    dn = _value(rest).decode("utf-8", "replace")
                elif name == anchor_attr and anchor is None and dn is not None:
                    anchor = _value(rest).decode("utf-8", "replace")
            if dn is not None:
                yield dn, anchor
    finally:
        spill.close()
