"""The delta report of a run: one folder per run, four files.

``changes.ldif``
    The change records exactly as they were applied (for ``plan`` and
    ``--dry-run``: as they would be), in the order they went to the hub,
    so ``ldapmodify -f changes.ldif`` replays them on a server.
``report.json``
    The run (connection, direction, mode, status ...), the eight counts,
    every changed entry with its attributes before and after and what
    became of it, and every problem (conflicts, errors, skipped entries).
``report.txt``
    The same for people: a summary, one line per changed entry, the
    before and after of each modified attribute, the problems.
``report.html``
    A page that stands on its own: the summary first, then each changed
    entry with a before/after table (the first :data:`HTML_ENTRIES`; the
    JSON file has them all), written by :mod:`dirsync.ldif.htmlreport`, the
    writer ``dirsync diff --format html`` uses too.

In the text and HTML files an attribute with more than one value is shown
by value (the values removed and added, and how many stayed); the JSON file
has both whole lists. The entries of a run stopped by a safety limit are
marked ``not applied``.

Everything is written as it streams past, so a run of any size writes its
report in flat memory.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from dirsync.escapes import line_writer
from dirsync.ldif import htmlreport
from dirsync.ldif.changes import Change, value_changes
from dirsync.ldif.io import LDIFWriter
from dirsync.schema import is_binary
from dirsync.sync.plan import COUNT_NAMES, Counts

HTML_ENTRIES = 2000
#: ``json.dumps(..., ensure_ascii=False)`` without making an encoder per call
#: (one entry of the report each).
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
FILES = {"text": "report.txt", "json": "report.json", "ldif": "changes.ldif",
         "html": "report.html"}


class Problems(Protocol):
    """What a run keeps its problems in: a list, or a spool (dirsync.sync.problemspool)."""

    def append(self, problem: Problem, /) -> None: ...
    def __iter__(self) -> Iterator[Problem]: ...
    def __len__(self) -> int: ...


@dataclass(slots=True)
class Problem:
    """Something about one entry that is not a change: conflict, error, skipped, note."""

    kind: str
    anchor: str | None
    dn: str | None
    message: str
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.anchor is not None:
            found["anchor"] = self.anchor
        if self.dn is not None:
            found["dn"] = self.dn
        if self.line is not None:
            found["line"] = self.line
        return found

    def text(self) -> str:
        where = self.dn or ""
        if self.anchor is not None and (self.dn is None or self.anchor not in self.dn):
            where = f"{where} (anchor {self.anchor})".strip()
        if self.line is not None and f"line {self.line}" not in where:
            where = f"{where} (line {self.line})".strip()
        return f"{self.kind:<9} {where}: {self.message}"


@dataclass
class ReportItem:
    """One changed (or to be changed) entry."""

    kind: str                 # person | list | group | delete | container
    anchor: str | None
    action: str               # add | modify | rename | delete
    dn: str
    old_dn: str | None
    status: str               # planned | applied | failed | not applied
    error: str | None = None
    before: dict[str, list[bytes]] | None = None
    after: dict[str, list[bytes]] | None = None
    notes: list[str] = field(default_factory=list)

    def attributes(self) -> list[tuple[str, list[bytes], list[bytes]]]:
        """(attribute, before, after) for every attribute that differs, by name."""
        if not self.before or not self.after:
            # An add or a delete: every attribute is on one side only.
            side = self.after or self.before or {}
            ordered = sorted(side.items(), key=lambda kv: kv[0].lower())
            if self.after:
                return [(name, [], list(values)) for name, values in ordered if values]
            return [(name, list(values), []) for name, values in ordered if values]
        before = {k.lower(): (k, v) for k, v in (self.before or {}).items()}
        after = {k.lower(): (k, v) for k, v in (self.after or {}).items()}
        rows: list[tuple[str, list[bytes], list[bytes]]] = []
        for key in sorted(set(before) | set(after)):
            name = (after.get(key) or before[key])[0]
            old = before.get(key, ("", []))[1]
            new = after.get(key, ("", []))[1]
            if sorted(old) != sorted(new):
                rows.append((name, list(old), list(new)))
        return rows


def value_text(attr: str, value: bytes) -> str:
    if not is_binary(attr):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return f"(binary, {len(value)} bytes)"


def value_json(attr: str, value: bytes) -> str | dict[str, str]:
    if not is_binary(attr):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"base64": base64.b64encode(value).decode("ascii")}


def _json_values(attr: str, values: list[bytes]) -> list[str | dict[str, str]] | None:
    if not values:
        return None
    if is_binary(attr):
        return [value_json(attr, v) for v in values]
    try:
        return [v.decode("utf-8") for v in values]
    except UnicodeDecodeError:
        return [value_json(attr, v) for v in values]


_string = json.encoder.encode_basestring  # as JSONEncoder(ensure_ascii=False) writes one
#: Per attribute name: are its values shown as base64 (a binary type)?
_BINARY: dict[str, bool] = {}


def _binary(attr: str) -> bool:
    found = _BINARY.get(attr)
    if found is None:
        if len(_BINARY) > 4096:
            _BINARY.clear()   # names come from foreign entries: keep it bounded
        found = _BINARY[attr] = is_binary(attr)
    return found


def _values_json(attr: str, values: list[bytes]) -> str:
    """``_json_values`` as JSON text."""
    if not values:
        return "null"
    if not _binary(attr):
        try:
            if len(values) == 1:
                return "[" + _string(values[0].decode("utf-8")) + "]"
            return "[" + ", ".join([_string(v.decode("utf-8")) for v in values]) + "]"
        except UnicodeDecodeError:
            pass
    return _ENCODE(_json_values(attr, values))


def _attributes_json(item: ReportItem) -> str:
    """An entry's attributes before and after, as JSON text."""
    if not item.before or not item.after:
        # An add or a delete (as attributes() gives them, without its copies).
        side = item.after or item.before or {}
        if item.after:
            return "{" + ", ".join([_added_head(name) + _values_json(name, side[name]) + "}"
                                    for name in _in_order(side) if side[name]]) + "}"
        return "{" + ", ".join([f'{_string(name)}: {{"before": '
                                + _values_json(name, side[name]) + ', "after": null}'
                                for name in sorted(side, key=str.lower) if side[name]]) + "}"
    return "{" + ", ".join([
        f'{_string(name)}: {{"before": {_values_json(name, old)}, '
        f'"after": {_values_json(name, new)}}}'
        for name, old, new in item.attributes()]) + "}"


