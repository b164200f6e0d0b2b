"""The leniencies the reference tools agree on, end to end against slapd:
a comment and a blank line before ``version: 1``, and a modify whose last
mod-spec has no ``-`` line (docs/ldif-tools.md)."""

from __future__ import annotations

from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer


@pytest.fixture
def creds(slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch) -> SlapdServer:
    monkeypatch.setenv("DIRSYNC_BIND_DN", slapd.root_dn)
    monkeypatch.setenv("DIRSYNC_PASSWORD", slapd.root_pw)
    return slapd


def test_a_comment_and_a_blank_line_before_the_version_line(
        creds: SlapdServer, base: str, tmp_path: Path) -> None:
    path = tmp_path / "commented.ldif"
    path.write_text(f"# exported for the test\n\nversion: 1\n\n# the entry\n"
                    f"dn: cn=first,{base}\nobjectClass: organizationalRole\ncn: first\n")
    assert main(["import", creds.url, str(path)]) == 0
    assert creds.has_entry(f"cn=first,{base}")


def test_a_modify_without_its_final_dash_is_applied_with_a_warning(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    conn = creds.connect()
    conn.add_s(f"cn=p,{base}", [("objectClass", [b"person"]), ("cn", [b"p"]), ("sn", [b"Old"])])
    path = tmp_path / "nodash.ldif"
    # As OpenLDAP's test-modify.ldif and perl-ldap's 42-mod.ldif write them.
    path.write_text(f"dn: cn=p,{base}\nchangetype: modify\nreplace: sn\nsn: New\n-\n"
                    "add: description\ndescription: no dash after me\n")
    assert main(["import", creds.url, str(path)]) == 0
    err = capsys.readouterr().err
    assert "nodash.ldif:6: modification of 'description' not ended by '-' (accepted)" in err
    (_, attrs), = conn.search_s(f"cn=p,{base}", ldap.SCOPE_BASE)
    assert attrs["sn"] == [b"New"] and attrs["description"] == [b"no dash after me"]
