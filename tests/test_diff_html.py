"""``dirsync diff --format html``: the page in a real browser, and its parts."""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from dirsync.cli.main import main
from dirsync.entry import Entry
from dirsync.ldif import diffhtml
from dirsync.ldif.changes import value_changes
from dirsync.ldif.diff import DiffOptions, diff
from dirsync.ldif.diffhtml import HTMLSink
from dirsync.ldif.htmlreport import dn_html, escape, rdns, value_html
from dirsync.testing.browser import chromium, dump_dom, have_chromium

SUFFIX = "dc=example,dc=org"
# Where a test run keeps its screenshot of a small diff (ignored by git).
ARTEFACTS = Path(os.environ.get("DIRSYNC_ARTEFACTS",
                                Path(__file__).resolve().parents[1] / "var" / "artefacts"))
SCRIPT = "<script>document.body.insertAdjacentHTML('beforeend','<p id=\"pwned\">ran</p>')</script>"
MARKUP = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"
LONG_OUS = ["ou=Regional Procurement and Vendor Management", "ou=Central Europe Division",
            "ou=Operations and Logistics Department", "ou=Headquarters Organisation"]


def _ldif(entries: Iterable[Entry]) -> str:
    import base64

    out = []
    for entry in entries:
        out.append(f"dn: {entry.dn}")
        for name, values in entry.attrs.items():
            for value in values:
                out.append(f"{name}:: {base64.b64encode(value).decode()}")
        out.append("")
    return "\n".join(out) + "\n"


def person(dn: str, uid: str, **attrs: str | bytes) -> Entry:
    cn = dn.split(",")[0].split("=", 1)[1]
    entry = Entry(dn, {"objectClass": [b"inetOrgPerson"], "cn": [cn.encode()],
                       "sn": [b"Person"], "uid": [uid.encode()]})
    for name, value in attrs.items():
        entry.add(name, [value if isinstance(value, bytes) else value.encode()])
    return entry


MEMBERS = [f"uid=m{i:03d},ou=People,{SUFFIX}".encode() for i in range(500)]


def inputs(folder: Path) -> tuple[Path, Path]:
    """OLD and NEW: one add (a long DN), two modifies (a group that lost one
    of its 500 members; a person given markup and a new photo), one rename
    (by uid), one delete."""
    top = [Entry(SUFFIX, {"objectClass": [b"domain"], "dc": [b"example"]}),
           Entry(f"ou=People,{SUFFIX}", {"objectClass": [b"organizationalUnit"],
                                         "ou": [b"People"]})]
    long_parent = f"ou=People,{SUFFIX}"
    parents = []
    for ou in reversed(LONG_OUS):
        long_parent = f"{ou},{long_parent}"
        parents.append(Entry(long_parent, {"objectClass": [b"organizationalUnit"],
                                           "ou": [ou.split("=", 1)[1].encode()]}))
    group = f"cn=staff,ou=People,{SUFFIX}"
    old = [*top, *parents,
           Entry(group, {"objectClass": [b"groupOfNames"], "cn": [b"staff"],
                         "member": MEMBERS}),
           person(f"cn=Ted Bremer,ou=People,{SUFFIX}", "ted", title="Clerk",
                  jpegPhoto=b"\xff\xd8\xff\xe0old"),
           person(f"cn=Ron,ou=People,{SUFFIX}", "ron"),
           person(f"cn=Gone Away,ou=People,{SUFFIX}", "gone")]
    new = [*top, *parents,
           Entry(group, {"objectClass": [b"groupOfNames"], "cn": [b"staff"],
                         "member": list(reversed(MEMBERS[:123] + MEMBERS[124:]))}),
           person(f"cn=Ted Bremer,ou=People,{SUFFIX}", "ted", title=SCRIPT,
                  description=MARKUP, jpegPhoto=b"\xff\xd8\xff\xe0new"),
           person(f"cn=Ron Renamed,ou=People,{SUFFIX}", "ron"),
           person(f"cn=Long Name Person,{long_parent}", "long")]
    (folder / "old.ldif").write_text(_ldif(old))
    (folder / "new.ldif").write_text(_ldif(new))
    return folder / "old.ldif", folder / "new.ldif"


