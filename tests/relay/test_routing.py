"""Address spaces: matching, cost, specificity; pure, no servers."""

from __future__ import annotations

import pytest

from dirsync.relay.addresses import TypedAddress, parse_any
from dirsync.relay.config import RouteConfig
from dirsync.relay.routing import Router


def route(space: str, hop: str, cost: int = 1, **kw: bool) -> RouteConfig:
    kind, _, pattern = space.partition(":")
    return RouteConfig(space, kind.upper(), pattern, hop, cost, **kw)


ROUTER = Router([
    route("MS:MICROSOFT/PO2/*", "po2"),
    route("MS:MICROSOFT/*", "ms", cost=1),
    route("MS:*", "any-ms", cost=1),
    route("X400:c=US;a= ;p=Contoso;o=SiteB;*", "siteb"),
    route("X400:c=US;a= ;p=Contoso;*", "contoso", cost=2),
    route("SMTP:example.org", "internal"),
    route("SMTP:*.example.org", "subdomains"),
    route("SMTP:*", "smarthost", cost=50),
    route("NOTES:*@Acme", "notes", cost=3),
    route("NOTES:*", "notes-cheap", cost=1),
    route("GWISE:CORP.PO?.*", "gw"),
])


@pytest.mark.parametrize("address, hop", [
    ("MS:MICROSOFT/PO2/BOB", "po2"),                       # most specific at equal cost
    ("MS:microsoft/po2/bob", "po2"),                       # case-insensitive
    ("MS:MICROSOFT/PO3/BOB", "ms"),
    ("MS:OTHER/PO1/X", "any-ms"),
    ("X400:c=US;a= ;p=Contoso;o=SiteB;s=Smith;g=Carol;", "siteb"),
    # Any textual form is compared in the canonical semicolon form.
    ("X400:/G=Carol/S=Smith/O=SiteB/PRMD=Contoso/ADMD= /C=US/", "siteb"),
    ("X400:G=Carol; S=Smith; O=SiteC; P=Contoso; A= ; C=US", "contoso"),
    ("SMTP:ted@example.org", "internal"),
    ("SMTP:ted@EXAMPLE.ORG", "internal"),
    ("SMTP:ted@mail.example.org", "subdomains"),
    ("SMTP:ted@example.com", "smarthost"),
    ("NOTES:Dave@Acme", "notes-cheap"),                    # cheaper beats more specific
    ("GWISE:CORP.PO1.ann", "gw"),
])
def test_best_route(address: str, hop: str) -> None:
    best = ROUTER.best(parse_any(address))
    assert best is not None and best.hop == hop


@pytest.mark.parametrize("address", [
    "GWISE:CORP.PO10.ann",      # '?' is one character
    "CCMAIL:someone at PO",     # a type nobody routes
    "X400:not an O/R address",  # unparseable never matches
])
def test_no_route(address: str) -> None:
    assert ROUTER.best(parse_any(address)) is None


def test_ties_go_to_the_route_written_first() -> None:
    router = Router([route("MS:A/*", "first"), route("MS:A/*", "second")])
    best = router.best(TypedAddress("MS", "A/B"))
    assert best is not None and best.hop == "first"


def test_choose_over_candidates() -> None:
    candidates = [TypedAddress("NOTES", "Dave@Acme"), TypedAddress("SMTP", "dave@example.com")]
    choice = ROUTER.choose(candidates)
    assert choice is not None
    assert (choice.route.hop, choice.address, choice.candidate) \
        == ("notes-cheap", candidates[0], 0)
    # Equal cost and specificity: the earlier candidate wins.
    router = Router([route("MS:*", "ms"), route("SMTP:*", "smtp")])
    choice = router.choose([TypedAddress("SMTP", "a@b"), TypedAddress("MS", "X/Y")])
    assert choice is not None and choice.route.hop == "smtp"
    assert ROUTER.choose([TypedAddress("CCMAIL", "x")]) is None


def test_authenticated_only_routes() -> None:
    router = Router([route("SMTP:*", "world", authenticated_only=True)])
    address = TypedAddress("SMTP", "a@b.c")
    assert router.best(address, authenticated=False) is None
    best = router.best(address, authenticated=True)
    assert best is not None and best.hop == "world"


def test_matching_lists_every_route_best_first() -> None:
    hops = [r.hop for r in ROUTER.matching(parse_any("MS:MICROSOFT/PO2/BOB"))]
    assert hops == ["po2", "ms", "any-ms"]
