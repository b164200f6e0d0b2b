"""``dirsync plan`` then ``ldapmodify -f`` of its LDIF gives the hub ``dirsync sync`` gives.

Two import containers on one slapd receive the same source: one through
``sync``, the other through the plan's change file replayed by OpenLDAP's
own ``ldapmodify``. After a first sync and after a round of edits (adds,
modifies, renames, deletes, group membership) both containers hold the
same entries.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import gal_row, gal_rows, hub_config, list_row, search, write_csv

pytestmark = pytest.mark.skipif(shutil.which("ldapmodify") is None,
                                reason="ldapmodify (ldap-utils) is not installed")


def hub_view(slapd: SlapdServer, container: str) -> dict[str, dict[str, list[bytes]]]:
    """The entries below the container (user attributes), the container cut out of DNs."""
    cut = container.lower()
    view = {}
    for dn, attrs in search(slapd, container, attrs=["*"]).items():
        if dn.lower() == cut:
            continue
        key = dn.lower().replace(cut, "<container>")
        view[key] = {name.lower(): sorted(v.lower().replace(cut.encode(), b"<container>")
                                          if name.lower() == "member" else v for v in values)
                     for name, values in attrs.items()}
    return view


def plan_and_replay(slapd: SlapdServer, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "plan"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["dry_run"] is True
    ldif = Path(line["files"]["ldif"])
    subprocess.run(["ldapmodify", "-x", "-H", slapd.url, "-D", slapd.root_dn, "-w",
                    slapd.root_pw, "-f", str(ldif)], check=True, capture_output=True)


def test_a_replayed_plan_gives_the_hub_a_sync_gives(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = gal_rows(30) + [gal_row("tbremer", **{"Display Name": "Ted Bremer"}),
                           list_row("dl1", ["u000001", "u000002", "tbremer"]),
                           list_row("dl2", [])]
    synced, planned = tmp_path / "synced", tmp_path / "planned"
    synced.mkdir()
    planned.mkdir()
    source = write_csv(tmp_path / "gal.csv", rows)
    by_sync = hub_config(synced, slapd, f"ou=Synced,{base}", source, lists="group")
    by_plan = hub_config(planned, slapd, f"ou=Planned,{base}", source, lists="group")

    assert main(["-c", str(by_sync), "sync"]) == 0
    plan_and_replay(slapd, by_plan, capsys)
    first_round = hub_view(slapd, f"ou=Synced,{base}")
    assert len(first_round) == 33
    assert hub_view(slapd, f"ou=Planned,{base}") == first_round

    edited = [gal_row(f"u{i:06d}", Title="Director" if i % 3 == 0 else "Engineer",
                      **({"Display Name": f"Renamed {i}"} if i % 7 == 0 else {}))
              for i in range(30) if i % 5 != 4]
    edited += [gal_row("new1"), gal_row("tbremer", **{"Display Name": "Ted Bremer"}),
               list_row("dl1", ["u000001", "new1", "u000007"]), list_row("dl2", ["tbremer"])]
    write_csv(source, edited)
    assert main(["-c", str(by_sync), "sync", "--allow-deletes", "10"]) == 0
    # The plan of the other container starts from what its hub holds now.
    plan_and_replay(slapd, by_plan, capsys)
    second_round = hub_view(slapd, f"ou=Synced,{base}")
    assert second_round != first_round
    assert hub_view(slapd, f"ou=Planned,{base}") == second_round

    # And a sync of the replayed container has nothing left to do.
    capsys.readouterr()
    assert main(["-c", str(by_plan), "--json", "sync"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sum(line["counts"][k] for k in ("add", "modify", "rename", "delete")) == 0
