"""``dirsync check``: the config, the mappings and every directory, in one pass.

Everything that can be checked is checked, whatever else failed, and every
problem is reported with where it is (a config key path, or a mapping
file, line and key): the config's tables, each connection's mapping, each
directory reached and read (a bind to an LDAP server, the header and rows
of a CSV file, an LDIF file parsed), the dirsync schema on an LDAP hub,
the import containers, and the source attributes the mapping reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from dirsync.addresses.values import screen_for
from dirsync.checks.containers import check_container
from dirsync.checks.export import check_export
from dirsync.config import Config, ConnectionConfig, DirectoryConfig, check_config
from dirsync.directories import ReadOptions
from dirsync.errors import ConfigError, DirsyncError
from dirsync.mapping.mapfile import Mapping, load_mapping
from dirsync.wording import plural

#: The attribute types an LDAP hub must know (schemas/dirsync.schema).
DIRSYNC_ATTRIBUTES = ("dirsyncAnchor", "dirsyncSource", "proxyAddresses", "targetAddress")


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "checked": self.passed,
                "notes": self.notes}


def run_checks(path: str | os.PathLike[str]) -> CheckResult:
    result = CheckResult()
    config, problems = check_config(path)
    result.problems.extend(f"{path}: {p}" for p in problems)
    if config is None:
        return result
    if not problems:
        result.passed.append(f"config {path}")
    mappings: dict[int, Mapping] = {}
    for connection in config.connections:
        try:
            mappings[connection.index] = load_mapping(connection.mapping_path,
                                                      connection.variables)
            result.passed.append(f"{connection.key_path} ({connection.name}): mapping "
                                 f"{connection.mapping_path}")
        except ConfigError as exc:
            result.problems.extend(exc.problems)
    if "relay" in config.sections:
        _check_relay(path, result)
    opened: dict[str, Any] = {}
    for name, directory in config.directories.items():
        found = _reach(directory, result)
        if found is not None:
            opened[name] = found
    try:
        for connection in config.connections:
            _check_connection(config, connection, mappings.get(connection.index), opened,
                              result)
    finally:
        for directory in opened.values():
            _close_quietly(directory)
    return result


def _check_relay(path: str | os.PathLike[str], result: CheckResult) -> None:
    """The [relay] table, with the relay's own validation (every key)."""
    from dirsync.relay.config import load_relay_config

    try:
        load_relay_config(os.fspath(path))
    except ConfigError as exc:
        # The hub's secrets are checked with the directories below: say those once.
        result.problems.extend(p for p in exc.problems if not (
            p.startswith("directories.") and ".password_" in p.split(": ", 1)[0]))
    else:
        result.passed.append("relay: the [relay] table")


def _close_quietly(directory: Any) -> None:
    # check never writes: a file directory must not be flushed.
    if getattr(directory, "_dirty", False):
        directory._dirty = False
    try:
        directory.close()
    except DirsyncError:
        pass


def _reach(directory: DirectoryConfig, result: CheckResult) -> Any:
    """Open and read a directory; records a problem and returns None on failure."""
    where = directory.key_path
    if (directory.url if directory.kind in ("ldap", "ad") else directory.path) is None:
        return None  # the config's own check has said so
    try:
        opened = directory.open()
    except DirsyncError as exc:
        result.problems.extend(exc.problems if isinstance(exc, ConfigError) else
                               [f"{where}: {exc}"])
        return None
    try:
        if directory.kind in ("ldap", "ad"):
            if opened.base and not opened.exists(opened.base):
                result.problems.append(f"{where}.base: {opened.base} does not exist on "
                                       f"{directory.url}")
            else:
                result.passed.append(f"{where}: reached {directory.url}"
                                     + (f" as {directory.bind_dn}" if directory.bind_dn
                                        else ""))
                if directory.kind == "ad":
                    check_ad(opened, where, result)
        elif directory.kind == "csv":
            rows = sum(1 for _ in opened.read())
            result.passed.append(f"{where}: {directory.path}: {plural(rows, 'row')}, columns "
                                 f"{', '.join(opened.header)}")
            for rejected in opened.rejected:
                result.notes.append(f"{where}: {directory.path}:{rejected.line}: "
                                    f"{rejected.message} (a sync reports this row and "
                                    "applies the rest)")
        else:
            assert directory.path is not None
            if directory.path.exists():
                count = sum(1 for _ in opened.read())
                result.passed.append(f"{where}: {directory.path}: {plural(count, 'entry')}")
            else:
                result.notes.append(f"{where}: {directory.path} does not exist yet; the "
                                    "first sync creates it")
    except DirsyncError as exc:
        result.problems.append(f"{where}: {exc}")
        _close_quietly(opened)
        return None
    return opened


