"""The ``[relay]`` table of the dirsync config, validated into typed dataclasses.

Every problem is collected with its key path (``relay.routes[2].cost``) and
reported together in one :class:`~dirsync.errors.ConfigError`. Paths are
relative to the config file. Secrets never live in the file: the hub's
password comes from ``password_file`` or ``password_env`` of the
``[directories.NAME]`` table that ``relay.hub`` names. docs/relay.md
documents every key.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dirsync.addresses.x400 import (
    MappingRule,
    MappingTables,
    ORAddress,
    ORAddressError,
    parse_or_address,
)
from dirsync.errors import ConfigError
from dirsync.relay.paths import is_hostname, is_mailbox

T = TypeVar("T")

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")

DEFAULT_LISTEN = "127.0.0.1:2525"


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"5m"``, ``"1h30m"``, ``"5d"``."""
    if isinstance(value, bool):
        raise TypeError("a duration, not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise TypeError("a number of seconds or a string such as \"5m\"")
    text = value.strip()
    matches = list(_DURATION_RE.finditer(text))
    if not matches or "".join(m.group(0) for m in matches).replace(" ", "") \
            != text.replace(" ", ""):
        raise ValueError(f"{value!r} is not a duration (e.g. \"90s\", \"5m\", \"1h30m\", \"5d\")")
    return sum(float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()] for m in matches)


