"""The command line's own behaviour: commands are imported only when used."""

from __future__ import annotations

import subprocess
import sys

from dirsync.cli.main import main


def test_every_command_is_listed_by_help(capsys: object) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    for name in ("export", "import", "diff", "check", "plan", "sync", "status", "schedule",
                 "relay"):
        assert f"  {name} " in out


def test_export_does_not_import_the_scheduler_the_relay_or_the_mapping_engine() -> None:
    # Start-up is part of every short run's time; a command loads what it uses.
    code = ("import sys\nfrom dirsync.cli.main import main\n"
            "try:\n    main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('apscheduler', 'aiosmtpd', 'jinja2', "
            "'dirsync.cli.commands.sync', 'dirsync.relay') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_unknown_command_is_a_usage_error() -> None:
    assert main(["no-such-command"]) == 2
