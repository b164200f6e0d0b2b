"""O/R address parsing, printing and the RFC 2156 mapping: pure, table-style, no servers."""

from __future__ import annotations

import pytest

from dirsync.addresses.x400 import (
    MappingRule,
    MappingTables,
    ORAddress,
    ORAddressError,
    decode_printable,
    encode_printable,
    parse_or_address,
    rfc822_to_x400,
    x400_to_rfc822,
)
from dirsync.errors import InputError

TED = ORAddress(country="US", admd=" ", prmd="Contoso", organization="SiteA",
                surname="Bremer", given="Ted")
GATEWAY = parse_or_address("O=gateway;P=abc;C=gb")


@pytest.mark.parametrize("text", [
    "/G=Ted/S=Bremer/O=SiteA/PRMD=Contoso/ADMD= /C=US/",
    "c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;",
    "G=Ted; S=Bremer; O=SiteA; P=Contoso; A= ; C=US",
    # Single keys in any order, any case, with or without the trailing separator.
    "/C=US/ADMD= /PRMD=Contoso/O=SiteA/S=Bremer/G=Ted/",
    "g=Ted;s=Bremer;o=SiteA;p=Contoso;a= ;c=US",
    "S=Bremer;ADMD= ;G=Ted;C=US;PRMD=Contoso;O=SiteA;",
    "  /c=US/admd= /prmd=Contoso/o=SiteA/s=Bremer/g=Ted/  ",
])
def test_every_form_and_order_parses_to_the_same_address(text: str) -> None:
    assert parse_or_address(text) == TED


@pytest.mark.parametrize("printer, expected", [
    ("to_std", "/G=Ted/S=Bremer/O=SiteA/PRMD=Contoso/ADMD= /C=US/"),
    ("to_semicolon", "c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;"),
    ("to_rfc1685", "G=Ted; S=Bremer; O=SiteA; P=Contoso; A= ; C=US"),
])
def test_printers(printer: str, expected: str) -> None:
    assert getattr(TED, printer)() == expected
    assert parse_or_address(expected) == TED


@pytest.mark.parametrize("text, units", [
    ("/S=x/OU=Sales/OU=West/O=Org/C=US/", ("Sales", "West")),
    ("c=US;o=Org;ou=West;ou=Sales;s=x;", ("West", "Sales")),
    ("/S=x/OU2=West/OU1=Sales/O=Org/C=US/", ("Sales", "West")),
    ("C=US; O=Org; OU=a; OU=b; OU=c; OU=d; S=x", ("a", "b", "c", "d")),
])
def test_organizational_unit_order_is_kept(text: str, units: tuple[str, ...]) -> None:
    addr = parse_or_address(text)
    assert addr.units == units
    for printer in (addr.to_std, addr.to_semicolon, addr.to_rfc1685):
        assert parse_or_address(printer()).units == units


@pytest.mark.parametrize("value", ["a/b", "x=y", "cost $5", "semi;colon", "$/=;"])
def test_dollar_quoting_round_trips(value: str) -> None:
    addr = ORAddress(country="US", admd=" ", organization=value, surname="S")
    for printer in (addr.to_std, addr.to_semicolon, addr.to_rfc1685):
        assert parse_or_address(printer()) == addr


def test_dollar_quoting_in_the_slash_form() -> None:
    addr = ORAddress(country="US", organization="a/b=c$d")
    assert addr.to_std() == "/O=a$/b$=c$$d/C=US/"
    assert parse_or_address("/O=a$/b$=c$$d/C=US/").organization == "a/b=c$d"


