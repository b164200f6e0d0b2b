"""Reading Active Directory: the ad kind against ldapsearch, and DirSync's cost.

Starts a Samba AD DC (dirsync/testing/samba.py; it needs the ports 389 and
636 of 127.0.0.1), and for each size N:

- adds N mail-enabled contacts below one OU;
- times a full read of the ``ad`` kind (ADDirectory.read: paged, GUIDs to
  text, recipient rule) against ``ldapsearch -E pr=1000/noprompt`` reading
  the same objects and attributes over the same ldaps;
- takes a DirSync cookie, changes 100 of the contacts, and times the DirSync
  read of those changes (addirsync.read_dirsync), to see whether its cost
  depends on the size of the domain.

    .venv/bin/python benchmarks/ad_read_bench.py --sizes 1000 3000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import ldap

from dirsync.directories import ADDirectory, TLSOptions
from dirsync.directories.ad import MAIL_ENABLED, READ_ATTRIBUTES, RECIPIENT_CLASSES
from dirsync.directories.addirsync import read_dirsync
from dirsync.testing.samba import SambaDC

CHANGES = 100


def add_contacts(dc: SambaDC, ou: str, start: int, stop: int) -> list[str]:
    conn = dc.connect()
    dns = []
    pending = []
    for i in range(start, stop):
        dn = f"CN=Contact {i:06d},{ou}"
        pending.append(conn.add_ext(dn, [
            ("objectClass", [b"top", b"person", b"organizationalPerson", b"contact"]),
            ("cn", [f"Contact {i:06d}".encode()]),
            ("displayName", [f"Contact {i:06d}".encode()]),
            ("mail", [f"c{i:06d}@partner.example".encode()]),
            ("proxyAddresses", [f"SMTP:c{i:06d}@partner.example".encode()]),
        ]))
        dns.append(dn)
        if len(pending) >= 64:
            for msgid in pending:
                conn.result(msgid)
            pending = []
    for msgid in pending:
        conn.result(msgid)
    conn.unbind_s()
    return dns


def timed(func: object, rounds: int) -> tuple[float, object]:
    times = []
    result = None
    for _ in range(rounds):
        started = time.perf_counter()
        result = func()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dc = SambaDC().start()
    print(f"DC set-up: {', '.join(f'{k} {v:.1f}s' for k, v in dc.timings.items())}")
    try:
        total = 0
        ou = dc.add_ou("Bench")
        print("| objects | ad kind full read s | ldapsearch s | ratio | DirSync read of "
              f"{CHANGES} changes s |")
        print("|---|---|---|---|---|")
        for size in sorted(args.sizes):
            add_contacts(dc, ou, total, size)
            total = size
            directory = ADDirectory(dc.url, base=ou, bind_dn=dc.admin_upn,
                                    password=dc.admin_password,
                                    tls=TLSOptions(ca_file=str(dc.ca_file)))
            full, count = timed(lambda: sum(1 for _ in directory.read()), args.rounds)
            assert count == total, (count, total)
            env = {**os.environ, "LDAPTLS_CACERT": str(dc.ca_file)}
            command = ["ldapsearch", "-LLL", "-x", "-H", dc.url, "-D", dc.admin_upn,
                       "-w", dc.admin_password, "-b", ou, "-E", "pr=1000/noprompt",
                       f"(&{RECIPIENT_CLASSES}{MAIL_ENABLED})", *READ_ATTRIBUTES]
            tool, out = timed(lambda: subprocess.run(command, capture_output=True, env=env,
                                                     check=True).stdout, args.rounds)
            assert out.count(b"\ndn: ") + out.startswith(b"dn: ") == total  # type: ignore[union-attr]
            # DirSync: a cookie, 100 changes, the read of them.
            first = read_dirsync(directory, None)
            for _ in first:
                pass
            targets = [f"CN=Contact {i:06d},{ou}" for i in range(CHANGES)]
            conn = dc.connect()
            for dn in targets:
                conn.modify_s(dn, [(ldap.MOD_REPLACE, "telephoneNumber",
                                    [f"+1 555 {size}".encode()])])
            conn.unbind_s()

            def changes() -> int:
                read = read_dirsync(directory, first.cookie)
                return sum(1 for c in read if c.in_scope)

            incremental, seen = timed(changes, args.rounds)
            assert seen == CHANGES, seen
            directory.close()
            print(f"| {total:,} | {full:.2f} | {tool:.2f} | {full / tool:.2f} | "
                  f"{incremental:.3f} |")
    finally:
        dc.destroy()


if __name__ == "__main__":
    main()
