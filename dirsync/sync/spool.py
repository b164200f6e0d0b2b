"""An append-only list that moves to a temporary file when it grows.

A first sync of a large directory plans one add per entry; holding them
all as objects would make memory grow with the directory. A spool keeps a
few thousand records in memory and the rest in an unlinked temporary file
(gone with the process, even after kill -9), written and read back in
order with :mod:`marshal`, which handles the plain tuples, dicts, lists,
strings and bytes stored here fast. Change records go through
:func:`change_record` and :func:`change_from_record`.
"""

from __future__ import annotations

import marshal
import os
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from dirsync.ldif.changes import Change, Mod

MEMORY_ITEMS = 4096
_LENGTH = struct.Struct("<I")
#: Bytes read at a time when a spool is read back.
BLOCK = 1 << 18


class Spool:
    """Records (marshal-able values) appended, then read back in order, any number of times."""

    def __init__(self, memory_items: int = MEMORY_ITEMS) -> None:
        self.memory_items = memory_items
        self._items: list[Any] = []
        self._file: IO[bytes] | None = None
        self._count = 0
        self._size = 0          # bytes written to the file

    def append(self, record: Any) -> None:
        self._count += 1
        if self._file is None:
            self._items.append(record)
            if len(self._items) > self.memory_items:
                # Lives as long as the spool; close() ends it.
                self._file = tempfile.TemporaryFile(prefix="dirsync-spool-")  # noqa: SIM115
                for item in self._items:
                    self._write(item)
                self._items = []
            return
        self._write(record)

    def _write(self, record: Any) -> None:
        assert self._file is not None
        data = marshal.dumps(record)
        self._file.write(_LENGTH.pack(len(data)))
        self._file.write(data)
        self._size += _LENGTH.size + len(data)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        if self._file is None:
            yield from list(self._items)
            return
        self._file.flush()
        # Read by offset, a block at a time: the file's position (where appends
        # go) is not moved, and several readers may read it at once.
        fd, end = self._file.fileno(), self._size
        loads, unpack, head = marshal.loads, _LENGTH.unpack_from, _LENGTH.size
        offset, rest = 0, b""
        while offset < end:
            block = os.pread(fd, min(BLOCK, end - offset), offset)
            if not block:
                raise OSError(f"spool file ended at {offset} of {end} bytes")
            offset += len(block)
            data = rest + block if rest else block
            position, size = 0, len(data)
            while size - position >= head:
                (length,) = unpack(data, position)
                if size - position - head < length:
                    break
                start = position + head
                yield loads(data[start:start + length])
                position = start + length
            rest = data[position:]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._items = []


class PairSpool:
    """``key -> value`` writes kept in the order made (in a :class:`Spool`), read
    back by :meth:`items`; a key written twice comes twice, the later value last,
    so that a reader that stores them in turn keeps the last, as a dict would."""

    def __init__(self, memory_items: int = MEMORY_ITEMS) -> None:
        self._spool = Spool(memory_items)

    def __setitem__(self, key: str, value: Any) -> None:
        self._spool.append((key, value))

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, value in self._spool:
            yield key, value

    def __len__(self) -> int:
        return len(self._spool)

    def close(self) -> None:
        self._spool.close()


def change_record(change: Change) -> tuple[Any, ...]:
    return (change.kind, change.dn, change.attrs,
            [(m.op, m.attr, m.values) for m in change.mods],
            change.newrdn, change.deleteoldrdn, change.newsuperior)


def change_from_record(record: tuple[Any, ...]) -> Change:
    kind, dn, attrs, mods, newrdn, deleteoldrdn, newsuperior = record
    return Change(kind, dn, attrs=attrs, mods=[Mod(op, attr, values) for op, attr, values in mods],
                  newrdn=newrdn, deleteoldrdn=deleteoldrdn, newsuperior=newsuperior)
