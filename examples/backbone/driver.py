"""Backboning two MS Mail post offices over two replicating LDAP sites (seeds/003).

    PO1 -> site A  ==replication==  site B -> PO2

Two slapd servers, A and B, replicate each other. MS Mail post office PO1
(a CSV address book) is connected to site A, PO2 to site B, each with one
dirsync connection in both directions (mapping msmail). The driver:

1. runs dirsync at A: PO1's users become contacts in A's import container;
2. waits for them to replicate to B, runs dirsync at B: PO2's users become
   contacts at B, and PO1's users (replicated contacts) go into PO2's
   address book under their own MS Mail addresses (MICROSOFT/PO1/...);
3. waits for PO2's contacts to reach A, runs dirsync at A: PO2's users go
   into PO1's address book;
4. runs both sites again: nothing changes anywhere (no echo);
5. deletes a user from PO1, runs A, waits, runs B: the user is gone from A,
   B and PO2's address book;

prints both address books, checks every step, writes var/outcome.json, and
exits 0 only when everything checked out. Run it through run.sh.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import ldap

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from dirsync.testing.slapd import SlapdServer, replicated_pair, wait_for
from dirsync.testing.twoway import read_csv, write_config

SUFFIX = "dc=example,dc=org"
CONTACTS = f"ou=Contacts,{SUFFIX}"
DELETED = "MICROSOFT/PO1/TBREMER"      # Ted Bremer leaves PO1 at the end
REPLICATION_TIMEOUT = 30.0
SITES = {"po1": "site A (connection po1)", "po2": "site B (connection po2)"}


class Failed(Exception):
    pass


class Backbone:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.checks: list[tuple[str, bool]] = []
        self.runs: list[dict[str, Any]] = []

    # -- plumbing ----------------------------------------------------------
    def check(self, what: str, ok: bool) -> None:
        self.checks.append((what, ok))
        print(f"  {'ok    ' if ok else 'FAILED'} {what}")

    def site_config(self, site: SlapdServer, name: str, po: str, postoffice: str) -> Path:
        password = self.work / f"site-{name}.pw"
        password.write_text(site.root_pw + "\n")
        return write_config(self.work, {
            "hub": {"kind": "ldap", "url": site.url, "base": SUFFIX, "bind_dn": site.root_dn,
                    "password_file": password.name},
            po: {"kind": "csv", "path": f"{po}.csv", "key": "Address"},
        }, [{
            "name": po, "foreign": po, "hub": "hub", "mapping": "msmail", "direction": "both",
            "import_container": f"ou={po.upper()},{CONTACTS}",
            "export_containers": [CONTACTS],
            # Site users would appear in MS Mail under the site's shadow post office.
            "variables": {"postoffice": postoffice},
            "delete_threshold": 10,
        }], name=f"site-{name}.toml")

    def sync(self, label: str, config: Path) -> list[dict[str, Any]]:
        """``dirsync -c CONFIG --json sync``, as an administrator would run it."""
        done = subprocess.run([sys.executable, "-m", "dirsync", "-c", str(config), "--json",
                               "sync"], capture_output=True, text=True, cwd=self.work,
                              check=False)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        summary = ", ".join(
            f"{r['direction']} " + (" ".join(f"{k} {v}" for k, v in r["counts"].items()
                                             if v and k != "unchanged") or "no changes")
            for r in lines)
        print(f"{label}: exit {done.returncode}: {summary}")
        self.runs.append({"step": label, "exit": done.returncode, "results": lines})
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise Failed(f"{label}: dirsync exited with {done.returncode}")
        return lines

    @staticmethod
    def contacts(site: SlapdServer, po: str) -> dict[str, str]:
        """dirsyncAnchor -> targetAddress of the contacts of one post office at one site."""
        conn = site.connect()
        try:
            found = conn.search_s(f"ou={po.upper()},{CONTACTS}", ldap.SCOPE_ONELEVEL,
                                  f"(dirsyncSource={po})", ["dirsyncAnchor", "targetAddress"])
        except ldap.NO_SUCH_OBJECT:
            return {}
        finally:
            conn.unbind_s()
        return {a["dirsyncAnchor"][0].decode(): a["targetAddress"][0].decode()
                for _, a in found}

    def book(self, po: str) -> dict[str, dict[str, str]]:
        return {row["Address"]: row for row in read_csv(self.work / f"{po}.csv")}

    def replicated(self, site: SlapdServer, po: str, count: int) -> bool:
        return wait_for(lambda: len(self.contacts(site, po)) == count, REPLICATION_TIMEOUT)

    # -- the scenario --------------------------------------------------------
    def run(self, site_a: SlapdServer, site_b: SlapdServer) -> None:
        for po in ("po1", "po2"):
            shutil.copyfile(ROOT / "fixtures" / f"msmail-{po}.csv", self.work / f"{po}.csv")
        native = {po: self.book(po) for po in ("po1", "po2")}
        config_a = self.site_config(site_a, "a", "po1", "SITEA")
        config_b = self.site_config(site_b, "b", "po2", "SITEB")
        site_a.add_ou(CONTACTS)
        if not wait_for(lambda: site_b.has_entry(CONTACTS), REPLICATION_TIMEOUT):
            raise Failed(f"{CONTACTS} did not replicate from site A to site B")

        print("\n== one run on each side")
        self.sync("site A", config_a)
        self.check("PO1's users replicate to site B as contacts",
                   self.replicated(site_b, "po1", len(native["po1"])))
        self.sync("site B", config_b)
        self.check("PO2's users replicate to site A as contacts",
                   self.replicated(site_a, "po2", len(native["po2"])))
        self.sync("site A", config_a)

        print("\n== the outcome")
        at_b = self.contacts(site_b, "po1")
        self.check("every PO1 user is a contact at site B with its MS Mail address",
                   at_b == {a: f"MS:{a}" for a in native["po1"]})
        at_a = self.contacts(site_a, "po2")
        self.check("every PO2 user is a contact at site A with its MS Mail address",
                   at_a == {a: f"MS:{a}" for a in native["po2"]})
        for here, there in (("po2", "po1"), ("po1", "po2")):
            book = self.book(here)
            exported = {k: r for k, r in book.items() if r.get("Sync Source") == here}
            self.check(f"{here.upper()}'s address book holds every {there.upper()} user, "
                       f"under its {there.upper()} address",
                       set(exported) == set(native[there])
                       and all(r["Postoffice"] == there.upper() for r in exported.values()))
            self.check(f"{here.upper()}'s own users are as they were",
                       {k: {c: r[c] for c in native[here][k]} for k, r in book.items()
                        if k in native[here]} == native[here])
            self.check(f"nothing of {here.upper()}'s own went back into it",
                       set(book) == set(native[here]) | set(native[there]))

        print("\n== once more on each side: nothing to do")
        quiet = self.sync("site B", config_b) + self.sync("site A", config_a)
        self.check("a second run changes nothing on either side",
                   all(sum(r["counts"][k] for k in ("add", "modify", "rename", "delete")) == 0
                       for r in quiet))

        print(f"\n== {DELETED} leaves PO1")
        self.remove_from_po1(DELETED)
        self.sync("site A", config_a)
        self.check("the contact is gone at site A", DELETED not in self.contacts(site_a, "po1"))
        self.check("its delete replicates to site B",
                   wait_for(lambda: DELETED not in self.contacts(site_b, "po1"),
                            REPLICATION_TIMEOUT))
        self.sync("site B", config_b)
        self.check("it is gone from PO2's address book", DELETED not in self.book("po2"))
        self.check("everyone else is still there",
                   set(self.book("po2")) == (set(native["po1"]) | set(native["po2"]))
                   - {DELETED})

    def remove_from_po1(self, address: str) -> None:
        """What PO1's administrator does: the user's row goes, and so does it from lists."""
        path = self.work / "po1.csv"
        rows = read_csv(path)
        kept = [r for r in rows if r["Address"] != address]
        for row in kept:
            members = [m for m in row.get("Members", "").split(";") if m and m != address]
            row["Members"] = ";".join(members)
        with open(path, "w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(kept)

    def print_books(self) -> None:
        for po in ("po1", "po2"):
            path = self.work / f"{po}.csv"
            if not path.exists():
                continue
            rows = read_csv(path)
            print(f"\n== {po.upper()}'s address book ({len(rows)} entries)")
            print(f"  {'Address':<28} {'Type':<5} {'Display Name':<24} from")
            for row in sorted(rows, key=lambda r: (bool(r.get("Sync Source")), r["Address"])):
                source = row.get("Sync Source")
                origin = f"exported by {SITES.get(source, source)}" if source else "its own"
                print(f"  {row['Address']:<28} {row['Type']:<5} {row['Display Name']:<24} "
                      f"{origin}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=HERE / "var",
                        help="where configs, address books, state and reports go "
                             "(emptied first; default: var/ next to this file)")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    scenario = Backbone(work)
    print("starting sites A and B (two slapd servers replicating each other) ...")
    site_a, site_b = replicated_pair(SUFFIX, dbnosync=True)
    failure = None
    try:
        print(f"site A: {site_a.url}   site B: {site_b.url}")
        scenario.run(site_a, site_b)
    except Failed as exc:
        failure = str(exc)
    finally:
        site_a.destroy()
        site_b.destroy()
    scenario.print_books()
    ok = failure is None and bool(scenario.checks) and all(ok for _, ok in scenario.checks)
    (work / "outcome.json").write_text(json.dumps({
        "ok": ok, "failure": failure,
        "checks": [{"check": what, "ok": passed} for what, passed in scenario.checks],
        "runs": scenario.runs}, indent=1, ensure_ascii=False))
    print(f"\n{'every check passed' if ok else 'FAILED: ' + (failure or 'see above')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
