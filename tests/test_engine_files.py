"""The embedded hub: the quick start's LDIF file as the hub, no server at all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.ldif.io import LDIFReader

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    """The quick start's config, with the fixture copied where it reads it."""
    folder = tmp_path / "quickstart"
    (folder / "var").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "quickstart" / "dirsync.toml", folder)
    shutil.copy(ROOT / "fixtures" / "gal.csv", folder / "var" / "po1.csv")
    return folder / "dirsync.toml"


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["-c", str(config), *args])
    return status, capsys.readouterr().out


def hub(config: Path) -> dict[str, object]:
    with LDIFReader(str(config.parent / "var" / "hub.ldif")) as reader:
        return {record.dn: record for record in reader}  # type: ignore[union-attr]


def test_the_quick_start(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(quickstart, capsys, "check")
    assert status == 0, out
    status, out = run(quickstart, capsys, "sync")
    assert status == 0
    assert "counts: add 35, modify 0, rename 0, delete 0, unchanged 0, skipped 1" in out
    assert "add      cn=O'Neil\\, Pat,ou=Contoso GAL,ou=Contacts,dc=example,dc=org" in out
    entries = hub(quickstart)
    assert len(entries) == 3 + 35       # dc=example, ou=Contacts, the container, 35 entries
    status, out = run(quickstart, capsys, "sync")
    assert status == 0 and "add 0, modify 0, rename 0, delete 0, unchanged 35" in out

    # The README's edit: the fixture with a modify, a rename and a delete.
    shutil.copy(ROOT / "fixtures" / "gal-edited.csv", quickstart.parent / "var" / "po1.csv")
    before = (quickstart.parent / "var" / "hub.ldif").read_bytes()
    status, out = run(quickstart, capsys, "plan")
    assert status == 0 and "modify 1, rename 1, delete 1, unchanged 32" in out
    assert (quickstart.parent / "var" / "hub.ldif").read_bytes() == before
    status, out = run(quickstart, capsys, "sync")
    assert status == 0 and "modify 1, rename 1, delete 1, unchanged 32" in out
    assert "rename   cn=Anna Martin,ou=Contoso GAL" in out
    assert 'title: "Account Manager" -> "Sales Director"' in out
    entries = hub(quickstart)
    assert "cn=Anna Martin-Lee,ou=Contoso GAL,ou=Contacts,dc=example,dc=org" in entries
    assert "cn=Mark Miller,ou=Contoso GAL,ou=Contacts,dc=example,dc=org" not in entries

    status, out = run(quickstart, capsys, "status")
    assert status == 0 and "contoso-gal: 34 entries in the state" in out
    assert out.count("import sync") == 3 and out.count("import plan") == 1


@pytest.mark.parametrize("form", ["text", "json", "ldif", "html"])
def test_report_formats_printed(quickstart: Path, capsys: pytest.CaptureFixture[str],
                                form: str) -> None:
    status, out = run(quickstart, capsys, "plan", "--report-format", form)
    assert status == 0
    if form == "json":
        assert json.loads(out)["counts"]["add"] == 35
    elif form == "ldif":
        assert out.startswith("version: 1") and out.count("changetype: add") == 38
    elif form == "html":
        assert out.startswith("<!DOCTYPE html>")
    else:
        assert out.startswith("dirsync import: connection contoso-gal, plan")


def test_json_lines_and_no_progress_bar_when_piped(quickstart: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    status = main(["-c", str(quickstart), "--json", "sync"])
    captured = capsys.readouterr()
    assert status == 0 and captured.err == ""
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert {k: line[k] for k in ("connection", "direction", "mode", "dry_run", "status")} == {
        "connection": "contoso-gal", "direction": "import", "mode": "full", "dry_run": False,
        "status": "ok"}
    assert set(line["counts"]) == {"add", "modify", "rename", "delete", "unchanged",
                                   "skipped", "conflict", "error", "unknown", "not_attempted"}
    assert Path(line["report"]).is_dir()
    assert sorted(p.name for p in Path(line["report"]).iterdir()) == [
        "changes.ldif", "report.html", "report.json", "report.txt"]


def test_dry_run_is_a_plan(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(quickstart, capsys, "--json", "sync", "--dry-run")
    assert status == 0 and json.loads(out)["dry_run"] is True
    assert not (quickstart.parent / "var" / "hub.ldif").exists()
    status, out = run(quickstart, capsys, "--json", "sync")
    assert json.loads(out)["counts"]["add"] == 35


def test_unknown_connection_name(quickstart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(quickstart), "sync", "nosuch"]) == 2
    assert "no connection named 'nosuch'" in capsys.readouterr().err
