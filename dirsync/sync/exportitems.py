"""The records an export's steps pass on (:class:`dirsync.sync.exportrun.ExportRun`).

A hub recipient on its way to the foreign side (:class:`_Wanted`, from the
hub read to the plan) and one planned change of an entry (:class:`_Item`,
from the plan to the apply and the report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dirsync.entry import Entry
from dirsync.errors import EntryError


@dataclass(slots=True)
class _Wanted:
    """One hub recipient on its way to the foreign side."""

    anchor: str
    hub_dn: str
    kind: str                       # person | list
    hub_kind: str                   # user | contact | group
    rdn_value: str
    digest: str
    entry: Entry                    # the hub entry (lists are mapped once DNs are known)
    extra: dict[str, Any]
    member_dns: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    """One planned foreign (or hub) entry change, for the report and the change file."""

    kind: str
    anchor: str | None
    action: str
    dn: str
    old_dn: str | None
    before: dict[str, list[bytes]] | None
    after: dict[str, list[bytes]] | None
    notes: list[str]
    changes: int = 0
    done: int = 0
    error: EntryError | None = None
    target: Entry | None = None     # what the foreign entry should be (not for deletes)
    counted: bool = True
    unknown: bool = False           # sent when the connection was lost, unanswered
