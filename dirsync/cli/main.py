"""The dirsync command line: a thin layer over the library.

Each command parses its options and makes one library call. Library errors
(:class:`dirsync.errors.DirsyncError`) become one line on stderr and the
documented exit status: 0 done, 1 done with failed entries, 2 bad usage,
config or input, 3 stopped by a safety limit.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from dirsync import __version__
from dirsync.errors import DirsyncError
from dirsync.escapes import escape_controls


@dataclass
class Context:
    """What every command gets from the global options (``ctx.obj``)."""

    config_option: str | None
    json: bool
    log_format: str

    @property
    def config_path(self) -> Path:
        """-c PATH, else $DIRSYNC_CONFIG, else ./dirsync.toml (PRODUCT.md)."""
        chosen = self.config_option or os.environ.get("DIRSYNC_CONFIG") or "dirsync.toml"
        return Path(chosen)

    def __getitem__(self, key: str) -> Any:
        # Mapping-style access for command groups that live in subpackages.
        return getattr(self, key)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        import json

        event: dict[str, Any] = {
            # ISO 8601 with milliseconds and the offset: 2026-12-06T14:36:18.123+00:00
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update(getattr(record, "fields", {}))
        return json.dumps(event, default=str)


class _TextFormatter(logging.Formatter):
    """Log lines for a terminal: control characters of foreign values escaped."""

    def format(self, record: logging.LogRecord) -> str:
        # The record's message is swapped for its escaped text while it is
        # formatted, then put back (a copy of the record per line, as this
        # did before, cost as much as the rest of logging a change).
        saved = record.msg, record.args
        record.msg, record.args = escape_controls(record.getMessage()), None
        try:
            return super().format(record)
        finally:
            record.msg, record.args = saved


def _setup_logging(fmt: str, verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("dirsync")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    # The end of each run (dirsync.sync.runlog) is logged at the default level too.
    logging.getLogger("dirsync.run").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _json_after(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        obj = ctx.find_object(Context)
        if obj is not None:
            obj.json = True


def _accept_json(command: click.Command) -> click.Command:
    """Let ``--json`` follow the command name too (``dirsync relay route ADDR --json``).

    The global ``--json`` is read before the command name; people type it
    at the end as well, so every command (and every command of a group)
    takes it there and sets the same flag.
    """
    if not any("--json" in getattr(p, "opts", ()) for p in command.params):
        command.params.append(click.Option(
            ["--json"], is_flag=True, expose_value=False, callback=_json_after,
            help="Print machine-readable JSON (same as the global --json)."))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_json(sub)
    return command


class _LazyGroup(click.Group):
    """The commands of ``dirsync.cli.commands.COMMANDS``, each imported when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from dirsync.cli.commands import COMMANDS

        return sorted({name for name, _, _ in COMMANDS} | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        import importlib

        from dirsync.cli.commands import COMMANDS

        if cmd_name not in self.commands:
            for name, module_name, attr in COMMANDS:
                if name == cmd_name:
                    command = getattr(importlib.import_module(module_name), attr)
                    self.add_command(_accept_json(command), name)
                    break
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dirsync")
@click.option("-c", "--config", "config", metavar="CONFIG",
              help="Config file (default: $DIRSYNC_CONFIG, else ./dirsync.toml).")
@click.option("--json", "json_", is_flag=True, help="Print machine-readable JSON.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the log lines on stderr.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config: str | None, json_: bool, log_format: str,
        verbose: int) -> None:
    """Keep an LDAP hub and foreign address books in step."""
    _setup_logging(log_format, verbose)
    ctx.obj = Context(config_option=config, json=json_, log_format=log_format)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (testable in-process)."""
    try:
        # Commands return their exit status (0 done, 1 some entries failed).
        status = cli.main(args=argv, prog_name="dirsync", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2
    except DirsyncError as exc:
        click.echo(f"dirsync: error: {escape_controls(str(exc))}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        return exc.exit_status
    except BrokenPipeError:
        return 0
    return status if isinstance(status, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
