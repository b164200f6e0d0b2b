"""``dirsync export DIRECTORY``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from dirsync.cli.commands.common import directory_options, open_from_options, url_values_option
from dirsync.directories.base import ReadOptions
from dirsync.directories.ldifexport import export as export_entries
from dirsync.directories.memory import write_atomically
from dirsync.wording import plural


@click.command("export")
@click.argument("directory")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (default: stdout).")
@click.option("--base", metavar="DN", help="Search base (default: from the URL or config).")
@click.option("--scope", type=click.Choice(["base", "one", "sub"]), default=None,
              help="Search scope (default: sub, or the URL's).")
@click.option("--filter", "filter_", metavar="F", help="LDAP filter (RFC 4515).")
@click.option("--attrs", metavar="A,B",
              help="Attributes to export; '*' user, '+' operational (e.g. '*,+').")
@click.option("--sort", is_flag=True, help="Deterministic, diffable order of entries, "
              "attributes and values.")
@url_values_option
@directory_options
@click.pass_context
def export(ctx: click.Context, directory: str, output: str | None, base: str | None,
           scope: str | None, filter_: str | None, attrs: str | None, sort: bool,
           **options: Any) -> int:
    """Write DIRECTORY as RFC 2849 LDIF: paged and streamed, base64 for binary
    and unsafe values, long lines folded. Operational attributes only when
    asked (--attrs '*,+')."""
    source = open_from_options(ctx, directory, **options)
    read_opts = ReadOptions(base=base, scope=scope, filter=filter_,  # type: ignore[arg-type]
                            attrs=[a.strip() for a in attrs.split(",") if a.strip()] if attrs
                            else None)
    try:
        if output and output != "-":
            written: list[int] = []
            write_atomically(Path(output),
                             lambda stream: written.append(_run(source, stream, read_opts, sort)))
            count = written[0]
        else:
            count = _run(source, sys.stdout, read_opts, sort)
    finally:
        source.close()
    click.echo(f"exported {plural(count, 'entry')}", err=True)
    return 0


def _run(source: Any, stream: Any, read_opts: ReadOptions, sort: bool) -> int:
    return export_entries(source, stream, read_opts, sort=sort)
