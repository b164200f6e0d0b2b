"""DirSync change reads against a real Samba AD DC: each change seen once."""

from __future__ import annotations

import ldap
import pytest

from dirsync.directories import ADDirectory
from dirsync.directories.addirsync import (
    ADChange,
    DirSyncCookieRefused,
    MissingDirSyncRight,
    read_dirsync,
)
from dirsync.directories.syncrepl import RefreshRequired
from dirsync.errors import FatalDirectoryError
from dirsync.testing.samba import SambaDC

from .helpers import open_ad


def changes_since(directory: ADDirectory, cookie: bytes | None,
                  ou: str) -> tuple[dict[str, ADChange], bytes]:
    """This test's changes (the whole domain shares the stream), by GUID, and the cookie."""
    read = read_dirsync(directory, cookie)
    found: dict[str, ADChange] = {}
    for change in read:
        assert change.guid not in found, f"{change.guid} reported twice in one read"
        if ou.lower() in change.dn.lower() or change.deleted:
            found[change.guid] = change
    assert read.cookie and read.cookie.startswith(b"MSDS")
    assert not read.rejected
    return found, read.cookie


def test_each_change_is_seen_exactly_once(samba_dc: SambaDC, ad_ou: str,
                                          ad_directory: ADDirectory) -> None:
    other_ou = samba_dc.add_ou()
    alice = samba_dc.add_user(ad_ou, "Alice", mail="alice@corp.example")
    bob = samba_dc.add_user(ad_ou, "Bob", mail="bob@corp.example")
    carl = samba_dc.add_contact(ad_ou, "Carl", mail="carl@partner.example")
    dave = samba_dc.add_user(ad_ou, "Dave", mail="dave@corp.example")
    erin = samba_dc.add_user(ad_ou, "Erin", mail="erin@corp.example")
    team = samba_dc.add_group(ad_ou, "Team", members=[alice], mail="team@corp.example")
    guids = {dn: samba_dc.guid(dn) for dn in (alice, bob, carl, dave, erin, team)}

    first, cookie = changes_since(ad_directory, None, ad_ou)
    assert set(guids.values()) <= set(first)
    assert first[guids[alice]].attrs.first("mail") == "alice@corp.example"

    # Nothing changed: nothing comes back.
    again, cookie = changes_since(ad_directory, cookie, ad_ou)
    assert again == {}

    samba_dc.modify(alice, [(ldap.MOD_REPLACE, "telephoneNumber", [b"+1 555 0100"])])
    samba_dc.rename(bob, "CN=Robert")
    samba_dc.rename(carl, "CN=Carl", other_ou)
    samba_dc.delete(dave)
    samba_dc.set_enabled(erin, False)
    samba_dc.modify(team, [(ldap.MOD_ADD, "member", [bob.replace("CN=Bob", "CN=Robert")
                                                      .encode()])])

    changed, cookie = changes_since(ad_directory, cookie, ad_ou)
    # The move left this test's OU: look for it by GUID in a read of its own.
    assert set(changed) >= {guids[alice], guids[bob], guids[dave], guids[erin], guids[team]}

    modify = changed[guids[alice]]
    assert modify.attrs.texts("telephoneNumber") == ["+1 555 0100"]
    assert "mail" not in modify.attrs  # a partial attribute set: only what changed
    assert not modify.deleted and not modify.renamed

    rename = changed[guids[bob]]
    assert rename.renamed and rename.dn.startswith("CN=Robert,")
    assert rename.attrs.first("name") == "Robert"

    delete = changed[guids[dave]]
    assert delete.deleted and not delete.in_scope
    assert "\\0ADEL:" in delete.dn and "CN=Deleted Objects" in delete.dn

    disable = changed[guids[erin]]
    assert int(disable.attrs.first("userAccountControl") or 0) & 0x2

    members = changed[guids[team]]
    assert [m.decode() for m in members.added["member"]] == [
        bob.replace("CN=Bob", "CN=Robert")]
    assert members.removed == {}

    # The same changes do not come back.
    after, cookie = changes_since(ad_directory, cookie, ad_ou)
    assert after == {}

    # A re-enable, seen once too.
    samba_dc.set_enabled(erin, True)
    enabled, cookie = changes_since(ad_directory, cookie, ad_ou)
    assert list(enabled) == [guids[erin]]
    assert int(enabled[guids[erin]].attrs.first("userAccountControl") or 0) & 0x2 == 0
    assert changes_since(ad_directory, cookie, ad_ou)[0] == {}


def test_a_move_out_of_the_base_is_out_of_scope(samba_dc: SambaDC, ad_ou: str,
                                                ad_directory: ADDirectory) -> None:
    elsewhere = samba_dc.add_ou()
    mover = samba_dc.add_contact(ad_ou, "Mover", mail="mover@partner.example")
    guid = samba_dc.guid(mover)
    _, cookie = changes_since(ad_directory, None, ad_ou)
    samba_dc.rename(mover, "CN=Mover", elsewhere)
    read = read_dirsync(ad_directory, cookie)
    moved = [c for c in read if c.guid == guid]
    assert len(moved) == 1
    assert moved[0].renamed and not moved[0].in_scope
    assert moved[0].dn.lower().endswith(elsewhere.lower())
    assert moved[0].attrs.first("parentGUID") == samba_dc.guid(elsewhere)


