"""IMCEA encapsulation and one-off addresses: pure, table-style, no servers."""

from __future__ import annotations

import pytest

from dirsync.addresses.imcea import (
    EncapsulationError,
    OneOff,
    decode_imcea,
    encode_imcea,
    format_one_off,
    is_imcea,
    parse_one_off,
)


@pytest.mark.parametrize("addr_type, address, domain, encoded", [
    # The MS-OXCMAIL example the issue names.
    ("X400", "c=US;a= ;p=MS;o=PARIS;s=user;", "host.microsoft.com",
     "IMCEAX400-c=US+3Ba=+20+3Bp=MS+3Bo=PARIS+3Bs=user+3B@host.microsoft.com"),
    ("MS", "MICROSOFT/PO2/BOB", "relay.example.org", "IMCEAMS-MICROSOFT_PO2_BOB@relay.example.org"),
    ("NOTES", "Ted@Exchange", "relay.example.org", "IMCEANOTES-Ted+40Exchange@relay.example.org"),
    ("SMTP", "a.b_c@x.org", "gw.example.org", "IMCEASMTP-a+2Eb+5Fc+40x+2Eorg@gw.example.org"),
    ("ex", "/o=Org/cn=Recipients/cn=ted", "d.org", "IMCEAEX-_o=Org_cn=Recipients_cn=ted@d.org"),
    ("GWISE", "Zürich.PO", "d.org", "IMCEAGWISE-Z+C3+BCrich+2EPO@d.org"),
    ("X400", "a-b=c+d", "d.org", "IMCEAX400-a-b=c+2Bd@d.org"),
])
def test_imcea_round_trip(addr_type: str, address: str, domain: str, encoded: str) -> None:
    assert encode_imcea(addr_type, address, domain) == encoded
    decoded = decode_imcea(encoded)
    assert (decoded.addr_type, decoded.address, decoded.domain) \
        == (addr_type.upper(), address, domain)
    assert is_imcea(encoded)


def test_decoding_splits_at_the_last_at_sign() -> None:
    # An '@' left unencoded by a lenient encoder must not end the local part.
    decoded = decode_imcea("IMCEASMTP-ted@x.org@relay.example.org")
    assert decoded.address == "ted@x.org"
    assert decoded.domain == "relay.example.org"


def test_decoding_accepts_lower_case_hex_and_prefix() -> None:
    assert decode_imcea("imceaNOTES-a+2fb+2Ec@d.org").address == "a/b.c"


@pytest.mark.parametrize("address, reason", [
    ("IMCEAX400-c=US+3G@d.org", "two hex digits"),
    ("IMCEAX400-c=US+3@d.org", "two hex digits"),
    ("IMCEAX400-@d.org", "empty"),
    ("IMCEAX400@d.org", "IMCEA<TYPE>-"),
    ("IMCEA-abc@d.org", "IMCEA<TYPE>-"),
    ("IMCEAX400-abc", "no domain"),
    ("ted@example.org", "not an IMCEA address"),
    ("IMCEAX400-+FF@d.org", "not UTF-8"),
    ("IMCEAX_1-abc@d.org", "letters and digits"),
])
def test_bad_imcea_addresses(address: str, reason: str) -> None:
    with pytest.raises(EncapsulationError, match=reason):
        decode_imcea(address)


@pytest.mark.parametrize("address", ["ted@example.org", "IMCEA@x.org", "imcea-x@y"])
def test_plain_addresses_are_not_imcea(address: str) -> None:
    assert not is_imcea(address)


@pytest.mark.parametrize("args, reason", [
    (("X-400", "a", "d.org"), "letters and digits"),
    (("X400", "", "d.org"), "empty"),
    (("X400", "a", "a@b"), "not a domain"),
])
def test_bad_encapsulation_requests(args: tuple[str, str, str], reason: str) -> None:
    with pytest.raises(EncapsulationError, match=reason):
        encode_imcea(*args)


@pytest.mark.parametrize("text, one_off", [
    ("Ted Bremer[NOTES:Ted@Exchange]", OneOff("Ted Bremer", "NOTES", "Ted@Exchange")),
    ("[SMTP:ted@example.org]", OneOff("", "SMTP", "ted@example.org")),
    ("Ted[X400:c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;]",
     OneOff("Ted", "X400", "c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;")),
    ("Bob [Sales][MS:MICROSOFT/PO2/BOB]", OneOff("Bob [Sales]", "MS", "MICROSOFT/PO2/BOB")),
    ("x[smtp:a@b]", OneOff("x", "SMTP", "a@b")),
])
def test_one_off_round_trip(text: str, one_off: OneOff) -> None:
    parsed = parse_one_off(text)
    assert parsed == one_off
    assert parse_one_off(str(parsed)) == parsed
    assert format_one_off(one_off.display, one_off.addr_type, one_off.address) == str(parsed)


@pytest.mark.parametrize("text", ["Ted Bremer", "Ted[NOTES]", "Ted[:x]", "Ted[NOTES:]", "[x y:z]"])
def test_bad_one_off_addresses(text: str) -> None:
    with pytest.raises(EncapsulationError):
        parse_one_off(text)
