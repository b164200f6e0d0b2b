"""The HTML writer shared by the sync run's report and ``dirsync diff --format html``.

A page is written as a stream of strings: :func:`page_start`, then blocks
(:func:`block`, one per changed entry) and tables, then :func:`page_end`.
Everything that comes from an input (DNs, values, attribute names, file
names) goes through :func:`html.escape` here, so no input can add markup or
a script to a page. The pages load nothing: no script, no font, no image.

- A DN wraps at the commas between its RDNs, never inside one.
- A binary value (or one that is not UTF-8) is shown as its size and a
  short SHA-256, never raw; a very long text value is cut, with its length.
- A block off screen is neither laid out nor painted until it scrolls
  into view (``content-visibility: auto``): a page of thousands of blocks
  opens, and its sections unfold, in about a second.
- An attribute with more than one value on either side is shown by value:
  the values removed and added (by the attribute's matching rule,
  :func:`dirsync.ldif.changes.value_changes`) and how many stayed, so a group
  that lost one of 500 members shows that one member.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Sequence

from dirsync.ldif.changes import value_changes
from dirsync.schema import is_binary, is_dn_valued

# A value longer than this is cut (its length is given).
VALUE_CHARS = 1000
# Values shown per attribute and side; the rest are counted.
VALUES_SHOWN = 200

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.counts td{text-align:right;min-width:4em}
.status-ok{color:#1a7f37}.status-errors{color:#b35900}.status-stopped{color:#c00}
article{border-left:4px solid #999;padding:.2em 0 .2em .8em;margin:1em 0;
        content-visibility:auto;contain-intrinsic-size:auto 10em}
article.add{border-color:#1a7f37}article.modify{border-color:#0969da}
article.rename{border-color:#8250df}article.delete{border-color:#c00}
article h3{font-size:1em;margin:.2em 0;font-weight:normal}
.action{font-weight:bold;text-transform:uppercase;margin-right:.5em}
.add .action{color:#1a7f37}.modify .action{color:#0969da}
.rename .action{color:#8250df}.delete .action{color:#c00}
.failed{color:#c00;font-weight:bold}
code{font-family:ui-monospace,monospace}
code.dn{word-break:normal;overflow-wrap:normal}
.rdn{white-space:nowrap}
.value{white-space:pre-wrap;overflow-wrap:anywhere}
.binary,.more,.kept{color:#666;font-style:italic}
.ctl{color:#b35900}
td.before{background:#fff0f0}td.after{background:#f0fff0}
.removed::before{content:"\\2212\\a0";color:#c00}.added::before{content:"+\\a0";color:#1a7f37}
details>summary{cursor:pointer;font-size:1.2em;font-weight:bold;margin:.6em 0}
ul.dns{padding-left:1.2em}
"""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def escape(text: str) -> str:
    """``text`` as HTML text: markup escaped, control characters made visible."""
    out = html.escape(text)
    if _CONTROL.search(out) is None:
        return out
    return _CONTROL.sub(lambda m: f'<span class="ctl">{_picture(m.group())}</span>', out)


def _picture(char: str) -> str:
    # The Unicode control pictures (U+2400 ...): visible, and not the character.
    return "\u2421" if char == "\x7f" else chr(0x2400 + ord(char))


def page_start(title: str, css: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{CSS}{css}</style></head><body>\n"
            f"<h1>{escape(title)}</h1>\n")


def page_end() -> str:
    return "</body></html>\n"


# -- names and values --------------------------------------------------------

