"""Foreign input is hostile: each way in checks what it reads (issue 11).

Values checked at the boundary, the whole LDIF file checked before
anything is sent, URL values refused, configs and wrong passwords
reported without a traceback, control characters escaped on terminals.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.ldif.io import read_ldif
from dirsync.testing.slapd import SlapdServer
from dirsync.testing.sync import first, gal_row, hub_config, search, values, write_csv


@pytest.fixture
def creds(slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch) -> SlapdServer:
    monkeypatch.setenv("DIRSYNC_BIND_DN", slapd.root_dn)
    monkeypatch.setenv("DIRSYNC_PASSWORD", slapd.root_pw)
    return slapd


def test_check_reports_a_file_directory_without_path(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("ldif", "csv"):
        config = tmp_path / f"{kind}.toml"
        config.write_text(f'[directories.hub]\nkind = "{kind}"\nbase = "dc=example,dc=org"\n')
        for command in ("check", "sync"):
            capsys.readouterr()
            assert main(["-c", str(config), command]) == 2
            out, err = capsys.readouterr()
            assert "Traceback" not in out + err
            assert f"directories.hub.path: missing (the {kind} file)" in out + err
            # Said once, not once by the config check and again by the reader.
            assert (out + err).count("directories.hub.path") == 1


def test_a_wrong_password_is_not_blamed_on_the_certificate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIRSYNC_BIND_DN", raising=False)
    monkeypatch.delenv("DIRSYNC_PASSWORD", raising=False)
    bad = tmp_path / "bad.pw"
    bad.write_text("wrong\n")
    out = tmp_path / "o.ldif"
    with SlapdServer(tls=True) as server:
        server.add_suffix()
        capsys.readouterr()
        assert main(["export", server.ldaps_url + "/" + server.suffix, "-o", str(out),
                     "--ca-file", str(server.ca_file), "--bind-dn", server.root_dn,
                     "--password-file", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "invalid credentials" in err and "wrong bind DN or password" in err
        assert "certificate" not in err
        assert not out.exists()


# -- 1. values checked at the boundary ----------------------------------------

def test_a_newline_in_a_csv_cell_injects_no_address(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    container = f"ou=Gal,{base}"
    source = tmp_path / "po1.csv"
    write_csv(source, [gal_row("u1"), gal_row("u2"), gal_row("u3")])
    config = hub_config(tmp_path, slapd, container, source)
    assert main(["-c", str(config), "sync"]) == 0
    before = search(slapd, container, attrs=["*"])
    assert len(before) == 1 + 3

    write_csv(source, [
        gal_row("u1", Email="victim@x.example\nsmtp:ceo@example.org"),
        gal_row("u2", Email="not an address"),
        gal_row("u3", Title="Boss"),
        gal_row("u4", Email="u4@po1.example", Mobile="+1\x00555"),
    ])
    capsys.readouterr()
    # check says beforehand which rows a sync will skip.
    assert main(["-c", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert f"{source}:2: field 'Email': a control character '\\n'" in out
    assert f"{source}:6: field 'Mobile': a NUL character" in out
    assert main(["-c", str(config), "sync"]) == 1
    out = capsys.readouterr().out
    after = search(slapd, container, attrs=["*"])
    everything = repr(after)
    assert "ceo@example.org" not in everything and "not an address" not in everything
    # u1 and u2 stay as they were (not changed, not deleted), u4 is not added,
    # u3's own change goes through.
    for alias in ("u1", "u2"):
        dn = f"cn=User {alias},{container}"
        assert after[dn] == before[dn]
    assert f"cn=User u4,{container}" not in after
    assert first(after[f"cn=User u3,{container}"], "title") == "Boss"
    # Each is reported with the file, its line and the field.
    assert f"{source}:2: field 'Email': a control character '\\n'" in out
    assert f"{source}:4: field 'mail': not an SMTP address (RFC 5321): 'not an address'" in out
    assert f"{source}:6: field 'Mobile': a NUL character" in out
    assert "counts: add 0, modify 1, rename 0, delete 0" in out and "error 3" in out
    # The next run does not take them for unchanged entries: refused again.
    assert main(["-c", str(config), "sync"]) == 1
    out = capsys.readouterr().out
    assert "unchanged 1" in out and "error 3" in out
    assert search(slapd, container, attrs=["*"]) == after


def test_a_foreign_server_entry_with_a_bad_address_is_skipped(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    foreign = f"ou=Foreign,{base}"
    container = f"ou=Import,{base}"
    conn = slapd.connect()
    conn.add_s(foreign, [("objectClass", [b"organizationalUnit"]), ("ou", [b"Foreign"])])
    mails = {"ann": b"ann@fabrikam.example", "bob": b"bob at fabrikam",
             "cy": b"cy@fabrikam.example\x1b[2J"}
    for uid, mail in mails.items():
        conn.add_s(f"uid={uid},{foreign}", [
            ("objectClass", [b"inetOrgPerson"]), ("uid", [uid.encode()]),
            ("cn", [uid.encode()]), ("sn", [uid.encode()]), ("mail", [mail])])
    conn.unbind_s()
    password = tmp_path / "hub.pw"
    config = hub_config(tmp_path, slapd, container, tmp_path / "unused",
                        mapping="generic-ldap", name="fabrikam")
    config.write_text(config.read_text().replace(
        f'[directories.foreign]\nkind = "csv"\npath = "{tmp_path / "unused"}"\nkey = "Alias"',
        f'[directories.foreign]\nkind = "ldap"\nurl = "{slapd.url}"\nbase = "{foreign}"\n'
        f'bind_dn = "{slapd.root_dn}"\npassword_file = "{password.name}"'))
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 1
    out = capsys.readouterr().out
    imported = search(slapd, container, "(objectClass=inetOrgPerson)", ["mail"])
    assert [values(a, "mail") for a in imported.values()] == [["ann@fabrikam.example"]]
    assert "field 'mail': not an SMTP address (RFC 5321): 'bob at fabrikam'" in out
    assert "field 'mail': a control character '\\x1b'" in out
    assert "\x1b" not in out


# -- 3. the whole LDIF file is checked before anything is sent ----------------

BAD_DNS = [b"cn=a\x00b", b";cn=x", b"cn=<=x", b"o=\\Fabrikam"]  # \Fa: not UTF-8
BAD_DN_IDS = ["nul", "semicolon", "less-than", "not-utf8-escape"]


def _file_with_a_bad_dn(folder: Path, suffix: str, bad: bytes) -> tuple[Path, str]:
    good = f"cn=first,{suffix}"
    raw = bad + b"," + suffix.encode()
    text = (f"dn: {good}\nobjectClass: organizationalRole\ncn: first\n\n"
            f"dn:: {base64.b64encode(raw).decode()}\nobjectClass: organizationalRole\n"
            "cn: second\n\n")
    path = folder / "bad.ldif"
    path.write_text(text)
    return path, good


@pytest.mark.parametrize("bad", BAD_DNS, ids=BAD_DN_IDS)
def test_an_import_with_a_bad_dn_changes_nothing_on_slapd(
        creds: SlapdServer, base: str, tmp_path: Path, bad: bytes,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, good = _file_with_a_bad_dn(tmp_path, base, bad)
    for args in (["import", creds.url, str(path)],
                 ["import", "--dry-run", creds.url, str(path)],
                 ["diff", str(path), str(path)]):
        capsys.readouterr()
        assert main(args) == 2, args
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err and "would" not in out
        assert f"{path}:5: not a valid DN" in err and "(field 'dn')" in err
        assert not creds.has_entry(good)


@pytest.mark.parametrize("bad", BAD_DNS, ids=BAD_DN_IDS)
def test_an_import_with_a_bad_dn_changes_nothing_in_an_ldif_hub(
        tmp_path: Path, bad: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    hub = tmp_path / "hub.ldif"
    hub.write_text("version: 1\n\ndn: dc=example,dc=org\nobjectClass: domain\ndc: example\n\n")
    before = hub.read_bytes()
    path, _ = _file_with_a_bad_dn(tmp_path, "dc=example,dc=org", bad)
    for args in (["import", str(hub), str(path)], ["import", "--dry-run", str(hub), str(path)]):
        capsys.readouterr()
        assert main(args) == 2
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err and f"{path}:5: not a valid DN" in err
        assert hub.read_bytes() == before


def test_a_modrdn_to_a_bad_rdn_is_refused_before_anything_is_sent(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rename.ldif"
    path.write_text(f"dn: cn=kept,{base}\nchangetype: add\nobjectClass: organizationalRole\n"
                    f"cn: kept\n\ndn: cn=kept,{base}\nchangetype: modrdn\nnewrdn: cn=<=x\n"
                    "deleteoldrdn: 1\n\n")
    capsys.readouterr()
    assert main(["import", creds.url, str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: not a valid DN: 'cn=<=x' (field 'newrdn')" in err
    assert not creds.has_entry(f"cn=kept,{base}")


# -- 4. LDIF URL values ---------------------------------------------------------

def _url_file(folder: Path, suffix: str, url: str, attr: str = "description") -> Path:
    path = folder / "url.ldif"
    path.write_text(f"dn: cn=url,{suffix}\nobjectClass: organizationalRole\ncn: url\n"
                    f"{attr}:< {url}\n\n")
    return path


def test_url_values_are_refused_by_default(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    secret = Path("/etc/hostname").read_text().strip()
    hub = tmp_path / "hub.ldif"
    for url in ("file:///etc/hostname", "http://127.0.0.1:9/x", "/etc/hostname",
                "file:///dev/zero"):
        path = _url_file(tmp_path, base, url)
        for args in (["import", creds.url, str(path)], ["import", str(hub), str(path)],
                     ["import", "--dry-run", creds.url, str(path)],
                     ["diff", str(path), str(path)], ["export", str(path)]):
            capsys.readouterr()
            assert main(args) == 2, (url, args)
            out, err = capsys.readouterr()
            assert "Traceback" not in out + err and secret not in out
            assert f"{path}:4: URL value {url!r} refused" in err
            assert "(field 'description')" in err
        assert not creds.has_entry(f"cn=url,{base}") and not hub.exists()


def test_allowed_url_values_are_read_under_their_folder_only(
        creds: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import os

    allowed = tmp_path / "values"
    allowed.mkdir()
    (allowed / "note.txt").write_text("a note")
    (allowed / "big.txt").write_bytes(b"x" * ((1 << 20) + 1))
    (allowed / "out").symlink_to("/etc/hostname")
    (allowed / "in").symlink_to(allowed / "note.txt")
    os.mkfifo(allowed / "fifo")
    refusals = {
        "file:///etc/hostname": "outside",
        f"file://{allowed}/out": "outside",
        "file:///dev/zero": "outside",
        f"file://{allowed}/fifo": "not a regular file",
        f"file://{allowed}": "not a regular file",
        f"file://{allowed}/big.txt": "larger than 1048576 bytes",
        f"file://{allowed}/missing": "cannot read it",
        "http://127.0.0.1:9/x": "only file: URLs are read",
        f"{allowed}/note.txt": "only file: URLs are read",
        f"file://otherhost{allowed}/note.txt": "not a plain local file: URL",
    }
    option = ["--allow-url-values", str(allowed)]
    for url, why in refusals.items():
        path = _url_file(tmp_path, base, url)
        capsys.readouterr()
        assert main(["import", *option, creds.url, str(path)]) == 2, url
        err = capsys.readouterr().err
        assert f"{path}:4: URL value {url!r}: {why}" in err, err
        assert not creds.has_entry(f"cn=url,{base}")
    path = _url_file(tmp_path, base, f"file://{allowed}/in")
    capsys.readouterr()
    assert main(["import", *option, creds.url, str(path)]) == 0
    conn = creds.connect()
    found = conn.search_s(f"cn=url,{base}", 0, attrlist=["description"])
    conn.unbind_s()
    assert found[0][1]["description"] == [b"a note"]
    # A DN is never a URL value (RFC 2849), allowed or not.
    path = tmp_path / "dn.ldif"
    path.write_text(f"dn:< file://{allowed}/note.txt\ncn: x\n\n")
    capsys.readouterr()
    assert main(["diff", *option, str(path), str(path)]) == 2
    assert "'dn' cannot be a URL value" in capsys.readouterr().err


# -- 7. control characters never reach a terminal raw ---------------------------

def test_control_characters_are_escaped_in_text_output_and_kept_in_json_and_ldif(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import shutil

    folder = tmp_path / "qs"
    (folder / "var").mkdir(parents=True)
    root = Path(__file__).resolve().parent.parent
    shutil.copy(root / "examples" / "quickstart" / "dirsync.toml", folder)
    evil_name = "Eve\x1b[31m\x07\x1b[2J\u202eliam"
    evil_title = "Boss\x9b31m"
    write_csv(folder / "var" / "po1.csv",
              [gal_row("eve", **{"Display Name": evil_name, "Title": "Clerk"})])
    config = folder / "dirsync.toml"
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 0
    write_csv(folder / "var" / "po1.csv",
              [gal_row("eve", **{"Display Name": evil_name, "Title": evil_title})])
    assert main(["-c", str(config), "sync"]) == 0
    out = capsys.readouterr().out
    shown = r"Eve\x1b[31m\x07\x1b[2J\u202eliam"
    assert shown in out and r"Boss\x9b31m" in out
    reports = sorted((folder / "var" / "reports").iterdir())
    for report in reports:
        text = (report / "report.txt").read_text()
        assert shown in text
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in text and raw not in out
    # JSON and LDIF keep the exact values.
    data = json.loads((reports[-1] / "report.json").read_text())
    assert any(e["dn"].startswith(f"cn={evil_name},") for e in data["entries"])
    assert data["entries"][0]["attributes"]["title"]["after"] == [evil_title]
    hub = {r.dn: r for r in read_ldif(folder / "var" / "hub.ldif")}
    assert any(r.first("cn") == evil_name and r.first("title") == evil_title
               for r in hub.values())

    # diff --format text and import's messages escape them too.
    ldif_file = tmp_path / "evil.ldif"
    ldif_file.write_text("dn:: " + base64.b64encode(
        f"cn={evil_name},dc=example,dc=org".encode()).decode()
        + "\nobjectClass: person\ncn:: " + base64.b64encode(evil_name.encode()).decode()
        + "\nsn: x\n\n")
    empty = tmp_path / "empty.ldif"
    empty.write_text("")
    capsys.readouterr()
    assert main(["diff", "--format", "text", str(empty), str(ldif_file)]) == 0
    assert main(["import", "--dry-run", str(tmp_path / "hub.ldif"), str(ldif_file)]) == 0
    out, err = capsys.readouterr()
    assert out.count(shown) >= 3
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in out + err


# -- found by the fuzz harness -------------------------------------------------

def test_a_mapping_with_an_unknown_filter_is_a_mapping_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dirsync.testing.fuzz import ROOT, workspace

    mapping = (ROOT / "mappings" / "csv-gal.toml").read_text().replace(
        'value = "{{ Alias }}"', 'value = "{{ Alias | ower }}"').replace(
        "skip = \"not Email\"", "skip = \"Email | nosuch\"")
    config = workspace(tmp_path / "w", mapping=mapping.encode())
    for command in ("check", "sync"):
        capsys.readouterr()
        assert main(["-c", str(config), command]) == 2
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        assert "anchor.value: template syntax error: No filter named 'ower'" in out + err
        assert "classify.skip: expression syntax error: No filter named 'nosuch'" in out + err


def test_text_log_lines_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from dirsync.cli.main import _setup_logging

    value = "a\x1b[2Jb\nforged line"
    try:
        _setup_logging("text", 0)
        logging.getLogger("dirsync.test").warning("value %s", value)
        assert capsys.readouterr().err == \
            "WARNING dirsync.test: value a\\x1b[2Jb\\x0aforged line\n"
        _setup_logging("json", 0)  # JSON keeps the exact value
        logging.getLogger("dirsync.test").warning("value %s", value)
        assert json.loads(capsys.readouterr().err)["message"] == f"value {value}"
    finally:
        logging.getLogger("dirsync").handlers[:] = []


def test_an_ldif_source_entry_with_a_two_line_address_is_skipped(
        slapd: SlapdServer, base: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "fabrikam.ldif"
    injected = base64.b64encode(b"ted.bremer@fabrikam.example\nsmtp:ceo@example.org").decode()
    source = tmp_path / "fabrikam.ldif"
    source.write_text(fixture.read_text().replace(
        "mail: ted.bremer@fabrikam.example\n", f"mail:: {injected}\n"))
    container = f"ou=Fabrikam,{base}"
    config = hub_config(tmp_path, slapd, container, source, mapping="generic-ldap",
                        lists="group", source_kind="ldif", name="fabrikam")
    capsys.readouterr()
    assert main(["-c", str(config), "sync"]) == 1
    out = capsys.readouterr().out
    assert f"{source}:16: field 'mail': a control character '\\n'" in out
    imported = search(slapd, container, attrs=["mail", "proxyAddresses"])
    assert imported and "ceo@example.org" not in repr(imported)
    assert not any(dn.startswith("cn=Ted Bremer,") for dn in imported)
