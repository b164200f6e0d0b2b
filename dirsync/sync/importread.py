"""Step 2 of an import (:class:`dirsync.sync.engine.ImportRun`): read and map the source.

One entry at a time: an entry whose source hash, DN and mapping are as the
state recorded is unchanged without mapping it; every other one is checked
against its syntax, mapped, and waits in a spool (a :class:`_Target`) for
the plan. A file source is read a few dozen entries ahead, so that their
state rows and hub records are asked for together (:func:`looked_ahead`).
The anchors seen and kept are in the run's scratch database
(:mod:`dirsync.sync.scratch`). These functions are the run's methods (the
run binds them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from dirsync.addresses.values import Problem as ValueProblem
from dirsync.addresses.values import mapped_problems, screen_for
from dirsync.entry import Entry, same_dn
from dirsync.errors import ConfigError
from dirsync.interrupt import stop_requested
from dirsync.mapping.exportmap import exported_by
from dirsync.mapping.mapfile import (
    KIND_LIST,
)
from dirsync.mapping.templates import SourceView, TemplateError
from dirsync.sync.importitems import _Target
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.plan import (
    member_key_fold,
    source_hash,
)
from dirsync.sync.report import Problem
from dirsync.sync.scratch import DiskSubset, prefetch
from dirsync.sync.spool import Spool

#: Source entries read ahead, whose lookups go to the scratch tables together.
LOOKAHEAD = 64
#: The mark of a kept anchor in the table of anchors seen.
KEPT = 1
#: Source kinds that are read ahead (:func:`looked_ahead`).
FILE_KINDS = frozenset({"csv", "ldif"})


def check_attribute_types(run: ImportSteps) -> None:
    """The templates name attribute types the source server has."""
    known = run.foreign.attribute_types()
    if known:
        problems = run.selected.mapping.check_source_names(
            known, f"not an attribute type of {run.foreign.server_url}")
        if problems:
            raise ConfigError(problems)


def source_entries_iter(run: ImportSteps) -> Iterator[Entry]:
    """A file's (or a memory directory's, or AD's) entries, after checking that
    the templates' columns exist. An LDAP source is read by its feed
    (:func:`dirsync.sync.importchanges.source_entries_iter`)."""
    foreign = run.foreign
    entries = iter(foreign.read())
    first = next(entries, None)
    header = getattr(foreign, "header", None) if foreign.kind == "csv" else None
    if header:
        check_columns(run, header)
    if first is not None:
        yield first
    yield from entries


def check_columns(run: ImportSteps, header: list[str]) -> None:
    """The templates name columns a CSV source has."""
    problems = run.selected.mapping.check_source_names(
        header, f"the columns of {run.foreign.path} are: {', '.join(header)}")
    if problems:
        raise ConfigError(problems)


def read_source(run: ImportSteps) -> None:
    run.begin_read()
    for entry in run.looked_ahead(run.source_entries_iter()):
        if stop_requested.is_set():
            return   # the run ends here (see _run); no plan on a partial read
        target = run.consider(entry)
        if target is not None:
            run.keep_target(target)
    run.end_read()


def looked_ahead(run: ImportSteps, entries: Iterable[Entry]) -> Iterator[Entry]:
    """The entries, read :data:`LOOKAHEAD` at a time from a file source.

    The anchors of a batch are worked out first, and the state rows and
    hub records that the batch will ask about are read in a few queries (the run keeps them on disk, :mod:`dirsync.sync.scratch`),
    instead of one query per entry. Each anchor is kept for
    :func:`consider_mapped` (with the template budget it was worked out
    in). A directory source is read as it comes: its change reads follow
    the entry being considered.
    """
    if run.foreign.kind not in FILE_KINDS:
        yield from entries
        return
    selected = run.selected
    batch: list[Entry] = []
    iterator = iter(entries)
    while True:
        batch = list(itertools.islice(iterator, LOOKAHEAD))
        if not batch:
            return
        anchors: list[str] = []
        peeked: dict[int, tuple[SourceView, str | TemplateError]] = {}
        for entry in batch:
            if run._exported is not None and run._exported(entry):
                continue
            view = selected.view(entry)
            with run.budget.entry():
                try:
                    anchor: str | TemplateError = selected.anchor(view)
                except TemplateError as exc:
                    anchor = exc
            peeked[id(entry)] = (view, anchor)
            if isinstance(anchor, str) and anchor:
                anchors.append(anchor)
        # (The anchors seen have a Bloom filter: a new one costs no query.)
        for table in (run.state_rows, run.index.ours):
            prefetch(table, anchors)
        for entry in batch:
            run._peeked = peeked.get(id(entry))
            yield entry
        run._peeked = None


def begin_read(run: ImportSteps) -> None:
    selected = run.selected
    run.targets = Spool()
    run.wanted = []      # (anchor, RDN value) to place
    run.held = set()                  # anchors with errors: left as they are
    run.seen = run.scratch.set()
    # Unchanged, known without mapping: marked in the same rows as seen.
    run.kept = DiskSubset(run.seen.table, KEPT)
    run._peeked = None
    run.member_keys = {}
    run.unreadable = 0                          # source entries without a known anchor
    run.source_entries = 0
    run._groups = selected.list_mode == "group" and selected.list_part is not None
    run._by_dn = selected.mapping.member_key == "dn"
    # Loop prevention: what this connection exported comes back marked.
    run._exported = exported_by(selected.mapping.export, run.name)
    run._returned = 0
    run.screen = screen_for(selected.mapping)
    run.progress.start("reading the source")


def consider(run: ImportSteps, entry: Entry) -> _Target | None:
    """One source entry: unchanged, skipped, an error, or a mapped target."""
    with run.budget.entry():
        return run.consider_mapped(entry)


def consider_mapped(run: ImportSteps, entry: Entry) -> _Target | None:
    selected = run.selected
    run.source_entries += 1
    run.progress.advance()
    if run._exported is not None and run._exported(entry):
        run._returned += 1
        return None
    peeked = run._peeked
    if peeked is not None:
        view, anchor = peeked
    else:
        view = selected.view(entry)
        try:
            anchor = selected.anchor(view)
        except TemplateError as exc:
            anchor = exc
    if isinstance(anchor, TemplateError):
        run.unreadable += 1
        run.entry_problem("error", entry, None, f"no anchor: {run.where(anchor)}")
        return None
    if not anchor:
        run.unreadable += 1
        run.entry_problem("error", entry, None, "the anchor template yields nothing "
                           f"({selected.mapping.where('anchor.value')})")
        return None
    if anchor in run.seen:
        run.entry_problem("error", entry, anchor, "another source entry has the same "
                           f"anchor {anchor!r}: this one is skipped")
        return None
    row = run.state_rows.get(anchor)
    view.extra["anchor"] = anchor
    digest = source_hash(entry)
    if run._groups:
        try:
            key = selected.member_key(view, anchor)
        except TemplateError as exc:
            key = ""
            run.problems.append(Problem("note", anchor, entry.dn, run.where(exc),
                                         entry.line))
        if key:
            run.member_keys[member_key_fold(key, run._by_dn)] = anchor
    if row is not None and row.hash == digest and row.kind != "group":
        record = run.index.ours.get(anchor)
        if record is not None and same_dn(record.dn, row.dn):
            run.kept.add(anchor)        # seen, and kept: one row
            run.counts.unchanged += 1
            return None
    run.seen.add(anchor)
    # Values are checked before mapping. An unchanged entry passed when
    # it was synced (the state holds hashes of accepted entries only).
    bad = run.screen.problems(entry.dn, entry.attrs)
    if bad:
        run.held.add(anchor)
        run.entry_problem("error", entry, anchor, run.bad_values(entry, bad))
        return None
    try:
        kind = selected.kind(view)
        if kind is None:
            run.counts.skipped += 1
            run.problems.append(Problem("skipped", anchor, entry.dn,
                                         run.skip_reason(view), entry.line))
            return None
        mapped = selected.map(view, anchor, kind)
    except TemplateError as exc:
        run.held.add(anchor)
        run.entry_problem("error", entry, anchor, run.where(exc))
        return None
    bad = mapped_problems(mapped.attrs)
    if bad:
        run.held.add(anchor)
        run.entry_problem("error", entry, anchor, "the mapping makes a bad address: "
                           + run.bad_values(entry, bad))
        return None
    if not mapped.rdn_value:
        run.held.add(anchor)
        run.entry_problem("error", entry, anchor, "the RDN template yields nothing ("
                           f"{selected.mapping.where('rdn.value')})")
        return None
    state_kind = "group" if kind == KIND_LIST and selected.list_mode == "group" else kind
    run.addresses.claim(anchor, mapped.attrs)
    return _Target(anchor, state_kind, digest, mapped.rdn_value, mapped.attrs,
                   mapped.object_classes, mapped.members, entry.line)


def keep_target(run: ImportSteps, target: _Target) -> None:
    """A mapped entry waits for the plan (its DN, its compare)."""
    run.targets.append(target.record())
    run.wanted.append((target.anchor, target.rdn_value))


def end_read(run: ImportSteps) -> None:
    if run._returned:
        run.counts.skipped += run._returned
        run.problems.append(Problem("note", None, None, f"{run._returned} source "
                                     "entries carry this connection's export marker: hub "
                                     "recipients exported here, not imported back", None))
    for rejected in getattr(run.foreign, "rejected", []):
        run.unreadable += 1
        run.counts.error += 1
        run.problems.append(Problem("error", None, rejected.dn, rejected.message,
                                     rejected.line))


def bad_values(run: ImportSteps, entry: Entry, problems: list[ValueProblem]) -> str:
    """File, line and fields of an entry whose values fail their syntax."""
    path = getattr(run.foreign, "path", None) or getattr(run.foreign, "name", "")
    at = f"{path}:{entry.line}" if entry.line is not None else str(path)
    return (f"{at}: " + "; ".join(str(p) for p in problems)
            + "; the entry is skipped (nothing of it is applied)")


def where(run: ImportSteps, exc: TemplateError) -> str:
    mapping = run.selected.mapping
    line = exc.line or mapping.line_of(exc.key)
    at = f"{mapping.path}:{line}" if line else str(mapping.path)
    return f"{at}: {exc.key}: {exc.message}"


def skip_reason(run: ImportSteps, view: SourceView) -> str:
    mapping = run.selected.mapping
    if mapping.skip is not None and mapping.skip.truth(view):
        return f"the mapping's skip rule: {mapping.skip.source}"
    return "a distribution list, and this connection has lists = \"skip\""


def entry_problem(run: ImportSteps, kind: str, entry: Entry, anchor: str | None, message: str) -> None:
    run.counts.bump(kind)
    run.problems.append(Problem(kind, anchor, entry.dn, message, entry.line))
