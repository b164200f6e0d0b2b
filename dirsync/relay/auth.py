"""SMTP AUTH (RFC 4954) for the relay: a users file of salted PBKDF2 hashes.

The users file (``relay.auth.users_file``) holds one ``name:hash`` per line;
``#`` starts a comment. A hash is ``pbkdf2-sha256$<iterations>$<salt>$<key>``
with salt and key in base64, as ``dirsync relay hash-password`` prints it.
The relay offers AUTH only after STARTTLS (aiosmtpd's ``auth_require_tls``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from dirsync.errors import ConfigError

SCHEME = "pbkdf2-sha256"
ITERATIONS = 200_000


def hash_password(password: str, *, iterations: int = ITERATIONS,
                  salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"{SCHEME}${iterations}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, key = stored.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(key)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"),
                                     base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def load_users(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, stored = line.partition(":")
        if not colon or not name or not stored.startswith(SCHEME + "$"):
            problems.append(f"line {number}: expected name:{SCHEME}$...")
            continue
        users[name] = stored
    if problems:
        raise ConfigError(problems, path=str(path))
    return users


class Authenticator:
    """An aiosmtpd ``authenticator`` for PLAIN and LOGIN against the users file."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = auth_data.login.decode("utf-8", errors="replace")
        stored = self.users.get(name)
        password = auth_data.password.decode("utf-8", errors="replace")
        if stored is None or not verify_password(password, stored):
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=name)