@pytest.mark.parametrize("text, dda", [
    ("DDA:RFC-822=fred(a)widget.co.uk; O=gateway; P=abc; C=gb", ("RFC-822", "fred(a)widget.co.uk")),
    ("/RFC-822=fred(a)widget.co.uk/O=gateway/PRMD=abc/C=gb/", ("RFC-822", "fred(a)widget.co.uk")),
    ("/DD.MS=MICROSOFT$/PO1$/TEDB/O=gateway/C=gb/", ("MS", "MICROSOFT/PO1/TEDB")),
    ("c=gb;o=gateway;dda:smtp=a(a)b;", ("SMTP", "a(a)b")),
])
def test_domain_defined_attributes(text: str, dda: tuple[str, str]) -> None:
    addr = parse_or_address(text)
    assert addr.dda == (dda,)
    assert parse_or_address(addr.to_std()) == addr
    assert parse_or_address(addr.to_semicolon()) == addr


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("/C=US/C=GB/", "twice"),
    ("c=US;x=1;", "unknown attribute"),
    ("c=US;novalue;", "no '='"),
    ("c=US;=x;", "no key"),
    ("c=US;o=;", "no value"),
    ("c=US;o=a$", "quotes nothing"),
    ("C=US;OU=1;OU=2;OU=3;OU=4;OU=5", "more than 4"),
    ("C=US;OU2=x", "gap"),
    ("C=US;OU1=x;OU1=y", "twice"),
    ("C=US;O=a\tb", "control character"),
])
def test_bad_addresses_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ORAddressError, match=reason):
        parse_or_address(text)


def test_address_errors_are_input_errors() -> None:
    # The relay reports them as bad address syntax; the CLI exits 2.
    assert issubclass(ORAddressError, InputError)


def test_comparison_ignores_case_and_blank_admd() -> None:
    a = parse_or_address("c=us;a= ;p=CONTOSO;o=sitea;s=bremer;g=ted;")
    assert a != TED and a.same_as(TED)
    assert parse_or_address("c=US;p=Contoso;o=SiteA;s=Bremer;g=Ted").same_as(TED)


# -- printable strings (RFC 2156 section 3.4) --------------------------------

@pytest.mark.parametrize("ascii_text, printable", [
    ('"First Last"@example.com', "(q)First Last(q)(a)example.com"),
    ("fred@widget.co.uk", "fred(a)widget.co.uk"),
    ("a%b!c_d(e)", "a(p)b(b)c(u)d(l)e(r)"),
    ("x#y&z", "x(035)y(038)z"),
    ("plain text, ok?", "plain text, ok?"),
    ("{~}", "(123)(126)(125)"),
])
def test_printable_string_escapes(ascii_text: str, printable: str) -> None:
    assert encode_printable(ascii_text) == printable
    assert decode_printable(printable) == ascii_text


def test_printable_decoding_is_case_insensitive_and_lenient() -> None:
    assert decode_printable("a(A)b(Q)") == 'a@b"'
    assert decode_printable("(x)(12)") == "(x)(12)"


def test_non_ascii_has_no_printable_form() -> None:
    with pytest.raises(ORAddressError, match="no printable-string form"):
        encode_printable("jürgen@example.com")


# -- RFC 2156 section 4.3 mapping --------------------------------------------

UK = MappingRule("ac.uk", parse_or_address("C=gb; A=gold 400; P=uk.ac"))
UCL = MappingRule("ucl.ac.uk", parse_or_address("C=gb; A=gold 400; P=uk.ac; O=University College"))
CONTOSO = MappingRule("contoso.com", parse_or_address("c=US;a= ;p=Contoso"))
TABLES = MappingTables(rules=(UK, UCL, CONTOSO), gateway=GATEWAY)


def test_rfc1685_gateway_vector() -> None:
    # RFC 1685 F.3.2.3: a domain no table knows travels as DDA RFC-822 at the gateway.
    addr = rfc822_to_x400("fred@widget.co.uk", MappingTables(gateway=GATEWAY))
    assert addr.to_rfc1685() == "DDA:RFC-822=fred(a)widget.co.uk; O=gateway; P=abc; C=gb"
    assert x400_to_rfc822(addr, MappingTables(gateway=GATEWAY)) == "fred@widget.co.uk"


def test_quoted_local_part_through_the_gateway() -> None:
    addr = rfc822_to_x400('"First Last"@example.com', TABLES)
    assert addr.dda_value("RFC-822") == "(q)First Last(q)(a)example.com"
    assert x400_to_rfc822(addr, TABLES) == '"First Last"@example.com'


