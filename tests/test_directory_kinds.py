"""The same behaviour from every directory kind (ldap, ldif, csv).

Each kind reads back what it was given, refuses what a server refuses
(an existing entry, a missing parent or entry, a delete of a non-leaf),
stops at the first failure when asked, and keeps memory-bound reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dirsync.directories import CSVDirectory, LDAPDirectory, LDIFDirectory, ReadOptions
from dirsync.directories.base import Directory
from dirsync.directories.csvfile import CSVLayout
from dirsync.entry import make_rdn, normalize_dn
from dirsync.errors import InputError
from dirsync.ldif.changes import Change, Mod
from dirsync.testing.slapd import SlapdServer

KINDS = ["ldap", "ldif", "csv"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def directory(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Directory]:
    if kind == "ldap":
        server: SlapdServer = request.getfixturevalue("slapd")
        base = request.getfixturevalue("base")
        d: Directory = LDAPDirectory(server.url, base=base, bind_dn=server.root_dn,
                                     password=server.root_pw)
    elif kind == "ldif":
        d = LDIFDirectory(tmp_path / "dir.ldif", create=True)
    else:
        d = CSVDirectory(tmp_path / "dir.csv", layout=CSVLayout(key="key",
                                                                 multi_value_separator=";"),
                         create=True)
    yield d
    d.close()


def container(d: Directory) -> str:
    """Where a test's entries go: the test's own subtree, or a file's top."""
    return getattr(d, "base", "") or ""


def person(d: Directory, key: str, **extra: list[bytes]) -> Change:
    parent = container(d)
    if d.kind == "csv":
        attrs = {"key": [key.encode()], "mail": [f"{key}@x.org".encode()], **extra}
        return Change("add", make_rdn("dirsyncAnchor", key), attrs=attrs)
    dn = make_rdn("cn", key) + ("," + parent if parent else "")
    attrs = {"objectClass": [b"inetOrgPerson"], "cn": [key.encode()], "sn": [b"S"],
             "mail": [f"{key}@x.org".encode()], **extra}
    return Change("add", dn, attrs=attrs)


def read_back(d: Directory) -> dict[str, dict[str, list[bytes]]]:
    base = container(d) or None
    return {normalize_dn(e.dn): {k.lower(): sorted(v) for k, v in e.attrs.items()}
            for e in d.read(ReadOptions(base=base, scope="one" if base else None))}


def test_round_trip(directory: Directory) -> None:
    adds = [person(directory, f"p{i}", description=[f"d{i}".encode()]) for i in range(5)]
    results = list(directory.apply(adds))
    assert all(r.ok for r in results) and len(results) == 5
    got = read_back(directory)
    assert set(got) == {normalize_dn(c.dn) for c in adds}
    for change in adds:
        entry = got[normalize_dn(change.dn)]
        assert entry["mail"] == (change.attrs or {})["mail"]
        assert entry["description"] == (change.attrs or {})["description"]


def test_modify_and_delete(directory: Directory) -> None:
    add = person(directory, "m")
    list(directory.apply([add]))
    results = list(directory.apply([
        Change("modify", add.dn, mods=[Mod("replace", "mail", [b"new@x.org"]),
                                       Mod("add", "description", [b"hello"])]),
    ]))
    assert results[0].ok, results[0].error
    entry = read_back(directory)[normalize_dn(add.dn)]
    assert entry["mail"] == [b"new@x.org"] and entry["description"] == [b"hello"]
    assert all(r.ok for r in directory.apply([Change("delete", add.dn)]))
    assert normalize_dn(add.dn) not in read_back(directory)


def test_refuses_what_a_server_refuses(directory: Directory) -> None:
    add = person(directory, "dup")
    list(directory.apply([add]))
    again, = directory.apply([add])
    assert again.error is not None and again.error.result == "entryAlreadyExists"
    ghost = person(directory, "ghost")
    gone, = directory.apply([Change("delete", ghost.dn)])
    assert gone.error is not None and gone.error.result == "noSuchObject"
    bad_value, = directory.apply([Change("modify", add.dn,
                                         mods=[Mod("delete", "mail", [b"absent@x.org"])])])
    assert bad_value.error is not None and bad_value.error.result == "noSuchAttribute"


