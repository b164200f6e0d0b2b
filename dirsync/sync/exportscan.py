"""Step 1 of an export (:class:`dirsync.sync.exportrun.ExportRun`): scan the foreign side.

Every entry the connection exported before is found by the mapping's
marker attribute (the connection's name) and its anchor attribute;
everything else there is the foreign system's own and is never changed.
These functions are the run's methods (the run binds them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dirsync.directories import ReadOptions
from dirsync.entry import Entry, normalize_dn, parent_dn
from dirsync.sync.exportsteps import ExportSteps
from dirsync.sync.report import Problem


def foreign_entries(run: ExportSteps) -> Iterator[Entry]:
    if run.csv:
        yield from run.foreign.read()
        run.unreadable_rows = len(run.foreign.rejected)
        for rejected in run.foreign.rejected:
            run.problems.append(Problem("error", None, rejected.dn, "the foreign file has "
                                         f"a row that cannot be read: {rejected.message}",
                                         rejected.line))
        return
    if run.foreign.kind == "ad":
        # Every object, recipient or not: a name any of them holds is taken.
        yield from run.foreign.read_below(ReadOptions(base=run.container, scope="sub",
                                                      attrs=["*"]))
        return
    if run.foreign.kind == "ldap":
        options = ReadOptions(base=run.container, scope="sub", attrs=["*"])
    else:
        options = ReadOptions(base=run.container, scope="sub")
    yield from run.foreign.read(options)


def marked(run: ExportSteps, entry: Entry) -> bool:
    """Does a foreign entry carry this connection's marker (is it the connection's)?"""
    owner = entry.first(run.export.marker_attribute)
    if owner is None or owner.strip().casefold() != run.name.casefold():
        return False
    # In AD only a contact can be the export's: a marker on a user is not ours.
    return run.ad is None or run.ad.may_own(entry)


def own_anchor(run: ExportSteps, entry: Entry) -> str | None:
    """The anchor of a foreign entry of this connection; None for anyone else's."""
    return (entry.first(run.export.anchor_attribute) or None) if run.marked(entry) \
        else None


def scan_foreign(run: ExportSteps, planned: Callable[[str], bool] | None = None) -> None:
    """Index the foreign side: our entries by anchor, the DNs of everyone else's.

    With ``planned``, only the entries of the anchors it accepts are held; the
    names of the connection's others are kept (on disk: a file may be large).
    """
    run.ours = run.scratch.entries()     # (a foreign side may be large)
    run.unowned = {}
    #: normalized DN -> anchor: names this connection's entries keep, for
    #: entries this run does not plan (an incremental run plans only changes)
    run.others = {} if planned is None else run.scratch.map()
    #: anchor -> DN of the connection's entries not held (to tell a second one)
    elsewhere = None if planned is None else run.scratch.map()
    run.container_exists = run.csv
    anchor_attr = run.export.anchor_attribute
    container_key = normalize_dn(run.container)

    def holder(anchor: str) -> str | None:
        """The DN of the entry that has ``anchor`` already, if one has."""
        found = run.ours.get(anchor)
        if found is not None:
            return found.dn
        return None if elsewhere is None else elsewhere.get(anchor)

    run.progress.start("scanning the foreign directory")
    for entry in run.foreign_entries():
        run.progress.advance()
        key = normalize_dn(entry.dn)
        if run.marked(entry):
            anchor = entry.first(anchor_attr)
            if not anchor:
                run.conflict(None, entry.dn, f"carries this connection's marker but no "
                              f"{anchor_attr}: left alone")
                run.unowned[key] = entry.dn
            elif (first := holder(anchor)) is not None:
                run.conflict(anchor, entry.dn, f"has the anchor of {first}: left alone")
                run.unowned[key] = entry.dn
            elif elsewhere is not None and planned is not None and not planned(anchor):
                elsewhere[anchor] = entry.dn
                run.others[key] = anchor
            else:
                run.ours[anchor] = entry
            continue
        if run.csv:
            run.unowned[key] = entry.dn
        elif key == container_key:
            run.container_exists = True
        elif normalize_dn(parent_dn(entry.dn)) == container_key:
            run.unowned[key] = entry.dn
    if run.ours:
        run.container_exists = True


def conflict(run: ExportSteps, anchor: str | None, dn: str | None, message: str,
             line: int | None = None) -> None:
    run.counts.conflict += 1
    run.problems.append(Problem("conflict", anchor, dn, message, line))
