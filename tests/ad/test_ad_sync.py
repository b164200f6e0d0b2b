"""``dirsync sync`` importing from a real Samba AD DC into a slapd hub, full and by DirSync."""

from __future__ import annotations

import json
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.state.store import StateStore
from dirsync.sync.changestate import DIRSYNC, USN
from dirsync.testing.samba import SambaDC
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import anchors, first, hub_config, search, values


def last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def ad_config(tmp_path: Path, slapd: SlapdServer, dc: SambaDC, ou: str, container: str) -> Path:
    (tmp_path / "ad.pw").write_text(dc.admin_password + "\n")
    config = hub_config(tmp_path, slapd, container, tmp_path / "unused", mapping="ad",
                        lists="group", name="corp-ad")
    text = config.read_text().replace(
        f'[directories.foreign]\nkind = "csv"\npath = "{tmp_path / "unused"}"\nkey = "Alias"',
        f'[directories.foreign]\nkind = "ad"\nurl = "{dc.url}"\nbase = "{ou}"\n'
        f'bind_dn = "{dc.admin_upn}"\npassword_file = "ad.pw"\nca_file = "{dc.ca_file}"')
    config.write_text(text)
    return config


def test_check_says_when_the_account_lacks_the_dirsync_right(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    password = "Svc-Check!pass1"
    svc = samba_dc.add_user(ad_ou, "svc-check", password=password)
    config = ad_config(tmp_path, slapd, samba_dc, ad_ou, f"ou=Corp AD,{base}")
    (tmp_path / "ad.pw").write_text(password + "\n")
    config.write_text(config.read_text().replace(f'bind_dn = "{samba_dc.admin_upn}"',
                                                 f'bind_dn = "{svc}"'))
    capsys.readouterr()
    # A problem with DirSync (the default change_reads), a note with uSNChanged.
    assert main(["-c", str(config), "check"]) == 2
    said = capsys.readouterr()
    assert "lacks the \"Replicating Directory Changes\" right" in said.out + said.err
    config.write_text(config.read_text().replace('kind = "ad"\n',
                                                 'kind = "ad"\nchange_reads = "usn"\n', 1))
    assert main(["-c", str(config), "check"]) == 0
    said = capsys.readouterr()
    assert "changes are read by uSNChanged" in said.out
    assert "Replicating Directory Changes" not in said.out + said.err


def sync(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0, capsys.readouterr().err
    line = last_line(capsys)
    MODES.append(str(line["mode"]))
    return line["counts"]  # type: ignore[return-value]


MODES: list[str] = []


def test_sync_imports_ad_recipients_into_the_hub(samba_dc: SambaDC, ad_ou: str,
                                                 slapd: SlapdServer, base: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    alice = samba_dc.add_user(ad_ou, "Alice Smith", mail="alice@corp.example",
                              proxies=["SMTP:alice.smith@corp.example", "smtp:alice@corp.example",
                                       "X500:/o=Corp/ou=Admin/cn=Recipients/cn=asmith",
                                       "SIP:alice@corp.example"],
                              givenName="Alice", sn="Smith", displayName="Alice Smith",
                              department="Sales")
    bob = samba_dc.add_user(ad_ou, "Bob Jones", mail="bob@corp.example", sn="Jones")
    carl = samba_dc.add_contact(ad_ou, "Carl Partner", mail="carl@partner.example")
    samba_dc.add_user(ad_ou, "Dora Disabled", mail="dora@corp.example", disabled=True)
    samba_dc.add_user(ad_ou, "No Mail")
    sales = samba_dc.add_group(ad_ou, "Sales Team", members=[alice, carl],
                               mail="sales@corp.example")
    guids = {dn: samba_dc.guid(dn) for dn in (alice, bob, carl, sales)}
    container = f"ou=Corp AD,{base}"
    config = ad_config(tmp_path, slapd, samba_dc, ad_ou, container)
    capsys.readouterr()
    assert main(["-c", str(config), "check"]) == 0
    said = capsys.readouterr()
    assert f"{samba_dc.admin_upn} may read changes with DirSync" in said.out + said.err
    assert "no Exchange attributes" in said.out + said.err

    counts = sync(config, capsys)
    assert MODES[-1] == "full"
    assert counts["add"] == 4
    assert sorted(anchors(slapd, container, "corp-ad")) == sorted(guids.values())
    alice_hub = next(iter(search(slapd, f"cn=Alice Smith,{container}", attrs=["*"],
                                 scope=ldap.SCOPE_BASE).values()))
    assert first(alice_hub, "targetAddress") == "SMTP:alice.smith@corp.example"
    assert sorted(values(alice_hub, "proxyAddresses")) == sorted([
        "SMTP:alice.smith@corp.example", "smtp:alice@corp.example",
        "X500:/o=Corp/ou=Admin/cn=Recipients/cn=asmith"])  # SIP: is not a mail address
    assert first(alice_hub, "ou") == "Sales"
    group = next(iter(search(slapd, f"cn=Sales Team,{container}", attrs=["member"],
                             scope=ldap.SCOPE_BASE).values()))
    assert sorted(values(group, "member")) == sorted([f"cn=Alice Smith,{container}",
                                                      f"cn=Carl Partner,{container}"])

    # A rename keeps the anchor (a modrdn in the hub); a disable deletes.
    samba_dc.rename(carl, "CN=Carl Renamed")
    samba_dc.modify(carl.replace("CN=Carl Partner", "CN=Carl Renamed"),
                    [(ldap.MOD_REPLACE, "displayName", [b"Carl Renamed"])])
    samba_dc.set_enabled(bob, False)
    counts = sync(config, capsys)
    # Carl renamed, Sales's member value follows him, Bob deleted, Alice unchanged.
    assert (counts["rename"], counts["modify"], counts["delete"], counts["unchanged"],
            counts["add"]) == (1, 1, 1, 1, 0)
    assert guids[bob] not in anchors(slapd, container, "corp-ad")
    renamed = search(slapd, f"cn=Carl Renamed,{container}", attrs=["dirsyncAnchor"],
                     scope=ldap.SCOPE_BASE)
    assert [first(a, "dirsyncAnchor") for a in renamed.values()] == [guids[carl]]

    # Nothing changed in AD: DirSync says so, and nothing is written.
    MODES.clear()
    counts = sync(config, capsys)
    assert counts["unchanged"] == 3
    assert MODES == ["incremental"]
    assert counts["add"] == counts["delete"] == counts["modify"] == counts["rename"] == 0


def test_incremental_runs_read_ad_changes_with_dirsync(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    alice = samba_dc.add_user(ad_ou, "Alice Inc", mail="alice.inc@corp.example",
                              displayName="Alice Inc")
    bob = samba_dc.add_user(ad_ou, "Bob Inc", mail="bob.inc@corp.example")
    carl = samba_dc.add_contact(ad_ou, "Carl Inc", mail="carl.inc@partner.example")
    dan = samba_dc.add_user(ad_ou, "Dan Inc", mail="dan.inc@corp.example")
    guids = {dn: samba_dc.guid(dn) for dn in (alice, bob, carl, dan)}
    container = f"ou=Corp AD,{base}"
    config = ad_config(tmp_path, slapd, samba_dc, ad_ou, container)
    config.write_text(config.read_text().replace('lists = "group"', 'lists = "contact"'))
    MODES.clear()

    def changes(counts: dict[str, int]) -> tuple[int, int, int, int]:
        return counts["add"], counts["modify"], counts["rename"], counts["delete"]

    assert changes(sync(config, capsys)) == (4, 0, 0, 0)
    assert MODES[-1] == "full"
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        assert state.cursor("corp-ad", "import", DIRSYNC)  # the full run started a cursor

    # A modify: read by DirSync, applied once.
    samba_dc.modify(alice, [(ldap.MOD_REPLACE, "department", [b"Logistics"])])
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts), counts["unchanged"]) == ("incremental", (0, 1, 0, 0), 3)
    hub_alice = next(iter(search(slapd, f"cn=Alice Inc,{container}", attrs=["ou"],
                                 scope=ldap.SCOPE_BASE).values()))
    assert first(hub_alice, "ou") == "Logistics"

    # A rename keeps the anchor: a modrdn in the hub.
    samba_dc.rename(carl, "CN=Carl Renamed Inc")
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts)[0], changes(counts)[2:]) == ("incremental", 0, (1, 0))
    renamed = search(slapd, f"cn=Carl Renamed Inc,{container}", attrs=["dirsyncAnchor"],
                     scope=ldap.SCOPE_BASE)
    assert [first(a, "dirsyncAnchor") for a in renamed.values()] == [guids[carl]]

    # A delete in AD deletes the hub entry.
    samba_dc.delete(dan)
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts)) == ("incremental", (0, 0, 0, 1))
    assert guids[dan] not in anchors(slapd, container, "corp-ad")

    # A disabled user is no longer a recipient: a delete.
    samba_dc.set_enabled(bob, False)
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts)) == ("incremental", (0, 0, 0, 1))
    assert sorted(anchors(slapd, container, "corp-ad")) == sorted([guids[alice], guids[carl]])

    # Enabled again: a recipient again, added back once.
    samba_dc.set_enabled(bob, True)
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts)) == ("incremental", (1, 0, 0, 0))
    assert sorted(anchors(slapd, container, "corp-ad")) == sorted([guids[alice], guids[carl],
                                                                   guids[bob]])
    samba_dc.set_enabled(bob, False)
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts)) == ("incremental", (0, 0, 0, 1))

    # Nothing changed: nothing written, still incremental.
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts), counts["unchanged"]) == ("incremental", (0, 0, 0, 0), 2)

    # Moved out of the base: gone from the address book.
    elsewhere = samba_dc.add_ou()
    samba_dc.add_user(elsewhere, "Gus Outside", mail="gus.outside@corp.example")
    samba_dc.rename(carl.replace("CN=Carl Inc", "CN=Carl Renamed Inc"), "CN=Carl Renamed Inc",
                    elsewhere)
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts), counts["unchanged"]) == ("incremental", (0, 0, 0, 1), 1)
    assert list(anchors(slapd, container, "corp-ad")) == [guids[alice]]

    # A damaged cookie: the DC refuses it, and the run is a full one that changes nothing.
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        state.set_cursor("corp-ad", "import", DIRSYNC, "TVNEUwAAAAA=")  # "MSDS" and zeros
    counts = sync(config, capsys)
    assert (MODES[-1], changes(counts), counts["unchanged"]) == ("full", (0, 0, 0, 0), 1)
    counts = sync(config, capsys)
    assert MODES[-1] == "incremental"


