"""One Samba AD DC for the session's AD tests (its ports are fixed); one OU per test.

Package-scoped: the DC stops once the last test here has run, which frees
the machine's LDAP ports (and the harness's lock) for another session.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dirsync.directories import ADDirectory
from dirsync.testing.samba import SambaDC, SambaMissing, find_samba

from .helpers import open_ad

_timings: dict[str, float] = {}


@pytest.fixture(scope="package")
def samba_dc() -> Iterator[SambaDC]:
    if find_samba() is None:
        if os.environ.get("CI"):
            pytest.fail("Samba's AD DC is missing in CI: the test command must install it")
        pytest.skip("Samba's AD DC is not installed")
    started = time.monotonic()
    try:
        dc = SambaDC().start()
    except SambaMissing as exc:  # pragma: no cover - guarded above
        pytest.fail(str(exc))
    _timings.update(dc.timings, total=time.monotonic() - started)
    yield dc
    dc.destroy()


@pytest.fixture
def ad_ou(samba_dc: SambaDC) -> str:
    """A fresh OU below the domain root, unique to this test."""
    return samba_dc.add_ou()


@pytest.fixture
def ad_directory(samba_dc: SambaDC, ad_ou: str) -> Iterator[ADDirectory]:
    """The ``ad`` kind on this test's OU, bound as the Administrator over verified ldaps."""
    directory = open_ad(samba_dc, ad_ou)
    yield directory
    directory.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _timings:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in _timings.items())
        terminalreporter.write_line(f"Samba AD DC set-up: {parts}")
