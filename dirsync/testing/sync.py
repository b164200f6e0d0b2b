"""Building blocks for sync tests and benchmarks: foreign CSV exports,
configs pointing at a real slapd hub, and the hub's own view of itself."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ldap

from dirsync.entry import parent_dn
from dirsync.testing.slapd import SlapdServer

GAL_COLUMNS = ["Alias", "Type", "Display Name", "First Name", "Last Name", "Email", "Phone",
               "Mobile", "Title", "Department", "Office", "Company", "Members"]


def gal_row(alias: str, **fields: str) -> dict[str, str]:
    """One csv-gal row for a person; ``fields`` override the made-up values."""
    number = sum(ord(c) for c in alias)
    row = {
        "Alias": alias, "Type": "user", "Display Name": f"User {alias}",
        "First Name": "User", "Last Name": alias.capitalize(),
        "Email": f"{alias}@po1.example", "Phone": f"+1 555 {number:07d}", "Mobile": "",
        "Title": "Engineer", "Department": "R&D", "Office": "B-12", "Company": "Contoso",
        "Members": "",
    }
    row.update(fields)
    return row


def list_row(alias: str, members: Iterable[str], **fields: str) -> dict[str, str]:
    row = gal_row(alias, Type="list", **{"Display Name": f"List {alias}", "First Name": "",
                                         "Last Name": "", "Title": "", **fields})
    row["Members"] = ";".join(members)
    return row


def gal_rows(count: int, prefix: str = "u") -> list[dict[str, str]]:
    return [gal_row(f"{prefix}{i:06d}") for i in range(count)]


def write_csv(path: Path, rows: Iterable[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, GAL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def hub_config(folder: Path, slapd: SlapdServer, container: str, source: Path, *,
               name: str = "gal", mapping: str = "csv-gal", recipients: str = "contact",
               lists: str = "contact", threshold: int | str | None = None,
               source_kind: str = "csv", extra: str = "", page_size: int | None = None,
               window: int | None = None, hub_base: str | None = None) -> Path:
    """A dirsync.toml: ``source`` synced into ``container`` on ``slapd``.

    The hub's base is the container's parent unless ``hub_base`` is given:
    tests share one server, and each one's hub is its own subtree.
    """
    password = folder / "hub.pw"
    password.write_text(slapd.root_pw + "\n")
    lines = [
        'state = "var/state.sqlite"',
        'reports = "var/reports"',
        "",
        "[directories.hub]",
        'kind = "ldap"',
        f'url = "{slapd.url}"',
        f'base = "{hub_base or parent_dn(container)}"',
        f'bind_dn = "{slapd.root_dn}"',
        'password_file = "hub.pw"',
    ]
    if page_size:
        lines.append(f"page_size = {page_size}")
    if window:
        lines.append(f"window = {window}")
    lines += ["", "[directories.foreign]", f'kind = "{source_kind}"', f'path = "{source}"']
    if source_kind == "csv":
        lines.append('key = "Alias"')
    lines += [
        "",
        "[[connections]]",
        f'name = "{name}"',
        'foreign = "foreign"',
        'hub = "hub"',
        f'mapping = "{mapping}"',
        f'import_container = "{container}"',
        f'recipients = "{recipients}"',
        f'lists = "{lists}"',
    ]
    if threshold is not None:
        lines.append(f"delete_threshold = {threshold!r}".replace("'", '"'))
    if extra:
        lines.append(extra)
    path = folder / "dirsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def search(slapd: SlapdServer, base: str, filt: str = "(objectClass=*)",
           attrs: list[str] | None = None, scope: int = ldap.SCOPE_SUBTREE
           ) -> dict[str, dict[str, list[bytes]]]:
    """Every entry under ``base``: DN -> attributes (as the server returns them)."""
    conn = slapd.connect()
    try:
        found = conn.search_s(base, scope, filt, attrs)
    except ldap.NO_SUCH_OBJECT:
        return {}
    finally:
        conn.unbind_s()
    return {dn: attributes for dn, attributes in found if dn}


def csn_snapshot(slapd: SlapdServer, base: str) -> dict[str, tuple[bytes, ...]]:
    """DN -> (entryCSN, modifyTimestamp): any write to an entry changes it."""
    found = search(slapd, base, attrs=["entryCSN", "modifyTimestamp"])
    return {dn.lower(): tuple(a.get("entryCSN", []) + a.get("modifyTimestamp", []))
            for dn, a in found.items()}


def context_csn(slapd: SlapdServer) -> list[bytes]:
    """The database's contextCSN (syncprov): changes with any write anywhere in it."""
    found = search(slapd, slapd.suffix, attrs=["contextCSN"], scope=ldap.SCOPE_BASE)
    return sorted(next(iter(found.values())).get("contextCSN", [])) if found else []


def anchors(slapd: SlapdServer, container: str, connection: str = "gal") -> dict[str, list[str]]:
    """Anchor -> DNs of the entries the connection owns (more than one: a duplicate)."""
    found = search(slapd, container, f"(dirsyncSource={connection})", ["dirsyncAnchor"])
    result: dict[str, list[str]] = {}
    for dn, attrs in found.items():
        result.setdefault(attrs["dirsyncAnchor"][0].decode(), []).append(dn)
    return result


def first(attrs: dict[str, list[bytes]], name: str) -> str | None:
    for key, values in attrs.items():
        if key.lower() == name.lower() and values:
            return values[0].decode()
    return None


def values(attrs: dict[str, Any], name: str) -> list[str]:
    for key, found in attrs.items():
        if key.lower() == name.lower():
            return [v.decode() for v in found]
    return []


def kill_when(config: Path, ready: Callable[[], bool], *args: str) -> None:
    """Start ``dirsync sync``; SIGKILL it as soon as ``ready()``; fail if it ends first."""
    process = subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(config), "sync",
                                *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not ready():
            if process.poll() is not None:
                raise AssertionError(
                    "the sync ended before the kill point: "
                    f"{process.stderr.read().decode() if process.stderr else ''}")
            if time.monotonic() > deadline:
                raise AssertionError("the kill point was never reached")
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
