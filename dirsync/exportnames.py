"""The names exported recipients have in a foreign directory.

An exported entry is named by the mapping's ``[export.rdn]`` template
(``cn=Sam Wu``). When another entry of the same connection already holds
that name, the next one gets a number, as a person reading the foreign
address book expects: ``Sam Wu (2)``, ``Sam Wu (3)`` ... the first that is
free. An entry keeps the name it has as long as the template still makes
its value, so the numbers stay with their entries from run to run (the
state store records each entry's foreign DN; a full run reads it back from
the foreign side), whichever of the others comes or goes.

A name held by a foreign entry the connection does not own is a conflict
(:func:`dirsync.plan.place_dn`), never a reason to take a number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from dirsync.entry import join_dn, make_rdn, normalize_dn, rdn_values

#: How many entries of one connection may share one name; the next one is a
#: conflict (a foreign name is bounded work, whatever the hub holds).
NAME_LIMIT = 1000

_NUMBERED = re.compile(r"^(?P<value>.*) \((?P<n>[1-9][0-9]{0,5})\)$", re.DOTALL)


def numbered(value: str, n: int) -> str:
    """The ``n``-th name for ``value``: the value itself, then ``value (2)``..."""
    return value if n == 1 else f"{value} ({n})"


@dataclass(frozen=True)
class NumberedNames:
    """A :class:`dirsync.plan.Naming`: the name, then the name with a number."""

    rdn_attribute: str
    container: str
    limit: int = NAME_LIMIT

    def dn(self, value: str, n: int) -> str:
        return join_dn(make_rdn(self.rdn_attribute, numbered(value, n)), self.container)

    def candidates(self, anchor: str, value: str) -> Iterator[str]:
        for n in range(1, self.limit + 1):
            yield self.dn(value, n)

    def keeps(self, anchor: str, value: str, dn: str) -> bool:
        key = normalize_dn(dn)
        if key == normalize_dn(self.dn(value, 1)):
            return True
        rdn = rdn_values(dn)
        match = _NUMBERED.match(rdn[0][1]) if len(rdn) == 1 else None
        if match is None or not 2 <= int(match["n"]) <= self.limit:
            return False
        return key == normalize_dn(self.dn(value, int(match["n"])))
