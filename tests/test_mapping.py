"""Mappings and templates: pure functions, table-style, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.entry import Entry
from dirsync.errors import ConfigError
from dirsync.mapping.mapfile import KIND_LIST, KIND_PERSON, key_lines, load_mapping
from dirsync.mapping.templates import ENV, Expression, SourceView, Template, TemplateError

ROOT = Path(__file__).resolve().parent.parent
GAL = ROOT / "mappings" / "csv-gal.toml"
GENERIC = ROOT / "mappings" / "generic-ldap.toml"

TED = Entry("dirsyncAnchor=tbremer", {
    "Alias": [b"tbremer"], "Type": [b"user"], "Display Name": [b"Ted Bremer"],
    "First Name": [b"Ted"], "Last Name": [b"Bremer"], "Email": [b"ted@po1.example"],
    "Title": [b"Sales"], "Members": [b"a; b;;c"]})


def view(entry: Entry = TED, **extra: str) -> SourceView:
    return SourceView(entry, {"domain": "contoso.example"}, **extra)


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ Title }}", ["Sales"]),
    ("{{ title }}", ["Sales"]),                        # attribute names ignore case
    ("{{ Mobile }}", []),                              # absent: the attribute is left out
    ("{{ attr('Display Name') }}", ["Ted Bremer"]),
    ("{{ Mobile or attr('Display Name') }}", ["Ted Bremer"]),
    ("{{ attr(\"First Name\") or Alias }}", ["Ted"]),
    ("SMTP:{{ Email }}", ["SMTP:ted@po1.example"]),
    ("{{ Alias }}@{{ domain }}", ["tbremer@contoso.example"]),     # a variable
    ("{{ anchor }}", ["A1"]),
    ("{{ Email|upper }}", ["TED@PO1.EXAMPLE"]),
    ("{{ 'SMTP:' ~ Mobile if Mobile }}", []),
    ("{{ attr('Members')|split(';')|join('\n') }}", ["a", "b", "c"]),   # one value per line
    ("constant text", ["constant text"]),
    ("  {{ Title }}  ", ["Sales"]),
])
def test_templates(source: str, expected: list[str]) -> None:
    assert Template("k", source).values(view(anchor="A1")) == expected


@pytest.mark.parametrize("source", ["{{ Title }}", "{{ Mobile or Alias }}",
                                    "{{ attr('Display Name') or Title }}", "{{ Mobile }}",
                                    "SMTP:{{ Title }}", "SMTP:{{ Mobile }}", "<{{ Alias }}>",
                                    " x {{ Mobile or Title }} y "])
def test_the_fast_path_agrees_with_jinja(source: str) -> None:
    fast = Template("k", source)
    assert fast._jinja is None
    names = {name: view().lookup(name) for name in ("Title", "Mobile", "Alias")}
    slow = ENV.from_string(source).render(names, attr=view().first)
    assert fast.values(view()) == ([slow.strip()] if slow.strip() else [])


@pytest.mark.parametrize("source", ["Email", "not Email", "Mobile", "not Mobile", "anchor",
                                    "not dn", "domain", "not domain", "has_class", "not attr",
                                    "range", "not true", "not none", "not (Mobile)"])
def test_an_expression_that_is_a_name_agrees_with_jinja(source: str) -> None:
    fast = Expression("k", source)
    slow = Expression("k", source)
    slow._name = None                  # the same expression, rendered by Jinja
    for entry_view in (view(anchor="A1"), view(Entry("cn=x", {}), anchor="")):
        assert fast.value(entry_view) == slow.value(entry_view)
        assert fast.truth(entry_view) is slow.truth(entry_view)


def test_only_a_plain_name_or_its_negation_skips_jinja() -> None:
    assert Expression("k", "not Email")._name == (True, "Email")
    assert Expression("k", "Email")._name == (False, "Email")
    for source in ("not true", "Type | lower", "not Email or Mobile", "not not Email",
                   "has_class('x')"):
        assert Expression("k", source)._name is None


@pytest.mark.parametrize(("source", "message"), [
    ("{{ Title.nope }}", "undefined"),
    ("{{ Title.__class__ }}", "not allowed in a mapping"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
])
def test_template_errors_name_the_key_and_line(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as raised:
        Template("person.attributes.title", source, 12).values(view())
    assert str(raised.value).startswith("line 12: person.attributes.title: ")
    assert message in str(raised.value)


def test_expressions() -> None:
    assert Expression("c", "Type == 'user' and has_class('x') == false").value(view())
    assert Expression("c", "attr('Members') | split(';')").strings(view()) == ["a", "b", "c"]
    assert Expression("c", "Mobile").strings(view()) == []
    assert Expression("c", "values('Title') + ['x']").strings(view()) == ["Sales", "x"]
    with pytest.raises(TemplateError, match="expression syntax error"):
        Expression("c", "Type ==")


def test_referenced_attributes() -> None:
    template = Template("k", "{{ a }} {{ attr('B c') }} {{ values('d')|join }} {{ dn }} {{ v }}",
                        variables={"v": "x"})
    assert template.attributes == {"a", "B c", "d"}


TOML = '''# a comment
[mapping]
name = "t"

[anchor]
value = "{{ Alias }}"

[person]
object_classes = ["inetOrgPerson"]
proxy_addresses = [
    "SMTP:{{ Email }}",
    "X400:c=US;s={{ sn }};",
]

[person.attributes]
cn = "{{ cn }}"
"sn" = """{{ sn
}}"""
mail = "{{ Email }}"

[person.disabled-user]
attributes.uid = "{{ Alias }}"

[person.enabled-user]
attributes = { description = "x" }

[rdn]
value = "{{ cn }}"
'''


def test_key_lines() -> None:
    lines = key_lines(TOML)
    assert lines["mapping.name"] == 3
    assert lines["anchor.value"] == 6
    assert lines["person.proxy_addresses"] == 10
    assert lines["person.proxy_addresses[0]"] == 11
    assert lines["person.proxy_addresses[1]"] == 12
    assert lines["person.attributes.cn"] == 16
    assert lines["person.attributes.sn"] == 17
    assert lines["person.attributes.mail"] == 19   # after a multi-line string
    assert lines["person.disabled-user.attributes.uid"] == 22
    assert lines["person.enabled-user.attributes.description"] == 25


def test_the_bundled_csv_mapping() -> None:
    mapping = load_mapping(GAL)
    selected = mapping.select("contact", "group")
    ted = view()
    anchor = selected.anchor(ted)
    assert anchor == "tbremer" and selected.kind(ted) == KIND_PERSON
    mapped = selected.map(ted, anchor, KIND_PERSON)
    assert mapped.rdn_value == "Ted Bremer"
    assert mapped.attrs["sn"] == [b"Bremer"] and mapped.attrs["title"] == [b"Sales"]
    assert "mobile" not in {k.lower() for k in mapped.attrs}
    assert mapped.attrs["targetAddress"] == [b"SMTP:ted@po1.example"]
    assert mapped.attrs["proxyAddresses"] == [b"SMTP:ted@po1.example"]
    assert mapped.object_classes == ["inetOrgPerson"]
    owned = selected.owned(KIND_PERSON)
    assert {"cn", "sn", "mobile", "targetaddress", "proxyaddresses", "dirsyncanchor",
            "dirsyncsource"} <= owned
    assert "objectclass" not in owned and "description" not in owned and "uid" not in owned

    dl = SourceView(Entry("dirsyncAnchor=dl", {"Alias": [b"dl"], "Type": [b"List"],
                                               "Display Name": [b"Sales Team"],
                                               "Email": [b"dl@x"], "Members": [b"a;b"]}))
    assert selected.kind(dl) == KIND_LIST
    group = selected.map(dl, "dl", KIND_LIST)
    assert group.object_classes == ["groupOfNames"] and group.members == ["a", "b"]
    assert "targetAddress" not in group.attrs          # the hub expands a group itself
    assert "member" in selected.owned(KIND_LIST)
    assert mapping.select("contact", "skip").kind(dl) is None
    as_contact = mapping.select("contact", "contact").map(dl, "dl", KIND_LIST)
    assert as_contact.attrs["targetAddress"] == [b"SMTP:dl@x"] and as_contact.members is None

    nobody = SourceView(Entry("dirsyncAnchor=n", {"Alias": [b"n"], "Type": [b"user"]}))
    assert selected.kind(nobody) is None               # no address: skipped

    disabled = mapping.select("disabled-user", "contact")
    assert disabled.map(ted, anchor, KIND_PERSON).attrs["uid"] == [b"tbremer"]
    assert "userpassword" in disabled.owned(KIND_PERSON)
    enabled = mapping.select("enabled-user", "contact")
    assert "userpassword" not in enabled.owned(KIND_PERSON)


def test_the_bundled_ldap_mapping() -> None:
    mapping = load_mapping(GENERIC)
    selected = mapping.select("contact", "group")
    person = SourceView(Entry("uid=ann,ou=People,o=F", {
        "objectClass": [b"top", b"inetOrgPerson"], "uid": [b"ann"], "cn": [b"Ann Lee"],
        "sn": [b"Lee"], "mail": [b"ann@f.example", b"a.lee@f.example"]}))
    assert selected.anchor(person) == "uid=ann,ou=People,o=F"      # no entryUUID: the DN
    mapped = selected.map(person, "x", KIND_PERSON)
    assert mapped.attrs["proxyAddresses"] == [b"SMTP:ann@f.example", b"smtp:a.lee@f.example"]
    ou = SourceView(Entry("ou=People,o=F", {"objectClass": [b"organizationalUnit"]}))
    assert selected.kind(ou) is None
    assert mapping.member_key == "dn"
    assert "entryUUID" in mapping.source_attributes


def test_unknown_source_attributes(tmp_path: Path) -> None:
    mapping = load_mapping(GAL)
    header = ["Alias", "Type", "Display Name", "Email"]
    problems = mapping.check_source_names(header, "the columns are ...")
    assert any(p.startswith(f"{GAL}:36: person.attributes.givenName: unknown source "
                            "attribute 'First Name'") for p in problems)


@pytest.mark.parametrize(("edit", "problem"), [
    (('value = "{{ Alias }}"', 'value = "{{ Alias "'),
     ":6: anchor.value: template syntax error"),
    (('[anchor]\nvalue = "{{ Alias }}"\n', ''), "anchor: missing"),
    (('object_classes = ["inetOrgPerson"]', 'object_classes = []'),
     "person.object_classes: no object classes"),
    (('cn = "{{ cn }}"', 'cn = "{% if %}"'), ":16: person.attributes.cn: template syntax"),
    (('cn = "{{ cn }}"', 'objectClass = "x"'), (":16: person.attributes.objectClass: "
                                              "objectClass is written by dirsync itself")),
    (('[mapping]', '[mappin]'), ":2: mappin: unknown section"),
    # A constant part that Jinja works out, and fails, while it compiles.
    (('cn = "{{ cn }}"', "cn = \"{{ 'a' ~ ('' | first) }}\""),
     ":16: person.attributes.cn: cannot be compiled"),
    (('name = "t"', 'name = "t"\ncolour = "red"'), ":4: mapping.colour: unknown key"),
])
def test_mapping_problems_name_file_line_and_key(tmp_path: Path, edit: tuple[str, str],
                                                  problem: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(TOML.replace(*edit, 1))
    with pytest.raises(ConfigError) as raised:
        load_mapping(path)
    assert any(problem in p and p.startswith(str(path)) for p in raised.value.problems), \
        raised.value.problems


def test_variables_of_a_connection_override_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(TOML.replace('[anchor]', '[variables]\nnet = "A"\n\n[anchor]')
                    .replace('mail = "{{ Email }}"', 'mail = "{{ Alias }}@{{ net }}"'))
    entry = SourceView(Entry("x", {"Alias": [b"ann"]}))
    assert load_mapping(path).persons["contact"].attributes["mail"].values(
        SourceView(entry.entry, load_mapping(path).variables)) == ["ann@A"]
    mapping = load_mapping(path, {"net": "B"})
    assert mapping.persons["contact"].attributes["mail"].values(
        SourceView(entry.entry, mapping.variables)) == ["ann@B"]
