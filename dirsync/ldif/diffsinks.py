"""``dirsync diff``'s output: where its change records go, and its summary.

A sink takes the change records :func:`dirsync.ldif.diff.diff` writes: RFC
2849 LDIF for ``ldapmodify``, JSON Lines, or a text summary for a person
(the HTML report is :mod:`dirsync.ldif.diffhtml`). :class:`Summary` counts
what was written.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

from dirsync.entry import Entry
from dirsync.escapes import line_writer
from dirsync.ldif.changes import Change
from dirsync.ldif.io import LDIFWriter
from dirsync.schema import is_binary


@dataclass
class Summary:
    added: int = 0
    modified: int = 0
    renamed: int = 0
    deleted: int = 0
    old_entries: int = 0
    new_entries: int = 0
    sorted_inputs: list[str] = field(default_factory=list)

    def count(self, change: Change) -> None:
        if change.kind == "add":
            self.added += 1
        elif change.kind == "delete":
            self.deleted += 1
        elif change.kind == "modrdn":
            self.renamed += 1
        else:
            self.modified += 1

    @property
    def changes(self) -> int:
        return self.added + self.modified + self.renamed + self.deleted

    def describe(self) -> str:
        if not self.changes:
            return "no differences"
        return (f"{self.added} added, {self.modified} modified, {self.renamed} renamed, "
                f"{self.deleted} deleted")

    def as_dict(self) -> dict[str, int]:
        return {"added": self.added, "modified": self.modified, "renamed": self.renamed,
                "deleted": self.deleted, "old_entries": self.old_entries,
                "new_entries": self.new_entries}


class ChangeSink(Protocol):
    def write(self, change: Change) -> None: ...

    def close(self, summary: Summary) -> None: ...


class EntrySink(ChangeSink, Protocol):
    """A sink that shows entries (the HTML report): :func:`diff` calls its
    ``write_entry`` instead of ``write``, with the entry as it is before the
    change and after it (``None`` where not known: an early rename)."""

    def write_entry(self, change: Change, before: Entry | None,
                    after: Entry | None) -> None: ...


class LDIFSink:
    """RFC 2849 change records, ready for ``ldapmodify``."""

    def __init__(self, out: IO[str]) -> None:
        self.writer = LDIFWriter(out)
        self.started = False

    def write(self, change: Change) -> None:
        if not self.started:
            self.writer.version()
            self.started = True
        self.writer.change(change)

    def close(self, summary: Summary) -> None:
        pass


def json_value(attr: str, value: bytes) -> str | dict[str, str]:
    """A value as JSON: text, or ``{"base64": ...}`` for binary and non-UTF-8."""
    if not is_binary(attr):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"base64": base64.b64encode(value).decode("ascii")}


def change_json(change: Change) -> dict[str, object]:
    """One change record as a JSON object (the LDIF field names)."""
    out: dict[str, object] = {"changetype": change.kind, "dn": change.dn}
    if change.kind == "add":
        out["attributes"] = {k: [json_value(k, v) for v in vs]
                             for k, vs in (change.attrs or {}).items()}
    elif change.kind == "modify":
        out["modifications"] = [{"op": m.op, "attribute": m.attr,
                                 "values": [json_value(m.attr, v) for v in m.values]}
                                for m in change.mods]
    elif change.kind == "modrdn":
        out.update(newrdn=change.newrdn, deleteoldrdn=change.deleteoldrdn,
                   newsuperior=change.newsuperior)
    return out


class JSONSink:
    """One JSON object per line per change (JSON Lines)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, change: Change) -> None:
        self.out.write(json.dumps(change_json(change), ensure_ascii=False) + "\n")

    def close(self, summary: Summary) -> None:
        pass


def _show(attr: str, value: bytes, width: int = 72) -> str:
    shown = json_value(attr, value)
    if isinstance(shown, dict):
        return f"<{len(value)} bytes>"
    return shown if len(shown) <= width else shown[:width - 3] + "..."


class TextSink:
    """A human summary: one line per entry, the attribute changes under it."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, change: Change) -> None:
        write = line_writer(self.out.write)
        if change.kind == "modrdn":
            write(f"> {change.dn}\n    renamed to {change.target_dn}\n")
        elif change.kind == "add":
            write(f"+ {change.dn}\n")
            for attr, values in (change.attrs or {}).items():
                for value in values:
                    write(f"    {attr}: {_show(attr, value)}\n")
        elif change.kind == "delete":
            write(f"- {change.dn}\n")
        else:
            write(f"~ {change.dn}\n")
            for mod in change.mods:
                shown = ", ".join(_show(mod.attr, v) for v in mod.values)
                if mod.op == "delete" and not mod.values:
                    write(f"    delete {mod.attr}\n")
                else:
                    write(f"    {mod.op} {mod.attr}: {shown}\n")

    def close(self, summary: Summary) -> None:
        self.out.write(f"{summary.describe()}\n")


SINKS: dict[str, Callable[[IO[str]], ChangeSink]] = {
    "ldif": LDIFSink, "json": JSONSink, "text": TextSink}
