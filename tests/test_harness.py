"""The test harness itself: real slapd servers, replication between two sites."""

from __future__ import annotations

import os

import ldap

from dirsync.testing.slapd import SlapdServer, replicated_pair, wait_for


def test_server_starts_with_the_dirsync_schema_and_stops_by_pid() -> None:
    server = SlapdServer(dbnosync=True).start()
    try:
        server.add_suffix()
        conn = server.connect()
        conn.add_s(f"cn=x,{server.suffix}", [
            ("objectClass", [b"inetOrgPerson", b"dirsyncObject"]), ("cn", [b"x"]),
            ("sn", [b"x"]), ("dirsyncAnchor", [b"A1"]), ("dirsyncSource", [b"po1"]),
            ("proxyAddresses", [b"SMTP:x@example.org", b"smtp:y@example.org"]),
            ("targetAddress", [b"MS:NET/PO1/X"])])
        found = conn.search_s(server.suffix, ldap.SCOPE_SUBTREE,
                              "(proxyAddresses=smtp:X@EXAMPLE.ORG)", ["cn"])
        assert [dn for dn, _ in found] == [f"cn=x,{server.suffix}"]  # case-ignore match
        assert len(str(server.socket_path)) < 100
        pid = server.pid
        assert pid is not None
    finally:
        server.destroy()
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_data_survives_a_restart() -> None:
    server = SlapdServer(dbnosync=True).start()
    try:
        server.add_suffix()
        server.add_ou(f"ou=kept,{server.suffix}")
        server.restart()
        assert server.has_entry(f"ou=kept,{server.suffix}")
    finally:
        server.destroy()


def test_two_sites_replicate_both_ways() -> None:
    site_a, site_b = replicated_pair(dbnosync=True)
    try:
        site_a.add_ou(f"ou=SiteA,{site_a.suffix}")
        site_b.add_ou(f"ou=SiteB,{site_b.suffix}")
        assert wait_for(lambda: site_b.has_entry(f"ou=SiteA,{site_a.suffix}"))
        assert wait_for(lambda: site_a.has_entry(f"ou=SiteB,{site_b.suffix}"))
    finally:
        site_a.destroy()
        site_b.destroy()
