"""Helpers of the AD tests."""

from __future__ import annotations

from typing import Any

from dirsync.directories import ADDirectory, TLSOptions
from dirsync.testing.samba import SambaDC


def open_ad(dc: SambaDC, base: str, **options: Any) -> ADDirectory:
    options.setdefault("bind_dn", dc.admin_upn)
    options.setdefault("password", dc.admin_password)
    options.setdefault("tls", TLSOptions(ca_file=str(dc.ca_file)))
    return ADDirectory(dc.url, base=base, timeout=10.0, **options)
