"""LDIF (RFC 2849) reading and writing on top of python-ldap's ``ldif`` module.

python-ldap's parser does the lexical work (unfolding, comments, base64,
URLs); its record level only knows content records and modify records, so
the record level here reads every change type (add, delete, modify,
modrdn/moddn) and remembers the line each record starts on, for errors that
name file and line.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import ldap.dn
import ldif

from dirsync.addresses.values import dn_problem
from dirsync.entry import Entry
from dirsync.errors import InputError
from dirsync.ldif.changes import Change, Control, Mod
from dirsync.ldif.controls import parse_control
from dirsync.ldif.fastread import blocks, plain_record, strict_b64decode
from dirsync.ldif.urlvalues import URLValueRefused, URLValues, refused
from dirsync.schema import ATTR_NAME, is_binary

Record = Entry | Change
log = logging.getLogger("dirsync.ldif")

_MOD_OPS = ("add", "delete", "replace", "increment")
_UNSAFE_FIRST = frozenset(b"\x00\n\r :<")
_CONTROL_BYTE = re.compile(rb"[\x00\n\r]")  # never inside a SAFE-STRING


def _unsafe(value: bytes) -> bool:
    """Not an RFC 2849 SAFE-STRING: must be written base64.

    The same rule as python-ldap's ``safe_string_re``, in a few C-level
    checks instead of a regular expression (export spends its time here).
    """
    if not value:
        return False
    if not value.isascii() or value[0] in _UNSAFE_FIRST or value[-1] == 0x20:
        return True
    return b"\n" in value or b"\r" in value or b"\x00" in value
_CHANGETYPES = ("add", "delete", "modify", "modrdn", "moddn")
# RFC 2849: only an attribute's value may be a URL, never these.
_NO_URL_KEYS = frozenset({"dn", "changetype", "control", "newrdn", "deleteoldrdn",
                          "newsuperior", "version", *_MOD_OPS})


class _Lexer(ldif.LDIFParser):
    """python-ldap's LDIF lexer, remembering where each logical line starts."""

    def __init__(self, stream: IO[str], first_line: int = 1,
                 url_values: URLValues | None = None) -> None:
        self.pair_line = first_line
        self.current = ""
        self._last_line: str | None = None
        self._url_values = url_values
        # python-ldap would fetch any file: URL; ours are read by url_values.
        super().__init__(stream, process_url_schemes=[])
        self._b64decode = strict_b64decode
        self.line_counter += first_line - 1  # a block from the middle of a file

    def _unfold_lines(self) -> str:
        # Same unfolding as python-ldap's, but a continuation line after an
        # empty line (or at the top) is an error instead of being glued on.
        self.pair_line = self.line_counter
        first: str | None = self._last_line
        if first is None:
            raise EOFError("end of file")
        if first.startswith(" "):
            raise ValueError("a continuation line with no line to continue")
        parts: list[str] = [first]
        next_line: str | None = self._readline()
        while first and next_line and next_line[0] == " ":
            parts.append(next_line[1:])
            next_line = self._readline()
        self._last_line = next_line
        self.current = "".join(parts)
        return self.current

    def _next_key_and_value(self) -> tuple[str | None, bytes | None]:
        key, value = super()._next_key_and_value()
        if value is None and key not in (None, "-"):
            # A ':<' URL value (the only way python-ldap gives no value).
            url = self.current.split(":", 1)[1][1:].strip()
            if key.lower() in _NO_URL_KEYS:
                raise URLValueRefused(f"{key!r} cannot be a URL value")
            if self._url_values is None:
                raise refused(url)
            value = self._url_values.read(url)
        return key, value

    @property
    def current_field(self) -> str | None:
        return self.current.split(":", 1)[0] if ":" in self.current else None