# What the page holds, read by the browser's own DOM after layout.
FACTS = """<script>
const q = (s, root) => Array.from((root || document).querySelectorAll(s));
const text = e => e ? e.textContent : null;
const block = dn => q('article').find(a => text(a.querySelector('h3 code.dn')) === dn);
const staff = block('cn=staff,ou=People,dc=example,dc=org');
const ted = block('cn=Ted Bremer,ou=People,dc=example,dc=org');
const row = (art, name) => q('tr', art).find(r => text(r.querySelector('th')).startsWith(name));
const longDn = q('article.add h3 code.dn')[0];
const facts = {
  counts: Object.fromEntries(q('[id^="count-"]').map(e => [e.id, e.textContent])),
  blocks: Object.fromEntries(q('section[id]').map(s => [s.id, q('article', s).length])),
  classes: q('article').map(a => a.className),
  summary: text(document.getElementById('summary')),
  removed: q('td.before .removed', staff).map(text),
  added: q('td.after .added', staff).map(text),
  kept: text(staff.querySelector('.kept')),
  title: text(row(ted, 'title').querySelector('td.after')),
  description: text(row(ted, 'description').querySelector('td.after')),
  photo: [text(row(ted, 'jpegPhoto').querySelector('td.before')),
          text(row(ted, 'jpegPhoto').querySelector('td.after'))],
  images: document.images.length,
  scripts: document.scripts.length,
  pwned: document.getElementById('pwned') !== null,
  pageTitle: document.title,
  rdnLines: q('.rdn', longDn).map(r => r.getClientRects().length),
  dnLines: new Set(q('.rdn', longDn).map(r => Math.round(r.getBoundingClientRect().top))).size,
};
const out = document.createElement('pre');
out.id = 'facts';
out.textContent = JSON.stringify(facts);
document.body.appendChild(out);
</script>"""


@pytest.fixture
def browser() -> None:
    if not have_chromium():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: the test command must install it")
        pytest.skip("chromium is not installed")


