"""Routing by address space: type, wildcard pattern, cost and next hop.

Like a connector's address spaces: each route says "addresses of this type
that match this pattern go to this hop at this cost". For one address the
cheapest matching route wins; among equally cheap routes the most specific
pattern (the most characters that are not wildcards) wins, then the route
written first. A recipient may have several candidate addresses (its target
address, its primary proxy addresses, its SMTP address); the choice runs over
all of them together.

Patterns use ``*`` (any run of characters) and ``?`` (one character) and
match case-insensitively against the address's canonical value: X.400
addresses in the semicolon form (``c=US;a= ;p=Contoso;o=SiteB;*``), SMTP
addresses with a lower-case domain. An SMTP pattern without ``@`` names a
domain: ``example.org`` means ``*@example.org``, ``*.example.org`` any
subdomain, ``*`` everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dirsync.addresses.x400 import ORAddressError
from dirsync.relay.addresses import SMTP, TypedAddress
from dirsync.relay.config import RouteConfig


def _compile(addr_type: str, pattern: str) -> tuple[re.Pattern[str], int]:
    if addr_type == SMTP and "@" not in pattern and pattern != "*":
        pattern = "*@" + pattern
    specificity = sum(1 for ch in pattern if ch not in "*?")
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL), specificity


@dataclass(frozen=True)
class Route:
    """A compiled address space."""

    config: RouteConfig
    index: int
    regex: re.Pattern[str]
    specificity: int

    @property
    def hop(self) -> str:
        return self.config.hop

    @property
    def cost(self) -> int:
        return self.config.cost

    @property
    def type(self) -> str:
        return self.config.type

    def matches(self, address: TypedAddress, canonical: str) -> bool:
        return address.type == self.type and self.regex.fullmatch(canonical) is not None

    def rank(self) -> tuple[int, int, int]:
        # Lower sorts first: cheaper, then more specific, then written earlier.
        return (self.cost, -self.specificity, self.index)

    def __str__(self) -> str:
        return f"{self.config.address_space} (cost {self.cost}) -> {self.hop}"


@dataclass(frozen=True)
class Choice:
    """The route chosen for a recipient, and which of its addresses it routes."""

    route: Route
    address: TypedAddress
    candidate: int


class Router:
    """Chooses routes for addresses; pure, built once from the config."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self.routes = [Route(cfg, i, *_compile(cfg.type, cfg.pattern))
                       for i, cfg in enumerate(routes)]
        self.types = frozenset(r.type for r in self.routes)

    @staticmethod
    def canonical(address: TypedAddress) -> str | None:
        try:
            return address.canonical()
        except ORAddressError:
            return None

    def matching(self, address: TypedAddress, *, authenticated: bool = True) -> list[Route]:
        """Every route that matches, best first."""
        canonical = self.canonical(address)
        if canonical is None:
            return []
        found = [r for r in self.routes if r.matches(address, canonical)
                 and (authenticated or not r.config.authenticated_only)]
        return sorted(found, key=Route.rank)

    def best(self, address: TypedAddress, *, authenticated: bool = True) -> Route | None:
        found = self.matching(address, authenticated=authenticated)
        return found[0] if found else None

    def choose(self, candidates: Sequence[TypedAddress], *,
               authenticated: bool = True) -> Choice | None:
        """The best route over all candidate addresses (ties: the earlier candidate)."""
        best: tuple[tuple[int, int, int, int], Choice] | None = None
        for i, address in enumerate(candidates):
            route = self.best(address, authenticated=authenticated)
            if route is None:
                continue
            cost, spec, index = route.rank()
            key = (cost, spec, i, index)
            if best is None or key < best[0]:
                best = (key, Choice(route, address, i))
        return best[1] if best else None
