"""The delta report: its four files, and the HTML page in a real browser."""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dirsync.ldif.changes import Change, Mod
from dirsync.ldif.io import LDIFReader
from dirsync.sync.plan import Counts
from dirsync.sync.report import HTML_ENTRIES, Problem, Report, ReportItem
from dirsync.testing.browser import chromium, have_chromium

RUN = {"connection": "po1", "direction": "import", "mode": "incremental", "dry_run": False,
       "status": "errors", "run": 7, "started": "2026-01-02T03:04:05+00:00",
       "ended": "2026-01-02T03:04:06+00:00", "message": None,
       "container": "ou=Import,dc=example,dc=org", "source": "po1", "hub": "hub",
       "mapping": "mappings/csv-gal.toml"}
CONTAINER = "ou=Import,dc=example,dc=org"


def sample(folder: Path, items: int = 3) -> dict[str, Path]:
    report = Report.create(folder, "po1", "import", 7, dry_run=False)
    report.ldif(Change("add", f"cn=Ted,{CONTAINER}", attrs={"cn": [b"Ted"], "sn": [b"B"]}))
    report.ldif(Change("modify", f"cn=Ann,{CONTAINER}", mods=[Mod("replace", "title",
                                                                    [b"Boss <1>"])]))
    entries = [
        ReportItem("person", "ted", "add", f"cn=Ted,{CONTAINER}", None, "applied",
                   after={"cn": [b"Ted"], "sn": [b"B"], "jpegPhoto": [b"\xff\xd8"]}),
        ReportItem("person", "ann", "modify", f"cn=Ann,{CONTAINER}", None, "applied",
                   before={"title": [b"Clerk"]}, after={"title": [b"Boss <1>"]}),
        ReportItem("person", "bo", "rename", f"cn=Bo Ray,{CONTAINER}", f"cn=Bo,{CONTAINER}",
                   "failed", error="noSuchObject: no such object"),
    ]
    entries += [ReportItem("person", f"x{i}", "delete", f"cn=X{i},{CONTAINER}", None,
                           "applied", before={"cn": [f"X{i}".encode()]})
                for i in range(items - 3)]
    counts = Counts(add=1, modify=1, delete=max(0, items - 3), error=1, conflict=1)
    problems = [Problem("conflict", "jd", f"cn=John Doe,{CONTAINER}", "taken by hand", 12)]
    return report.finish(RUN, counts, iter(entries), problems)


def test_the_files_of_a_report(tmp_path: Path) -> None:
    files = sample(tmp_path)
    assert files["json"].parent.parent == tmp_path
    data = json.loads(files["json"].read_text())
    assert data["run"]["connection"] == "po1" and data["counts"]["error"] == 1
    add, modify, rename = data["entries"]
    assert add["attributes"]["jpegPhoto"] == {"before": None, "after": [{"base64": "/9g="}]}
    assert modify["attributes"] == {"title": {"before": ["Clerk"], "after": ["Boss <1>"]}}
    assert rename["old_dn"] == f"cn=Bo,{CONTAINER}" and rename["status"] == "failed"
    assert data["problems"] == [{"kind": "conflict", "message": "taken by hand", "anchor": "jd",
                                 "dn": f"cn=John Doe,{CONTAINER}", "line": 12}]
    text = files["text"].read_text()
    assert "counts: add 1, modify 1, rename 0, delete 0, unchanged 0, skipped 0, conflict 1, " \
           "error 1" in text
    assert 'title: "Clerk" -> "Boss <1>"' in text
    assert f"rename   cn=Bo,{CONTAINER} -> cn=Bo Ray,{CONTAINER}  [bo]  ** failed" in text
    with LDIFReader(str(files["ldif"])) as reader:
        records = list(reader)
    assert [r.kind for r in records] == ["add", "modify"]  # type: ignore[union-attr]


