"""An export's planned items, one compact record each (:class:`ItemList`).

A first export plans one item per hub entry. As :class:`_Item` objects
they took about 450 bytes an entry to the end of the run. Here what never
changes after the plan (kind, anchor, action, DNs, digest) waits in a
:class:`dirsync.sync.spool.Spool`, in order, and what the apply changes
(changes sent, changes done, error, unanswered) sits in arrays of a byte
an item (a count past 254 in a dict beside it), or, for the rare failures,
a dict: five bytes an item in all, 19 when the counts were 8-byte ints. ``items[i]`` is a view of
item ``i`` whose status can be read and set as an :class:`_Item`'s;
iterating gives each item whole again (without its payload), in order.
"""

from __future__ import annotations

from collections.abc import Iterator

from dirsync.errors import EntryError
from dirsync.sync.exportitems import _Item
from dirsync.sync.spool import MEMORY_ITEMS, Spool

_COUNTED, _UNKNOWN = 1, 2


class _Counts:
    """Small counts, a byte each; the rare larger one in a dict."""

    __slots__ = ("_bytes", "_large")

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._large: dict[int, int] = {}

    def append(self, value: int) -> None:
        self._bytes.append(0)
        self[len(self._bytes) - 1] = value

    def __len__(self) -> int:
        return len(self._bytes)

    def __getitem__(self, index: int) -> int:
        value = self._bytes[index]
        return self._large[index] if value == 255 else value

    def __setitem__(self, index: int, value: int) -> None:
        if 0 <= value < 255:
            self._bytes[index] = value
            self._large.pop(index, None)
        else:
            self._bytes[index] = 255
            self._large[index] = value


class ItemList:
    """The planned items, by index."""

    def __init__(self, memory_items: int = MEMORY_ITEMS) -> None:
        self._records = Spool(memory_items)
        self._changes = _Counts()
        self._done = _Counts()
        self._flags = bytearray()
        self._kinds = bytearray()
        self._actions = bytearray()
        self._names: list[str] = []          # the few kinds and actions, by code
        self._codes: dict[str, int] = {}
        self.errors: dict[int, EntryError] = {}

    def _code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self._names)
            self._names.append(name)
        return code

    def append(self, item: _Item) -> int:
        """Keep ``item`` (its payload taken off it already); its index."""
        index = len(self._done)
        self._records.append((item.anchor, item.dn, item.old_dn, item.target_dn, item.digest))
        self._changes.append(item.changes)
        self._done.append(item.done)
        self._flags.append((_COUNTED if item.counted else 0) | (_UNKNOWN if item.unknown else 0))
        self._kinds.append(self._code(item.kind))
        self._actions.append(self._code(item.action))
        if item.error is not None:
            self.errors[index] = item.error
        return index

    def __len__(self) -> int:
        return len(self._done)

    def __getitem__(self, index: int) -> ItemStatus:
        if not 0 <= index < len(self._done):
            raise IndexError(index)
        return ItemStatus(self, index)

    def __iter__(self) -> Iterator[_Item]:
        names, flags = self._names, self._flags
        for index, (anchor, dn, old_dn, target_dn, digest) in enumerate(self._records):
            yield _Item(names[self._kinds[index]], anchor, names[self._actions[index]], dn,
                        old_dn, None, None, [], changes=self._changes[index],
                        done=self._done[index], error=self.errors.get(index),
                        counted=bool(flags[index] & _COUNTED),
                        unknown=bool(flags[index] & _UNKNOWN), target_dn=target_dn,
                        digest=digest)

    def written(self, kind: str) -> int:
        """How many items of ``kind`` were applied whole (from the arrays alone)."""
        code = self._codes.get(kind)
        changes, done = self._changes, self._done
        return sum(1 for i, k in enumerate(self._kinds)
                   if k == code and changes[i] and done[i] >= changes[i])

    def confirmed(self, skip: frozenset[str]) -> Iterator[tuple[str, str, str, str]]:
        """(anchor, target DN, digest, kind) of each item not of a ``skip`` kind
        applied whole, without an error (for its state row), in order."""
        names, kinds, changes, done = self._names, self._kinds, self._changes, self._done
        skipped = {self._codes[k] for k in skip if k in self._codes}
        for index, (anchor, _, _, target_dn, digest) in enumerate(self._records):
            if kinds[index] in skipped or anchor is None or target_dn is None \
                    or index in self.errors or done[index] < changes[index]:
                continue
            yield anchor, target_dn, digest, names[kinds[index]]

    def close(self) -> None:
        self._records.close()


class ItemStatus:
    """Item ``index`` of an :class:`ItemList`: what the apply reads and sets."""

    __slots__ = ("_index", "_list")

    def __init__(self, items: ItemList, index: int) -> None:
        self._list = items
        self._index = index

    @property
    def kind(self) -> str:
        return self._list._names[self._list._kinds[self._index]]

    @property
    def action(self) -> str:
        return self._list._names[self._list._actions[self._index]]

    @property
    def counted(self) -> bool:
        return bool(self._list._flags[self._index] & _COUNTED)

    @property
    def changes(self) -> int:
        return self._list._changes[self._index]

    @changes.setter
    def changes(self, value: int) -> None:
        self._list._changes[self._index] = value

    @property
    def done(self) -> int:
        return self._list._done[self._index]

    @done.setter
    def done(self, value: int) -> None:
        self._list._done[self._index] = value

    @property
    def error(self) -> EntryError | None:
        return self._list.errors.get(self._index)

    @error.setter
    def error(self, value: EntryError | None) -> None:
        if value is None:
            self._list.errors.pop(self._index, None)
        else:
            self._list.errors[self._index] = value

    @property
    def unknown(self) -> bool:
        return bool(self._list._flags[self._index] & _UNKNOWN)

    @unknown.setter
    def unknown(self, value: bool) -> None:
        flags = self._list._flags
        flags[self._index] = (flags[self._index] | _UNKNOWN) if value \
            else (flags[self._index] & ~_UNKNOWN)