@pytest.mark.parametrize("rfc822, std", [
    ("Steve.Kille@cs.ac.uk", "/G=Steve/S=Kille/O=cs/PRMD=uk.ac/ADMD=gold 400/C=gb/"),
    ("S.Kille@cs.sub.ac.uk", "/I=S/S=Kille/OU=cs/O=sub/PRMD=uk.ac/ADMD=gold 400/C=gb/"),
    ("John.R.S.Smith@contoso.com", "/G=John/I=RS/S=Smith/PRMD=Contoso/ADMD= /C=US/"),
    # Longest match: ucl.ac.uk wins over ac.uk and supplies the organization.
    ("Ted.Bremer@cs.ucl.ac.uk",
     "/G=Ted/S=Bremer/OU=cs/O=University College/PRMD=uk.ac/ADMD=gold 400/C=gb/"),
    # A surname alone is a personal name too.
    ("kille@contoso.com", "/S=kille/PRMD=Contoso/ADMD= /C=US/"),
])
def test_rfc822_to_x400_by_table(rfc822: str, std: str) -> None:
    addr = rfc822_to_x400(rfc822, TABLES)
    assert addr.to_std() == std
    assert x400_to_rfc822(addr, TABLES) == rfc822


@pytest.mark.parametrize("rfc822", [
    "first_last@contoso.com",       # '_' is not printable: not a personal name
    '"First Last"@contoso.com',     # quoted local part
    "a..b@contoso.com",             # empty component
    "x@a.b.c.d.e.f.contoso.com",    # more labels than O and four OUs
])
def test_local_parts_a_table_cannot_express_go_to_the_gateway(rfc822: str) -> None:
    addr = rfc822_to_x400(rfc822, TABLES)
    assert addr.without_dda().same_as(GATEWAY)
    assert x400_to_rfc822(addr, TABLES) == rfc822


def test_table_direction_is_honoured() -> None:
    one_way = MappingRule("contoso.com", parse_or_address("c=US;a= ;p=Contoso"), to_x400=False)
    tables = MappingTables(rules=(one_way,), gateway=GATEWAY)
    assert rfc822_to_x400("Ted.Bremer@contoso.com", tables).dda
    assert x400_to_rfc822(parse_or_address("c=US;a= ;p=Contoso;s=Bremer;g=Ted"), tables) \
        == "Ted.Bremer@contoso.com"


@pytest.mark.parametrize("address, reason", [
    ("jürgen@example.com", "printable-string"),
    ("x" * 120 + "@example.com", "longer than"),
    ("no-at-sign", "not an RFC 822 address"),
])
def test_unmappable_rfc822_addresses(address: str, reason: str) -> None:
    with pytest.raises(ORAddressError, match=reason):
        rfc822_to_x400(address, TABLES)


def test_no_table_and_no_gateway_is_unmappable() -> None:
    with pytest.raises(ORAddressError, match="no gateway"):
        rfc822_to_x400("fred@widget.co.uk", MappingTables())


@pytest.mark.parametrize("text", [
    "c=US;a= ;p=Other;s=Bremer;g=Ted;",            # no table for this PRMD
    "c=US;a= ;p=Contoso;cn=Ted Bremer;",          # common name only
    "c=US;a= ;p=Contoso;s=Bremer;q=Jr;",          # generation qualifier
    "DDA:RFC-822=fred(a)x.org; O=elsewhere; C=gb",  # RFC-822 DDA at someone else's gateway
])
def test_x400_addresses_without_a_mapping(text: str) -> None:
    assert x400_to_rfc822(parse_or_address(text), TABLES) is None


def test_mapping_rule_prefix_may_only_hold_hierarchy() -> None:
    with pytest.raises(ORAddressError, match="may only hold"):
        MappingRule("x.org", parse_or_address("c=US;s=Bremer"))
    with pytest.raises(ORAddressError, match="not a domain"):
        MappingRule("bad domain", parse_or_address("c=US"))


def test_global_domain_print() -> None:
    assert TED.global_domain() == "/C=US/ADMD= /PRMD=Contoso/"
