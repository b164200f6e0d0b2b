"""DirSync result entries as Samba 4.17 sent them, parsed without a server."""

from __future__ import annotations

import uuid

import pytest

from dirsync.directories.addirsync import (
    DirSyncCookieRefused,
    cookie_bytes,
    cookie_text,
    is_deleted_dn,
    parse_change,
)

BASE = "OU=Staff,DC=dirsync,DC=test"
GUID = "bd7e67bc-4d70-4aa9-9b28-1fcf80b305c3"
RAW = uuid.UUID(GUID).bytes_le
PARENT = "eb1b3a61-1b5e-4b39-9a8e-3d1b2f4d9c11"


def test_a_modify_carries_only_what_changed() -> None:
    change = parse_change(f"CN=Alice,{BASE}", {
        "telephoneNumber": [b"+1 555"], "objectGUID": [RAW], "instanceType": [b"4"]}, BASE)
    assert (change.guid, change.deleted, change.renamed, change.in_scope) == (
        GUID, False, False, True)
    assert change.attrs.texts("telephoneNumber") == ["+1 555"]
    assert change.attrs.first("objectGUID") == GUID


def test_a_cleared_attribute_is_kept_with_no_values() -> None:
    change = parse_change(f"CN=Alice,{BASE}", {"title": [], "objectGUID": [RAW]}, BASE)
    assert "title" in change.attrs and change.attrs.get("title") == []


def test_a_rename_or_move_brings_name_and_parent() -> None:
    change = parse_change(f"CN=Robert,{BASE}", {
        "name": [b"Robert"], "parentGUID": [uuid.UUID(PARENT).bytes_le],
        "objectGUID": [RAW]}, BASE)
    assert change.renamed and change.attrs.first("parentGUID") == PARENT


def test_a_move_out_of_the_base_is_out_of_scope() -> None:
    change = parse_change("CN=Robert,OU=Elsewhere,DC=dirsync,DC=test", {
        "name": [b"Robert"], "objectGUID": [RAW]}, BASE)
    assert change.renamed and not change.in_scope


def test_a_delete_is_recognised_by_its_tombstone_name() -> None:
    dn = f"CN=Alice\\0ADEL:{GUID},CN=Deleted Objects,DC=dirsync,DC=test"
    change = parse_change(dn, {"name": [f"Alice\nDEL:{GUID}".encode()], "objectGUID": [RAW]},
                          BASE)
    assert change.deleted and not change.renamed and not change.in_scope
    assert is_deleted_dn(dn) and not is_deleted_dn(f"CN=Alice DEL,{BASE}")


def test_a_delete_is_recognised_by_is_deleted_too() -> None:
    change = parse_change(f"CN=Alice,{BASE}", {"isDeleted": [b"TRUE"], "objectGUID": [RAW]},
                          BASE)
    assert change.deleted


def test_member_value_changes_under_the_incremental_values_flag() -> None:
    change = parse_change(f"CN=Team,{BASE}", {
        "member;range=1-1": [b"CN=New,OU=Staff,DC=dirsync,DC=test"],
        "member;range=0-0": [b"CN=Old,OU=Staff,DC=dirsync,DC=test"],
        "objectGUID": [RAW]}, BASE)
    assert change.added == {"member": [b"CN=New,OU=Staff,DC=dirsync,DC=test"]}
    assert change.removed == {"member": [b"CN=Old,OU=Staff,DC=dirsync,DC=test"]}
    assert "member" not in change.attrs


@pytest.mark.parametrize(("attrs", "message"), [
    ({"mail": [b"x@y"]}, "no objectGUID"),
    ({"objectGUID": [b"short"]}, "16 bytes"),
    ({"objectGUID": [RAW], "member;range=0-1499": [b"x"]}, "unexpected attribute option"),
    ({"objectGUID": [RAW], "member;range=9-2": []}, "ends before it starts"),
])
def test_unusable_entries_are_refused(attrs: dict[str, list[bytes]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_change(f"CN=X,{BASE}", attrs, BASE)


def test_cookies_round_trip_as_text_and_damage_calls_for_a_full_run() -> None:
    cookie = b"MSDS\x03\x00\x00\x00" + bytes(range(100))
    assert cookie_bytes(cookie_text(cookie)) == cookie
    for damaged in ("not base64!", "", "A" * 200_000):
        with pytest.raises(DirSyncCookieRefused):
            cookie_bytes(damaged)


def test_merge_change_applies_a_partial_change_to_the_whole_object() -> None:
    from dirsync.directories.addirsync import merge_change
    from dirsync.entry import Entry

    known = Entry(f"CN=Team,{BASE}", {
        "objectGUID": [GUID.encode()], "cn": [b"Team"], "mail": [b"team@corp.example"],
        "title": [b"Old"], "member": [b"CN=A,OU=Staff,DC=dirsync,DC=test",
                                      b"CN=B,OU=Staff,DC=dirsync,DC=test"]})
    change = parse_change(f"CN=Team 2,{BASE}", {
        "objectGUID": [RAW], "instanceType": [b"4"], "name": [b"Team 2"], "title": [],
        "mail": [b"team2@corp.example"],
        "member;range=1-1": [b"CN=C,OU=Staff,DC=dirsync,DC=test",
                             b"cn=a,ou=staff,dc=dirsync,dc=test"],   # already there
        "member;range=0-0": [b"CN=B,OU=Staff,DC=dirsync,DC=test"]}, BASE)
    merged = merge_change(known, change)
    assert merged.dn == f"CN=Team 2,{BASE}"
    assert merged.first("mail") == "team2@corp.example" and merged.first("name") == "Team 2"
    assert "title" not in merged and "instanceType" not in merged
    assert merged.texts("member") == ["CN=A,OU=Staff,DC=dirsync,DC=test",
                                      "CN=C,OU=Staff,DC=dirsync,DC=test"]
    assert known.first("title") == "Old"  # the known object is left as it was