def rdns(dn: str) -> list[str]:
    """The RDNs of ``dn`` as written (escapes kept), split at the unescaped
    commas; no check of the DN's syntax (it is only shown)."""
    parts: list[str] = []
    start = 0
    i = 0
    quoted = False
    while i < len(dn):
        char = dn[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(dn[start:i])
            start = i + 1
        i += 1
    parts.append(dn[start:])
    return parts


def dn_html(dn: str) -> str:
    """A DN that a browser wraps only after a comma, never inside an RDN."""
    if not dn:
        return '<code class="dn">(the root DSE)</code>'
    inner = ",<wbr>".join(f'<span class="rdn">{escape(rdn)}</span>' for rdn in rdns(dn))
    return f'<code class="dn">{inner}</code>'


def value_html(attr: str, value: bytes) -> str:
    """One value: its text, or for binary data its size and a short hash."""
    text: str | None = None
    if not is_binary(attr):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is None:
        digest = hashlib.sha256(value).hexdigest()[:12]
        return (f'<span class="binary">binary, {len(value):,} bytes, '
                f"sha256 {digest}</span>")
    if is_dn_valued(attr) and len(text) <= VALUE_CHARS:
        return dn_html(text)
    if len(text) > VALUE_CHARS:
        return (f'<span class="value">{escape(text[:VALUE_CHARS])}</span>'
                f'<span class="more"> &hellip; ({len(text):,} characters in all)</span>')
    return f'<span class="value">{escape(text)}</span>'


def _values(attr: str, values: Sequence[bytes], mark: str = "") -> str:
    cls = f' class="{mark}"' if mark else ""
    shown = "".join(f"<div{cls}>{value_html(attr, v)}</div>" for v in values[:VALUES_SHOWN])
    if len(values) > VALUES_SHOWN:
        shown += (f'<div class="more">and {len(values) - VALUES_SHOWN:,} more '
                  "values</div>")
    return shown


def attribute_row(name: str, old: Sequence[bytes], new: Sequence[bytes]) -> str:
    """One row of a before/after table. With more than one value on a side
    (and values on both), the values removed and added, not both lists."""
    head = escape(name)
    if old and new and (len(old) > 1 or len(new) > 1):
        found = value_changes(name, list(old), list(new))
        removed = found.removed + [o for o, _ in found.respelled]
        added = found.added + [n for _, n in found.respelled]
        if found.kept:
            head += (f'<div class="kept">{found.kept:,} value{"s" if found.kept != 1 else ""}'
                     " unchanged</div>")
        before, after = _values(name, removed, "removed"), _values(name, added, "added")
    else:
        before, after = _values(name, old), _values(name, new)
    return (f'<tr><th>{head}</th><td class="before">{before}</td>'
            f'<td class="after">{after}</td></tr>')


def attribute_table(rows: Iterable[tuple[str, Sequence[bytes], Sequence[bytes]]]) -> str:
    body = "".join(attribute_row(name, old, new) for name, old, new in rows)
    if not body:
        return ""
    return f"<table><tr><th>attribute</th><th>before</th><th>after</th></tr>{body}</table>"


# -- blocks and tables -----------------------------------------------------

def block(action: str, dn: str, *, old_dn: str | None = None, label: str | None = None,
          lines: Iterable[str] = (),
          rows: Iterable[tuple[str, Sequence[bytes], Sequence[bytes]]] = ()) -> str:
    """One changed entry: its action (the colour), its DN (``old_dn`` -> ``dn``
    for a rename), ``lines`` of HTML under it, then the attribute table."""
    out = [(f'<article class="entry {escape(action)}"><h3><span class="action">'
            f"{escape(label or action)}</span>")]
    if old_dn is not None:
        out.append(f"{dn_html(old_dn)} &rarr; ")
    out.append(f"{dn_html(dn)}</h3>")
    out.extend(f"<div>{line}</div>" for line in lines)
    out.append(attribute_table(rows))
    out.append("</article>\n")
    return "".join(out)


def counts_table(counts: Iterable[tuple[str, str, int]]) -> str:
    """A row of headings and a row of figures; each figure has ``id="count-KEY"``."""
    items = list(counts)
    return ('<table class="counts"><tr>'
            + "".join(f"<th>{escape(label)}</th>" for label, _, _ in items) + "</tr><tr>"
            + "".join(f'<td id="count-{escape(key)}">{value}</td>' for _, key, value in items)
            + "</tr></table>\n")


def fields_table(fields: Iterable[tuple[str, str]]) -> str:
    """A two-column table of headings and (escaped) values."""
    return ("<table>" + "".join(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>"
                                for label, value in fields) + "</table>\n")
