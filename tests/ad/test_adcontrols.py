"""The DirSync control's value (MS-ADTS 3.1.1.3.4.1.3), encoded and decoded without a server."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder

from dirsync.directories.adcontrols import (
    INCREMENTAL_VALUES,
    MAX_COOKIE,
    DirSyncControl,
    DirSyncDecodeError,
    DirSyncRequest,
    decode_response,
    encode_request,
    signed32,
)

# The control value Samba 4.17 answered to ``ldapsearch -E '!dirSync=0/0'``.
RECORDED = base64.b64decode(
    "MHQCAQACAQAEbE1TRFMDAAAAAIj5Y5KF3QEAAAAAAAAAACgAAACXDwAAAAAAAAAAAAAAAAAAlw8AAAAAAAC3HxRw"
    "J7ztT56LVVDW9QbpAQAAAAAAAAABAAAAAAAAALcfFHAnvO1PnotVUNb1BumXDwAAAAAAAA==")


def test_request_with_incremental_values_sends_flags_as_signed_32_bits() -> None:
    # SEQUENCE { INTEGER -2147483648, INTEGER 0, OCTET STRING "" }
    assert encode_request(INCREMENTAL_VALUES, 0, b"") == bytes.fromhex(
        "300b" "020480000000" "020100" "0400")


def test_request_carries_flags_max_bytes_and_cookie() -> None:
    assert encode_request(0x801, 1000, b"MSDS") == bytes.fromhex(
        "300e" "02020801" "020203e8" "04044d534453")


@given(st.integers(min_value=0, max_value=0xFFFFFFFF), st.integers(0, 1 << 20),
       st.binary(max_size=40))
def test_any_request_decodes_back_with_minimal_integers(flags: int, max_bytes: int,
                                                        cookie: bytes) -> None:
    encoded = encode_request(flags, max_bytes, cookie)
    value, rest = decoder.decode(encoded, asn1Spec=DirSyncRequest())
    assert rest == b""
    assert int(value["flags"]) & 0xFFFFFFFF == flags
    assert int(value["maxBytes"]) == max_bytes and bytes(value["cookie"]) == cookie
    # X.690 8.3.2: no leading octet that only repeats the sign of the next.
    length = encoded[3]
    body = encoded[4:4 + length]
    assert length == 1 or not ((body[0] == 0xFF and body[1] & 0x80)
                               or (body[0] == 0 and not body[1] & 0x80))


def test_signed32_bounds() -> None:
    assert signed32(0x7FFFFFFF) == 0x7FFFFFFF
    assert signed32(0x80000801) == 0x80000801 - (1 << 32)
    with pytest.raises(ValueError):
        signed32(1 << 32)


def test_recorded_samba_response_decodes_to_its_cookie() -> None:
    more, cookie = decode_response(RECORDED)
    assert more is False
    assert cookie.startswith(b"MSDS") and len(cookie) == 108


def test_more_results_is_read() -> None:
    value = bytes.fromhex("300a" "020101" "020100" "0402" "6162")
    assert decode_response(value) == (True, b"ab")


@pytest.mark.parametrize("value", [
    b"",
    b"\x04\x00",                                    # not a sequence
    bytes.fromhex("3006020101020100"),               # no cookie
    bytes.fromhex("300a0201010201000402616200"),     # a byte after the value
])
def test_malformed_response_values_are_refused(value: bytes) -> None:
    with pytest.raises(DirSyncDecodeError):
        decode_response(value)


def test_an_oversized_cookie_is_refused() -> None:
    big = b"x" * (MAX_COOKIE + 1)
    value = encode_request(0, 0, big)  # the same shape as a response
    with pytest.raises(DirSyncDecodeError, match="cookie"):
        decode_response(value)


def test_control_round_trip_through_python_ldap_hooks() -> None:
    control = DirSyncControl(cookie=b"abc")
    assert control.criticality is True
    assert control.encodeControlValue() == encode_request(INCREMENTAL_VALUES, 0, b"abc")
    control.decodeControlValue(RECORDED)
    assert control.cookie.startswith(b"MSDS") and control.more_results is False
