"""Controls of change records and the one rule for server refusals, against
a real slapd (docs/ldif-tools.md, "Controls" and "What counts as a failure").

The test server's controls: ManageDsaIT and Assertion are in its
supportedControl; Relax is not advertised but honoured; Tree Delete
(1.2.840.113556.1.4.805) is unknown to it.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import ldap
import ldap.controls
import ldap.controls.libldap
import pytest

from dirsync.cli.main import main
from dirsync.directories.ldap import LDAPDirectory
from dirsync.directories.ldifimport import run_import
from dirsync.testing.slapd import SlapdServer

MANAGE_DSA_IT = "2.16.840.1.113730.3.4.2"
RELAX = "1.3.6.1.4.1.4203.666.5.12"
ASSERTION = "1.3.6.1.1.12"
TREE_DELETE = "1.2.840.113556.1.4.805"


@pytest.fixture
def creds(slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch) -> SlapdServer:
    monkeypatch.setenv("DIRSYNC_BIND_DN", slapd.root_dn)
    monkeypatch.setenv("DIRSYNC_PASSWORD", slapd.root_pw)
    return slapd


def person(conn: ldap.ldapobject.LDAPObject, dn: str, sn: bytes = b"Old") -> None:
    cn = dn.split(",")[0].split("=")[1].encode()
    conn.add_s(dn, [("objectClass", [b"person"]), ("cn", [cn]), ("sn", [sn])])


def attrs_of(conn: ldap.ldapobject.LDAPObject, dn: str) -> dict[str, list[bytes]] | None:
    try:
        found = conn.search_ext_s(dn, ldap.SCOPE_BASE, serverctrls=[
            ldap.controls.LDAPControl(MANAGE_DSA_IT, True)])
    except ldap.NO_SUCH_OBJECT:
        return None
    return found[0][1]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict]]:
    status = main(["--json", "import", *args])
    return status, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_controls_the_test_server_advertises(slapd: SlapdServer) -> None:
    # What the tests below rely on (and the module docstring says).
    (_, attrs), = slapd.connect().search_s("", ldap.SCOPE_BASE, "(objectClass=*)",
                                           ["supportedControl"])
    supported = {v.decode() for v in attrs["supportedControl"]}
    assert {MANAGE_DSA_IT, ASSERTION} <= supported
    assert RELAX not in supported and TREE_DELETE not in supported


def test_tree_delete_unknown_to_the_server_fails_the_record_and_the_entry_stays(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # RFC 2849 example 7: critical, no value; slapd does not know the control.
    conn = creds.connect()
    conn.add_s(f"ou=pd,{base}", [("objectClass", [b"organizationalUnit"]), ("ou", [b"pd"])])
    path = tmp_path / "tree.ldif"
    path.write_text(f"version: 1\n# Tree Delete\ndn: ou=pd,{base}\n"
                    f"control: {TREE_DELETE} true\nchangetype: delete\n")
    status, out = run([creds.url, str(path)], capsys)
    assert status == 1
    assert out[0] == {"line": 3, "dn": f"ou=pd,{base}", "result": "unavailableCriticalExtension",
                      "message": out[0]["message"]}
    assert out[-1]["summary"] == {"applied": 0, "failed": 1, "not_attempted": 0}
    assert attrs_of(conn, f"ou=pd,{base}") is not None


def test_a_control_the_server_does_not_know_is_ignored_when_not_critical(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    conn = creds.connect()
    conn.add_s(f"ou=leaf,{base}", [("objectClass", [b"organizationalUnit"]), ("ou", [b"leaf"])])
    path = tmp_path / "tree.ldif"
    path.write_text(f"dn: ou=leaf,{base}\ncontrol: {TREE_DELETE} false\nchangetype: delete\n")
    status, out = run([creds.url, str(path)], capsys)
    assert status == 0 and out[-1]["summary"]["applied"] == 1
    assert attrs_of(conn, f"ou=leaf,{base}") is None


def test_manage_dsa_it_is_sent_with_the_record(creds: SlapdServer, base: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # A referral object: without ManageDsaIT the server answers a modify of
    # it with a referral (a failure of that record); with it, it is modified.
    conn = creds.connect()
    dn = f"ou=ref,{base}"
    conn.add_ext_s(dn, [("objectClass", [b"referral", b"extensibleObject"]), ("ou", [b"ref"]),
                        ("ref", [b"ldap://elsewhere.example/ou=ref"])],
                   serverctrls=[ldap.controls.LDAPControl(MANAGE_DSA_IT, True)])
    change = (f"dn: {dn}\n{{control}}changetype: modify\nreplace: description\n"
              "description: managed\n-\n")
    path = tmp_path / "plain.ldif"
    path.write_text(change.format(control=""))
    status, out = run([creds.url, str(path)], capsys)
    assert status == 1 and (out[0]["line"], out[0]["result"]) == (1, "referral")
    assert "description" not in attrs_of(conn, dn)
    path.write_text(change.format(control=f"control: {MANAGE_DSA_IT} true\n"))
    status, out = run([creds.url, str(path)], capsys)
    assert status == 0
    assert attrs_of(conn, dn)["description"] == [b"managed"]


def test_relax_is_sent_with_the_record(creds: SlapdServer, base: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # A structural object class change is refused unless Relax rules are asked for.
    conn = creds.connect()
    dn = f"cn=relaxed,{base}"
    person(conn, dn)
    change = (f"dn: {dn}\n{{control}}changetype: modify\nreplace: objectClass\n"
              "objectClass: inetOrgPerson\n-\n")
    path = tmp_path / "relax.ldif"
    path.write_text(change.format(control=""))
    status, out = run([creds.url, str(path)], capsys)
    assert status == 1 and out[0]["result"] == "objectClassModsProhibited"
    path.write_text(change.format(control=f"control: {RELAX} true\n"))
    status, out = run([creds.url, str(path)], capsys)
    assert status == 0
    assert attrs_of(conn, dn)["objectClass"] == [b"inetOrgPerson"]


def test_assertion_control_value_is_sent(creds: SlapdServer, base: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    conn = creds.connect()
    dn = f"cn=asserted,{base}"
    person(conn, dn, sn=b"Old")

    def asserting(filterstr: str, sn: str) -> str:
        value = ldap.controls.libldap.AssertionControl(True, filterstr).encodeControlValue()
        return (f"dn: {dn}\ncontrol: {ASSERTION} true:: {base64.b64encode(value).decode()}\n"
                f"changetype: modify\nreplace: sn\nsn: {sn}\n-\n")

    path = tmp_path / "assert.ldif"
    path.write_text(asserting("(sn=Other)", "Wrong"))
    status, out = run([creds.url, str(path)], capsys)
    assert status == 1 and (out[0]["dn"], out[0]["result"]) == (dn, "assertionFailed"), out
    assert attrs_of(conn, dn)["sn"] == [b"Old"]
    path.write_text(asserting("(sn=Old)", "New"))
    status, _ = run([creds.url, str(path)], capsys)
    assert status == 0
    assert attrs_of(conn, dn)["sn"] == [b"New"]


@pytest.mark.parametrize(("critical", "status", "kept"), [("true", 1, True),
                                                          ("false", 0, False)])
def test_an_ldif_file_directory_cannot_pass_controls_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        critical: str, status: int, kept: bool) -> None:
    target = tmp_path / "dir.ldif"
    target.write_text("dn: ou=pd,dc=x\nobjectClass: organizationalUnit\nou: pd\n")
    path = tmp_path / "tree.ldif"
    path.write_text(f"dn: ou=pd,dc=x\ncontrol: {TREE_DELETE} {critical}\nchangetype: delete\n")
    with caplog.at_level(logging.WARNING, logger="dirsync.file"):
        got, out = run([str(target), str(path)], capsys)
    assert got == status
    assert ("ou=pd,dc=x" in target.read_text()) is kept
    if kept:
        assert (out[0]["line"], out[0]["result"]) == (1, "unavailableCriticalExtension")
    else:
        assert any(f"line 1: ou=pd,dc=x: control {TREE_DELETE} is not passed on" in r.getMessage()
                   for r in caplog.records)


def refusal_file(base: str) -> str:
    # Record 2 is a modrdn whose new superior is the entry itself.
    return (f"dn: cn=one,{base}\nchangetype: modify\nreplace: sn\nsn: first\n-\n\n"
            f"dn: cn=one,{base}\nchangetype: modrdn\nnewrdn: cn=one\ndeleteoldrdn: 0\n"
            f"newsuperior: cn=one,{base}\n\n"
            f"dn: cn=one,{base}\nchangetype: modify\nreplace: sn\nsn: third\n-\n")


@pytest.mark.parametrize(("extra", "sn", "summary"), [
    ([], b"first", {"applied": 1, "failed": 1, "not_attempted": 1}),
    (["--continue-on-error"], b"third", {"applied": 2, "failed": 1, "not_attempted": 0}),
])
def test_unwilling_to_perform_is_a_failure_of_its_record(
        creds: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        extra: list[str], sn: bytes, summary: dict[str, int]) -> None:
    conn = creds.connect()
    person(conn, f"cn=one,{base}")
    path = tmp_path / "refused.ldif"
    path.write_text(refusal_file(base))
    status, out = run([creds.url, str(path), *extra], capsys)
    assert status == 1
    failures = [x for x in out if "result" in x]
    assert [(f["line"], f["dn"], f["result"]) for f in failures] == [
        (7, f"cn=one,{base}", "unwillingToPerform")]
    assert out[-1]["summary"] == summary
    assert attrs_of(conn, f"cn=one,{base}")["sn"] == [sn]


def test_a_refusal_is_reported_with_file_line_dn_and_result(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    person(creds.connect(), f"cn=one,{base}")
    path = tmp_path / "refused.ldif"
    path.write_text(refusal_file(base))
    assert main(["import", creds.url, str(path)]) == 1
    err = capsys.readouterr().err
    assert f"refused.ldif:7: cn=one,{base}: unwillingToPerform" in err
    assert "applied 1, failed 1, not attempted 1" in err


def test_a_lost_connection_stops_the_run_and_says_what_was_applied(tmp_path: Path) -> None:
    server = SlapdServer(dbnosync=True).start()
    try:
        server.add_suffix()
        path = tmp_path / "three.ldif"
        path.write_text("".join(
            f"dn: cn=p{i},dc=example,dc=org\nchangetype: add\nobjectClass: person\n"
            f"cn: p{i}\nsn: p\n\ndn: cn=p{i},dc=example,dc=org\nchangetype: modify\n"
            "replace: sn\nsn: q\n-\n\n" for i in range(3)))
        directory = LDAPDirectory(server.url, bind_dn=server.root_dn, password=server.root_pw,
                                  timeout=10)
        seen = []

        def stop_after_two(result: object) -> None:
            seen.append(result)
            if len(seen) == 2:
                server.stop()

        outcome = run_import(directory, path, on_result=stop_after_two)
        directory.close()
        server.start()
        found = server.connect().search_s("dc=example,dc=org", ldap.SCOPE_ONELEVEL,
                                          "(cn=p*)", ["sn"])
    finally:
        server.destroy()
    assert outcome.stopped is not None and "127.0.0.1" in str(outcome.stopped)
    assert outcome.exit_status == 1 and not outcome.failures
    # What the report calls applied the server holds (an add per entry, a
    # modify per entry whose sn is q); what it sent without an answer may
    # or may not be there; the rest was not attempted.
    on_server = len(found) + sum(attrs["sn"] == [b"q"] for _, attrs in found)
    assert outcome.applied >= 2
    assert outcome.applied <= on_server <= outcome.applied + outcome.unconfirmed
    assert outcome.applied + outcome.unconfirmed + outcome.skipped == 6
