"""The configuration's typed tables, their defaults and the value parsers.

What a loaded ``dirsync.toml`` is (:class:`Config`, :class:`DirectoryConfig`,
:class:`ConnectionConfig`), the constants its keys choose from, and the
parsers of single values (thresholds, durations, schedules, mapping
names). Checking a whole file is :mod:`dirsync.config.checker`'s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dirsync.bundled import bundled_dir
from dirsync.errors import ConfigError, UsageError
from dirsync.mapping.templatebudget import DEFAULT_LIMITS, TemplateLimits

#: Where the bundled mappings live (``mapping = "csv-gal"`` names one of them).
BUNDLED_MAPPINGS = bundled_dir("mappings")

DEFAULT_STATE = "var/state.sqlite"
DEFAULT_REPORTS = "var/reports"
#: The default delete threshold: the one commercial tool with such a limit
#: stops at 500 deletes, and so does dirsync unless the connection says otherwise.
DEFAULT_DELETE_THRESHOLD = 500

KINDS = ("ldap", "ldif", "csv", "ad")
HUB_KINDS = ("ldap", "ldif")
DIRECTIONS = ("import", "export", "both")
RECIPIENT_TYPES = ("contact", "disabled-user", "enabled-user")
LIST_MODES = ("contact", "group", "skip")
WRITEBACK_MODES = ("marked", "all", "none")

#: Top-level tables that other parts of dirsync read (the relay); they are
#: kept as they are in :attr:`Config.sections` for their owners to check.
OTHER_SECTIONS = ("relay",)

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: How often an incremental connection gets a full reconcile (``full_every``).
DEFAULT_FULL_EVERY = 24 * 3600.0
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Threshold:
    """A delete limit: a count of entries, or a percentage of what the hub holds."""

    count: int | None = DEFAULT_DELETE_THRESHOLD
    percent: float | None = None

    def limit(self, total: int) -> int:
        """The largest number of deletes allowed when the hub holds ``total`` entries."""
        if self.percent is not None:
            return int(total * self.percent / 100)
        return self.count if self.count is not None else DEFAULT_DELETE_THRESHOLD

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


@dataclass
class DirectoryConfig:
    """One ``[directories.NAME]`` table."""

    name: str
    kind: str
    url: str | None = None
    path: Path | None = None
    base: str | None = None
    bind_dn: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    ca_file: Path | None = None
    tls_verify: bool = True
    starttls: bool = False
    page_size: int = 1000
    window: int = 256
    timeout: float = 30.0
    # csv layout
    key: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    columns: list[str] | None = None
    multi_value_separator: str | None = None
    multi_valued: list[str] = field(default_factory=list)
    # ad: an LDAP filter for entries hidden from address lists (besides
    # msExchHideFromAddressLists where the schema has it)
    hidden_filter: str | None = None
    # ad: how incremental runs read changes: "dirsync" (needs "Replicating
    # Directory Changes") or "usn" (uSNChanged; deletes wait for a full run)
    change_reads: str = "dirsync"

    @property
    def key_path(self) -> str:
        return f"directories.{self.name}"

    def password(self) -> str | None:
        """The bind password, from its file or its environment variable."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{self.key_path}.password_file: cannot read "
                                  f"{self.password_file}: {exc.strerror}") from exc
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"{self.key_path}.password_env: the environment variable "
                                  f"{self.password_env} is not set")
            return value
        return None

    def open(self) -> Any:
        """The directory this table describes (see :mod:`dirsync.directories`)."""
        from dirsync.directories import (
            ADDirectory,
            CSVDirectory,
            CSVLayout,
            LDAPDirectory,
            LDIFDirectory,
            TLSOptions,
        )

        # A table the loader already found lacking (check goes on past it).
        if self.kind in ("ldap", "ad") and self.url is None:
            raise ConfigError(f"{self.key_path}.url: missing (the server's LDAP URL)")
        if self.kind not in ("ldap", "ad") and self.path is None:
            raise ConfigError(f"{self.key_path}.path: missing (the {self.kind} file)")
        if self.kind in ("ldap", "ad"):
            assert self.url is not None
            tls = TLSOptions(ca_file=str(self.ca_file) if self.ca_file else None,
                             verify=self.tls_verify, starttls=self.starttls)
            if self.kind == "ad":
                return ADDirectory(self.url, name=self.name, base=self.base,
                                   bind_dn=self.bind_dn, password=self.password(), tls=tls,
                                   page_size=self.page_size, window=self.window,
                                   timeout=self.timeout, hidden_filter=self.hidden_filter,
                                   change_reads=self.change_reads)
            return LDAPDirectory(self.url, name=self.name, base=self.base, bind_dn=self.bind_dn,
                                 password=self.password(), tls=tls, page_size=self.page_size,
                                 window=self.window, timeout=self.timeout)
        assert self.path is not None
        if self.kind == "ldif":
            return LDIFDirectory(self.path, name=self.name, create=True)
        layout = CSVLayout(key=self.key, delimiter=self.delimiter, encoding=self.encoding,
                           columns=self.columns, multi_value_separator=self.multi_value_separator,
                           multi_valued=list(self.multi_valued))
        return CSVDirectory(self.path, name=self.name, layout=layout, create=False)