def parse_size(value: object) -> int:
    """Bytes from an integer or a string such as ``"32MB"`` (binary multiples)."""
    if isinstance(value, bool):
        raise TypeError("a size, not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if not isinstance(value, str) or not (match := _SIZE_RE.match(value)):
        raise ValueError(f"{value!r} is not a size (e.g. 33554432 or \"32MB\")")
    unit = (match.group(2) or "b").lower()[0]
    return int(match.group(1)) * {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


@dataclass(frozen=True)
class HubConfig:
    """The LDAP hub the relay translates addresses through."""

    name: str
    url: str
    base: str
    bind_dn: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ca_file: Path | None = None
    timeout: float = 10.0
    cache_ttl: float = 60.0


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    require_starttls: bool = False


@dataclass(frozen=True)
class AuthConfig:
    users_file: Path
    required: bool = False


@dataclass(frozen=True)
class SmtpHopConfig:
    """A next hop spoken to over SMTP."""

    name: str
    host: str
    port: int = 25
    timeout: float = 60.0
    starttls: str = "opportunistic"  # off | opportunistic | required
    ca_file: Path | None = None
    domain: str | None = None  # where foreign-typed recipients are encapsulated (IMCEA)
    kind: str = "smtp"


@dataclass(frozen=True)
class X400HopConfig:
    """A next hop that is an X.400 gateway queue folder."""

    name: str
    path: Path
    kind: str = "x400"


HopConfig = SmtpHopConfig | X400HopConfig


@dataclass(frozen=True)
class RouteConfig:
    """One address space: mail for addresses matching it goes to ``hop`` at ``cost``."""

    address_space: str
    type: str
    pattern: str
    hop: str
    cost: int = 1
    require_sender_proxy: bool = False
    authenticated_only: bool = False


@dataclass(frozen=True)
class X400Config:
    global_domain: ORAddress | None = None
    mta: str = ""
    gateway: ORAddress | None = None
    mappings: tuple[MappingRule, ...] = ()
    pickup: Path | None = None
    pickup_interval: float = 5.0

    def tables(self) -> MappingTables:
        return MappingTables(rules=self.mappings, gateway=self.gateway)


@dataclass(frozen=True)
class RelayConfig:
    """Everything ``dirsync relay serve`` and ``relay route`` need."""

    path: Path
    hub: HubConfig
    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    hostname: str = "localhost"
    domains: tuple[str, ...] = ()
    imcea_domain: str = "localhost"
    postmaster: str = "postmaster@localhost"
    queue: Path = Path("var/relay/queue")
    tracking_log: Path = Path("var/relay/tracking.jsonl")
    max_message_size: int = 32 << 20
    max_recipients: int = 1000
    max_hops: int = 50
    max_queue_lifetime: float = 5 * 86400.0
    retry_initial: float = 300.0
    retry_factor: float = 2.0
    retry_max: float = 4000.0
    delivery_workers: int = 4
    session_timeout: float = 300.0
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    x400: X400Config = field(default_factory=X400Config)
    hops: Mapping[str, HopConfig] = field(default_factory=dict)
    routes: tuple[RouteConfig, ...] = ()

    def retry_delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: initial, doubling, capped."""
        delay = self.retry_initial * self.retry_factor ** max(attempts - 1, 0)
        return min(delay, self.retry_max)


class _Reader:
    """Reads one table, recording problems under its key path."""

    def __init__(self, problems: list[str], base: Path) -> None:
        self.problems = problems
        self.base = base

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, data: object, key: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.problem(key, "must be a table")
            return {}
        return data

    def unknown(self, data: Mapping[str, Any], key: str, known: set[str]) -> None:
        for name in sorted(set(data) - known):
            self.problem(f"{key}.{name}", "unknown key")

    def get(self, data: Mapping[str, Any], key: str, name: str, kind: type[T] | tuple[type, ...],
            default: T, *, what: str) -> T:
        if name not in data:
            return default
        value = data[name]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool
                                              and kind != (bool,))
        if not ok:
            self.problem(f"{key}.{name}", f"must be {what}")
            return default
        return value  # type: ignore[return-value]

    def string(self, data: Mapping[str, Any], key: str, name: str, default: str | None = None,
               *, required: bool = False) -> str | None:
        if required and name not in data:
            self.problem(f"{key}.{name}", "required")
            return default
        value = self.get(data, key, name, str, default, what="a string")
        if value is not None and required and not value.strip():
            self.problem(f"{key}.{name}", "must not be empty")
        return value

    def boolean(self, data: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        return self.get(data, key, name, bool, default, what="true or false")

    def integer(self, data: Mapping[str, Any], key: str, name: str, default: int,
                low: int, high: int | None = None) -> int:
        value = self.get(data, key, name, int, default, what="an integer")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.problem(f"{key}.{name}", f"must be {bound}")
            return default
        return value

    def convert(self, data: Mapping[str, Any], key: str, name: str, default: T,
                parse: Callable[[object], T]) -> T:
        if name not in data:
            return default
        try:
            return parse(data[name])
        except (ValueError, TypeError, ORAddressError) as exc:
            self.problem(f"{key}.{name}", str(exc))
            return default

    def path(self, data: Mapping[str, Any], key: str, name: str, default: str | None = None,
             *, must_exist: bool = False) -> Path | None:
        text = self.string(data, key, name, default)
        if text is None:
            return None
        path = Path(text).expanduser()
        path = path if path.is_absolute() else self.base / path
        if must_exist and not path.exists():
            self.problem(f"{key}.{name}", f"{path} does not exist")
        return path


def _or_address(value: object) -> ORAddress:
    if not isinstance(value, str):
        raise TypeError("must be an O/R address string")
    return parse_or_address(value)


def _parse_listen(value: object) -> tuple[str, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        host, port = "127.0.0.1", value
    elif isinstance(value, str):
        match = re.fullmatch(r"\[(.+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
        if match is None:
            raise ValueError(f"{value!r}: expected HOST:PORT (or [IPv6]:PORT)")
        host = match.group(1) or match.group(3) or "0.0.0.0"
        port = int(match.group(2) or match.group(4))
    else:
        raise TypeError("must be \"HOST:PORT\" or a port number")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _read_secret(r: _Reader, directory: Mapping[str, Any], key: str) -> str | None:
    has_file, has_env = "password_file" in directory, "password_env" in directory
    if "password" in directory:
        r.problem(f"{key}.password", "secrets never go in the config file; use password_file "
                                     "or password_env")
    if has_file and has_env:
        r.problem(key, "give password_file or password_env, not both")
        return None
    if has_file:
        path = r.path(directory, key, "password_file")
        if path is None:
            return None
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            r.problem(f"{key}.password_file", f"cannot read {path}: {exc.strerror}")
            return None
    if has_env:
        name = r.string(directory, key, "password_env")
        if name is None:
            return None
        if name not in os.environ:
            r.problem(f"{key}.password_env", f"environment variable {name} is not set")
            return None
        return os.environ[name]
    return None


def _read_hub(r: _Reader, doc: Mapping[str, Any], relay: Mapping[str, Any],
              cache_ttl: float, timeout: float) -> HubConfig | None:
    name = r.string(relay, "relay", "hub", required=True)
    if not name:
        return None
    directories = r.table(doc.get("directories"), "directories")
    key = f"directories.{name}"
    if name not in directories:
        r.problem("relay.hub", f"no [{key}] table in the config")
        return None
    directory = r.table(directories[name], key)
    kind = r.string(directory, key, "kind", "ldap")
    if kind != "ldap":
        r.problem(f"{key}.kind", f"the relay's hub must be an ldap directory, not {kind!r}")
        return None
    url = r.string(directory, key, "url", required=True) or ""
    if url and not re.match(r"^ldap[si]?://", url, re.IGNORECASE):
        r.problem(f"{key}.url", "must be an ldap://, ldaps:// or ldapi:// URL")
    base = r.string(directory, key, "base", required=True) or ""
    bind_dn = r.string(directory, key, "bind_dn")
    password = _read_secret(r, directory, key)
    if bind_dn and password is None and "password_file" not in directory \
            and "password_env" not in directory:
        r.problem(key, "bind_dn needs password_file or password_env")
    return HubConfig(
        name=name, url=url, base=base, bind_dn=bind_dn, password=password,
        starttls=r.boolean(directory, key, "starttls", False),
        ca_file=r.path(directory, key, "ca_file", must_exist=True),
        timeout=timeout, cache_ttl=cache_ttl,
    )


def _read_hops(r: _Reader, relay: Mapping[str, Any]) -> dict[str, HopConfig]:
    hops: dict[str, HopConfig] = {}
    table = r.table(relay.get("hops"), "relay.hops")
    for name, raw in table.items():
        key = f"relay.hops.{name}"
        data = r.table(raw, key)
        kind = r.string(data, key, "kind", "smtp")
        if kind == "smtp":
            r.unknown(data, key, {"kind", "host", "port", "timeout", "starttls", "ca_file",
                                  "domain"})
            starttls = r.string(data, key, "starttls", "opportunistic") or "opportunistic"
            if starttls not in ("off", "opportunistic", "required"):
                r.problem(f"{key}.starttls", "must be off, opportunistic or required")
            hops[name] = SmtpHopConfig(
                name=name,
                host=r.string(data, key, "host", required=True) or "",
                port=r.integer(data, key, "port", 25, 1, 65535),
                timeout=r.convert(data, key, "timeout", 60.0, parse_duration),
                starttls=starttls,
                ca_file=r.path(data, key, "ca_file", must_exist=True),
                domain=r.string(data, key, "domain"),
            )
        elif kind == "x400":
            r.unknown(data, key, {"kind", "path"})
            path = r.path(data, key, "path")
            if path is None:
                r.problem(f"{key}.path", "required")
                continue
            hops[name] = X400HopConfig(name=name, path=path)
        else:
            r.problem(f"{key}.kind", f"must be smtp or x400, not {kind!r}")
    return hops


def _read_routes(r: _Reader, relay: Mapping[str, Any], hops: Mapping[str, HopConfig],
                 x400: X400Config) -> tuple[RouteConfig, ...]:
    routes: list[RouteConfig] = []
    raw = relay.get("routes", [])
    if not isinstance(raw, list):
        r.problem("relay.routes", "must be an array of tables ([[relay.routes]])")
        return ()
    for i, item in enumerate(raw):
        key = f"relay.routes[{i}]"
        data = r.table(item, key)
        r.unknown(data, key, {"address_space", "cost", "hop", "require_sender_proxy",
                              "authenticated_only"})
        space = r.string(data, key, "address_space", required=True) or ""
        addr_type, colon, pattern = space.partition(":")
        if space and (not colon or not _TYPE_RE.match(addr_type) or not pattern.strip()):
            r.problem(f"{key}.address_space", f"{space!r}: expected TYPE:pattern, "
                                              "e.g. \"MS:MICROSOFT/PO2/*\"")
        hop = r.string(data, key, "hop", required=True) or ""
        target = hops.get(hop)
        if hop and target is None:
            r.problem(f"{key}.hop", f"no hop named {hop!r} in [relay.hops]")
        upper = addr_type.upper()
        if isinstance(target, SmtpHopConfig) and upper and upper != "SMTP" and not target.domain:
            r.problem(f"{key}.hop", f"{upper} addresses reach SMTP hop {hop!r} encapsulated; "
                                    f"set relay.hops.{hop}.domain")
        if isinstance(target, X400HopConfig) and upper == "SMTP" and x400.gateway is None \
                and not x400.mappings:
            r.problem(f"{key}.hop", "SMTP addresses reach an X.400 hop only through "
                                    "relay.x400.gateway or relay.x400.mappings")
        routes.append(RouteConfig(
            address_space=space, type=upper, pattern=pattern.strip(), hop=hop,
            cost=r.integer(data, key, "cost", 1, 1, 100),
            require_sender_proxy=r.boolean(data, key, "require_sender_proxy", False),
            authenticated_only=r.boolean(data, key, "authenticated_only", False),
        ))
    return tuple(routes)


def _read_x400(r: _Reader, relay: Mapping[str, Any], hostname: str) -> X400Config:
    key = "relay.x400"
    data = r.table(relay.get("x400"), key)
    r.unknown(data, key, {"global_domain", "mta", "gateway", "mappings", "pickup",
                          "pickup_interval"})
    rules: list[MappingRule] = []
    raw = data.get("mappings", [])
    if not isinstance(raw, list):
        r.problem(f"{key}.mappings", "must be an array of tables ([[relay.x400.mappings]])")
        raw = []
    for i, item in enumerate(raw):
        mkey = f"{key}.mappings[{i}]"
        entry = r.table(item, mkey)
        r.unknown(entry, mkey, {"domain", "or_address", "direction"})
        domain = r.string(entry, mkey, "domain", required=True)
        prefix = r.convert(entry, mkey, "or_address", None, _or_address)
        if "or_address" not in entry:
            r.problem(f"{mkey}.or_address", "required")
        direction = r.string(entry, mkey, "direction", "both")
        if direction not in ("both", "to-x400", "to-rfc822"):
            r.problem(f"{mkey}.direction", "must be both, to-x400 or to-rfc822")
            continue
        if domain and prefix is not None:
            try:
                rules.append(MappingRule(domain, prefix, to_x400=direction != "to-rfc822",
                                         to_rfc822=direction != "to-x400"))
            except ORAddressError as exc:
                r.problem(mkey, str(exc))
    global_domain = r.convert(data, key, "global_domain", None, _or_address)
    if global_domain is not None and (global_domain.organization or global_domain.units
                                      or global_domain.surname or global_domain.dda):
        r.problem(f"{key}.global_domain", "may only hold C, ADMD and PRMD")
    return X400Config(
        global_domain=global_domain,
        mta=r.string(data, key, "mta", hostname) or hostname,
        gateway=r.convert(data, key, "gateway", None, _or_address),
        mappings=tuple(rules),
        pickup=r.path(data, key, "pickup"),
        pickup_interval=r.convert(data, key, "pickup_interval", 5.0, parse_duration),
    )


_RELAY_KEYS = {
    "hub", "listen", "hostname", "domains", "imcea_domain", "postmaster", "queue",
    "tracking_log", "max_message_size", "max_recipients", "max_hops", "max_queue_lifetime",
    "retry_initial", "retry_factor", "retry_max", "delivery_workers", "session_timeout",
    "hub_cache_ttl", "hub_timeout", "tls", "auth", "x400", "hops", "routes",
}


def load_relay_config(path: Path | str) -> RelayConfig:
    """Read and validate the ``[relay]`` table of the config file at ``path``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=str(path)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(path)) from None
    return relay_config_from_dict(doc, path)


def relay_config_from_dict(doc: Mapping[str, Any], path: Path) -> RelayConfig:
    """Validate an already parsed config document (``path`` anchors relative paths)."""
    problems: list[str] = []
    r = _Reader(problems, path.parent.resolve())
    if "relay" not in doc:
        raise ConfigError("relay: missing table ([relay])", path=str(path))
    relay = r.table(doc["relay"], "relay")
    r.unknown(relay, "relay", _RELAY_KEYS)

    hostname = r.string(relay, "relay", "hostname") or socket.getfqdn()
    domains_raw = r.get(relay, "relay", "domains", list, [], what="a list of domain names")
    domains = tuple(d.lower().strip(".") for d in domains_raw if isinstance(d, str))
    if len(domains) != len(domains_raw):
        r.problem("relay.domains", "must be a list of domain names")
    imcea_domain = (r.string(relay, "relay", "imcea_domain") or (domains[0] if domains
                                                                  else hostname)).lower()
    listen_host, listen_port = r.convert(relay, "relay", "listen", _parse_listen(DEFAULT_LISTEN),
                                         _parse_listen)
    cache_ttl = r.convert(relay, "relay", "hub_cache_ttl", 60.0, parse_duration)
    hub_timeout = r.convert(relay, "relay", "hub_timeout", 10.0, parse_duration)
    hub = _read_hub(r, doc, relay, cache_ttl, hub_timeout)

    tls = None
    if "tls" in relay:
        data = r.table(relay["tls"], "relay.tls")
        r.unknown(data, "relay.tls", {"cert", "key", "require_starttls"})
        cert = r.path(data, "relay.tls", "cert", must_exist=True)
        key = r.path(data, "relay.tls", "key", must_exist=True)
        if cert is None or key is None:
            r.problem("relay.tls", "needs both cert and key")
        else:
            tls = TlsConfig(cert, key, r.boolean(data, "relay.tls", "require_starttls", False))
    auth = None
    if "auth" in relay:
        data = r.table(relay["auth"], "relay.auth")
        r.unknown(data, "relay.auth", {"users_file", "required"})
        users = r.path(data, "relay.auth", "users_file", must_exist=True)
        if users is None:
            r.problem("relay.auth.users_file", "required")
        else:
            auth = AuthConfig(users, r.boolean(data, "relay.auth", "required", False))
        if "tls" not in relay:
            r.problem("relay.auth", "AUTH is offered only over TLS: configure [relay.tls]")

    x400 = _read_x400(r, relay, hostname)
    hops = _read_hops(r, relay)
    routes = _read_routes(r, relay, hops, x400)
    needs_domain = any(isinstance(h, X400HopConfig) for h in hops.values()) or x400.pickup
    if needs_domain and x400.global_domain is None:
        r.problem("relay.x400.global_domain", "required with an X.400 hop or pickup "
                                              "(e.g. \"c=US;a= ;p=Contoso\")")
    for hop in hops.values():
        if isinstance(hop, X400HopConfig) and x400.pickup and hop.path == x400.pickup:
            r.problem(f"relay.hops.{hop.name}.path", "must not be the pickup folder "
                                                     "(the relay would read its own output)")

    retry_initial = r.convert(relay, "relay", "retry_initial", 300.0, parse_duration)
    retry_max = r.convert(relay, "relay", "retry_max", 4000.0, parse_duration)
    if retry_initial <= 0:
        r.problem("relay.retry_initial", "must be positive")
    if retry_max < retry_initial:
        r.problem("relay.retry_max", "must not be shorter than retry_initial")
    retry_factor = r.get(relay, "relay", "retry_factor", (int, float), 2.0, what="a number")
    if retry_factor < 1:
        r.problem("relay.retry_factor", "must be at least 1")

    # Read every key even when the hub is unusable, so that one run of the
    # validation names every problem.
    values: dict[str, Any] = {
        "postmaster": r.string(relay, "relay", "postmaster") or f"postmaster@{imcea_domain}",
        "queue": r.path(relay, "relay", "queue", "var/relay/queue") or Path(),
        "tracking_log": r.path(relay, "relay", "tracking_log", "var/relay/tracking.jsonl")
        or Path(),
        "max_message_size": r.convert(relay, "relay", "max_message_size", 32 << 20, parse_size),
        "max_recipients": r.integer(relay, "relay", "max_recipients", 1000, 1),
        "max_hops": r.integer(relay, "relay", "max_hops", 50, 1),
        "max_queue_lifetime": r.convert(relay, "relay", "max_queue_lifetime", 5 * 86400.0,
                                        parse_duration),
        "delivery_workers": r.integer(relay, "relay", "delivery_workers", 4, 1, 64),
        "session_timeout": r.convert(relay, "relay", "session_timeout", 300.0, parse_duration),
    }
    if not is_mailbox(values["postmaster"]):
        r.problem("relay.postmaster", "must be an address such as postmaster@example.org")
    if not is_hostname(hostname):
        r.problem("relay.hostname", "must be a host name (letters, digits, '-', '_', '.')")
    config = None
    if hub is not None:
        config = RelayConfig(
            path=path, hub=hub, listen_host=listen_host, listen_port=listen_port,
            hostname=hostname, domains=domains, imcea_domain=imcea_domain,
            retry_initial=retry_initial, retry_factor=float(retry_factor), retry_max=retry_max,
            tls=tls, auth=auth, x400=x400, hops=hops, routes=routes, **values,
        )
    if problems:
        raise ConfigError(problems, path=str(path))
    assert config is not None
    return config
