"""Addresses are owned: an import never gives an entry a ``mail`` or proxy
address that another hub entry holds, or that another source entry of the
run claims first. Against a real slapd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dirsync.cli.main import main
from dirsync.sync.ownership import AddressGuard, Claims, Holder, address_key, blocking, lookup_terms
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import first, gal_row, gal_rows, hub_config, search, values, write_csv


def sync(config: Path, capsys: pytest.CaptureFixture[str], *args: str
         ) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    status = main(["-c", str(config), "--json", "sync", *args])
    return status, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def report(line: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(line["report"]) / "report.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def conflicts(line: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in report(line)["problems"] if p["kind"] == "conflict"]


def contact(slapd: SlapdServer, container: str, alias: str) -> dict[str, list[bytes]]:
    found = search(slapd, container, f"(dirsyncAnchor={alias})", ["*"])
    assert len(found) == 1, found
    return next(iter(found.values()))


def add_user(slapd: SlapdServer, dn: str, mail: str) -> None:
    conn = slapd.connect()
    try:
        conn.add_s(dn, [("objectClass", [b"inetOrgPerson"]), ("cn", [b"CEO"]), ("sn", [b"CEO"]),
                        ("mail", [mail.encode()])])
    finally:
        conn.unbind_s()


def test_a_csv_row_cannot_take_a_hub_users_mail(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    slapd.add_ou(f"ou=People,{base}")
    user = f"uid=ceo,ou=People,{base}"
    add_user(slapd, user, "ceo@example.org")
    container = f"ou=Import,{base}"
    rows = gal_rows(3) + [gal_row("evil", Email="CEO@Example.org")]
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, container, source)

    status, line = sync(config, capsys)
    assert status == 1 and line["status"] == "errors"
    assert line["counts"]["add"] == 4 and line["counts"]["conflict"] == 1
    evil = contact(slapd, container, "evil")
    assert first(evil, "mail") is None
    assert not any("ceo@example.org" in v.lower() for v in values(evil, "proxyAddresses"))
    [problem] = conflicts(line)
    assert problem["anchor"] == "evil" and user in problem["message"]
    assert "did not create" in problem["message"] and "mail" in problem["message"]
    # The hub user is as it was; the other rows have their addresses.
    assert values(search(slapd, user, attrs=["mail"])[user], "mail") == ["ceo@example.org"]
    assert first(contact(slapd, container, "u000001"), "mail") == "u000001@po1.example"

    # Every run checks it again (its state row is not recorded as done) ...
    status, line = sync(config, capsys)
    assert status == 1 and line["counts"]["conflict"] == 1
    assert line["counts"]["modify"] == 0
    # ... so once the user lets the address go, the contact gets it.
    conn = slapd.connect()
    try:
        conn.modify_s(user, [(1, "mail", None)])  # MOD_DELETE
    finally:
        conn.unbind_s()
    status, line = sync(config, capsys)
    assert status == 0 and line["counts"]["modify"] == 1 and line["counts"]["conflict"] == 0
    assert first(contact(slapd, container, "evil"), "mail") == "CEO@Example.org"


def test_two_connections_cannot_share_a_proxy_address(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folders = {name: tmp_path / name for name in ("first", "second")}
    configs = {}
    for name, folder in folders.items():
        folder.mkdir()
        rows = [gal_row(f"{name}1"), gal_row(f"{name}2", Email="shared@po1.example")]
        source = write_csv(folder / "gal.csv", rows)
        configs[name] = hub_config(folder, slapd, f"ou={name},{base}", source, name=name,
                                   hub_base=base)
    status, line = sync(configs["first"], capsys)
    assert status == 0 and line["counts"]["add"] == 2
    status, line = sync(configs["second"], capsys)
    assert status == 1 and line["counts"]["add"] == 2 and line["counts"]["conflict"] == 1
    [problem] = conflicts(line)
    assert problem["anchor"] == "second2"
    assert f"cn=User first2,ou=first,{base}" in problem["message"]
    assert "connection 'first'" in problem["message"]
    holders = search(slapd, base, "(|(mail=shared@po1.example)"
                                  "(proxyAddresses=smtp:shared@po1.example))", ["1.1"])
    assert list(holders) == [f"cn=User first2,ou=first,{base}"]
    # The loser is synced otherwise: its other attributes are there.
    second = contact(slapd, f"ou=second,{base}", "second2")
    assert first(second, "title") == "Engineer" and first(second, "mail") is None


def test_two_rows_of_one_run_claiming_an_address_the_second_conflicts(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Import,{base}"
    rows = [gal_row("a1", Email="dup@po1.example"), gal_row("a2"),
            gal_row("a3", Email="DUP@po1.example")]
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, container, source)
    status, line = sync(config, capsys)           # a first sync: adds as it reads
    assert status == 1 and line["counts"]["add"] == 3 and line["counts"]["conflict"] == 1
    [problem] = conflicts(line)
    assert problem["anchor"] == "a3" and "'a1' claims it first" in problem["message"]
    assert first(contact(slapd, container, "a1"), "mail") == "dup@po1.example"
    assert first(contact(slapd, container, "a3"), "mail") is None

    # A later run (planned, not streamed) keeps the address where it is, even
    # when a new row earlier in the file claims it too.
    write_csv(source, [gal_row("a0", Email="dup@po1.example"), *rows])
    status, line = sync(config, capsys)
    assert status == 1 and line["counts"]["add"] == 1
    assert sorted(p["anchor"] for p in conflicts(line)) == ["a0", "a3"]
    assert first(contact(slapd, container, "a1"), "mail") == "dup@po1.example"


def test_an_address_moving_between_entries_of_one_connection_moves_in_one_run(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Import,{base}"
    source = write_csv(tmp_path / "gal.csv", [gal_row("old", Email="team@po1.example"),
                                              gal_row("new", Email="new@po1.example")])
    config = hub_config(tmp_path, slapd, container, source)
    assert sync(config, capsys)[0] == 0
    write_csv(source, [gal_row("new", Email="team@po1.example"),
                       gal_row("old", Email="old@po1.example")])
    status, line = sync(config, capsys)
    assert status == 0 and line["counts"]["modify"] == 2 and line["counts"]["conflict"] == 0
    assert first(contact(slapd, container, "new"), "mail") == "team@po1.example"
    # And a deleted entry frees its addresses for the same run.
    write_csv(source, [gal_row("new", Email="new@po1.example"),
                       gal_row("third", Email="team2@po1.example")])
    assert sync(config, capsys, "--allow-deletes", "1")[0] == 0
    write_csv(source, [gal_row("new", Email="new@po1.example"),
                       gal_row("fourth", Email="team2@po1.example")])
    status, line = sync(config, capsys, "--allow-deletes", "1")
    assert status == 0 and line["counts"]["delete"] == 1 and line["counts"]["add"] == 1
    assert first(contact(slapd, container, "fourth"), "mail") == "team2@po1.example"


def test_an_incremental_run_looks_up_only_the_addresses_it_adds(
        slapd: SlapdServer, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[set[str]] = []
    real = AddressGuard.lookup

    def counting(self: AddressGuard, wanted: Any) -> Any:
        looked_up.append(set(wanted))
        return real(self, wanted)

    monkeypatch.setattr(AddressGuard, "lookup", counting)
    container = f"ou=Import,{base}"
    rows = gal_rows(500)
    source = write_csv(tmp_path / "gal.csv", rows)
    config = hub_config(tmp_path, slapd, container, source)
    assert sync(config, capsys)[0] == 0
    # A first sync looks up every address, batched: a few searches, not 500.
    assert len(looked_up) <= 5 and sum(len(k) for k in looked_up) == 500
    looked_up.clear()
    assert sync(config, capsys)[0] == 0
    assert looked_up == []                       # nothing changed: nothing looked up
    rows[7] = gal_row("u000007", Email="moved@po1.example")
    rows[9] = gal_row("u000009", Title="Boss")
    write_csv(source, rows)
    status, line = sync(config, capsys)
    assert status == 0 and line["counts"]["modify"] == 2
    assert looked_up == [{"smtp:moved@po1.example"}]


# -- the rules, without a server ----------------------------------------------

def test_a_mail_and_an_smtp_proxy_address_are_one_address() -> None:
    assert address_key("mail", b"Ted@X.example") == "smtp:ted@x.example"
    assert address_key("proxyAddresses", b"SMTP:ted@x.example") == "smtp:ted@x.example"
    assert address_key("proxyAddresses", b"smtp:TED@x.example") == "smtp:ted@x.example"
    assert address_key("proxyAddresses", b"MS:NET/PO/TED") == "ms:net/po/ted"
    assert lookup_terms("mail", b"a*b@x") == [r"(mail=a\2ab@x)", r"(proxyAddresses=smtp:a\2ab@x)"]
    assert lookup_terms("proxyAddresses", b"SMTP:t@x") == ["(proxyAddresses=SMTP:t@x)",
                                                           "(mail=t@x)"]


def test_who_keeps_an_address() -> None:
    claims = Claims()
    claims.claim("a", ["smtp:t@x"])
    claims.claim("b", ["smtp:t@x"])
    user = Holder("uid=u", None, None)
    other = Holder("cn=o", "other", "o1")
    ours = Holder("cn=a", "gal", "a")
    kept = Holder("cn=k", "gal", "k")

    def block(holders: list[Holder], anchor: str = "b", **kw: Any) -> Holder | None:
        options: dict[str, Any] = {"remapped": {"a", "b"}, "deleted": set()}
        options.update(kw)
        return blocking(holders, key="smtp:t@x", anchor=anchor, connection="gal",
                        claims=claims, **options)

    assert block([user]) is user                    # a hub user keeps it
    assert block([other]) is other                  # so does another connection
    assert block([kept]) is kept                    # and an entry this run leaves alone
    assert block([kept], deleted={"k"}) is None     # unless it deletes it
    assert block([ours]) is ours                    # "a" maps to it again: it keeps it
    assert block([ours], remapped={"b"}) is ours
    claims_without = Claims()
    claims_without.claim("b", ["smtp:t@x"])
    assert blocking([ours], key="smtp:t@x", anchor="b", connection="gal",
                    claims=claims_without, remapped={"a", "b"}, deleted=set()) is None
    assert block([ours], anchor="a") is None        # its own address