class LDIFReader:
    """Iterates the records of one LDIF file: :class:`Entry` for content
    records, :class:`Change` for change records (``changetype:``)."""

    def __init__(self, source: str | os.PathLike[str] | IO[str], name: str | None = None, *,
                 fast: bool = True, url_values: URLValues | None = None) -> None:
        self._path: Path | None = None
        self._url_values = url_values  # None: URL values are refused
        if isinstance(source, (str, os.PathLike)):
            self.name = name or str(source)
            self._stream: IO[str] = open(source, encoding="utf-8", newline="")
            self._owned = True
            # A file by path is read by the fast path (see _fast_records);
            # ``fast=False`` keeps to the lexer alone.
            self._path = Path(source) if fast else None
        else:
            self.name = name or str(getattr(source, "name", "<stdin>"))
            self._stream = source
            self._owned = False
        self.version: int | None = None

    def __enter__(self) -> LDIFReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._stream.close()

    def _error(self, message: str, line: int | None, field: str | None = None) -> InputError:
        return InputError(message, path=self.name, line=line, field=field)

    def __iter__(self) -> Iterator[Record]:
        if self._path is not None:
            yield from self._fast_records(self._path)
            return
        try:
            lexer = _Lexer(self._stream, url_values=self._url_values)
        except UnicodeDecodeError as exc:
            raise self._error(f"not UTF-8 ({exc.reason})", 1) from exc
        yield from self._lexed(lexer, first=True)

    def _lexed(self, lexer: _Lexer, first: bool) -> Iterator[Record]:
        """The records of ``lexer``, its errors turned into :class:`InputError`."""
        try:
            yield from self._records(lexer, first)
        except InputError:
            raise
        except (ValueError, binascii.Error, UnicodeDecodeError, OSError) as exc:
            field = lexer.current_field
            message = str(exc)
            if isinstance(exc, binascii.Error):
                message = f"bad base64 value ({exc})"
            elif isinstance(exc, UnicodeDecodeError):
                message = f"not UTF-8 ({exc.reason})"
            elif isinstance(exc, OSError):
                # A ':<' URL value whose file cannot be read.
                message = f"cannot read the value's URL ({getattr(exc, 'reason', exc)})"
            raise self._error(message, lexer.pair_line, field) from exc

    def _pair(self, lexer: _Lexer) -> tuple[str | None, bytes | None]:
        try:
            return lexer._next_key_and_value()
        except EOFError:
            return None, None

    def _records(self, lexer: _Lexer, first: bool = True) -> Iterator[Record]:
        k, v = lexer._consume_empty_lines()
        if k == "version" and first:
            assert v is not None
            if v.strip() != b"1":
                raise self._error(f"unsupported LDIF version {v!r}", lexer.pair_line, "version")
            self.version = 1
            k, v = lexer._consume_empty_lines()
        while k is not None:
            start = lexer.pair_line
            if k != "dn":
                raise self._error(f"record does not start with 'dn:' but with {k!r}", start)
            assert v is not None
            dn = v.decode("utf-8")
            problem = dn_problem(dn)  # parsed in full once, here: later steps rely on it
            if problem is not None:
                raise self._error(problem, start, "dn")
            k, v = self._pair(lexer)
            controls: list[Control] = []
            while k == "control":
                assert v is not None
                controls.append(parse_control(v))
                k, v = self._pair(lexer)
            if controls and k != "changetype":
                raise self._error("control: lines belong to change records (changetype: "
                                  "must follow them)", lexer.pair_line, k)
            if k == "changetype":
                assert v is not None
                changetype = v.decode("utf-8").strip()
                if changetype not in _CHANGETYPES:
                    raise self._error(f"unknown changetype {changetype!r}", lexer.pair_line,
                                      "changetype")
                record: Record
                record, (k, v) = self._change(lexer, dn, changetype, start)
                record.controls = controls
            else:
                record, (k, v) = self._content(lexer, dn, start, k, v)
            yield record
            if k is None:
                k, v = lexer._consume_empty_lines()
            else:  # pragma: no cover - records always end at a blank line or EOF
                raise self._error("record not terminated by an empty line", lexer.pair_line)

    def _attr_name(self, lexer: _Lexer, name: str) -> str:
        if not ATTR_NAME.match(name):
            raise self._error(f"not a valid attribute description {name!r}", lexer.pair_line,
                              name)
        return name

    def _content(self, lexer: _Lexer, dn: str, start: int, k: str | None,
                 v: bytes | None) -> tuple[Entry, tuple[None, None]]:
        entry = Entry(dn, line=start)
        while k is not None:
            if k == "-":
                raise self._error("'-' outside a modify record", lexer.pair_line)
            assert v is not None
            entry.add(self._attr_name(lexer, k), [v])
            k, v = self._pair(lexer)
        return entry, (None, None)

    def _change(self, lexer: _Lexer, dn: str, changetype: str,
                start: int) -> tuple[Change, tuple[None, None]]:
        k, v = self._pair(lexer)
        if changetype == "add":
            # An add without attributes is sent as ldapmodify sends it: the
            # server refuses it (protocolError), a failure of that record.
            entry, end = self._content(lexer, dn, start, k, v)
            return Change("add", dn, attrs=entry.attrs, line=start), end
        if changetype == "delete":
            if k is not None:
                raise self._error("delete record with extra lines", lexer.pair_line, k)
            return Change("delete", dn, line=start), (None, None)
        if changetype in ("modrdn", "moddn"):
            return self._modrdn(lexer, dn, start, k, v)
        mods: list[Mod] = []
        while k is not None:
            if k not in _MOD_OPS:
                raise self._error(f"expected add:, delete:, replace: or increment:, got {k!r}",
                                  lexer.pair_line, k)
            assert v is not None
            op_line = lexer.pair_line
            attr = self._attr_name(lexer, v.decode("utf-8").strip())
            mod = Mod(k, attr)  # type: ignore[arg-type]
            k, v = self._pair(lexer)
            while k is not None and k != "-":
                if k.lower() != attr.lower():
                    raise self._error(f"value of {k!r} inside the {mod.op} of {attr!r}",
                                      lexer.pair_line, k)
                assert v is not None
                mod.values.append(v)
                k, v = self._pair(lexer)
            mods.append(mod)
            if k is None:
                # RFC 2849 asks for the '-'; ldapmodify, perl-ldap and
                # python-ldap all accept a record that ends without it.
                log.warning("%s:%s: modification of %r not ended by '-' (accepted)",
                            self.name, op_line, attr)
                break
            k, v = self._pair(lexer)
        return Change("modify", dn, mods=mods, line=start), (None, None)

    def _modrdn(self, lexer: _Lexer, dn: str, start: int, k: str | None,
                v: bytes | None) -> tuple[Change, tuple[None, None]]:
        fields: dict[str, str] = {}
        while k is not None:
            if k.lower() not in ("newrdn", "deleteoldrdn", "newsuperior") or k.lower() in fields:
                raise self._error(f"unexpected {k!r} in a modrdn record", lexer.pair_line, k)
            assert v is not None
            fields[k.lower()] = v.decode("utf-8")
            k, v = self._pair(lexer)
        if "newrdn" not in fields:
            raise self._error("modrdn record without newrdn", start, "newrdn")
        for name in ("newrdn", "newsuperior"):
            problem = dn_problem(fields[name]) if fields.get(name) else None
            if problem is None and name == "newrdn" and "," in fields[name] \
                    and len(ldap.dn.str2dn(fields[name])) != 1:
                problem = f"not one RDN: {fields[name]!r}"
            if problem is not None:
                raise self._error(problem, start, name)
        old = fields.get("deleteoldrdn", "1").strip()
        if old not in ("0", "1"):
            raise self._error(f"deleteoldrdn must be 0 or 1, not {old!r}", start, "deleteoldrdn")
        return Change("modrdn", dn, newrdn=fields["newrdn"], deleteoldrdn=old == "1",
                      newsuperior=fields.get("newsuperior"), line=start), (None, None)

    # -- fast path -------------------------------------------------------
    # python-ldap's lexer makes a handful of Python calls per physical line;
    # on a large file that is most of the time of import and diff. Reading a
    # file by path, the blocks between empty lines are split here in big
    # chunks, and a block that is a plain content record (no comment, no
    # URL value, no changetype or control, nothing malformed) is parsed in
    # one tight loop, with exactly the lexer's rules. Every other block -
    # the first one (it may hold ``version:``), change records, anything
    # odd or wrong - goes to the lexer itself, started at the block's line,
    # so its records and errors are the lexer's own.

    def _fast_records(self, path: Path) -> Iterator[Record]:
        first = True  # nothing but comments so far: 'version:' may still come
        for start, lines, terminated in blocks(path, self.name):
            record = None if first else plain_record(lines, start)
            if record is None:
                text = "\n".join(lines) + ("\n" if terminated else "")
                lexer = _Lexer(io.StringIO(text, newline=""), first_line=start,
                               url_values=self._url_values)
                for lexed in self._lexed(lexer, first):
                    first = False
                    yield lexed
                if self.version is not None:
                    first = False
            else:
                yield record
                first = False