#: The attribute names of an entry as they come -> sorted as the report
#: lists them (the entries of one mapping have a few such sets).
_ORDERS: dict[tuple[str, ...], list[str]] = {}


def _in_order(attrs: dict[str, list[bytes]]) -> list[str]:
    names = tuple(attrs)
    found = _ORDERS.get(names)
    if found is None:
        if len(_ORDERS) > 256:
            _ORDERS.clear()   # names come from foreign entries: keep it bounded
        found = _ORDERS[names] = sorted(names, key=str.lower)
    return found


#: Per attribute name: its key in an added entry's attributes, up to its values.
_ADDED_HEADS: dict[str, str] = {}


def _added_head(name: str) -> str:
    found = _ADDED_HEADS.get(name)
    if found is None:
        if len(_ADDED_HEADS) > 4096:
            _ADDED_HEADS.clear()   # names come from foreign entries: keep it bounded
        found = _ADDED_HEADS[name] = f'{_string(name)}: {{"before": null, "after": '
    return found


def _head_json(item: ReportItem) -> str:
    """The record of one entry without its attributes and closing brace, as
    ``json.dumps`` of its dict writes it (all its fields are text)."""
    text = (f'{{"action": {_string(item.action)}, "dn": {_string(item.dn)}, '
            f'"status": {_string(item.status)}')
    if item.kind == "container":
        text += ', "container": true'
    if item.anchor is not None:
        text += f', "anchor": {_string(item.anchor)}'
    if item.old_dn is not None:
        text += f', "old_dn": {_string(item.old_dn)}'
    if item.error is not None:
        text += f', "error": {_string(item.error)}'
    if item.notes:
        text += ', "notes": [' + ", ".join([_string(note) for note in item.notes]) + "]"
    return text


