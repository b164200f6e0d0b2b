"""``dirsync diff --format html``: the delta of two directories as one page.

The page is the sync report's (:mod:`dirsync.ldif.htmlreport`): a header with
both inputs, the key attribute and the ignore list; the counts; then one
section per kind of change (added, modified, renamed, deleted), each a
``<details>`` element (open when it is short), holding one colour-coded
block per change: its DN, then its attributes before and after.

Written as a stream: each section goes to a temporary file as the diff
produces it, and the page is put together at the end (the counts come
first), so memory stays flat however large the diff. What a browser gets
stays bounded too: a section shows its first :data:`BLOCKS` changes as
blocks, the DNs of the next :data:`NAMES`, and counts the rest.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from dirsync.entry import Entry
from dirsync.ldif import htmlreport
from dirsync.ldif.changes import Change
from dirsync.ldif.diff import Summary
from dirsync.schema import DEFAULT_DIFF_IGNORE

# Per section: changes shown as blocks, then changes shown by DN alone.
BLOCKS = 1000
NAMES = 10000
# A section with at most this many changes starts open.
OPEN_UP_TO = 100

# (section id, heading, block class) by change kind.
SECTIONS = {"add": ("added", "Added", "add"), "modify": ("modified", "Modified", "modify"),
            "modrdn": ("renamed", "Renamed", "rename"), "delete": ("deleted", "Deleted", "delete")}

Row = tuple[str, Sequence[bytes], Sequence[bytes]]


def change_rows(change: Change, before: Entry | None, after: Entry | None) -> list[Row]:
    """(attribute, before, after) for each attribute the change touches.

    An add has only values after, a delete only values before (when the
    entry is known); a modify shows the attributes its modifications name,
    with their values before and after it, for :func:`htmlreport.attribute_row`
    to show by value."""
    if change.kind == "add":
        attrs = change.attrs or (after.attrs if after is not None else {})
        return [(name, [], values) for name, values in _by_name(attrs.items())]
    if change.kind == "delete":
        if before is None:
            return []
        return [(name, values, []) for name, values in _by_name(before.attrs.items())]
    if change.kind != "modify":
        return []
    names = list(dict.fromkeys(mod.attr.lower() for mod in change.mods))
    rows: list[Row] = []
    for low in names:
        mods = [m for m in change.mods if m.attr.lower() == low]
        if before is not None and after is not None:
            rows.append((mods[0].attr, before.get(low), after.get(low)))
            continue
        # No entries: what the modifications themselves say.
        old = [v for m in mods if m.op == "delete" for v in m.values]
        new = [v for m in mods if m.op in ("add", "replace") for v in m.values]
        rows.append((mods[0].attr, old, new))
    return rows


def _by_name(items: Iterable[tuple[str, list[bytes]]]) -> list[tuple[str, list[bytes]]]:
    return sorted(((k, v) for k, v in items if v), key=lambda kv: kv[0].lower())


@dataclass
class _Section:
    """One kind of change: its blocks and names in temporary files."""

    ident: str
    heading: str
    css: str
    tmpdir: str | None
    count: int = 0
    parts: list[IO[str]] = field(default_factory=list)  # blocks, then names

    def _part(self, number: int) -> IO[str]:
        while len(self.parts) <= number:
            # Open until close(), which the sink's close() or abort() calls.
            self.parts.append(tempfile.TemporaryFile(  # noqa: SIM115
                "w+", encoding="utf-8", dir=self.tmpdir))
        return self.parts[number]

    def add(self, change: Change, before: Entry | None, after: Entry | None) -> None:
        self.count += 1
        if self.count <= BLOCKS:
            self._part(0).write(_block(self.css, change, before, after))
        elif self.count <= BLOCKS + NAMES:
            shown = htmlreport.dn_html(change.dn)
            if change.kind == "modrdn":
                shown += " &rarr; " + htmlreport.dn_html(change.target_dn)
            self._part(1).write(f"<li>{shown}</li>\n")

    def write(self, out: IO[str]) -> None:
        opened = " open" if self.count <= OPEN_UP_TO else ""
        out.write(f'<section id="{self.ident}"><details{opened}><summary>{self.heading} '
                  f'<span class="section-count">({self.count:,})</span></summary>\n')
        if self.parts:
            _copy(self.parts[0], out)
        if self.count > BLOCKS:
            named = min(self.count, BLOCKS + NAMES) - BLOCKS
            out.write(f'<p class="more">The first {BLOCKS:,} are shown above in full; '
                      f"the next {named:,} by DN:</p>\n<ul class=\"dns\">\n")
            _copy(self.parts[1], out)
            out.write("</ul>\n")
        if self.count > BLOCKS + NAMES:
            out.write(f'<p class="more" id="{self.ident}-rest">and '
                      f"{self.count - BLOCKS - NAMES:,} more, not shown here: "
                      "<code>--format text</code> or <code>ldif</code> lists them all.</p>\n")
        if not self.count:
            out.write("<p>None.</p>\n")
        out.write("</details></section>\n")

    def close(self) -> None:
        for part in self.parts:
            part.close()
        self.parts.clear()


def _copy(part: IO[str], out: IO[str]) -> None:
    part.flush()
    part.seek(0)
    shutil.copyfileobj(part, out, 1 << 20)


def _block(css: str, change: Change, before: Entry | None, after: Entry | None) -> str:
    if change.kind == "modrdn":
        lines = []
        if change.newsuperior is not None:
            lines.append("moved to another parent")
        return htmlreport.block(css, change.target_dn, old_dn=change.dn, lines=lines)
    return htmlreport.block(css, change.dn, rows=change_rows(change, before, after))


class HTMLSink:
    """The diff as one HTML page (an :class:`dirsync.ldif.diff.EntrySink`)."""

    def __init__(self, out: IO[str], *, old: str, new: str, key: str | None = None,
                 ignore: Iterable[str] = DEFAULT_DIFF_IGNORE,
                 tmpdir: str | None = None) -> None:
        self.out = out
        self.old, self.new, self.key = old, new, key
        self.ignore = frozenset(i.lower() for i in ignore)
        self.sections = {kind: _Section(ident, heading, css, tmpdir)
                         for kind, (ident, heading, css) in SECTIONS.items()}

    def write(self, change: Change) -> None:
        self.write_entry(change, None, None)

    def write_entry(self, change: Change, before: Entry | None, after: Entry | None) -> None:
        self.sections[change.kind].add(change, before, after)

    def close(self, summary: Summary) -> None:
        try:
            self._page(summary)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop what was written so far (the diff failed)."""
        for section in self.sections.values():
            section.close()

    def _page(self, summary: Summary) -> None:
        w = self.out.write
        w(htmlreport.page_start(f"dirsync diff: {self.old} \u2192 {self.new}"))
        w('<section id="summary">\n')
        w(htmlreport.counts_table([
            ("added", "added", summary.added), ("modified", "modified", summary.modified),
            ("renamed", "renamed", summary.renamed), ("deleted", "deleted", summary.deleted)]))
        w(htmlreport.fields_table([
            ("Old", self.old), ("New", self.new),
            ("Entries", f"{summary.old_entries:,} old, {summary.new_entries:,} new"),
            ("Key attribute", self.key or "none: entries are matched by DN"),
            ("Ignored attributes", self._ignored()),
            ("Written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))]))
        if not summary.changes:
            w('<p id="no-differences">No differences.</p>\n')
        w("</section>\n")
        for section in self.sections.values():
            section.write(self.out)
        w(htmlreport.page_end())

    def _ignored(self) -> str:
        extra = sorted(self.ignore - DEFAULT_DIFF_IGNORE)
        defaults = DEFAULT_DIFF_IGNORE <= self.ignore
        parts = [", ".join(extra)] if extra else []
        if defaults:
            parts.append(f"the {len(DEFAULT_DIFF_IGNORE)} operational attributes a server "
                         "keeps for itself (createTimestamp, entryCSN, ...)")
        return "; and ".join(parts) if parts else "none"
