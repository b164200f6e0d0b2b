"""Building blocks for export and both-way sync tests, and the backbone example:
configs with any directories and connections, fixtures loaded into a hub
below a test's own base, CSV address books read back."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ldap

from dirsync.cli.main import main
from dirsync.config import load_config
from dirsync.entry import dn_depth, is_under, rebase_dn
from dirsync.ldif.io import LDIFReader
from dirsync.sync.pipeline import RunResult, SyncOptions
from dirsync.sync.run import run
from dirsync.testing.slapd import SlapdServer

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FIXTURE_BASE = "dc=example,dc=org"
_DN_VALUED = ("member", "uniqueMember", "owner", "manager", "seeAlso")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)


def write_config(folder: Path, directories: dict[str, dict[str, Any]],
                 connections: Iterable[dict[str, Any]], name: str = "dirsync.toml") -> Path:
    """A dirsync.toml in ``folder`` (state and reports below it)."""
    lines = ['state = "var/state.sqlite"', 'reports = "var/reports"', ""]
    for directory, table in directories.items():
        lines.append(f"[directories.{directory}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    for table in connections:
        lines.append("[[connections]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    path = folder / name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ldap_directory(slapd: SlapdServer, folder: Path, base: str | None = None) -> dict[str, Any]:
    """A [directories.X] table for ``slapd`` (bound as its root, password in a file)."""
    password = folder / f"{slapd.port}.pw"
    password.write_text(slapd.root_pw + "\n")
    return {"kind": "ldap", "url": slapd.url, "base": base or slapd.suffix,
            "bind_dn": slapd.root_dn, "password_file": password.name}


def copy_fixture(name: str, folder: Path) -> Path:
    target = folder / name
    shutil.copyfile(FIXTURES / name, target)
    return target


def load_ldif(slapd: SlapdServer, path: Path, base: str, fixture_base: str = FIXTURE_BASE,
              extra_classes: Iterable[str] = ()) -> list[str]:
    """Add the entries of an LDIF file to ``slapd``, moved from ``fixture_base`` to
    ``base`` (DN-valued attributes too), each with ``extra_classes`` added;
    returns their DNs, parents first."""
    with LDIFReader(str(path)) as reader:
        entries = [record for record in reader if not hasattr(record, "kind")]
    conn = slapd.connect()
    added = []
    try:
        for entry in sorted(entries, key=lambda e: dn_depth(e.dn)):  # type: ignore[union-attr]
            dn = _moved(entry.dn, fixture_base, base)  # type: ignore[union-attr]
            attrs = []
            for name, values in entry.attrs.items():  # type: ignore[union-attr]
                if name.lower() == "entryuuid":
                    continue
                if name.lower() in {a.lower() for a in _DN_VALUED}:
                    values = [_moved(v.decode(), fixture_base, base).encode() for v in values]
                if name.lower() == "objectclass":
                    values = [*values, *(c.encode() for c in extra_classes)]
                attrs.append((name, list(values)))
            conn.add_s(dn, attrs)
            added.append(dn)
    finally:
        conn.unbind_s()
    return added


def _moved(dn: str, old: str, new: str) -> str:
    return rebase_dn(dn, old, new) if is_under(dn, old) else dn


def sync(config: Path, names: Iterable[str] = (), **options: Any) -> list[RunResult]:
    """Run ``dirsync sync`` in-process on ``config``; one result per connection and direction."""
    return run(load_config(config), list(names), SyncOptions(**options))


def counts(results: list[RunResult], direction: str | None = None) -> dict[str, int]:
    """The counts of the results (of one direction), summed."""
    total: dict[str, int] = {}
    for result in results:
        if direction is None or result.direction == direction:
            for key, value in result.counts.as_dict().items():
                total[key] = total.get(key, 0) + value
    return total


def changes(results: list[RunResult]) -> int:
    return sum(r.counts.changes for r in results)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def rows_by(path: Path, column: str) -> dict[str, dict[str, str]]:
    return {row[column]: row for row in read_csv(path)}


def entries(slapd: SlapdServer, base: str, filt: str = "(objectClass=*)",
            attrs: list[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """DN -> attributes (text, names as the server spells them) under ``base``."""
    conn = slapd.connect()
    try:
        found = conn.search_s(base, ldap.SCOPE_SUBTREE, filt, attrs or ["*", "entryUUID"])
    except ldap.NO_SUCH_OBJECT:
        return {}
    finally:
        conn.unbind_s()
    return {dn: {k: [v.decode() for v in vs] for k, vs in a.items()} for dn, a in found if dn}


def json_sync(config: Path, capsys: Any, *args: str) -> dict[str, Any]:
    """``dirsync --json sync`` in this process (``capsys``: pytest's fixture):
    its last result line, with the exit status as ``exit``."""
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "sync", *args])
    line: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    line["exit"] = status
    return line


def kinds(line: dict[str, Any]) -> tuple[int, int, int, int]:
    """A result line's add, modify, rename and delete counts."""
    counts = line["counts"]
    return counts["add"], counts["modify"], counts["rename"], counts["delete"]
