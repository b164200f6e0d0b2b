"""The backbone scenario (seeds/003) with two real slapd servers replicating:
examples/backbone/run.sh, as an administrator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dirsync.testing.slapd import find_slapd

RUN = Path(__file__).resolve().parent.parent / "examples" / "backbone" / "run.sh"


def test_two_post_offices_over_two_replicating_sites(tmp_path: Path) -> None:
    if find_slapd() is None:
        if os.environ.get("CI"):
            pytest.fail("slapd is missing in CI")
        pytest.skip("slapd is not installed")
    done = subprocess.run([str(RUN), "--work", str(tmp_path / "work")], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads((tmp_path / "work" / "outcome.json").read_text())
    assert outcome["ok"] and outcome["failure"] is None
    checks = {c["check"]: c["ok"] for c in outcome["checks"]}
    assert len(checks) == 15 and all(checks.values())
    steps = [(r["step"], [(x["direction"], x["counts"]) for x in r["results"]])
             for r in outcome["runs"]]
    assert [s for s, _ in steps] == ["site A", "site B", "site A", "site B", "site A",
                                     "site A", "site B"]
    adds = [[c["add"] for _, c in results] for _, results in steps[:3]]
    assert adds == [[32, 0], [25, 32], [0, 25]]
    deletes = [[c["delete"] for _, c in results] for _, results in steps[5:]]
    assert deletes == [[1, 0], [0, 1]]
    # Both post offices' address books are printed.
    assert "== PO1's address book (56 entries)" in done.stdout
    assert "== PO2's address book (56 entries)" in done.stdout
    assert "MICROSOFT/PO1/TBREMER" not in (tmp_path / "work" / "po2.csv").read_text()