def test_stop_on_error_applies_nothing_after_the_failure(directory: Directory) -> None:
    first, dup, third = person(directory, "s1"), person(directory, "s1"), person(directory, "s3")
    results = list(directory.apply([first, dup, third], stop_on_error=True))
    assert [r.ok for r in results] == [True, False]
    assert set(read_back(directory)) == {normalize_dn(first.dn)}
    results = list(directory.apply([dup, third], stop_on_error=False))
    assert [r.ok for r in results] == [False, True]
    assert normalize_dn(third.dn) in read_back(directory)


@pytest.mark.parametrize("file_kind", ["ldif", "csv"])
def test_file_kinds_survive_a_reopen(file_kind: str, tmp_path: Path,
                                     request: pytest.FixtureRequest) -> None:
    kind = file_kind
    directory: Directory = (
        LDIFDirectory(tmp_path / "dir.ldif") if kind == "ldif" else
        CSVDirectory(tmp_path / "dir.csv", layout=CSVLayout(key="key")))
    list(directory.apply([person(directory, "kept")]))
    directory.close()
    again = (LDIFDirectory(tmp_path / "dir.ldif") if kind == "ldif" else
             CSVDirectory(tmp_path / "dir.csv", layout=CSVLayout(key="key")))
    assert [e.first("mail") for e in again.read()] == ["kept@x.org"]


def test_ldap_subtree_delete_of_non_leaf_is_refused(slapd: SlapdServer, base: str) -> None:
    d = LDAPDirectory(slapd.url, base=base, bind_dn=slapd.root_dn, password=slapd.root_pw)
    ou = Change("add", f"ou=sub,{base}", attrs={"objectClass": [b"organizationalUnit"],
                                                 "ou": [b"sub"]})
    kid = Change("add", f"cn=kid,ou=sub,{base}",
                 attrs={"objectClass": [b"organizationalRole"], "cn": [b"kid"]})
    assert all(r.ok for r in d.apply([ou, kid]))
    refused, = d.apply([Change("delete", f"ou=sub,{base}")])
    assert refused.error is not None and refused.error.result == "notAllowedOnNonLeaf"


def test_ldif_kind_refuses_the_same_non_leaf_delete(tmp_path: Path) -> None:
    d = LDIFDirectory(tmp_path / "x.ldif")
    list(d.apply([Change("add", "dc=x", attrs={"dc": [b"x"], "objectClass": [b"dcObject"]}),
                  Change("add", "cn=k,dc=x", attrs={"cn": [b"k"]})]))
    refused, = d.apply([Change("delete", "dc=x")])
    assert refused.error is not None and refused.error.result == "notAllowedOnNonLeaf"
    moved, = d.apply([Change("modrdn", "dc=x", newrdn="dc=y", deleteoldrdn=True)])
    assert moved.ok
    assert sorted(e.dn for e in d.read()) == ["cn=k,dc=y", "dc=y"]


def test_a_file_kind_knows_a_leaf_after_deletes_and_renames(tmp_path: Path) -> None:
    """What is below an entry is counted as entries come and go (a delete asks
    without reading every entry), and a rename moves the count along."""
    d = LDIFDirectory(tmp_path / "x.ldif")
    ou = {"objectClass": [b"organizationalUnit"]}
    assert all(r.ok for r in d.apply([
        Change("add", "dc=x", attrs={"dc": [b"x"], "objectClass": [b"dcObject"]}),
        Change("add", "ou=a,dc=x", attrs={"ou": [b"a"], **ou}),
        Change("add", "ou=b,dc=x", attrs={"ou": [b"b"], **ou}),
        Change("add", "cn=k,ou=a,dc=x", attrs={"cn": [b"k"]}),
        Change("add", "cn=l,ou=a,dc=x", attrs={"cn": [b"l"]})]))
    assert all(r.ok for r in d.apply([
        Change("delete", "CN=K,ou=a,dc=x"),      # (another spelling: the same entry)
        Change("modrdn", "cn=l,ou=a,dc=x", newrdn="cn=l", newsuperior="ou=b,dc=x")]))
    assert all(r.ok for r in d.apply([Change("delete", "ou=a,dc=x")]))
    moved, = d.apply([Change("modrdn", "ou=b,dc=x", newrdn="ou=c")])
    assert moved.ok
    refused, = d.apply([Change("delete", "ou=c,dc=x")])
    assert refused.error is not None and refused.error.result == "notAllowedOnNonLeaf"
    assert all(r.ok for r in d.apply([Change("delete", "cn=l,ou=c,dc=x"),
                                      Change("delete", "ou=c,dc=x")]))