def read_ldif(path: str | os.PathLike[str]) -> Iterator[Record]:
    with LDIFReader(path) as reader:
        yield from reader


class LDIFWriter(ldif.LDIFWriter):
    """python-ldap's writer (base64 for unsafe values, folding at 76 columns),
    completed with delete, modrdn and add change records."""

    def __init__(self, stream: IO[str], cols: int = 76, base64_attrs: Iterable[str] = ()) -> None:
        super().__init__(stream, base64_attrs=list(base64_attrs), cols=cols)
        self.stream = stream
        self.cols = cols
        self.line_sep = self._last_line_sep
        self._binary: dict[str, bool] = {}

    def always_base64(self, attr_type: str) -> bool:
        """Every value of ``attr_type`` is written in base64 (a binary type)."""
        binary = self._binary.get(attr_type)
        if binary is None:
            binary = self._binary[attr_type] = (is_binary(attr_type)
                                                or attr_type.lower() in self._base64_attrs)
        return binary

    def _needs_base64_encoding(self, attr_type: str, attr_value: bytes) -> bool:
        return self.always_base64(attr_type) or _unsafe(attr_value)

    def _unparseAttrTypeandValue(self, attr_type: str, attr_value: bytes) -> None:
        # The same output as python-ldap's, without its per-line overheads:
        # export spends most of its time here.
        if self._needs_base64_encoding(attr_type, attr_value):
            line = f"{attr_type}:: {base64.b64encode(attr_value).decode('ascii')}"
        else:
            line = f"{attr_type}: {attr_value.decode('ascii')}"
        if len(line) <= self._cols:
            self._output_file.write(line + self._last_line_sep)
        else:
            self._unfold_lines(line)

    def _unparseEntryRecord(self, entry: dict[str, list[bytes]]) -> None:
        # Keep the entry's own attribute order (objectClass first, as servers
        # send it); a caller that wants a canonical order sorts beforehand.
        for attr_type, values in entry.items():
            for value in values:
                self._unparseAttrTypeandValue(attr_type, value)

    def version(self) -> None:
        self.stream.write("version: 1\n\n")

    def comment(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.stream.write(f"# {line}\n")

    def entry(self, entry: Entry) -> None:
        """One content record, built as one string (the export hot path:
        the SAFE-STRING test is inlined, each line folded as it is made)."""
        self._record(entry.dn, entry.attrs, None)

    def _record(self, dn: str, attrs: dict[str, list[bytes]], changetype: str | None) -> None:
        """A content record, or an add change record with ``changetype: add``."""
        cols = self._cols
        sep = self._last_line_sep
        binary = self._binary
        b64 = base64.b64encode
        unsafe_first = _UNSAFE_FIRST
        control = _CONTROL_BYTE.search
        raw_dn = dn.encode("utf-8")
        line = f"dn:: {b64(raw_dn).decode('ascii')}" if _unsafe(raw_dn) else f"dn: {dn}"
        lines = [_fold(line, cols, sep) if len(line) > cols else line]
        append = lines.append
        if changetype is not None:
            append(changetype)
        for name, values in attrs.items():
            is_bin = binary.get(name)
            if is_bin is None:
                is_bin = self.always_base64(name)
            for value in values:
                if (is_bin or not value.isascii()
                        or (value and (value[0] in unsafe_first or value[-1] == 0x20))
                        or control(value)):
                    line = f"{name}:: {b64(value).decode('ascii')}"
                else:
                    line = f"{name}: {value.decode('ascii')}"
                append(_fold(line, cols, sep) if len(line) > cols else line)
        append(sep)
        self._output_file.write(sep.join(lines))
        self.records_written += 1

    def change(self, change: Change) -> None:
        if change.kind == "add":
            # A first sync writes one of these per entry: one string, as entry() does.
            self._record(change.dn, change.attrs or {}, "changetype: add")
            return
        pair = self._unparseAttrTypeandValue
        pair("dn", change.dn.encode("utf-8"))
        if change.kind == "add":
            pair("changetype", b"add")
            self._unparseEntryRecord(change.attrs or {})
        elif change.kind == "delete":
            pair("changetype", b"delete")
        elif change.kind == "modrdn":
            pair("changetype", b"modrdn")
            pair("newrdn", (change.newrdn or "").encode("utf-8"))
            pair("deleteoldrdn", b"1" if change.deleteoldrdn else b"0")
            if change.newsuperior is not None:
                pair("newsuperior", change.newsuperior.encode("utf-8"))
        else:
            pair("changetype", b"modify")
            for mod in change.mods:
                pair(mod.op, mod.attr.encode("utf-8"))
                for value in mod.values:
                    pair(mod.attr, value)
                self.stream.write("-" + self._last_line_sep)
        self.stream.write(self._last_line_sep)
        self.records_written += 1

    def record(self, record: Record) -> None:
        if isinstance(record, Entry):
            self.entry(record)
        else:
            self.change(record)


def _fold(line: str, cols: int, sep: str) -> str:
    """RFC 2849 folding: first line ``cols`` long, then a space and cols-1."""
    parts = [line[:cols]]
    parts += [" " + line[i:i + cols - 1] for i in range(cols, len(line), cols - 1)]
    return sep.join(parts)


def entry_to_ldif(entry: Entry) -> str:
    buf = io.StringIO()
    LDIFWriter(buf).entry(entry)
    return buf.getvalue()


def open_output(path: str | os.PathLike[str] | None) -> IO[str]:
    """stdout for None or '-', else the file (UTF-8)."""
    import sys

    if path is None or str(path) == "-":
        return sys.stdout
    return open(Path(path), "w", encoding="utf-8", newline="\n")
