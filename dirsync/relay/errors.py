"""Relay errors, sorted into the one dirsync exception tree by what the caller should do."""

from __future__ import annotations

from dirsync.addresses.imcea import EncapsulationError
from dirsync.addresses.x400 import ORAddressError
from dirsync.errors import DirsyncError, FatalDirectoryError, TransientDirectoryError

__all__ = [
    "AmbiguousAddress",
    "EncapsulationError",
    "HubRefused",
    "HubUnavailable",
    "ORAddressError",
    "RelayError",
    "RelayStartError",
    "Unmappable",
]


class RelayError(DirsyncError):
    """The relay as a whole cannot do what it was asked."""

    exit_status = 1


class RelayStartError(RelayError):
    """The relay could not start: a port in use, a queue folder it cannot write."""


class HubUnavailable(TransientDirectoryError):
    """The hub did not answer; the lookup (and the message) can be retried later."""


class HubRefused(FatalDirectoryError):
    """The hub refuses the relay for good: bad credentials, no such base."""


class Unmappable(RelayError):
    """An address cannot be translated for where it has to go.

    ``status`` is the RFC 3463 enhanced status a report gives for it:
    5.1.1 for a recipient, 5.1.3 for bad syntax, 5.1.7 for a sender.
    """

    def __init__(self, message: str, status: str = "5.1.1") -> None:
        super().__init__(message)
        self.status = status


class AmbiguousAddress(RelayError):
    """More than one hub entry claims an address and none of them is clearly the hub's own.

    Temporary (RFC 3463 status 4.3.0): mail to the address waits, and is
    never handed to an entry dirsync imported from a foreign system, until
    an administrator leaves one entry holding it.
    """

    status = "4.3.0"

    def __init__(self, address: str, dns: list[str]) -> None:
        super().__init__(f"{address} is claimed by {len(dns)} hub entries "
                         f"({'; '.join(dns)}) and not by exactly one entry the hub owns")
        self.address = address
        self.dns = dns