def test_csv_bad_rows_are_rejected_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "gal.csv"
    path.write_text("key,mail,name\na,a@x.org,Ann\nb,b@x.org\n,c@x.org,Cee\nd,d@x.org,Dee\n"
                    "a,dup@x.org,Again\n")
    d = CSVDirectory(path, layout=CSVLayout(key="key"))
    assert [e.first("name") for e in d.read()] == ["Ann", "Dee"]
    assert [(r.line, r.result) for r in d.rejected] == [(3, "badRow"), (4, "badRow"),
                                                        (6, "duplicateKey")]


def test_csv_blank_rows_are_skipped_and_names_found_in_any_case(tmp_path: Path) -> None:
    # Rows of blank cells (any number of them) are no entries and no errors;
    # a row with one cell that is not blank is a row.
    path = tmp_path / "gal.csv"
    path.write_text("Key,Mail,Name\n,,\n  , \t,\n\n ,x@x.org,\na,a@x.org, Ann \n , \n")
    d = CSVDirectory(path, layout=CSVLayout(key="Key"))
    entries = list(d.read())
    assert [(e.first("name"), e.first("MAIL"), e.line) for e in entries] == \
        [("Ann", "a@x.org", 6)]
    assert "mail" in entries[0] and entries[0].key("NAME") == "Name"
    assert [(r.line, r.result) for r in d.rejected] == [(5, "badRow")]


def test_csv_that_is_not_csv_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    path.write_text('key,mail\na,"unterminated\n')
    with pytest.raises(InputError) as caught:
        list(CSVDirectory(path, layout=CSVLayout(key="key")).read())
    assert caught.value.path == str(path) and caught.value.line is not None


def test_csv_missing_key_column_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "nokey.csv"
    path.write_text("mail,name\na@x.org,Ann\n")
    with pytest.raises(InputError) as caught:
        list(CSVDirectory(path, layout=CSVLayout(key="Mailbox")).read())
    assert caught.value.field == "Mailbox" and caught.value.line == 1


def _roles(base: str, prefix: str, count: int) -> list[Change]:
    """``count`` adds of organizationalRole entries cn=<prefix><i> under ``base``."""
    return [Change("add", f"cn={prefix}{i},{base}",
                   attrs={"objectClass": [b"organizationalRole"],
                          "cn": [f"{prefix}{i}".encode()]})
            for i in range(count)]


def _paged(server: SlapdServer, base: str, page_size: int) -> LDAPDirectory:
    return LDAPDirectory(server.url, base=base, bind_dn=server.root_dn,
                         password=server.root_pw, page_size=page_size)


def test_ldap_reads_stream_in_pages(slapd: SlapdServer, base: str) -> None:
    d = _paged(slapd, base, 7)
    assert all(r.ok for r in d.apply(_roles(base, "p", 50)))
    reader = d.read(ReadOptions(scope="one"))
    first = next(reader)
    assert first.dn.endswith(base)
    assert 1 + sum(1 for _ in reader) == 50


def test_ldap_read_stopped_early_leaves_the_connection_clean(slapd: SlapdServer,
                                                              base: str) -> None:
    # The rest of an abandoned page must not be taken for the results of
    # later pipelined writes on the same connection.
    d = _paged(slapd, base, 40)
    assert all(r.ok for r in d.apply(_roles(base, "q", 30)))
    reader = d.read(ReadOptions(scope="one"))
    next(reader)
    reader.close()
    more = _roles(base, "r", 30)
    results = list(d.apply(more))
    assert [r.change.dn for r in results] == [c.dn for c in more]
    assert all(r.ok for r in results)
    assert sum(1 for _ in d.read(ReadOptions(scope="one"))) == 60


def test_ldap_writes_between_the_pages_of_a_read(slapd: SlapdServer, base: str) -> None:
    # The server drops a paged search when its connection does anything else
    # between two pages; reads have a connection of their own.
    d = _paged(slapd, base, 5)
    side = f"ou=side,{base}"
    slapd.add_ou(side)
    assert all(r.ok for r in d.apply(_roles(base, "p", 23)))
    seen = []
    for n, entry in enumerate(d.read(ReadOptions(scope="one"))):
        seen.append(entry.dn)
        assert all(r.ok for r in d.apply(_roles(side, f"w{n}-", 1)))  # out of the read
        assert d.get(entry.dn) is not None
        if n == 2:  # a read inside the read
            assert sum(1 for _ in d.read(ReadOptions(scope="one"))) == 24
    assert len(seen) == 24  # the 23 roles and ou=side
