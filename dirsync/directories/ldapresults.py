"""LDAP results sorted by what the caller should do (STYLE.md item 5).

One rule for writes: every result code a server returns for one operation
is that record's failure (:class:`EntryError`, with its line, DN and RFC
4511 result name), whatever the code. Only problems of the connection
itself (cannot connect, server gone, no answer) stop the whole run. Binds,
reads and schema lookups keep the older split: the directory as a whole is
gone for now, or refuses us for good.
"""

from __future__ import annotations

import ldap

from dirsync.errors import (
    DirectoryError,
    EntryError,
    FatalDirectoryError,
    TransientDirectoryError,
)
from dirsync.ldif.changes import Change

_TRANSIENT = (ldap.SERVER_DOWN, ldap.TIMEOUT, ldap.UNAVAILABLE, ldap.BUSY,
              ldap.CONNECT_ERROR, ldap.TIMELIMIT_EXCEEDED, ldap.OTHER)
_FATAL = (ldap.INVALID_CREDENTIALS, ldap.INAPPROPRIATE_AUTH, ldap.STRONG_AUTH_REQUIRED,
          ldap.CONFIDENTIALITY_REQUIRED, ldap.AUTH_UNKNOWN, ldap.PROTOCOL_ERROR,
          ldap.UNWILLING_TO_PERFORM, ldap.UNAVAILABLE_CRITICAL_EXTENSION)

#: Client-side errors (libldap's negative codes) that mean the connection,
#: not the record, is the problem.
CONNECTION_ERRORS = (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT, ldap.LOCAL_ERROR,
                     ldap.DECODING_ERROR, ldap.NO_MEMORY)

#: python-ldap's exception class for each result code.
ERROR_CLASSES: dict[int, type[ldap.LDAPError]] = {
    cls.errnum: cls for cls in vars(ldap).values()
    if isinstance(cls, type) and issubclass(cls, ldap.LDAPError) and hasattr(cls, "errnum")}

#: RFC 4511 section 4.1.9 (and the RFCs that add codes) result names.
RESULT_NAMES = {
    0: "success", 1: "operationsError", 2: "protocolError", 3: "timeLimitExceeded",
    4: "sizeLimitExceeded", 7: "authMethodNotSupported", 8: "strongerAuthRequired",
    10: "referral", 11: "adminLimitExceeded", 12: "unavailableCriticalExtension",
    13: "confidentialityRequired", 14: "saslBindInProgress", 16: "noSuchAttribute",
    17: "undefinedAttributeType", 18: "inappropriateMatching", 19: "constraintViolation",
    20: "attributeOrValueExists", 21: "invalidAttributeSyntax", 32: "noSuchObject",
    33: "aliasProblem", 34: "invalidDNSyntax", 36: "aliasDereferencingProblem",
    48: "inappropriateAuthentication", 49: "invalidCredentials",
    50: "insufficientAccessRights", 51: "busy", 52: "unavailable", 53: "unwillingToPerform",
    54: "loopDetect", 64: "namingViolation", 65: "objectClassViolation",
    66: "notAllowedOnNonLeaf", 67: "notAllowedOnRDN", 68: "entryAlreadyExists",
    69: "objectClassModsProhibited", 71: "affectsMultipleDSAs", 80: "other",
    118: "canceled", 122: "assertionFailed", 123: "authorizationDenied",
    4096: "syncRefreshRequired",
}


def result_code(exc: ldap.LDAPError) -> int | None:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    code = info.get("result")
    if isinstance(code, int):
        return code
    return getattr(exc, "errnum", None)


def result_name(exc: ldap.LDAPError) -> str:
    """RFC 4511 result name of an LDAP error (``entryAlreadyExists`` ...)."""
    code = result_code(exc)
    return RESULT_NAMES.get(code, type(exc).__name__) if code is not None \
        else type(exc).__name__


def message(exc: ldap.LDAPError) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    text = str(info.get("desc", exc))
    if info.get("info"):
        text += f": {info['info']}"
    return text


def directory_error(exc: ldap.LDAPError, url: str) -> DirectoryError:
    if isinstance(exc, _FATAL):
        return FatalDirectoryError(f"{url}: {message(exc)}")
    if isinstance(exc, _TRANSIENT):
        return TransientDirectoryError(f"{url}: {message(exc)}")
    return DirectoryError(f"{url}: {message(exc)}")


def is_connection_error(exc: ldap.LDAPError) -> bool:
    return isinstance(exc, CONNECTION_ERRORS)


def entry_error(exc: ldap.LDAPError, change: Change, url: str = "server") -> EntryError:
    """The record's failure; a connection problem is raised for the whole run."""
    if is_connection_error(exc):
        raise TransientDirectoryError(f"{url}: {message(exc)}") from exc
    return EntryError(change.dn, message(exc), result=result_name(exc), line=change.line)
