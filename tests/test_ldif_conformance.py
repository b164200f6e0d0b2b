"""The LDIF conformance corpus: other projects' test data, each file given to
dirsync and to the reference tools, with the same outcome.

The corpus (OpenLDAP's ``tests/data``, perl-ldap's ``data/``, python-ldap's
and go-ldap's test cases, RFC 2849's examples) lives beside the project, in
``../shared/conformance/ldif`` (or where ``DIRSYNC_LDIF_CORPUS`` says); its
README says what the reference tools agree on. It is not part of the
project: in a clone without it these tests skip, saying why; in CI they fail.

- parse: every refused file is refused (exit 2, FILE:LINE, nothing
  changed); every file with an ``.expect.ldif`` reads as it says;
- change files: applied to an LDIF-file directory holding the seed, they
  leave the ``.result``/``-cmp``/``.out`` file's entries;
- slapd: every valid file, imported by dirsync into one slapd and by
  ``ldapmodify -a -c`` into another holding the same seed, leaves the two
  servers' exports byte-identical, with the same success or failure; where
  the corpus has the expected data, the export holds it;
- diff: ``dirsync diff OLD NEW`` applied with ``ldapmodify`` to a server
  holding OLD leaves NEW.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ldap
import ldap.controls
import pytest

from dirsync.cli.main import main
from dirsync.entry import Entry, normalize_dn
from dirsync.ldif.io import LDIFReader, Record
from dirsync.ldif.urlvalues import URLValues
from dirsync.schema import OPERATIONAL, matcher
from dirsync.testing.slapd import SYSTEM_SCHEMA_DIR, SlapdServer, find_slapd

CORPUS = Path(os.environ.get("DIRSYNC_LDIF_CORPUS")
              or Path(__file__).resolve().parents[2] / "shared" / "conformance" / "ldif")

# The naming contexts the corpus writes to, besides the test server's own.
SUFFIXES = ("dc=example,dc=org", "dc=airius,dc=com", "o=Airius", "dc=example,dc=com", "c=US")
MANAGE_DSA_IT = ldap.controls.LDAPControl("2.16.840.1.113730.3.4.2", True)

# Refused by all three reference tools: the line dirsync must name.
REFUSED = {
    "go-ldap/base64-broken.bad.ldif": 2,
    "go-ldap/missing-dn.bad.ldif": 1,
    "go-ldap/version-on-second.bad.ldif": 13,
    "python-ldap/TestChangeRecords.test_bad_change_records.bad.ldif": 1,
    "rfc2849/example3.as-printed.ldif": 12,   # a continuation in column 0
    "rfc2849/example4.as-printed.ldif": 43,   # a comment's continuation in column 0
    "rfc2849/example5.as-printed.ldif": 8,    # a blank line inside the record
    "rfc2849/example6.as-printed.ldif": 42,   # a blank line inside a modify
}

# Read as the reference tools read them: the records of the .expect file.
EXPECTED = sorted(
    [f"go-ldap/{n}" for n in ("base64", "comments", "continuation", "empty-attr",
                              "leading-trailing-blank-lines", "multi-blank-lines",
                              "multispace", "nospace", "trailing-blank", "url")]
    + [f"python-ldap/TestEntryRecords.test_{n}" for n in (
        "big_binary", "binary", "binary2", "comments", "empty_attr_values", "folded",
        "missing_trailing_line_separator", "multiple", "multiple_empty_lines", "simple",
        "simple2", "sorted", "unencoded_unicode", "unicode", "weird_empty_lines")])

# Valid, no expected records of their own (python-ldap's parser options,
# empty files): read, and how many records they hold.
COUNTED = {
    "python-ldap/TestEntryRecords.test_empty.ldif": 0,
    "python-ldap/TestChangeRecords.test_empty.ldif": 0,
    "python-ldap/TestEntryRecords.test_ignored_attr_types.ldif": 1,
    "python-ldap/TestEntryRecords.test_max_entries.ldif": 4,
    "perl-ldap/10-in.ldif": 6,
    "openldap/nis_sample.ldif": 1265,
}

# Change files with the entries they start from and the entries they leave.
# A missing final '-' is accepted with a warning (True: the file has one).
CHANGES = [
    ("python-ldap/TestChangeRecords.test_simple.seed.ldif",
     "python-ldap/TestChangeRecords.test_simple.ldif",
     "python-ldap/TestChangeRecords.test_simple.result.ldif", False),
    ("python-ldap/TestChangeRecords.test_missing_trailing_dash_separator.seed.ldif",
     "python-ldap/TestChangeRecords.test_missing_trailing_dash_separator.ldif",
     "python-ldap/TestChangeRecords.test_missing_trailing_dash_separator.result.ldif", True),
    ("python-ldap/TestChangeRecords.test_mod_increment.seed.ldif",
     "python-ldap/TestChangeRecords.test_mod_increment.ldif",
     "python-ldap/TestChangeRecords.test_mod_increment.result.ldif", False),
    ("python-ldap/TestChangeRecords.test_weird_empty_lines.seed.ldif",
     "python-ldap/TestChangeRecords.test_weird_empty_lines.ldif",
     "python-ldap/TestChangeRecords.test_weird_empty_lines.result.ldif", True),
    ("go-ldap/modify.seed.ldif", "go-ldap/modify.ldif", "go-ldap/modify.result.ldif", False),
    ("perl-ldap/42-in.ldif", "perl-ldap/42-mod.ldif", "perl-ldap/42-cmp.ldif", True),
    ("perl-ldap/42-in.ldif", "perl-ldap-derived/42-mod.dashes.ldif", "perl-ldap/42-cmp.ldif",
     False),
    ("openldap/test-ordered.ldif", "openldap/test-modify.ldif",
     "openldap/modify.out.provider", True),
    ("openldap/test-ordered.ldif", "openldap-derived/test-modify.dashes.ldif",
     "openldap/modify.out.provider", False),
]

# Every valid file against slapd, with the files (loaded by ldapmodify into
# both servers) it starts from, and the entries it must leave where the
# corpus has them. RFC 2849's examples 1 to 4 do not fit slapd's standard
# schema (uid in an organizationalPerson, a ';phonetic' option): both tools
# fail those records alike, so only the two servers are compared.
AIRIUS = ("rfc2849/seed-airius.ldif",)
ORDERED = ("openldap/test-ordered.ldif",)
ON_SLAPD: list[tuple[tuple[str, ...], str, str | None]] = [
    (AIRIUS, "rfc2849/example1.ldif", None),
    (AIRIUS, "rfc2849/example2.ldif", None),
    (AIRIUS, "rfc2849/example3.ldif", None),
    (("rfc2849/seed-ex4.ldif",), "rfc2849/example4.ldif", None),
    (AIRIUS, "rfc2849/example5.ldif", None),
    (AIRIUS + ("rfc2849/seed-ex6.ldif",), "rfc2849/example6.ldif", None),
    (AIRIUS, "rfc2849/example7.ldif", "rfc2849/seed-airius.ldif"),
    ((), "openldap/test-ordered.ldif", "openldap/test-ordered.ldif"),
    ((), "openldap/test.ldif", "openldap/test-ordered.ldif"),
    ((), "openldap/test-dn.ldif", "openldap-derived/dn.out.search1.ldif"),
    ((), "openldap/test-lang.ldif", "openldap-derived/lang-out.search1.ldif"),
    ((), "openldap/nis_sample.ldif", None),
    (ORDERED, "openldap/test-modify.ldif", "openldap/modify.out.provider"),
    (ORDERED, "openldap-derived/test-modify.dashes.ldif", "openldap/modify.out.provider"),
    (ORDERED, "openldap-derived/test004-empty-add.ldif", "openldap/test-ordered.ldif"),
    (ORDERED, "openldap-derived/test005-modrdn.ldif", "openldap/modrdn.out.provider.0"),
    (ORDERED + ("openldap-derived/test005-modrdn.ldif",),
     "openldap-derived/test005-modrdn-back.ldif", None),
    (ORDERED, "openldap-derived/test005-modrdn-case.ldif", None),
    (ORDERED, "openldap-derived/test005-modrdn-same.ldif", "openldap/test-ordered.ldif"),
    (ORDERED, "openldap-derived/test005-modrdn-selfsuperior.ldif", "openldap/test-ordered.ldif"),
    ((), "perl-ldap/40-in.ldif", None),
    ((), "perl-ldap/41-in.ldif", None),
    ((), "perl-ldap/42-in.ldif", None),
    (("perl-ldap/42-in.ldif",), "perl-ldap/42-mod.ldif", None),
    ((), "go-ldap/modify.ldif", None),
]

# dirsync adds parents before their children; ldapmodify sends the file's
# order and fails the children. The file it is given instead: the same
# entries in an order it can add.
REFERENCE_SOURCE = {"openldap/test.ldif": "openldap/test-ordered.ldif"}

# Files naming attribute types slapd's schema lacks: dirsync refuses them
# before sending anything (exit 2, FILE:LINE, docs/ldif-tools.md), where
# ldapmodify -c sends them and the server refuses every such record
# (undefinedAttributeType); the records without them fail for other
# reasons (quipu object classes, missing parents): on both servers nothing
# of these files is applied.
UNKNOWN_TYPES = {
    "perl-ldap/00-in.ldif": (3, "lastmodifiedtime"),
    "perl-ldap/10-in.ldif": (2, "lastmodifiedtime"),
    "python-ldap/TestChangeRecords.test_simple.ldif": (3, "attrib"),
}

# OLD, NEW: the diff of the two, applied with ldapmodify to OLD, leaves NEW.
DIFFS = [
    ("openldap/test-ordered.ldif", "openldap/modify.out.provider"),
    ("openldap/modify.out.provider", "openldap/test-ordered.ldif"),
    ("openldap/test-ordered.ldif", "openldap/modrdn.out.provider.0"),
    ("openldap/modrdn.out.provider.0", "openldap/test-ordered.ldif"),
]


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not (CORPUS / "README.md").is_file():
        why = (f"the LDIF conformance corpus is not at {CORPUS} (it is kept beside the "
               "project, in ../shared/conformance/ldif, or set DIRSYNC_LDIF_CORPUS)")
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must run these tests")
        pytest.skip(why)
    return CORPUS


def read_ldif(path: Path) -> Iterator[Record]:
    """The records of a corpus file; its URL values (RFC 2849 examples 5 and
    6, go-ldap's url case) are read from the corpus, as
    ``--allow-url-values CORPUS`` allows (refused by default)."""
    with LDIFReader(path, url_values=URLValues.under(CORPUS)) as reader:
        yield from reader


def data(corpus: Path, name: str, tmp_path: Path) -> Path:
    """The corpus file, with ``@DATA@`` (URL values) pointing at the corpus."""
    path = corpus / name
    raw = path.read_bytes()
    if b"@DATA@" not in raw:
        return path
    copy = tmp_path / path.name
    copy.write_bytes(raw.replace(b"@DATA@", str(corpus).encode()))
    return copy


def normalized(entries: list[Entry]) -> dict[str, dict[str, list[bytes]]]:
    """Entries by normalized DN, values by their attribute's matching rule (a
    server hands back ``groupOfNames`` for ``groupofnames``)."""
    return {normalize_dn(e.dn): {k.lower(): sorted(matcher(k)(x) for x in v)
                                 for k, v in e.attrs.items() if k.lower() not in OPERATIONAL}
            for e in entries}


def file_entries(path: Path) -> dict[str, dict[str, list[bytes]]]:
    records = list(read_ldif(path))
    assert all(isinstance(r, Entry) for r in records)
    return normalized(records)  # type: ignore[arg-type]


def test_every_corpus_file_is_in_a_case(corpus: Path) -> None:
    # A file added to the corpus must be given a case here, not be ignored.
    named = set(REFUSED) | {f"{n}.ldif" for n in EXPECTED} | set(COUNTED)
    for case in CHANGES:
        named.update(case[:3])
    for seeds, name, expected in ON_SLAPD:
        named.update(seeds)
        named.add(name)
        if expected:
            named.add(expected)
    for old, new in DIFFS:
        named.update((old, new))
    named.update(UNKNOWN_TYPES)
    named.update(f"{n}.expect.ldif" for n in EXPECTED)
    support = {"README.md", "openldap/test.schema", "perl-ldap/man.jpg", "perl-ldap/woman.jpg",
               "go-ldap/url-value.txt"}
    # Expected data no dirsync outcome is compared with: perl-ldap's search
    # results and written copies, OpenLDAP's full search outputs (their
    # first search is in openldap-derived/), later modrdn steps.
    unused = {"perl-ldap/00-cmp.ldif", "perl-ldap/40-cmp.ldif", "perl-ldap/41a-cmp.ldif",
              "perl-ldap/41b-cmp.ldif", "perl-ldap/41c-cmp.ldif", "perl-ldap/41d-cmp.ldif",
              "openldap/dn.out", "openldap/lang-out.ldif", "openldap/modrdn.out.provider.1",
              "openldap/modrdn.out.provider.2", "openldap/modrdn.out.provider.3"}
    present = {str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file()}
    assert present - named - support - unused == set()
    assert named - present == set()


# -- parse ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "line"), sorted(REFUSED.items()))
def test_refused_files_are_refused_naming_file_and_line(
        corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        name: str, line: int) -> None:
    source = data(corpus, name, tmp_path)
    target = tmp_path / "target.ldif"
    target.write_text("dn: o=untouched\nobjectClass: organization\no: untouched\n")
    before = target.read_bytes()
    assert main(["import", str(target), str(source), "--allow-url-values", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert f"{source}:{line}: " in err
    assert target.read_bytes() == before


def records_of(path: Path) -> list[tuple[str, str, dict[str, list[bytes]]]]:
    out = []
    for record in read_ldif(path):
        attrs = record.attrs if isinstance(record, Entry) else (record.attrs or {})
        kind = "entry" if isinstance(record, Entry) else record.kind
        out.append((normalize_dn(record.dn), kind,
                    {k.lower(): list(v) for k, v in attrs.items()}))
    return out


@pytest.mark.parametrize("name", EXPECTED)
def test_files_read_as_their_expect_file_says(corpus: Path, tmp_path: Path, name: str) -> None:
    got = records_of(data(corpus, f"{name}.ldif", tmp_path))
    assert got == records_of(corpus / f"{name}.expect.ldif")


@pytest.mark.parametrize(("name", "count"), sorted(COUNTED.items()))
def test_valid_files_without_expected_records_are_read(corpus: Path, tmp_path: Path,
                                                       name: str, count: int) -> None:
    assert len(list(read_ldif(data(corpus, name, tmp_path)))) == count


def test_control_lines_of_perl_ldap_are_kept(corpus: Path) -> None:
    records = list(read_ldif(corpus / "perl-ldap/10-in.ldif"))
    controls = [[(c.oid, c.critical, c.value) for c in r.controls] for r in records]
    proxied = "2.16.840.1.113730.3.4.18"
    assert controls[0] == [("2.16.840.1.113730.3.4.2", True, None),
                           (proxied, True, "dn:cn=Hägar,ou=people,o=myorg.com".encode())]
    assert controls[1] == [(proxied, True, b"dn:cn=me,ou=people,o=myorg.com")]
    assert controls[5] == [("2.16.840.1.113730.3.4.2", True, None)]


# -- change files on an LDIF-file directory ----------------------------------

@pytest.mark.parametrize(("seed", "name", "result", "warns"), CHANGES,
                         ids=[c[1] for c in CHANGES])
def test_change_files_leave_their_result(corpus: Path, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture, seed: str, name: str,
                                         result: str, warns: bool) -> None:
    target = tmp_path / "directory.ldif"
    shutil.copyfile(corpus / seed, target)
    with caplog.at_level(logging.WARNING, logger="dirsync.ldif"):
        assert main(["import", str(target), str(corpus / name)]) == 0
    dashes = [r for r in caplog.records if "not ended by '-'" in r.getMessage()]
    assert bool(dashes) is warns
    assert file_entries(target) == file_entries(corpus / result)


# -- against slapd, next to ldapmodify -----------------------------------------

def _conformance_server(corpus: Path) -> SlapdServer:
    server = SlapdServer(dbnosync=True, schemas=(str(SYSTEM_SCHEMA_DIR / "openldap.schema"),
                                                 str(corpus / "openldap" / "test.schema")))
    extra = []
    for i, suffix in enumerate(SUFFIXES[1:]):
        directory = server.workdir / f"db{i}"
        directory.mkdir()
        # The test server's root DN is the root of every naming context.
        extra += ["database mdb", f'suffix "{suffix}"', f'rootdn "{server.root_dn}"',
                  f"directory {directory}", "maxsize 268435456", "dbnosync"]
    server.database_extra = "\n".join(extra)
    return server.start()


@pytest.fixture(scope="module")
def servers(corpus: Path) -> Iterator[tuple[SlapdServer, SlapdServer]]:
    """Two servers alike: one for dirsync, one for ldapmodify."""
    if find_slapd() is None or shutil.which("ldapmodify") is None:
        why = "slapd and ldapmodify are needed (Debian: slapd ldap-utils)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    started: list[SlapdServer] = []
    try:
        for _ in range(2):
            started.append(_conformance_server(corpus))
        yield started[0], started[1]
    finally:
        for server in started:
            server.destroy()


def _wipe(server: SlapdServer) -> None:
    conn = server.connect()
    try:
        for suffix in SUFFIXES:
            try:
                found = conn.search_ext_s(suffix, ldap.SCOPE_SUBTREE, "(objectClass=*)",
                                          ["1.1"], serverctrls=[MANAGE_DSA_IT])
            except ldap.NO_SUCH_OBJECT:
                found = []
            for dn, _ in sorted(found, key=lambda f: -len(ldap.dn.str2dn(f[0]))):
                if normalize_dn(dn) != normalize_dn(SUFFIXES[0]):
                    conn.delete_ext_s(dn, serverctrls=[MANAGE_DSA_IT])
        server.add_suffix()
        # The country above nis_sample's and perl-ldap's organizations.
        conn.add_s("c=US", [("objectClass", [b"country"]), ("c", [b"US"])])
    finally:
        conn.unbind_s()


def ldapmodify(server: SlapdServer, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ldapmodify", "-a", "-c", "-x", "-H", server.url, "-D",
                           server.root_dn, "-w", server.root_pw, "-f", str(path)],
                          check=False, capture_output=True, text=True, timeout=120)


def exported(server: SlapdServer, tmp_path: Path, tag: str) -> dict[str, bytes]:
    """``dirsync export --sort`` of every naming context."""
    out = {}
    for i, suffix in enumerate(SUFFIXES):
        path = tmp_path / f"{tag}-{i}.ldif"
        assert main(["export", f"{server.url}/{suffix}", "--sort", "-o", str(path),
                     "--bind-dn", server.root_dn, "--password-file",
                     str(_password_file(server, tmp_path))]) == 0
        out[suffix] = path.read_bytes()
    return out


def _password_file(server: SlapdServer, tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text(server.root_pw)
    return path


def server_entries(server: SlapdServer) -> dict[str, dict[str, list[bytes]]]:
    conn = server.connect()
    entries: list[Entry] = []
    try:
        for suffix in SUFFIXES:
            try:
                found = conn.search_s(suffix, ldap.SCOPE_SUBTREE, "(objectClass=*)")
            except ldap.NO_SUCH_OBJECT:
                continue
            entries += [Entry(dn, attrs) for dn, attrs in found]
    finally:
        conn.unbind_s()
    return normalized(entries)


@pytest.mark.parametrize(("seeds", "name", "expected"), ON_SLAPD, ids=[c[1] for c in ON_SLAPD])
def test_import_then_export_gives_what_ldapmodify_gives(
        corpus: Path, servers: tuple[SlapdServer, SlapdServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], seeds: tuple[str, ...], name: str,
        expected: str | None) -> None:
    ours, reference = servers
    _seed(servers, corpus, seeds, tmp_path)
    source = data(corpus, name, tmp_path)
    status = main(["import", ours.url, str(source), "--continue-on-error",
                   "--allow-url-values", str(corpus),
                   "--bind-dn", ours.root_dn, "--password-file",
                   str(_password_file(ours, tmp_path))])
    err = capsys.readouterr().err
    done = ldapmodify(reference, data(corpus, REFERENCE_SOURCE.get(name, name), tmp_path))
    assert status in (0, 1), err
    assert (status == 0) == (done.returncode == 0), done.stderr
    assert exported(ours, tmp_path, "ours") == exported(reference, tmp_path, "reference")
    held = server_entries(ours)
    if expected is not None:
        wanted = file_entries(data(corpus, expected, tmp_path))
        assert {dn: held.get(dn) for dn in wanted} == wanted


def _seed(servers: tuple[SlapdServer, SlapdServer], corpus: Path, seeds: tuple[str, ...],
          tmp_path: Path) -> dict[str, dict[str, list[bytes]]]:
    """Both servers wiped and given the same seed (some seed records do not
    fit the schema: they fail alike on both); the entries they then hold."""
    states = []
    for server in servers:
        _wipe(server)
        for seed in seeds:
            ldapmodify(server, data(corpus, seed, tmp_path))
        states.append(server_entries(server))
    assert states[0] == states[1]
    return states[0]


@pytest.mark.parametrize("name", sorted(UNKNOWN_TYPES))
def test_unknown_attribute_types_refuse_the_file_before_anything_is_sent(
        corpus: Path, servers: tuple[SlapdServer, SlapdServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], name: str) -> None:
    ours, reference = servers
    seeded = _seed(servers, corpus, (), tmp_path)
    line, attr = UNKNOWN_TYPES[name]
    source = data(corpus, name, tmp_path)
    assert main(["import", ours.url, str(source), "--bind-dn", ours.root_dn,
                 "--password-file", str(_password_file(ours, tmp_path))]) == 2
    err = capsys.readouterr().err
    assert f"{source}:{line}: unknown attribute type {attr!r}" in err
    assert server_entries(ours) == seeded
    done = ldapmodify(reference, source)
    assert done.returncode != 0 and "Undefined attribute type (17)" in done.stderr
    # Record by record, ldapmodify could not apply any of it either.
    assert server_entries(reference) == seeded


@pytest.mark.parametrize(("old", "new"), DIFFS)
def test_diff_applied_with_ldapmodify_leaves_new(
        corpus: Path, servers: tuple[SlapdServer, SlapdServer], tmp_path: Path,
        old: str, new: str) -> None:
    _, reference = servers
    _wipe(reference)
    old_path, new_path = data(corpus, old, tmp_path), data(corpus, new, tmp_path)
    # OLD may be a search output, children before parents: loaded parents first.
    assert main(["import", reference.url, str(old_path), "--bind-dn", reference.root_dn,
                 "--password-file", str(_password_file(reference, tmp_path))]) == 0
    before = server_entries(reference)
    changes = tmp_path / "changes.ldif"
    assert main(["diff", str(old_path), str(new_path), "-o", str(changes)]) == 0
    done = ldapmodify(reference, changes)
    assert done.returncode == 0, done.stderr
    after = server_entries(reference)
    # What the files name is as NEW says; the rest of the server is untouched.
    olds, news = file_entries(old_path), file_entries(new_path)
    assert {dn: after.get(dn) for dn in news} == news
    assert {dn for dn in olds if dn not in news and dn in after} == set()
    assert {dn: v for dn, v in after.items() if dn not in olds and dn not in news} == \
        {dn: v for dn, v in before.items() if dn not in olds and dn not in news}
