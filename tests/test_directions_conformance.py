"""One table of cases, run the same way in both directions.

Both directions are set up as mirror images on the suite's slapd: a source
container of inetOrgPerson entries (``ou=Src``) and a target container
(``ou=Dst,ou=Partner``), both mapped by generic-ldap.

- import: ``ou=Src`` is a foreign LDAP directory, ``ou=Dst`` the hub's
  import container;
- export: ``ou=Src`` is the hub's export container, ``ou=Dst`` the
  foreign_container of a partner LDAP directory.

Each case changes the source, runs ``dirsync sync`` and reads the target by
anchor: the entries marked with the connection's name in dirsyncSource, each
carrying its source entry's entryUUID in dirsyncAnchor, whichever the
direction. The assertions are the same for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import kill_when
from dirsync.testing.twoway import entries, ldap_directory, write_config

NAME = "conf"
PEOPLE = ("Ann Lee", "Bob Ray", "Cy Young", "Dee Fox")
KILL_ROWS = 2000


@dataclass
class Setup:
    direction: str
    slapd: SlapdServer
    base: str
    folder: Path

    @property
    def source(self) -> str:
        return f"ou=Src,{self.base}"

    @property
    def partner(self) -> str:
        return f"ou=Partner,{self.base}"

    @property
    def target(self) -> str:
        return f"ou=Dst,{self.partner}"

    def config(self, **connection: object) -> Path:
        hub = ldap_directory(self.slapd, self.folder, self.base)
        table: dict[str, object] = {"name": NAME, "hub": "hub", "foreign": "foreign",
                                    "mapping": "generic-ldap", "direction": self.direction}
        if self.direction == "import":
            foreign = ldap_directory(self.slapd, self.folder, self.source)
            table |= {"import_container": self.target, "lists": "group"}
        else:
            foreign = ldap_directory(self.slapd, self.folder, self.partner)
            table |= {"export_containers": [self.source], "foreign_container": self.target}
        # A small window keeps the server's view close to what was sent (kill case).
        hub["window"] = foreign["window"] = 4
        return write_config(self.folder, {"hub": hub, "foreign": foreign},
                            [table | connection])

    # -- the source side: plain LDAP writes below ou=Src -----------------------

    def add(self, *names: str, conn: ldap.ldapobject.LDAPObject | None = None) -> None:
        own = conn or self.slapd.connect()
        try:
            for name in names:
                first, last = name.split(" ", 1)
                own.add_s(f"cn={name},{self.source}", [
                    ("objectClass", [b"inetOrgPerson"]), ("cn", [name.encode()]),
                    ("sn", [last.encode()]), ("givenName", [first.encode()]),
                    ("title", [b"Engineer"]),
                    ("mail", [f"{first}.{last}@src.example".lower().encode()])])
        finally:
            if conn is None:
                own.unbind_s()

    def uuid(self, name: str) -> str:
        found = entries(self.slapd, f"cn={name},{self.source}", attrs=["entryUUID"])
        return next(iter(found.values()))["entryUUID"][0]

    # -- the target side, read by anchor ---------------------------------------

    def owned(self) -> dict[str, list[tuple[str, dict[str, list[str]]]]]:
        """Anchor -> (DN, attributes) of each target entry the connection owns."""
        found = entries(self.slapd, self.target, f"(dirsyncSource={NAME})",
                        ["*", "entryUUID"])
        result: dict[str, list[tuple[str, dict[str, list[str]]]]] = {}
        for dn, attrs in found.items():
            result.setdefault(attrs["dirsyncAnchor"][0], []).append((dn, attrs))
        return result

    def one(self, anchor: str) -> tuple[str, dict[str, list[str]]]:
        held = self.owned()[anchor]
        assert len(held) == 1, f"duplicates for {anchor}: {held}"
        return held[0]

    def snapshot(self) -> dict[str, tuple[str, ...]]:
        """Every target entry, owned or not, with its entryCSN: any write changes it."""
        found = entries(self.slapd, self.target, attrs=["entryCSN"])
        return {dn.lower(): tuple(a["entryCSN"]) for dn, a in found.items()}

    def stranger(self, name: str, owner: str = "", anchor: str = "") -> str:
        """A target entry this connection does not own (``owner``: another one's)."""
        dn = f"cn={name},{self.target}"
        attrs = [("objectClass", [b"inetOrgPerson"]), ("cn", [name.encode()]),
                 ("sn", [b"Stranger"]), ("title", [b"Theirs"])]
        if owner:
            attrs[0] = ("objectClass", [b"inetOrgPerson", b"dirsyncObject"])
            attrs += [("dirsyncSource", [owner.encode()]), ("dirsyncAnchor", [anchor.encode()])]
        conn = self.slapd.connect()
        try:
            conn.add_s(dn, attrs)
        finally:
            conn.unbind_s()
        return dn


def sync(config: Path, capsys: pytest.CaptureFixture[str], direction: str,
         *args: str) -> tuple[int, dict[str, Any]]:
    """``dirsync --json sync``: the exit status and the direction's result line."""
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "sync", *args])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    line: dict[str, Any] = next(r for r in reversed(lines) if r.get("direction") == direction)
    return status, line


