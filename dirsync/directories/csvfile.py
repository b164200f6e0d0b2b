"""The ``csv`` kind: a foreign address-book export as a CSV file.

Each row is one entry. Its attributes are the columns (named by the header
row, or by ``columns`` when the file has none); its DN is synthetic,
``dirsyncAnchor=<key column value>``, since a foreign export has no DNs.
A row that cannot be read (wrong number of fields, empty key, a duplicate
key) is recorded in ``rejected`` with its line and skipped; a file that is
not CSV at all is an :class:`InputError`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import marshal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dirsync.directories.base import DirectoryBase, ReadOptions
from dirsync.directories.firstseen import FirstSeen
from dirsync.directories.memory import MemoryStore, StoreBacked, write_atomically
from dirsync.entry import Entry, make_rdn, normalize_dn, rdn_values
from dirsync.errors import EntryError, InputError

ANCHOR_ATTR = "dirsyncAnchor"
#: marshal's format 2: from 3 on, an object referenced elsewhere too is
#: written with a flag, so the same row would not always give the same bytes.
_MARSHAL = 2


def row_digest(row: list[str], salt: bytes) -> str:
    """The digest of a row as read (its cells), ``salt`` saying how its file
    is laid out (:meth:`CSVDirectory._salt`)."""
    return hashlib.blake2b(marshal.dumps(row, _MARSHAL), digest_size=16, salt=salt).hexdigest()


@dataclass
class CSVLayout:
    """How a CSV export is laid out (all configurable per directory)."""

    key: str | None = None            # anchor column; default: the first column
    delimiter: str = ","
    encoding: str = "utf-8-sig"       # tolerate a BOM, as spreadsheet exports have
    columns: list[str] | None = None  # for files without a header row
    multi_value_separator: str | None = None  # e.g. ";" splits a cell into values
    multi_valued: list[str] = field(default_factory=list)  # columns that are split


def undecodable_at(path: Path, encoding: str) -> tuple[int | None, int, int | None]:
    """(line, column, byte) of the first byte of ``path`` not in ``encoding``.

    Lines are counted as the CSV reader counts them (each newline ends
    one); the column counts bytes from 1. (None, 0, None) if none is found.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as exc:
                return number, exc.start + 1, raw[exc.start] if exc.start < len(raw) else None
    return None, 0, None


