"""dirsync.addresses.values and dirsync.escapes: the syntax checks, table by table."""

from __future__ import annotations

import ldap
import ldap.dn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirsync.addresses.values import (
    Screen,
    address_problem,
    dn_problem,
    mapped_problems,
    smtp_problem,
    typed_problem,
)
from dirsync.escapes import escape_controls, line_writer


@pytest.mark.parametrize("address", [
    "ted@contoso.example", "o'neil.pat@x.example", "a+b=c@x.example", '"a b"@x.example',
    '"a\\"b"@x.example', "zoë@müller.example", "x@[192.0.2.1]", "x@[IPv6:2001:db8::1]",
    "a@b", "IMCEAEX-_O=ORG_OU=SITE@hub.example",
])
def test_smtp_addresses_rfc_5321_takes(address: str) -> None:
    assert smtp_problem(address) is None


@pytest.mark.parametrize("address", [
    "", "ted", "@x.example", "ted@", "a b@x.example", "a..b@x.example", ".a@x.example",
    "a.@x.example", "a@-x.example", "a@x-.example", "a@x..example", "smtp:ceo@example.org",
    "a@b@c", "a@x.example\n", "a@[300.1.1.1]", "a\x00@x", "x" * 65 + "@x.example",
    "a@" + "x" * 256,
])
def test_smtp_addresses_rfc_5321_refuses(address: str) -> None:
    assert smtp_problem(address) is not None


@pytest.mark.parametrize(("value", "ok"), [
    ("SMTP:ted@contoso.example", True), ("smtp:ted@contoso.example", True),
    ("X400:c=US;a= ;p=Contoso;o=Site;s=Bremer;g=Ted;", True),
    ("MS:CONTOSO/PO1/TEDB", True), ("CCMAIL:Bremer, Ted at PO1", True),
    ("SMTP:not an address", False), ("X400:;;;", False), ("MS: ", False),
    ("ted@contoso.example", False), ("SMTP:a@x.example\nsmtp:ceo@example.org", False),
])
def test_typed_addresses_are_parsed_by_their_type(value: str, ok: bool) -> None:
    assert (address_problem("proxyAddresses", value) is None) is ok
    assert (address_problem("targetAddress", value) is None) is ok


def test_other_types_need_one_line_without_controls() -> None:
    assert typed_problem("NOTES:Ted Bremer/Contoso") is None
    assert address_problem("otherMailbox", "x400$c=US;s=Bremer") is None
    assert address_problem("otherMailbox", "x400$c=US\x1b[2J") is not None
    # Text that feeds no address may be several lines.
    assert Screen().problems("cn=a", {"description": [b"anything\nat all"]}) == []


@pytest.mark.parametrize(("dn", "ok"), [
    ("", True), ("cn=a,dc=x", True), ("cn=O'Neil\\, Pat,dc=x", True), ("cn=a+uid=b,dc=x", True),
    ('ou="q,r",dc=x', True), ("cn=Zoë Müller,dc=x", True), ("cn=#04024869,dc=x", True),
    ("cn=a\x00b,dc=x", False), (";cn=x,dc=x", False), ("cn=<=x,dc=x", False),
    ("cn=#zz,dc=x", False), ("not a dn", False), ("cn=a,,dc=x", False),
    ("o=\\Fabrikam,c=US", False),   # \Fa: an escaped byte that is not UTF-8
])
def test_dns_are_parsed_in_full(dn: str, ok: bool) -> None:
    assert (dn_problem(dn) is None) is ok


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_the_dn_fast_path_never_accepts_what_str2dn_refuses(text: str) -> None:
    for dn in (text, f"cn={text}", f"cn={text},dc=x"):
        if dn_problem(dn) is None and dn:
            ldap.dn.str2dn(dn)  # raises ldap.DECODING_ERROR if the check was wrong


def test_str2dn_errors_are_what_the_property_above_catches() -> None:
    with pytest.raises(ldap.DECODING_ERROR):
        ldap.dn.str2dn("cn=<=x")


def test_a_screen_checks_what_the_mapping_reads() -> None:
    screen = Screen(read=frozenset({"email", "title", "mail", "photo"}),
                    single_line=frozenset({"email"}))
    attrs = {"Email": [b"a@x.example\nsmtp:ceo@example.org"], "Title": [b"ok"],
             "Notes": [b"\x00 not read by the mapping"], "mail": [b"a@x.example"]}
    problems = screen.problems("dirsyncAnchor=a", attrs)
    assert [p.field for p in problems] == ["Email"]
    assert screen.problems("dirsyncAnchor=a", {"Title": [b"\xff"]})[0].message.startswith(
        "not UTF-8")
    assert screen.problems("dirsyncAnchor=a", {"Title": [b"a\x00b"]})[0].message == \
        "a NUL character"
    assert screen.problems("dirsyncAnchor=a", {"mail": [b"a b"]})[0].field == "mail"
    assert screen.problems("cn=<=x", {})[0].field == "dn"
    # Binary types are not text.
    assert Screen().problems("cn=a", {"jpegPhoto": [b"\xff\xd8\x00"]}) == []


def test_mapped_addresses_are_parsed() -> None:
    assert mapped_problems({"mail": [b"a@x.example"], "cn": [b"x\ny"]}) == []
    assert mapped_problems({"proxyAddresses": [b"SMTP:a@x.example", b"SMTP:bad"]})[0].field \
        == "proxyAddresses"


@pytest.mark.parametrize(("text", "shown"), [
    ("plain Zoë", "plain Zoë"), ("a\x1b[31mred", "a\\x1b[31mred"), ("a\nb", "a\\x0ab"),
    ("\x9b", "\\x9b"), ("\u202eevil", "\\u202eevil"), ("tab\there", "tab\\x09here"),
    ("\x7f", "\\x7f"), ("line\u2028sep", "line\\u2028sep"),
])
def test_control_characters_are_escaped(text: str, shown: str) -> None:
    assert escape_controls(text) == shown


def test_a_line_writer_keeps_its_own_line_break() -> None:
    out: list[str] = []
    write = line_writer(out.append)
    write("a\x1bb\n")
    write("c\nd")
    assert out == ["a\\x1bb\n", "c\\x0ad"]


def test_an_address_with_a_bidi_override_is_refused() -> None:
    assert address_problem("mail", "ceo\u202egro.elpmaxe@x.example") is not None
    assert address_problem("mail", "zoë@müller.example") is None