@pytest.fixture(params=["import", "export"])
def side(request: pytest.FixtureRequest, slapd: SlapdServer, base: str,
         tmp_path: Path) -> Setup:
    setup = Setup(request.param, slapd, base, tmp_path)
    for dn in (setup.source, setup.partner, setup.target):
        slapd.add_ou(dn)
    return setup


def first_sync(side: Setup, capsys: pytest.CaptureFixture[str], **connection: object
               ) -> tuple[Path, dict[str, str]]:
    """The four people in the source, synced: the config and name -> anchor."""
    side.add(*PEOPLE)
    config = side.config(**connection)
    status, line = sync(config, capsys, side.direction)
    assert status == 0 and line["counts"]["add"] == len(PEOPLE)
    return config, {name: side.uuid(name) for name in PEOPLE}


# -- the cases ------------------------------------------------------------------

def case_add(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = first_sync(side, capsys)
    assert sorted(side.owned()) == sorted(ids.values())
    side.add("Eve Stone")
    status, line = sync(config, capsys, side.direction)
    assert status == 0 and line["counts"]["add"] == 1
    dn, attrs = side.one(side.uuid("Eve Stone"))
    assert dn == f"cn=Eve Stone,{side.target}"
    assert attrs["title"] == ["Engineer"] and attrs["sn"] == ["Stone"]
    assert len(side.owned()) == len(PEOPLE) + 1


def case_modify(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = first_sync(side, capsys)
    conn = side.slapd.connect()
    conn.modify_s(f"cn=Bob Ray,{side.source}", [(ldap.MOD_REPLACE, "title", [b"Chief"])])
    conn.unbind_s()
    before = side.one(ids["Bob Ray"])
    status, line = sync(config, capsys, side.direction)
    counts = line["counts"]
    assert status == 0
    assert (counts["modify"], counts["add"], counts["delete"]) == (1, 0, 0)
    dn, attrs = side.one(ids["Bob Ray"])
    assert attrs["title"] == ["Chief"]
    assert (dn, attrs["entryUUID"]) == (before[0], before[1]["entryUUID"])
    assert side.one(ids["Ann Lee"])[1]["title"] == ["Engineer"]


def case_rename(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = first_sync(side, capsys)
    old_dn, old = side.one(ids["Cy Young"])
    conn = side.slapd.connect()
    conn.rename_s(f"cn=Cy Young,{side.source}", "cn=Cy Old", None, 1)
    conn.unbind_s()
    status, line = sync(config, capsys, side.direction)
    assert status == 0 and line["counts"]["rename"] == 1
    assert (line["counts"]["add"], line["counts"]["delete"]) == (0, 0)
    dn, attrs = side.one(ids["Cy Young"])
    assert old_dn == f"cn=Cy Young,{side.target}" and dn == f"cn=Cy Old,{side.target}"
    assert attrs["entryUUID"] == old["entryUUID"]       # a modrdn, not a delete and an add
    assert attrs["cn"] == ["Cy Old"]
    changes = (Path(str(line["report"])) / "changes.ldif").read_text()
    assert "changetype: modrdn" in changes and "changetype: add" not in changes


def case_delete(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = first_sync(side, capsys)
    theirs = side.stranger("Dee Fox Senior")
    # Another connection's entry with the same anchor: not this connection's to delete.
    other = side.stranger("Dee Fox Other", owner="other", anchor=ids["Dee Fox"])
    before = entries(side.slapd, side.target, "(cn=Dee Fox *)", ["*", "entryCSN"])
    conn = side.slapd.connect()
    conn.delete_s(f"cn=Dee Fox,{side.source}")
    conn.unbind_s()
    status, line = sync(config, capsys, side.direction)
    assert status == 0 and line["counts"]["delete"] == 1
    assert sorted(side.owned()) == sorted(v for k, v in ids.items() if k != "Dee Fox")
    assert sorted(before) == sorted([theirs, other])
    assert entries(side.slapd, side.target, "(cn=Dee Fox *)", ["*", "entryCSN"]) == before
    assert not side.slapd.has_entry(f"cn=Dee Fox,{side.target}")


def case_conflict(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = first_sync(side, capsys)
    theirs = side.stranger("Eve Stone")
    before = entries(side.slapd, theirs, attrs=["*", "entryCSN"])
    side.add("Eve Stone")
    status, line = sync(config, capsys, side.direction)
    assert status == 1 and line["counts"]["conflict"] == 1
    assert entries(side.slapd, theirs, attrs=["*", "entryCSN"]) == before
    assert sorted(side.owned()) == sorted(ids.values())
    report = json.loads((Path(str(line["report"])) / "report.json").read_text())
    assert any(p["kind"] == "conflict" and "Eve Stone" in p["message"]
               for p in report["problems"])
    # Reported again while the stranger is there; once it is gone, the entry comes.
    status, line = sync(config, capsys, side.direction)
    assert status == 1 and line["counts"]["conflict"] == 1
    assert entries(side.slapd, theirs, attrs=["*", "entryCSN"]) == before
    conn = side.slapd.connect()
    conn.delete_s(theirs)
    conn.unbind_s()
    status, line = sync(config, capsys, side.direction)
    assert status == 0 and line["counts"]["add"] == 1
    assert side.one(side.uuid("Eve Stone"))[0] == theirs


def case_conflict_on_rename(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A new name held by a stranger: the entry keeps its old name, the stranger stays."""
    config, ids = first_sync(side, capsys)
    theirs = side.stranger("Cy Old")
    before = entries(side.slapd, theirs, attrs=["*", "entryCSN"])
    old_dn, old = side.one(ids["Cy Young"])
    conn = side.slapd.connect()
    conn.rename_s(f"cn=Cy Young,{side.source}", "cn=Cy Old", None, 1)
    conn.unbind_s()
    for _ in range(2):
        status, line = sync(config, capsys, side.direction)
        assert status == 1 and line["counts"]["conflict"] == 1
        assert entries(side.slapd, theirs, attrs=["*", "entryCSN"]) == before
        assert side.one(ids["Cy Young"]) == (old_dn, old)
    assert sorted(side.owned()) == sorted(ids.values())


def case_safety_stop(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    config, ids = first_sync(side, capsys, delete_threshold="50%")
    before = side.snapshot()
    conn = side.slapd.connect()
    for name in PEOPLE[:3]:
        conn.delete_s(f"cn={name},{side.source}")
    conn.unbind_s()
    side.add("Eve Stone")
    status, line = sync(config, capsys, side.direction)
    assert status == 3 and line["status"] == "stopped"
    # The percentage counts what the target holds for the connection, and says so.
    target = {"import": "the hub", "export": "the foreign side"}[side.direction]
    assert ('this run would delete 3 entries, but delete_threshold = "50%" allows at most 2 '
            f"in one run (50% of the 4 entries {target} holds for this connection); nothing "
            "was changed") in line["message"]
    assert side.snapshot() == before
    status, line = sync(config, capsys, side.direction, "--allow-deletes", "3")
    assert status == 0
    assert sorted(side.owned()) == sorted([ids["Dee Fox"], side.uuid("Eve Stone")])



def case_kill_and_resume(side: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    conn = side.slapd.connect()
    try:
        side.add(*(f"Person P{i:05d}" for i in range(KILL_ROWS)), conn=conn)
    finally:
        conn.unbind_s()
    config = side.config()

    def held() -> int:
        return len(entries(side.slapd, side.target, f"(dirsyncSource={NAME})", ["1.1"]))

    kill_when(config, lambda: held() >= KILL_ROWS // 3)
    assert held() < KILL_ROWS
    status, _ = sync(config, capsys, side.direction)
    assert status == 0
    source = entries(side.slapd, side.source, "(objectClass=inetOrgPerson)", ["entryUUID"])
    owned = side.owned()
    assert sorted(owned) == sorted(a["entryUUID"][0] for a in source.values())
    assert all(len(held) == 1 for held in owned.values()), "duplicates"
    status, line = sync(config, capsys, side.direction)
    counts = line["counts"]
    assert status == 0 and counts["unchanged"] == KILL_ROWS
    assert sum(counts[k] for k in ("add", "modify", "rename", "delete")) == 0


CASES = {"add": case_add, "modify": case_modify, "rename": case_rename,
         "delete": case_delete, "conflict": case_conflict,
         "conflict-on-rename": case_conflict_on_rename,
         "safety-stop": case_safety_stop, "kill-and-resume": case_kill_and_resume}


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_case_in_both_directions(side: Setup, case: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    CASES[case](side, capsys)
