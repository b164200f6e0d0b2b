"""A run that finds the source file unchanged counts what the run that read it counted.

Before: the full run said ``skipped 1`` and the next, unchanged-source
run ``skipped 0``, as if the skipped row had gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_row, gal_rows, hub_config, write_csv


def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_an_unchanged_source_keeps_its_skipped_count(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = gal_rows(4) + [gal_row("noaddress", Email="")]   # skipped by csv-gal: no Email
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, f"ou=Import,{base}", source)
    first = sync(config, capsys)
    assert first["counts"]["add"] == 4 and first["counts"]["skipped"] == 1  # type: ignore[index]
    for _ in range(2):
        again = sync(config, capsys)
        assert again["message"] == "source unchanged"
        assert again["counts"]["unchanged"] == 4 and again["counts"]["skipped"] == 1  # type: ignore[index]
    capsys.readouterr()
    assert main(["-c", str(config), "status", "gal"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  #")]
    assert all("skipped 1" in line for line in lines), lines
    # The skipped row gets an address: read again, and nothing is skipped any more.
    rows[-1] = gal_row("noaddress")
    write_csv(source, rows)
    line = sync(config, capsys)
    assert line["counts"]["add"] == 1 and line["counts"]["skipped"] == 0  # type: ignore[index]
    assert sync(config, capsys)["counts"]["skipped"] == 0  # type: ignore[index]
