"""Options shared by the commands that open a DIRECTORY argument."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from dirsync.directories import Credentials, Directory, TLSOptions, is_url, open_directory
from dirsync.errors import UsageError
from dirsync.ldif.urlvalues import URLValueRefused, URLValues


def directory_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--bind-dn, --password-file and the TLS switches for a DIRECTORY URL."""
    options = [
        click.option("--bind-dn", metavar="DN", help="Simple bind DN (or $DIRSYNC_BIND_DN)."),
        click.option("--password-file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="File holding the bind password (or $DIRSYNC_PASSWORD)."),
        click.option("--starttls", is_flag=True, help="Send StartTLS on an ldap:// URL."),
        click.option("--ca-file", metavar="FILE", type=click.Path(dir_okay=False),
                     help="CA certificates to verify the server with."),
        click.option("--no-verify", is_flag=True,
                     help="Do not verify the server certificate (not recommended)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def url_values_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--allow-url-values DIR: LDIF ``attr:< file:`` values read under DIR only."""
    return click.option(
        "--allow-url-values", "allow_url_values", metavar="DIR",
        type=click.Path(file_okay=False),
        help="Read LDIF URL values (attr:< file:///...) of files inside DIR (each at most "
             "1 MiB, regular files only). Without it, any URL value is an error.")(func)


def url_values_from(options: dict[str, Any]) -> URLValues | None:
    folder = options.get("allow_url_values")
    if not folder:
        return None
    try:
        return URLValues.under(folder)
    except URLValueRefused as exc:
        raise UsageError(str(exc)) from exc


def open_from_options(ctx: click.Context, spec: str, *, create: bool = False,
                      **options: Any) -> Directory:
    """A DIRECTORY argument: a config name, an LDAP URL, or an .ldif/.csv path."""
    if not is_url(spec) and not spec.lower().endswith((".ldif", ".csv")):
        named = _from_config(ctx, spec)
        if named is not None:
            return named
    tls = TLSOptions(ca_file=options.get("ca_file"), verify=not options.get("no_verify"),
                     starttls=bool(options.get("starttls")))
    creds = Credentials.resolve(options.get("bind_dn"), options.get("password_file"))
    return open_directory(spec, credentials=creds, tls=tls, create=create,
                          url_values=url_values_from(options))


def _from_config(ctx: click.Context, name: str) -> Directory | None:
    # A directory named in the config, when a config module and file exist.
    try:
        from dirsync.config import open_named_directory  # type: ignore[attr-defined]
    except ImportError:
        return None
    path = ctx.obj.config_path if ctx.obj else None
    if path is None or not path.exists():
        return None
    return open_named_directory(path, name)  # type: ignore[no-any-return]
