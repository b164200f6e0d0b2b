"""Shared fixtures: a real slapd on loopback, one subtree per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from dirsync.testing.slapd import SlapdMissing, SlapdServer, find_slapd

_counter = itertools.count(1)


def _require_slapd() -> None:
    if find_slapd() is None:
        if os.environ.get("CI"):
            pytest.fail("slapd is missing in CI: the test command must install it")
        pytest.skip("slapd is not installed")


@pytest.fixture(scope="session")
def slapd() -> Iterator[SlapdServer]:
    """One server for the session, with syncprov; tests use their own subtree."""
    _require_slapd()
    try:
        server = SlapdServer(syncprov=True, sessionlog=1000, dbnosync=True).start()
    except SlapdMissing as exc:  # pragma: no cover - guarded above
        pytest.fail(str(exc))
    server.add_suffix()
    yield server
    server.destroy()


@pytest.fixture
def base(slapd: SlapdServer) -> str:
    """A fresh, empty organizationalUnit under the suffix, unique to this test."""
    dn = f"ou=t{next(_counter)},{slapd.suffix}"
    slapd.add_ou(dn)
    return dn


@pytest.fixture
def new_slapd() -> Iterator[SlapdServer]:
    """A server of its own, for tests that stop, restart or reconfigure it."""
    _require_slapd()
    server = SlapdServer(syncprov=True)
    yield server
    server.destroy()
