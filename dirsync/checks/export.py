"""``dirsync check`` for a connection's export direction.

What the export needs besides what the import checks: an ``[export]``
section in the mapping, export containers that exist in the hub, hub
attributes for every name an export template reads (on an LDAP hub, by
its schema; every problem named by mapping file, line and key), marker
and anchor attributes the foreign side can hold, and a place for the
exported entries in an LDAP or LDIF foreign directory.
"""

from __future__ import annotations

from typing import Any

from dirsync.checks.containers import check_container
from dirsync.config import Config, ConnectionConfig
from dirsync.directories.csvfile import ANCHOR_ATTR as CSV_RDN
from dirsync.directories.ldapfilter import FilterError, compile_filter
from dirsync.errors import DirsyncError
from dirsync.mapping.mapfile import Mapping
from dirsync.sync.adexport import EXCHANGE_ATTRIBUTES


def check_export(config: Config, connection: ConnectionConfig, mapping: Mapping | None,
                 hub: Any, foreign: Any, result: Any) -> None:
    """Add the export direction's problems, notes and passed checks to ``result``."""
    where = f"{connection.key_path} ({connection.name})"
    if mapping is not None and mapping.export is None:
        result.problems.append(f"{mapping.path}: export: missing: direction "
                               f"{connection.direction!r} needs an [export] section "
                               "(docs/export.md)")
        return
    export = mapping.export if mapping is not None else None
    if hub is not None:
        for i, container in enumerate(connection.export_containers):
            try:
                if hub.exists(container):
                    result.passed.append(f"{where}: export container {container} exists")
                else:
                    result.problems.append(f"{connection.key_path}.export_containers[{i}]: "
                                           f"{container} does not exist in the hub")
            except DirsyncError as exc:
                result.problems.append(f"{where}: {exc}")
        if hub.kind != "ldap" and export is not None:
            filter_text = export.filter if not connection.export_filter else \
                f"(&{export.filter}{connection.export_filter})"
            try:
                compile_filter(filter_text)
            except FilterError as exc:
                result.problems.append(f"{connection.key_path}.export_filter: {exc} (a file "
                                       "hub evaluates filters itself)")
    if export is None or mapping is None:
        return
    if hub is not None and hub.kind == "ldap":
        try:
            known = hub.attribute_types()
        except DirsyncError as exc:
            result.problems.append(f"{where}: cannot read the hub's schema: {exc}")
            known = None
        if known:
            names = {k.lower() for k in known}
            problems = []
            for name, keys in sorted(export.hub_names().items()):
                if name.lower() in names or name in mapping.variables:
                    continue
                for key in keys:
                    problems.append(f"{mapping.where(key)}: unknown hub attribute {name!r} "
                                    f"(not an attribute type of the hub {connection.hub!r})")
            result.problems.extend(problems)
            if not problems:
                result.passed.append(f"{where}: every hub attribute the export reads exists")
    if foreign is None:
        return
    if foreign.kind == "csv":
        for key, name in (("marker_attribute", export.marker_attribute),
                          ("anchor_attribute", export.anchor_attribute)):
            if name.lower() == CSV_RDN.lower():
                result.problems.append(f"{mapping.where('export.' + key)}: {name} names the "
                                       "row key of a CSV directory; give a column name")
        return
    base = config.directories[connection.foreign].base
    target = connection.foreign_container or base
    if not target:
        result.problems.append(f"{connection.key_path}.foreign_container: missing: the "
                               f"foreign directory {connection.foreign!r} has no base, so "
                               "say where exported entries go")
        return
    check_container(foreign, target, base, f"{connection.key_path}.foreign_container", where,
                    "foreign container", "export", result)
    if foreign.kind in ("ldap", "ad"):
        try:
            known = foreign.attribute_types()
        except DirsyncError:
            known = None
        if known:
            names = {k.lower() for k in known}
            owned = sorted(export.owned())
            missing = [n for n in owned if n not in names]
            if foreign.kind == "ad":
                missing = check_ad_export(foreign, missing, where, result)
            if missing:
                result.problems.append(
                    f"{mapping.where('export')}: the foreign directory "
                    f"{connection.foreign!r} has no attribute type "
                    f"{', '.join(repr(m) for m in missing)} that the export writes"
                    + (" (load schemas/dirsync.schema there, or name other marker and "
                       "anchor attributes)" if {"dirsyncsource", "dirsyncanchor"} & set(missing)
                       else ""))


def check_ad_export(foreign: Any, missing: list[str], where: str, result: Any) -> list[str]:
    """An AD without Exchange's schema: its attributes are left out, not a problem.
    Returns the missing names that remain problems."""
    exchange = [a for a in EXCHANGE_ATTRIBUTES if a.lower() in missing]
    if exchange:
        result.notes.append(f"{where}: the schema of {foreign.server_url} has no "
                            f"{', '.join(exchange)} (no Exchange): the export does not "
                            "write them")
    else:
        result.passed.append(f"{where}: the schema has the Exchange attributes the export "
                             "writes")
    lowered = {a.lower() for a in EXCHANGE_ATTRIBUTES}
    return [m for m in missing if m not in lowered]
