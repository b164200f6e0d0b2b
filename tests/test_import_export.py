"""dirsync import and export against a real slapd."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.entry import Entry, normalize_dn
from dirsync.ldif.changes import modify_ops
from dirsync.ldif.io import read_ldif
from dirsync.schema import OPERATIONAL
from dirsync.testing.slapd import SlapdServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def creds(slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlapdServer:
    monkeypatch.setenv("DIRSYNC_BIND_DN", slapd.root_dn)
    monkeypatch.setenv("DIRSYNC_PASSWORD", slapd.root_pw)
    return slapd


def user_entries(path: Path) -> dict[str, Entry]:
    out = {}
    for record in read_ldif(path):
        assert isinstance(record, Entry)
        for name in list(record.attrs):
            if name.lower() in OPERATIONAL:
                record.remove(name)
        out[normalize_dn(record.dn)] = record
    return out


def rebased(text: str, base: str) -> str:
    return text.replace("ou=Roundtrip,dc=example,dc=org", f"ou=Roundtrip,{base}")


def test_round_trip_through_a_real_server(creds: SlapdServer, base: str, tmp_path: Path) -> None:
    source = tmp_path / "in.ldif"
    # Re-home the fixture under this test's own subtree (base64 DNs included).
    records = list(read_ldif(FIXTURES / "roundtrip.ldif"))
    from dirsync.ldif.io import LDIFWriter

    with open(source, "w", encoding="utf-8") as out:
        writer = LDIFWriter(out)
        for record in records:
            record.dn = rebased(record.dn, base)
            if "member" in record:
                record.set("member", [rebased(v.decode(), base).encode()
                                      for v in record.get("member")])
            writer.entry(record)
    assert main(["import", creds.url, str(source)]) == 0
    exported = tmp_path / "out.ldif"
    url = f"{creds.url}/ou=Roundtrip,{base}"
    assert main(["export", url, "-o", str(exported), "--sort"]) == 0
    want, got = user_entries(source), user_entries(exported)
    assert set(want) == set(got)
    for key, entry in want.items():
        # Equal by each attribute's matching rule: nothing left to change.
        assert modify_ops(got[key], entry) == [], key
        assert sorted(got[key].get("cn")) == sorted(entry.get("cn"))
    photo = next(e for e in got.values() if "jpegPhoto" in e).get("jpegPhoto")[0]
    assert photo.startswith(b"\xff\xd8") and len(photo) == 4 + 768 + 2


def test_export_leaves_operational_attributes_out_unless_asked(creds: SlapdServer, base: str,
                                                               tmp_path: Path) -> None:
    plain, full = tmp_path / "plain.ldif", tmp_path / "full.ldif"
    assert main(["export", creds.url, "--base", base, "-o", str(plain)]) == 0
    assert main(["export", creds.url, "--base", base, "--attrs", "*,+", "-o", str(full)]) == 0
    assert "entryUUID" not in plain.read_text()
    assert "entryUUID" in full.read_text() and "modifyTimestamp" in full.read_text()


def test_export_filter_and_attribute_list(creds: SlapdServer, base: str, tmp_path: Path) -> None:
    conn = creds.connect()
    for name in ("ann", "bob"):
        conn.add_s(f"cn={name},{base}", [("objectClass", [b"inetOrgPerson"]),
                                        ("cn", [name.encode()]), ("sn", [b"S"]),
                                        ("mail", [f"{name}@x.org".encode()])])
    out = tmp_path / "f.ldif"
    assert main(["export", creds.url, "--base", base, "--filter", "(cn=bob)",
                 "--attrs", "mail", "-o", str(out)]) == 0
    entries = list(read_ldif(out))
    assert [e.dn for e in entries] == [f"cn=bob,{base}"]
    assert entries[0].names() == ["mail"]


def test_import_adds_parents_before_children(creds: SlapdServer, base: str,
                                             tmp_path: Path) -> None:
    path = tmp_path / "kids-first.ldif"
    path.write_text(
        f"dn: cn=kid,ou=parent,{base}\nobjectClass: organizationalRole\ncn: kid\n\n"
        f"dn: ou=parent,{base}\nobjectClass: organizationalUnit\nou: parent\n")
    assert main(["import", creds.url, str(path)]) == 0
    conn = creds.connect()
    assert conn.search_s(f"cn=kid,ou=parent,{base}", ldap.SCOPE_BASE)


def change_file(base: str) -> str:
    return (
        f"dn: cn=c1,{base}\nchangetype: add\nobjectClass: inetOrgPerson\ncn: c1\nsn: One\n\n"
        f"dn: cn=c1,{base}\nchangetype: modify\nreplace: sn\nsn: Uno\n-\nadd: mail\n"
        f"mail: c1@x.org\n-\n\n"
        f"dn: cn=c1,{base}\nchangetype: modrdn\nnewrdn: cn=c2\ndeleteoldrdn: 1\n\n"
        f"dn: cn=gone,{base}\nchangetype: add\nobjectClass: organizationalRole\ncn: gone\n\n"
        f"dn: cn=gone,{base}\nchangetype: delete\n")


def test_import_change_records(creds: SlapdServer, base: str, tmp_path: Path) -> None:
    path = tmp_path / "changes.ldif"
    path.write_text(change_file(base))
    assert main(["import", creds.url, str(path)]) == 0
    conn = creds.connect()
    (dn, attrs), = conn.search_s(base, ldap.SCOPE_ONELEVEL, "(objectClass=inetOrgPerson)")
    assert dn == f"cn=c2,{base}" and attrs["sn"] == [b"Uno"] and attrs["mail"] == [b"c1@x.org"]
    assert attrs["cn"] == [b"c2"]
    assert not conn.search_s(base, ldap.SCOPE_ONELEVEL, "(cn=gone)")


def test_dry_run_changes_nothing(creds: SlapdServer, base: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "changes.ldif"
    path.write_text(change_file(base))
    assert main(["import", creds.url, str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"would add cn=c1,{base}" in printed and "would modrdn" in printed
    conn = creds.connect()
    assert conn.search_s(base, ldap.SCOPE_ONELEVEL) == []


def failing_file(base: str) -> str:
    # Record 2 fails (its parent does not exist); records 1 and 3 are fine.
    return (
        f"dn: cn=first,{base}\nobjectClass: organizationalRole\ncn: first\n\n"
        f"dn: cn=orphan,ou=nowhere,{base}\nobjectClass: organizationalRole\ncn: orphan\n\n"
        f"dn: cn=third,{base}\nobjectClass: organizationalRole\ncn: third\n")


def test_first_failure_stops_and_nothing_after_it_stays(creds: SlapdServer, base: str,
                                                        tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    path = tmp_path / "fail.ldif"
    path.write_text(failing_file(base))
    assert main(["import", creds.url, str(path)]) == 1
    err = capsys.readouterr().err
    assert f"fail.ldif:5: cn=orphan,ou=nowhere,{base}: noSuchObject" in err
    conn = creds.connect()
    names = sorted(a["cn"][0] for _, a in conn.search_s(base, ldap.SCOPE_ONELEVEL,
                                                        "(cn=*)", ["cn"]))
    assert names == [b"first"]


def test_continue_on_error_reports_every_failure(creds: SlapdServer, base: str,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fail.ldif"
    path.write_text(failing_file(base) + f"\ndn: cn=first,{base}\nobjectClass: "
                    "organizationalRole\ncn: first\n")
    assert main(["--json", "import", creds.url, str(path), "--continue-on-error"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failures = [x for x in lines if "result" in x]
    assert [(f["line"], f["result"]) for f in failures] == [(5, "noSuchObject"),
                                                            (13, "entryAlreadyExists")]
    assert lines[-1]["summary"] == {"applied": 2, "failed": 2, "not_attempted": 0}


def test_add_of_existing_entry_fails_unless_update(creds: SlapdServer, base: str,
                                                   tmp_path: Path) -> None:
    conn = creds.connect()
    conn.add_s(f"cn=ex,{base}", [("objectClass", [b"inetOrgPerson"]), ("cn", [b"ex"]),
                                 ("sn", [b"Old"]), ("description", [b"kept"])])
    path = tmp_path / "again.ldif"
    path.write_text(f"dn: cn=ex,{base}\nobjectClass: inetOrgPerson\ncn: ex\nsn: New\n")
    assert main(["import", creds.url, str(path)]) == 1
    assert main(["import", creds.url, str(path), "--update"]) == 0
    (_, attrs), = conn.search_s(f"cn=ex,{base}", ldap.SCOPE_BASE)
    assert attrs["sn"] == [b"New"] and attrs["description"] == [b"kept"]


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("dn: cn=ok,{base}\nobjectClass: organizationalRole\ncn: ok\n\n"
     "dn: cn=bad,{base}\ncn:: !!notbase64\n", 6, "bad base64"),
    ("dn: cn=ok,{base}\nobjectClass: organizationalRole\ncn: ok\n\ncn: nodn\n", 5, "dn:"),
    ("dn: cn=ok,{base}\nobjectClass: organizationalRole\ncn: ok\n\n continued\n", 5,
     "continuation"),
    ("dn: cn=ok,{base}\nobjectClass: organizationalRole\ncn: ok\n\n"
     "dn: cn=ok,{base}\nchangetype: explode\n", 6, "unknown changetype"),
    ("dn: cn=ok,{base}\nobjectClass: organizationalRole\ncn: ok\n\n"
     "dn: cn=x,{base}\nobjectClass: organizationalRole\ncn: x\nnoSuchAttr: 1\n", 5,
     "unknown attribute type"),
])
def test_malformed_ldif_changes_nothing(creds: SlapdServer, base: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str], text: str,
                                        line: int, needle: str) -> None:
    path = tmp_path / "bad.ldif"
    path.write_text(text.format(base=base))
    assert main(["import", creds.url, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"bad.ldif:{line}:" in err and needle in err
    assert creds.connect().search_s(base, ldap.SCOPE_ONELEVEL) == []


def test_bind_with_password_file_and_bad_password(slapd: SlapdServer, base: str,
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIRSYNC_BIND_DN", raising=False)
    monkeypatch.delenv("DIRSYNC_PASSWORD", raising=False)
    good, bad = tmp_path / "good.pw", tmp_path / "bad.pw"
    good.write_text(slapd.root_pw + "\n")
    bad.write_text("wrong\n")
    path = tmp_path / "one.ldif"
    path.write_text(f"dn: cn=pw,{base}\nobjectClass: organizationalRole\ncn: pw\n")
    assert main(["import", slapd.url, str(path), "--bind-dn", slapd.root_dn,
                 "--password-file", str(bad)]) == 2
    assert main(["import", slapd.url, str(path), "--bind-dn", slapd.root_dn,
                 "--password-file", str(good)]) == 0


def test_tls_verification_is_on_by_default(tmp_path: Path) -> None:
    with SlapdServer(tls=True) as server:
        server.add_suffix()
        out = tmp_path / "o.ldif"
        # Unknown CA: refused, nothing written. With the CA: ldaps and StartTLS work.
        code = subprocess.run(
            [sys.executable, "-m", "dirsync", "export", server.ldaps_url + "/" + server.suffix,
             "-o", str(out)], capture_output=True, text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert code.returncode != 0 and "certificate may not verify" in code.stderr
        assert not out.exists()
        assert main(["export", server.ldaps_url + "/" + server.suffix, "-o", str(out),
                     "--ca-file", str(server.ca_file)]) == 0
        assert "dc=example,dc=org" in out.read_text()
        assert main(["export", server.url + "/" + server.suffix, "-o", str(out),
                     "--starttls", "--ca-file", str(server.ca_file)]) == 0


def test_ldapi_with_sasl_external(tmp_path: Path) -> None:
    with SlapdServer() as server:
        server.add_suffix()
        out = tmp_path / "o.ldif"
        assert main(["export", server.ldapi_url + "/" + server.suffix, "-o", str(out)]) == 0
        assert "dc=example,dc=org" in out.read_text()


def test_directory_by_its_name_in_the_config(tmp_path: Path) -> None:
    hub = tmp_path / "hub.ldif"
    hub.write_text("dn: dc=example,dc=org\nobjectClass: domain\ndc: example\n")
    config = tmp_path / "dirsync.toml"
    config.write_text('[directories.hub]\nkind = "ldif"\npath = "hub.ldif"\n'
                      'base = "dc=example,dc=org"\n')
    changes = tmp_path / "add.ldif"
    changes.write_text("dn: ou=People,dc=example,dc=org\nobjectClass: organizationalUnit\n"
                       "ou: People\n")
    assert main(["-c", str(config), "import", "hub", str(changes)]) == 0
    out = tmp_path / "out.ldif"
    assert main(["-c", str(config), "export", "hub", "-o", str(out)]) == 0
    assert [e.dn for e in read_ldif(out)] == ["dc=example,dc=org",
                                              "ou=People,dc=example,dc=org"]
    assert main(["-c", str(config), "export", "nosuch"]) == 2
