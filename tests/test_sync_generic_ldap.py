"""The generic-ldap mapping: people and groups of a foreign LDIF file or LDAP server."""

from __future__ import annotations

import json
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.ldif.io import LDIFReader
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import anchors, first, hub_config, search, values

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "fabrikam.ldif"


def last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_an_ldif_export_with_groups(slapd: SlapdServer, base: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Fabrikam,{base}"
    config = hub_config(tmp_path, slapd, container, FIXTURE, mapping="generic-ldap",
                        lists="group", source_kind="ldif", name="fabrikam")
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = last_line(capsys)
    counts = line["counts"]
    assert counts["add"] == 26 and counts["skipped"] == 3      # the o= and two ou= entries
    owned = anchors(slapd, container, "fabrikam")
    with LDIFReader(str(FIXTURE)) as reader:
        records = [r for r in reader if "entryUUID" in r]  # type: ignore[operator]
    assert sorted(owned) == sorted(r.first("entryUUID") for r in records)  # type: ignore[union-attr]
    engineering = search(slapd, f"cn=All Engineering,{container}", attrs=["*"],
                         scope=ldap.SCOPE_BASE)
    members = values(next(iter(engineering.values())), "member")
    assert len(members) == 7 and all(m.endswith(f",{container}") for m in members)
    assert f"cn=Li Chen,{container}" in members
    ted = next(iter(search(slapd, f"cn=Ted Bremer,{container}", attrs=["*"],
                           scope=ldap.SCOPE_BASE).values()))
    assert sorted(values(ted, "proxyAddresses")) == ["SMTP:tbremer@fabrikam.example",
                                                     "smtp:ted.bremer@fabrikam.example"]
    assert first(ted, "targetAddress") == "SMTP:tbremer@fabrikam.example"
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    notes = [e["notes"] for e in report["entries"] if e["dn"].startswith("cn=All Engineering")]
    assert "uid=gone,ou=People,o=Fabrikam,c=US" in notes[0][0]
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    assert last_line(capsys)["counts"]["unchanged"] == 26   # type: ignore[index]


def test_a_live_ldap_source_anchored_by_entry_uuid(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A foreign LDAP server: the anchor is its entryUUID, so a rename there is a
    modrdn here, and the source filter keeps its organizational units out."""
    foreign = f"ou=Foreign,{base}"
    container = f"ou=Import,{base}"
    conn = slapd.connect()
    conn.add_s(foreign, [("objectClass", [b"organizationalUnit"]), ("ou", [b"Foreign"])])
    conn.add_s(f"ou=People,{foreign}", [("objectClass", [b"organizationalUnit"]),
                                        ("ou", [b"People"])])
    for uid, cn in (("ann", "Ann Lee"), ("bob", "Bob Ray"), ("cy", "Cy Young")):
        conn.add_s(f"uid={uid},ou=People,{foreign}", [
            ("objectClass", [b"inetOrgPerson"]), ("uid", [uid.encode()]), ("cn", [cn.encode()]),
            ("sn", [cn.split()[1].encode()]), ("mail", [f"{uid}@fabrikam.example".encode()])])
    conn.add_s(f"cn=Team,{foreign}", [
        ("objectClass", [b"groupOfNames"]), ("cn", [b"Team"]),
        ("member", [f"uid=ann,ou=People,{foreign}".encode(),
                    f"uid=bob,ou=People,{foreign}".encode()])])
    uuids = {dn: attrs["entryUUID"][0].decode() for dn, attrs in
             search(slapd, foreign, "(|(objectClass=inetOrgPerson)(objectClass=groupOfNames))",
                    ["entryUUID"]).items()}
    password = tmp_path / "hub.pw"
    config = hub_config(tmp_path, slapd, container, tmp_path / "unused", mapping="generic-ldap",
                        lists="group", name="fabrikam")
    text = config.read_text().replace(
        f'[directories.foreign]\nkind = "csv"\npath = "{tmp_path / "unused"}"\nkey = "Alias"',
        f'[directories.foreign]\nkind = "ldap"\nurl = "{slapd.url}"\nbase = "{foreign}"\n'
        f'bind_dn = "{slapd.root_dn}"\npassword_file = "{password.name}"')
    config.write_text(text)
    capsys.readouterr()
    assert main(["-c", str(config), "check"]) == 0
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = last_line(capsys)
    assert line["counts"]["add"] == 4 and line["counts"]["skipped"] == 0  # type: ignore[index]
    assert sorted(anchors(slapd, container, "fabrikam")) == sorted(uuids.values())
    team = next(iter(search(slapd, f"cn=Team,{container}", attrs=["member"],
                            scope=ldap.SCOPE_BASE).values()))
    assert sorted(values(team, "member")) == [f"cn=Ann Lee,{container}",
                                              f"cn=Bob Ray,{container}"]
    # Renamed in the foreign directory: renamed (not re-created) in the hub.
    conn.rename_s(f"uid=bob,ou=People,{foreign}", "uid=bob", None, 1)
    conn.modify_s(f"uid=bob,ou=People,{foreign}", [(ldap.MOD_REPLACE, "cn", [b"Robert Ray"])])
    conn.unbind_s()
    hub_uuid = search(slapd, f"cn=Bob Ray,{container}", attrs=["entryUUID"],
                      scope=ldap.SCOPE_BASE)
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "sync"]) == 0
    line = last_line(capsys)
    assert line["counts"]["rename"] == 1 and line["counts"]["modify"] == 1  # type: ignore[index]
    moved = search(slapd, f"cn=Robert Ray,{container}", attrs=["entryUUID"],
                   scope=ldap.SCOPE_BASE)
    assert next(iter(moved.values()))["entryUUID"] == next(iter(hub_uuid.values()))["entryUUID"]
    team = next(iter(search(slapd, f"cn=Team,{container}", attrs=["member"],
                            scope=ldap.SCOPE_BASE).values()))
    assert f"cn=Robert Ray,{container}" in values(team, "member")


def test_a_mapping_that_reads_an_unknown_attribute_is_refused(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    mapping = tmp_path / "mine.toml"
    text = (Path(__file__).resolve().parent.parent / "mappings" / "csv-gal.toml").read_text()
    mapping.write_text(text.replace('title = "{{ Title }}"', 'title = "{{ JobTitle }}"'))
    source = tmp_path / "gal.csv"
    source.write_text((FIXTURE.parent / "gal.csv").read_text())
    config = hub_config(tmp_path, slapd, f"ou=Import,{base}", source, mapping="mine.toml")
    line_number = text.splitlines().index('title = "{{ Title }}"') + 1
    for command in ("check", "sync"):
        capsys.readouterr()
        assert main(["-c", str(config), command]) == 2
        output = "".join(capsys.readouterr())
        assert f"mine.toml:{line_number}: person.attributes.title: unknown source attribute " \
               "'JobTitle'" in output
    assert search(slapd, base, "(dirsyncSource=gal)") == {}
