"""Benchmark: ``dirsync diff --format html`` on the generated pair of ``diff.sh``.

Run it with ``benchmarks/diff_html.sh`` (``--help`` lists the options). Not
part of the test suite. It makes (or reuses) the two LDIF files of
``benchmarks/diff_bench.py`` (N people each, about 1% modified, 0.1% added,
deleted and moved), then measures:

- ``dirsync diff OLD NEW --format ldif`` and ``--format html``: wall time
  and peak resident memory (``/usr/bin/time -v``), and the page's size;
- Debian's headless Chromium opening the page: the wall time of
  ``--screenshot`` (load, parse, layout and paint) against the same for an
  empty page, and what a script at the end of a copy of the page sees:
  the time since navigation start when it is reached and after a layout,
  the time of a layout with every section opened, the blocks and DNs in
  the DOM.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diff_bench  # noqa: E402  (the generator and the timer of diff.sh)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dirsync.testing.browser import chromium  # noqa: E402

PROBE = """<script>
const t = performance.now();
document.body.offsetHeight;  // force a layout
const t2 = performance.now();
document.querySelectorAll('details').forEach(d => { d.open = true; });
document.body.offsetHeight;  // the layout with every section opened
const opened = Math.round(performance.now() - t2);
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = JSON.stringify({parsed_ms: Math.round(t),
  layout_ms: Math.round(t2), open_all_ms: opened,
  blocks: document.querySelectorAll('article').length,
  names: document.querySelectorAll('ul.dns li').length,
  counts: Array.from(document.querySelectorAll('[id^="count-"]')).map(e => e.id + ' ' + e.textContent)});
document.body.appendChild(out);
</script>"""


def browser(page: Path, work: Path) -> dict[str, object]:
    empty = work / "empty.html"
    empty.write_text("<!DOCTYPE html><title>x</title><p>x</p>")
    shot = work / "shot.png"
    times = {}
    for name, target in (("empty", empty), ("page", page)):
        start = time.perf_counter()
        chromium("--window-size=1200,900", f"--screenshot={shot}", target.as_uri(),
                 timeout=600)
        times[name] = time.perf_counter() - start
    probe = work / "probe.html"
    with open(page, encoding="utf-8") as src, open(probe, "w", encoding="utf-8") as dst:
        dst.write(src.read() + PROBE)
    dom = chromium("--dump-dom", probe.as_uri(), timeout=600).stdout
    probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    seen = json.loads(html.unescape(found.group(1))) if found else {}
    return {"screenshot_s": round(times["page"], 1), "empty_s": round(times["empty"], 1),
            **seen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000,
                        help="people per file (default 1,000,000)")
    parser.add_argument("--work", default=str(REPO / "benchmarks" / "scratch" / "diff"),
                        help="folder for the generated files (shared with diff.sh)")
    args = parser.parse_args(argv)
    n = args.entries
    work = Path(args.work) / str(n)
    work.mkdir(parents=True, exist_ok=True)
    old, new = work / "old.ldif", work / "new.ldif"
    diff_bench.prepare(n, old, new, work / "manifest.json")
    python = REPO / ".venv" / "bin" / "python"
    py = str(python if python.exists() else sys.executable)
    lines = []
    for fmt in ("ldif", "html"):
        out = work / f"dirsync.{fmt}"
        run = diff_bench.measure(f"dirsync diff --format {fmt}", n,
                                 [py, "-m", "dirsync", "diff", str(old), str(new),
                                  "--format", fmt, "-o", str(out)], None, 3600)
        summary = re.search(r"diff: [^(\n]*", run.stderr)
        lines.append(f"| `--format {fmt}` | {run.seconds:.0f} s | {run.peak_mb:.0f} MB | "
                     f"{out.stat().st_size / 2**20:.2f} MB | "
                     f"{summary.group(0).strip() if summary else run.note} |")
        print(lines[-1], file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="dirsync-html-bench-") as tmp:
        seen = browser(work / "dirsync.html", Path(tmp))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = " ".join(["benchmarks/diff_html.sh", *(argv if argv is not None else sys.argv[1:])])
    text = (f"Command: `{command}`\n\nDate: {datetime.date.today().isoformat()}. Machine: "
            f"{diff_bench.machine()}; load average at the end {load}.\n\n"
            f"{n:,} entries per file.\n\n"
            "| dirsync diff | wall | peak memory | output | summary |\n|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n\nChromium (headless, 1200x900) on the page: "
            f"{json.dumps(seen)}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
