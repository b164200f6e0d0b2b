"""``dirsync diff A B`` applied with the real ``ldapmodify`` to a slapd holding A
leaves exactly B."""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import ldap
import pytest

from dirsync.cli.main import main
from dirsync.entry import Entry, normalize_dn
from dirsync.ldif.io import read_ldif
from dirsync.schema import OPERATIONAL
from dirsync.testing.slapd import SlapdServer

PHOTO_A = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMC"
PHOTO_B = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMD"

# {b} is the test's own base DN. Every entry carries a dirsyncAnchor, the key.
A = """\
dn: ou=People,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: People
dirsyncAnchor: ou-people

dn: uid=ted,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: ted
cn: ted bremer
sn: Bremer
mail: Ted@Example.org
description: first
description: second
jpegPhoto:: {photo_a}
dirsyncAnchor: p1

dn: uid=ann,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: ann
cn: Ann Lee
sn: Lee
dirsyncAnchor: p2

dn: uid=bob,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: bob
cn: Bob Ray
sn: Ray
dirsyncAnchor: p3

dn: uid=carl,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: carl
cn: Carl
sn: Carl
dirsyncAnchor: p4

dn:: {smith_dn}
objectClass: inetOrgPerson
objectClass: dirsyncObject
cn:: TcO8bGxlciwgSGFucw==
sn:: TcO8bGxlcg==
telephoneNumber: +49 30 1234
dirsyncAnchor: p11

dn: ou=Sales,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: Sales
dirsyncAnchor: ou-sales

dn: ou=EMEA,ou=Sales,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: EMEA
dirsyncAnchor: ou-emea

dn: uid=dora,ou=EMEA,ou=Sales,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: dora
cn: Dora
sn: Dora
title: Clerk
dirsyncAnchor: p5

dn: uid=eve,ou=EMEA,ou=Sales,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: eve
cn: Eve
sn: Eve
dirsyncAnchor: p6

dn: uid=fred,ou=Sales,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: fred
cn: Fred
sn: Fred
dirsyncAnchor: p7

dn: ou=Old,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: Old
dirsyncAnchor: ou-old

dn: ou=Deep,ou=Old,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: Deep
dirsyncAnchor: ou-deep

dn: ou=Deeper,ou=Deep,ou=Old,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: Deeper
dirsyncAnchor: ou-deeper

dn: uid=gus,ou=Deeper,ou=Deep,ou=Old,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: gus
cn: Gus
sn: Gus
dirsyncAnchor: p8

dn: uid=hal,ou=Old,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: hal
cn: Hal
sn: Hal
dirsyncAnchor: p9

dn: cn=Staff list,{b}
objectClass: groupOfNames
objectClass: dirsyncObject
cn: Staff list
member: uid=ann,ou=People,{b}
member: uid=bob,ou=People,{b}
dirsyncAnchor: g1
"""

B = """\
dn: ou=People,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: People
dirsyncAnchor: ou-people

dn: uid=ted,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: ted
cn: Ted Bremer
sn: Bremer
mail: ted@example.org
description: first
description: third
jpegPhoto:: {photo_b}
dirsyncAnchor: p1

dn: uid=anna,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: anna
cn: Ann Lee
sn: Lee
title: Lead
dirsyncAnchor: p2

dn: uid=ann,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: ann
cn: Ann Other
sn: Other
dirsyncAnchor: p10

dn: uid=hal,ou=People,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: hal
cn: Hal
sn: Hal
dirsyncAnchor: p9

dn:: {smith_dn}
objectClass: inetOrgPerson
objectClass: dirsyncObject
cn:: TcO8bGxlciwgSGFucw==
sn:: TcO8bGxlcg==
telephoneNumber: +49 30 9999
dirsyncAnchor: p11

dn: ou=Staff,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: Staff
dirsyncAnchor: ou-staff

dn: uid=bob,ou=Staff,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: bob
cn: Bob Ray
sn: Ray
dirsyncAnchor: p3

dn: ou=Marketing,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: Marketing
dirsyncAnchor: ou-sales

dn: ou=EMEA,ou=Marketing,{b}
objectClass: organizationalUnit
objectClass: dirsyncObject
ou: EMEA
dirsyncAnchor: ou-emea

dn: uid=dora,ou=EMEA,ou=Marketing,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: dora
cn: Dora
sn: Dora
title: Manager
dirsyncAnchor: p5

dn: uid=fred,ou=Marketing,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: fred
cn: Fred
sn: Fred
dirsyncAnchor: p7

dn: uid=ivy,ou=EMEA,ou=Marketing,{b}
objectClass: inetOrgPerson
objectClass: dirsyncObject
uid: ivy
cn: Ivy
sn: Ivy
dirsyncAnchor: p12

dn: cn=Staff list,{b}
objectClass: groupOfNames
objectClass: dirsyncObject
cn: Staff list
member: uid=anna,ou=People,{b}
member: uid=bob,ou=Staff,{b}
dirsyncAnchor: g1
"""


