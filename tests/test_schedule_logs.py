"""The log lines of ``dirsync --log-format json schedule --once`` as the systemd unit runs it.

Without ``-v``: the end of each run is one JSON event with its fields as
fields (counts an object, the time ISO 8601 with milliseconds and offset),
and an entry the hub refuses is a warning of its own. The unit in
docs/scheduling.md runs exactly that command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_row, gal_rows, hub_config, write_csv

DOCS = Path(__file__).resolve().parent.parent / "docs" / "scheduling.md"
RELAY_DOCS = DOCS.parent / "relay.md"


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]   # every line is one JSON object


def run_once(config: Path, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    done = subprocess.run([sys.executable, "-m", "dirsync", "--log-format", "json",
                           *extra, "schedule", "--once"], capture_output=True, text=True,
                          check=False, env={"DIRSYNC_CONFIG": str(config), "PATH": "/usr/bin"})
    assert done.stdout == ""
    return done.returncode, json_lines(done.stderr)


def test_a_run_with_an_erroring_entry_is_in_the_log_without_v(
        slapd: SlapdServer, base: str, tmp_path: Path) -> None:
    rows = gal_rows(5)
    # The hub refuses a telephone number with a character outside its syntax.
    rows.append(gal_row("bad", Phone="+1 555 @ 0101"))
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, f"ou=Import,{base}", source)
    status, events = run_once(config)
    assert status == 1           # the run ran, but one entry failed: as `sync` exits

    failed = [e for e in events if e.get("result") == "failed"]
    assert len(failed) == 1, events
    assert failed[0]["level"] == "warning" and failed[0]["connection"] == "gal"
    assert failed[0]["action"] == "add" and failed[0]["dn"].startswith("cn=User bad,")
    assert "telephoneNumber" in failed[0]["error"] or "syntax" in failed[0]["error"].lower()

    ends = [e for e in events if e.get("action") == "run"]
    assert len(ends) == 1, events
    end = ends[0]
    assert end["logger"] == "dirsync.run" and end["level"] == "warning"
    assert end["connection"] == "gal" and end["direction"] == "import"
    assert end["result"] == "errors" and end["mode"] == "full"
    assert isinstance(end["run"], int)
    assert end["counts"] == {"add": 5, "modify": 0, "rename": 0, "delete": 0,
                             "unchanged": 0, "skipped": 0, "conflict": 0, "error": 1,
                             "unknown": 0, "not_attempted": 0}
    assert end["message"] == "gal import: errors: add 5, error 1"
    for event in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", event["time"])
        assert datetime.fromisoformat(event["time"]).utcoffset() is not None

    # A clean run: its end is an info event, still there without -v.
    write_csv(source, gal_rows(5))
    status, events = run_once(config)
    assert status == 0
    end = next(e for e in events if e.get("action") == "run")
    assert end["level"] == "info" and end["result"] == "ok"
    assert end["counts"]["unchanged"] == 5 and end["counts"]["error"] == 0


def unit(name: str, docs: Path = DOCS) -> str:
    """The text of a unit file shown in docs/scheduling.md (or ``docs``)."""
    text = docs.read_text()
    start = text.index(f"`/etc/systemd/system/{name}`:")
    block = []
    for line in text[start:].splitlines()[2:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip()


def directives(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found[key] = value
    return found


def test_the_documented_units_log_json_to_the_journal() -> None:
    for name in ("dirsync.service", "dirsync-once.service"):
        service = directives(unit(name))
        command = service["ExecStart"].split()
        assert command[0] == "/usr/local/bin/dirsync"
        # --log-format is a global option: it goes before the command.
        assert command[1:4] == ["--log-format", "json", "schedule"], command
        assert "-v" not in command
        assert service["StandardError"] == "journal"
        assert service["Environment"] == "DIRSYNC_CONFIG=/etc/dirsync/dirsync.toml"


def test_the_documented_relay_unit_stops_on_sigterm_and_keeps_a_bad_config_down() -> None:
    service = directives(unit("dirsync-relay.service", RELAY_DOCS))
    assert service["ExecStart"].split() == ["/usr/local/bin/dirsync", "relay", "serve"]
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > 60
    assert service["RestartPreventExitStatus"] == "2"
    assert service["StandardError"] == "journal"
    assert service["StateDirectory"] == "dirsync"
    assert service["Environment"] == "DIRSYNC_CONFIG=/etc/dirsync/dirsync.toml"


@pytest.mark.parametrize("docs,names", [
    (DOCS, ("dirsync.service", "dirsync-once.service", "dirsync-once.timer")),
    (RELAY_DOCS, ("dirsync-relay.service",)),
], ids=["scheduling", "relay"])
def test_systemd_accepts_the_documented_units(tmp_path: Path, docs: Path,
                                              names: tuple[str, ...]) -> None:
    """``systemd-analyze verify`` on the units as docs/scheduling.md and docs/relay.md show them."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing in CI")
        pytest.skip("systemd-analyze is not installed")
    installed = Path(sys.executable).parent / "dirsync"    # the console script
    assert installed.exists()
    for name in names:
        text = unit(name, docs).replace("/usr/local/bin/dirsync", str(installed))
        (tmp_path / name).write_text(text + "\n")
    done = subprocess.run([analyze, "verify", *(str(tmp_path / n) for n in names)],
                          capture_output=True, text=True, timeout=60, check=False)
    said = [line for line in (done.stdout + done.stderr).splitlines()
            if str(tmp_path) in line or any(n in line for n in names)]
    assert done.returncode == 0 and said == [], done.stdout + done.stderr
