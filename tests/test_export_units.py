"""The export direction's pure parts, table-style: filters, proxy generation and
write-back policy, the [export] section of a mapping, template filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.directories.ldapfilter import FilterError, compile_filter
from dirsync.entry import Entry
from dirsync.errors import ConfigError
from dirsync.mapping.exportmap import exported_by, proxy_of
from dirsync.mapping.mapfile import load_mapping
from dirsync.mapping.textfilters import ascii_fold, mailboxes, x400_value
from dirsync.sync.proxygen import (
    Assigner,
    Remembered,
    with_primary,
    writeback_change,
    writeback_policy,
)

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"

PERSON = Entry("uid=ted,ou=People,dc=example,dc=org", {
    "objectClass": [b"inetOrgPerson"], "uid": [b"ted"], "cn": [b"Ted Bremer"],
    "sn": [b"Bremer"], "mail": [b"Ted@Contoso.example"], "telephoneNumber": [b"+1 206 555 0101"],
    "title": [b"Account Manager (Sales)"]})


# -- filters on entries in memory (a file hub) ----------------------------------

@pytest.mark.parametrize("text, expected", [
    ("(objectClass=inetOrgPerson)", True),
    ("(objectclass=INETORGPERSON)", True),
    ("(objectClass=groupOfNames)", False),
    ("(uid=TED)", True),                          # uid is case-ignore
    ("(mail=ted@contoso.example)", True),
    ("(telephoneNumber=+12065550101)", True),     # phone numbers ignore spaces
    ("(cn=Ted*)", True),
    ("(cn=*Brem*)", True),
    ("(cn=*bremer)", True),
    ("(cn=T*d*B*r)", True),
    ("(cn=T*x*)", False),
    ("(title=*\\28Sales\\29)", True),             # escaped parentheses
    ("(description=*)", False),
    ("(sn=*)", True),
    ("(&(objectClass=inetOrgPerson)(uid=ted))", True),
    ("(&(objectClass=inetOrgPerson)(uid=sam))", False),
    ("(|(uid=sam)(uid=ted))", True),
    ("(!(uid=ted))", False),
    ("(&(objectClass=*)(!(title=*Director*)))", True),
    ("(uid>=t)", True),
    ("(uid<=s)", False),
])
def test_a_filter_is_evaluated_by_matching_rule(text: str, expected: bool) -> None:
    assert compile_filter(text)(PERSON) is expected


@pytest.mark.parametrize("text", ["uid=ted", "(uid=ted", "(&(uid=ted)", "(uid:dn:=ted)",
                                  "(uid=ted)x"])
def test_a_filter_it_cannot_evaluate_is_refused(text: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(text)


# -- proxy addresses: generation and uniqueness --------------------------------

def assigner(hub: list[str], remembered: dict[str, str] | dict[str, Remembered] | None = None,
             kind: str = "NOTES") -> tuple[Assigner, list[int]]:
    loads: list[int] = []

    def load() -> list[str]:
        loads.append(1)
        return hub
    return Assigner(kind, load, remembered or {}), loads


def test_a_primary_of_the_type_is_kept_and_the_hub_is_not_searched() -> None:
    rus, loads = assigner(["NOTES:Ted Bremer@Exchange"])
    found = rus.assign("a1", ["SMTP:ted@contoso.example", "NOTES:Ted B@Exchange"],
                       lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted B@Exchange" and not found.generated
    assert loads == [] and rus.changed == {}


def test_a_missing_address_is_generated_as_primary_after_the_existing_ones() -> None:
    rus, _ = assigner([])
    found = rus.assign("a1", ["SMTP:ted@contoso.example", "x400:c=US;a= ;p=C;o=S;s=Bremer;"],
                       lambda: "Ted Bremer@Exchange")
    assert found is not None and found.generated
    assert found.values == ["SMTP:ted@contoso.example", "x400:c=US;a= ;p=C;o=S;s=Bremer;",
                            "NOTES:Ted Bremer@Exchange"]
    assert {a: r.address for a, r in rus.changed.items()} == {"a1": "Ted Bremer@Exchange"}


def test_a_taken_address_gets_the_first_free_suffix_on_its_mailbox_part() -> None:
    rus, _ = assigner(["notes:ted bremer@exchange", "NOTES:Ted Bremer2@Exchange"])
    found = rus.assign("a1", [], lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted Bremer3@Exchange"


def test_two_recipients_of_one_run_never_share_an_address() -> None:
    rus, _ = assigner([], kind="MS")
    first = rus.assign("a1", [], lambda: "MICROSOFT/SITEA/SWU")
    second = rus.assign("a2", [], lambda: "MICROSOFT/SITEA/SWU")
    assert first is not None and second is not None
    assert (first.address, second.address) == ("MICROSOFT/SITEA/SWU", "MICROSOFT/SITEA/SWU2")


@pytest.mark.parametrize("kind, candidate, expected", [
    ("SMTP", "ted@contoso.example", "ted2@contoso.example"),
    ("MS", "MICROSOFT/SITEA/TED", "MICROSOFT/SITEA/TED2"),
    ("GWISE", "EXCHANGE.CONNECTOR.ted", "EXCHANGE.CONNECTOR.ted2"),
    ("CCMAIL", "Bremer, Ted at EXCHANGE", "Bremer, Ted2 at EXCHANGE"),
    ("X400", "c=US;a= ;p=Contoso;o=Exchange;s=Bremer;g=Ted;",
     "c=US;a= ;p=Contoso;o=Exchange;s=Bremer2;g=Ted;"),
])
def test_each_type_puts_its_suffix_where_its_mailbox_name_is(kind: str, candidate: str,
                                                             expected: str) -> None:
    rus, _ = assigner([f"{kind}:{candidate}"], kind=kind)
    found = rus.assign("a1", [], lambda: candidate)
    assert found is not None and found.address == expected


def test_a_remembered_address_stays_while_nobody_else_holds_it() -> None:
    rus, _ = assigner([], {"a1": "Ted Bremer2@Exchange"})
    found = rus.assign("a1", [], lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted Bremer2@Exchange"
    # Only what it was made from is new (a state file that did not record it).
    assert rus.changed == {"a1": Remembered("Ted Bremer2@Exchange", "Ted Bremer@Exchange")}
    rus, _ = assigner([], {"a1": Remembered("Ted Bremer2@Exchange", "Ted Bremer@Exchange")})
    found = rus.assign("a1", [], lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted Bremer2@Exchange"
    assert rus.changed == {}
    # Somebody else was given it by hand since: a new one is made.
    rus, _ = assigner(["NOTES:Ted Bremer2@Exchange"], {"a1": "Ted Bremer2@Exchange"})
    found = rus.assign("a1", [], lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted Bremer@Exchange"


def test_remembered_addresses_of_others_count_as_taken() -> None:
    rus, _ = assigner([], {"other": "Ted Bremer@Exchange"})
    found = rus.assign("a1", [], lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted Bremer2@Exchange"


def test_a_secondary_with_the_generated_address_is_promoted_not_suffixed() -> None:
    rus, _ = assigner(["notes:Ted Bremer@Exchange"])
    found = rus.assign("a1", ["SMTP:t@c.example", "notes:Ted Bremer@Exchange"],
                       lambda: "Ted Bremer@Exchange")
    assert found is not None and found.address == "Ted Bremer@Exchange"
    assert found.values == ["SMTP:t@c.example", "NOTES:Ted Bremer@Exchange"]


def test_other_secondaries_of_the_type_stay_secondary() -> None:
    rus, _ = assigner(["notes:Old Name@Exchange"])
    found = rus.assign("a1", ["notes:Old Name@Exchange"], lambda: "Ted Bremer@Exchange")
    assert found is not None
    assert found.values == ["notes:Old Name@Exchange", "NOTES:Ted Bremer@Exchange"]
    assert proxy_of(found.values, "NOTES") == ("Ted Bremer@Exchange",
                                               ["Ted Bremer@Exchange", "Old Name@Exchange"])


def test_a_generated_primary_follows_the_template_and_the_old_one_stays_secondary() -> None:
    """``mail`` changed in the hub: the written primary that dirsync made from it moves."""
    made = Remembered("old@contoso.example", "old@contoso.example")
    rus, _ = assigner([], {"a1": made}, kind="SMTP")
    found = rus.assign("a1", ["SMTP:old@contoso.example", "X400:c=US;s=Old;"],
                       lambda: "new@contoso.example")
    assert found is not None and found.generated and found.address == "new@contoso.example"
    assert found.replaces == "old@contoso.example"
    assert found.values == ["smtp:old@contoso.example", "X400:c=US;s=Old;",
                            "SMTP:new@contoso.example"]
    assert rus.changed == {"a1": Remembered("new@contoso.example", "new@contoso.example",
                                            ("old@contoso.example",))}
    # The same template value again: nothing moves.
    rus, _ = assigner([], {"a1": made}, kind="SMTP")
    found = rus.assign("a1", ["SMTP:old@contoso.example"], lambda: "old@contoso.example")
    assert found is not None and not found.generated and rus.changed == {}


def test_an_address_kept_in_the_state_follows_the_template_too() -> None:
    rus, _ = assigner([], {"a1": Remembered("old@c.example", "old@c.example")}, kind="SMTP")
    found = rus.assign("a1", [], lambda: "new@c.example")
    assert found is not None and found.address == "new@c.example"
    assert found.former == ("old@c.example",)
    # Back to the first address: the former one is promoted, not suffixed.
    rus, _ = assigner([], {"a1": rus.changed["a1"]}, kind="SMTP")
    found = rus.assign("a1", [], lambda: "old@c.example")
    assert found is not None and found.address == "old@c.example"
    assert found.former == ("new@c.example",)


def test_a_primary_set_in_the_hub_is_the_truth_whatever_the_template_makes() -> None:
    rus, loads = assigner([], {"a1": Remembered("gen@c.example", "gen@c.example")},
                          kind="SMTP")
    found = rus.assign("a1", ["SMTP:own@c.example"], lambda: "other@c.example")
    assert found is not None and found.address == "own@c.example" and not found.generated
    assert loads == [] and rus.changed == {}


def test_former_addresses_count_as_taken_for_everyone_else() -> None:
    rus, _ = assigner([], {"a1": Remembered("new@c.example", "new@c.example",
                                            ("old@c.example",))}, kind="SMTP")
    found = rus.assign("a2", [], lambda: "old@c.example")
    assert found is not None and found.address == "old2@c.example"


def test_an_empty_template_result_assigns_nothing() -> None:
    rus, _ = assigner([])
    assert rus.assign("a1", [], lambda: "") is None


def test_with_primary_appends_or_promotes() -> None:
    assert with_primary(["SMTP:a@b"], "MS", "N/P/M") == ["SMTP:a@b", "MS:N/P/M"]
    assert with_primary(["ms:N/P/M"], "MS", "N/P/M") == ["MS:N/P/M"]
    assert with_primary(["MS:N/P/OLD", "SMTP:a@b"], "MS", "N/P/M") == \
        ["ms:N/P/OLD", "SMTP:a@b", "MS:N/P/M"]


# -- who gets the address written --------------------------------------------

def entry(*classes: str, owner: str | None = None) -> Entry:
    found = Entry("uid=x,dc=example,dc=org", {"objectClass": [c.encode() for c in classes]})
    if owner:
        found.set("dirsyncSource", [owner.encode()])
    return found


@pytest.mark.parametrize("hub_entry, mode, write, add_class", [
    (entry("inetOrgPerson"), "marked", False, False),
    (entry("inetOrgPerson", "dirsyncObject"), "marked", True, False),
    (entry("inetOrgPerson"), "all", True, True),
    (entry("inetOrgPerson", "dirsyncObject"), "all", True, False),
    (entry("inetOrgPerson", "dirsyncObject"), "none", False, False),
    (entry("inetOrgPerson", "dirsyncObject", owner="notes-london"), "all", False, False),
])
def test_the_write_back_policy(hub_entry: Entry, mode: str, write: bool, add_class: bool) -> None:
    policy = writeback_policy(hub_entry, mode)
    assert (policy.write, policy.add_class) == (write, add_class)
    assert (policy.reason is None) is write


def test_the_write_back_only_adds_values() -> None:
    hub_entry = Entry("uid=x,dc=example,dc=org", {"objectClass": [b"inetOrgPerson"],
                                                 "proxyAddresses": [b"SMTP:x@c.example"]})
    change = writeback_change(hub_entry, ["SMTP:x@c.example", "MS:N/P/X"], add_class=True)
    assert change is not None
    assert [(m.op, m.attr, m.values) for m in change.mods] == [
        ("add", "objectClass", [b"dirsyncObject"]), ("add", "proxyAddresses", [b"MS:N/P/X"])]
    promoted = Entry("uid=x,dc=example,dc=org", {"proxyAddresses": [b"ms:N/P/X"]})
    change = writeback_change(promoted, ["MS:N/P/X"], add_class=False)
    assert change is not None
    assert [(m.op, m.values) for m in change.mods] == [("delete", [b"ms:N/P/X"]),
                                                      ("add", [b"MS:N/P/X"])]
    assert writeback_change(promoted, ["ms:N/P/X"], add_class=False) is None


# -- the [export] section -------------------------------------------------------

BASE = """
[anchor]
value = "{{ Alias }}"
[rdn]
value = "{{ Alias }}"
[person]
object_classes = ["inetOrgPerson"]
attributes.cn = "{{ Alias }}"
"""


def mapping_file(tmp_path: Path, export: str) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(BASE + export, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    return caught.value.problems


def test_every_bundled_mapping_has_an_export_section() -> None:
    for name in ("msmail", "notes", "groupwise", "ccmail", "x400", "generic-ldap"):
        mapping = load_mapping(MAPPINGS / f"{name}.toml")
        assert mapping.export is not None, name
        assert mapping.export.list_part is not None, name


def test_a_template_syntax_error_names_file_line_and_key(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, """
[export]
proxy_type = "MS"
proxy_address = "MS:N/P/{{ uid }}"
[export.rdn]
value = "{{ proxy }}"
[export.person]
attributes.Name = "{{ cn"
""")
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}:16: export.person.attributes.Name: template syntax")


def test_the_rdn_qualifier_is_a_template_of_its_own(tmp_path: Path) -> None:
    text = """
