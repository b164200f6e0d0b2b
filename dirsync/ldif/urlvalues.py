"""LDIF URL values (``attr:< URL``, RFC 2849): refused unless allowed.

A URL value makes whoever wrote an LDIF file choose a file for dirsync to
read: ``file:///etc/shadow`` would end up in a diff or in the hub, and
``file:///dev/zero`` would never end. So they are refused by default. With
``--allow-url-values DIR``, a ``file:`` URL is read when it names a regular
file inside DIR (after symbolic links are followed), at most
:data:`MAX_VALUE` bytes; no other scheme is ever fetched.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

#: The largest value one URL may give (a photo or a certificate fits).
MAX_VALUE = 1 << 20

_SYSTEM = ("/dev", "/proc", "/sys")


class URLValueRefused(ValueError):
    """A URL value that is not read (the LDIF reader adds file and line)."""


@dataclass(frozen=True)
class URLValues:
    """Where ``file:`` URL values may be read from, and how much of each."""

    root: Path
    max_bytes: int = MAX_VALUE

    @classmethod
    def under(cls, folder: str | os.PathLike[str]) -> URLValues:
        root = Path(os.path.realpath(folder))
        if not root.is_dir():
            raise URLValueRefused(f"--allow-url-values: {folder} is not a folder")
        if any(str(root) == s or str(root).startswith(s + "/") for s in _SYSTEM) \
                or str(root) == "/":
            raise URLValueRefused(f"--allow-url-values: {folder}: not a system folder")
        return cls(root)

    def read(self, url: str) -> bytes:
        """The bytes of the file ``url`` names, or :class:`URLValueRefused`."""
        parsed = urlparse(url)
        if parsed.scheme.lower() != "file":
            raise URLValueRefused(f"URL value {url!r}: only file: URLs are read")
        if parsed.netloc not in ("", "localhost") or parsed.query or parsed.params:
            raise URLValueRefused(f"URL value {url!r}: not a plain local file: URL")
        path = unquote(parsed.path)
        if "\x00" in path or not path.startswith("/"):
            raise URLValueRefused(f"URL value {url!r}: not an absolute path")
        real = os.path.realpath(path)
        root = str(self.root)
        if os.path.commonpath([real, root]) != root \
                or any(real == s or real.startswith(s + "/") for s in _SYSTEM):
            raise URLValueRefused(f"URL value {url!r}: outside {root} "
                                  "(the folder of --allow-url-values)")
        # Not blocking on a FIFO; what is opened is checked, not what was named.
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise URLValueRefused(f"URL value {url!r}: cannot read it ({exc.strerror})") \
                from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise URLValueRefused(f"URL value {url!r}: not a regular file")
            if info.st_size > self.max_bytes:
                raise URLValueRefused(f"URL value {url!r}: larger than {self.max_bytes} bytes")
            with os.fdopen(fd, "rb", closefd=False) as stream:
                data = stream.read(self.max_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:
            raise URLValueRefused(f"URL value {url!r}: larger than {self.max_bytes} bytes")
        return data


def refused(url: str) -> URLValueRefused:
    return URLValueRefused(f"URL value {url!r} refused: URL values are not read unless "
                           "--allow-url-values DIR allows file: URLs under DIR")
