"""Full reads of the ``ad`` kind against a real Samba AD DC."""

from __future__ import annotations

import uuid

import ldap
import pytest

from dirsync.directories import ADDirectory, ReadOptions
from dirsync.entry import Entry
from dirsync.errors import FatalDirectoryError
from dirsync.testing.samba import SambaDC

from .helpers import open_ad


def by_cn(directory: ADDirectory) -> dict[str, Entry]:
    return {entry.first("cn") or "": entry for entry in directory.read()}


def test_reads_mail_enabled_users_contacts_and_groups_with_guid_anchors(
        samba_dc: SambaDC, ad_ou: str, ad_directory: ADDirectory) -> None:
    alice = samba_dc.add_user(ad_ou, "Alice Smith", mail="alice@corp.example",
                              proxies=["SMTP:alice@corp.example", "smtp:asmith@corp.example"],
                              givenName="Alice", sn="Smith", displayName="Alice Smith")
    proxy_only = samba_dc.add_user(ad_ou, "Pat Proxy", proxies=["SMTP:pat@corp.example"])
    carl = samba_dc.add_contact(ad_ou, "Carl Contact", mail="carl@partner.example")
    sales = samba_dc.add_group(ad_ou, "Sales", members=[alice, carl], mail="sales@corp.example")
    samba_dc.add_user(ad_ou, "No Mail")
    samba_dc.add_group(ad_ou, "Plain Group", members=[alice])

    entries = by_cn(ad_directory)

    assert set(entries) == {"Alice Smith", "Pat Proxy", "Carl Contact", "Sales"}
    for dn in (alice, proxy_only, carl, sales):
        cn = ldap.dn.str2dn(dn)[0][0][1]
        entry = entries[cn]
        assert entry.dn == dn
        guid = entry.first("objectGUID")
        assert guid == samba_dc.guid(dn)
        assert str(uuid.UUID(guid)) == guid  # canonical lower-case 8-4-4-4-12
    alice_entry = entries["Alice Smith"]
    assert sorted(alice_entry.texts("proxyAddresses")) == [
        "SMTP:alice@corp.example", "smtp:asmith@corp.example"]
    assert (alice_entry.first("objectSid") or "").startswith("S-1-5-21-")
    assert sorted(entries["Sales"].texts("member")) == sorted([alice, carl])


def test_disabled_and_hidden_entries_are_not_recipients(samba_dc: SambaDC, ad_ou: str) -> None:
    samba_dc.add_user(ad_ou, "Enabled User", mail="on@corp.example")
    samba_dc.add_user(ad_ou, "Disabled User", mail="off@corp.example", disabled=True)
    # Samba's schema has no msExchHideFromAddressLists: the configurable rule hides.
    samba_dc.add_user(ad_ou, "Hidden User", mail="hidden@corp.example",
                      description="hide-from-gal")
    samba_dc.add_contact(ad_ou, "Hidden Contact", mail="hc@partner.example",
                         description="hide-from-gal")
    directory = open_ad(samba_dc, ad_ou, hidden_filter="(description=hide-from-gal)")
    try:
        assert set(by_cn(directory)) == {"Enabled User"}
        assert directory.left_out == {"a disabled user": 1, "hidden from address lists": 2}
    finally:
        directory.close()


def test_a_user_disabled_later_is_left_out_of_the_next_read(
        samba_dc: SambaDC, ad_ou: str, ad_directory: ADDirectory) -> None:
    user = samba_dc.add_user(ad_ou, "Soon Gone", mail="soon@corp.example")
    assert set(by_cn(ad_directory)) == {"Soon Gone"}
    samba_dc.set_enabled(user, False)
    assert set(by_cn(ad_directory)) == set()
    samba_dc.set_enabled(user, True)
    assert set(by_cn(ad_directory)) == {"Soon Gone"}


