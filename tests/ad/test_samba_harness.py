"""The Samba AD DC of the test harness, checked with independent clients."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from dirsync.testing.samba import SambaDC


def ldapsearch(dc: SambaDC, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("ldapsearch") is None:  # pragma: no cover - ldap-utils is bootstrapped
        pytest.fail("ldapsearch (ldap-utils) is missing")
    env = {**os.environ, "LDAPTLS_CACERT": str(dc.ca_file), "LDAPTLS_REQCERT": "demand"}
    return subprocess.run(["ldapsearch", "-LLL", "-x", "-H", dc.url, "-D", dc.admin_upn,
                           "-w", dc.admin_password, *args],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_ldapsearch_gets_a_dirsync_cookie_over_verified_ldaps(samba_dc: SambaDC) -> None:
    done = ldapsearch(samba_dc, "-b", samba_dc.base_dn, "-E", "!dirSync=0/0",
                      "(objectClass=organizationalUnit)", "name")
    assert done.returncode == 0, done.stderr
    assert "# DirSync control continueFlag=0" in done.stdout
    cookie_line = next(line for line in done.stdout.splitlines() if line.startswith("# cookie"))
    assert cookie_line.startswith("# cookie:: TVNEU")  # base64 of "MSDS"


def test_simple_binds_in_clear_are_refused(samba_dc: SambaDC) -> None:
    env = {**os.environ}
    done = subprocess.run(["ldapsearch", "-x", "-H", "ldap://127.0.0.1", "-D", samba_dc.admin_upn,
                           "-w", samba_dc.admin_password, "-b", samba_dc.base_dn, "-s", "base"],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 8  # strongerAuthRequired
    assert "Strong(er) authentication required" in done.stderr


def test_the_dc_lives_in_its_folder(samba_dc: SambaDC) -> None:
    conf = samba_dc.smb_conf.read_text()
    assert f"private dir = {samba_dc.workdir}/private" in conf
    assert f"log file = {samba_dc.log_path}" in conf
    assert "/var/lib/samba/private" not in conf and "/var/log/samba" not in conf
    assert (samba_dc.workdir / "samba.pid").read_text().split()[0] == str(samba_dc.pid)