@dataclass
class ConnectionConfig:
    """One ``[[connections]]`` table."""

    index: int
    name: str
    foreign: str
    hub: str
    mapping: str
    mapping_path: Path
    import_container: str | None = None
    export_containers: list[str] = field(default_factory=list)
    direction: str = "import"
    recipients: str = "contact"
    lists: str = "contact"
    delete_threshold: Threshold = field(default_factory=Threshold)
    schedule: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    #: Seconds between full reconciles; the runs in between are incremental.
    full_every: float = DEFAULT_FULL_EVERY
    # The export direction (docs/export.md): an LDAP filter ANDed with the
    # mapping's, where exported entries go in an ldap/ldif foreign directory
    # (default: its base), and where generated proxy addresses are written.
    export_filter: str | None = None
    foreign_container: str | None = None
    proxy_writeback: str = "marked"

    @property
    def key_path(self) -> str:
        return f"connections[{self.index}]"

    @property
    def imports(self) -> bool:
        return self.direction in ("import", "both")


@dataclass
class Config:
    path: Path
    state: Path
    reports: Path
    directories: dict[str, DirectoryConfig]
    connections: list[ConnectionConfig]
    sections: dict[str, Any] = field(default_factory=dict)
    #: What a mapping template may cost (docs/mapping.md, "Limits").
    template_limits: TemplateLimits = DEFAULT_LIMITS

    def select(self, names: tuple[str, ...] | list[str] = ()) -> list[ConnectionConfig]:
        """The connections named (all when none are), in config order."""
        if not names:
            return list(self.connections)
        known = {c.name: c for c in self.connections}
        missing = [n for n in names if n not in known]
        if missing:
            raise UsageError(f"no connection named {', '.join(map(repr, missing))} in "
                             f"{self.path} (there are: {', '.join(known) or 'none'})")
        return [c for c in self.connections if c.name in names]


def parse_threshold(value: Any) -> Threshold:
    """``500`` or ``"10%"``; raises ValueError with a reason."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return Threshold(count=value)
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match:
            percent = float(match.group(1))
            if not 0 <= percent <= 100:
                raise ValueError("a percentage must be between 0% and 100%")
            return Threshold(count=None, percent=percent)
        if value.strip().isdigit():
            return Threshold(count=int(value))
    raise ValueError(f"must be a count or a percentage such as \"10%\", not {value!r}")


def check_schedule(value: str) -> None:
    """A cron line of five fields or an interval such as ``15m``; ValueError if not.

    One definition: the scheduler's own parser, imported here only when a
    connection has a schedule (it loads APScheduler).
    """
    from dirsync.schedule.scheduler import parse_schedule

    parse_schedule(value)


def parse_duration(value: str) -> float:
    """``full_every``: an interval such as ``24h``, ``30m`` or ``1d``, in seconds."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as \"24h\", \"30m\" or \"7d\"")
    seconds = int(match.group(1)) * _DURATION_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return float(seconds)


def resolve_mapping(value: str, base_dir: Path) -> Path | None:
    """A bundled mapping by name, or a file path relative to the config."""
    if "/" not in value and "\\" not in value and not value.endswith(".toml"):
        candidate = BUNDLED_MAPPINGS / f"{value}.toml"
        return candidate if candidate.is_file() else None
    candidate = (base_dir / value) if not Path(value).is_absolute() else Path(value)
    return candidate if candidate.is_file() else None


def bundled_mappings() -> list[str]:
    return sorted(p.stem for p in BUNDLED_MAPPINGS.glob("*.toml"))


