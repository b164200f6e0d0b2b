"""Changes a run sent but never saw answered, and what the next run found.

When the hub's connection drops, a change in flight may or may not have
been applied. The run counts it as *unknown* (not as failed) and keeps its
anchor here; the next run of the connection compares those entries with
the hub as it does every entry, and its report says for each one whether
the change had been applied after all or is applied now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from dirsync.state.store import StateStore

#: The state store cursor that keeps the anchors.
CURSOR = "unconfirmed"

FOUND = ("the last run lost the connection before the hub confirmed its change of this "
         "entry: found applied")
REDONE = ("the last run lost the connection before the hub confirmed its change of this "
          "entry: compared again, this run makes the change it still needs")


class Unconfirmed:
    """The anchors the last run could not confirm, and how this run finds them."""

    def __init__(self, state: StateStore, connection: str, direction: str) -> None:
        self.state = state
        self.connection = connection
        self.direction = direction
        raw = state.cursor(connection, direction, CURSOR)
        try:
            loaded = json.loads(raw) if raw else []
        except ValueError:
            loaded = []
        self.previous: set[str] = {a for a in loaded if isinstance(a, str)} \
            if isinstance(loaded, list) else set()
        self.found = 0
        self.redone = 0

    def unchanged(self, anchor: str | None) -> str | None:
        """The note for an entry this run finds as it should be, if it was unconfirmed."""
        if anchor is None or anchor not in self.previous:
            return None
        self.found += 1
        return FOUND

    def planned(self, anchor: str | None) -> str | None:
        """The note for an entry this run changes, if it was unconfirmed."""
        if anchor is None or anchor not in self.previous:
            return None
        self.redone += 1
        return REDONE

    def summary(self) -> str | None:
        if not self.previous:
            return None
        rest = len(self.previous) - self.found - self.redone
        text = (f"{len(self.previous)} changes of the last run were not confirmed when its "
                f"connection was lost: {self.found} found applied, {self.redone} changed by "
                "this run")
        return text + (f", {rest} not in this run (not in the source any more, or left "
                       "alone)" if rest else "")

    def save(self, anchors: Iterable[str | None]) -> None:
        """Keep this run's unconfirmed anchors for the next run (none: clear)."""
        kept = sorted({a for a in anchors if a})
        if kept or self.previous:
            self.state.set_cursor(self.connection, self.direction, CURSOR, json.dumps(kept))
