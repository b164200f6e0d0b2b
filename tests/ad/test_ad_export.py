"""The export into a real Samba AD DC: hub recipients become AD contacts, with
``direction = "both"`` end to end through ``dirsync --json sync``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ldap
import ldap.modlist
import pytest
from ldap.controls import SimplePagedResultsControl

from dirsync.cli.main import main
from dirsync.directories.ad import ADDirectory
from dirsync.ldif.changes import Change
from dirsync.testing.samba import SambaDC
from dirsync.testing.slapd import SlapdServer, free_port
from dirsync.testing.sync import anchors
from dirsync.testing.tlscerts import make_tls_material
from dirsync.testing.twoway import ldap_directory, write_config

from .helpers import open_ad


def add_hub(slapd: SlapdServer, dn: str, attrs: dict[str, Any]) -> str:
    encoded = {k: [v.encode() for v in (vs if isinstance(vs, list) else [vs])]
               for k, vs in attrs.items()}
    conn = slapd.connect()
    try:
        conn.add_s(dn, ldap.modlist.addModlist(encoded))
    finally:
        conn.unbind_s()
    return dn


def hub_person(slapd: SlapdServer, people: str, uid: str, name: str, mail: str,
               **extra: str | list[str]) -> str:
    given, _, sn = name.partition(" ")
    return add_hub(slapd, f"uid={uid},{people}", {
        "objectClass": ["inetOrgPerson"], "uid": uid, "cn": name, "sn": sn or name,
        "givenName": given, "displayName": name, "mail": mail, **extra})


def hub_modify(slapd: SlapdServer, dn: str, mods: list[tuple[int, str, Any]]) -> None:
    conn = slapd.connect()
    try:
        conn.modify_s(dn, mods)
    finally:
        conn.unbind_s()


def contacts(dc: SambaDC, container: str) -> dict[str, dict[str, list[str]]]:
    """cn -> attributes of every object below ``container`` (the container aside)."""
    conn = dc.connect()
    try:
        found = conn.search_s(container, ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["*"])
    except ldap.NO_SUCH_OBJECT:
        return {}
    finally:
        conn.unbind_s()
    out = {}
    for dn, attrs in found:
        if dn is None:
            continue
        text = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in attrs.items()
                if k not in ("objectGUID", "objectSid", "nTSecurityDescriptor")}
        out[text["cn"][0]] = text
    return out


def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str,
         status: int = 0) -> dict[str, dict[str, Any]]:
    """``dirsync --json sync``: direction -> its line."""
    capsys.readouterr()
    code = main(["-c", str(config), "--json", "sync", *args])
    out, err = capsys.readouterr()
    assert code == status, err + out
    lines = [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]
    return {line["direction"]: line for line in lines}


def writes(line: dict[str, Any]) -> int:
    counts = line["counts"]
    return counts["add"] + counts["modify"] + counts["rename"] + counts["delete"]


def galsync_config(tmp_path: Path, slapd: SlapdServer, base: str, dc: SambaDC, ou: str,
                   **connection: Any) -> Path:
    (tmp_path / "ad.pw").write_text(dc.admin_password + "\n")
    directories = {
        "hub": ldap_directory(slapd, tmp_path, base),
        "ad": {"kind": "ad", "url": dc.url, "base": ou, "bind_dn": dc.admin_upn,
               "password_file": "ad.pw", "ca_file": str(dc.ca_file)},
    }
    table = {"name": "corp-ad", "foreign": "ad", "hub": "hub", "mapping": "ad",
             "direction": "both", "import_container": f"ou=Corp AD,{base}",
             "lists": "group",
             "export_containers": [f"ou=People,{base}"],
             "foreign_container": f"OU=OpenLDAP Partner,{ou}", **connection}
    return write_config(tmp_path, directories, [table])


@pytest.fixture
def people(slapd: SlapdServer, base: str) -> str:
    return add_hub(slapd, f"ou=People,{base}", {"objectClass": ["organizationalUnit"],
                                                 "ou": "People"})


def test_both_directions_end_to_end_through_the_cli(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, people: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sam = hub_person(slapd, people, "swu", "Sam Wu", "sam.wu@example.org",
                     telephoneNumber=["+1 555 0100", "+1 555 0101"], ou="Sales",
                     title="Buyer")
    kim = hub_person(slapd, people, "kim", "Kim Akers", "kim@example.org")
    hub_person(slapd, people, "dan", "Dan Jump", "dan@example.org")
    add_hub(slapd, f"cn=Buyers,{people}", {
        "objectClass": ["groupOfNames", "dirsyncObject"], "cn": "Buyers",
        "member": [sam, kim], "proxyAddresses": "SMTP:buyers@example.org"})
    alice = samba_dc.add_user(ad_ou, "Alice Smith", mail="alice@corp.example",
                              displayName="Alice Smith")
    container = f"OU=OpenLDAP Partner,{ad_ou}"
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou)

    capsys.readouterr()
    assert main(["-c", str(config), "check"]) == 0
    said = capsys.readouterr()
    assert ("targetAddress, mailNickname" in said.out + said.err
            and "the export does not write them" in said.out + said.err)

    first = sync(config, capsys)
    assert (first["import"]["counts"]["add"], first["export"]["counts"]["add"]) == (1, 4)
    # The foreign container is made once, below the directory's base.
    found = contacts(samba_dc, container)
    assert sorted(found) == ["Buyers", "Dan Jump", "Kim Akers", "Sam Wu"]
    # A hub list is a contact too: its mail goes to the hub, which expands it.
    assert "contact" in found["Buyers"]["objectClass"]
    assert found["Buyers"]["proxyAddresses"] == ["SMTP:buyers@example.org"]
    assert "member" not in found["Buyers"]
    wu = found["Sam Wu"]
    assert "contact" in wu["objectClass"]
    assert wu["adminDescription"] == ["corp-ad"]            # the marker
    assert wu["adminDisplayName"] == [hub_uuid(slapd, sam)]  # the anchor
    assert (wu["mail"], wu["proxyAddresses"]) == (["sam.wu@example.org"],
                                                  ["SMTP:sam.wu@example.org"])
    assert (wu["displayName"], wu["givenName"], wu["sn"]) == (["Sam Wu"], ["Sam"], ["Wu"])
    assert (wu["telephoneNumber"], wu["otherTelephone"]) == (["+1 555 0100"], ["+1 555 0101"])
    assert (wu["department"], wu["title"]) == (["Sales"], ["Buyer"])
    assert "targetAddress" not in wu and "mailNickname" not in wu  # no Exchange schema

    # The second and third runs write nothing: the contacts the export wrote
    # come back through DirSync marked, and are not imported (nor do they make
    # the import a full run, as a change would with lists = "group").
    for _ in range(2):
        again = sync(config, capsys)
        assert (writes(again["import"]), writes(again["export"])) == (0, 0)
        assert again["import"]["mode"] == again["export"]["mode"] == "incremental"
    assert list(anchors(slapd, f"ou=Corp AD,{base}", "corp-ad")) == [samba_dc.guid(alice)]

    # An address change, a rename and a delete in the hub follow in AD.
    hub_modify(slapd, kim, [(ldap.MOD_REPLACE, "mail", [b"kim.akers@example.org"])])
    hub_modify(slapd, sam, [(ldap.MOD_REPLACE, "displayName", [b"Samuel Wu"])])
    conn = slapd.connect()
    try:
        conn.delete_s(f"uid=dan,{people}")
    finally:
        conn.unbind_s()
    changed = sync(config, capsys)["export"]
    assert changed["mode"] == "incremental"
    assert (changed["counts"]["modify"], changed["counts"]["rename"],
            changed["counts"]["delete"]) == (1, 1, 1)
    found = contacts(samba_dc, container)
    assert sorted(found) == ["Buyers", "Kim Akers", "Samuel Wu"]
    # The new address is the primary; the former one stays as a secondary
    # (replies to mail from before the change still arrive).
    assert found["Kim Akers"]["mail"] == ["kim.akers@example.org"]
    assert sorted(found["Kim Akers"]["proxyAddresses"]) == ["SMTP:kim.akers@example.org",
                                                            "smtp:kim@example.org"]
    assert found["Samuel Wu"]["displayName"] == ["Samuel Wu"]
    again = sync(config, capsys)
    assert (writes(again["import"]), writes(again["export"])) == (0, 0)
    # A full run reads the exported contacts too, and knows them by their marker.
    full = sync(config, capsys, "--full")
    assert full["import"]["mode"] == full["export"]["mode"] == "full"
    assert (writes(full["import"]), writes(full["export"])) == (0, 0)
    assert full["import"]["counts"]["skipped"] == 3
    assert list(anchors(slapd, f"ou=Corp AD,{base}", "corp-ad")) == [samba_dc.guid(alice)]


def hub_uuid(slapd: SlapdServer, dn: str) -> str:
    conn = slapd.connect()
    try:
        found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["entryUUID"])
    finally:
        conn.unbind_s()
    return str(found[0][1]["entryUUID"][0].decode())


def test_an_address_ad_holds_is_left_out_and_names_its_holder(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, people: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holder = samba_dc.add_user(ad_ou, "Lee Holder", proxies=["SMTP:lee@corp.example"])
    hub_person(slapd, people, "lee", "Lee Hub", "LEE@corp.example",
               proxyAddresses=["SMTP:LEE@corp.example", "smtp:lee.hub@example.org"],
               objectClass=["inetOrgPerson", "dirsyncObject"])
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou, direction="export")
    line = sync(config, capsys, status=1)["export"]   # conflicts: done, not clean
    assert (line["counts"]["add"], line["counts"]["conflict"]) == (1, 2)
    found = contacts(samba_dc, f"OU=OpenLDAP Partner,{ad_ou}")["Lee Hub"]
    # Neither mail nor the SMTP proxy of that address: Lee Holder has it.
    assert "mail" not in found
    assert found["proxyAddresses"] == ["smtp:lee.hub@example.org"]
    report = Path(tmp_path / "var" / "reports")
    text = "\n".join(p.read_text() for p in report.rglob("*") if p.is_file()
                     and p.suffix in (".json", ".txt", ".csv", ".html", ".md"))
    assert holder in text and "holds it in Active Directory" in text

    # An incremental run asks AD about the new addresses of what changed.
    mo = samba_dc.add_contact(ad_ou, "Mo Holder", mail="mo@corp.example")
    hub_person(slapd, people, "mo", "Mo Hub", "Mo@Corp.Example")
    line = sync(config, capsys, status=1)["export"]
    assert (line["mode"], line["counts"]["add"], line["counts"]["conflict"]) == \
        ("incremental", 1, 2)
    found = contacts(samba_dc, f"OU=OpenLDAP Partner,{ad_ou}")["Mo Hub"]
    assert "mail" not in found and "proxyAddresses" not in found
    newest = Path(line["files"]["json"]).read_text()
    assert mo in newest and "holds it in Active Directory" in newest


def test_long_names_fit_64_characters_and_stay_apart(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, people: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long = "Maximiliane Theodora Wilhelmina von und zu Hohenberg-Schwarzenfeld, Jr."
    assert len(long) > 64
    hub_person(slapd, people, "m1", long, "m1@example.org", ou="Legal")
    hub_person(slapd, people, "m2", long + " the Second", "m2@example.org")
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou, direction="export")
    # A plan names the cut names and writes nothing to AD.
    capsys.readouterr()
    assert main(["-c", str(config), "plan"]) == 0
    assert f"cn={long[:64].rstrip()},OU=OpenLDAP Partner" in capsys.readouterr().out
    assert contacts(samba_dc, f"OU=OpenLDAP Partner,{ad_ou}") == {}
    assert sync(config, capsys)["export"]["counts"]["add"] == 2
    names = sorted(contacts(samba_dc, f"OU=OpenLDAP Partner,{ad_ou}"))
    assert all(len(n) <= 64 for n in names)
    cut = long[:64].rstrip()
    assert cut in names                              # the first keeps the plain (cut) name
    other = next(n for n in names if n != cut)
    assert other.endswith(" (2)") and other.startswith(long[:50])   # no qualifier: numbered
    # Nothing changes on the next run: both keep their names.
    assert writes(sync(config, capsys)["export"]) == 0


def test_the_ad_kind_writes_nothing_outside_its_scope(samba_dc: SambaDC, ad_ou: str) -> None:
    directory: ADDirectory = open_ad(samba_dc, ad_ou)
    inside = samba_dc.add_ou(parent=ad_ou)
    outside = f"CN=Stray,{ad_ou}"
    add = Change("add", outside, attrs={"objectClass": [b"contact"]})
    try:
        # No scope: nothing at all may be written.
        [result] = list(directory.apply([add], stop_on_error=False))
        assert result.error is not None and "foreign_container" in result.error.message
        directory.write_scope = inside
        results = list(directory.apply([
            add,
            Change("add", f"CN=Ok,{inside}", attrs={"objectClass": [b"contact"]}),
            Change("modrdn", f"CN=Ok,{inside}", newrdn="CN=Ok", deleteoldrdn=True,
                   newsuperior=ad_ou),
            Change("delete", inside)], stop_on_error=False))
        assert [r.ok for r in results] == [False, True, False, False]
        assert "outside the foreign_container" in results[0].error.message  # type: ignore[union-attr]
    finally:
        directory.close()
    conn = samba_dc.connect()
    try:
        found = [dn for dn, _ in conn.search_s(ad_ou, ldap.SCOPE_SUBTREE, "(cn=*)", ["1.1"])
                 if dn]
    finally:
        conn.unbind_s()
    assert not any(dn.lower().startswith("cn=stray") for dn in found)
    assert f"CN=Ok,{inside}".lower() in [dn.lower() for dn in found]


def test_a_foreign_container_whose_parent_is_missing_is_a_config_error(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, people: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub_person(slapd, people, "ann", "Ann Beebe", "ann@example.org")
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou, direction="export",
                            foreign_container=f"OU=Inner,OU=Missing,{ad_ou}")
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 2
    said = capsys.readouterr()
    assert f"OU=Missing,{ad_ou} does not exist in Active Directory" in said.err
    assert "Traceback" not in said.err + said.out
    conn = samba_dc.connect()
    try:
        assert conn.search_s(ad_ou, ldap.SCOPE_ONELEVEL, "(objectClass=*)", ["1.1"]) == []
    finally:
        conn.unbind_s()


@pytest.mark.parametrize("fault", ["password", "certificate", "unreachable"])
def test_a_sync_both_ways_stops_with_exit_2_and_one_clear_line(
        fault: str, samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str,
        people: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub_person(slapd, people, "eve", "Eve Fault", "eve@example.org")
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou)
    text = config.read_text()
    if fault == "password":
        (tmp_path / "ad.pw").write_text("not-the-password\n")
        expected = "wrong password (or unknown account) (AD data 52e)"
    elif fault == "certificate":
        other = make_tls_material(tmp_path).ca_file   # a CA that did not sign the DC's
        text = text.replace(str(samba_dc.ca_file), str(other))
        expected = "the DC's certificate is not trusted"
    else:
        text = text.replace(samba_dc.url, f"ldaps://127.0.0.1:{free_port()}")
        expected = "cannot reach the domain controller at 127.0.0.1:"
    config.write_text(text)
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 2
    out, err = capsys.readouterr()
    assert expected in err and "Traceback" not in out + err
    assert contacts(samba_dc, f"OU=OpenLDAP Partner,{ad_ou}") == {}


def test_a_marked_user_in_the_container_is_never_the_exports(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, people: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    container = samba_dc.add_ou("OpenLDAP Partner", parent=ad_ou)
    # A user someone marked with the connection's name and a hub anchor.
    ivy = hub_person(slapd, people, "ivy", "Ivy Marked", "ivy@example.org")
    victim = samba_dc.add_user(container, "Ivy Marked", mail="ivy.ad@corp.example",
                               adminDescription="corp-ad",
                               adminDisplayName=hub_uuid(slapd, ivy))
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou, direction="export")
    line = sync(config, capsys, status=1)["export"]
    # Its name is taken by an object the connection does not own: a conflict.
    assert (line["counts"]["add"], line["counts"]["delete"], line["counts"]["conflict"]) == \
        (0, 0, 1)
    conn = samba_dc.connect()
    try:
        found = conn.search_s(victim, ldap.SCOPE_BASE, "(objectClass=*)", ["objectClass", "mail"])
    finally:
        conn.unbind_s()
    assert b"user" in found[0][1]["objectClass"]
    assert found[0][1]["mail"] == [b"ivy.ad@corp.example"]


def count_below(dc: SambaDC, container: str, filterstr: str) -> int:
    """Objects below ``container`` that match, read a page at a time (AD
    answers at most 1,000 entries to a search without paging)."""
    conn = dc.connect()
    try:
        page = SimplePagedResultsControl(True, size=500, cookie=b"")
        count = 0
        while True:
            msgid = conn.search_ext(container, ldap.SCOPE_ONELEVEL, filterstr, ["cn"],
                                    serverctrls=[page])
            _, found, _, controls = conn.result3(msgid)
            count += sum(1 for dn, _ in found if dn is not None)
            cookie = next((c.cookie for c in controls
                           if c.controlType == SimplePagedResultsControl.controlType), b"")
            if not cookie:
                return count
            page.cookie = cookie
    finally:
        conn.unbind_s()


def test_an_export_of_thousands_arrives_whole_with_the_default_write_window(
        samba_dc: SambaDC, ad_ou: str, slapd: SlapdServer, base: str, people: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Three times the default window (256 writes outstanding on the
    # connection): Samba must take the pipelined adds, then the modifies
    # of a second run, without refusing or dropping one.
    total = 768
    conn = slapd.connect()
    try:
        for n in range(total):
            uid = f"p{n:05d}"
            conn.add_s(f"uid={uid},{people}", ldap.modlist.addModlist({
                "objectClass": [b"inetOrgPerson"], "uid": [uid.encode()],
                "cn": [f"Person {n}".encode()], "sn": [b"Person"],
                "mail": [f"{uid}@example.org".encode()]}))
    finally:
        conn.unbind_s()
    config = galsync_config(tmp_path, slapd, base, samba_dc, ad_ou, direction="export")
    container = f"OU=OpenLDAP Partner,{ad_ou}"

    first = sync(config, capsys)["export"]
    assert (first["counts"]["add"], first["counts"]["error"]) == (total, 0)
    assert count_below(samba_dc, container, "(&(objectClass=contact)(mail=*))") == total

    conn = slapd.connect()
    try:
        for n in range(0, total, 2):
            conn.modify_s(f"uid=p{n:05d},{people}",
                          [(ldap.MOD_REPLACE, "title", [b"Buyer"])])
    finally:
        conn.unbind_s()
    second = sync(config, capsys)["export"]
    assert (second["counts"]["modify"], second["counts"]["error"]) == (total // 2, 0)
    assert count_below(samba_dc, container, "(title=Buyer)") == total // 2
    assert writes(sync(config, capsys)["export"]) == 0
