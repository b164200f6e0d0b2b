"""Directory kinds (ldap, ad, ldif, csv) behind one interface, and how to open one.

A DIRECTORY argument on the command line is a directory name from the
config, an ``ldap://``, ``ldaps://`` or ``ldapi://`` URL (RFC 4516), or a
path to an ``.ldif`` or ``.csv`` file.

Beside the kinds: :mod:`.ldapfilter` (RFC 4515 filters evaluated in memory),
and the library parts of ``dirsync import`` (:mod:`.ldifimport`) and
``dirsync export`` (:mod:`.ldifexport`), which work on any kind.

Floor 3: imports the ground floor, :mod:`dirsync.addresses` and
:mod:`dirsync.ldif`; never a mapping, the state or the sync.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dirsync.directories.ad import ADDirectory
from dirsync.directories.base import ApplyResult, Directory, ReadOptions
from dirsync.directories.csvfile import CSVDirectory, CSVLayout
from dirsync.directories.ldap import LDAPDirectory, TLSOptions
from dirsync.directories.ldiffile import LDIFDirectory
from dirsync.errors import UsageError
from dirsync.ldif.urlvalues import URLValues

__all__ = ["ADDirectory", "ApplyResult", "CSVDirectory", "CSVLayout", "Credentials", "Directory",
           "LDAPDirectory", "LDIFDirectory", "ReadOptions", "TLSOptions", "open_directory"]

URL_SCHEMES = ("ldap://", "ldaps://", "ldapi://")


@dataclass
class Credentials:
    """A simple bind, from options or DIRSYNC_BIND_DN / DIRSYNC_PASSWORD."""

    bind_dn: str | None = None
    password: str | None = None

    @classmethod
    def resolve(cls, bind_dn: str | None = None,
                password_file: str | os.PathLike[str] | None = None) -> Credentials:
        dn = bind_dn or os.environ.get("DIRSYNC_BIND_DN") or None
        password = None
        if password_file:
            try:
                password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise UsageError(f"cannot read password file {password_file}: "
                                 f"{exc.strerror}") from exc
        elif "DIRSYNC_PASSWORD" in os.environ:
            password = os.environ["DIRSYNC_PASSWORD"]
        return cls(dn, password)


def is_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def open_directory(spec: str, *, credentials: Credentials | None = None,
                   tls: TLSOptions | None = None, create: bool = False,
                   url_values: URLValues | None = None) -> Directory:
    """Open a directory given as a URL or a file path (by its extension)."""
    if is_url(spec):
        creds = credentials or Credentials.resolve()
        return LDAPDirectory(spec, bind_dn=creds.bind_dn, password=creds.password, tls=tls)
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix == ".ldif":
        return LDIFDirectory(path, create=create, url_values=url_values)
    if suffix == ".csv":
        return CSVDirectory(path, create=create)
    raise UsageError(f"{spec!r} is not a directory: give an ldap://, ldaps:// or ldapi:// "
                     "URL, an .ldif or .csv file, or a directory name from the config")
