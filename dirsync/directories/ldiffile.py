"""The ``ldif`` kind: one LDIF file of content or change records.

The file is read whole (change records are replayed in order onto an empty
store), changed with a server's rules, and written back atomically as
sorted content records when changes were applied. Its entries wait in a
temporary database (:class:`dirsync.directories.diskstore.DiskStore`), not
as objects, so that a large file does not make memory grow. This is the
embedded hub of the quick start: a real directory with no server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from dirsync.directories.base import DirectoryBase, ReadOptions
from dirsync.directories.diskstore import DiskStore
from dirsync.directories.memory import StoreBacked, write_atomically
from dirsync.entry import Entry, display_dn
from dirsync.errors import EntryError, InputError
from dirsync.ldif.io import LDIFReader, LDIFWriter
from dirsync.ldif.urlvalues import URLValues


class LDIFDirectory(StoreBacked, DirectoryBase):
    kind = "ldif"

    def __init__(self, path: str | Path, *, name: str | None = None,
                 create: bool = True, url_values: URLValues | None = None) -> None:
        super().__init__(name or str(path))
        self.url_values = url_values
        self.path = Path(path)
        self.create = create
        self._store: DiskStore | None = None
        self._dirty = False

    @property
    def store(self) -> DiskStore:
        if self._store is None:
            self._store = self._load()
        return self._store

    def _load(self) -> DiskStore:
        store = DiskStore()
        if not self.path.exists():
            if self.create:
                return store
            raise InputError("no such file", path=str(self.path))
        with LDIFReader(self.path, url_values=self.url_values) as reader:
            for record in reader:
                if isinstance(record, Entry):
                    # As dirsync shows DNs (an LDAP directory's too): O'Neil\, Pat.
                    record.dn = display_dn(record.dn)
                    try:
                        store.add_entry(record)     # the record itself, not a copy
                    except EntryError as exc:
                        raise InputError(f"{exc.message} (add {record.dn})",
                                         path=str(self.path), line=record.line) from None
                    continue
                for result in store.apply([record], stop_on_error=True):
                    if result.error is not None:
                        raise InputError(f"{result.error.message} ({record.describe()})",
                                         path=str(self.path), line=record.line)
        return store

    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        return self.store.read(options)


    def flush(self) -> None:
        """Write the file back (atomically) if anything changed."""
        if not self._dirty or self._store is None:
            return
        entries = self._store.by_depth()

        def write(stream):  # type: ignore[no-untyped-def]
            writer = LDIFWriter(stream)
            writer.version()
            for entry in entries:
                writer.entry(entry)

        write_atomically(self.path, write)
        self._dirty = False

    def close(self) -> None:
        self.flush()
