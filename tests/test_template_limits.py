"""Mapping templates are bounded: time, size, depth and ranges.

Each runaway template of the findings ends fast with a per-entry error
that names the limit; a sync with such a mapping exits 1 and applies the
other entries.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from dirsync.cli.main import main
from dirsync.config import load_config
from dirsync.entry import Entry
from dirsync.mapping.templatebudget import RunBudget, TemplateLimits, parse_limits
from dirsync.mapping.templates import Expression, SourceView, Template, TemplateError
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import anchors, gal_row, gal_rows, hub_config, write_csv

VIEW = SourceView(Entry("cn=a", {"cn": [b"a"], "x": [b"hello"]}))

#: Templates that would hang, eat the memory or crash without limits.
RUNAWAY = {
    "nested loops": "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}"
                    "{% endfor %}",
    "nested loops with no output": "{% for i in range(10000) %}{% for j in range(10000) %}"
                                   "{% endfor %}{% endfor %}",
    "a huge range": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}"
                    "{% endfor %}",
    "3e9 characters": "{{ 'x' * 3000000000 }}",
    "1e8 characters": "{{ 'x' * 100000000 }}",
    "a float count": "{{ 'x' * 1e8 }}",
    "a recursive macro": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(1) }}",
    "range(1e9)": "{{ range(1e9) | list }}",
    "range(10**20)": "{{ range(10**20) | length }}",
    "a recursive loop": "{% for i in [[1]] recursive %}{{ loop([[i]]) }}{% endfor %}",
    "doubling by ~": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                     "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "doubling by +": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "a huge list": "{{ ([1] * 3000000000) | length }}",
    "a huge number": "{% set ns = namespace(n=3) %}{% for i in range(40) %}"
                     "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n % 10 }}",
    "a huge power": "{{ (7 ** 100000000) % 10 }}",
    "center()": "{{ 'x' | center(3000000000) }}",
    "str.ljust()": "{{ 'x'.ljust(3000000000) }}",
    "a printf width": "{{ '%3000000000d' | format(1) }}",
    "a format width": "{{ '{:>3000000000}'.format(1) }}",
    "a % width": "{{ '%*d' % (3000000000, 1) }}",
    "a width from a format argument": "{{ '{0:{1}}'.format('x', '1000000000') }}",
    "a width made of two arguments": "{{ '{:{}{}}'.format('x', '99999', '9999') }}",
    "many small format widths": "{{ ('{0:60000}' * 1000).format('x') }}",
    "many small printf widths": "{% set f = '%9000s' %}{{ (f ~ f ~ f ~ f ~ f ~ f ~ f ~ f) % "
                                "('a', 'a', 'a', 'a', 'a', 'a', 'a', 'a') }}",
    "printf widths from arguments": "{{ '%*s%*s' % (40000, 'a', 40000, 'b') }}",
    "expandtabs()": "{{ ('\\t' * 60000).expandtabs(60000) }}",
    "translate()": "{{ ('a' * 60000).translate({97: 'x' * 60000}) }}",
    "wordwrap() growth": "{{ ('a ' * 30000) | wordwrap(1, wrapstring='x' * 60000) }}",
    "sum() of lists": "{{ ([[1] * 1000000] * 1000000) | sum(start=[]) | length }}",
    "replace() growth": "{% set ns = namespace(s='aaaaaaaa') %}{% for i in range(30) %}"
                        "{% set ns.s = ns.s | replace('a', 'aaaaaaaa') %}{% endfor %}{{ ns.s }}",
    "join() growth": "{{ range(10000) | map('string') | join('x' * 10000) }}",
    "lipsum()": "{{ lipsum(3000000000) }}",
    "too much output": "{% for i in range(10000) %}{{ 'x' * 60000 }}\n{% endfor %}",
    "a list changed in place": "{% set l = [1] %}{% for i in range(40) %}"
                               "{{ l.extend(l) }}{% endfor %}",
}


@pytest.mark.parametrize("name", sorted(RUNAWAY))
def test_a_runaway_template_is_a_per_entry_error_within_its_budget(name: str) -> None:
    limits = TemplateLimits(entry_seconds=0.5)
    budget = RunBudget(limits)
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught, budget.entry():
        Template("person.attributes.info", RUNAWAY[name], line=7).values(VIEW)
    assert time.monotonic() - started < 5
    assert caught.value.key == "person.attributes.info" and caught.value.line == 7
    assert caught.value.message  # the reason, for the report


def test_each_limit_is_named_in_its_error() -> None:
    limits = TemplateLimits(entry_seconds=0.3, value_chars=300, entry_chars=1000, depth=5,
                            range_items=50)
    cases = {
        "template_limits.entry_seconds": "{% for i in range(50) %}{% for j in range(50) %}"
                                         "{% for k in range(50) %}{% for m in range(50) %}"
                                         "{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
        "template_limits.value_chars": "{{ 'x' * 301 }}",
        "template_limits.entry_chars": "{% for i in range(50) %}{{ 'x' * 90 }}\n{% endfor %}",
        "template_limits.depth": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(1) }}",
        "template_limits.range_items": "{{ range(51) | list }}",
    }
    for limit, source in cases.items():
        with pytest.raises(TemplateError, match=limit.replace(".", r"\.")), \
                RunBudget(limits).entry():
            Template("t", source).values(VIEW)


def test_templates_within_the_limits_render_as_before() -> None:
    with RunBudget(TemplateLimits(value_chars=300, range_items=5, depth=3)).entry():
        assert Template("t", "{{ x | upper }} {% for i in range(5) %}{{ i }}{% endfor %}"
                             " {{ 'a' ~ x }} {{ 'ab' * 3 }} {{ '%05d' % 42 }}").values(VIEW) \
            == ["HELLO 01234 ahello ababab 00042"]
        assert Template("t", "{{ 'x' * 300 }}").values(VIEW) == ["x" * 300]
        assert Template("t", "{{ 'x{:>5}|{:.2f}|{n}'.format('ab', 3.14159, n='z') }} "
                             "{{ '%s-%03d' | format('a', 7) }} {{ '{a}'.format_map({'a': 1}) }}"
                        ).values(VIEW) == ["x   ab|3.14|z a-007 1"]
        assert Expression("e", "range(3) | list").value(VIEW) == [0, 1, 2]


def test_the_run_budget_is_shared_by_the_entries_of_a_run() -> None:
    budget = RunBudget(TemplateLimits(entry_seconds=0.2, run_seconds=0.3))
    slow = Template("t", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}"
                         "{% endfor %}")
    for _ in range(2):
        with pytest.raises(TemplateError), budget.entry():
            slow.values(VIEW)
    started = time.monotonic()
    with pytest.raises(TemplateError, match="template_limits.run_seconds"), budget.entry():
        slow.values(VIEW)
    assert time.monotonic() - started < 0.1
    # Even a cheap template is refused once the run's budget is spent.
    with pytest.raises(TemplateError, match="run_seconds"), budget.entry():
        Template("t", "{% for i in range(3) %}{{ i }}{% endfor %}").values(VIEW)


def test_limits_come_from_the_config_with_defaults(tmp_path: Path) -> None:
    assert parse_limits(None)[0] == TemplateLimits()
    limits, problems = parse_limits({"entry_seconds": 0.5, "value_chars": 300})
    assert not problems and limits.entry_seconds == 0.5 and limits.value_chars == 300
    _, problems = parse_limits({"entry_seconds": "1s", "depth": 0, "nope": 1,
                                "value_chars": 10})
    assert sorted(problems) == [
        "template_limits.depth: must be at least 1",
        "template_limits.entry_seconds: must be a number",
        ("template_limits.nope: unknown key (known: depth, entry_chars, entry_seconds, "
        "list_items, range_items, run_seconds, value_chars)"),
        "template_limits.value_chars: must be at least 256"]


def _mapping_with(tmp_path: Path, info: str) -> Path:
    bundled = Path(__file__).resolve().parent.parent / "mappings" / "csv-gal.toml"
    text = bundled.read_text(encoding="utf-8")
    marker = "[person.attributes]\n"
    text = text.replace(marker, marker + f"description = {json.dumps(info)}\n", 1)
    path = tmp_path / "runaway.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("runaway", ["nested loops with no output", "3e9 characters",
                                     "a recursive macro", "range(1e9)", "1e8 characters"])
def test_a_sync_with_a_runaway_template_exits_1_and_applies_the_other_entries(
        slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        runaway: str) -> None:
    container = f"ou=Import,{base}"
    rows = gal_rows(5) + [gal_row("evil")]
    source = write_csv(tmp_path / "gal.csv", rows)
    body = RUNAWAY[runaway]
    mapping = _mapping_with(tmp_path, f"{{% if Alias == 'evil' %}}{body}{{% endif %}}")
    config = hub_config(tmp_path, slapd, container, source, mapping=str(mapping))
    with open(config, "a", encoding="utf-8") as out:
        out.write("\n[template_limits]\nentry_seconds = 0.5\n")
    assert load_config(config).template_limits.entry_seconds == 0.5
    capsys.readouterr()
    started = time.monotonic()
    status = main(["-c", str(config), "--json", "sync"])
    assert time.monotonic() - started < 60
    captured = capsys.readouterr()
    assert status == 1, captured.err
    assert "Traceback" not in captured.err
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["counts"]["add"] == 5 and line["counts"]["error"] == 1
    assert sorted(anchors(slapd, container)) == sorted(r["Alias"] for r in rows[:5])
    report = json.loads((Path(line["report"]) / "report.json").read_text(encoding="utf-8"))
    problems = [p for p in report["problems"] if p["kind"] == "error"]
    assert len(problems) == 1 and "person.attributes.description" in problems[0]["message"]
    # The report stays small: the runaway value never reached it.
    assert sum(p.stat().st_size for p in Path(line["report"]).iterdir()) < 200_000


def test_large_source_values_may_pass_through_but_not_grow() -> None:
    members = ";".join(f"member{i:06d}" for i in range(100000))       # 1.5 MB, 100,000 items
    view = SourceView(Entry("cn=a", {"Members": [members.encode()],
                                     "member": [f"m{i}".encode() for i in range(100000)]}))
    with RunBudget(TemplateLimits()).entry():
        assert len(Expression("e", "attr('Members') | split(';')").value(view)) == 100000
        assert len(Expression("e", "values('member') + values('member')").value(view)) \
            == 200000
        assert len(Expression("e", "values('member') | join(';')").value(view)) > 65536
        assert len(Expression("e", "attr('Members').replace(';', ',')").value(view)) \
            == len(members)
        with pytest.raises(TemplateError, match="value_chars"):
            Expression("e", "attr('Members') | replace(';', ';;')").value(view)
        with pytest.raises(TemplateError, match="value_chars"):
            Expression("e", "values('member') | join(';;')").value(view)
        with pytest.raises(TemplateError, match="list_items"):
            Expression("e", "values('member') * 11").value(view)
        # A rendered value is held to value_chars; a plain copy of a source
        # value is the source's own.
        with pytest.raises(TemplateError, match="value_chars"):
            Template("t", "{{ attr('Members')[:100000] | upper }}").values(view)
        assert Template("t", "{{ Members }}").values(view) == [members]


def test_the_run_budget_bounds_a_sync_whose_every_entry_runs_away(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Import,{base}"
    source = write_csv(tmp_path / "gal.csv", gal_rows(40))
    mapping = _mapping_with(tmp_path, RUNAWAY["nested loops with no output"])
    config = hub_config(tmp_path, slapd, container, source, mapping=str(mapping))
    with open(config, "a", encoding="utf-8") as out:
        out.write("\n[template_limits]\nentry_seconds = 0.25\nrun_seconds = 1\n")
    capsys.readouterr()
    started = time.monotonic()
    status = main(["-c", str(config), "--json", "sync"])
    took = time.monotonic() - started
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 40 entries of 0.25 s each would take 10 s: the run's budget stops at 1 s.
    assert status == 1 and took < 8, took
    assert line["counts"]["error"] == 40 and line["counts"]["add"] == 0
    messages = [p["message"] for p in report_of(line)["problems"]]
    assert sum("template_limits.entry_seconds" in m for m in messages) <= 5
    assert sum("template_limits.run_seconds" in m for m in messages) >= 35


def report_of(line: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(str(line["report"])) / "report.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_an_entry_is_not_charged_for_the_garbage_collectors_pauses() -> None:
    """A full collection of a large run's objects may take seconds: the entry it
    interrupts keeps its budget; time of its own still runs the budget out."""
    from dirsync.mapping import templatebudget

    with RunBudget(TemplateLimits(entry_seconds=0.2)).entry():
        templatebudget._gc_clock("start", {})
        time.sleep(0.3)                 # as long as a collection that paused the entry
        templatebudget._gc_clock("stop", {})
        templatebudget.tick()           # not over: the pause is not the entry's
        time.sleep(0.3)                 # the entry's own time
        with pytest.raises(templatebudget.LimitExceeded, match="entry_seconds"):
            templatebudget.tick()
