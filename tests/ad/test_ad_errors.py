"""The usual ways an AD connection fails, each one clear message and exit 2."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import ldif
import pytest

from dirsync.cli.main import main
from dirsync.directories import ADDirectory, TLSOptions
from dirsync.directories.ad import ADUnreachable
from dirsync.errors import FatalDirectoryError, TransientDirectoryError, UsageError
from dirsync.testing.samba import SambaDC
from dirsync.testing.slapd import free_port
from dirsync.testing.tlscerts import make_tls_material

from .helpers import open_ad


def config(tmp_path: Path, dc: SambaDC, base: str, *, url: str | None = None,
           ca_file: Path | None = None, password: str | None = None) -> Path:
    (tmp_path / "ad.pw").write_text((password or dc.admin_password) + "\n")
    path = tmp_path / "dirsync.toml"
    path.write_text(f"""
[directories.corp]
kind = "ad"
url = "{url or dc.url}"
base = "{base}"
bind_dn = "{dc.admin_upn}"
password_file = "ad.pw"
ca_file = "{ca_file or dc.ca_file}"
""")
    return path


def export(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["-c", str(path), "export", "corp", "--sort"])
    out, err = capsys.readouterr()
    return status, out, err


def test_export_of_an_ad_directory_writes_recipients_with_guid_anchors(
        tmp_path: Path, samba_dc: SambaDC, ad_ou: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    user = samba_dc.add_user(ad_ou, "Exported User", mail="exported@corp.example")
    samba_dc.add_user(ad_ou, "Disabled Export", mail="dis@corp.example", disabled=True)
    status, out, err = export(config(tmp_path, samba_dc, ad_ou), capsys)
    assert status == 0, err
    records = ldif.LDIFRecordList(io.StringIO(out))
    records.parse()
    assert [dn for dn, _ in records.all_records] == [user]
    # The anchor in text form (the LDIF writer base64-encodes objectGUID, a binary type).
    assert records.all_records[0][1]["objectGUID"] == [samba_dc.guid(user).encode()]
    assert "exported 1 entry\n" in err


def test_wrong_password(tmp_path: Path, samba_dc: SambaDC, ad_ou: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = export(config(tmp_path, samba_dc, ad_ou, password="not-it"), capsys)
    assert status == 2
    assert "wrong password" in err and "data 52e" in err
    assert "Traceback" not in err


def test_untrusted_certificate(tmp_path: Path, samba_dc: SambaDC, ad_ou: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    other_ca = make_tls_material(tmp_path).ca_file  # a CA that did not sign the DC's cert
    status, _, err = export(config(tmp_path, samba_dc, ad_ou, ca_file=other_ca), capsys)
    assert status == 2
    assert "certificate is not trusted" in err
    assert "hint: give the CA that issued it as ca_file" in err


def test_unreachable_dc(tmp_path: Path, samba_dc: SambaDC, ad_ou: str,
                        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"ldaps://127.0.0.1:{free_port()}"  # nothing listens there
    status, _, err = export(config(tmp_path, samba_dc, ad_ou, url=url), capsys)
    assert status == 2
    assert "cannot reach the domain controller at 127.0.0.1:" in err


def test_unreachable_dc_in_a_real_process_shows_no_traceback(tmp_path: Path,
                                                             samba_dc: SambaDC,
                                                             ad_ou: str) -> None:
    path = config(tmp_path, samba_dc, ad_ou, url=f"ldaps://127.0.0.1:{free_port()}")
    done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(path), "export", "corp"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("dirsync: error: cannot reach the domain controller")
    assert "Traceback" not in done.stderr


def test_unreachable_is_transient_for_a_scheduler_but_exits_2() -> None:
    assert issubclass(ADUnreachable, TransientDirectoryError)
    assert ADUnreachable.exit_status == 2


def test_plain_ldap_without_starttls_is_refused_before_any_bind() -> None:
    with pytest.raises(UsageError, match="refuses simple binds without TLS"):
        ADDirectory("ldap://127.0.0.1", tls=TLSOptions())


def test_an_ldap_url_with_starttls_binds(samba_dc: SambaDC, ad_ou: str) -> None:
    directory = ADDirectory("ldap://127.0.0.1", base=ad_ou, bind_dn=samba_dc.admin_upn,
                            password=samba_dc.admin_password,
                            tls=TLSOptions(ca_file=str(samba_dc.ca_file), starttls=True))
    try:
        samba_dc.add_contact(ad_ou, "Over StartTLS", mail="starttls@partner.example")
        assert [e.first("cn") for e in directory.read()] == ["Over StartTLS"]
    finally:
        directory.close()


def test_wrong_password_error_class(samba_dc: SambaDC, ad_ou: str) -> None:
    directory = open_ad(samba_dc, ad_ou, password="wrong")
    with pytest.raises(FatalDirectoryError, match=r"refused: wrong password.*\(AD data 52e\)"):
        list(directory.read())
