"""The containers a run writes into, made by the first run when they are missing."""

from __future__ import annotations

from dirsync.directories.base import Directory
from dirsync.entry import parent_dn, rdn_values, same_dn
from dirsync.errors import ConfigError
from dirsync.ldif.changes import Change

#: Object classes of the containers dirsync creates when the import
#: container (or its parent) is missing, by naming attribute.
CONTAINER_CLASSES = {
    "ou": ["organizationalUnit"],
    "o": ["organization"],
    "dc": ["domain"],
}


# -- the hub as it is -----------------------------------------------------------


def container_adds(directory: Directory, container: str, base: str | None,
                   key: str) -> list[Change]:
    """Adds for ``container`` and each missing parent up to ``base``, top first.

    Only ou=, o= and dc= containers are made; any other missing one is a
    config error naming ``key``.
    """
    missing: list[str] = []
    dn = container
    while dn and not directory.exists(dn):
        missing.append(dn)
        if base and same_dn(dn, base):
            break
        dn = parent_dn(dn)
    changes = []
    for dn in reversed(missing):
        attr, value = first_rdn(dn)
        classes = CONTAINER_CLASSES.get(attr.lower())
        if classes is None:
            raise ConfigError(f"{key}: {dn} does not exist and dirsync creates only ou=, o= "
                              "and dc= containers; create it first")
        changes.append(Change("add", dn, attrs={"objectClass": [c.encode() for c in classes],
                                                attr: [value.encode()]}))
    return changes


def first_rdn(dn: str) -> tuple[str, str]:
    """(attribute, value) of the first RDN of ``dn``."""
    return rdn_values(dn)[0]
