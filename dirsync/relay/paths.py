"""The one strict reader of SMTP paths and mailboxes (RFC 5321 section 4.1.2, RFC 6531).

Every address that enters the relay (the SMTP front's MAIL and RCPT, the
pickup's translated addresses, the hub's ``mail`` values on their way to a
hop, the addresses a report is built from) passes :func:`check_mailbox` or
:func:`split_path`, and what leaves the relay is the very string that passed.
A lenient reader that "repairs" an address is how a relay ends up delivering
to an address other than the one it checked, so nothing here repairs:

* CR, LF, NUL and every other control character (C0, DEL, C1) are refused
  anywhere, inside a quoted string too;
* a path is ``<`` [source route ``:``] mailbox ``>``: no missing bracket, no
  space outside quotes, nothing but `` SP parameters`` after the ``>``;
* a mailbox has a local part (dot-string or quoted string) and a domain
  (LDH labels or an address literal, at most 255 octets); the whole path is
  at most 256 octets. The local part has no limit of its own below that:
  RFC 5321 section 4.5.3.1.1 names 64 octets, but encapsulated foreign
  addresses (IMCEA, RFC 2156 forms), which this relay itself writes, are
  often longer, and section 4.5.3.1 asks not to refuse what can be handled;
* the only mailbox without a domain is ``postmaster`` (RCPT only);
* UTF-8 (RFC 6531) is read only where the caller allows it (the SMTPUTF8
  parameter); bytes that are not UTF-8 are refused.

A source route (``<@a.example,@b.example:user@c.example>``) is read and
dropped, as RFC 5321 section 4.1.1.3 asks.
"""

from __future__ import annotations

import re

from dirsync.addresses.mailbox import SAFE_UTF8, grammar, is_address_literal
from dirsync.relay.addresses import AddressSyntaxError

MAX_DOMAIN = 255
MAX_PATH = 256


def _grammar(utf8: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    # Non-ASCII only for SMTPUTF8, and never a C1 control, a surrogate (bytes
    # that were not UTF-8 arrive as lone surrogates) or a line separator.
    mailbox = grammar(SAFE_UTF8 if utf8 else "")
    route = rf"@{mailbox.domain}(?:,@{mailbox.domain})*:"
    path = rf"<(?:{route})?(?P<mailbox>{mailbox.mailbox})>"
    return mailbox.compiled, re.compile(path)


_ASCII = _grammar(False)
_UTF8 = _grammar(True)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_POSTMASTER = re.compile(r"<postmaster>", re.IGNORECASE)


class PathSyntaxError(AddressSyntaxError):
    """An SMTP path or mailbox that breaks RFC 5321 (or RFC 6531) syntax."""


class NeedsSmtpUtf8(PathSyntaxError):
    """A valid RFC 6531 address sent without the SMTPUTF8 parameter."""


def _check(match: re.Match[str] | None, text: str) -> str:
    if match is None:
        raise PathSyntaxError(f"{text!r} is not a valid mailbox")
    domain = match.group("domain")
    if len(domain.encode()) > MAX_DOMAIN:
        raise PathSyntaxError(f"{text!r}: the domain is longer than {MAX_DOMAIN} octets")
    if domain.startswith("[") and not is_address_literal(domain):
        raise PathSyntaxError(f"{text!r}: {domain} is not an address literal")
    if not domain.startswith("[") and any(len(label.encode()) > 63
                                          for label in domain.split(".")):
        raise PathSyntaxError(f"{text!r}: a domain label is longer than 63 octets")
    return match.group("mailbox") if "mailbox" in match.groupdict() else match.group(0)


def _no_controls(text: str) -> None:
    bad = _CONTROL.search(text)
    if bad is not None:
        raise PathSyntaxError(f"{text!r}: control character {bad.group(0)!r} in an address")


def check_mailbox(text: str, *, utf8: bool = True) -> str:
    """``text`` itself if it is an RFC 5321 Mailbox (``local@domain``); else raise.

    ``utf8`` allows RFC 6531 addresses. The result is the argument unchanged:
    a caller may hand it on byte for byte.
    """
    _no_controls(text)
    mailbox_re = (_UTF8 if utf8 else _ASCII)[0]
    match = mailbox_re.fullmatch(text)
    if len(text.encode("utf-8", errors="surrogateescape")) > MAX_PATH - 2:
        raise PathSyntaxError(f"{text[:40]!r}...: longer than {MAX_PATH} octets")
    return _check(match, text)


def is_mailbox(text: str, *, utf8: bool = True) -> bool:
    try:
        check_mailbox(text, utf8=utf8)
    except PathSyntaxError:
        return False
    return True


_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[\x21-\x5a\x5e-\x7e]+\]")


def is_hostname(name: str) -> bool:
    """A host name (or address literal) fit for HELO and a ``Received:`` field.

    Looser than a mail domain (an underscore, common in host names, is
    allowed) but never a space, a control character or anything that would
    end the field or the word.
    """
    return len(name) <= 255 and _HOSTNAME.fullmatch(name) is not None


def split_path(arg: str, *, utf8: bool, null: bool = False,
               postmaster: bool = False) -> tuple[str, str]:
    """The mailbox and the parameter text of a MAIL FROM/RCPT TO argument.

    ``arg`` is what follows ``FROM:`` or ``TO:``. ``null`` allows the null
    reverse-path ``<>`` (returned as ``""``), ``postmaster`` a bare
    ``<Postmaster>`` (returned as written). Raises :class:`PathSyntaxError`.
    """
    _no_controls(arg)
    text = arg.lstrip(" ")
    if not text.startswith("<"):
        raise PathSyntaxError(f"{arg!r}: a path starts with '<'")
    end = _path_end(text)
    if end < 0:
        raise PathSyntaxError(f"{arg!r}: no closing '>'")
    path, rest = text[:end + 1], text[end + 1:]
    if rest and not rest.startswith(" "):
        raise PathSyntaxError(f"{arg!r}: parameters must follow the path after a space")
    if len(path.encode("utf-8", errors="surrogateescape")) > MAX_PATH:
        raise PathSyntaxError(f"{path[:40]!r}...: longer than {MAX_PATH} octets")
    rest = rest.strip(" ")
    if path == "<>":
        if not null:
            raise PathSyntaxError("the null path <> is only a reverse-path")
        return "", rest
    if postmaster and _POSTMASTER.fullmatch(path):
        return path[1:-1], rest
    path_re = (_UTF8 if utf8 else _ASCII)[1]
    match = path_re.fullmatch(path)
    if match is None and not utf8 and _UTF8[1].fullmatch(path):
        raise NeedsSmtpUtf8(f"{path!r}: a UTF-8 address needs the SMTPUTF8 parameter")
    return _check(match, path), rest


def _path_end(text: str) -> int:
    """The index of the ``>`` that closes the path, skipping quoted strings; -1 if none."""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
        elif ch == "<" and i > 0 and not quoted:
            return -1  # a second '<' outside quotes: unbalanced
    return -1