def test_an_account_without_the_dirsync_right_stops_or_reads_changes_by_usn(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    password = "Svc-Sync!pass1"
    svc = samba_dc.add_user(ad_ou, "svc-sync", password=password)
    erin = samba_dc.add_user(ad_ou, "Erin NoRight", mail="erin.noright@corp.example")
    container = f"ou=Corp AD,{base}"
    config = ad_config(tmp_path, slapd, samba_dc, ad_ou, container)
    config.write_text(config.read_text().replace('lists = "group"', 'lists = "contact"'))
    (tmp_path / "ad.pw").write_text(password + "\n")
    config.write_text(config.read_text().replace(f'bind_dn = "{samba_dc.admin_upn}"',
                                                 f'bind_dn = "{svc}"'))
    # DirSync (the default) without the right: exit 2, a hint, nothing written.
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 2
    err = capsys.readouterr().err
    assert "Replicating Directory Changes" in err and 'change_reads = "usn"' in err
    assert "Traceback" not in err
    assert search(slapd, container) == {}
    assert main(["-c", str(config), "check"]) == 2
    assert "Replicating Directory Changes" in capsys.readouterr().out
    # Chosen in the config: uSNChanged, deletes by the next full run.
    text = config.read_text()
    config.write_text(text.replace('kind = "ad"\n', 'kind = "ad"\nchange_reads = "usn"\n', 1))
    assert config.read_text() != text
    MODES.clear()
    assert sync(config, capsys)["add"] == 1
    samba_dc.add_user(ad_ou, "Finn NoRight", mail="finn.noright@corp.example")
    counts = sync(config, capsys)
    assert (counts["add"], counts["unchanged"]) == (1, 1)
    # uSNChanged cannot see a delete: it waits for a full run.
    samba_dc.delete(erin)
    assert sync(config, capsys)["delete"] == 0
    assert MODES == ["full", "incremental", "incremental"]
    with StateStore(tmp_path / "var" / "state.sqlite") as state:
        assert state.cursor("corp-ad", "import", DIRSYNC) is None
        assert state.cursor("corp-ad", "import", USN) is not None
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync", "--full"]) == 0
    line = last_line(capsys)
    assert (line["mode"], line["counts"]["delete"]) == ("full", 1)  # type: ignore[index]


def add_contacts(dc: SambaDC, parent: str, count: int, prefix: str) -> list[str]:
    """``count`` mail-enabled contacts, in one transaction."""
    dns = [f"CN={prefix} {i:04d},{parent}" for i in range(count)]
    dc.bulk_add([(dn, {"objectClass": ["contact"],
                       "mail": [f"{prefix.lower()}{i}@partner.example"]})
                 for i, dn in enumerate(dns)])
    return dns


def test_a_group_of_1600_members_arrives_whole_end_to_end(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    members = add_contacts(samba_dc, ad_ou, 1600, "Big")
    samba_dc.add_group(ad_ou, "All Partners", members=members, mail="partners@corp.example")
    container = f"ou=Corp AD,{base}"
    config = ad_config(tmp_path, slapd, samba_dc, ad_ou, container)
    counts = sync(config, capsys)
    assert counts["add"] == 1601 and counts["error"] == 0
    group = next(iter(search(slapd, f"cn=All Partners,{container}", attrs=["member"],
                             scope=ldap.SCOPE_BASE).values()))
    assert len(values(group, "member")) == 1600
    assert sorted(values(group, "member")) == sorted(
        f"cn=Big {i:04d},{container}" for i in range(1600))

    # A renamed member: DirSync names the member, not the group; the hub
    # group follows because a change in lists = "group" mode reads AD whole.
    samba_dc.rename(members[7], "CN=Big Renamed")
    counts = sync(config, capsys)
    assert (counts["rename"], counts["modify"], counts["add"], counts["delete"]) == (1, 1, 0, 0)
    group = next(iter(search(slapd, f"cn=All Partners,{container}", attrs=["member"],
                             scope=ldap.SCOPE_BASE).values()))
    assert len(values(group, "member")) == 1600
    assert f"cn=Big Renamed,{container}" in values(group, "member")
    assert f"cn=Big 0007,{container}" not in values(group, "member")
