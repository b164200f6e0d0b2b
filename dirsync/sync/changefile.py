"""The change file of an export to a CSV file: this run's delta as CSV rows.

The export writes the complete new CSV file (every row, atomically) and,
for a foreign import tool that wants only what changed, ``changes.csv`` in
the run's report folder (docs/export.md):

``Action``
    ``add``, ``modify``, ``rename`` or ``delete``.
``Old Key``
    for a rename, the key the row had; empty otherwise.
then every column of the export file, in its order, holding the row as it
is after the change (for a delete: as it was). One row per changed entry,
in the order the changes were applied.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from dirsync.directories.csvfile import ANCHOR_ATTR
from dirsync.directories.memory import write_atomically
from dirsync.entry import Entry, rdn_values

ACTIONS = ("add", "modify", "rename", "delete")
ACTION_COLUMN = "Action"
OLD_KEY_COLUMN = "Old Key"


def _columns(header: list[str], entries: Iterable[Entry]) -> list[str]:
    """The file's columns, then any new ones the entries bring (as the file will have them)."""
    columns = list(header)
    known = {c.lower() for c in columns}
    for entry in entries:
        for name in entry.names():
            low = name.lower()
            if low not in known and low != ANCHOR_ATTR.lower():
                known.add(low)
                columns.append(name)
    return columns


def _row(entry: Entry, columns: list[str], separator: str) -> list[str]:
    return [separator.join(v.decode("utf-8", "replace") for v in entry.get(column))
            for column in columns]


def write_csv_changes(path: Path, directory: Any, items: Iterable[Any], *,
                      planned: bool) -> None:
    """Write ``changes.csv`` for the export items (``planned``: nothing was applied).

    ``directory`` is the CSV directory the export wrote (its header and
    layout); ``items`` the export's planned items with their status.
    """
    rows: list[tuple[str, str, Entry]] = []
    for item in items:
        if item.kind not in ("person", "list", "delete") or item.action not in ACTIONS:
            continue
        if not planned and (item.error is not None or item.done < item.changes):
            continue
        if item.action == "delete":
            entry = Entry(item.dn, item.before or {})
        elif not planned and directory.get(item.dn) is not None:
            entry = directory.get(item.dn)
        else:
            entry = item.target
        old_key = rdn_values(item.old_dn)[0][1] if item.action == "rename" and item.old_dn \
            else ""
        rows.append((item.action, old_key, entry))
    columns = _columns(list(directory.header), (e for _, _, e in rows))
    separator = directory.layout.multi_value_separator or ";"

    def emit(stream: IO[str]) -> None:
        writer = csv.writer(stream, delimiter=directory.layout.delimiter, lineterminator="\n")
        writer.writerow([ACTION_COLUMN, OLD_KEY_COLUMN, *columns])
        for action, old_key, entry in rows:
            writer.writerow([action, old_key, *_row(entry, columns, separator)])

    write_atomically(path, emit)
