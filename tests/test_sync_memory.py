"""A large import keeps its memory flat: a regression guard, not a timing test.

200,000 generated csv-gal rows go into a slapd of the test's own (mdb with
``dbnosync``): the first sync, then a run that reads the export written
again in another order (every row hashed and compared with the state and
the hub). Each ``dirsync sync`` runs in a process of its own, which
reports its own peak resident memory when the command returns: VmHWM from
/proc/self/status, which is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
without what a process forked from this large test process inherits from
it (on Linux, ru_maxrss keeps the parent's peak across exec).

Before the run's bookkeeping moved to disk (dirsync.sync.scratch), these
runs took about 1 KB per entry: some 270 MB here; now they stay near what
a run of a few hundred entries takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirsync.testing.slapd import SlapdServer, find_slapd
from dirsync.testing.sync import gal_rows, hub_config, write_csv

ROWS = 200_000
#: Peak resident memory allowed to one run, in MB (measured: see RESULTS.md).
BOUND_MB = 180

_CHILD = """
import json, resource, sys
from dirsync.cli.main import main
from dirsync.sync.pipeline import peak_memory_mb
out = sys.argv[1]
status = main(sys.argv[2:])
with open(out, "w") as stream:
    json.dump({"status": status, "peak_mb": peak_memory_mb(),
               "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
              stream)
"""


def run_measured(tmp_path: Path, config: Path) -> dict[str, float]:
    out = tmp_path / "peak.json"
    done = subprocess.run([sys.executable, "-c", _CHILD, str(out), "-c", str(config), "--json",
                           "sync"], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, float] = json.loads(out.read_text())
    assert found["status"] == 0, (done.stdout[-2000:], done.stderr[-2000:])
    line = json.loads(done.stdout.strip().splitlines()[-1])
    found.update({f"count_{k}": v for k, v in line["counts"].items()})
    return found


@pytest.fixture
def big_hub() -> Iterator[SlapdServer]:
    """A server of its own: 200,000 entries would slow the shared one down."""
    if find_slapd() is None:
        if os.environ.get("CI"):
            pytest.fail("slapd is missing in CI: the test command must install it")
        pytest.skip("slapd is not installed")
    server = SlapdServer(dbnosync=True).start()
    server.add_suffix()
    server.add_ou(f"ou=Big,{server.suffix}")
    yield server
    server.destroy()


def test_a_200000_row_sync_stays_under_its_memory_bound(tmp_path: Path,
                                                         big_hub: SlapdServer) -> None:
    rows = gal_rows(ROWS)
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, big_hub, f"ou=Import,ou=Big,{big_hub.suffix}", source,
                        threshold=ROWS)

    first = run_measured(tmp_path, config)
    assert first["count_add"] == ROWS
    assert first["peak_mb"] < BOUND_MB, first

    # The same rows in another order: the file's fingerprint moved, so
    # every row is read and compared, and nothing is written.
    write_csv(source, rows[::-1])
    del rows
    again = run_measured(tmp_path, config)
    assert again["count_unchanged"] == ROWS and again["count_add"] == 0
    assert again["count_modify"] == 0 and again["count_delete"] == 0
    assert again["peak_mb"] < BOUND_MB, again
