"""The Active Directory DirSync control (LDAP_SERVER_DIRSYNC_OID), with pyasn1.

MS-ADTS 3.1.1.3.4.1.3: the request value is

    DirSyncRequestValue ::= SEQUENCE {
        Flags       INTEGER,
        MaxBytes    INTEGER,
        Cookie      OCTET STRING }

and the response value

    DirSyncResponseValue ::= SEQUENCE {
        MoreResults INTEGER,
        unused      INTEGER,
        CookieServer OCTET STRING }

Flags is a 32-bit field that AD reads as a signed integer: 0x80000000
(LDAP_DIRSYNC_INCREMENTAL_VALUES) goes on the wire as -2147483648, as
ldapsearch's ``-E dirSync`` sends it, not as a five-byte positive number.
"""

from __future__ import annotations

from typing import Any

import ldap.controls
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

DIRSYNC_OID = "1.2.840.113556.1.4.841"

#: Flags of the request (MS-ADTS 3.1.1.3.4.1.3).
OBJECT_SECURITY = 0x00000001
ANCESTORS_FIRST_ORDER = 0x00000800
PUBLIC_DATA_ONLY = 0x00002000
INCREMENTAL_VALUES = 0x80000000

#: The most a cookie may weigh: AD's are a few hundred bytes; a larger one
#: is not a cookie but something to refuse before it is stored.
MAX_COOKIE = 64 * 1024


class DirSyncRequest(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("flags", univ.Integer()),
        namedtype.NamedType("maxBytes", univ.Integer()),
        namedtype.NamedType("cookie", univ.OctetString()),
    )


class DirSyncResponse(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("moreResults", univ.Integer()),
        namedtype.NamedType("unused", univ.Integer()),
        namedtype.NamedType("cookie", univ.OctetString()),
    )


class _MinimalIntegerEncoder(encoder.IntegerEncoder):  # type: ignore[misc]
    """Two's complement in the fewest octets (X.690 8.3.2).

    pyasn1 (0.6) gives -2**31 five octets, ``ff 80 00 00 00``, which X.690
    forbids (a first octet of all ones followed by a set high bit); AD may
    refuse it, so the flags are encoded here.
    """

    def encodeValue(self, value: Any, asn1Spec: Any, encodeFun: Any,
                    **options: Any) -> tuple[Any, bool, bool]:
        number = int(value)
        if number == 0:
            return (0,), False, False
        size = (number + (number < 0)).bit_length() // 8 + 1
        return number.to_bytes(size, "big", signed=True), False, True


_TAG_MAP = dict(encoder.TAG_MAP)
_TAG_MAP[univ.Integer.tagSet] = _MinimalIntegerEncoder()
_TYPE_MAP = dict(encoder.TYPE_MAP)
_TYPE_MAP[univ.Integer.typeId] = _MinimalIntegerEncoder()
_encode = encoder.Encoder(_TAG_MAP, _TYPE_MAP)


class DirSyncDecodeError(ValueError):
    """A DirSync response value that is not what MS-ADTS describes."""


def signed32(flags: int) -> int:
    """``flags`` as the signed 32-bit integer AD decodes it as."""
    if not 0 <= flags <= 0xFFFFFFFF:
        raise ValueError(f"DirSync flags must fit 32 bits, not {flags:#x}")
    return flags - (1 << 32) if flags & 0x80000000 else flags


def encode_request(flags: int, max_bytes: int, cookie: bytes) -> bytes:
    value = DirSyncRequest()
    value["flags"] = signed32(flags)
    value["maxBytes"] = max_bytes
    value["cookie"] = cookie
    return bytes(_encode(value))


def decode_response(data: bytes) -> tuple[bool, bytes]:
    """``(more_results, cookie)`` of a response value; DirSyncDecodeError if malformed."""
    try:
        value, rest = decoder.decode(data, asn1Spec=DirSyncResponse())
    except (PyAsn1Error, TypeError, ValueError) as exc:
        raise DirSyncDecodeError(f"not a DirSync response value: {exc}") from exc
    if rest:
        raise DirSyncDecodeError(f"{len(rest)} bytes after the DirSync response value")
    cookie = bytes(value["cookie"])
    if len(cookie) > MAX_COOKIE:
        raise DirSyncDecodeError(f"a DirSync cookie of {len(cookie)} bytes (at most "
                                 f"{MAX_COOKIE} expected)")
    return int(value["moreResults"]) != 0, cookie


class DirSyncControl(ldap.controls.RequestControl, ldap.controls.ResponseControl):
    """The control for python-ldap: sent with a search, decoded from its result.

    The request must be critical: a server that ignores it would answer
    a plain search, which reads as "everything changed".
    """

    controlType = DIRSYNC_OID

    def __init__(self, criticality: bool = True, flags: int = INCREMENTAL_VALUES,
                 max_bytes: int = 0, cookie: bytes = b"") -> None:
        self.criticality = criticality
        self.flags = flags
        self.max_bytes = max_bytes
        self.cookie = cookie
        self.more_results = False

    def encodeControlValue(self) -> bytes:
        return encode_request(self.flags, self.max_bytes, self.cookie)

    def decodeControlValue(self, encodedControlValue: bytes) -> None:
        self.more_results, self.cookie = decode_response(encodedControlValue)
