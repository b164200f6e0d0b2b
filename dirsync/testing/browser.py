"""Test support: Debian's Chromium, headless, to open a report as a person would."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def have_chromium() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a throw-away profile and nothing fetched
    from the network; ``--dump-dom URL`` prints the page's DOM after load
    (scripts included), ``--screenshot=PNG URL`` takes a picture."""
    profile = tempfile.mkdtemp(prefix="dirsync-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dump_dom(page: Path, *args: str) -> str:
    return chromium(*args, "--dump-dom", page.as_uri()).stdout