class CSVDirectory(StoreBacked, DirectoryBase):
    kind = "csv"

    def __init__(self, path: str | Path, *, name: str | None = None,
                 layout: CSVLayout | None = None, create: bool = True) -> None:
        super().__init__(name or str(path))
        self.path = Path(path)
        self.layout = layout or CSVLayout()
        self.create = create
        self.header: list[str] = list(self.layout.columns or [])
        self._store: MemoryStore | None = None
        self._dirty = False

    def dn_for(self, key: str) -> str:
        return make_rdn(ANCHOR_ATTR, key)

    @property
    def key_column(self) -> str:
        if self.layout.key:
            return self.layout.key
        if not self.header:
            raise InputError("no columns: the file has no header row and no 'columns' are set",
                             path=str(self.path), line=1)
        return self.header[0]

    # -- reading ---------------------------------------------------------
    @property
    def store(self) -> MemoryStore:
        if self._store is None:
            self._store = self._load()
        return self._store

    def _absent(self) -> bool:
        """Whether the file is not there yet (read as empty); a file that
        must be there and is not is an :class:`InputError`."""
        if self.path.exists():
            return False
        if self.create:
            return True
        raise InputError("no such file", path=str(self.path))

    def _split(self, column: str, cell: str) -> list[bytes]:
        sep = self.layout.multi_value_separator
        if sep and (not self.layout.multi_valued or column in self.layout.multi_valued):
            parts = [p.strip() for p in cell.split(sep)]
        else:
            parts = [cell.strip()]
        return [p.encode("utf-8") for p in parts if p]

    def _load(self) -> MemoryStore:
        store = MemoryStore()
        self.rejected = []
        if self._absent():
            return store
        with open(self.path, encoding=self.layout.encoding, newline="") as stream:
            self._read_rows(stream, store)
        return store

    def _read_rows(self, stream: IO[str], store: MemoryStore) -> None:
        for entry in self._rows(stream):
            store.put(entry)

    def _begin(self, reader: Any) -> tuple[int, list[bool]] | None:
        """Read the header (unless ``columns`` are given): the key column's
        index, and which columns are cut into several values (None: an
        empty file)."""
        if not self.layout.columns:
            first = next(reader, None)
            if first is None:
                return None
            self.header = [c.strip() for c in first]
            if len({c.lower() for c in self.header}) != len(self.header) or "" in self.header:
                raise InputError("header row has an empty or repeated column name",
                                 path=str(self.path), line=1)
        return self._shape()

    def _shape(self) -> tuple[int, list[bool]]:
        """The header's key column index, and which columns are cut into values."""
        key = self.key_column
        if key not in self.header:
            raise InputError(f"key column {key!r} is not in the header", path=str(self.path),
                             line=1, field=key)
        sep = self.layout.multi_value_separator
        split = [bool(sep) and (not self.layout.multi_valued or c in self.layout.multi_valued)
                 for c in self.header]
        return self.header.index(key), split

    def _salt(self, key_index: int, split: list[bool]) -> bytes:
        """What a row's digest is made with besides the row: the columns and
        how cells become values, so that a row means the same entry."""
        layout = (self.header, key_index, split, self.layout.multi_value_separator)
        return hashlib.blake2b(marshal.dumps(layout, _MARSHAL), digest_size=16).digest()

    def _checked(self, reader: Any, key_index: int) -> Iterator[tuple[int, list[str], str]]:
        """(line, row, key) of each row with the header's width and a key
        (``reader.line_num`` is then the row's last line);
        the others go to ``rejected`` (blank rows are left out)."""
        width = len(self.header)
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if len(row) == width:
                anchor = row[key_index].strip()
                if anchor:
                    yield line, row, anchor
                    continue
            self._reject(row, line, key_index)

    def _reject(self, row: list[str], line: int, key_index: int) -> None:
        """A row without the header's width or a key: to ``rejected``,
        unless it is blank (left out)."""
        if not "".join(row).strip():
            return
        width = len(self.header)
        if len(row) != width:
            self.rejected.append(EntryError(
                f"row at line {line}", f"{len(row)} fields where the header has "
                f"{width}", result="badRow", line=line))
            return
        self.rejected.append(EntryError(f"row at line {line}",
                                        f"empty key column {self.header[key_index]!r}",
                                        result="badRow", line=line))

    def _rows(self, stream: IO[str], *, digests: bool = False) -> Iterator[Entry]:
        """The entries of the rows, one at a time; bad rows go to ``rejected``.

        With ``digests`` each entry carries its row's digest (as
        :meth:`digests` makes it).
        """
        reader = csv.reader(stream, delimiter=self.layout.delimiter, strict=True)
        # Keys seen so far (on disk past a few thousand).
        seen = FirstSeen()
        try:
            begun = self._begin(reader)
            if begun is None:
                return
            key_index, split = begun
            salt = self._salt(key_index, split) if digests else b""
            # Each column with its lower-case name (the entry's index) and whether it is cut.
            columns = [(c, c.lower(), cut) for c, cut in zip(self.header, split)]
            for line, row, anchor in self._checked(reader, key_index):
                entry = self._entry(columns, row, anchor, line)
                if not seen.first_time(normalize_dn(entry.dn)):
                    self.rejected.append(EntryError(entry.dn, f"duplicate key {anchor!r}",
                                                    result="duplicateKey", line=line))
                    continue
                if digests:
                    entry.digest = row_digest(row, salt)
                yield entry
        except csv.Error as exc:
            raise InputError(f"not valid CSV: {exc}", path=str(self.path),
                             line=reader.line_num) from exc
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc) from exc
        finally:
            seen.close()

    def _entry(self, columns: list[tuple[str, str, bool]], row: list[str], anchor: str,
               line: int) -> Entry:
        """The entry of one row: its cells by ``columns`` (name, lower-case
        name, cut into values), the key ``anchor`` its DN."""
        attrs: dict[str, list[bytes]] = {}
        index: dict[str, str] = {}
        for (column, lower, cut), cell in zip(columns, row):
            if cut:
                values = self._split(column, cell)
                if values:
                    attrs[column] = values
                    index[lower] = column
            else:
                value = cell.strip()
                if value:
                    attrs[column] = [value.encode("utf-8")]
                    index[lower] = column
        # Header names are unique case-insensitively (checked when read).
        return Entry.parsed(self.dn_for(anchor), attrs, index, line)

    def digests(self) -> Iterator[tuple[str, str, int, int]]:
        """(digest, key, line, last line) of each row, without making entries:
        the digest is the one the entry read from the row carries
        (:attr:`Entry.digest`), the key case-folded (two rows whose keys fold
        alike are one key).
        Rows that cannot be read go to ``rejected``; repeated keys are not
        looked for here."""
        self.rejected = []
        if self._absent():
            return
        with open(self.path, encoding=self.layout.encoding, newline="") as stream:
            reader = csv.reader(stream, delimiter=self.layout.delimiter, strict=True)
            try:
                begun = self._begin(reader)
                if begun is None:
                    return
                key_index, split = begun
                # A copy of a hash begun with the salt is what row_digest makes,
                # without parsing its keyword arguments again for every row: the
                # loop runs once a row over a whole file.
                blank = hashlib.blake2b(digest_size=16, salt=self._salt(key_index, split))
                dumps = marshal.dumps
                for line, row, anchor in self._checked(reader, key_index):
                    digest = blank.copy()
                    digest.update(dumps(row, _MARSHAL))
                    yield digest.hexdigest(), anchor.casefold(), line, reader.line_num
            except csv.Error as exc:
                raise InputError(f"not valid CSV: {exc}", path=str(self.path),
                                 line=reader.line_num) from exc
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc) from exc

    def read_lines(self, rows: Mapping[int, int]) -> Iterator[Entry]:
        """The entries of the rows that span these lines (first line -> last
        line, as :meth:`digests` gave them, which read the header), made as
        :meth:`read` makes them, digests included. Only those lines are
        parsed; the rest of the file is skipped line by line."""
        key_index, split = self._shape()
        salt = self._salt(key_index, split)
        columns = [(c, c.lower(), cut) for c, cut in zip(self.header, split)]
        width = len(self.header)
        if not rows:
            return
        wanted = iter(sorted(rows.items()))
        first, last = next(wanted)
        held: list[str] = []
        with open(self.path, encoding=self.layout.encoding, newline="") as stream:
            # Lines as the CSV reader counts them: the same iteration of the file.
            for number, text in enumerate(stream, 1):
                if number < first:
                    continue
                held.append(text)
                if number < last:
                    continue
                try:
                    row = next(csv.reader(held, delimiter=self.layout.delimiter,
                                          strict=True), [])
                except csv.Error as exc:
                    raise InputError(f"not valid CSV: {exc} (the file changed while it was "
                                     "read?)", path=str(self.path), line=first) from exc
                anchor = row[key_index].strip() if len(row) == width else ""
                if not anchor:
                    raise InputError("the row is not as it was read a moment before (the "
                                     "file changed while it was read?)",
                                     path=str(self.path), line=first)
                entry = self._entry(columns, row, anchor, first)
                entry.digest = row_digest(row, salt)
                yield entry
                held = []
                first, last = next(wanted, (0, 0))
                if not first:
                    return

    def _decode_error(self, exc: UnicodeDecodeError) -> InputError:
        """Where the byte that is not in the file's encoding is, found in the file itself.

        The text layer decodes the file ahead of the CSV reader, in blocks of
        several kilobytes, so the reader's line count is not where it is.
        """
        line, column, byte = undecodable_at(self.path, self.layout.encoding)
        where = f"byte 0x{byte:02x} at column {column}: " if byte is not None else ""
        return InputError(f"not {self.layout.encoding} text: {where}{exc.reason} (give the "
                          "file's encoding with encoding = \"...\", e.g. \"cp1252\")",
                          path=str(self.path), line=line)

    def read(self, options: ReadOptions | None = None) -> Iterator[Entry]:
        """The entries. Until something is applied, rows stream from the file
        one at a time (memory does not grow with the file); ``rejected``
        is complete once the iteration is."""
        if self._store is None and (options is None or not options.base):
            return self._stream()
        return self.store.read(options)

    def check_readable(self) -> int:
        """Read the file through as CSV, building nothing; returns its number of rows.

        Raises the :class:`InputError` a full read would raise (not CSV, not
        in its encoding), so a caller that acts on rows as they stream can
        first make sure that no such error waits halfway through the file.
        The count (rows after the header, blank or bad ones included) is
        what a progress bar needs.
        """
        if self._absent():
            return 0
        records = 0
        with open(self.path, encoding=self.layout.encoding, newline="") as stream:
            reader = csv.reader(stream, delimiter=self.layout.delimiter, strict=True)
            try:
                for _ in reader:
                    records += 1
            except csv.Error as exc:
                raise InputError(f"not valid CSV: {exc}", path=str(self.path),
                                 line=reader.line_num) from exc
            except UnicodeDecodeError as exc:
                raise self._decode_error(exc) from exc
        return records if self.layout.columns else max(0, records - 1)

    def _stream(self) -> Iterator[Entry]:
        self.rejected = []
        if self._absent():
            return
        with open(self.path, encoding=self.layout.encoding, newline="") as stream:
            yield from self._rows(stream, digests=True)

    # -- writing ---------------------------------------------------------

    def row_of(self, entry: Entry) -> list[str]:
        sep = self.layout.multi_value_separator or ";"
        return [sep.join(v.decode("utf-8", "replace") for v in entry.get(column))
                for column in self.header]

    def write(self, path: Path | None = None) -> None:
        """Write the whole export (atomically), keeping the column order."""
        entries = list(self.store.entries.values())
        for entry in entries:
            for name in entry.names():
                if name.lower() not in {h.lower() for h in self.header} \
                        and name.lower() != ANCHOR_ATTR.lower():
                    self.header.append(name)
        if not self.header:
            self.header = [self.layout.key or "key"]
        key = self.key_column
        for entry in entries:
            # The key column always matches the DN, which renames may have changed.
            if not entry.get(key):
                entry.set(key, [rdn_values(entry.dn)[0][1].encode("utf-8")])

        def emit(stream: IO[str]) -> None:
            writer = csv.writer(stream, delimiter=self.layout.delimiter, lineterminator="\n")
            if not self.layout.columns:
                writer.writerow(self.header)
            for entry in entries:
                writer.writerow(self.row_of(entry))

        write_atomically(path or self.path, emit)

    def flush(self) -> None:
        if self._dirty and self._store is not None:
            self.write()
            self._dirty = False

    def close(self) -> None:
        self.flush()
