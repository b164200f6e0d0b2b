"""Values checked against their syntax where foreign data comes in.

A foreign address book, an LDIF file or a partner's server may hold
anything. Before a source entry is mapped, the values the mapping reads
are checked here (:class:`Screen`), and after mapping the addresses it
made; an entry that fails is reported with its file, line and field and
skipped whole.

* DirectoryString values (RFC 4517 section 3.3.6): valid UTF-8, no NUL.
* Addresses (``mail``, proxy and target addresses, RFC 822 mailboxes, and
  every source value a mapping turns into one): one line, no control
  character, and parsed by the rules of their type: SMTP by RFC 5321
  section 4.1.2 (with the UTF-8 of RFC 6531), X.400 by RFC 2156
  (:mod:`dirsync.addresses.x400`), other types as ``TYPE:value`` (:mod:`dirsync.addresses.proxy`).
* DNs: parsed in full by RFC 4514 (python-ldap's ``str2dn``).

A newline in a value is how one address becomes two (templates split
their output into lines), so nothing that feeds an address may have one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import ldap
import ldap.dn

from dirsync.addresses.mailbox import ANY_UTF8, grammar, is_literal_form
from dirsync.addresses.proxy import TYPED
from dirsync.addresses.x400 import parse_or_address
from dirsync.errors import InputError
from dirsync.schema import is_binary

#: Attribute types whose values are RFC 5321 mailboxes (RFC 4524 ``mail``).
MAILBOX_TYPES = frozenset({"mail", "rfc822mailbox"})
#: Address types checked as one line of text only: RFC 1274 ``otherMailbox``
#: is ``type$mailbox``, its mailbox in its type's own syntax.
LINE_TYPES = frozenset({"othermailbox"})
#: Attribute types whose values are typed addresses (``TYPE:value``).
TYPED_TYPES = frozenset({"proxyaddresses", "targetaddress"})
#: Attribute types whose values are X.400 O/R addresses (RFC 2156).
X400_TYPES = frozenset({"textencodedoraddress"})
ADDRESS_TYPES = MAILBOX_TYPES | TYPED_TYPES | X400_TYPES | LINE_TYPES

#: Longest address of any type taken in (RFC 5321 section 4.5.3.1.3 allows
#: 256 octets for an SMTP path; X.400 addresses run longer).
MAX_ADDRESS = 1024

# C0 controls, DEL, the C1 controls, line separators and bidirectional
# marks: never in an address (escaped when shown: dirsync.escapes).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")

# RFC 5321 section 4.1.2, with RFC 6531 section 3.3: atext and qtext also
# take any non-ASCII character (the UTF-8 is checked on decoding, controls by
# line_problem), and a sub-domain may be a U-label.
_SMTP = grammar(ANY_UTF8)


#: Mailboxes checked lately and their answers: a mapped entry has the same
#: one in ``mail``, its target address and a proxy address.
_CHECKED: dict[str, str | None] = {}
_UNCHECKED = object()


def smtp_problem(address: str) -> str | None:
    """Why ``address`` is not an RFC 5321 ``Mailbox``, or None."""
    found = _CHECKED.get(address, _UNCHECKED)
    if found is _UNCHECKED:
        if len(_CHECKED) >= 64:
            _CHECKED.clear()
        found = _CHECKED[address] = _smtp_problem(address)
    return found  # type: ignore[return-value]


def _smtp_problem(address: str) -> str | None:
    match = _SMTP.compiled.fullmatch(address)
    domain = match.group("domain") if match is not None else ""
    if match is None or (domain.startswith("[") and not is_literal_form(domain)):
        return f"not an SMTP address (RFC 5321): {address!r}"
    if len(match.group("local").encode("utf-8")) > 64:
        return "the local part of an SMTP address is longer than 64 octets"
    if len(domain.encode("utf-8")) > 255:
        return "the domain of an SMTP address is longer than 255 octets"
    return None


def x400_problem(address: str) -> str | None:
    try:
        parse_or_address(address)
    except InputError as exc:
        return f"not an X.400 address (RFC 2156): {exc.message}"
    return None


def line_problem(text: str) -> str | None:
    """Why ``text`` cannot be (part of) an address: a line break or other control."""
    found = _CONTROL.search(text)
    if found is not None:
        return f"a control character {found.group()!r} where one line of text belongs"
    if len(text) > MAX_ADDRESS:
        return f"longer than {MAX_ADDRESS} characters"
    return None


def typed_problem(value: str) -> str | None:
    """Why ``value`` is not a ``TYPE:value`` address of a known shape, or None."""
    match = TYPED.match(value)
    if match is None:
        return f"not a typed address (TYPE:value): {value!r}"
    kind, address = match.group(1).upper(), match.group(2)
    if kind == "SMTP":
        return smtp_problem(address)
    if kind == "X400":
        return x400_problem(address)
    if not address.strip():
        return f"an empty {kind} address"
    return None


def address_problem(attr: str, value: str) -> str | None:
    """Why ``value`` is not an address of attribute type ``attr``, or None."""
    problem = line_problem(value)
    if problem is not None:
        return problem
    name = attr.lower()
    if name in MAILBOX_TYPES:
        return smtp_problem(value)
    if name in TYPED_TYPES:
        return typed_problem(value)
    if name in X400_TYPES:
        return x400_problem(value)
    return None


def text_problem(value: bytes) -> tuple[str | None, str]:
    """(why ``value`` is not a DirectoryString or None, its text)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason} at byte {exc.start})", ""
    if b"\x00" in value:
        return "a NUL character", text
    return None, text