def test_a_removed_member_comes_as_range_0_0(samba_dc: SambaDC, ad_ou: str,
                                             ad_directory: ADDirectory) -> None:
    one = samba_dc.add_user(ad_ou, "One", mail="one@corp.example")
    two = samba_dc.add_user(ad_ou, "Two", mail="two@corp.example")
    group = samba_dc.add_group(ad_ou, "Pair", members=[one, two], mail="pair@corp.example")
    _, cookie = changes_since(ad_directory, None, ad_ou)
    samba_dc.modify(group, [(ldap.MOD_DELETE, "member", [two.encode()])])
    changed, _ = changes_since(ad_directory, cookie, ad_ou)
    change = changed[samba_dc.guid(group)]
    assert [v.decode() for v in change.removed["member"]] == [two]
    assert change.added == {}


def test_a_damaged_cookie_is_refused_clearly(ad_directory: ADDirectory) -> None:
    with pytest.raises(DirSyncCookieRefused, match="refused the DirSync cookie") as caught:
        list(read_dirsync(ad_directory, b"MSDS-not-a-cookie"))
    # The engine's fallback to a full run catches the same class as for syncrepl.
    assert isinstance(caught.value, RefreshRequired)


def test_an_account_without_replicating_directory_changes_is_told_so(
        samba_dc: SambaDC, ad_ou: str) -> None:
    password = "Svc-Pass!word1"
    svc = samba_dc.add_user(ad_ou, "svc-reader", password=password)
    directory = open_ad(samba_dc, ad_ou, bind_dn=svc, password=password)
    try:
        list(directory.read())  # a plain read is allowed
        with pytest.raises(MissingDirSyncRight, match="Replicating Directory Changes") as caught:
            list(read_dirsync(directory, None))
        assert isinstance(caught.value, FatalDirectoryError)
        assert caught.value.exit_status == 2
    finally:
        directory.close()


def test_the_right_once_granted_lets_the_account_read_changes(samba_dc: SambaDC,
                                                              ad_ou: str) -> None:
    password = "Svc-Pass!word2"
    svc = samba_dc.add_user(ad_ou, "svc-granted", password=password)
    samba_dc.add_user(ad_ou, "Seen", mail="seen@corp.example")
    samba_dc.grant_get_changes(svc)
    directory = open_ad(samba_dc, ad_ou, bind_dn=svc, password=password)
    try:
        found, _ = changes_since(directory, None, ad_ou)
        assert samba_dc.guid(f"CN=Seen,{ad_ou}") in found
    finally:
        directory.close()


def test_merged_changes_equal_a_fresh_read(samba_dc: SambaDC, ad_ou: str,
                                           ad_directory: ADDirectory) -> None:
    from dirsync.directories.addirsync import merge_change

    one = samba_dc.add_user(ad_ou, "Uno", mail="uno@corp.example", title="Clerk")
    two = samba_dc.add_contact(ad_ou, "Dos", mail="dos@partner.example")
    three = samba_dc.add_contact(ad_ou, "Tres", mail="tres@partner.example")
    group = samba_dc.add_group(ad_ou, "Trio", members=[one, two], mail="trio@corp.example")
    known = {e.first("objectGUID"): e for e in ad_directory.read()}
    _, cookie = changes_since(ad_directory, None, ad_ou)

    samba_dc.modify(one, [(ldap.MOD_DELETE, "title", None),
                          (ldap.MOD_REPLACE, "telephoneNumber", [b"+1 555 0101"])])
    samba_dc.rename(two, "CN=Dos Renamed")
    samba_dc.modify(group, [(ldap.MOD_ADD, "member", [three.encode()]),
                            (ldap.MOD_DELETE, "member", [one.encode()])])
    changed, _ = changes_since(ad_directory, cookie, ad_ou)
    fresh = {e.first("objectGUID"): e for e in ad_directory.read()}
    compared = ["cn", "name", "mail", "title", "telephoneNumber", "member"]
    merged = {guid: merge_change(known[guid], change) for guid, change in changed.items()}
    assert len(changed) == 3
    for guid, entry in merged.items():
        assert entry.dn == fresh[guid].dn
        for name in compared:
            if name == "member":
                continue
            assert sorted(v.lower() for v in entry.get(name)) == sorted(
                v.lower() for v in fresh[guid].get(name)), (entry.dn, name)
    # A member's rename changes the DN the group shows, but DirSync does not
    # report the group for it: merged members keep the member's old DN. Who
    # merges must follow renames into member values (or key members by GUID).
    trio = samba_dc.guid(group)
    renamed = two.replace("CN=Dos,", "CN=Dos Renamed,")
    assert sorted(merged[trio].texts("member")) == sorted([two, three])
    assert sorted(fresh[trio].texts("member")) == sorted([renamed, three])