def test_search_references_of_the_domain_root_are_skipped(samba_dc: SambaDC,
                                                          ad_ou: str) -> None:
    # A subtree search of the naming context also returns references to
    # CN=Configuration and the DNS zones: python-ldap yields them as (None, [url]).
    samba_dc.add_user(ad_ou, "Root Reader", mail="root-reader@corp.example")
    directory = open_ad(samba_dc, samba_dc.base_dn)
    try:
        entries = list(directory.read(ReadOptions(filter="(mail=root-reader@corp.example)")))
        assert [e.first("cn") for e in entries] == ["Root Reader"]
        # The reference really is there, for a plain search of the same base.
        conn = samba_dc.connect()
        found = conn.search_s(samba_dc.base_dn, ldap.SCOPE_SUBTREE,
                              "(mail=root-reader@corp.example)", ["1.1"])
        conn.unbind_s()
        assert any(dn is None for dn, _ in found)
    finally:
        directory.close()


def test_the_naming_context_is_found_from_the_base(samba_dc: SambaDC,
                                                   ad_directory: ADDirectory) -> None:
    assert ad_directory.naming_context() == samba_dc.base_dn


def test_a_bind_by_dn_works_as_well_as_by_upn(samba_dc: SambaDC, ad_ou: str) -> None:
    samba_dc.add_user(ad_ou, "By DN", mail="bydn@corp.example")
    admin_dn = f"CN=Administrator,CN=Users,{samba_dc.base_dn}"
    directory = open_ad(samba_dc, ad_ou, bind_dn=admin_dn)
    try:
        assert set(by_cn(directory)) == {"By DN"}
    finally:
        directory.close()


def test_follow_up_range_reads_against_the_dc(samba_dc: SambaDC, ad_ou: str,
                                              ad_directory: ADDirectory) -> None:
    # Samba answers every value at once unless asked for a range, but it
    # serves ranged requests as AD does: a first answer of ``member;range=0-4``
    # (as AD's 0-1499) is read to its end by the follow-up reads of the kind.
    members = [samba_dc.add_contact(ad_ou, f"Member {i:02d}", mail=f"m{i}@partner.example")
               for i in range(12)]
    group = samba_dc.add_group(ad_ou, "Ranged", members=members, mail="ranged@corp.example")
    conn = samba_dc.connect()
    dn, attrs = conn.search_s(group, ldap.SCOPE_BASE, "(objectClass=*)",
                              ["cn", "member;range=0-4"])[0]
    conn.unbind_s()
    assert list(attrs) == ["cn", "member;range=0-4"] and len(attrs["member;range=0-4"]) == 5
    whole = ad_directory.complete(Entry(dn, attrs))
    assert sorted(whole.texts("member")) == sorted(members)
    assert whole.names() == ["cn", "member"]


def test_changed_objects_are_read_whole_by_guid(samba_dc: SambaDC, ad_ou: str,
                                                ad_directory: ADDirectory) -> None:
    elsewhere = samba_dc.add_ou()
    kept = samba_dc.add_user(ad_ou, "Kept", mail="kept@corp.example", title="Buyer")
    disabled = samba_dc.add_user(ad_ou, "Turned Off", mail="off@corp.example")
    moved = samba_dc.add_contact(ad_ou, "Moved Away", mail="moved@partner.example")
    deleted = samba_dc.add_contact(ad_ou, "Deleted", mail="deleted@partner.example")
    guids = [samba_dc.guid(dn) for dn in (kept, disabled, moved, deleted)]
    samba_dc.set_enabled(disabled, False)
    samba_dc.rename(moved, "CN=Moved Away", elsewhere)
    samba_dc.delete(deleted)
    unknown = "00000000-0000-4000-8000-000000000001"

    result = dict(ad_directory.read_guids([g.upper() for g in guids] + [unknown], batch=2))

    assert list(result) == [*guids, unknown]
    whole = result[guids[0]]
    assert whole is not None and whole.dn == kept
    assert whole.first("title") == "Buyer" and whole.first("mail") == "kept@corp.example"
    assert [result[g] for g in guids[1:]] == [None, None, None]
    assert result[unknown] is None


def test_a_base_that_is_gone_stops_the_read(samba_dc: SambaDC, ad_ou: str) -> None:
    # Reading nothing would look like every recipient deleted.
    directory = open_ad(samba_dc, f"OU=Gone,{ad_ou}")
    try:
        with pytest.raises(FatalDirectoryError, match="OU=Gone,.* does not exist"):
            list(directory.read())
    finally:
        directory.close()
