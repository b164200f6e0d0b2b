"""Where the LDIF reader is lenient and where it stays strict, as ldapmodify,
perl-ldap and python-ldap agree (docs/ldif-tools.md); and the ``control:``
lines of change records (RFC 2849). No server needed."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from dirsync.entry import Entry
from dirsync.errors import InputError
from dirsync.ldif.changes import Change, Control
from dirsync.ldif.controls import parse_control
from dirsync.ldif.io import LDIFReader

COMMENT_FIRST = ("# a comment before the version line\n\n"
                 "version: 1\n\n\n"
                 "# between records\n\n"
                 "dn: cn=a,dc=x\ncn: a\n\n"
                 "# another one\n"
                 "dn: cn=b,dc=x\ncn: b\n")


def read(text: str, tmp_path: Path, *, by_path: bool = True) -> tuple[list, LDIFReader]:
    if by_path:
        path = tmp_path / "in.ldif"
        path.write_text(text, encoding="utf-8")
        reader = LDIFReader(path)
    else:
        reader = LDIFReader(io.StringIO(text), name="in.ldif")
    with reader:
        return list(reader), reader


@pytest.mark.parametrize("by_path", [True, False])
def test_comments_and_blank_lines_before_the_version_line(tmp_path: Path,
                                                         by_path: bool) -> None:
    records, reader = read(COMMENT_FIRST, tmp_path, by_path=by_path)
    assert reader.version == 1
    assert [(r.dn, r.line) for r in records] == [("cn=a,dc=x", 8), ("cn=b,dc=x", 12)]


def test_a_file_of_comments_only_has_no_records(tmp_path: Path) -> None:
    records, _ = read("# nothing\n\n# at all\n", tmp_path)
    assert records == []


@pytest.mark.parametrize("text", [
    # version: after a record, with or without comments before it
    "dn: cn=a,dc=x\ncn: a\n\nversion: 1\n",
    "# c\n\ndn: cn=a,dc=x\ncn: a\n\nversion: 1\n",
    "version: 1\n\nversion: 1\n",
])
def test_a_version_line_after_the_first_record_stays_refused(tmp_path: Path,
                                                             text: str) -> None:
    with pytest.raises(InputError) as caught:
        read(text, tmp_path)
    assert "does not start with 'dn:'" in str(caught.value)


def test_a_missing_final_dash_is_accepted_with_a_warning_naming_the_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = ("dn: cn=a,dc=x\nchangetype: modify\nreplace: sn\nsn: y\n-\n"
            "add: mail\nmail: a@b\n\n"
            "dn: cn=b,dc=x\nchangetype: modify\ndelete: description")  # no newline either
    with caplog.at_level(logging.WARNING, logger="dirsync.ldif"):
        records, _ = read(text, tmp_path)
    first, second = records
    assert [(m.op, m.attr, m.values) for m in first.mods] == [
        ("replace", "sn", [b"y"]), ("add", "mail", [b"a@b"])]
    assert [(m.op, m.attr, m.values) for m in second.mods] == [("delete", "description", [])]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].endswith("in.ldif:6: modification of 'mail' not ended by '-' (accepted)")
    assert "in.ldif:11: modification of 'description'" in warnings[1]


@pytest.mark.parametrize(("text", "line", "needle"), [
    # a dash missing between two mod-specs is still an error
    ("dn: cn=a,dc=x\nchangetype: modify\nreplace: sn\nsn: y\nadd: mail\nmail: a\n", 5,
     "value of 'add' inside the replace of 'sn'"),
    ("dn: cn=a,dc=x\ncontrol: 1.2.3 true\ncn: a\n", 3, "belong to change records"),
    ("dn: cn=a,dc=x\ncontrol: not-an-oid\nchangetype: delete\n", 2, "not a control"),
    ("dn: cn=a,dc=x\ncontrol: 1.2.3 maybe\nchangetype: delete\n", 2, "not a control"),
    ("dn: cn=a,dc=x\ncontrol: 1.2.3 true:: !!!\nchangetype: delete\n", 2,
     "bad base64 control value"),
])
def test_strict_where_the_reference_tools_refuse(tmp_path: Path, text: str, line: int,
                                                 needle: str) -> None:
    with pytest.raises(InputError) as caught:
        read(text, tmp_path)
    assert caught.value.line == line
    assert needle in str(caught.value)


@pytest.mark.parametrize(("raw", "control"), [
    (b"1.2.840.113556.1.4.805 true", Control("1.2.840.113556.1.4.805", True, None)),
    (b"1.2.840.113556.1.4.805 false", Control("1.2.840.113556.1.4.805", False, None)),
    (b"2.16.840.1.113730.3.4.2", Control("2.16.840.1.113730.3.4.2", False, None)),
    (b"2.16.840.1.113730.3.4.18 true: dn:cn=me,o=x",
     Control("2.16.840.1.113730.3.4.18", True, b"dn:cn=me,o=x")),
    (b"2.16.840.1.113730.3.4.18 true:: ZG46Y249bWU=",
     Control("2.16.840.1.113730.3.4.18", True, b"dn:cn=me")),
    (b"1.3.6.1.1.12:: MAA=", Control("1.3.6.1.1.12", False, b"0\x00")),
    (b"1.2.3 true:", Control("1.2.3", True, b"")),
])
def test_control_lines(raw: bytes, control: Control) -> None:
    assert parse_control(raw) == control


def test_controls_stay_with_their_change_record(tmp_path: Path) -> None:
    text = ("dn: cn=a,dc=x\ncontrol: 1.2.840.113556.1.4.805 true\n"
            "control: 2.16.840.1.113730.3.4.2\nchangetype: delete\n\n"
            "dn: cn=b,dc=x\ncn: b\n\n"
            "dn: cn=b,dc=x\nchangetype: modify\nreplace: cn\ncn: c\n-\n")
    delete, entry, modify = read(text, tmp_path)[0]
    assert isinstance(delete, Change) and delete.controls == [
        Control("1.2.840.113556.1.4.805", True), Control("2.16.840.1.113730.3.4.2", False)]
    assert isinstance(entry, Entry)
    assert isinstance(modify, Change) and modify.controls == []
