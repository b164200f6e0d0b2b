"""What a person reads: the line of a bad byte, plurals, one canonical DN form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.directories.csvfile import CSVDirectory
from dirsync.directories.ldiffile import LDIFDirectory
from dirsync.entry import display_dn
from dirsync.errors import InputError
from dirsync.state.store import StateStore
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_row, hub_config, search, write_csv
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


def test_a_dn_reads_the_same_in_every_run(slapd: SlapdServer, base: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """slapd hands DNs back as ``O'Neil\\2C Pat``; dirsync shows ``O'Neil\\, Pat`` always."""
    container = f"ou=Import,{base}"
    rows = [gal_row("poneil", **{"Display Name": "O'Neil, Pat"}), gal_row("ann")]
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, container, source)
    expected = f"cn=O'Neil\\, Pat,{container}"
    seen: list[str] = []
    for change in ({}, {"Title": "Manager"}, {"Title": "Boss"}):
        rows[0].update(change)
        write_csv(source, rows)
        capsys.readouterr()
        assert main(["-c", str(config), "--json", "sync", *(["--full"] if change.get(
            "Title") == "Boss" else [])]) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        report = json.loads((Path(line["report"]) / "report.json").read_text())
        seen += [e["dn"] for e in report["entries"] if "Neil" in e["dn"]]
        ldif = (Path(line["report"]) / "changes.ldif").read_text()
        assert "2C" not in ldif
    assert seen == [expected] * 3
    # The server itself keeps its own (hex) form: the one shown is dirsync's.
    assert any("\\2C" in dn for dn in search(slapd, container, "(cn=O'Neil*)"))
    with StateStore(config.parent / "var" / "state.sqlite") as state:
        assert state.entries("gal")["poneil"].dn == expected
    # dirsync export writes it so too, by the compiled reader and by the Python one.
    for sort in ([], ["--sort"]):
        out = tmp_path / "hub.ldif"
        assert main(["-c", str(config), "export", "hub", "--base", container, "-o", str(out),
                     *sort]) == 0
        assert f"dn: {expected}\n" in out.read_text() and "2C" not in out.read_text()


def test_an_ldif_directory_shows_dns_so_too(tmp_path: Path) -> None:
    path = tmp_path / "hub.ldif"
    path.write_text("dn: dc=example,dc=org\nobjectClass: domain\ndc: example\n\n"
                    "dn: cn=O'Neil\\2C Pat,dc=example,dc=org\nobjectClass: person\n"
                    "cn: O'Neil, Pat\nsn: O\n")
    dns = [entry.dn for entry in LDIFDirectory(path, create=False).read()]
    assert dns == ["dc=example,dc=org", "cn=O'Neil\\, Pat,dc=example,dc=org"]


def test_display_dn() -> None:
    assert display_dn("cn=O'Neil\\2C Pat,dc=example,dc=org") == \
        "cn=O'Neil\\, Pat,dc=example,dc=org"
    assert display_dn("cn=O'Neil\\, Pat,dc=example,dc=org") == \
        "cn=O'Neil\\, Pat,dc=example,dc=org"
    assert display_dn("cn=Jos\\C3\\A9 Doe,dc=x") == "cn=José Doe,dc=x"
    assert display_dn("CN=Plain Name,DC=x") == "CN=Plain Name,DC=x"
    assert display_dn("cn=a\\2Bb+sn=c,dc=x") == "cn=a\\+b+sn=c,dc=x"
    assert display_dn("not a dn\\") == "not a dn\\"
