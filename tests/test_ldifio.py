"""LDIF reading and writing, without a server."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dirsync.entry import Entry
from dirsync.errors import InputError
from dirsync.ldif.changes import Change
from dirsync.ldif.io import LDIFReader, LDIFWriter, read_ldif
from dirsync.ldif.urlvalues import URLValues

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def parse(text: str, tmp_path: Path) -> list:
    path = tmp_path / "in.ldif"
    path.write_text(text, encoding="utf-8")
    return list(read_ldif(path))


def test_content_and_change_records_with_their_lines(tmp_path: Path) -> None:
    records = parse(
        "version: 1\n\n"
        "dn: cn=a,dc=x\ncn: a\ncn: b\n\n"
        "# a comment\n"
        "dn: cn=a,dc=x\nchangetype: modify\nreplace: sn\nsn: y\n-\nadd: mail\nmail: a@b\n-\n"
        "delete: cn\ncn: b\n-\n\n"
        "dn: cn=a,dc=x\nchangetype: modrdn\nnewrdn: cn=c\ndeleteoldrdn: 0\n"
        "newsuperior: ou=p,dc=x\n\n"
        "dn: cn=c,ou=p,dc=x\nchangetype: delete\n\n"
        "dn: cn=d,dc=x\nchangetype: add\ncn: d\n",
        tmp_path)
    entry, modify, modrdn, delete, add = records
    assert isinstance(entry, Entry) and entry.line == 3 and entry.get("CN") == [b"a", b"b"]
    assert isinstance(modify, Change) and modify.line == 8
    assert [(m.op, m.attr, m.values) for m in modify.mods] == [
        ("replace", "sn", [b"y"]), ("add", "mail", [b"a@b"]), ("delete", "cn", [b"b"])]
    assert modrdn.kind == "modrdn" and modrdn.line == 20 and not modrdn.deleteoldrdn
    assert modrdn.target_dn == "cn=c,ou=p,dc=x"
    assert delete.kind == "delete" and delete.line == 26
    assert add.kind == "add" and add.attrs == {"cn": [b"d"]} and add.line == 29


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("dn: cn=a,dc=x\ncn:: !!!!\n", 2, "bad base64"),
    ("dn: cn=a,dc=x\ncn:: YWJj$ZA==\n", 2, "bad base64"),
    ("dn: cn=a,dc=x\ncn: a\n\ncn: b\n", 4, "does not start with 'dn:'"),
    ("dn: cn=a,dc=x\ncn: a\n\n continued\n", 4, "continuation line"),
    ("\n continued\n", 2, "continuation line"),
    ("dn: cn=a,dc=x\nchangetype: frobnicate\n", 2, "unknown changetype"),
    ("dn: cn=a,dc=x\ncn: a\n\nversion: 1\ndn: cn=b,dc=x\ncn: b\n", 4,
     "does not start with 'dn:'"),
    ("dn: cn=a,dc=x\nchangetype: modrdn\ndeleteoldrdn: 1\n", 1, "without newrdn"),
    ("dn: not a dn\ncn: a\n", 1, "not a valid DN"),
    ("dn: cn=a,dc=x\nc n: a\n", 2, "not a valid attribute description"),
])
def test_malformed_ldif_names_file_and_line(tmp_path: Path, text: str, line: int,
                                            needle: str) -> None:
    with pytest.raises(InputError) as caught:
        parse(text, tmp_path)
    assert caught.value.line == line
    assert caught.value.path is not None and caught.value.path.endswith("in.ldif")
    assert needle in str(caught.value)


def test_writer_round_trips_the_fixture_exactly() -> None:
    source = FIXTURES / "roundtrip.ldif"
    first = list(read_ldif(source))
    out = io.StringIO()
    writer = LDIFWriter(out)
    for record in first:
        writer.record(record)
    again = list(LDIFReader(io.StringIO(out.getvalue()), name="again"))
    assert again == first
    # Folding: no written line is longer than 76 columns.
    assert max(len(line) for line in out.getvalue().splitlines()) <= 76


def test_writer_base64_for_binary_and_unsafe_values() -> None:
    out = io.StringIO()
    LDIFWriter(out).entry(Entry("cn=x", {
        "cn": [b"x"], "jpegPhoto": [b"plain ascii but binary type"],
        "description": [b" leading space"], "sn": ["M\u00fcller".encode()],
        "title": [b"trailing "]}))
    text = out.getvalue()
    assert "jpegPhoto:: " in text and "description:: " in text
    assert "sn:: " in text and "title:: " in text and "cn: x" in text


def test_writer_writes_every_change_kind() -> None:
    from dirsync.ldif.changes import Mod

    out = io.StringIO()
    writer = LDIFWriter(out)
    writer.change(Change("add", "cn=a,dc=x", attrs={"cn": [b"a"]}))
    writer.change(Change("delete", "cn=b,dc=x"))
    writer.change(Change("modrdn", "cn=c,dc=x", newrdn="cn=d", deleteoldrdn=True,
                         newsuperior="ou=p,dc=x"))
    writer.change(Change("modify", "cn=e,dc=x", mods=[Mod("replace", "sn", [b"z"]),
                                                      Mod("delete", "mail")]))
    parsed = list(LDIFReader(io.StringIO(out.getvalue()), name="x"))
    assert [c.kind for c in parsed] == ["add", "delete", "modrdn", "modify"]
    assert parsed[2].newsuperior == "ou=p,dc=x" and parsed[2].newrdn == "cn=d"
    assert [(m.op, m.attr, m.values) for m in parsed[3].mods] == [
        ("replace", "sn", [b"z"]), ("delete", "mail", [])]


@pytest.mark.parametrize("value", [
    b"", b"plain", b" lead", b":colon", b"<angle", b"trail ", b"mid dle", b"a\nb", b"a\rb",
    b"a\x00b", "Zo\u00eb".encode(), b"\x80", b"ok:inside<", b"\x00", b"-dash", b"#hash",
])
def test_base64_rule_matches_python_ldap(value: bytes) -> None:
    import ldif

    from dirsync.ldif.io import _unsafe

    assert _unsafe(value) == (ldif.safe_string_re.search(value) is not None)


def test_writer_entries_are_written_as_python_ldap_writes_them() -> None:
    # entry() inlines the SAFE-STRING test and the folding for speed; on
    # random values made of the bytes that matter (and long enough to fold)
    # it must write what python-ldap's own writer writes.
    import random

    import ldif

    rng = random.Random(2849)
    alphabet = [b"a", b"Z", b"0", b" ", b":", b"<", b"\n", b"\r", b"\x00", b"#", b"-",
                "\u00fc".encode(), b"\x7f", b"\xff"]
    for _ in range(400):
        attrs = {}
        for name in rng.sample(["cn", "description", "jpegPhoto", "mail", "sn", "title"],
                               rng.randint(1, 6)):
            attrs[name] = [b"".join(rng.choice(alphabet) for _ in range(rng.choice(
                [0, 1, 2, 5, 40, 75, 200]))) for _ in range(rng.randint(1, 3))]
        dn = rng.choice(["cn=plain,dc=x", " cn=lead,dc=x", "cn=M\u00fcller,dc=x",
                         "cn=" + "long" * 30 + ",dc=x"])
        ours = io.StringIO()
        LDIFWriter(ours).entry(Entry(dn, dict(sorted(attrs.items()))))
        theirs = io.StringIO()
        ldif.LDIFWriter(theirs, base64_attrs=["jpegPhoto"], cols=76).unparse(dn, attrs)
        assert ours.getvalue() == theirs.getvalue(), (dn, attrs)


def parse_with_urls(text: str, tmp_path: Path) -> list:
    path = tmp_path / "in.ldif"
    path.write_text(text, encoding="utf-8")
    with LDIFReader(path, url_values=URLValues.under(tmp_path)) as reader:
        return list(reader)


def test_a_url_value_whose_file_is_missing_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as caught:
        parse_with_urls(f"dn: cn=a,dc=x\ncn: a\njpegPhoto:< file://{missing}\n", tmp_path)
    assert caught.value.line == 3 and caught.value.field == "jpegPhoto"
    assert "cannot read" in str(caught.value)


def test_a_url_value_is_read_from_its_file(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8binary")
    entry, = parse_with_urls(f"dn: cn=a,dc=x\ncn: a\njpegPhoto:< file://{photo}\n", tmp_path)
    assert entry.get("jpegPhoto") == [b"\xff\xd8binary"]


@pytest.mark.parametrize("dn", ["cn=A,o=B", "cn=Ren\u00e9e,o=B", "cn=" + "y" * 100 + ",o=B"])
def test_an_add_change_record_is_written_as_python_ldap_writes_it(dn: str) -> None:
    import ldif  # python-ldap's own writer: the reference

    attrs = {"objectClass": [b"inetOrgPerson"], "cn": [b"Ren\xc3\xa9e ", b" lead"],
             "description": [b"x" * 200], "jpegPhoto": [b"\x00\x01"], "sn": [b"ok:<"],
             "l": [b"line\nbreak"], "title": [b""]}
    ours = io.StringIO()
    LDIFWriter(ours).change(Change("add", dn, attrs=attrs))
    theirs = io.StringIO()
    ldif.LDIFWriter(theirs, base64_attrs=["jpegPhoto"], cols=76).unparse(
        dn, list(attrs.items()))
    assert ours.getvalue() == theirs.getvalue()
