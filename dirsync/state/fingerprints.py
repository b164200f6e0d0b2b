"""Has a file changed since the last run? Size, mtime, then content hash.

Size and modification time are free to read; when both are what the state
recorded, the file is taken as unchanged and not read at all. When either
differs the content is hashed (a copy or a ``touch`` changes the time but
not the content): the same hash is still "unchanged", and only a different
hash makes the run read and diff the file.

A file changed again within the file system's timestamp resolution of the
moment its fingerprint was taken keeps the same size and time (the "racy"
case known from git's index). So size and time are trusted only for a file
whose time was well before the fingerprint was taken; otherwise it is hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_CHUNK = 1 << 20
#: A file modified this close to the fingerprint's taking is hashed again.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class FileFingerprint:
    size: int
    mtime_ns: int
    sha256: str
    taken_ns: int = 0  # when the fingerprint was taken (0: unknown, so racy)

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> FileFingerprint | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(int(data["size"]), int(data["mtime_ns"]), str(data["sha256"]),
                       int(data.get("taken_ns", 0)))
        except (ValueError, KeyError, TypeError):
            return None


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check(path: Path, previous: FileFingerprint | None) -> tuple[bool, FileFingerprint]:
    """(changed, current fingerprint). Reads the file only when size or time moved."""
    stat = os.stat(path)
    if previous is not None and previous.size == stat.st_size \
            and previous.mtime_ns == stat.st_mtime_ns \
            and previous.mtime_ns < previous.taken_ns - RACY_NS:
        return False, previous
    taken = time.time_ns()
    current = FileFingerprint(stat.st_size, stat.st_mtime_ns, content_hash(path), taken)
    changed = previous is None or previous.sha256 != current.sha256
    return changed, current
