"""Foreign input is hostile: each way in checks what it reads (issue 11).

Values checked at the boundary, the whole LDIF file checked before
anything is sent, URL values refused, configs and wrong passwords
reported without a traceback, control characters escaped on terminals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.cli import main
from dirsync.testing.slapd import SlapdServer


def test_check_reports_a_file_directory_without_path(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("ldif", "csv"):
        config = tmp_path / f"{kind}.toml"
        config.write_text(f'[directories.hub]\nkind = "{kind}"\nbase = "dc=example,dc=org"\n')
        for command in ("check", "sync"):
            capsys.readouterr()
            assert main(["-c", str(config), command]) == 2
            out, err = capsys.readouterr()
            assert "Traceback" not in out + err
            assert f"directories.hub.path: missing (the {kind} file)" in out + err
            # Said once, not once by the config check and again by the reader.
            assert (out + err).count("directories.hub.path") == 1


def test_a_wrong_password_is_not_blamed_on_the_certificate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIRSYNC_BIND_DN", raising=False)
    monkeypatch.delenv("DIRSYNC_PASSWORD", raising=False)
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong\n")
    out = tmp_path / "o.ldif"
    with SlapdServer(tls=True) as server:
        server.add_suffix()
        capsys.readouterr()
        assert main(["export", server.ldaps_url + "/" + server.suffix, "-o", str(out),
                     "--ca-file", str(server.ca_file), "--bind-dn", server.root_dn,
                     "--password-file", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "invalid credentials" in err and "wrong bind DN or password" in err
        assert "certificate" not in err
        assert not out.exists()