def _facts(page: Path, tmp_path: Path, width: int) -> dict[str, Any]:
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8") + FACTS, encoding="utf-8")
    dom = dump_dom(probe, f"--window-size={width},2000")
    found = re.search(r'<pre id="facts">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    facts: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return facts


@pytest.mark.usefixtures("browser")
def test_the_diff_page_in_a_browser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = inputs(tmp_path)
    page = tmp_path / "diff.html"
    assert main(["diff", str(old), str(new), "--format", "html", "-o", str(page),
                 "--key", "uid", "--ignore", "mobile,pager"]) == 0
    assert "1 added, 2 modified, 1 renamed, 1 deleted" in capsys.readouterr().err
    raw = page.read_text(encoding="utf-8")
    # Nothing from the inputs became markup: the only tags are the writer's.
    assert "<script" not in raw and "<img" not in raw and "http" not in raw
    facts = _facts(page, tmp_path, width=700)
    assert facts["counts"] == {"count-added": "1", "count-modified": "2",
                               "count-renamed": "1", "count-deleted": "1"}
    # One block per change, in its section, coloured by its kind.
    assert facts["blocks"] == {"summary": 0, "added": 1, "modified": 2, "renamed": 1,
                               "deleted": 1}
    assert facts["classes"] == ["entry add", "entry modify", "entry modify", "entry rename",
                                "entry delete"]
    # The header: both inputs, the key, the ignore list.
    summary = str(facts["summary"])
    for part in (str(old), str(new), "Key attributeuid", "mobile, pager",
                 "operational attributes"):
        assert part in summary
    # The group lost one of its 500 members (listed in another order): that one.
    assert facts["removed"] == [f"uid=m123,ou=People,{SUFFIX}"]
    assert facts["added"] == [] and facts["kept"] == "499 values unchanged"
    # Markup in values is text; no script of theirs ran, no image was made.
    assert facts["title"] == SCRIPT and facts["description"] == MARKUP
    assert facts["scripts"] == 1 and not facts["pwned"] and facts["images"] == 0
    assert "pwned" not in str(facts["pageTitle"])
    # Binary values: size and a short hash, never the bytes.
    digest = hashlib.sha256(b"\xff\xd8\xff\xe0old").hexdigest()[:12]
    assert facts["photo"][0] == f"binary, 7 bytes, sha256 {digest}"
    # The long DN wraps in a 700 px window, at commas only: every RDN on one line.
    assert facts["dnLines"] > 1, facts
    assert facts["rdnLines"] == [1] * (len(LONG_OUS) + 4)
    # The screenshot a person would see, kept for a look after the run.
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "diff-report.png"
    shutil.copy(page, ARTEFACTS / "diff-report.html")
    chromium("--window-size=1200,1400", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 10_000
    print(f"screenshot of the diff page: {shot}")


def _modifies(count: int) -> tuple[list[Entry], list[Entry]]:
    old = [Entry(f"uid=u{i:03d},{SUFFIX}", {"uid": [f"u{i:03d}".encode()], "title": [b"a"]})
           for i in range(count)]
    new = [Entry(e.dn, {"uid": e.get("uid"), "title": [b"b"]}) for e in old]
    return old, new


def test_a_large_diff_is_cut_per_section_and_collapsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diffhtml, "BLOCKS", 5)
    monkeypatch.setattr(diffhtml, "NAMES", 3)
    monkeypatch.setattr(diffhtml, "OPEN_UP_TO", 4)
    old, new = _modifies(20)
    out = io.StringIO()
    summary = diff(old, new + [Entry(f"cn=x,{SUFFIX}", {"cn": [b"x"]})],
                   HTMLSink(out, old="a.ldif", new="b.ldif"), options=DiffOptions())
    page = out.getvalue()
    assert summary.modified == 20 and summary.added == 1
    modified = page[page.index('<section id="modified">'):page.index('<section id="renamed">')]
    assert modified.count("<article") == 5 and modified.count("<li>") == 3
    assert "<details>" in modified and "<details open>" not in modified
    assert 'id="modified-rest">and 12 more' in modified
    # The small section next to it is open, and whole.
    added = page[page.index('<section id="added">'):page.index('<section id="modified">')]
    assert "<details open>" in added and added.count("<article") == 1


def test_an_equal_pair_says_so(tmp_path: Path) -> None:
    out = io.StringIO()
    same = [Entry(SUFFIX, {"dc": [b"example"]})]
    diff(same, same, HTMLSink(out, old="a", new="b", key=None, ignore=()))
    page = out.getvalue()
    assert 'id="no-differences"' in page and "<article" not in page
    assert "Ignored attributes</th><td>none" in page


def test_an_input_error_leaves_no_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ldif"
    bad.write_text("dn: cn=a\ncn a\n")
    page = tmp_path / "out.html"
    assert main(["diff", str(bad), str(bad), "--format", "html", "-o", str(page)]) == 2
    assert not page.exists() and not list(tmp_path.glob(".out.html*"))


# -- the pieces -----------------------------------------------------------------

@pytest.mark.parametrize(("dn", "parts"), [
    ("cn=Ted,ou=People,dc=x", ["cn=Ted", "ou=People", "dc=x"]),
    (r"cn=Doe\, John,dc=x", [r"cn=Doe\, John", "dc=x"]),
    (r"cn=a\\,dc=x", [r"cn=a\\", "dc=x"]),
    ('cn="Doe, John",dc=x', ['cn="Doe, John"', "dc=x"]),
    (r"cn=O'Neil\2C Pat,dc=x", [r"cn=O'Neil\2C Pat", "dc=x"]),
    ("cn=a+uid=b,dc=x", ["cn=a+uid=b", "dc=x"]),
])
def test_a_dn_splits_at_its_separators_only(dn: str, parts: list[str]) -> None:
    assert rdns(dn) == parts
    assert re.sub(r"<[^>]+>", "", dn_html(dn)) == html.escape(dn)


@pytest.mark.parametrize(("attr", "value", "shown"), [
    ("cn", b"<b>Ted</b> & co", '<span class="value">&lt;b&gt;Ted&lt;/b&gt; &amp; co</span>'),
    ("jpegPhoto", b"<script>", "binary, 8 bytes, sha256 "
     + hashlib.sha256(b"<script>").hexdigest()[:12]),
    ("description", b"\xffnot utf-8", "binary, 10 bytes, sha256 "),
    ("description", b"bell\x07", '\u2407'),
])
def test_a_value_is_shown_as_text_or_as_size_and_hash(attr: str, value: bytes,
                                                      shown: str) -> None:
    assert shown in value_html(attr, value)
    assert "<script>" not in value_html(attr, value)


def test_a_long_value_is_cut_with_its_length() -> None:
    shown = value_html("description", b"x" * 5000)
    assert "5,000 characters in all" in shown and "x" * 1001 not in shown


def test_control_characters_are_made_visible() -> None:
    assert escape("a\x00b\x1b") == ('a<span class="ctl">\u2400</span>b'
                                     '<span class="ctl">\u241b</span>')


@pytest.mark.parametrize(("attr", "old", "new", "removed", "added", "respelled", "kept"), [
    ("member", MEMBERS, MEMBERS[:10] + MEMBERS[11:], [MEMBERS[10]], [], [], 499),
    ("member", MEMBERS[:3], list(reversed(MEMBERS[:3])), [], [], [], 3),
    # DN matching: another spelling of the same DN is the same member.
    ("member", [b"uid=a,dc=x"], [b"UID=a, DC=x", b"uid=b,dc=x"], [], [b"uid=b,dc=x"],
     [(b"uid=a,dc=x", b"UID=a, DC=x")], 0),
    ("cn", [b"Ted", b"Bo"], [b"TED", b"Bo"], [], [], [(b"Ted", b"TED")], 1),
    ("objectClass", [b"top", b"person"], [b"top", b"inetOrgPerson"], [b"person"],
     [b"inetOrgPerson"], [], 1),
])
def test_values_removed_and_added_by_matching_rule(
        attr: str, old: list[bytes], new: list[bytes], removed: list[bytes],
        added: list[bytes], respelled: list[tuple[bytes, bytes]], kept: int) -> None:
    found = value_changes(attr, old, new)
    assert (found.removed, found.added, found.respelled, found.kept) == (
        removed, added, respelled, kept)


def test_a_deleted_entry_shows_its_attributes_but_not_the_ignored_ones() -> None:
    gone = Entry(f"cn=Gone,{SUFFIX}", {"cn": [b"Gone"], "title": [b"Clerk"],
                                      "modifyTimestamp": [b"20260101000000Z"]})
    out = io.StringIO()
    summary = diff([gone], [], HTMLSink(out, old="a", new="b"))
    page = out.getvalue()
    assert summary.deleted == 1 and page.count("<article") == 1
    assert ">Clerk<" in page and "modifyTimestamp" not in page


def test_the_page_goes_to_stdout_without_o(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    old, new = inputs(tmp_path)
    assert main(["diff", str(old), str(new), "--format", "html"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("<!DOCTYPE html>") and captured.out.endswith("</html>\n")
    # By DN, the renamed person is a delete and an add.
    assert '<td id="count-added">2</td>' in captured.out
    assert '<td id="count-renamed">0</td>' in captured.out
    assert "diff: 2 added, 2 modified, 0 renamed, 2 deleted" in captured.err
