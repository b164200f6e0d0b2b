"""What dirsync knows about attribute types without asking a server.

Equality follows the attribute's matching rule where it matters (RFC 4517,
RFC 4519): case-ignore for names and mail addresses, DN matching for member
lists, telephone-number matching for phone numbers, exact bytes for
everything unknown (exact is never wrong, it may only report a change that a
server would call equal).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from dirsync.entry import normalize_dn

# Operational attributes a client cannot write (RFC 4512 section 3.4 and
# OpenLDAP's own). Export leaves them out unless asked ('+'); diff ignores them.
OPERATIONAL = frozenset(a.lower() for a in (
    "createTimestamp", "modifyTimestamp", "creatorsName", "modifiersName",
    "entryCSN", "entryUUID", "entryDN", "structuralObjectClass", "subschemaSubentry",
    "hasSubordinates", "contextCSN", "numSubordinates", "pwdChangedTime",
    "pwdAccountLockedTime", "pwdFailureTime", "pwdHistory", "pwdGraceUseTime",
    "pwdReset", "pwdPolicySubentry", "authTimestamp",
))

# Default --ignore of diff: the operational timestamps, CSNs and names that
# differ between any two servers holding the same data.
DEFAULT_DIFF_IGNORE = OPERATIONAL

# Values that are octet strings: always written base64, compared exactly.
BINARY = frozenset(a.lower() for a in (
    "jpegPhoto", "photo", "userCertificate", "cACertificate",
    "certificateRevocationList", "authorityRevocationList", "crossCertificatePair",
    "userSMIMECertificate", "userPKCS12", "audio", "objectGUID", "objectSid",
    "thumbnailPhoto", "userPassword",
))

_CASE_IGNORE = frozenset(a.lower() for a in (
    "cn", "commonName", "sn", "surname", "givenName", "gn", "initials", "displayName",
    "mail", "rfc822Mailbox", "ou", "organizationalUnitName", "o", "organizationName",
    "l", "localityName", "st", "stateOrProvinceName", "street", "streetAddress",
    "title", "description", "uid", "userid", "dc", "domainComponent", "c", "co",
    "businessCategory", "departmentNumber", "employeeType", "employeeNumber",
    "postalCode", "postOfficeBox", "physicalDeliveryOfficeName", "roomNumber",
    "preferredLanguage", "carLicense", "objectClass", "name", "proxyAddresses",
    "targetAddress", "dirsyncSource", "gecos", "homePostalAddress", "postalAddress",
    "registeredAddress", "destinationIndicator", "buildingName", "host", "info",
    "mailLocalAddress", "mailRoutingAddress", "otherMailbox", "textEncodedORAddress",
))
_DN_VALUED = frozenset(a.lower() for a in (
    "member", "uniqueMember", "owner", "manager", "secretary", "seeAlso",
    "roleOccupant", "distinguishedName", "aliasedObjectName", "creatorsName",
    "modifiersName", "memberOf",
))
_PHONE = frozenset(a.lower() for a in (
    "telephoneNumber", "mobile", "facsimileTelephoneNumber", "homePhone", "pager",
    "homeTelephoneNumber", "mobileTelephoneNumber", "pagerTelephoneNumber",
))

_SPACES = re.compile(rb"\s+")


def _case_ignore(value: bytes) -> bytes:
    # RFC 4518 insignificant space handling, then case folding.
    text = _SPACES.sub(b" ", value.strip()).decode("utf-8", "surrogateescape")
    return text.casefold().encode("utf-8", "surrogateescape")


def _dn(value: bytes) -> bytes:
    return normalize_dn(value.decode("utf-8", "replace")).encode("utf-8")


def _phone(value: bytes) -> bytes:
    return value.replace(b" ", b"").replace(b"-", b"")


def _exact(value: bytes) -> bytes:
    return value


def base_type(attr: str) -> str:
    """The attribute type without options, lower-case (``cn;lang-de`` -> ``cn``)."""
    return attr.split(";", 1)[0].lower()


def matcher(attr: str) -> Callable[[bytes], bytes]:
    """The normalizing function that implements ``attr``'s equality rule."""
    name = base_type(attr)
    if name in _CASE_IGNORE:
        return _case_ignore
    if name in _DN_VALUED:
        return _dn
    if name in _PHONE:
        return _phone
    return _exact


def _dn_spelling(value: bytes) -> bytes:
    # Servers re-escape DN values (``\,`` comes back as ``\2C``); only the
    # characters matter, not how they were escaped.
    import ldap.dn

    try:
        return ldap.dn.dn2str(ldap.dn.str2dn(value.decode("utf-8"))).encode("utf-8")
    except (ldap.DECODING_ERROR, UnicodeDecodeError):
        return value


def spelling(attr: str) -> Callable[[bytes], bytes]:
    """How a value is written, up to what no reader can see (DN escaping).

    Two values equal by :func:`matcher` but of different spelling (``Ted``
    and ``TED``) are a change worth writing; a different escape is not.
    """
    return _dn_spelling if base_type(attr) in _DN_VALUED else _exact


def is_dn_valued(attr: str) -> bool:
    """Whether the values of ``attr`` are DNs (``member``, ``manager`` ...)."""
    return base_type(attr) in _DN_VALUED


# Asked for every value written or checked (reports, LDIF, the value
# screen) of the few attribute names a run has.
@functools.lru_cache(maxsize=4096)
def is_binary(attr: str) -> bool:
    return base_type(attr) in BINARY or ";binary" in attr.lower()


def is_operational(attr: str) -> bool:
    return base_type(attr) in OPERATIONAL


# RFC 4512 section 2.5: a descriptor or a numeric OID, then options.
ATTR_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*$")
