"""``dirsync check`` says of a missing import container what ``sync`` will do with it.

A container sync creates (an ou=, o= or dc= chain under the hub's base) is
a note; one sync cannot create is a problem, with the same words sync
fails with; on an LDAP hub as on an LDIF one, and for the foreign container
of an export the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import anchors, gal_rows, hub_config, search, write_csv
from dirsync.testing.twoway import FIXTURES, ldap_directory, load_ldif, write_config


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, list[str]]]:
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "check"])
    return status, json.loads(capsys.readouterr().out)


def test_a_first_time_config_checks_clean_and_sync_creates_the_containers(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Neither the container nor its parent exists yet.
    container = f"ou=Import,ou=Contacts,{base}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(3))
    config = hub_config(tmp_path, slapd, container, source, hub_base=base)
    status, result = check(config, capsys)
    assert status == 0 and result["problems"] == [], result
    notes = [n for n in result["notes"] if "import container" in n]
    assert notes == [(f"connections[0] (gal): the import container {container} does not "
                      f"exist yet; the first sync creates ou=Contacts,{base}, {container}")]
    assert search(slapd, f"ou=Contacts,{base}") == {}        # check created nothing
    assert main(["-c", str(config), "sync"]) == 0
    assert len(anchors(slapd, container)) == 3
    status, result = check(config, capsys)
    assert status == 0
    assert f"connections[0] (gal): import container {container} exists" in result["checked"]


def test_a_container_sync_cannot_create_is_a_problem(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Import,cn=Contacts,{base}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(3))
    config = hub_config(tmp_path, slapd, container, source, hub_base=base)
    status, result = check(config, capsys)
    expected = (f"connections[0].import_container: cn=Contacts,{base} does not exist and "
                "dirsync creates only ou=, o= and dc= containers; create it first")
    assert status == 2 and result["problems"] == [expected]
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 2
    assert expected in capsys.readouterr().err


def test_an_ldif_hub_says_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hub = tmp_path / "hub.ldif"
    hub.write_text("dn: dc=example,dc=org\nobjectClass: domain\ndc: example\n")
    source = write_csv(tmp_path / "gal.csv", gal_rows(2))
    config = tmp_path / "dirsync.toml"
    config.write_text(f"""
[directories.hub]
kind = "ldif"
path = "{hub}"

[directories.foreign]
kind = "csv"
path = "{source}"
key = "Alias"

[[connections]]
name = "gal"
foreign = "foreign"
hub = "hub"
mapping = "csv-gal"
import_container = "ou=Import,ou=Contacts,dc=example,dc=org"
""")
    status, result = check(config, capsys)
    assert status == 0 and result["problems"] == [], result
    assert any("the first sync creates ou=Contacts,dc=example,dc=org, "
               "ou=Import,ou=Contacts,dc=example,dc=org" in n for n in result["notes"])


@pytest.mark.parametrize("kind", ["ou", "cn"])
def test_the_foreign_container_of_an_export_likewise(
        slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        kind: str) -> None:
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    slapd.add_ou(f"ou=Partner,{base}")
    container = f"ou=Contoso,{kind}=New,ou=Partner,{base}"
    table = {"name": "partner", "foreign": "foreign", "hub": "hub", "direction": "export",
             "export_containers": [f"ou=People,{base}"], "mapping": "generic-ldap",
             "foreign_container": container}
    config = write_config(tmp_path, {"hub": ldap_directory(slapd, tmp_path, base),
                                     "foreign": ldap_directory(slapd, tmp_path,
                                                               f"ou=Partner,{base}")},
                          [table])
    status, result = check(config, capsys)
    capsys.readouterr()
    synced = main(["-c", str(config), "sync"])
    err = capsys.readouterr().err
    if kind == "ou":
        assert status == 0 and result["problems"] == [], result
        assert (f"connections[0] (partner): the foreign container {container} does not exist "
                f"yet; the first export creates ou=New,ou=Partner,{base}, {container}"
                ) in result["notes"]
        assert synced == 0, err
        assert search(slapd, container, "(dirsyncSource=partner)")
    else:
        expected = (f"connections[0].foreign_container: cn=New,ou=Partner,{base} does not "
                    "exist and dirsync creates only ou=, o= and dc= containers; create it "
                    "first")
        assert status == 2 and result["problems"] == [expected], result
        assert synced == 2 and expected in err
