"""The strict path reader (RFC 5321 section 4.1.2, RFC 6531), as a pure function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dirsync.relay.paths import (
    NeedsSmtpUtf8,
    PathSyntaxError,
    check_mailbox,
    is_mailbox,
    split_path,
)


@pytest.mark.parametrize("arg, mailbox, rest", [
    ("<ted@example.org>", "ted@example.org", ""),
    ("<ted@example.org> SIZE=10 BODY=8BITMIME", "ted@example.org", "SIZE=10 BODY=8BITMIME"),
    (" <ted@example.org>", "ted@example.org", ""),            # "MAIL FROM: <...>", common
    ('<"x y"@partner.example>', '"x y"@partner.example', ""),
    ('<"a\\"b"@partner.example>', '"a\\"b"@partner.example', ""),
    ('<"a>b"@partner.example>', '"a>b"@partner.example', ""),  # '>' inside quotes
    ("<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org", ""),
    ("<@relay.example,@other.example:ted@example.org>", "ted@example.org", ""),  # source route
    ("<ted@[192.0.2.1]>", "ted@[192.0.2.1]", ""),
    ("<ted@[IPv6:2001:db8::1]>", "ted@[IPv6:2001:db8::1]", ""),
    ("<>", "", ""),
    # An IMCEA-encapsulated X.400 address: longer than RFC 5321's 64-octet
    # local part, and written by the relay itself for such senders.
    ("<IMCEAX400-c=FR+3Ba=ATLAS+3Bp=Fabrikam+3Bo=Paris+3Bs=Dupont+3Bg=Jean+3B@gw.example>",
     "IMCEAX400-c=FR+3Ba=ATLAS+3Bp=Fabrikam+3Bo=Paris+3Bs=Dupont+3Bg=Jean+3B@gw.example", ""),
])
def test_valid_paths(arg: str, mailbox: str, rest: str) -> None:
    assert split_path(arg, utf8=False, null=True) == (mailbox, rest)


@pytest.mark.parametrize("arg", [
    '<"x\rBcc: someone@elsewhere.example"@partner.example>',  # issue finding 1
    "<ted\r@example.org>",
    "<ted@example.org\n>",
    '<"a\x00b"@partner.example>',
    '<"a\tb"@partner.example>',
    "<ted@exam\x7fple.org>",
    "<dave@example.org",                                       # finding 3
    "<dave example.org>",
    "<dave>",
    "dave@example.org",                                        # no brackets
    "<<dave@example.org>>",
    "<dave@example.org>>",
    "<dave@example.org>SIZE=1",
    "<dave@@example.org>",
    "<.dave@example.org>",
    "<da..ve@example.org>",
    "<dave.@example.org>",
    "<dave@-example.org>",
    "<dave@example-.org>",
    "<dave@example..org>",
    "<dave@>",
    "<@example.org>",
    '<"unterminated@example.org>',
    "<dave@[192.0.2.999]>",
    "<dave@[IPv6:zz::1]>",
    "<" + "x" * 250 + "@example.org>",                         # path over 256
    "<x@" + ".".join(["a" * 63] * 4) + ">",                    # domain over 255
    "<x@" + "a" * 64 + ".example>",                            # label over 63
    "<postmaster>",                                            # only for RCPT
])
def test_invalid_paths(arg: str) -> None:
    with pytest.raises(PathSyntaxError):
        split_path(arg, utf8=True, null=True)


def test_postmaster_only_where_allowed() -> None:
    assert split_path("<Postmaster>", utf8=False, postmaster=True) == ("Postmaster", "")
    with pytest.raises(PathSyntaxError):
        split_path("<>", utf8=False, postmaster=True)  # the null path is a reverse-path


def test_utf8_only_with_smtputf8() -> None:
    assert split_path("<jörg@bücher.example>", utf8=True) == ("jörg@bücher.example", "")
    with pytest.raises(NeedsSmtpUtf8):
        split_path("<jörg@bücher.example>", utf8=False)
    for bad in ("<j\udcc3rg@example.org>",   # bytes that were not UTF-8
                "<j\u0085rg@example.org>",   # a C1 control (NEL)
                "<j\u2028rg@example.org>"):  # a line separator
        with pytest.raises(PathSyntaxError):
            split_path(bad, utf8=True)


def test_check_mailbox_returns_its_argument() -> None:
    text = '"x y"@partner.example'
    assert check_mailbox(text) is text
    assert not is_mailbox("dave")
    assert not is_mailbox("<dave@example.org>")


_CONTROLS = st.sampled_from([chr(c) for c in [*range(32), 127]])


@given(before=st.text(max_size=20), control=_CONTROLS, after=st.text(max_size=20))
def test_no_control_character_passes_anywhere(before: str, control: str, after: str) -> None:
    for arg in (f"<{before}{control}{after}@example.org>",
                f'<"{before}{control}{after}"@example.org>',
                f"<a@example.org> {before}{control}{after}"):
        with pytest.raises(PathSyntaxError):
            split_path(arg, utf8=True, null=True)


_ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789!#$%&'*+-/=?^_`{|}~",
                min_size=1, max_size=10)
_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")


@given(local=st.lists(_ATOM, min_size=1, max_size=4), labels=st.lists(_LABEL, min_size=1,
                                                                        max_size=4))
def test_valid_mailboxes_come_back_unchanged(local: list[str], labels: list[str]) -> None:
    mailbox = ".".join(local) + "@" + ".".join(labels)
    assert split_path(f"<{mailbox}> NOTIFY=NEVER", utf8=False) == (mailbox, "NOTIFY=NEVER")


@given(st.text(max_size=60))
def test_anything_parses_or_is_refused_cleanly(text: str) -> None:
    # Whatever comes in, the reader answers with a mailbox or PathSyntaxError.
    try:
        mailbox, _ = split_path(text, utf8=True, null=True, postmaster=True)
    except PathSyntaxError:
        return
    assert mailbox == "" or "@" not in mailbox and mailbox.lower() == "postmaster" \
        or is_mailbox(mailbox)
