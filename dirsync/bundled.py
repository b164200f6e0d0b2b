"""Where the files dirsync ships beside its code are: the ready mappings
(``mappings/``) and the OpenLDAP schema (``schemas/``).

In the source tree (and an editable install) they sit at the top of the
repository; a wheel carries a copy inside the package, ``dirsync/bundled/``,
made by setup.py at build time. The package's own copy is looked at first,
so that a folder of the same name beside site-packages is never taken.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """The folder ``name`` (``mappings`` or ``schemas``) dirsync ships."""
    installed = _PACKAGE / "bundled" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
