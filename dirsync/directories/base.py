"""The small interface every directory kind implements (STYLE.md item 2).

A directory reads entries and applies change records. The engine, import
and export own the loops; a kind only knows how to talk to its store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from dirsync.entry import Entry
from dirsync.errors import EntryError
from dirsync.ldif.changes import Change

Scope = Literal["base", "one", "sub"]


@dataclass(slots=True)
class ApplyResult:
    """The outcome of one change: ``error`` is None when it was applied.

    ``unknown``: the change was sent but the connection was lost before its
    answer came; it may or may not be applied (``error`` says so, for
    callers that do not look at ``unknown``).
    """

    change: Change
    error: EntryError | None = None
    unknown: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ReadOptions:
    base: str | None = None
    scope: Scope | None = None  # None: the directory's default (a URL's scope, else sub)
    filter: str | None = None
    attrs: list[str] | None = None  # None: user attributes; "+" adds operational ones


@runtime_checkable
class Directory(Protocol):
    """What the engine needs of a directory."""

    name: str
    kind: str
    #: Entries :meth:`read` could not turn into an :class:`Entry`; each is
    #: reported by the caller and skipped (a bad CSV row, say).
    rejected: list[EntryError]

    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        """Stream the entries (memory must not grow with the directory)."""
        ...

    def apply(self, changes: Iterable[Change], *,
              stop_on_error: bool = True) -> Iterator[ApplyResult]:
        """Apply change records in order, yielding one result per change.

        With ``stop_on_error`` nothing after the first failure is applied.
        """
        ...

    def exists(self, dn: str) -> bool:
        ...

    def get(self, dn: str) -> Entry | None:
        """The entry at ``dn`` (exact DN match by matching rule), or None."""
        ...

    def close(self) -> None:
        ...


@dataclass
class DirectoryBase:
    """Shared plumbing: a name, the reject list, context-manager support."""

    name: str
    rejected: list[EntryError] = field(default_factory=list, init=False)

    def __enter__(self) -> DirectoryBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden where needed
        pass
