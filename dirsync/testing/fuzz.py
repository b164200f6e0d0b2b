"""The fuzz harness: mutated foreign input, and what a run may do with it.

Inputs are the project's own fixtures (CSV and LDIF exports, the quick
start's config, the bundled mappings) cut, spliced and salted with the
bytes that matter to their syntax (line breaks, NUL, ``:<``, ``::``,
quotes, template marks...). Every run must end with an exit status of the
contract (0, 1, 2 or 3) and no traceback, within :data:`HANG_SECONDS`;
and a run that exits 2 must have changed nothing.

``tests/test_fuzz.py`` runs a short, fixed budget; ``benchmarks/fuzz.sh``
a long one (``DIRSYNC_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from dirsync.errors import DirsyncError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
HANG_SECONDS = 20

#: Bytes and tokens that mean something to LDIF, CSV, TOML or a template.
TOKENS = [
    b"\n", b"\r\n", b"\r", b"\x00", b"\x1b[2J", b"\xff", b"\xc3", b" ", b"\n ", b"\n\n",
    b":", b"::", b":<", b": ", b"-", b"\n-\n", b"#", b",", b"=", b"+", b";", b"\\", b'"',
    b"'", b"<", b">", b"@", b"[", b"]", b"{", b"}", b"{{", b"}}", b"{%", b"%}", b"|",
    b"dn: ", b"dn:: ", b"changetype: modrdn\n", b"changetype: modify\n", b"changetype: add\n",
    b"changetype: delete\n", b"newrdn: ", b"newsuperior: ", b"replace: cn\n", b"control: ",
    b"version: 1\n", b"file:///etc/hostname", b"file:///dev/zero", b"http://127.0.0.1:9/",
    b"cn=<=x", b";cn=x", b"SMTP:", b"smtp:ceo@example.org", b"X400:c=US;", b"=\"",
    b"[directories.x]\n", b"kind = \"csv\"\n", b"path = \"\"\n", b"[[connections]]\n",
    b"\"\"\"", b"0", b"-1", b"1e999", b"99999999999999999999",
]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, max_edits: int = 6) -> bytes:
    """``seed`` after a few random edits (cuts, splices, tokens, flipped bytes)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, max_edits))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["token", "bytes", "cut", "dup", "flip"]))
        if kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "cut" and data:
            end = min(len(data), at + draw(st.integers(1, 200)))
            del data[at:end]
        elif kind == "dup" and data:
            end = min(len(data), at + draw(st.integers(1, 400)))
            data[at:at] = data[at:end]
        elif kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


def seed(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Hang(BaseException):
    """A run went past HANG_SECONDS (a BaseException: no ``except Exception``
    on the way up may take it for an ordinary error)."""


@contextlib.contextmanager
def time_limit(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    status: int
    out: str
    err: str


@dataclass
class Figures:
    """What the runs of one session showed (benchmarks/fuzz.sh prints them)."""

    cases: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    tracebacks: int = 0
    hangs: int = 0
    changed_by_exit_2: int = 0

    def count(self, status: int) -> None:
        self.cases += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the figures so far to ``path`` (JSON), replacing what it held."""
        import json

        figures = {"reader_cases": READER_CASES[0], "command_runs": self.cases,
                   "exit_status": {str(k): v for k, v in sorted(self.by_status.items())},
                   "tracebacks": self.tracebacks, "hangs": self.hangs,
                   "changed_by_exit_2": self.changed_by_exit_2}
        Path(path).write_text(json.dumps(figures, indent=1) + "\n")


FIGURES = Figures()
READER_CASES = [0]  # inputs fed straight to a reader or loader


def run_cli(args: list[str]) -> Outcome:
    """``dirsync ARGS`` in-process, as the console script runs it.

    Anything but a return from :func:`dirsync.cli.main` (an exception it
    let through) is what a user would see as a traceback: it is raised
    again as an AssertionError naming the input.
    """
    from dirsync.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with time_limit(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(args)
    except Hang:
        FIGURES.hangs += 1
        raise
    except DirsyncError:
        FIGURES.tracebacks += 1
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        FIGURES.tracebacks += 1
        raise AssertionError(f"dirsync {' '.join(args)}: {type(exc).__name__}: {exc}") from exc
    text = out.getvalue() + err.getvalue()
    if "Traceback" in text:
        FIGURES.tracebacks += 1
    FIGURES.count(status)
    return Outcome(status, out.getvalue(), err.getvalue())


def snapshot(folder: Path) -> dict[str, str]:
    """Path -> content hash of every file under ``folder``, reports aside.

    A state store counts by what it holds, its run history aside: every
    run, a failed one and a plan too, is recorded there by design
    (``dirsync status``), in a store created for it if need be.
    """
    found = {}
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if not path.is_file() or "reports" in parts or path.name.endswith(("-wal", "-shm")):
            continue
        if path.read_bytes()[:16] == b"SQLite format 3\x00":
            digest = _state_digest(path)
            if digest != _NOTHING:  # a store holding nothing is as good as none
                found[str(path.relative_to(folder))] = digest
        else:
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


_NOTHING = hashlib.sha256().hexdigest()


def _state_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            if table in ("runs", "sqlite_sequence", "meta"):
                continue
            for row in db.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                digest.update(repr((table, row)).encode())
    return digest.hexdigest()


def check_outcome(outcome: Outcome, before: dict[str, str], after: dict[str, str],
                  what: str) -> None:
    assert outcome.status in (0, 1, 2, 3), (what, outcome)
    assert "Traceback" not in outcome.out + outcome.err, (what, outcome)
    if outcome.status == 2 and before != after:
        FIGURES.changed_by_exit_2 += 1
        raise AssertionError(f"{what}: exit 2, yet files changed: "
                             f"{sorted(set(before.items()) ^ set(after.items()))}")


QUICKSTART_CONFIG = """\
state = "var/state.sqlite"
reports = "var/reports"

[directories.hub]
kind = "ldif"
path = "var/hub.ldif"
base = "dc=example,dc=org"

[directories.po1]
kind = "csv"
path = "var/po1.csv"
key = "Alias"

[[connections]]
name = "contoso-gal"
foreign = "po1"
hub = "hub"
mapping = "csv-gal.toml"
import_container = "ou=Contoso GAL,ou=Contacts,dc=example,dc=org"
direction = "import"
recipients = "contact"
lists = "contact"
delete_threshold = "25%"
"""


def workspace(folder: Path, *, csv: bytes | None = None, config: bytes | None = None,
              mapping: bytes | None = None, hub: bytes | None = None) -> Path:
    """The quick start in ``folder`` (an LDIF hub, a CSV source), parts replaced."""
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "var").mkdir(parents=True)
    (folder / "var" / "po1.csv").write_bytes(csv if csv is not None else seed("gal.csv"))
    (folder / "csv-gal.toml").write_bytes(
        mapping if mapping is not None else (ROOT / "mappings" / "csv-gal.toml").read_bytes())
    if hub is not None:
        (folder / "var" / "hub.ldif").write_bytes(hub)
    path = folder / "dirsync.toml"
    path.write_bytes(config if config is not None else QUICKSTART_CONFIG.encode())
    return path


def examples(default: int, scale: int = 1) -> int:
    """Examples per fuzz test: ``default``, or DIRSYNC_FUZZ_EXAMPLES times ``scale``."""
    wanted = os.environ.get("DIRSYNC_FUZZ_EXAMPLES")
    return int(wanted) * scale if wanted else default
