"""An administrator's week: one scenario across every part, on real servers.

A slapd hub (the session server, below a subtree of its own) with the
site's people, an MS Mail post office and an X.400 directory imported into
it, the people exported to an LDAP partner (a second slapd), the relay
running as a real ``dirsync relay serve`` process with aiosmtpd next hops
and an X.400 gateway queue folder, and the scheduler. The administrator
types commands (``dirsync``, ``ldapmodify``, ``swaks``), so the steps run
them as subprocesses and check what the administrator would look at: the
exit status and counts, the entries in the hub and in the partner, what
``dirsync relay route`` and ``dirsync status`` say, the mail that arrives,
the log lines.

The steps are test functions that run in the order of the file and share
one world (the module fixture ``week``); each one is its own verdict, and
each stands up when an earlier one failed.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import ldap.dn
import pytest
from relay.helpers import Sink  # tests/relay/helpers.py: the aiosmtpd next hop

from dirsync.testing.slapd import SlapdServer, free_port
from dirsync.testing.twoway import FIXTURES, copy_fixture, entries, load_ldif

WAIT = 30.0  # upper bound for anything that should take a second; the machine may be busy
BIG = 3000   # recipients of the big post office (the Ctrl-C run)
COUNTS = ("add", "modify", "rename", "delete", "unchanged", "skipped", "conflict", "error",
          "unknown", "not_attempted")

JEAN_X400 = "X400:c=FR;a=ATLAS;p=Fabrikam;o=Paris;s=Dupont;g=Jean;"
JEAN_IMCEA = "IMCEAX400-c=FR+3Ba=ATLAS+3Bp=Fabrikam+3Bo=Paris+3Bs=Dupont+3Bg=Jean+3B@contoso.example"
JEAN_SLASH = "/G=Jean/S=Dupont/O=Paris/PRMD=Fabrikam/ADMD=ATLAS/C=FR/"
LCHEN_MS = "MS:MICROSOFT/PO1/LCHEN"
LCHEN_IMCEA = "IMCEAMS-MICROSOFT_PO1_LCHEN@contoso.example"
PARTNER_SUFFIX = "o=Fabrikam,c=US"
PARTNER_CONTAINER = f"ou=Contoso,{PARTNER_SUFFIX}"


@dataclass
class Week:
    """Everything the administrator set up on Monday morning."""

    folder: Path
    hub: SlapdServer
    base: str
    partner: SlapdServer
    internal: Sink
    msgw: Sink
    relay_port: int
    relay: subprocess.Popen[bytes] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.folder / "dirsync.toml"

    @property
    def people(self) -> str:
        return f"ou=People,{self.base}"

    def container(self, name: str) -> str:
        return f"ou={name},ou=Contacts,{self.base}"

    # -- what the administrator types ----------------------------------------
    def dirsync(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dirsync", "-c", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def sync(self, *args: str) -> tuple[int, list[dict[str, Any]]]:
        """``dirsync --json sync ARGS``: the exit status and one JSON line per run."""
        done = self.dirsync("--json", "sync", *args)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no JSON line (exit {done.returncode}): {done.stderr}"
        return done.returncode, lines

    def ldapmodify(self, ldif: str) -> None:
        subprocess.run(["ldapmodify", "-x", "-H", self.hub.url, "-D", self.hub.root_dn,
                        "-w", self.hub.root_pw], input=ldif, text=True, check=True,
                       capture_output=True, timeout=WAIT)

    def swaks(self, sender: str, to: str, subject: str) -> str:
        done = subprocess.run(["swaks", "--server", f"127.0.0.1:{self.relay_port}",
                               "--from", sender, "--to", to, "--h-Subject", subject,
                               "--body", "See you on Friday."],
                              capture_output=True, text=True, timeout=WAIT, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def route(self, address: str) -> subprocess.CompletedProcess[str]:
        return self.dirsync("relay", "route", address)

    def status(self, connection: str) -> list[dict[str, Any]]:
        """``dirsync --json status NAME``: the runs, newest first."""
        done = self.dirsync("--json", "status", connection)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    # -- what the administrator looks at ---------------------------------------
    def hub_entries(self, base: str, filt: str = "(objectClass=*)") -> dict[str, dict[str, list[str]]]:
        return entries(self.hub, base, filt)

    def partner_entries(self, filt: str = "(objectClass=inetOrgPerson)"
                        ) -> dict[str, dict[str, list[str]]]:
        return entries(self.partner, PARTNER_CONTAINER, filt)

    def partner_by_cn(self) -> dict[str, dict[str, list[str]]]:
        """The partner's people by the name its address book shows: the RDN's cn."""
        return {rdn_value(dn): attrs for dn, attrs in self.partner_entries().items()}


def rdn_value(dn: str) -> str:
    return str(ldap.dn.str2dn(dn)[0][0][1])


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.05)


def arrived(sink: Sink, subject: str) -> Callable[[], list[tuple[list[str], Message]]]:
    def find() -> list[tuple[list[str], Message]]:
        return [(got.recipients, got.message) for got in list(sink.messages)
                if got.message["Subject"] == subject]
    return find


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def big_post_office(path: Path) -> None:
    rows = []
    for i in range(BIG):
        mailbox = f"U{i:05d}"
        rows.append({"Address": f"MICROSOFT/PO3/{mailbox}", "Type": "user",
                     "Network": "MICROSOFT", "Postoffice": "PO3", "Mailbox": mailbox,
                     "Display Name": f"Clerk {i:05d}", "First Name": "Clerk",
                     "Last Name": f"N{i:05d}", "Phone": "+1 206 555 0199", "Title": "Clerk",
                     "Department": "Operations", "Office": "PO3 Building", "Company": "Contoso",
                     "Members": ""})
    write_rows(path, rows)


CONFIG = """\
# The administrator's dirsync.toml: docs/configuration.md, docs/export.md,
# docs/relay.md and docs/mappings/ were all it took.
state = "var/state.sqlite"
reports = "var/reports"

