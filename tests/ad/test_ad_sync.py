"""``dirsync sync`` importing from a real Samba AD DC into a slapd hub (full reads)."""

from __future__ import annotations

import json
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
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
    assert main(["-c", str(config), "check"]) == 0
    said = capsys.readouterr()
    assert "lacks the \"Replicating Directory Changes\" right" in said.out + said.err


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

    # Nothing changed in AD: nothing is written.
    MODES.clear()
    counts = sync(config, capsys)
    assert counts["unchanged"] == 3
    # The engine has no change reads for an ad directory yet: every run reads
    # AD whole and compares; the runs after the first are labelled
    # incremental, as for a CSV source that changed.
    assert MODES == ["incremental"]
    assert counts["add"] == counts["delete"] == counts["modify"] == counts["rename"] == 0
