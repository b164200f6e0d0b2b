"""The ``control:`` lines of LDIF change records (RFC 2849).

::

    control = "control:" FILL ldap-oid 0*1(1*SPACE ("true" / "false"))
              0*1(value-spec) SEP
    value-spec = ":" ( FILL 0*1(SAFE-STRING) / ":" FILL (BASE64-STRING) /
                 "<" FILL url)

A control is sent with the record's operation (RFC 4511 section 4.1.11);
what happens to one a directory cannot pass on is in docs/ldif-tools.md.
"""

from __future__ import annotations

import base64
import binascii
import re

from dirsync.ldif.changes import Control

# Bounded: an OID of digits and dots, a criticality, then the value-spec.
_CONTROL = re.compile(r"(?P<oid>[0-9]{1,30}(?:\.[0-9]{1,30}){0,63})"
                      r"(?: +(?P<crit>true|false))? *(?P<spec>:.*)?", re.DOTALL)


def parse_control(raw: bytes) -> Control:
    """The :class:`Control` of one ``control:`` line's value.

    Raises ValueError (the reader turns it into an error naming the line).
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("a control line must be ASCII (give a non-ASCII value "
                         "in base64, after '::')") from None
    match = _CONTROL.fullmatch(text.strip(" "))
    if match is None:
        raise ValueError(f"not a control (OID, optional true or false, optional value): "
                         f"{text[:80]!r}")
    critical = match["crit"] == "true"
    spec = match["spec"]
    value: bytes | None = None
    if spec is not None:
        if spec.startswith("::"):
            try:
                value = base64.b64decode(spec[2:].strip(" "), validate=True)
            except (ValueError, binascii.Error) as exc:
                raise ValueError(f"bad base64 control value ({exc})") from exc
        elif spec.startswith(":<"):
            raise ValueError("a control value given by URL is not read")
        else:
            value = spec[1:].lstrip(" ").encode("ascii")
    return Control(match["oid"], critical, value)
