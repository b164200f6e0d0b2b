"""``dirsync import DIRECTORY FILE``."""

from __future__ import annotations

import json
from typing import Any

import click

from dirsync.cli.commands.common import (
    directory_options,
    open_from_options,
    url_values_from,
    url_values_option,
)
from dirsync.directories.base import ApplyResult
from dirsync.directories.ldifimport import run_import
from dirsync.escapes import escape_controls
from dirsync.ldif.changes import Change


@click.command("import")
@click.argument("directory")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("--continue-on-error", is_flag=True,
              help="Report every failed record and go on (default: stop at the first).")
@click.option("--update", is_flag=True,
              help="An add of an existing entry becomes a modify of the attributes it names.")
@url_values_option
@directory_options
@click.pass_context
def import_(ctx: click.Context, directory: str, file: str, dry_run: bool,
            continue_on_error: bool, update: bool, **options: Any) -> int:
    """Apply an LDIF FILE of content records (adds) or change records (add,
    delete, modify, modrdn) to DIRECTORY.

    URL values (attr:< URL) are refused unless --allow-url-values names the
    folder their files may be read from.

    The whole file is checked first: malformed LDIF or an attribute type the
    server does not know changes nothing (exit 2). Every record the server
    refuses, whatever its result, is that record's failure, reported with
    its line, DN and result (exit 1); without --continue-on-error nothing
    after it stays applied. A lost connection stops the import; the summary
    says what was applied.
    """
    as_json = ctx.obj.json

    def show_plan(change: Change) -> None:
        if as_json:
            click.echo(json.dumps({"line": change.line, "would": change.kind,
                                   "dn": change.dn, "target": change.target_dn}))
        else:
            click.echo(escape_controls(f"would {change.describe()}  (line {change.line})"))

    def show_failure(result: ApplyResult) -> None:
        if result.error is None:
            return
        err = result.error
        if as_json:
            click.echo(json.dumps({"line": err.line, "dn": err.dn, "result": err.result,
                                   "message": err.message}))
        else:
            click.echo(escape_controls(f"{file}:{err.line}: {err.dn}: {err.result} "
                                       f"({err.message})"), err=True)

    target = open_from_options(ctx, directory, create=True, **options)
    try:
        outcome = run_import(target, file, dry_run=dry_run, continue_on_error=continue_on_error,
                             update=update, on_result=show_failure, on_plan=show_plan,
                             url_values=url_values_from(options))
    finally:
        target.close()
    if not dry_run:
        summary = {"applied": outcome.applied, "failed": len(outcome.failures),
                   "not_attempted": outcome.skipped}
        if outcome.stopped is not None:
            summary["unconfirmed"] = outcome.unconfirmed
        if as_json:
            record: dict[str, Any] = {"summary": summary}
            if outcome.stopped is not None:
                record["stopped"] = str(outcome.stopped)
            click.echo(json.dumps(record))
        else:
            text = (f"applied {outcome.applied}, failed {len(outcome.failures)}, "
                    f"not attempted {outcome.skipped}")
            if outcome.stopped is not None:
                text += f", sent without an answer {outcome.unconfirmed}"
            click.echo(text, err=True)
        if outcome.stopped is not None:
            click.echo(f"dirsync: error: the import stopped: {outcome.stopped}", err=True)
    return outcome.exit_status
