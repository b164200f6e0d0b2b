"""Checking a whole configuration file in one pass (:class:`Checker`).

Every table is checked at once and each problem is collected with its key
path (``connections[0].delete_threshold: ...``), so that one
:class:`ConfigError` lists them all and an administrator fixes a file in
one go. Paths are relative to the config file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dirsync.config.model import (
    DEFAULT_FULL_EVERY,
    DEFAULT_REPORTS,
    DEFAULT_STATE,
    DIRECTIONS,
    HUB_KINDS,
    KINDS,
    LIST_MODES,
    OTHER_SECTIONS,
    RECIPIENT_TYPES,
    WRITEBACK_MODES,
    Config,
    ConnectionConfig,
    DirectoryConfig,
    Threshold,
    bundled_mappings,
    check_schedule,
    parse_duration,
    parse_threshold,
    resolve_mapping,
)
from dirsync.entry import is_under, split_dn
from dirsync.mapping.templatebudget import parse_limits

#: A userPrincipalName (``svc-dirsync@corp.example``), which AD takes as a bind name.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UPN = re.compile(r"^[^@\s=,]+@[A-Za-z0-9][A-Za-z0-9.-]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: The kinds reached over LDAP, which share the connection keys.
_LDAP_KINDS = ("ldap", "ad")

_DIRECTORY_KEYS: dict[str, tuple[type | tuple[type, ...], tuple[str, ...]]] = {
    # key: (type, kinds it applies to)
    "kind": (str, KINDS),
    "url": (str, _LDAP_KINDS),
    "path": (str, ("ldif", "csv")),
    "base": (str, ("ldap", "ldif", "ad")),
    "bind_dn": (str, _LDAP_KINDS),
    "password_file": (str, _LDAP_KINDS),
    "password_env": (str, _LDAP_KINDS),
    "ca_file": (str, _LDAP_KINDS),
    "tls_verify": (bool, _LDAP_KINDS),
    "starttls": (bool, _LDAP_KINDS),
    "page_size": (int, _LDAP_KINDS),
    "window": (int, _LDAP_KINDS),
    "timeout": ((int, float), _LDAP_KINDS),
    "hidden_filter": (str, ("ad",)),
    "change_reads": (str, ("ad",)),
    "key": (str, ("csv",)),
    "delimiter": (str, ("csv",)),
    "encoding": (str, ("csv",)),
    "columns": (list, ("csv",)),
    "multi_value_separator": (str, ("csv",)),
    "multi_valued": (list, ("csv",)),
}

_CONNECTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "foreign": str, "hub": str, "mapping": str, "import_container": str,
    "export_containers": list, "direction": str, "recipients": str, "lists": str,
    "delete_threshold": (int, str), "schedule": str, "variables": dict, "full_every": str,
    # the export direction (docs/export.md)
    "export_filter": str, "foreign_container": str, "proxy_writeback": str,
}

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", list: "a list",
               dict: "a table", float: "a number"}


def _type_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kind)
    return _TYPE_NAMES.get(kind, kind.__name__)


class Checker:
    """Walks the parsed TOML once, collecting every problem with its key path."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def path(self, value: str) -> Path:
        candidate = Path(value)
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def typed(self, table: dict[str, Any], key: str, where: str,
              kind: type | tuple[type, ...]) -> Any:
        value = table.get(key)
        if value is None:
            return None
        wanted = kind if isinstance(kind, tuple) else (kind,)
        # TOML booleans are ints to isinstance; never accept one for the other.
        ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
        if not ok:
            self.problem(f"{where}.{key}", f"must be {_type_name(kind)}, not {value!r}")
            return None
        return value

    def dn(self, value: str, where: str) -> bool:
        try:
            if not split_dn(value):
                self.problem(where, "must not be empty")
                return False
        except ValueError:
            self.problem(where, f"{value!r} is not a valid DN")
            return False
        return True

    # -- tables ----------------------------------------------------------
    def config(self, config_path: Path, data: dict[str, Any]) -> Config:
        known = {"state", "reports", "directories", "connections", "template_limits",
                 *OTHER_SECTIONS}
        for key in data:
            if key not in known:
                self.problem(key, "unknown key (known: state, reports, [directories.NAME], "
                                  "[[connections]], [template_limits])")
        limits, problems = parse_limits(data.get("template_limits"))
        self.problems.extend(problems)
        state = self.typed(data, "state", "config", str)
        reports = self.typed(data, "reports", "config", str)
        for key, value in (("state", state), ("reports", reports)):
            if value is not None and not value.strip():
                self.problem(key, "must not be empty")
        directories = self.directories(data.get("directories", {}))
        connections = self.connections(data.get("connections", []), directories)
        return Config(
            path=config_path,
            state=self.path(state or DEFAULT_STATE),
            reports=self.path(reports or DEFAULT_REPORTS),
            directories=directories,
            connections=connections,
            sections={k: data[k] for k in OTHER_SECTIONS if k in data},
            template_limits=limits,
        )

    def directories(self, raw: Any) -> dict[str, DirectoryConfig]:
        if not isinstance(raw, dict):
            self.problem("directories", "must be tables: [directories.NAME]")
            return {}
        found: dict[str, DirectoryConfig] = {}
        for name, table in raw.items():
            where = f"directories.{name}"
            if not _NAME.match(name):
                self.problem(where, "a directory name may hold letters, digits, '.', '_', '-'")
            if not isinstance(table, dict):
                self.problem(where, "must be a table")
                continue
            directory = self.directory(name, table, where)
            if directory is not None:
                found[name] = directory
        return found

    def directory(self, name: str, table: dict[str, Any], where: str) -> DirectoryConfig | None:
        kind = self.typed(table, "kind", where, str)
        if kind is None:
            if "kind" not in table:
                self.problem(f"{where}.kind", f"missing (one of {', '.join(KINDS)})")
            return None
        if kind not in KINDS:
            self.problem(f"{where}.kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
            return None
        values: dict[str, Any] = {}
        for key in table:
            if key == "password":
                self.problem(f"{where}.password", "secrets never go in the config file: "
                             "use password_file or password_env")
                continue
            spec = _DIRECTORY_KEYS.get(key)
            if spec is None:
                self.problem(f"{where}.{key}", "unknown key")
                continue
            kind_type, kinds = spec
            if kind not in kinds:
                self.problem(f"{where}.{key}", f"does not apply to a {kind} directory")
                continue
            value = self.typed(table, key, where, kind_type)
            if value is not None:
                values[key] = value
        directory = DirectoryConfig(name=name, kind=kind)
        if kind in _LDAP_KINDS:
            url = values.get("url")
            if url is None:
                if "url" not in table:
                    self.problem(f"{where}.url", "missing (ldap://, ldaps:// or ldapi://)")
            elif not url.lower().startswith(("ldap://", "ldaps://", "ldapi://")):
                self.problem(f"{where}.url", f"{url!r} is not an ldap://, ldaps:// or "
                             "ldapi:// URL")
            elif kind == "ad":
                self.ad_transport(url, values, where)
            directory.url = url
            if "password_file" in values and "password_env" in values:
                self.problem(f"{where}.password_env", "give password_file or password_env, "
                             "not both")
            if "password_file" in values:
                directory.password_file = self.path(values["password_file"])
                if not directory.password_file.is_file():
                    self.problem(f"{where}.password_file",
                                 f"no such file: {values['password_file']}")
            if "password_env" in values:
                if not _ENV.match(values["password_env"]):
                    self.problem(f"{where}.password_env", "must be an environment variable "
                                 f"name, not {values['password_env']!r}")
                directory.password_env = values["password_env"]
            if ("password_file" in values or "password_env" in values) \
                    and "bind_dn" not in values:
                self.problem(f"{where}.bind_dn", "a password needs a bind_dn")
            if "bind_dn" in values:
                if kind == "ad" and _UPN.match(values["bind_dn"]):
                    directory.bind_dn = values["bind_dn"]  # AD binds with a UPN too
                elif self.dn(values["bind_dn"], f"{where}.bind_dn"):
                    directory.bind_dn = values["bind_dn"]
            if "hidden_filter" in values:
                self.ad_hidden_filter(directory, values["hidden_filter"], where)
            if "change_reads" in values:
                if values["change_reads"] in ("dirsync", "usn"):
                    directory.change_reads = values["change_reads"]
                else:
                    self.problem(f"{where}.change_reads", f"{values['change_reads']!r}: "
                                 'give "dirsync" or "usn"')
            if "ca_file" in values:
                directory.ca_file = self.path(values["ca_file"])
                if not directory.ca_file.is_file():
                    self.problem(f"{where}.ca_file", f"no such file: {values['ca_file']}")
            directory.tls_verify = values.get("tls_verify", True)
            directory.starttls = values.get("starttls", False)
            for key in ("page_size", "window"):
                if key in values:
                    if values[key] < 1:
                        self.problem(f"{where}.{key}", "must be at least 1")
                    else:
                        setattr(directory, key, values[key])
            if "timeout" in values:
                if values["timeout"] <= 0:
                    self.problem(f"{where}.timeout", "must be more than 0 seconds")
                else:
                    directory.timeout = float(values["timeout"])
        else:
            path = values.get("path")
            if path is None:
                if "path" not in table:
                    self.problem(f"{where}.path", f"missing (the {kind} file)")
            else:
                directory.path = self.path(path)
                # An ldif file may be missing: a hub file is created by the first sync.
                if kind == "csv" and not directory.path.is_file():
                    self.problem(f"{where}.path", f"no such file: {path}")
        if "base" in values and self.dn(values["base"], f"{where}.base"):
            directory.base = values["base"]
        if kind == "csv":
            self.csv_layout(directory, values, where)
        return directory

    def ad_transport(self, url: str, values: dict[str, Any], where: str) -> None:
        """AD refuses simple binds in clear: ldaps://, or ldap:// with StartTLS."""
        lowered = url.lower()
        if lowered.startswith("ldapi://"):
            self.problem(f"{where}.url", "an ad directory is reached by ldaps:// or ldap://")
        elif lowered.startswith("ldap://") and not values.get("starttls", False):
            self.problem(f"{where}.starttls", "Active Directory refuses simple binds without "
                         "TLS: use an ldaps:// URL or set starttls = true")

    def ad_hidden_filter(self, directory: DirectoryConfig, value: str, where: str) -> None:
        from dirsync.directories.ldapfilter import FilterError, compile_filter

        try:
            compile_filter(value)
        except FilterError as exc:
            self.problem(f"{where}.hidden_filter", f"{value!r} is not a filter dirsync can "
                         f"evaluate: {exc}")
            return
        directory.hidden_filter = value

    def csv_layout(self, directory: DirectoryConfig, values: dict[str, Any], where: str) -> None:
        for key in ("columns", "multi_valued"):
            if key in values:
                items = values[key]
                if not all(isinstance(i, str) and i.strip() for i in items):
                    self.problem(f"{where}.{key}", "must be a list of column names")
                    continue
                setattr(directory, key, list(items))
        if "delimiter" in values:
            if len(values["delimiter"]) != 1:
                self.problem(f"{where}.delimiter", "must be one character")
            else:
                directory.delimiter = values["delimiter"]
        if "encoding" in values:
            import codecs

            try:
                codecs.lookup(values["encoding"])
                directory.encoding = values["encoding"]
            except LookupError:
                self.problem(f"{where}.encoding", f"unknown encoding {values['encoding']!r}")
        if "multi_value_separator" in values:
            if not values["multi_value_separator"]:
                self.problem(f"{where}.multi_value_separator", "must not be empty")
            else:
                directory.multi_value_separator = values["multi_value_separator"]
        if "key" in values:
            directory.key = values["key"]
            if directory.columns and values["key"] not in directory.columns:
                self.problem(f"{where}.key", f"{values['key']!r} is not one of the columns")
        if directory.multi_valued and not directory.multi_value_separator:
            self.problem(f"{where}.multi_valued", "needs a multi_value_separator")

    def connections(self, raw: Any,
                    directories: dict[str, DirectoryConfig]) -> list[ConnectionConfig]:
        if not isinstance(raw, list):
            self.problem("connections", "must be an array of tables: [[connections]]")
            return []
        found: list[ConnectionConfig] = []
        names: dict[str, int] = {}
        for index, table in enumerate(raw):
            where = f"connections[{index}]"
            if not isinstance(table, dict):
                self.problem(where, "must be a table")
                continue
            connection = self.connection(index, table, where, directories)
            if connection is None:
                continue
            if connection.name in names:
                self.problem(f"{where}.name", f"{connection.name!r} is already the name of "
                             f"connections[{names[connection.name]}]")
            names.setdefault(connection.name, index)
            found.append(connection)
        return found

    def choice(self, table: dict[str, Any], key: str, where: str, choices: tuple[str, ...],
               default: str) -> str:
        value = self.typed(table, key, where, str)
        if value is None:
            return default
        if value not in choices:
            self.problem(f"{where}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value

    def connection(self, index: int, table: dict[str, Any], where: str,
                   directories: dict[str, DirectoryConfig]) -> ConnectionConfig | None:
        for key in table:
            if key not in _CONNECTION_KEYS:
                self.problem(f"{where}.{key}", "unknown key")
        values = {k: self.typed(table, k, where, t) for k, t in _CONNECTION_KEYS.items()}
        ok = True
        for key in ("name", "foreign", "hub", "mapping"):
            if values[key] is None:
                if key not in table:
                    self.problem(f"{where}.{key}", "missing")
                ok = False
        name = values["name"]
        if name is not None and not _NAME.match(name):
            self.problem(f"{where}.name", "a connection name may hold letters, digits, '.', "
                         f"'_', '-' (it is written on every entry it owns), not {name!r}")
        self.reference(values["foreign"], f"{where}.foreign", directories, KINDS)
        self.reference(values["hub"], f"{where}.hub", directories, HUB_KINDS)
        if values["foreign"] is not None and values["foreign"] == values["hub"]:
            self.problem(f"{where}.foreign", "must be another directory than the hub")
        mapping_path = None
        if values["mapping"] is not None:
            mapping_path = resolve_mapping(values["mapping"], self.base_dir)
            if mapping_path is None:
                self.problem(f"{where}.mapping", f"{values['mapping']!r} is neither a bundled "
                             f"mapping ({', '.join(bundled_mappings())}) nor a mapping file")
                ok = False
        direction = self.choice(table, "direction", where, DIRECTIONS, "import")
        recipients = self.choice(table, "recipients", where, RECIPIENT_TYPES, "contact")
        lists = self.choice(table, "lists", where, LIST_MODES, "contact")
        container = values["import_container"]
        if container is not None:
            if self.dn(container, f"{where}.import_container"):
                hub = directories.get(values["hub"] or "")
                if hub is not None and hub.base and not is_under(container, hub.base):
                    self.problem(f"{where}.import_container", f"{container!r} is not under "
                                 f"the hub's base {hub.base!r}")
            else:
                container = None
        elif direction in ("import", "both") and "import_container" not in table:
            self.problem(f"{where}.import_container", "missing (an import needs exactly one "
                         "import container)")
        exports: list[str] = []
        for i, value in enumerate(values["export_containers"] or []):
            if not isinstance(value, str):
                self.problem(f"{where}.export_containers[{i}]", "must be a DN string")
            elif self.dn(value, f"{where}.export_containers[{i}]"):
                exports.append(value)
        if direction in ("export", "both") and not exports \
                and "export_containers" not in table:
            self.problem(f"{where}.export_containers", "missing (an export reads one or more "
                         "export containers)")
        export_filter = values["export_filter"]
        if export_filter is not None and not (export_filter.strip().startswith("(")
                                              and export_filter.strip().endswith(")")):
            self.problem(f"{where}.export_filter", f"{export_filter!r} is not an LDAP filter "
                         "in parentheses")
            export_filter = None
        foreign_container = values["foreign_container"]
        if foreign_container is not None and not self.dn(foreign_container,
                                                         f"{where}.foreign_container"):
            foreign_container = None
        proxy_writeback = self.choice(table, "proxy_writeback", where, WRITEBACK_MODES, "marked")
        threshold = Threshold()
        if "delete_threshold" in table and values["delete_threshold"] is not None:
            try:
                threshold = parse_threshold(values["delete_threshold"])
            except ValueError as exc:
                self.problem(f"{where}.delete_threshold", str(exc))
        schedule = values["schedule"]
        if schedule is not None:
            try:
                check_schedule(schedule)
            except ValueError as exc:
                self.problem(f"{where}.schedule", str(exc))
        full_every = DEFAULT_FULL_EVERY
        if values["full_every"] is not None:
            try:
                full_every = parse_duration(values["full_every"])
            except ValueError as exc:
                self.problem(f"{where}.full_every", str(exc))
        variables: dict[str, str] = {}
        for key, value in (values["variables"] or {}).items():
            if not isinstance(value, str):
                self.problem(f"{where}.variables.{key}", "must be a string")
            elif not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                self.problem(f"{where}.variables.{key}", "a variable name must be an identifier")
            else:
                variables[key] = value
        if not ok or mapping_path is None:
            return None
        return ConnectionConfig(
            index=index, name=name, foreign=values["foreign"], hub=values["hub"],
            mapping=values["mapping"], mapping_path=mapping_path, import_container=container,
            export_containers=exports, direction=direction, recipients=recipients, lists=lists,
            delete_threshold=threshold, schedule=schedule, variables=variables,
            export_filter=export_filter, foreign_container=foreign_container,
            proxy_writeback=proxy_writeback, full_every=full_every)

    def reference(self, value: str | None, where: str, directories: dict[str, DirectoryConfig],
                  kinds: tuple[str, ...]) -> None:
        if value is None:
            return
        directory = directories.get(value)
        if directory is None:
            self.problem(where, f"no directory named {value!r} (there are: "
                         f"{', '.join(directories) or 'none'})")
        elif directory.kind not in kinds:
            self.problem(where, f"{value!r} is a {directory.kind} directory; this must be "
                         f"one of: {', '.join(kinds)}")
