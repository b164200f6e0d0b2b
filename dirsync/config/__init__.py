"""The configuration file: typed tables with defaults, checked in one pass.

``dirsync.toml`` (PRODUCT.md, "Configuration") names the state store, the
reports folder, the directories and the connections between them. Loading
it checks every table at once and raises one :class:`ConfigError` that
lists every problem with its key path (``connections[0].delete_threshold:
...``), so an administrator fixes a file in one go. Paths are relative to
the config file. Secrets never live in the file: a directory names a
``password_file`` or a ``password_env`` variable instead.

- :mod:`.model`: the typed tables, their defaults, the value parsers;
- :mod:`.checker`: the one-pass check of a whole file.

Floor 8: imports the ground floor and the floors below (addresses, ldif,
directories, mapping, state, schedule); never the relay, the sync or the
command line that read it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from dirsync.config.checker import Checker
from dirsync.config.model import (
    BUNDLED_MAPPINGS,
    DEFAULT_DELETE_THRESHOLD,
    Config,
    ConnectionConfig,
    DirectoryConfig,
    Threshold,
    bundled_mappings,
    parse_threshold,
)
from dirsync.errors import ConfigError

# What the rest of dirsync takes from here; the other names are model's.
__all__ = [
    "BUNDLED_MAPPINGS", "DEFAULT_DELETE_THRESHOLD", "Config", "ConnectionConfig",
    "DirectoryConfig", "Threshold", "bundled_mappings", "check_config", "load_config",
    "open_named_directory", "parse_threshold",
]


# -- loading ------------------------------------------------------------------

def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check ``path``; raises :class:`ConfigError` listing every problem."""
    config, problems = check_config(path)
    if problems or config is None:
        raise ConfigError(problems, path=str(path))
    return config


def check_config(path: str | os.PathLike[str]) -> tuple[Config | None, list[str]]:
    """Read and check ``path``: the config (as far as it could be read) and its problems.

    ``dirsync check`` goes on with what could be read, so that one run
    names every problem; everything else uses :func:`load_config`.
    """
    config_path = Path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [(f"no config file {config_path} (give -c PATH, set DIRSYNC_CONFIG, or "
                      "create ./dirsync.toml)")]
    except OSError as exc:
        return None, [f"cannot read {config_path}: {exc.strerror}"]
    except UnicodeDecodeError as exc:
        return None, [f"{config_path} is not UTF-8 text: {exc.reason}"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [f"not valid TOML: {exc}"]
    checker = Checker(config_path.resolve().parent)
    config = checker.config(config_path, data)
    return config, checker.problems


def open_named_directory(path: str | os.PathLike[str], name: str) -> Any:
    """The directory called ``name`` in the config at ``path``, opened; None if none is."""
    config = load_config(path)
    directory = config.directories.get(name)
    return directory.open() if directory is not None else None
