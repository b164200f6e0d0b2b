"""Step 1 of an import (:class:`dirsync.sync.engine.ImportRun`): scan the hub.

What the import container holds for one connection, by marker and anchor
(the hub is the truth; the state store only saves work), and the DNs of
the entries there that are not its own. The records by anchor go to a
table of the run's scratch database (:mod:`dirsync.sync.scratch`), not a
dictionary; a run that compares by state needs only each entry's DN and
anchor, which an LDAP hub gives through the compiled reader
(:mod:`dirsync.sync.anchorscan`).
"""

from __future__ import annotations

from typing import Any

import ldap.filter

from dirsync.directories import ReadOptions
from dirsync.entry import Entry, normalize_dn, parent_dn
from dirsync.mapping.mapfile import (
    ANCHOR_ATTR,
    SOURCE_ATTR,
)
from dirsync.sync.anchorscan import dn_and_anchor
from dirsync.sync.importitems import HubIndex, HubRecord
from dirsync.sync.importsteps import ImportSteps
from dirsync.sync.plan import (
    lower_classes,
    owned_hash,
)
from dirsync.sync.scratch import DiskMap


def hub_table(run: ImportSteps) -> DiskMap[HubRecord]:
    """A scratch table for the hub's records (object classes shared between records)."""
    classes: dict[Any, frozenset[str] | None] = {None: None}

    def encode(record: HubRecord) -> tuple[Any, ...]:
        return (record.dn, record.hash,
                tuple(sorted(record.classes)) if record.classes is not None else None)

    def decode(data: tuple[Any, ...]) -> HubRecord:
        dn, digest, names = data
        shared = classes.get(names)
        if shared is None and names is not None:
            shared = classes[names] = frozenset(names)
        return HubRecord(dn, digest, shared)

    table: DiskMap[HubRecord] = run.scratch.map(encode, decode)
    return table


def hub_base(run: ImportSteps) -> str:
    """Where addresses are looked up: the hub's base, else the naming
    context that holds the import container."""
    base = run.config.directories[run.connection.hub].base
    if base:
        return base
    if run.hub.kind == "ldap":
        root = run.hub.get("", ["namingContexts"])
        for context in (root.texts("namingContexts") if root is not None else []):
            if normalize_dn(run.container).endswith(normalize_dn(context)):
                return context
    return run.container


def scan_hub(run: ImportSteps) -> HubIndex:
    """Find this connection's entries under the import container, and the DNs of others.

    On an LDAP hub the server filters by marker, so only the anchor (and
    in a full run the owned attributes) of each of our entries crosses
    the wire; the entries right below the container that are not ours
    come from a one-level search. A file hub is read whole. A second
    entry with an anchor already indexed is an anomaly (found when the
    table's buffer is written).
    """
    index = HubIndex(ours=hub_table(run))
    full = run.mode == "full"
    owned = run.selected.all_owned()
    attrs = [SOURCE_ATTR, ANCHOR_ATTR]
    if full:
        attrs += ["objectClass", *sorted(owned)]
    run.progress.start("scanning the hub")
    if run.hub.kind == "ldap":
        marker = f"({SOURCE_ATTR}={ldap.filter.escape_filter_chars(run.name)})"
        options = ReadOptions(base=run.container, scope="sub", filter=marker,
                              attrs=attrs[1:] if not full else attrs)
        # DN and anchor only: read in C when possible (dirsync.sync.anchorscan).
        found = None if full else dn_and_anchor(run.hub, options, ANCHOR_ATTR)
        if found is not None:
            for dn, anchor in found:
                run.progress.advance()
                index_anchor(index, dn, anchor, HubRecord(dn))
        else:
            for entry in run.hub.read(options):
                run.index_entry(index, entry, owned, full, ours=True)
        others = run.hub.read(ReadOptions(base=run.container, scope="one",
                                           filter=f"(!{marker})", attrs=[SOURCE_ATTR]))
        for entry in others:
            index.unowned[normalize_dn(entry.dn)] = entry.dn
        index.container_exists = bool(index.ours or index.unowned or index.anomalies) \
            or run.hub.exists(run.container)
    else:
        name = run.name.casefold()
        for entry in run.hub.read(ReadOptions(base=run.container, scope="sub")):
            source = entry.get(SOURCE_ATTR)
            if source and source[0].decode("utf-8", "replace").casefold() == name:
                run.index_entry(index, entry, owned, full, ours=True)
                continue
            key = normalize_dn(entry.dn)
            if key == run.container_key:
                index.container_exists = True
            elif normalize_dn(parent_dn(entry.dn)) == run.container_key:
                index.unowned[key] = entry.dn
    if isinstance(index.ours, DiskMap):
        index.ours.flush()
        for anchor, record, first in index.ours.taken:
            index.anomalies.append((record.dn, f"has the anchor {anchor!r} of {first.dn}"))
        index.ours.taken.clear()
    for dn, _ in index.anomalies:
        # Not ours to change, but their DNs are taken all the same.
        index.unowned[normalize_dn(dn)] = dn
    if index.ours:
        index.container_exists = True
    return index


def index_entry(run: ImportSteps, index: HubIndex, entry: Entry, owned: frozenset[str], full: bool,
                ours: bool) -> None:
    """One entry that carries this connection's marker."""
    run.progress.advance()
    anchor_values = entry.get(ANCHOR_ATTR)
    if not anchor_values:
        index.anomalies.append((entry.dn, "carries this connection's marker but no anchor"))
        return
    anchor = anchor_values[0].decode("utf-8", "replace")
    record = HubRecord(entry.dn)
    if full:
        record.hash = owned_hash(entry.attrs, owned)
        classes = lower_classes(entry.get("objectClass"))
        record.classes = run._classes.setdefault(classes, classes)
    index_anchor(index, entry.dn, anchor, record)


def index_anchor(index: HubIndex, dn: str, anchor: str | None, record: HubRecord) -> None:
    """Index one entry with this connection's marker by its anchor."""
    if not anchor:
        index.anomalies.append((dn, "carries this connection's marker but no anchor"))
        return
    table = index.ours
    if isinstance(table, DiskMap):
        # A second entry with the anchor is found when the batch is written.
        table.put_first(anchor, record)
    elif anchor in table:
        index.anomalies.append((dn, f"has the anchor {anchor!r} of {table[anchor].dn}"))
    else:
        table[anchor] = record
