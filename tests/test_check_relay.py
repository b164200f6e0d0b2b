"""dirsync check validates the [relay] table with the relay's own rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer


def test_check_reports_a_bad_relay_table(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dirsync.toml"
    config.write_text('[directories.hub]\nkind = "ldif"\npath = "hub.ldif"\n\n'
                      '[relay]\nhub = "hub"\nlisten = "nonsense"\n')
    assert main(["-c", str(config), "check"]) == 2
    out = capsys.readouterr().out
    assert "relay.listen" in out and "HOST:PORT" in out


def test_check_says_the_relay_needs_an_ldap_hub(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "dirsync.toml"
    config.write_text('[directories.hub]\nkind = "ldif"\npath = "hub.ldif"\n\n'
                      '[relay]\nhub = "hub"\nlisten = "127.0.0.1:2525"\n')
    assert main(["-c", str(config), "check"]) == 2
    assert "must be an ldap directory" in capsys.readouterr().out


def test_check_passes_a_good_relay_table(slapd: SlapdServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HUB_PW", slapd.root_pw)
    config = tmp_path / "dirsync.toml"
    config.write_text(f'[directories.hub]\nkind = "ldap"\nurl = "{slapd.url}"\n'
                      f'base = "{slapd.suffix}"\nbind_dn = "{slapd.root_dn}"\n'
                      'password_env = "HUB_PW"\n\n'
                      '[relay]\nhub = "hub"\nlisten = "127.0.0.1:2525"\n')
    assert main(["-c", str(config), "check"]) == 0
    assert "relay: the [relay] table" in capsys.readouterr().out
