"""The ``ad`` kind in dirsync.toml: its keys and their checks (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.config import check_config, load_config
from dirsync.directories import ADDirectory

BASE = """
[directories.hub]
kind = "ldif"
path = "hub.ldif"

[directories.ad]
kind = "ad"
{ad}

[[connections]]
name = "corp-ad"
foreign = "ad"
hub = "hub"
mapping = "ad"
import_container = "ou=Corp AD,ou=Contacts,dc=example,dc=org"
"""

GOOD = """url = "ldaps://dc1.corp.example"
base = "DC=corp,DC=example"
bind_dn = "svc-dirsync@corp.example"
password_env = "DIRSYNC_AD_PASSWORD"
ca_file = "corp-ca.pem"
hidden_filter = "(extensionAttribute15=hide)"
"""


def write(folder: Path, ad: str) -> Path:
    (folder / "corp-ca.pem").write_text("")
    path = folder / "dirsync.toml"
    path.write_text(BASE.format(ad=ad))
    return path


def test_the_issue_contract_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIRSYNC_AD_PASSWORD", "s3cret")
    config = load_config(write(tmp_path, GOOD))
    ad = config.directories["ad"]
    assert (ad.kind, ad.url, ad.bind_dn, ad.tls_verify) == (
        "ad", "ldaps://dc1.corp.example", "svc-dirsync@corp.example", True)
    assert ad.hidden_filter == "(extensionAttribute15=hide)"
    opened = ad.open()
    assert isinstance(opened, ADDirectory) and opened.kind == "ad"
    assert opened.password == "s3cret" and opened.tls.ca_file == str(tmp_path / "corp-ca.pem")
    assert config.connections[0].mapping_path.name == "ad.toml"


def test_a_dn_bind_is_accepted_too(tmp_path: Path) -> None:
    text = GOOD.replace('"svc-dirsync@corp.example"',
                        '"CN=svc-dirsync,OU=Service,DC=corp,DC=example"')
    _, problems = check_config(write(tmp_path, text))
    assert problems == []


@pytest.mark.parametrize(("change", "problem"), [
    (('url = "ldaps://dc1.corp.example"', 'url = "ldap://dc1.corp.example"'),
     "directories.ad.starttls: Active Directory refuses simple binds without TLS"),
    (('url = "ldaps://dc1.corp.example"', 'url = "ldapi:///run/x"'),
     "directories.ad.url: an ad directory is reached by ldaps:// or ldap://"),
    (('bind_dn = "svc-dirsync@corp.example"', 'bind_dn = "not a name"'),
     "directories.ad.bind_dn: 'not a name' is not a valid DN"),
    (('hidden_filter = "(extensionAttribute15=hide)"', 'hidden_filter = "oops"'),
     "directories.ad.hidden_filter: 'oops' is not a filter dirsync can evaluate"),
    (('base = "DC=corp,DC=example"', 'path = "x.csv"'),
     "directories.ad.path: does not apply to a ad directory"),
])
def test_bad_ad_tables_are_named(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    _, problems = check_config(write(tmp_path, GOOD.replace(*change)))
    assert any(p.startswith(problem) for p in problems), problems


def test_ldap_with_starttls_is_accepted(tmp_path: Path) -> None:
    text = GOOD.replace('url = "ldaps://dc1.corp.example"',
                        'url = "ldap://dc1.corp.example"\nstarttls = true')
    _, problems = check_config(write(tmp_path, text))
    assert problems == []


def test_hidden_filter_belongs_to_the_ad_kind_only(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    path.write_text(path.read_text() + '\n[directories.other]\nkind = "ldap"\n'
                    'url = "ldap://x"\nhidden_filter = "(a=b)"\n')
    _, problems = check_config(path)
    assert "directories.other.hidden_filter: does not apply to a ldap directory" in problems


def test_the_example_config_is_valid_once_its_secrets_are_there(tmp_path: Path) -> None:
    import shutil

    example = Path(__file__).resolve().parents[2] / "examples" / "ad-galsync" / "dirsync.toml"
    shutil.copy(example, tmp_path)
    # What an administrator adds beside it: the CA and the hub's password.
    (tmp_path / "corp-ca.pem").write_text("")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "hub.pw").write_text("x\n")
    config, problems = check_config(tmp_path / "dirsync.toml")
    assert problems == []
    assert config is not None and config.directories["ad"].kind == "ad"
    assert config.connections[0].mapping_path.name == "ad.toml"
