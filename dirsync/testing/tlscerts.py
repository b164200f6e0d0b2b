"""A throw-away CA and a server certificate for loopback test servers.

The certificate names ``localhost`` and ``127.0.0.1`` in its
subjectAltName, so clients that verify (libldap with DEMAND, Python's ssl)
accept ``ldaps://127.0.0.1``. Made with the openssl command line, which
every machine that runs slapd or Samba has.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TLSMaterial:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_material(folder: Path) -> TLSMaterial:
    """Write ``ca.pem``, ``server.pem`` and ``server.key`` (mode 0600) into ``folder``."""
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = (folder / n for n in ("server.key", "server.csr", "server.pem"))
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=dirsync test CA", "-keyout", str(ca_key), "-out", str(ca))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(key), "-out", str(csr))
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    # Samba refuses a key file that others may read.
    key.chmod(0o600)
    return TLSMaterial(ca_file=ca, cert_file=cert, key_file=key)
