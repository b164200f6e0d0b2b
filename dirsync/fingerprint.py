"""Has a file changed since the last run? Size, mtime, then content hash.

Size and modification time are free to read; when both are what the state
recorded, the file is taken as unchanged and not read at all. When either
differs the content is hashed (a copy or a ``touch`` changes the time but
not the content): the same hash is still "unchanged", and only a different
hash makes the run read and diff the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileFingerprint:
    size: int
    mtime_ns: int
    sha256: str

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> FileFingerprint | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(int(data["size"]), int(data["mtime_ns"]), str(data["sha256"]))
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
            and previous.mtime_ns == stat.st_mtime_ns:
        return False, previous
    current = FileFingerprint(stat.st_size, stat.st_mtime_ns, content_hash(path))
    changed = previous is None or previous.sha256 != current.sha256
    return changed, current