[directories.hub]
kind = "ldap"
url = "{hub_url}"
base = "{base}"
bind_dn = "{hub_dn}"
password_file = "hub.pw"

[directories.po1]
kind = "csv"
path = "exports/po1.csv"
key = "Address"

[directories.po3]
kind = "csv"
path = "exports/po3.csv"
key = "Address"

[directories.fabrikam]
kind = "ldif"
path = "exports/fabrikam-x500.ldif"
base = "o=Fabrikam,c=FR"

[directories.partner]
kind = "ldap"
url = "{partner_url}"
base = "{partner_suffix}"
bind_dn = "{partner_dn}"
password_file = "partner.pw"

[[connections]]
name = "msmail-po1"
foreign = "po1"
hub = "hub"
mapping = "msmail"
import_container = "ou=PO1,ou=Contacts,{base}"

[[connections]]
name = "fabrikam-x400"
foreign = "fabrikam"
hub = "hub"
mapping = "x400"
import_container = "ou=Fabrikam,ou=Contacts,{base}"

[[connections]]
name = "partner"
foreign = "partner"
hub = "hub"
mapping = "generic-ldap"
direction = "export"
export_containers = ["ou=People,{base}"]
foreign_container = "{partner_container}"
variables = {{ smtp_domain = "contoso.example" }}

[[connections]]
name = "msmail-po3"
foreign = "po3"
hub = "hub"
mapping = "msmail"
import_container = "ou=PO3,ou=Contacts,{base}"

[relay]
hub = "hub"
listen = "127.0.0.1:{relay_port}"
hostname = "relay.contoso.example"
domains = ["contoso.example"]
queue = "var/relay/queue"
tracking_log = "var/relay/tracking.jsonl"
retry_initial = "1s"
retry_max = "2s"

[relay.x400]
global_domain = "c=US;a= ;p=Contoso"
gateway = "c=US;a= ;p=Contoso;o=Gateway"
pickup = "var/x400-in"
pickup_interval = "200ms"

[[relay.x400.mappings]]
domain = "contoso.example"
or_address = "c=US;a= ;p=Contoso;o=Exchange"

[relay.hops.internal]
host = "127.0.0.1"
port = {internal_port}
starttls = "off"

[relay.hops.msgw]
host = "127.0.0.1"
port = {msgw_port}
starttls = "off"
domain = "msgw.example.net"

[relay.hops.x400]
kind = "x400"
path = "var/x400-out"

[[relay.routes]]
address_space = "SMTP:contoso.example"
hop = "internal"

[[relay.routes]]
address_space = "MS:MICROSOFT/*"
hop = "msgw"

