"""The names exported recipients have in a foreign directory.

An exported entry is named by the mapping's ``[export.rdn]`` template
(``cn=Sam Wu``). When another entry of the same connection already holds
that name, the next one gets its qualifier when the mapping has one (its
department: ``Sam Wu (HR)``), else (or when that is taken too) a number,
as a person reading the foreign address book expects: ``Sam Wu (2)``,
``Sam Wu (3)`` ... the first that is free. An entry keeps the name it has as long as the template still makes
its value, so the numbers stay with their entries from run to run (the
state store records each entry's foreign DN; a full run reads it back from
the foreign side), whichever of the others comes or goes.

A name held by a foreign entry the connection does not own is a conflict
(:func:`dirsync.sync.plan.place_dn`), never a reason to take a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dirsync.entry import join_dn, make_rdn, normalize_dn, rdn_values

#: How many entries of one connection may share one name; the next one is a
#: conflict (a foreign name is bounded work, whatever the hub holds).
NAME_LIMIT = 1000

#: The longest qualifier that goes into a name.
QUALIFIER_LIMIT = 64

_NUMBERED = re.compile(r"^(?P<value>.*) \((?P<n>[1-9][0-9]{0,5})\)$", re.DOTALL)


def numbered(value: str, n: int) -> str:
    """The ``n``-th name for ``value``: the value itself, then ``value (2)``..."""
    return value if n == 1 else f"{value} ({n})"


@dataclass(frozen=True)
class NumberedNames:
    """A :class:`dirsync.sync.plan.Naming`: the name, then the name with the
    entry's qualifier (``[export.rdn] qualifier``, e.g. its department), then
    the name with a number.

    ``qualifiers`` (anchor -> qualifier) is filled while the hub is read.
    """

    rdn_attribute: str
    container: str
    qualifiers: Mapping[str, str] = field(default_factory=dict)
    limit: int = NAME_LIMIT

    def dn(self, value: str, n: int) -> str:
        return join_dn(make_rdn(self.rdn_attribute, numbered(value, n)), self.container)

    def qualified(self, anchor: str, value: str) -> str | None:
        qualifier = self.qualifiers.get(anchor)
        if not qualifier:
            return None
        return join_dn(make_rdn(self.rdn_attribute, f"{value} ({qualifier})"), self.container)

    def candidates(self, anchor: str, value: str) -> Iterator[str]:
        yield self.dn(value, 1)
        qualified = self.qualified(anchor, value)
        if qualified is not None:
            yield qualified
        for n in range(2, self.limit + 1):
            yield self.dn(value, n)

    def keeps(self, anchor: str, value: str, dn: str) -> bool:
        key = normalize_dn(dn)
        if key == normalize_dn(self.dn(value, 1)):
            return True
        qualified = self.qualified(anchor, value)
        if qualified is not None and key == normalize_dn(qualified):
            return True
        rdn = rdn_values(dn)
        match = _NUMBERED.match(rdn[0][1]) if len(rdn) == 1 else None
        if match is None or not 2 <= int(match["n"]) <= self.limit:
            return False
        return key == normalize_dn(self.dn(value, int(match["n"])))


def qualifier_text(text: str) -> str:
    """A qualifier as it goes into a name: one line, trimmed, at most
    QUALIFIER_LIMIT characters (a hub value cannot make a name of any size)."""
    line = " ".join(text.split())
    return line[:QUALIFIER_LIMIT].strip()