[export]
proxy_type = "MS"
proxy_address = "MS:N/P/{{ uid }}"
[export.rdn]
value = "{{ cn }}"
qualifier = "{{ ou"
[export.person]
attributes.Name = "{{ cn }}"
"""
    path = mapping_file(tmp_path, text)
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}:15: export.rdn.qualifier: template syntax")
    path.write_text(BASE + text.replace("{{ ou", "{{ ou }}"), encoding="utf-8")
    export = load_mapping(path).export
    assert export is not None and export.rdn_qualifier is not None
    assert export.hub_names()["ou"] == ["export.rdn.qualifier"]


def test_missing_and_unknown_keys_are_all_named(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, """
[export]
proxy_adress = "MS:N/P/{{ uid }}"
[export.person]
attributes.Name = "{{ cn }}"
colour = "blue"
""")
    found = "\n".join(problems(path))
    assert f"{path}:11: export.proxy_adress: unknown key" in found
    assert "export.proxy_type: missing" in found
    assert "export.proxy_address: missing" in found
    assert "export.rdn: missing" in found
    assert f"{path}:14: export.person.colour: unknown key" in found


def test_a_prefix_of_another_type_is_refused(tmp_path: Path) -> None:
    path = mapping_file(tmp_path, """
[export]
proxy_type = "NOTES"
proxy_address = "MS:N/P/{{ uid }}"
[export.rdn]
value = "{{ proxy }}"
[export.person]
attributes.Name = "{{ cn }}"
""")
    assert any("makes MS: addresses, but proxy_type is NOTES" in p for p in problems(path))


def test_the_export_marker_is_recognised_on_a_foreign_entry() -> None:
    mapping = load_mapping(MAPPINGS / "msmail.toml")
    carries = exported_by(mapping.export, "msmail-po1")
    assert carries is not None
    assert carries(Entry("dirsyncAnchor=x", {"Sync Source": [b"MSMAIL-PO1"]}))
    assert not carries(Entry("dirsyncAnchor=x", {"Sync Source": [b"msmail-po2"]}))
    assert not carries(Entry("dirsyncAnchor=x", {"Address": [b"MICROSOFT/PO1/TED"]}))
    assert exported_by(None, "x") is None


# -- template filters ------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("Zoë Müller", "Zoe Muller"), ("Łukasz Gößl", "Lukasz Gossl"), ("Søren Ærø", "Soren AEro"),
    ("Ted", "Ted"), ("李", ""),
])
def test_ascii_folding(value: str, expected: str) -> None:
    assert ascii_fold(value) == expected


def test_x400_values_are_printable_strings_within_their_bound() -> None:
    assert x400_value("O'Neil") == "O'Neil"
    assert x400_value("Müller@Home") == "Muller(a)Home"
    assert x400_value("Ab@cd", 4) == "Ab"      # an escape is never cut in half
    assert len(x400_value("x" * 50, 40)) == 40


def test_mailboxes_of_one_type() -> None:
    values = ["x400$c=FR;a=ATLAS;", "smtp$j@x.example", "X400$c=US;a= ;"]
    assert mailboxes(values, "x400") == ["c=FR;a=ATLAS;", "c=US;a= ;"]
    assert mailboxes("smtp$j@x.example", "SMTP") == ["j@x.example"]
