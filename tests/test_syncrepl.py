"""Incremental reads from a real slapd: RFC 4533 refreshOnly and the timestamp fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dirsync.directories import LDAPDirectory
from dirsync.directories.syncrepl import (
    RefreshRequired,
    read_changes,
    read_since_timestamp,
    supports_syncrepl,
)
from dirsync.testing.slapd import SlapdServer


def make_server(**options: object) -> SlapdServer:
    server = SlapdServer(dbnosync=True, **options)  # type: ignore[arg-type]
    server.start()
    server.add_suffix()
    server.add_ou(f"ou=p,{server.suffix}")
    conn = server.connect()
    for i in range(5):
        conn.add_s(f"cn=u{i},ou=p,{server.suffix}", [
            ("objectClass", [b"organizationalRole"]), ("cn", [f"u{i}".encode()])])
    return server


@pytest.fixture(params=["sessionlog", "present-phase"])
def server(request: pytest.FixtureRequest) -> Iterator[SlapdServer]:
    options = {"syncprov": True}
    if request.param == "sessionlog":
        options["sessionlog"] = 100  # type: ignore[assignment]
    s = make_server(**options)
    yield s
    s.destroy()


def directory(server: SlapdServer) -> LDAPDirectory:
    return LDAPDirectory(server.url, base=f"ou=p,{server.suffix}", bind_dn=server.root_dn,
                         password=server.root_pw)


def names(read: object) -> dict[str, str]:
    return {uuid: entry.dn.split(",")[0] for uuid, entry in read}  # type: ignore[attr-defined]


def test_full_then_nothing(server: SlapdServer) -> None:
    d = directory(server)
    first = read_changes(d, None)
    seen = names(first)
    assert first.mode == "full" and sorted(seen.values()) == [
        "cn=u0", "cn=u1", "cn=u2", "cn=u3", "cn=u4", "ou=p"]
    assert first.cookie and first.deleted_among(set(seen)) == set()
    again = read_changes(d, first.cookie)
    assert again.mode == "incremental" and names(again) == {}
    assert again.deleted_among(set(seen)) == set()


def test_add_modify_delete_rename_seen_incrementally(server: SlapdServer) -> None:
    d = directory(server)
    first = read_changes(d, None)
    known = names(first)
    by_name = {v: k for k, v in known.items()}
    conn = server.connect()
    base = f"ou=p,{server.suffix}"
    conn.modify_s(f"cn=u1,{base}", [(2, "description", [b"changed"])])
    conn.delete_s(f"cn=u2,{base}")
    conn.rename_s(f"cn=u3,{base}", "cn=u33")
    conn.add_s(f"cn=new,{base}", [("objectClass", [b"organizationalRole"]), ("cn", [b"new"])])
    read = read_changes(d, first.cookie)
    entries = {uuid: entry for uuid, entry in read}
    assert {e.dn.split(",")[0] for e in entries.values()} == {"cn=u1", "cn=u33", "cn=new"}
    assert entries[by_name["cn=u1"]].get("description") == [b"changed"]
    # The rename keeps its UUID: the caller sees a new DN for a known entry.
    assert entries[by_name["cn=u3"]].dn.startswith("cn=u33,")
    assert read.deleted_among(set(known)) == {by_name["cn=u2"]}


def test_deletes_after_a_restart(server: SlapdServer) -> None:
    d = directory(server)
    first = read_changes(d, None)
    known = names(first)
    by_name = {v: k for k, v in known.items()}
    server.restart()
    server.connect().delete_s(f"cn=u4,ou=p,{server.suffix}")
    read = read_changes(directory(server), first.cookie)
    list(read)
    assert read.deleted_among(set(known)) == {by_name["cn=u4"]}


def test_a_cookie_the_server_cannot_serve_asks_for_a_full_run(server: SlapdServer) -> None:
    future = "rid=000,csn=20991231235959.000000Z#000000#000#000000"
    with pytest.raises(RefreshRequired):
        list(read_changes(directory(server), future))


def test_a_stale_cookie_gives_a_present_phase(server: SlapdServer) -> None:
    d = directory(server)
    known = names(read_changes(d, None))
    by_name = {v: k for k, v in known.items()}
    server.connect().delete_s(f"cn=u0,ou=p,{server.suffix}")
    stale = "rid=000,csn=20000101000000.000000Z#000000#000#000000"
    read = read_changes(d, stale)
    list(read)
    assert read.deleted_among(set(known)) == {by_name["cn=u0"]}


def test_timestamp_fallback_without_syncprov() -> None:
    server = make_server(syncprov=False)
    try:
        import time

        d = directory(server)
        assert not supports_syncrepl(d)
        conn = server.connect()
        time.sleep(1.1)  # modifyTimestamp has one-second resolution
        conn.add_s(f"cn=last,ou=p,{server.suffix}", [("objectClass", [b"organizationalRole"]),
                                                     ("cn", [b"last"])])
        first = read_since_timestamp(d, None)
        known = {u for u, _ in first.changed}
        assert len(known) == 7 and set(first.present) == known and first.high_water
        time.sleep(1.1)
        conn.modify_s(f"cn=u1,ou=p,{server.suffix}", [(2, "description", [b"x"])])
        conn.delete_s(f"cn=u2,ou=p,{server.suffix}")
        later = read_since_timestamp(d, first.high_water)
        changed = {e.dn.split(",")[0] for _, e in later.changed}
        # The overlap second may re-read entries of the last read: harmless,
        # the caller diffs them against its state. The modify must be there.
        assert "cn=u1" in changed and "cn=u0" not in changed
        assert len(known - set(later.present)) == 1
    finally:
        server.destroy()


def test_syncprov_is_detected(server: SlapdServer) -> None:
    assert supports_syncrepl(directory(server))


def test_a_full_read_takes_its_cookie_before_it_reads(server: SlapdServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # An entry written while a full read runs is in that read and in the next
    # incremental one too: the cookie is never ahead of what was read.
    d = directory(server)
    plain_read = d.read

    def read_with_a_write_first(options: object = None) -> object:
        server.connect().add_s(f"cn=late,ou=p,{server.suffix}", [
            ("objectClass", [b"organizationalRole"]), ("cn", [b"late"])])
        return plain_read(options)  # type: ignore[arg-type]

    monkeypatch.setattr(d, "read", read_with_a_write_first)
    full = read_changes(d, None)
    seen = names(full)
    assert "cn=late" in seen.values() and all(seen)   # each with its entryUUID
    monkeypatch.undo()
    after = read_changes(d, full.cookie)
    assert list(names(after).values()) == ["cn=late"]


def test_a_full_read_gives_the_attributes_asked_for_and_every_uuid(server: SlapdServer) -> None:
    from dirsync.directories import ReadOptions

    full = read_changes(directory(server), None, ReadOptions(attrs=["cn"]))
    pairs = list(full)
    assert len(pairs) == 6 and all(uuid for uuid, _ in pairs)   # ou=p and five roles
    # entryUUID, asked for to know each entry's UUID, is not kept.
    assert sorted(tuple(entry.names()) for _, entry in pairs) == [()] + [("cn",)] * 5


def test_entries_read_back_by_uuid_in_chunks(server: SlapdServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from dirsync.directories import ReadOptions, syncrepl

    d = directory(server)
    uuids = {e.dn.split(",")[0]: u for u, e in read_changes(d, None)}
    monkeypatch.setattr(syncrepl, "UUID_CHUNK", 2)   # three searches for five UUIDs
    wanted = [uuids[f"cn=u{i}"] for i in range(5)]
    found = list(syncrepl.read_by_uuids(d, wanted, ReadOptions(
        filter="(!(cn=u3))", attrs=["cn"])))
    assert sorted(e.first("cn") or "" for e in found) == ["u0", "u1", "u2", "u4"]
    assert all(e.first("entryUUID") in wanted for e in found)  # always read with it
    assert list(syncrepl.read_by_uuids(d, [])) == []
