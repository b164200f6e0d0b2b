"""The compiled LDIF reader (dirsync.ldif._ldifstream) against a real slapd.

Export of an LDAP directory in server order goes through it; it must write
byte for byte what the Python path (python-ldap's entries through
LDIFWriter.entry) writes, page after page, over plain LDAP and TLS.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.directories import LDAPDirectory, ReadOptions
from dirsync.directories.ldifexport import export
from dirsync.entry import Entry
from dirsync.errors import DirectoryError
from dirsync.ldif.io import LDIFWriter, read_ldif
from dirsync.testing.slapd import SlapdServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_the_extension_is_built() -> None:
    # The test set-up installs libldap's headers: a missing build is a failure.
    from dirsync.ldif import _ldifstream

    assert callable(_ldifstream.write_page)


def _directory(server: SlapdServer, base: str, **kw: object) -> LDAPDirectory:
    return LDAPDirectory(server.url, base=base, bind_dn=server.root_dn,
                         password=server.root_pw, **kw)  # type: ignore[arg-type]


def _both(directory: LDAPDirectory, tmp_path: Path,
          options: ReadOptions | None = None) -> tuple[str, str]:
    native, python = tmp_path / "native.ldif", tmp_path / "python.ldif"
    with open(native, "w", encoding="utf-8") as out:
        n_native = export(directory, out, options or ReadOptions())
    with open(python, "w", encoding="utf-8") as out:
        n_python = export(directory, out, options or ReadOptions(), native=False)
    assert n_native == n_python
    return native.read_text(encoding="utf-8"), python.read_text(encoding="utf-8")


def _tricky_entries(conn: ldap.ldapobject.LDAPObject, base: str, count: int) -> None:
    rng = random.Random(4516)
    pieces = [b"a", b"Z", b" ", b":", b"<", b"\n", b"\r", b"\x00", b"#", "\u00fc".encode(),
              "\u65e5".encode(), b"x" * 90]
    for i in range(count):
        def value(j: int) -> bytes:
            return b"v%d" % j + b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))

        attrs = [("objectClass", [b"inetOrgPerson"]), ("cn", [f"p{i}".encode()]),
                 ("sn", [rng.choice([b" lead", b"trail ", b":colon", b"<angle", b"plain"])]),
                 ("description", [value(j) for j in range(rng.randint(1, 3))]),
                 ("jpegPhoto", [bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))]),
                 ("userPassword", [b"secret"])]
        conn.add_s(f"cn=p{i},{base}", attrs)


def test_native_export_writes_what_the_python_path_writes(slapd: SlapdServer, base: str,
                                                          tmp_path: Path) -> None:
    conn = slapd.connect()
    _tricky_entries(conn, base, 60)
    # The round-trip fixture too: UTF-8 and escaped DNs, folded lines.
    for record in read_ldif(FIXTURES / "roundtrip.ldif"):
        assert isinstance(record, Entry)
        def rebased(text: str) -> str:
            return text.replace("ou=Roundtrip,dc=example,dc=org", f"ou=Roundtrip,{base}")

        attrs = dict(record.attrs)
        if "member" in attrs:
            attrs["member"] = [rebased(v.decode()).encode() for v in attrs["member"]]
        conn.add_s(rebased(record.dn), list(attrs.items()))
    directory = _directory(slapd, base, page_size=7)  # many pages
    native, python = _both(directory, tmp_path)
    assert native == python
    assert native.count("\ndn") + native.startswith("dn") >= 60
    assert "jpegPhoto:: " in native and "userPassword:: " in native
    native, python = _both(directory, tmp_path, ReadOptions(attrs=["*", "+"]))
    assert native == python and "entryUUID: " in native
    native, python = _both(directory, tmp_path, ReadOptions(filter="(sn=plain)",
                                                            attrs=["sn", "cn"]))
    assert native == python


def test_the_native_path_is_taken_for_a_file_and_not_for_a_buffer(slapd: SlapdServer,
                                                                  base: str,
                                                                  tmp_path: Path) -> None:
    directory = _directory(slapd, base)
    with open(tmp_path / "o.ldif", "w", encoding="utf-8") as out:
        assert directory.write_ldif(ReadOptions(), out, LDIFWriter(out)) == 1
    buffer = io.StringIO()
    assert directory.write_ldif(ReadOptions(), buffer, LDIFWriter(buffer)) is None
    assert buffer.getvalue() == ""
    # The export through a buffer still works, by the Python path.
    assert export(directory, buffer, ReadOptions()) == 1
    assert f"dn: {base}" in buffer.getvalue()


def test_a_missing_base_is_empty_and_a_bad_one_an_error(slapd: SlapdServer, base: str,
                                                        tmp_path: Path) -> None:
    missing = _directory(slapd, f"ou=nowhere,{base}")
    native, python = _both(missing, tmp_path)
    assert native == python == "version: 1\n\n"
    bad = _directory(slapd, "this is not a DN")
    for native_path in (True, False):
        with open(tmp_path / "bad.ldif", "w", encoding="utf-8") as out:
            with pytest.raises(DirectoryError, match="(?i)invalid DN"):
                export(bad, out, ReadOptions(), native=native_path)


def test_native_export_over_tls_and_to_stdout(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with SlapdServer(tls=True) as server:
        server.add_suffix()
        directory = LDAPDirectory(server.ldaps_url, base=server.suffix, bind_dn=server.root_dn,
                                  password=server.root_pw)
        directory.tls.ca_file = str(server.ca_file)
        native, python = _both(directory, tmp_path)
        assert native == python and f"dn: {server.suffix}" in native
        monkeypatch.setenv("DIRSYNC_BIND_DN", server.root_dn)
        monkeypatch.setenv("DIRSYNC_PASSWORD", server.root_pw)
        assert main(["export", f"{server.ldaps_url}/{server.suffix}",
                     "--ca-file", str(server.ca_file)]) == 0
        assert capfd.readouterr().out == python


def test_a_connection_object_the_extension_does_not_know_falls_back(
        slapd: SlapdServer, base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dirsync.ldif import _ldifstream

    with pytest.raises(TypeError):
        _ldifstream.socket_of(object())   # refused, never read as a handle
    directory = _directory(slapd, base)

    def refuse(conn: object) -> int:
        raise TypeError("not a python-ldap connection object")

    monkeypatch.setattr(_ldifstream, "socket_of", refuse)
    with open(tmp_path / "o.ldif", "w", encoding="utf-8") as out:
        assert directory.write_ldif(ReadOptions(), out, LDIFWriter(out)) is None
        assert export(directory, out, ReadOptions()) == 1   # by the Python path
    assert f"dn: {base}" in (tmp_path / "o.ldif").read_text(encoding="utf-8")
