"""The records an import's steps pass on (:class:`dirsync.sync.engine.ImportRun`).

What the hub scan finds (:class:`HubIndex`), and a mapped source entry
waiting in the spool for its DN (:class:`_Target`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class HubRecord:
    dn: str
    hash: str | None = None                 # owned attributes (full runs only)
    classes: frozenset[str] | None = None   # lower-case object classes (full runs only)


@dataclass
class HubIndex:
    """What the import container holds, as far as one connection is concerned."""

    container_exists: bool = False
    #: Anchor -> record; in a run's scratch database (importscan.hub_table),
    #: or a dictionary for a run that looks at a few entries only.
    ours: MutableMapping[str, HubRecord] = field(default_factory=dict)
    #: Normalized DN -> DN of entries right below the container that this
    #: connection does not own: a conflict if a source entry wants one.
    unowned: dict[str, str] = field(default_factory=dict)
    #: Entries with this connection's marker that cannot be matched (no
    #: anchor, or an anchor another entry has): reported and left alone.
    anomalies: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Target:
    """A mapped source entry waiting in the spool for its DN."""

    anchor: str
    kind: str            # person | list | group (a list in group mode)
    hash: str
    rdn_value: str
    attrs: dict[str, list[bytes]]
    object_classes: list[str]
    members: list[str] | None
    line: int | None

    def record(self) -> tuple[Any, ...]:
        return (self.anchor, self.kind, self.hash, self.rdn_value, self.attrs,
                self.object_classes, self.members, self.line)