[[relay.routes]]
address_space = "X400:c=FR;a=ATLAS;p=Fabrikam;*"
hop = "x400"
"""


def start_relay(week: Week) -> subprocess.Popen[bytes]:
    log = week.folder / "relay.log"  # a file, not a pipe: nobody reads it while the relay runs
    with open(log, "ab") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(week.config),
                                 "relay", "serve"], stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + WAIT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"dirsync relay serve exited with {proc.returncode}: "
                                 f"{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", week.relay_port), timeout=1) as sock:
                if sock.recv(64).startswith(b"220"):
                    return proc
        except OSError:
            pass
        assert time.monotonic() < deadline, "the relay did not start listening"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def week(slapd: SlapdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Week]:
    folder = tmp_path_factory.mktemp("adminweek")
    base = f"ou=adminweek,{slapd.suffix}"
    slapd.add_ou(base)
    # The site's people, as the provisioning tool made them.
    load_ldif(slapd, FIXTURES / "hub-people.ldif", base)
    partner = SlapdServer(suffix=PARTNER_SUFFIX, dbnosync=True).start()
    partner.add_suffix()
    internal, msgw = Sink().start(), Sink().start()
    week = Week(folder, slapd, base, partner, internal, msgw, free_port())
    exports = folder / "exports"
    exports.mkdir()
    copy_fixture("msmail-po1.csv", exports).rename(exports / "po1.csv")
    copy_fixture("x400.ldif", exports).rename(exports / "fabrikam-x500.ldif")
    big_post_office(exports / "po3.csv")
    (folder / "hub.pw").write_text(slapd.root_pw + "\n")
    (folder / "partner.pw").write_text(partner.root_pw + "\n")
    week.config.write_text(CONFIG.format(
        hub_url=slapd.url, base=base, hub_dn=slapd.root_dn, partner_url=partner.url,
        partner_suffix=PARTNER_SUFFIX, partner_dn=partner.root_dn,
        partner_container=PARTNER_CONTAINER, relay_port=week.relay_port,
        internal_port=internal.port, msgw_port=msgw.port))
    # Sam Wu's entry carries the dirsyncObject class: the administrator's
    # permission for dirsync to write his proxy addresses (docs/export.md).
    week.ldapmodify(f"dn: uid=swu,{week.people}\nchangetype: modify\n"
                    "add: objectClass\nobjectClass: dirsyncObject\n")
    try:
        yield week
    finally:
        if week.relay is not None:
            week.relay.send_signal(signal.SIGTERM)
            try:
                week.relay.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                week.relay.kill()
                week.relay.wait()
        internal.stop()
        msgw.stop()
        partner.destroy()


@pytest.fixture
def relay(week: Week) -> Week:
    """The relay process, started once and left running for the rest of the week."""
    if week.relay is None or week.relay.poll() is not None:
        week.relay = start_relay(week)
    return week


# -- Monday: the set-up ---------------------------------------------------------


def test_check_passes_on_the_first_time_config(week: Week) -> None:
    """The first command of the docs: the containers do not exist yet, the first sync makes them."""
    done = week.dirsync("check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_post_offices_are_imported(week: Week) -> None:
    code, runs = week.sync("msmail-po1", "fabrikam-x400")
    assert code == 0, runs
    by = {run["connection"]: run for run in runs}
    assert by["msmail-po1"]["status"] == "ok" and by["msmail-po1"]["counts"]["add"] == 32
    # 26 people and lists; the organization and its units have no O/R address.
    assert by["fabrikam-x400"]["counts"]["add"] == 26
    assert by["fabrikam-x400"]["counts"]["skipped"] == 4

    chen = week.hub_entries(week.container("PO1"), "(cn=Li Chen)")
    assert len(chen) == 1
    (attrs,) = chen.values()
    assert attrs["targetAddress"] == [LCHEN_MS]
    assert LCHEN_MS in attrs["proxyAddresses"]
    jean = week.hub_entries(week.container("Fabrikam"), "(cn=Jean Dupont)")
    (attrs,) = jean.values()
    assert attrs["targetAddress"] == [JEAN_X400]
    assert [week.status(name)[0]["status"] for name in ("msmail-po1", "fabrikam-x400")] \
        == ["ok", "ok"]

    code, again = week.sync("msmail-po1", "fabrikam-x400")
    assert code == 0
    assert all(run["counts"]["add"] + run["counts"]["modify"] + run["counts"]["delete"] == 0
               for run in again), again


def test_the_hub_users_are_exported_to_the_partner(week: Week) -> None:
    code, (run,) = week.sync("partner")
    assert code == 0, run
    assert run["counts"]["add"] == 24 and run["counts"]["error"] == 0, run
    partner = week.partner_by_cn()
    assert partner["Kim Abercrombie"]["mail"] == ["kabercrombie@contoso.example"]
    assert all(attrs["dirsyncSource"] == ["partner"] for attrs in partner.values())
    # Sam Wu may be stamped: his SMTP address is now a proxy address in the hub.
    (sam,) = week.hub_entries(f"uid=swu,{week.people}").values()
    assert "SMTP:swu@contoso.example" in sam["proxyAddresses"]

    code, (again,) = week.sync("partner")
    assert code == 0 and again["counts"]["unchanged"] == 24, again


# -- Tuesday: mail crosses the bridge ----------------------------------------------


def test_mail_to_an_imported_x400_contact_lands_in_the_gateway_queue(relay: Week) -> None:
    week = relay
    route = week.route(JEAN_X400)
    assert route.returncode == 0, route.stdout + route.stderr
    assert "cn=Jean Dupont" in route.stdout
    assert re.search(r"next hop:\s+x400 ", route.stdout), route.stdout

    week.swaks("kabercrombie@contoso.example", JEAN_IMCEA, "Budget for Paris")
    outbox = week.folder / "var" / "x400-out"

    def gateway_files() -> list[Message]:
        found = []
        for path in outbox.glob("*") if outbox.is_dir() else []:
            if path.is_file() and not path.name.startswith("."):
                msg = message_from_bytes(path.read_bytes())
                if msg["Subject"] == "Budget for Paris":
                    found.append(msg)
        return found

    (msg,) = wait_until(gateway_files, "the message in the X.400 gateway queue")
    assert msg["X400-Recipients"].strip() == JEAN_SLASH
    assert "kabercrombie" in msg["X400-Originator"].lower()
    # The tracking log says where it went (docs/relay.md, "Message tracking").
    # Its line is written once the queue file is in place, so it may come a
    # moment after the file.
    log = week.folder / "var" / "relay" / "tracking.jsonl"

    def delivered() -> bool:
        tracking = [json.loads(line) for line in log.read_text().splitlines()]
        return any(e["event"] == "delivered" and e["hop"] == "x400"
                   and e["recipient"] == JEAN_IMCEA for e in tracking)

    wait_until(delivered, "the delivery in the tracking log")


def test_mail_to_an_imported_ms_mail_contact_reaches_its_gateway(relay: Week) -> None:
    week = relay
    route = week.route(LCHEN_MS)
    assert route.returncode == 0, route.stdout + route.stderr
    assert "cn=Li Chen" in route.stdout
    assert re.search(r"next hop:\s+msgw ", route.stdout), route.stdout

    week.swaks("kabercrombie@contoso.example", LCHEN_IMCEA, "Lunch on Wednesday")
    ((recipients, _),) = wait_until(arrived(week.msgw, "Lunch on Wednesday"),
                                    "the message at the MS Mail gateway")
    assert recipients == ["IMCEAMS-MICROSOFT_PO1_LCHEN@msgw.example.net"]


def test_mail_from_the_gateway_reaches_a_hub_user(relay: Week) -> None:
    week = relay
    pickup = week.folder / "var" / "x400-in"
    pickup.mkdir(parents=True, exist_ok=True)
    # The gateway writes under a dot name, then renames (docs/relay.md, "Pickup").
    (pickup / ".from-jean").write_bytes(
        f"X400-Originator: {JEAN_SLASH}\r\n"
        "X400-Recipients: /DD.RFC-822=swu(a)contoso.example/O=Gateway/PRMD=Contoso/ADMD= /C=US/\r\n"
        "X400-Content-Type: P2-1988 (22)\r\n"
        "From: Jean Dupont\r\nSubject: Bonjour from Paris\r\n\r\nA bientot.\r\n".encode())
    (pickup / ".from-jean").rename(pickup / "from-jean")
    ((recipients, msg),) = wait_until(arrived(week.internal, "Bonjour from Paris"),
                                      "the message at the internal mail server")
    assert recipients == ["swu@contoso.example"]
    assert "Dupont" in msg["X400-Originator"]
    assert not (pickup / "from-jean").exists()  # taken, and only then deleted


# -- Wednesday: Sam Wu gets a new address --------------------------------------------


def test_a_changed_address_reaches_the_partner(relay: Week) -> None:
    week = relay
    week.ldapmodify(f"dn: uid=swu,{week.people}\nchangetype: modify\n"
                    "replace: mail\nmail: sam.wu@contoso.example\n")
    code, (run,) = week.sync("partner")
    assert code == 0, run
    assert run["counts"]["modify"] == 1, run
    assert week.partner_by_cn()["Sam Wu"]["mail"] == ["sam.wu@contoso.example"]
    # The old primary stays as a secondary, as a recipient policy does.
    (sam,) = week.hub_entries(f"uid=swu,{week.people}").values()
    assert "SMTP:sam.wu@contoso.example" in sam["proxyAddresses"]
    assert "smtp:swu@contoso.example" in sam["proxyAddresses"]
    # A full run finds the partner as the incremental one left it.
    code, (full,) = week.sync("partner", "--full")
    assert code == 0 and full["mode"] == "full"
    assert sum(full["counts"][k] for k in ("add", "modify", "rename", "delete")) == 0, full


def test_the_relay_routes_the_new_address_and_the_old_one(relay: Week) -> None:
    week = relay
    new = week.route("sam.wu@contoso.example")
    assert new.returncode == 0, new.stdout + new.stderr
    assert f"uid=swu,{week.people}" in new.stdout
    assert re.search(r"hop address:\s+sam\.wu@contoso\.example", new.stdout), new.stdout
    # Replies to old mail still reach him, at his new address.
    old = week.route("swu@contoso.example")
    assert old.returncode == 0, old.stdout + old.stderr
    assert f"uid=swu,{week.people}" in old.stdout
    assert re.search(r"hop address:\s+sam\.wu@contoso\.example", old.stdout), old.stdout

    week.swaks("kabercrombie@contoso.example", "sam.wu@contoso.example", "Welcome back, Sam")
    ((recipients, _),) = wait_until(arrived(week.internal, "Welcome back, Sam"),
                                    "the message at the internal mail server")
    assert recipients == ["sam.wu@contoso.example"]


# -- Thursday: a rename, a delete, a second Oliver Lee ---------------------------------


def test_a_rename_and_a_delete_in_the_post_office(week: Week) -> None:
    po1 = week.folder / "exports" / "po1.csv"
    rows = read_rows(po1)
    for row in rows:
        if row["Address"] == "MICROSOFT/PO1/AMARTIN":
            row["Display Name"], row["Last Name"] = "Anna Martin-Lee", "Martin-Lee"
    write_rows(po1, [r for r in rows if r["Address"] != "MICROSOFT/PO1/JSMITH"])
    code, (run,) = week.sync("msmail-po1")
    assert code == 0, run
    assert (run["counts"]["rename"], run["counts"]["delete"]) == (1, 1), run
    contacts = {a["cn"][0]: a for a in week.hub_entries(week.container("PO1"),
                                                        "(dirsyncSource=msmail-po1)").values()}
    assert "Anna Martin" not in contacts and "John Smith" not in contacts
    assert contacts["Anna Martin-Lee"]["dirsyncAnchor"] == ["MICROSOFT/PO1/AMARTIN"]


def test_a_rename_and_a_delete_in_the_hub_reach_the_partner(week: Week) -> None:
    before = week.partner_by_cn()
    week.ldapmodify(f"dn: uid=kabercrombie,{week.people}\nchangetype: modify\n"
                    "replace: cn\ncn: Kim Akers\n-\nreplace: displayName\ndisplayName: Kim Akers\n"
                    "-\nreplace: sn\nsn: Akers\n")
    subprocess.run(["ldapdelete", "-x", "-H", week.hub.url, "-D", week.hub.root_dn,
                    "-w", week.hub.root_pw, f"uid=djump,{week.people}"], check=True, timeout=WAIT)
    code, (run,) = week.sync("partner")
    assert code == 0, run
    assert (run["counts"]["rename"], run["counts"]["delete"]) == (1, 1), run
    after = week.partner_by_cn()
    assert "Kim Abercrombie" not in after and "Dan Jump" not in after
    assert after["Kim Akers"]["dirsyncAnchor"] == before["Kim Abercrombie"]["dirsyncAnchor"]


def test_a_second_person_with_a_taken_name_is_exported(week: Week) -> None:
    week.ldapmodify(f"dn: uid=olee2,{week.people}\nchangetype: add\n"
                    "objectClass: inetOrgPerson\nuid: olee2\ncn: Oliver Lee\nsn: Lee\n"
                    "givenName: Oliver\ndisplayName: Oliver Lee\nmail: olee2@contoso.example\n"
                    "ou: Support\n")
    code, (run,) = week.sync("partner")
    assert code == 0, run
    assert run["counts"]["add"] == 1 and run["counts"]["conflict"] == 0, run
    olivers = {rdn_value(dn): a for dn, a in week.partner_entries("(cn=Oliver Lee*)").items()}
    assert len(olivers) == 2, olivers
    # The first Oliver Lee keeps his name; the second gets one of his own.
    assert olivers.pop("Oliver Lee")["mail"] == ["olee@contoso.example"]
    ((name, second),) = olivers.items()
    assert name.startswith("Oliver Lee") and second["mail"] == ["olee2@contoso.example"]
    assert second["dirsyncSource"] == ["partner"]
    # Both modes reach the same partner.
    code, (full,) = week.sync("partner", "--full")
    assert code == 0
    assert sum(full["counts"][k] for k in ("add", "modify", "rename", "delete")) == 0, full


# -- Friday: Ctrl-C in the middle of a big run, then the scheduler ---------------------


def test_ctrl_c_ends_a_big_run_as_interrupted(week: Week) -> None:
    container = week.container("PO3")

    def in_hub() -> int:
        return len(entries(week.hub, container, "(dirsyncSource=msmail-po3)", ["1.1"]))

    proc = subprocess.Popen([sys.executable, "-m", "dirsync", "-c", str(week.config),
                             "sync", "msmail-po3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while in_hub() < 200:
            assert proc.poll() is None, "the run ended before Ctrl-C"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        week.notes["interrupted"] = True
        try:
            proc.wait(timeout=60)  # the writes in flight, bounded by the hub's timeout
        except subprocess.TimeoutExpired:
            pytest.fail("the run did not end after one Ctrl-C")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert in_hub() < BIG, "the run was not interrupted in the middle"
    last = week.status("msmail-po3")[0]
    assert last["status"] == "interrupted", last
    assert last["ended"], last
    assert 0 < last["counts"]["add"] <= in_hub(), last


def test_the_next_run_after_ctrl_c_converges(week: Week) -> None:
    assert week.notes.get("interrupted"), "the Ctrl-C step did not interrupt a run"
    code, (run,) = week.sync("msmail-po3")
    assert code == 0 and run["status"] == "ok", run
    anchors = [a["dirsyncAnchor"][0] for a in entries(
        week.hub, week.container("PO3"), "(dirsyncSource=msmail-po3)").values()]
    assert len(anchors) == BIG and len(set(anchors)) == BIG
    code, (again,) = week.sync("msmail-po3")
    assert code == 0 and again["counts"]["unchanged"] == BIG, again


def schedule_once(week: Week) -> tuple[int, list[dict[str, Any]]]:
    """``dirsync --log-format json schedule --once``, as the documented timer runs it."""
    done = week.dirsync("--log-format", "json", "schedule", "--once")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line that is not JSON: {line!r}")
    return done.returncode, events


ISO_MS_TZ = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


def test_the_scheduler_logs_the_end_of_each_run(week: Week) -> None:
    code, events = schedule_once(week)
    assert code == 0, events
    ends = {e.get("connection"): e for e in events if e.get("action") == "run"}
    assert set(ends) == {"msmail-po1", "fabrikam-x400", "partner", "msmail-po3"}, events
    for event in ends.values():
        assert event["result"] == "ok", event
        assert isinstance(event["run"], int), event
        assert isinstance(event["counts"], dict) and set(event["counts"]) == set(COUNTS), event
        assert ISO_MS_TZ.match(event["time"]), event
    assert ends["msmail-po3"]["counts"]["unchanged"] == BIG


def test_the_scheduler_logs_a_run_with_errors(week: Week) -> None:
    po1 = week.folder / "exports" / "po1.csv"
    rows = read_rows(po1)
    rows.append(dict(rows[0]))  # a row with a key seen before: reported and skipped
    write_rows(po1, rows)
    code, events = schedule_once(week)
    assert code in (0, 1), events
    (end,) = [e for e in events if e.get("action") == "run" and e.get("connection") == "msmail-po1"]
    assert end["result"] == "errors" and end["counts"]["error"] == 1, end
    problems = [e for e in events if e.get("level") in {"warning", "error"}]
    assert any("MICROSOFT/PO1/TBREMER" in json.dumps(e) for e in problems), events
