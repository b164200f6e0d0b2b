"""The records an export's steps pass on (:class:`dirsync.sync.exportrun.ExportRun`).

A hub recipient on its way to the foreign side (:class:`_Wanted`, from the
hub read to the plan) and one planned change of an entry (:class:`_Item`,
from the plan to the apply and the report).

Both stay in memory only with what is small and needed throughout (anchor,
names, status); what is large and needed once, in order (the hub entry and
its template values; the before, after and target of a change), waits in a
:class:`dirsync.sync.spool.Spool` beside them, as marshal-able payloads
(:func:`wanted_payload`, :func:`item_payload`), so that memory does not grow
with the hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    entry: Entry | None             # the hub entry (lists are mapped once DNs are known);
    extra: dict[str, Any] | None    # None once spooled (wanted_payload)
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
    target_dn: str | None = None    # the target's DN, kept when the target is spooled
    digest: str = ""                # the state row's hash once the item is applied


def wanted_record(wanted: _Wanted) -> tuple[Any, ...]:
    """The small part of a hub recipient, which the plan reads more than once."""
    return (wanted.anchor, wanted.hub_dn, wanted.kind, wanted.hub_kind, wanted.rdn_value,
            wanted.digest, wanted.member_dns)


def wanted_from(record: tuple[Any, ...]) -> _Wanted:
    anchor, hub_dn, kind, hub_kind, rdn_value, digest, member_dns = record
    return _Wanted(anchor, hub_dn, kind, hub_kind, rdn_value, digest, None, None, member_dns)


def wanted_payload(wanted: _Wanted) -> tuple[Any, ...]:
    """What the plan needs of a hub recipient and no earlier step: its entry and the
    values its templates see; taken off ``wanted``."""
    assert wanted.entry is not None and wanted.extra is not None
    payload = (wanted.entry.dn, wanted.entry.attrs, wanted.extra)
    wanted.entry = wanted.extra = None
    return payload


def wanted_entry(payload: tuple[Any, ...]) -> tuple[Entry, dict[str, Any]]:
    dn, attrs, extra = payload
    return Entry.from_server(dn, attrs), extra


def item_payload(item: _Item) -> tuple[Any, ...]:
    """What the report and the change file need of an item, at the end, in order;
    taken off ``item``."""
    target = item.target
    if target is not None:
        item.target_dn = target.dn
    payload = (item.before, item.after, item.notes,
               None if target is None else (target.dn, target.attrs))
    item.before = item.after = item.target = None
    item.notes = []
    return payload


def with_payload(item: _Item, payload: tuple[Any, ...]) -> _Item:
    """The item whole again (a copy), for the report and the change file."""
    before, after, notes, target = payload
    return replace(item, before=before, after=after, notes=notes,
                   target=None if target is None else Entry.from_server(*target))
