"""Templates without logic are evaluated without Jinja, to the same result.

:mod:`dirsync.mapping.templatedirect` evaluates the common templates and
expressions of a mapping by plain Python. Each one must give exactly what
Jinja's render gives (values, or the same per-entry error), on any entry,
and stay within the same budgets.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirsync.entry import Entry
from dirsync.mapping.mapfile import load_mapping
from dirsync.mapping.templatebudget import RunBudget, TemplateLimits
from dirsync.mapping.templates import Expression, SourceView, Template, TemplateError

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"

#: Templates and expressions of the kinds mappings are made of (besides the
#: bundled mappings' own), each evaluated directly.
TEMPLATES = [
    "{{ 'SMTP:' ~ mail if mail }}",
    "{{ 'SMTP:' ~ mail if mail else 'none' }}",
    "{% for m in values('mail')[1:] %}smtp:{{ m }}\n{% endfor %}",
    "{% for t in values('telephoneNumber') %}{{ t }}\n{% endfor %}",
    "{% for t in values('telephoneNumber')[::-1] %}{{ t | upper }},{% endfor %}",
    "{% if Type == 'list' %}L{% elif cn %}{{ cn | upper }}{% else %}{{ sn }}{% endif %}",
    "{% if cn in ['a', 'b'] %}ab{% endif %}{{ cn | lower }}",
    "{{ values('mail')[0] }}",
    "{{ values('mail')[3] }}",
    "{{ cn[0] }}-{{ cn[1:3] }}",
    "{{ (cn ~ ' ' ~ sn) | trim | title }}",
    "{{ cn | default('x') }}",
    "{{ dn }} {{ anchor }} {{ domain }}",
    "{{ has_class('person') }} {{ attr('Display Name') or 'none' }}",
    "{{ (cn and sn) or (mail and not cn) }}",
    ("{% for m in values('mail') %}{% for t in values('telephoneNumber') %}{{ m }}={{ t }}\n"
     "{% endfor %}{% endfor %}"),
    "{{ 1 }} {{ none }} {{ true }} {{ 2.5 }} {{ [cn, sn] }}",
    "{{ cn < sn }} {{ cn >= 'm' }} {{ cn != sn }} {{ 'x' not in cn }}",
]
EXPRESSIONS = [
    "Type | lower in ['list', 'dl', 'group', 'distribution list']",
    "has_class('groupOfNames') or has_class('groupOfUniqueNames')",
    "not (has_class('inetOrgPerson') or has_class('groupOfNames'))",
    "values('mail')",
    "values('mail')[1:]",
    "[cn, sn]",
    "('a', cn)",
    "cn if cn else sn",
    "cn == 'x' and sn",
    "cn | length",
    "cn > 5",
    "has_class(cn if sn)",
    "(cn if sn) | lower",
]


def _bundled() -> list[Template | Expression]:
    found: list[Template | Expression] = []
    for path in sorted(MAPPINGS.glob("*.toml")):
        for item in load_mapping(path).templates():
            if getattr(item, "_direct", None) is not None:
                found.append(item)
    return found


def _all() -> list[Template | Expression]:
    own: list[Template | Expression] = [Template("t", s, variables={"domain": "example.org"})
                                        for s in TEMPLATES]
    own += [Expression("e", s) for s in EXPRESSIONS]
    return own + _bundled()


ALL = _all()
NAMES = ["cn", "sn", "mail", "Type", "telephoneNumber", "objectClass", "Display Name",
         "entryUUID", "uid", "proxyAddresses", "otherMailbox", "member", "Email", "Alias"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
VALUE = st.one_of(TEXT.map(lambda t: t.encode("utf-8")),
                  st.sampled_from([b"list", b"DL", b"person", b"inetOrgPerson",
                                   b"groupOfNames", b"SMTP:a@b.org", b"x400:c=fr;a= ;p=x;s=y",
                                   b"\xff\xfe", b"a\nb", b"Smith, John"]))
ENTRY = st.dictionaries(st.sampled_from(NAMES), st.lists(VALUE, min_size=1, max_size=4),
                        max_size=8)


def _comparable(value: object) -> object:
    """``value`` with each undefined in it described (an undefined raises when
    compared)."""
    if isinstance(value, jinja2.Undefined):
        return ("undefined", type(value).__name__, value._undefined_message)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_comparable(v) for v in value])
    return value


def _outcome(item: Template | Expression, view: SourceView, direct: bool) -> object:
    saved = item._direct
    if not direct:
        item._direct = None
    try:
        with RunBudget().entry():
            found = item.values(view) if isinstance(item, Template) else item.value(view)
        return ("ok", _comparable(found))
    except TemplateError as exc:
        return ("error", str(exc))
    finally:
        item._direct = saved


def test_the_common_templates_are_evaluated_directly() -> None:
    assert all(item._direct is not None for item in ALL[:len(TEMPLATES) + len(EXPRESSIONS)])
    generic = load_mapping(MAPPINGS / "generic-ldap.toml")
    for person in generic.persons.values():
        assert person.target_address is not None and person.target_address._direct is not None
        assert all(t._direct is not None for t in person.proxy_addresses)
    assert generic.is_list is not None and generic.is_list._direct is not None
    gal = load_mapping(MAPPINGS / "csv-gal.toml")
    assert gal.is_list is not None and gal.is_list._direct is not None


@pytest.mark.parametrize("source", [
    "{{ 'x' * 3 }}",                       # an operator the sandbox intercepts
    "{{ cn.upper() }}",                    # an attribute, a call of a method
    "{% for m in values('mail') %}{{ loop.index }}{% endfor %}",
    "{% macro m() %}x{% endmacro %}{{ m() }}",
    "{{ range(3) | list }}",               # a call of a global
    "{{ cn | replace('a', 'b') }}",       # a filter passed the evaluation context
    "{% set x = cn %}{{ x }}",
    "{{ cn is defined }}",
    "{{ self }}",
])
def test_other_templates_are_left_to_jinja(source: str) -> None:
    assert Template("t", source)._direct is None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(attrs=ENTRY, index=st.integers(0, len(ALL) - 1))
def test_a_direct_evaluation_gives_what_jinja_renders(attrs: dict[str, list[bytes]],
                                                      index: int) -> None:
    item = ALL[index]
    entry = Entry("cn=x,o=example", attrs)
    view = SourceView(entry, {"domain": "example.org", "proxy_types": "SMTP X400"},
                      anchor="a-1")
    assert _outcome(item, view, direct=True) == _outcome(item, view, direct=False)


#: Random templates and expressions made of the pieces evaluated directly.
_NAME = st.sampled_from(["cn", "sn", "mail", "Type", "dn", "anchor", "domain", "x"])
_LEAF = st.sampled_from(["'a'", "'SMTP:'", "''", "1", "0", "none", "true", "['list', 'dl']",
                         "('a', 'b')", "' '", "values('mail')", "values('telephoneNumber')",
                         "attr('Display Name')", "has_class('person')", "values('mail')[1:]",
                         "values('mail')[0]", "cn[0]", "cn[1:]"])


def _grown(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        pair.map(lambda t: f"({t[0]} or {t[1]})"),
        pair.map(lambda t: f"({t[0]} and {t[1]})"),
        inner.map(lambda a: f"(not {a})"),
        pair.map(lambda t: f"({t[0]} ~ {t[1]})"),
        pair.map(lambda t: f"({t[0]} if {t[1]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(inner, st.sampled_from(["==", "!=", "in", "not in", "<"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["lower", "upper", "trim", "length",
                                          "title", "default('z')", "split(';')"])
                  ).map(lambda t: f"({t[0]} | {t[1]})"),
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        inner.map(lambda a: f"has_class({a})"),
        inner.map(lambda a: f"values({a})"),
    )


_EXPRESSION = st.recursive(st.one_of(_NAME, _LEAF), _grown, max_leaves=6)
_TEMPLATE = st.recursive(
    st.one_of(_EXPRESSION.map(lambda e: "{{ " + e + " }}"), st.sampled_from(["text", "\n", " x "])),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map("".join),
        st.tuples(_EXPRESSION, inner, inner).map(
            lambda t: "{% if " + t[0] + " %}" + t[1] + "{% else %}" + t[2] + "{% endif %}"),
        st.tuples(st.sampled_from(["m", "cn"]), _EXPRESSION, inner).map(
            lambda t: "{% for " + t[0] + " in " + t[1] + " %}" + t[2] + "{% endfor %}"),
    ), max_leaves=5)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=_TEMPLATE, expression=_EXPRESSION, attrs=ENTRY)
def test_random_templates_of_these_pieces_give_what_jinja_renders(
        source: str, expression: str, attrs: dict[str, list[bytes]]) -> None:
    view = SourceView(Entry("cn=x,o=example", attrs), {"domain": "example.org"}, anchor="a-1")
    for item in (Template("t", source, variables={"domain": "example.org"}),
                 Expression("e", expression)):
        # Evaluated without a render (the plainest ones by the older look-ups).
        assert item._direct is not None or _looked_up(item), item.source
        assert _outcome(item, view, direct=True) == _outcome(item, view, direct=False)


def _looked_up(item: Template | Expression) -> bool:
    if isinstance(item, Template):
        return item._terms is not None or item._constant is not None
    return item._name is not None


def test_a_template_nested_deep_is_left_to_jinja() -> None:
    from dirsync.mapping.templatedirect import MAX_DEPTH

    shallow = Template("t", "{{ " + "(" * 10 + "cn" + " or sn)" * 10 + " }}")
    deep = Template("t", "{{ " + "(" * MAX_DEPTH + "cn" + " or sn)" * MAX_DEPTH + " }}")
    assert shallow._direct is not None and deep._direct is None
    view = SourceView(Entry("cn=x", {"sn": [b"Smith"]}))
    assert _outcome(deep, view, direct=False) == ("ok", ("list", ["Smith"]))


def test_a_source_method_called_inside_a_loop_renders_in_jinja_too() -> None:
    # Jinja passes a loop's variables to calls made in its body; the call
    # hook's way to the source's methods drops them, as Jinja's own call does.
    item = Template("t", "{% for m in values('mail') %}{% if has_class('person') %}!"
                         "{% endif %}{{ attr('cn') }}:{{ m }}\n{% endfor %}")
    entry = Entry("cn=x", {"cn": [b"Ann"], "mail": [b"a@x", b"b@x"],
                           "objectClass": [b"person"]})
    view = SourceView(entry)
    assert _outcome(item, view, direct=False) == ("ok", ("list", ["!Ann:a@x", "!Ann:b@x"]))
    assert _outcome(item, view, direct=True) == ("ok", ("list", ["!Ann:a@x", "!Ann:b@x"]))


def _limited(limits: TemplateLimits, item: Template, entry: Entry) -> str:
    with RunBudget(limits).entry(), pytest.raises(TemplateError) as caught:
        item.values(SourceView(entry))
    return str(caught.value)


def test_a_direct_template_is_held_to_the_entrys_characters() -> None:
    # A loop over a crafted entry's many values, each line padded.
    item = Template("t", "{% for m in values('mail') %}{{ m }} and some more text\n{% endfor %}")
    assert item._direct is not None
    entry = Entry("cn=x", {"mail": [b"v%d" % i for i in range(50_000)]})
    message = _limited(TemplateLimits(entry_chars=100_000), item, entry)
    assert "template_limits.entry_chars" in message
    item._direct = None
    assert _limited(TemplateLimits(entry_chars=100_000), item, entry) == message


def test_a_direct_concatenation_is_held_to_the_value_size() -> None:
    item = Template("t", "{{ cn ~ cn ~ cn }}")
    assert item._direct is not None
    entry = Entry("cn=x", {"cn": [b"x" * 1000]})
    message = _limited(TemplateLimits(value_chars=2000), item, entry)
    assert "template_limits.value_chars" in message
    item._direct = None
    assert _limited(TemplateLimits(value_chars=2000), item, entry) == message


def test_a_direct_loop_is_held_to_the_entrys_time() -> None:
    item = Template("t", "{% for m in values('mail') %}{% for t in values('mail') %}"
                         "{% endfor %}{% endfor %}")
    assert item._direct is not None
    entry = Entry("cn=x", {"mail": [b"v%d" % i for i in range(20_000)]})
    message = _limited(TemplateLimits(entry_seconds=0.2), item, entry)
    assert "template_limits.entry_seconds" in message