def check_ad(directory: Any, where: str, result: CheckResult) -> None:
    """What an ``ad`` directory allows: DirSync, and the Exchange attributes."""
    from dirsync.directories.ad import HIDE_ATTRIBUTE
    from dirsync.directories.addirsync import can_read_changes

    if directory.change_reads == "usn":
        result.notes.append(f"{where}: changes are read by uSNChanged (change_reads = "
                            '"usn"): a delete in AD reaches the hub at the next full run')
    else:
        try:
            can_read_changes(directory)
            result.passed.append(f"{where}: {directory.bind_dn} may read changes with DirSync")
        except DirsyncError as exc:
            hint = f"; {exc.hint}" if exc.hint else ""
            result.problems.append(f"{where}: {exc}{hint}")
    known = directory.attribute_types() or set()
    if HIDE_ATTRIBUTE.lower() in known:
        result.passed.append(f"{where}: the schema has the Exchange attributes; entries with "
                             f"{HIDE_ATTRIBUTE} = TRUE are not imported")
    else:
        result.notes.append(f"{where}: the schema has no Exchange attributes "
                            f"({HIDE_ATTRIBUTE}): only hidden_filter hides entries")


def _check_connection(config: Config, connection: ConnectionConfig, mapping: Mapping | None,
                      opened: dict[str, Any], result: CheckResult) -> None:
    where = f"{connection.key_path} ({connection.name})"
    hub = opened.get(connection.hub)
    foreign = opened.get(connection.foreign)
    if hub is not None and hub.kind == "ldap":
        try:
            known = hub.attribute_types()
        except DirsyncError as exc:
            result.problems.append(f"{where}: cannot read the hub's schema: {exc}")
            known = None
        if known is not None:
            missing = [a for a in DIRSYNC_ATTRIBUTES if a.lower() not in known]
            if missing:
                result.problems.append(
                    f"{where}: the hub {connection.hub!r} lacks the dirsync schema "
                    f"({', '.join(missing)}): load schemas/dirsync.schema (slapd.conf) or "
                    "schemas/dirsync.ldif (cn=config) into it")
            else:
                result.passed.append(f"{where}: the hub has the dirsync schema")
    if hub is not None and connection.import_container:
        check_container(hub, connection.import_container,
                         config.directories[connection.hub].base,
                         f"{connection.key_path}.import_container", where, "import container",
                         "sync", result)
    if connection.direction in ("export", "both"):
        check_export(config, connection, mapping, hub, foreign, result)
    if mapping is None or foreign is None:
        return
    known_names: Any = None
    what = ""
    if foreign.kind == "csv" and foreign.header:
        known_names = foreign.header
        what = f"the columns of {foreign.path} are: {', '.join(foreign.header)}"
    elif foreign.kind == "ldap":
        try:
            known_names = foreign.attribute_types()
            what = f"not an attribute type of {foreign.server_url}"
        except DirsyncError as exc:
            result.problems.append(f"{where}: cannot read the source's schema: {exc}")
    if known_names:
        problems = mapping.check_source_names(known_names, what)
        result.problems.extend(problems)
        if not problems:
            result.passed.append(f"{where}: every source attribute the mapping reads exists")
    if foreign.kind == "ldap" and mapping.source_filter:
        try:
            for _ in foreign.read(ReadOptions(filter=mapping.source_filter, attrs=["1.1"])):
                break
        except DirsyncError as exc:
            result.problems.append(f"{where}: the mapping's source filter fails: {exc}")
    if foreign.kind in ("csv", "ldif"):
        _check_values(foreign, mapping, where, result)


def _check_values(foreign: Any, mapping: Mapping, where: str, result: CheckResult) -> None:
    """Source entries whose values fail their syntax (what a sync skips)."""
    screen = screen_for(mapping)
    bad = 0
    try:
        for entry in foreign.read():
            problems = screen.problems(entry.dn, entry.attrs)
            if problems:
                bad += 1
                if bad <= 20:
                    at = f"{foreign.path}:{entry.line}" if entry.line else str(foreign.path)
                    result.notes.append(f"{where}: {at}: {'; '.join(map(str, problems))} "
                                        "(a sync reports this entry and skips it)")
    except DirsyncError:
        return  # the file itself is reported with the directory
    if bad > 20:
        result.notes.append(f"{where}: {bad - 20} more source entries with bad values")
