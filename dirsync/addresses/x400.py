"""X.400 O/R addresses: parse and print their textual forms, map them to and from RFC 822.

Pure functions on plain data, no I/O. Three textual forms are read and written:

* the RFC 2156 section 4.2 ``std-or-address`` (slash form)::

      /G=Ted/S=Bremer/O=SiteA/PRMD=Contoso/ADMD= /C=US/

* the semicolon form that connectors store as ``X400:`` proxy addresses::

      c=US;a= ;p=Contoso;o=SiteA;s=Bremer;g=Ted;

* the RFC 1685 labelled form, most specific attribute first::

      DDA:RFC-822=fred(a)widget.co.uk; O=gateway; P=abc; C=gb

Single-valued keys may come in any order; organizational units keep the
order they are written in (the first one written is OU1, the unit next to
the organization). ``$`` quotes the next character (RFC 2156 section
4.2.1: ``$/``, ``$=`` and ``$$`` in the slash form; ``$;`` in the others).

The mapping between O/R addresses and RFC 822 addresses follows RFC 2156
section 4.3: mapping tables matched by the longest prefix (domain suffix one
way, O/R hierarchy the other), ``given.initials.surname`` local parts, and a
domain-defined attribute of type ``RFC-822`` at a gateway for everything a
table cannot express. Values cross into X.400 through the printable-string
escapes of RFC 2156 section 3.4: ``(a)`` @, ``(p)`` %, ``(b)`` !, ``(q)`` ",
``(u)`` _, ``(l)`` (, ``(r)`` ) and ``(ddd)`` for any other ASCII character.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from dirsync.errors import InputError

__all__ = [
    "MappingRule",
    "MappingTables",
    "ORAddress",
    "ORAddressError",
    "decode_printable",
    "encode_printable",
    "parse_or_address",
    "rfc822_to_x400",
    "x400_to_rfc822",
]


class ORAddressError(InputError):
    """An O/R address that cannot be parsed, or an address that cannot be mapped."""


# X.208 PrintableString: the only characters an X.400 attribute value may hold.
PRINTABLE = frozenset(string.ascii_letters + string.digits + " '()+,-./:=?")

# RFC 2156 section 3.4: the characters with a mnemonic escape. '(' and ')' are
# printable but must be escaped too, because they open and close escapes.
_ESCAPE = {"@": "(a)", "%": "(p)", "!": "(b)", '"': "(q)", "_": "(u)", "(": "(l)", ")": "(r)"}
_UNESCAPE = {v[1]: k for k, v in _ESCAPE.items()}
_ESCAPE_RE = re.compile(r"\(([apbqulr]|\d{3})\)", re.IGNORECASE)

# Upper bounds from X.411 (ub-*-length), which a mapped value must respect.
UB_COUNTRY = 3
UB_DOMAIN = 16  # ADMD and PRMD
UB_ORGANIZATION = 64
UB_UNIT = 32
UB_SURNAME = 40
UB_GIVEN = 16
UB_INITIALS = 5
UB_GENERATION = 3
UB_COMMON_NAME = 64
UB_DDA_TYPE = 8
UB_DDA_VALUE = 128
MAX_UNITS = 4
MAX_DDAS = 4

_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")


def encode_printable(text: str) -> str:
    """Encode ASCII text as a PrintableString with the RFC 2156 section 3.4 escapes.

    >>> encode_printable('"First Last"@example.com')
    '(q)First Last(q)(a)example.com'

    Raises :class:`ORAddressError` for characters outside ASCII, which have
    no printable-string form.
    """
    out: list[str] = []
    for ch in text:
        if ch in _ESCAPE:
            out.append(_ESCAPE[ch])
        elif ch in PRINTABLE:
            out.append(ch)
        elif ord(ch) < 128:
            out.append(f"({ord(ch):03d})")
        else:
            raise ORAddressError(f"{text!r}: {ch!r} has no printable-string form (RFC 2156 3.4)")
    return "".join(out)


def decode_printable(text: str) -> str:
    """Undo :func:`encode_printable` (RFC 2156 section 3.4).

    Escapes are read case-insensitively; a parenthesis that opens no known
    escape is kept as it is, so decoding never fails on lenient input.
    """

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.isdigit():
            value = int(code)
            return chr(value) if value < 128 else match.group(0)
        return _UNESCAPE[code.lower()]

    return _ESCAPE_RE.sub(one, text)


def _norm(value: str | None) -> str:
    # X.400 compares printable strings ignoring case and surplus spaces; a
    # blank ADMD (" ", "any ADMD") compares equal to an absent one.
    if value is None:
        return ""
    return " ".join(value.split()).casefold()


@dataclass(frozen=True)
class ORAddress:
    """An X.400 O/R address (mnemonic form) with its domain-defined attributes.

    ``units`` holds OU1..OU4 in order, OU1 first. ``dda`` holds
    ``(type, value)`` pairs, type upper-cased. ``other`` holds the remaining
    standard attributes this module passes through unchanged (X.121, N-ID, T-ID).
    """

    country: str | None = None
    admd: str | None = None
    prmd: str | None = None
    organization: str | None = None
    units: tuple[str, ...] = ()
    surname: str | None = None
    given: str | None = None
    initials: str | None = None
    generation: str | None = None
    common_name: str | None = None
    dda: tuple[tuple[str, str], ...] = ()
    other: tuple[tuple[str, str], ...] = field(default=())

    # -- comparison ------------------------------------------------------
    def key(self) -> tuple[object, ...]:
        """A value equal for addresses that X.400 considers the same."""
        return (
            _norm(self.country), _norm(self.admd), _norm(self.prmd), _norm(self.organization),
            tuple(_norm(u) for u in self.units), _norm(self.surname), _norm(self.given),
            _norm(self.initials), _norm(self.generation), _norm(self.common_name),
            tuple((t.upper(), _norm(v)) for t, v in self.dda),
            tuple((k.upper(), _norm(v)) for k, v in self.other),
        )

    def same_as(self, other: ORAddress) -> bool:
        return self.key() == other.key()

    def dda_value(self, dda_type: str) -> str | None:
        for t, v in self.dda:
            if t.upper() == dda_type.upper():
                return v
        return None

    def without_dda(self) -> ORAddress:
        return replace(self, dda=())

    @property
    def has_personal_name(self) -> bool:
        return any((self.surname, self.given, self.initials, self.generation))

    def hierarchy(self) -> list[tuple[str, str | None]]:
        """The routing levels, most significant first: C, ADMD, PRMD, O, OU1..OU4."""
        levels: list[tuple[str, str | None]] = [
            ("C", self.country), ("ADMD", self.admd), ("PRMD", self.prmd),
            ("O", self.organization),
        ]
        for i in range(MAX_UNITS):
            levels.append((f"OU{i + 1}", self.units[i] if i < len(self.units) else None))
        return levels

    # -- printing --------------------------------------------------------
    def to_std(self) -> str:
        """The RFC 2156 section 4.2 ``std-or-address``: ``/G=Ted/S=Bremer/.../C=US/``."""
        pairs: list[tuple[str, str]] = []
        for t, v in self.dda:
            pairs.append(("RFC-822" if t.upper() == "RFC-822" else f"DD.{t}", v))
        pairs += self._personal(("G", "I", "S", "GQ", "CN"))
        pairs += list(self.other)
        pairs += [("OU", u) for u in self.units]
        pairs += self._domain(("O", "PRMD", "ADMD", "C"))
        return "/" + "".join(f"{k}={_quote(v, '/=')}/" for k, v in pairs)

    def to_semicolon(self) -> str:
        """The proxy-address form, least specific first: ``c=US;a= ;p=...;s=Bremer;g=Ted;``."""
        pairs: list[tuple[str, str]] = []
        pairs += self._domain(("c", "a", "p", "o"))
        pairs += [("ou", u) for u in self.units]
        pairs += self._personal(("cn", "s", "g", "i", "q"))
        pairs += [(k.lower(), v) for k, v in self.other]
        pairs += [(f"dda:{t}", v) for t, v in self.dda]
        return "".join(f"{k}={_quote(v, ';')};" for k, v in pairs)

    def to_rfc1685(self) -> str:
        """The RFC 1685 labelled form, most specific first, ``; `` between attributes."""
        pairs: list[tuple[str, str]] = [(f"DDA:{t}", v) for t, v in self.dda]
        pairs += self._personal(("G", "I", "S", "Q", "CN"))
        pairs += list(self.other)
        pairs += [("OU", u) for u in self.units]
        pairs += self._domain(("O", "P", "A", "C"))
        return "; ".join(f"{k}={_quote(v, ';')}" for k, v in pairs)

    def global_domain(self) -> str:
        """The global domain identifier (C, ADMD, PRMD) as RFC 2156 prints it in trace."""
        pairs = [(k, v) for k, v in (("C", self.country), ("ADMD", self.admd),
                                     ("PRMD", self.prmd)) if v is not None]
        return "/" + "".join(f"{k}={_quote(v, '/=')}/" for k, v in pairs)

    def __str__(self) -> str:
        return self.to_std()

    def _personal(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        # labels name given, initials, surname, generation, common name in
        # the order the caller wants them printed.
        values = {
            "G": self.given, "I": self.initials, "S": self.surname, "GQ": self.generation,
            "Q": self.generation, "CN": self.common_name,
        }
        return [(label, v) for label in labels
                if (v := values[label.upper()]) is not None]

    def _domain(self, labels: Sequence[str]) -> list[tuple[str, str]]:
        values = {
            "O": self.organization, "PRMD": self.prmd, "P": self.prmd, "ADMD": self.admd,
            "A": self.admd, "C": self.country,
        }
        return [(label, v) for label in labels if (v := values[label.upper()]) is not None]


def _quote(value: str, special: str) -> str:
    out = []
    for ch in value:
        if ch == "$" or ch in special:
            out.append("$")
        out.append(ch)
    return "".join(out)


# Keys accepted on input, case-insensitively, with the attribute they set.
_SINGLE_KEYS = {
    "C": "country", "COUNTRY": "country",
    "A": "admd", "ADMD": "admd",
    "P": "prmd", "PRMD": "prmd",
    "O": "organization",
    "S": "surname",
    "G": "given",
    "I": "initials",
    "Q": "generation", "GQ": "generation",
    "CN": "common_name",
}
_OTHER_KEYS = {"X.121", "N-ID", "T-ID", "UA-ID"}


def _split_unquoted(text: str, sep: str) -> list[list[tuple[str, bool]]]:
    """Split on ``sep`` outside ``$`` quoting; each part keeps whether a char was quoted."""
    parts: list[list[tuple[str, bool]]] = [[]]
    it = iter(text)
    for ch in it:
        if ch == "$":
            nxt = next(it, None)
            if nxt is None:
                raise ORAddressError(f"{text!r}: '$' at the end quotes nothing")
            parts[-1].append((nxt, True))
        elif ch == sep:
            parts.append([])
        else:
            parts[-1].append((ch, False))
    return parts


def _key_value(part: list[tuple[str, bool]], text: str) -> tuple[str, str] | None:
    if all(not quoted and not ch.strip() for ch, quoted in part):
        return None  # an empty part: a leading or trailing separator
    for i, (ch, quoted) in enumerate(part):
        if ch == "=" and not quoted:
            key = "".join(c for c, _ in part[:i]).strip()
            raw = "".join(c for c, _ in part[i + 1:])
            break
    else:
        raise ORAddressError(f"{text!r}: attribute {''.join(c for c, _ in part)!r} has no '='")
    if not key:
        raise ORAddressError(f"{text!r}: an attribute has no key")
    value = raw.strip()
    if not value:
        if not raw:
            raise ORAddressError(f"{text!r}: attribute {key!r} has no value")
        value = " "  # a blank value is meaningful: ADMD " " means any ADMD
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ORAddressError(f"{text!r}: attribute {key!r} holds a control character")
    return key, value


def parse_or_address(text: str) -> ORAddress:
    """Parse an O/R address in the slash, semicolon or RFC 1685 form.

    The form is told by the first character: ``/`` is the RFC 2156 section
    4.2 ``std-or-address``, anything else is split on ``;``. Keys are
    case-insensitive; C, ADMD/A, PRMD/P, O, S, G, I, GQ/Q and CN may appear
    once each, in any order; OU (or OU1..OU4) up to four times, their order
    kept; domain-defined attributes as ``DDA:type=``, ``DD.type=`` or
    ``RFC-822=``.
    """
    stripped = text.strip()
    if not stripped:
        raise ORAddressError("empty O/R address")
    sep = "/" if stripped.startswith("/") else ";"
    pairs = [kv for part in _split_unquoted(stripped, sep)
             if (kv := _key_value(part, text)) is not None]
    if not pairs:
        raise ORAddressError(f"{text!r}: no attributes")
    return _from_pairs(pairs, text)


def _from_pairs(pairs: Iterable[tuple[str, str]], text: str) -> ORAddress:
    single: dict[str, str] = {}
    units: list[tuple[int | None, str]] = []
    dda: list[tuple[str, str]] = []
    other: list[tuple[str, str]] = []
    for key, value in pairs:
        upper = key.upper()
        if upper in _SINGLE_KEYS:
            attr = _SINGLE_KEYS[upper]
            if attr in single:
                raise ORAddressError(f"{text!r}: {key!r} given twice")
            single[attr] = value
        elif upper == "OU":
            units.append((None, value))
        elif re.fullmatch(r"OU[1-4]", upper):
            units.append((int(upper[2]) - 1, value))
        elif upper.startswith(("DDA:", "DD.")) or upper == "RFC-822":
            dda_type = "RFC-822" if upper == "RFC-822" else key.split(":" if ":" in key else ".",
                                                                   1)[1].strip().upper()
            if not dda_type:
                raise ORAddressError(f"{text!r}: domain-defined attribute without a type")
            dda.append((dda_type, value))
        elif upper in _OTHER_KEYS:
            other.append((upper, value))
        else:
            raise ORAddressError(f"{text!r}: unknown attribute {key!r}")
    return ORAddress(units=_place_units(units, text), dda=tuple(dda), other=tuple(other),
                     **single)


def _place_units(units: list[tuple[int | None, str]], text: str) -> tuple[str, ...]:
    # Numbered units go to their slot; unnumbered ones fill the free slots in
    # the order they were written. OU order is never reversed.
    if len(units) > MAX_UNITS:
        raise ORAddressError(f"{text!r}: more than {MAX_UNITS} organizational units")
    slots: list[str | None] = [None] * MAX_UNITS
    for index, value in units:
        if index is not None:
            if slots[index] is not None:
                raise ORAddressError(f"{text!r}: OU{index + 1} given twice")
            slots[index] = value
    free = (i for i in range(MAX_UNITS) if slots[i] is None)
    for index, value in units:
        if index is None:
            slots[next(free)] = value
    filled = [s for s in slots if s is not None]
    if slots[:len(filled)] != filled:
        raise ORAddressError(f"{text!r}: organizational units leave a gap")
    return tuple(filled)


# -- RFC 2156 section 4.3: mapping tables -----------------------------------

@dataclass(frozen=True)
class MappingRule:
    """One line of the RFC 2156 mapping tables: a domain and an O/R prefix.

    ``to_x400`` makes it a table 2 entry (RFC 822 -> X.400), ``to_rfc822`` a
    table 1 entry (X.400 -> RFC 822); most sites use the same line both ways.
    """

    domain: str
    prefix: ORAddress
    to_x400: bool = True
    to_rfc822: bool = True

    def __post_init__(self) -> None:
        labels = self.domain.strip(".").split(".")
        if not all(_LABEL_RE.match(label) for label in labels):
            raise ORAddressError(f"mapping domain {self.domain!r} is not a domain name")
        p = self.prefix
        if p.has_personal_name or p.common_name or p.dda or p.other:
            raise ORAddressError(f"mapping prefix {p.to_rfc1685()!r} may only hold "
                                 "C, ADMD, PRMD, O and OU")

    @property
    def labels(self) -> list[str]:
        return [label.lower() for label in self.domain.strip(".").split(".")]

    @property
    def depth(self) -> int:
        """How many hierarchy levels (C, ADMD, PRMD, O, OU1..) the prefix reaches."""
        levels = self.prefix.hierarchy()
        return max((i + 1 for i, (_, v) in enumerate(levels) if v is not None), default=0)


@dataclass(frozen=True)
class MappingTables:
    """The RFC 2156 mapping tables plus the gateway used for ``DDA:RFC-822``."""

    rules: tuple[MappingRule, ...] = ()
    gateway: ORAddress | None = None


def _prefix_matches(prefix: ORAddress, depth: int, addr: ORAddress) -> bool:
    mine = prefix.hierarchy()[:depth]
    theirs = addr.hierarchy()[:depth]
    return all(_norm(a) == _norm(b) for (_, a), (_, b) in zip(mine, theirs))


def _local_to_personal(local: str) -> dict[str, str] | None:
    """Read a ``given.initials.surname`` local part (RFC 2156 section 4.3), or None."""
    if not local or local.startswith('"'):
        return None
    parts = local.split(".")
    if any(not p or not set(p) <= PRINTABLE or set(p) & set("()") for p in parts):
        return None
    surname, rest = parts[-1], parts[:-1]
    given = None
    if rest and len(rest[0]) > 1:
        given, rest = rest[0], rest[1:]
    if any(len(p) != 1 or not p.isalpha() for p in rest):
        return None
    initials = "".join(rest)
    if len(surname) > UB_SURNAME or (given and len(given) > UB_GIVEN) \
            or len(initials) > UB_INITIALS:
        return None
    out = {"surname": surname}
    if given:
        out["given"] = given
    if initials:
        out["initials"] = initials
    return out


def _split_822(address: str) -> tuple[str, str]:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ORAddressError(f"{address!r} is not an RFC 822 address")
    return local, domain


def rfc822_to_x400(address: str, tables: MappingTables) -> ORAddress:
    """Map an RFC 822 address to an O/R address (RFC 2156 section 4.3).

    1. The longest table 2 domain that is a suffix of the address's domain
       gives the O/R prefix; the remaining domain labels become O and OU1..OU4
       below it, and a ``given.initials.surname`` local part the personal name.
    2. Anything else travels as a domain-defined attribute of type
       ``RFC-822`` holding the whole address, printable-string encoded, at
       the gateway: ``fred@widget.co.uk`` through ``O=gateway;P=abc;C=gb``
       becomes ``DDA:RFC-822=fred(a)widget.co.uk; O=gateway; P=abc; C=gb``
       (RFC 1685 F.3.2.3).

    Raises :class:`ORAddressError` when neither applies: no table matches
    and no gateway is set, or the address has no printable-string form or is
    longer than a domain-defined attribute may be (128).
    """
    local, domain = _split_822(address)
    labels = [label.lower() for label in domain.strip(".").split(".")]
    best: MappingRule | None = None
    for rule in tables.rules:
        if rule.to_x400 and len(rule.labels) <= len(labels) \
                and labels[-len(rule.labels):] == rule.labels \
                and (best is None or len(rule.labels) > len(best.labels)):
            best = rule
    if best is not None:
        mapped = _via_table(local, labels[:len(labels) - len(best.labels)], best)
        if mapped is not None:
            return mapped
    if tables.gateway is None:
        raise ORAddressError(f"{address!r}: no mapping table matches and no gateway is set")
    value = encode_printable(address)
    if len(value) > UB_DDA_VALUE:
        raise ORAddressError(f"{address!r}: longer than a domain-defined attribute may be "
                             f"({len(value)} > {UB_DDA_VALUE})")
    return replace(tables.gateway, dda=(("RFC-822", value),))


def _via_table(local: str, extra: list[str], rule: MappingRule) -> ORAddress | None:
    personal = _local_to_personal(local)
    if personal is None:
        return None
    # The remaining labels, most significant (rightmost) first, fill the
    # levels below the prefix: O (if the prefix stops above it), then OUs.
    remaining = list(reversed(extra))
    prefix = rule.prefix
    organization = prefix.organization
    units = list(prefix.units)
    for label in remaining:
        if organization is None:
            if len(label) > UB_ORGANIZATION:
                return None
            organization = label
        else:
            if len(units) >= MAX_UNITS or len(label) > UB_UNIT:
                return None
            units.append(label)
    return replace(prefix, organization=organization, units=tuple(units),
                   surname=personal["surname"], given=personal.get("given"),
                   initials=personal.get("initials"))


def x400_to_rfc822(addr: ORAddress, tables: MappingTables) -> str | None:
    """Map an O/R address to an RFC 822 address (RFC 2156 section 4.3), or None.

    1. A ``DDA:RFC-822`` at the gateway is the address it encodes.
    2. The longest table 1 prefix the address starts with gives the domain;
       O and OUs below the prefix are prepended as labels, and the personal
       name becomes a ``given.initials.surname`` local part.

    None means neither applies; the caller then encapsulates the address.
    """
    rfc822 = addr.dda_value("RFC-822")
    if rfc822 is not None and tables.gateway is not None and len(addr.dda) == 1 \
            and addr.without_dda().same_as(tables.gateway):
        decoded = decode_printable(rfc822)
        try:
            _split_822(decoded)
        except ORAddressError:
            return None
        return decoded
    if addr.dda or addr.other or addr.common_name or addr.generation or not addr.surname:
        return None
    best: MappingRule | None = None
    for rule in tables.rules:
        if rule.to_rfc822 and _prefix_matches(rule.prefix, rule.depth, addr) \
                and (best is None or rule.depth > best.depth):
            best = rule
    if best is None:
        return None
    below = [v for _, v in addr.hierarchy()[best.depth:] if v is not None]
    if not all(_LABEL_RE.match(v) for v in below):
        return None
    domain = ".".join([v.lower() for v in reversed(below)] + best.labels)
    parts = [p for p in (addr.given, *(addr.initials or "")) if p]
    local = ".".join([*parts, addr.surname])
    if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+", local) or ".." in local:
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"