def _require_tools() -> None:
    for tool in ("ldapadd", "ldapmodify"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: ldap-utils)")


def write(path: Path, template: str, base: str) -> Path:
    import base64

    smith = base64.b64encode(f"cn=Müller\\, Hans,ou=People,{base}".encode()).decode()
    path.write_text(template.format(b=base, photo_a=PHOTO_A, photo_b=PHOTO_B, smith_dn=smith),
                    encoding="utf-8")
    return path


def ldap_tool(tool: str, server: SlapdServer, path: Path) -> None:
    done = subprocess.run([tool, "-x", "-H", server.url, "-D", server.root_dn,
                           "-w", server.root_pw, "-f", str(path)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{tool} failed:\n{done.stderr}\n{path.read_text()}"


def normalized(entries: list[Entry]) -> dict[str, dict[str, list[bytes]]]:
    return {normalize_dn(e.dn): {k.lower(): sorted(v) for k, v in e.attrs.items()
                                 if k.lower() not in OPERATIONAL}
            for e in entries}


def server_entries(server: SlapdServer, base: str) -> dict[str, dict[str, list[bytes]]]:
    conn = server.connect()
    try:
        found = conn.search_s(base, ldap.SCOPE_SUBTREE, "(objectClass=*)")
    finally:
        conn.unbind_s()
    return normalized([Entry(dn, attrs) for dn, attrs in found
                       if normalize_dn(dn) != normalize_dn(base)])


def file_entries(path: Path) -> dict[str, dict[str, list[bytes]]]:
    records = list(read_ldif(path))
    assert all(isinstance(r, Entry) for r in records)
    return normalized(records)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["dirsyncAnchor", None])
def test_ldapmodify_of_the_diff_leaves_exactly_b(slapd: SlapdServer, base: str, tmp_path: Path,
                                                 key: str | None) -> None:
    _require_tools()
    a, b = write(tmp_path / "a.ldif", A, base), write(tmp_path / "b.ldif", B, base)
    ldap_tool("ldapadd", slapd, a)
    assert server_entries(slapd, base) == file_entries(a)
    changes = tmp_path / "changes.ldif"
    args = ["diff", str(a), str(b), "-o", str(changes)] + (["--key", key] if key else [])
    assert main(args) == 0
    kinds = [r.kind for r in read_ldif(changes)]  # type: ignore[union-attr]
    if key:
        # ann -> anna (before the new ann arrives), bob and hal moved,
        # Sales -> Marketing with its subtree.
        assert kinds.count("modrdn") == 4
    else:
        assert "modrdn" not in kinds
    assert kinds.count("delete") >= 5  # carl, eve, Old and its nested subtree
    ldap_tool("ldapmodify", slapd, changes)
    assert server_entries(slapd, base) == file_entries(b)


def test_diff_against_a_live_directory(slapd: SlapdServer, base: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    _require_tools()
    monkeypatch.setenv("DIRSYNC_BIND_DN", slapd.root_dn)
    monkeypatch.setenv("DIRSYNC_PASSWORD", slapd.root_pw)
    a = write(tmp_path / "a.ldif", A, base)
    ldap_tool("ldapadd", slapd, a)
    # The live read includes the base entry itself: so does the wanted file.
    top = f"dn: {base}\nobjectClass: organizationalUnit\nou: {base.split(',')[0][3:]}\n\n"
    b = write(tmp_path / "b.ldif", top + B, base)
    url = f"{slapd.url}/{base}??sub"
    changes = tmp_path / "changes.ldif"
    assert main(["diff", url, str(b), "--key", "dirsyncAnchor", "-o", str(changes)]) == 0
    # The page of the same diff names the URL and counts the same records.
    page = tmp_path / "diff.html"
    assert main(["diff", url, str(b), "--key", "dirsyncAnchor", "--format", "html",
                 "-o", str(page)]) == 0
    shown = page.read_text()
    assert f"<tr><th>Old</th><td>{html.escape(url)}</td></tr>" in shown
    kinds = [r.kind for r in read_ldif(changes)]  # type: ignore[union-attr]
    for kind, name in (("add", "added"), ("modify", "modified"), ("modrdn", "renamed"),
                       ("delete", "deleted")):
        assert f'<td id="count-{name}">{kinds.count(kind)}</td>' in shown
    assert shown.count("<article") == len(kinds)
    ldap_tool("ldapmodify", slapd, changes)
    capsys.readouterr()
    assert main(["diff", "--exit-code", url, str(b), "--key", "dirsyncAnchor"]) == 0
    assert capsys.readouterr().out == ""
