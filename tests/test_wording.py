"""What a person reads: the line of a bad byte, plurals, one canonical DN form."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.cli import main
from dirsync.directories.csvfile import CSVDirectory
from dirsync.errors import InputError
from dirsync.wording import plural


def test_plural() -> None:
    assert [plural(n, "entry") for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]
    assert plural(1, "row") == "1 row" and plural(3, "row") == "3 rows"
    assert plural(2, "add") == "2 adds"


@pytest.mark.parametrize("line", [2, 3, 400])
def test_a_latin_1_byte_is_reported_at_its_line(tmp_path: Path, line: int) -> None:
    rows = [b"Alias,Display Name"] + [f"u{i},User {i}".encode() for i in range(1, 500)]
    rows[line - 1] = b"jdoe,Jos\xe9 Doe"          # Latin-1 e-acute, not UTF-8
    path = tmp_path / "gal.csv"
    path.write_bytes(b"\n".join(rows) + b"\n")
    for read in (lambda d: list(d.read()), lambda d: d.check_readable()):
        with pytest.raises(InputError) as caught:
            read(CSVDirectory(path, create=False))
        assert caught.value.line == line
        assert str(caught.value).startswith(f"{path}:{line}: not utf-8-sig text: byte 0xe9 "
                                            "at column 9: ")
        assert 'encoding = "...", e.g. "cp1252"' in str(caught.value)


def test_exported_1_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "one.ldif"
    source.write_text("dn: cn=A,dc=example,dc=org\nobjectClass: person\ncn: A\nsn: A\n")
    assert main(["export", str(source), "-o", str(tmp_path / "out.ldif")]) == 0
    assert capsys.readouterr().err.strip() == "exported 1 entry"
    source.write_text(source.read_text() + "\ndn: cn=B,dc=example,dc=org\nobjectClass: person\n"
                      "cn: B\nsn: B\n")
    assert main(["export", str(source), "-o", str(tmp_path / "out.ldif")]) == 0
    assert capsys.readouterr().err.strip() == "exported 2 entries"