# A DN whose RDNs are plain (no escape, quote, plus, '<' or '#', no space at
# either end of a value) parses as written; str2dn checks every other one.
_PLAIN_DN = re.compile(r"[A-Za-z][A-Za-z0-9-]*=[\w.@-](?:[\w .@'-]*[\w.@-])?"
                       r"(?:,[A-Za-z][A-Za-z0-9-]*=[\w.@-](?:[\w .@'-]*[\w.@-])?)*")


def dn_problem(dn: str) -> str | None:
    """Why ``dn`` is not an RFC 4514 DN, or None (the empty DN is the root)."""
    if not dn or _PLAIN_DN.fullmatch(dn):
        return None
    if "\x00" in dn:
        return f"not a valid DN (a NUL character): {dn!r}"
    try:
        ldap.dn.str2dn(dn)
    except ldap.DECODING_ERROR:
        return f"not a valid DN: {dn!r}"
    except UnicodeDecodeError:
        # A \XX escape of a byte that is not UTF-8 (RFC 4514 values are).
        return f"not a valid DN (an escaped value is not UTF-8): {dn!r}"
    return None


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"field {self.field!r}: {self.message}"


@dataclass
class Screen:
    """The checks for the source entries of one mapping.

    ``read`` holds the (lower-case) source attributes the mapping reads:
    only those reach the hub, so only those are checked (and, for a large
    source, the rest costs nothing). ``single_line`` holds those it turns
    into addresses. An empty ``read`` checks every attribute.
    """

    read: frozenset[str] = frozenset()
    single_line: frozenset[str] = frozenset()
    #: attribute name as spelled -> what it gets: "", "text", "line" or "address"
    _checks: dict[str, str] = field(default_factory=dict)

    def _check_of(self, name: str) -> str:
        lower = name.lower()
        if (self.read and lower not in self.read) or is_binary(lower):
            check = ""
        elif lower in ADDRESS_TYPES:
            check = "address"
        elif lower in self.single_line:
            check = "line"
        else:
            check = "text"
        self._checks[name] = check
        return check

    def problems(self, dn: str, attrs: dict[str, list[bytes]]) -> list[Problem]:
        found: list[Problem] = []
        problem = dn_problem(dn)
        if problem is not None:
            found.append(Problem("dn", problem))
        checks = self._checks
        for name, values in attrs.items():
            check = checks.get(name)
            if check is None:
                check = self._check_of(name)
            if not check:
                continue
            for value in values:
                problem, text = text_problem(value)
                if problem is None and check != "text":
                    problem = (address_problem(name, text) if check == "address"
                               else line_problem(text))
                if problem is not None:
                    found.append(Problem(name, problem))
                    break
        return found


def screen_for(mapping: object) -> Screen:
    """The :class:`Screen` of a mapping (:class:`dirsync.mapping.mapfile.Mapping`)."""
    read = frozenset(n.lower() for n in mapping.source_names())  # type: ignore[attr-defined]
    return Screen(read=read, single_line=frozenset(_address_sources(mapping)))


def _address_sources(mapping: object) -> Iterable[str]:
    """Source attributes a mapping's address templates read."""
    parts = [*mapping.persons.values(), *mapping.lists.values()]  # type: ignore[attr-defined]
    for part in parts:
        templates = list(part.proxy_addresses)
        if part.target_address is not None:
            templates.append(part.target_address)
        templates += [t for name, t in part.attributes.items() if name.lower() in ADDRESS_TYPES]
        for template in templates:
            yield from (n.lower() for n in template.attributes)


def mapped_problems(attrs: dict[str, list[bytes]]) -> list[Problem]:
    """The address attributes of a mapped entry, parsed by their type."""
    found: list[Problem] = []
    for name, values in attrs.items():
        lower = name.lower()
        if lower not in ADDRESS_TYPES:
            continue
        for value in values:
            problem, text = text_problem(value)
            if problem is None:
                problem = address_problem(lower, text)
            if problem is not None:
                found.append(Problem(name, problem))
                break
    return found
