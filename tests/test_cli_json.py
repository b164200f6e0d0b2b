"""``--json`` after the command name as well as before it, for every command."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from dirsync.cli.commands import COMMANDS
from dirsync.cli.main import cli, main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    logger = logging.getLogger("dirsync")
    saved = logger.handlers[:], logger.level
    yield
    logger.handlers[:], logger.level = saved[0], saved[1]


@pytest.fixture
def quickstart(tmp_path: Path) -> Path:
    folder = tmp_path / "quickstart"
    (folder / "var").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "quickstart" / "dirsync.toml", folder)
    shutil.copy(ROOT / "fixtures" / "gal.csv", folder / "var" / "po1.csv")
    return folder / "dirsync.toml"


def _leaves(command: click.Command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...],
                                                                             click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _leaves(sub, (*path, name))


def test_every_command_takes_json_after_its_name() -> None:
    ctx = click.Context(cli)
    seen = []
    for name, _, _ in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        for path, sub in _leaves(command, (name,)):
            opts = {opt for param in sub.params for opt in getattr(param, "opts", ())}
            assert "--json" in opts, " ".join(path)
            seen.append(" ".join(path))
    assert {"sync", "status", "relay route", "relay serve", "diff"} <= set(seen)


def test_sync_json_after_the_command(quickstart: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(quickstart), "sync", "--dry-run", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["dry_run"] is True and line["connection"] == "contoso-gal"


def test_status_json_either_side_prints_the_same(quickstart: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(quickstart), "sync"]) == 0
    capsys.readouterr()
    assert main(["-c", str(quickstart), "--json", "status"]) == 0
    before = capsys.readouterr().out
    assert main(["-c", str(quickstart), "status", "--json"]) == 0
    after = capsys.readouterr().out
    assert after == before
    assert json.loads(after.splitlines()[0])["connection"] == "contoso-gal"
