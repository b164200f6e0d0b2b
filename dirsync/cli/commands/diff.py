"""``dirsync diff OLD NEW``."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from dirsync.cli.commands.common import (
    directory_options,
    open_from_options,
    url_values_from,
    url_values_option,
)
from dirsync.entry import Entry
from dirsync.errors import UsageError
from dirsync.ldif.diff import SINKS, ChangeSink, DiffOptions, Summary, ldif_entries
from dirsync.ldif.diff import diff as run_diff
from dirsync.ldif.diffhtml import HTMLSink
from dirsync.schema import ATTR_NAME, DEFAULT_DIFF_IGNORE


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(("ldap://", "ldaps://", "ldapi://"))


def _entries(ctx: click.Context, spec: str, options: dict[str, Any]) -> Iterator[Entry]:
    """An LDIF file is streamed as it is; anything else (an LDAP URL, a CSV
    file, a directory named in the config) is read through its directory."""
    lower = spec.lower()
    if not _is_url(spec) and not lower.endswith(".csv") and (
            lower.endswith(".ldif") or Path(spec).is_file()):
        if not Path(spec).is_file():
            raise UsageError(f"{spec}: no such file")
        yield from ldif_entries(spec, url_values=url_values_from(options))
        return
    directory = open_from_options(ctx, spec, **options)
    try:
        yield from directory.read()
    finally:
        directory.close()


def _ignore_list(values: tuple[str, ...], defaults: bool) -> frozenset[str]:
    names = {n.strip().lower() for v in values for n in v.split(",") if n.strip()}
    bad = sorted(n for n in names if not ATTR_NAME.match(n))
    if bad:
        raise UsageError(f"--ignore: not an attribute name: {', '.join(bad)}")
    return frozenset(names | (DEFAULT_DIFF_IGNORE if defaults else set()))


def _parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t) << 20
    except ValueError as exc:
        raise UsageError(f"--sort-memory: not a size: {text!r} (e.g. 64M)") from exc


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--format", "fmt", type=click.Choice(sorted([*SINKS, "html"])), default=None,
              help="ldif: change records for ldapmodify (default); json: one object per "
                   "change per line; text: a summary for people; html: a page for a "
                   "browser, the changes by kind with their values before and after.")
@click.option("-o", "--output", metavar="FILE",
              help="Write to FILE (default: stdout); written whole or not at all.")
@click.option("--key", metavar="ATTR", default=None,
              help="Attribute that identifies an entry across renames (e.g. uid, "
                   "employeeNumber, entryUUID). Default: the DN, no rename detection.")
@click.option("--ignore", metavar="ATTR", multiple=True,
              help="Attribute never compared nor written (repeat, or comma-separate); "
                   "added to the operational attributes ignored by default.")
@click.option("--no-default-ignore", is_flag=True,
              help="Compare the operational attributes (timestamps, CSNs) too.")
@click.option("--exit-code", is_flag=True,
              help="Exit 1 when the inputs differ (like git diff --exit-code).")
@click.option("--sort-memory", metavar="SIZE", default="64M", show_default=True,
              help="Memory per sorted run when an input needs sorting; more runs spill "
                   "to the temp folder ($TMPDIR).")
@url_values_option
@directory_options
@click.pass_context
def diff(ctx: click.Context, old: str, new: str, fmt: str | None, output: str | None,
         key: str | None, ignore: tuple[str, ...], no_default_ignore: bool, exit_code: bool,
         sort_memory: str, **options: Any) -> int:
    """Write the changes that turn OLD into NEW.

    OLD and NEW are LDIF files (or an LDAP URL for a live directory). The
    default output, applied with ldapmodify to a server holding OLD, leaves
    exactly NEW: adds parents first, renames (with --key), modifies by
    matching rule, deletes children first. Exit 0 whether or not they
    differ, unless --exit-code."""
    if key is not None and not ATTR_NAME.match(key):
        raise UsageError(f"--key: not an attribute name: {key!r}")
    wants_json = bool(ctx.obj is not None and getattr(ctx.obj, "json", False))
    fmt = fmt or ("json" if wants_json else "ldif")
    opts = DiffOptions(key=key, ignore=_ignore_list(ignore, not no_default_ignore),
                       run_bytes=_parse_size(sort_memory))
    old_entries, new_entries = _entries(ctx, old, options), _entries(ctx, new, options)

    def make_sink(stream: IO[str]) -> ChangeSink:
        if fmt == "html":
            return HTMLSink(stream, old=old, new=new, key=key, ignore=opts.ignore,
                            tmpdir=opts.tmpdir)
        return SINKS[fmt](stream)

    summary: Summary
    if output and output != "-":
        summary = _to_file(Path(output), make_sink, old_entries, new_entries, old, new, opts)
    else:
        stream = sys.stdout
        summary = run_diff(old_entries, new_entries, make_sink(stream),
                           old_name=old, new_name=new, options=opts)
        stream.flush()
    if fmt != "text":
        unsorted = list(dict.fromkeys(summary.sorted_inputs))
        sorted_note = f" (sorted on disk: {', '.join(unsorted)})" if unsorted else ""
        click.echo(f"diff: {summary.describe()}{sorted_note}", err=True)
    return 1 if exit_code and summary.changes else 0


def _to_file(path: Path, make_sink: Callable[[IO[str]], ChangeSink], old_entries: Iterator[Entry], new_entries: Iterator[Entry],
             old: str, new: str, opts: DiffOptions) -> Summary:
    # Through a temp file next to the target, renamed over it at the end:
    # an error leaves no output (nor half of one) behind.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as stream:
            summary = run_diff(old_entries, new_entries, make_sink(stream),
                               old_name=old, new_name=new, options=opts)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return summary