def _folder_name(connection: str, direction: str, dry_run: bool) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", connection)
    return f"{stamp}-{safe}-{direction}{'-plan' if dry_run else ''}"


class Report:
    """The report folder of one run.

    While a run applies, :meth:`ldif` records each change and :meth:`item`
    each finished entry (into part files next to the report, so a large
    run's report is written while the server works); :meth:`finish` puts
    the summary in front and the problems behind.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Open while the run applies changes; finish() or discard() closes them.
        self._ldif_stream: IO[str] = open(folder / FILES["ldif"], "w",  # noqa: SIM115
                                          encoding="utf-8", newline="\n")
        self._ldif = LDIFWriter(self._ldif_stream)
        self._ldif.version()
        self._writers = [cls(open(folder / f".{name}.part", "w+",  # noqa: SIM115
                                  encoding="utf-8"))
                         for cls, name in ((_JSONWriter, FILES["json"]),
                                           (_TextWriter, FILES["text"]),
                                           (_HTMLWriter, FILES["html"]))]

    @classmethod
    def create(cls, reports: Path, connection: str, direction: str, run_id: int,
               dry_run: bool) -> Report:
        reports.mkdir(parents=True, exist_ok=True)
        base = _folder_name(connection, direction, dry_run)
        folder = reports / base
        number = 1
        while True:
            try:
                folder.mkdir()
                break
            except FileExistsError:
                number += 1
                folder = reports / f"{base}-{number}"
        report = cls(folder)
        report._ldif.comment(f"dirsync {direction} run {run_id} of connection {connection}"
                             f"{' (plan: nothing was applied)' if dry_run else ''}")
        report._ldif_stream.write("\n")
        return report

    def ldif(self, change: Change) -> None:
        self._ldif.change(change)

    def item(self, item: ReportItem) -> None:
        for writer in self._writers:
            writer.item(item)

    def _close_parts(self) -> None:
        for writer in self._writers:
            writer.body.close()
            Path(writer.body.name).unlink(missing_ok=True)

    def discard(self) -> None:
        self._ldif_stream.close()
        self._close_parts()
        shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self, run: dict[str, Any], counts: Counts, items: Iterable[ReportItem],
               problems: Problems) -> dict[str, Path]:
        """Write ``items`` too, then the files; returns their paths by format."""
        stopped = run.get("status") == "stopped" and not run.get("dry_run")
        for item in items:
            if stopped and item.status == "planned":
                # A safety stop refused them all: say so on each one.
                item = replace(item, status="not applied")
            self.item(item)
        self._ldif_stream.close()
        paths = {kind: self.folder / name for kind, name in FILES.items()}
        for writer, kind in zip(self._writers, ("json", "text", "html")):
            with open(paths[kind], "w", encoding="utf-8") as out:
                writer.start(out, run, counts, paths)
                writer.body.flush()
                writer.body.seek(0)
                # (In pieces of 64 KiB: a run's peak memory is often here.)
                shutil.copyfileobj(writer.body, out, 1 << 16)
                writer.problems(out, problems)
                writer.end(out)
        self._close_parts()
        return paths


class _JSONWriter:
    def __init__(self, body: IO[str]) -> None:
        self.body = body
        self.first = True

    def start(self, out: IO[str], run: dict[str, Any], counts: Counts,
              paths: dict[str, Path]) -> None:
        head = {"run": run, "counts": counts.as_dict(),
                "files": {k: p.name for k, p in paths.items()}}
        text = json.dumps(head, ensure_ascii=False, indent=1)
        out.write(text[:-2] + ',\n "entries": [')

    def item(self, item: ReportItem) -> None:
        # The same text as json.dumps of the whole record, written piece by
        # piece (the C encoder's set-up costs more than the record): a first
        # sync writes one per entry.
        self.body.write(("\n  " if self.first else ",\n  ") + _head_json(item)
                        + ', "attributes": ' + _attributes_json(item) + "}")
        self.first = False

    def problems(self, out: IO[str], problems: Problems) -> None:
        out.write("\n ],\n \"problems\": [")
        for i, problem in enumerate(problems):
            out.write(("\n  " if i == 0 else ",\n  ")
                      + json.dumps(problem.as_json(), ensure_ascii=False))
        out.write("\n ]\n")

    def end(self, out: IO[str]) -> None:
        out.write("}\n")


def entries_heading(run: dict[str, Any]) -> str:
    """What the list of entries is: changes made, planned, or refused by a stop."""
    if run.get("status") == "stopped":
        if run.get("dry_run"):
            return "Changes planned: a sync would stop before applying them"
        return "Changes not applied: the run stopped before changing anything"
    if run.get("dry_run"):
        return "Changes planned (nothing was applied)"
    return "Changed entries"


def summary_lines(run: dict[str, Any], counts: Counts) -> list[str]:
    what = "plan" if run.get("dry_run") else "sync"
    lines = [
        (f"dirsync {run['direction']}: connection {run['connection']}, {what} "
        f"({run['mode']} run {run['run']}), {run['started']}"),
        f"status: {run['status']}" + (f" ({run['message']})" if run.get("message") else ""),
        f"from {run['source']} into {run['container']} (hub {run['hub']})",
        "counts: " + ", ".join(f"{name} {getattr(counts, name)}" for name in COUNT_NAMES),
    ]
    return lines


class _TextWriter:
    WIDTH = 8

    def __init__(self, body: IO[str]) -> None:
        self.body = body
        self.any = False

    def start(self, out: IO[str], run: dict[str, Any], counts: Counts,
              paths: dict[str, Path]) -> None:
        for line in summary_lines(run, counts):
            line_writer(out.write)(line + "\n")
        out.write(f"report: {paths['text'].parent}\n")
        if run.get("status") == "stopped" and self.any:
            out.write(f"\n{entries_heading(run)}:")

    def item(self, item: ReportItem) -> None:
        write = line_writer(self.body.write)  # foreign values: no terminal controls
        if not self.any:
            write("\n")
            self.any = True
        label = item.action if item.kind != "container" else "add"
        target = item.dn if item.old_dn is None else f"{item.old_dn} -> {item.dn}"
        line = f"{label:<{self.WIDTH}} {target}"
        if item.kind == "container":
            line += "  (a container)"
        elif item.anchor is not None and item.action != "delete":
            line += f"  [{item.anchor}]"
        if item.status not in ("planned", "applied"):
            line += f"  ** {item.status}"
            if item.error:
                line += f": {item.error}"
        write(line + "\n")
        if item.action in ("modify", "rename"):
            for name, old, new in item.attributes():
                write(f"{'':<{self.WIDTH}}   {name}: {_text_row(name, old, new)}\n")
        for note in item.notes:
            write(f"{'':<{self.WIDTH}}   note: {note}\n")

    def problems(self, out: IO[str], problems: Problems) -> None:
        if problems:
            out.write("\n")
        for problem in problems:
            line_writer(out.write)(problem.text() + "\n")

    def end(self, out: IO[str]) -> None:
        pass


def _show(attr: str, values: list[bytes]) -> str:
    if not values:
        return "(none)"
    return ", ".join(json.dumps(value_text(attr, v), ensure_ascii=False) for v in values)


def _text_row(attr: str, old: list[bytes], new: list[bytes]) -> str:
    """``before -> after``; with more than one value on a side, the values
    removed and added (as in the HTML page), not both whole lists."""
    if not (old and new and (len(old) > 1 or len(new) > 1)):
        return f"{_show(attr, old)} -> {_show(attr, new)}"
    found = value_changes(attr, old, new)
    parts = []
    removed = found.removed + [o for o, _ in found.respelled]
    added = found.added + [n for _, n in found.respelled]
    if removed:
        parts.append(f"removed {_show(attr, removed)}")
    if added:
        parts.append(f"added {_show(attr, added)}")
    if found.kept:
        parts.append(f"{found.kept} unchanged")
    return "; ".join(parts)


class _HTMLWriter:
    """The page: built from the shared pieces of :mod:`dirsync.ldif.htmlreport`."""

    def __init__(self, body: IO[str]) -> None:
        self.body = body
        self.count = 0
        self.total = 0

    def start(self, out: IO[str], run: dict[str, Any], counts: Counts,
              paths: dict[str, Path]) -> None:
        e = htmlreport.escape
        what = "plan" if run.get("dry_run") else "sync"
        title = f"dirsync {run['direction']} {what}: {run['connection']} (run {run['run']})"
        w = out.write
        w(htmlreport.page_start(title))
        w("<section id=\"summary\">\n")
        w(f'<p>Status: <strong class="status-{e(run["status"])}" id="status">'
          f'{e(run["status"])}</strong>')
        if run.get("message"):
            w(f" &mdash; {e(str(run['message']))}")
        w("</p>\n")
        w(htmlreport.counts_table((name, name, getattr(counts, name)) for name in COUNT_NAMES))
        fields = [(label, str(run[key])) for label, key in (
            ("Connection", "connection"), ("Direction", "direction"), ("Mode", "mode"),
            ("Source", "source"), ("Import container", "container"), ("Hub", "hub"),
            ("Mapping", "mapping"), ("Started", "started"), ("Ended", "ended"))
            if run.get(key) is not None]
        fields.append(("Dry run", "yes" if run.get("dry_run") else "no"))
        w(htmlreport.fields_table(fields))
        w("<p>Files: " + ", ".join(
            f'<a href="{e(p.name)}">{e(p.name)}</a>' for p in paths.values()) + "</p>\n")
        w(f"</section>\n<section id=\"entries\">\n<h2>{e(entries_heading(run))}</h2>\n")

    def item(self, item: ReportItem) -> None:
        self.total += 1
        if self.count >= HTML_ENTRIES:
            return
        self.count += 1
        e = htmlreport.escape
        lines = []
        if item.kind == "container":
            lines.append("a container")
        if item.anchor is not None:
            lines.append(f"anchor <code>{e(item.anchor)}</code>")
        if item.status not in ("planned", "applied"):
            lines.append(f'<span class="failed">{e(item.status)}'
                         + (f": {e(item.error)}" if item.error else "") + "</span>")
        lines.extend(f"note: {e(note)}" for note in item.notes)
        self.body.write(htmlreport.block(item.action, item.dn, old_dn=item.old_dn,
                                         lines=lines, rows=item.attributes()))

    def problems(self, out: IO[str], problems: Problems) -> None:
        e = htmlreport.escape
        w = out.write
        if self.total == 0:
            w("<p>No changes.</p>\n")
        elif self.total > self.count:
            w(f"<p>The first {self.count} of {self.total} changed entries are shown; "
              "report.json has them all.</p>\n")
        w("</section>\n")
        if problems:
            w("<section id=\"problems\"><h2>Conflicts, errors, skipped entries</h2><table>"
              "<tr><th>kind</th><th>entry</th><th>line</th><th>message</th></tr>")
            for problem in problems:
                w(f"<tr><td>{e(problem.kind)}</td><td>"
                  + (htmlreport.dn_html(problem.dn) if problem.dn else "")
                  + (f" (anchor <code>{e(problem.anchor)}</code>)" if problem.anchor else "")
                  + f"</td><td>{problem.line or ''}</td><td>{e(problem.message)}</td></tr>")
            w("</table></section>\n")

    def end(self, out: IO[str]) -> None:
        out.write(htmlreport.page_end())


def printable(path: Path, limit: int | None = None) -> Iterator[str]:
    """The lines of a report file; with ``limit``, at most that many and a pointer."""
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream):
            if limit is not None and number >= limit:
                yield f"... (the rest is in {path})\n"
                return
            yield line
