"""Proxy addresses, without a server."""

from __future__ import annotations

import pytest

from dirsync.addresses import proxy


@pytest.mark.parametrize(("value", "kind", "address", "is_primary"), [
    ("SMTP:ted@contoso.com", "SMTP", "ted@contoso.com", True),
    ("smtp:alias@contoso.com", "SMTP", "alias@contoso.com", False),
    ("X400:c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;", "X400",
     "c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;", True),
    ("x400:c=US;a= ;p=Contoso;o=SiteA;s=Bremer;", "X400", "c=US;a= ;p=Contoso;o=SiteA;s=Bremer;",
     False),
    ("MS:MICROSOFT/PO1/TEDB", "MS", "MICROSOFT/PO1/TEDB", True),
    ("NOTES:Ted@Exchange", "NOTES", "Ted@Exchange", True),
])
def test_parse_and_print(value: str, kind: str, address: str, is_primary: bool) -> None:
    parsed = proxy.parse(value)
    assert (parsed.type, parsed.address, parsed.primary) == (kind, address, is_primary)
    assert str(parsed) == value


@pytest.mark.parametrize("bad", ["no-colon", ":empty-type", "SMTP:", "ted@x.org:more",
                                 "9TYPE:x", "X" * 33 + ":x", "X.400:c=US;"])
def test_not_a_proxy(bad: str) -> None:
    with pytest.raises(ValueError):
        proxy.parse(bad)


def test_the_relay_reads_typed_addresses_by_the_same_rule() -> None:
    from dirsync.relay.addresses import AddressSyntaxError, parse_typed

    for good in ("SMTP:ted@contoso.com", "x400:c=US;a= ;p=Contoso;", "MS:MICROSOFT/PO1/TEDB"):
        typed = parse_typed(good)
        assert (typed.type, typed.value) == (proxy.parse(good).type, proxy.parse(good).address)
    for bad in ("ted@x.org:more", "X" * 33 + ":x", "SMTP:"):
        with pytest.raises(AddressSyntaxError):
            parse_typed(bad)


@pytest.mark.parametrize(("kind", "address", "n", "want"), [
    ("SMTP", "ted@contoso.com", 2, "ted2@contoso.com"),
    ("NOTES", "Ted Bremer@Exchange", 3, "Ted Bremer3@Exchange"),
    ("MS", "MICROSOFT/PO1/TEDB", 2, "MICROSOFT/PO1/TEDB2"),
    ("GWISE", "CONTOSO.PO1.TEDB", 2, "CONTOSO.PO1.TEDB2"),
    ("CCMAIL", "Bremer, Ted at PO1", 2, "Bremer, Ted2 at PO1"),
    ("X400", "c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;", 2,
     "c=US;a= ;p=Contoso;o=SiteA;s=Bremer2;g=Ted;"),
    ("FAX", "5550100", 2, "55501002"),
])
def test_collision_suffix_goes_on_the_mailbox_part(kind: str, address: str, n: int,
                                                   want: str) -> None:
    assert proxy.with_suffix(kind, address, n) == want


def test_assign_gives_a_primary_when_none_of_the_type_exists() -> None:
    got = proxy.assign(["SMTP:ted@contoso.com"], "MS", "MICROSOFT/PO1/TEDB", lambda a: False)
    assert got == ["SMTP:ted@contoso.com", "MS:MICROSOFT/PO1/TEDB"]


def test_assign_keeps_existing_addresses_of_the_type() -> None:
    assert proxy.assign(["ms:MICROSOFT/PO1/OLD"], "MS", "MICROSOFT/PO1/TEDB",
                        lambda a: False) is None


def test_assign_suffixes_deterministically_until_free() -> None:
    taken = {"MS:MICROSOFT/PO1/TEDB".casefold(), "MS:MICROSOFT/PO1/TEDB2".casefold()}
    got = proxy.assign([], "ms", "MICROSOFT/PO1/TEDB", lambda a: a.casefold() in taken)
    assert got == ["MS:MICROSOFT/PO1/TEDB3"]


def test_normalize_leaves_one_primary_per_type() -> None:
    assert proxy.normalize(["SMTP:a@x", "SMTP:b@x", "X400:c=US;s=A;", "smtp:c@x"]) == [
        "SMTP:a@x", "smtp:b@x", "X400:c=US;s=A;", "smtp:c@x"]
    assert proxy.primary(["smtp:a@x", "SMTP:b@x"], "smtp") == proxy.Proxy("SMTP", "b@x", True)