class _Collect(HTMLParser):
    """Text by element id, and the order of the top-level sections."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.sections: list[str] = []
        self.articles = 0
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag == "section" and ident:
            self.sections.append(ident)
        if tag == "article":
            self.articles += 1
        self._open.append(ident)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data


@pytest.fixture
def browser() -> None:
    if not have_chromium():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: the test command must install it")
        pytest.skip("chromium is not installed")


@pytest.mark.usefixtures("browser")
def test_the_html_page_in_a_browser(tmp_path: Path) -> None:
    files = sample(tmp_path, items=HTML_ENTRIES + 10)
    page = files["html"]
    dom = chromium("--dump-dom", page.as_uri()).stdout
    parsed = _Collect()
    parsed.feed(dom)
    # The summary comes first, then the entries, then the problems.
    assert parsed.sections == ["summary", "entries", "problems"]
    assert parsed.by_id["status"] == "errors"
    assert parsed.by_id["count-add"] == "1" and parsed.by_id["count-error"] == "1"
    assert parsed.articles == HTML_ENTRIES
    assert "Boss <1>" in dom.replace("&lt;", "<").replace("&gt;", ">")
    assert f"The first {HTML_ENTRIES} of {HTML_ENTRIES + 10} changed entries" in dom
    # It stands on its own: nothing but the page itself is loaded.
    assert "<script" not in page.read_text() and "http" not in page.read_text()
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,900", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 10_000


def test_a_group_change_shows_the_members_removed_and_added(tmp_path: Path) -> None:
    members = [f"cn=M{i},{CONTAINER}".encode() for i in range(500)]
    new_member = f"cn=New,{CONTAINER}".encode()
    report = Report.create(tmp_path, "po1", "import", 7, dry_run=False)
    item = ReportItem("group", "staff", "modify", f"cn=Staff,{CONTAINER}", None, "applied",
                      before={"member": members, "title": [b"Staff"]},
                      after={"member": [new_member, *reversed(members[1:])],
                             "title": [b"All staff"]})
    files = report.finish(RUN, Counts(modify=1), iter([item]), [])
    text = files["text"].read_text()
    assert (f'member: removed "cn=M0,{CONTAINER}"; added "cn=New,{CONTAINER}"; '
            "499 unchanged") in text
    assert 'title: "Staff" -> "All staff"' in text
    assert f"cn=M1,{CONTAINER}" not in text
    page = files["html"].read_text()
    assert page.count('class="removed"') == 1 and page.count('class="added"') == 1
    assert "499 values unchanged" in page and "cn=M1,<wbr>" not in page
    # The JSON file, for machines, keeps both whole lists.
    attrs = json.loads(files["json"].read_text())["entries"][0]["attributes"]
    assert len(attrs["member"]["before"]) == 500 and len(attrs["member"]["after"]) == 500


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_stopped_run_says_its_entries_were_not_applied(tmp_path: Path, dry_run: bool) -> None:
    report = Report.create(tmp_path, "po1", "import", 7, dry_run=dry_run)
    run = {**RUN, "status": "stopped", "dry_run": dry_run,
           "message": "3 deletes exceed the delete threshold of 2"}
    items = [ReportItem("delete", f"x{i}", "delete", f"cn=X{i},{CONTAINER}", None, "planned",
                        before={"cn": [f"X{i}".encode()]}) for i in range(3)]
    files = report.finish(run, Counts(delete=3), iter(items), [])
    statuses = [e["status"] for e in json.loads(files["json"].read_text())["entries"]]
    text = files["text"].read_text()
    page = files["html"].read_text()
    if dry_run:
        # A plan applies nothing anyway: planned, under a heading saying a sync would stop.
        assert statuses == ["planned"] * 3 and "not applied" not in text + page
        assert "Changes planned: a sync would stop before applying them" in text
        return
    assert statuses == ["not applied"] * 3
    heading = "Changes not applied: the run stopped before changing anything"
    assert f"\n{heading}:\n" in text and heading in page
    assert text.count("** not applied") == 3
    assert page.count('<span class="failed">not applied</span>') == 3
