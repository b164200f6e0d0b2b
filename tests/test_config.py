"""The config file: defaults, relative paths, and every problem with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from dirsync.config import (
    DEFAULT_DELETE_THRESHOLD,
    Threshold,
    check_config,
    load_config,
    parse_threshold,
)
from dirsync.errors import ConfigError, UsageError

MINIMAL = """
[directories.hub]
kind = "ldif"
path = "var/hub.ldif"

[directories.po1]
kind = "csv"
path = "po1.csv"

[[connections]]
name = "po1"
foreign = "po1"
hub = "hub"
mapping = "csv-gal"
import_container = "ou=PO1,dc=example,dc=org"
"""


def write(folder: Path, text: str) -> Path:
    (folder / "po1.csv").write_text("Alias\nx\n")
    path = folder / "dirsync.toml"
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.state == tmp_path / "var" / "state.sqlite"
    assert config.reports == tmp_path / "var" / "reports"
    assert config.directories["po1"].path == tmp_path / "po1.csv"
    assert config.directories["po1"].encoding == "utf-8-sig"
    connection = config.connections[0]
    assert connection.direction == "import"
    assert connection.recipients == "contact" and connection.lists == "contact"
    assert connection.delete_threshold == Threshold(count=DEFAULT_DELETE_THRESHOLD)
    assert connection.delete_threshold.limit(10_000) == 500
    assert connection.mapping_path.name == "csv-gal.toml"
    assert connection.export_containers == [] and connection.schedule is None


def test_everything_set(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "hub.pw").write_text("s3cret\n")
    (tmp_path / "my-mapping.toml").write_text("")
    text = """
state = "state/dirsync.db"
reports = "/srv/reports"

[directories.hub]
kind = "ldap"
url = "ldaps://ldap.example.org"
base = "dc=example,dc=org"
bind_dn = "cn=admin,dc=example,dc=org"
password_file = "secret/hub.pw"
tls_verify = false
page_size = 500
window = 16
timeout = 5

[directories.po1]
kind = "csv"
path = "po1.csv"
key = "Alias"
delimiter = ";"
encoding = "latin-1"
multi_value_separator = "|"
multi_valued = ["Members"]

[[connections]]
name = "msmail-po1"
foreign = "po1"
hub = "hub"
mapping = "my-mapping.toml"
import_container = "ou=MS Mail PO1,ou=Contacts,dc=example,dc=org"
export_containers = ["ou=People,dc=example,dc=org"]
direction = "both"
recipients = "disabled-user"
lists = "group"
delete_threshold = "10%"
schedule = "*/15 * * * *"
variables = { network = "CONTOSO" }
"""
    config = load_config(write(tmp_path, text))
    hub = config.directories["hub"]
    assert hub.password() == "s3cret" and hub.tls_verify is False
    assert (hub.page_size, hub.window, hub.timeout) == (500, 16, 5.0)
    assert config.state == tmp_path / "state" / "dirsync.db"
    assert config.reports == Path("/srv/reports")
    po1 = config.directories["po1"]
    assert (po1.delimiter, po1.encoding, po1.multi_valued) == (";", "latin-1", ["Members"])
    connection = config.connections[0]
    assert connection.mapping_path == tmp_path / "my-mapping.toml"
    assert connection.delete_threshold.limit(1000) == 100
    assert connection.variables == {"network": "CONTOSO"}
    assert [c.name for c in config.select(["msmail-po1"])] == ["msmail-po1"]
    with pytest.raises(UsageError, match="no connection named 'po2'"):
        config.select(["po2"])


def test_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL.replace('[directories.hub]\nkind = "ldif"\npath = "var/hub.ldif"',
                           '[directories.hub]\nkind = "ldap"\nurl = "ldap://localhost"\n'
                           'bind_dn = "cn=admin,dc=example,dc=org"\n'
                           'password_env = "HUB_PW"')
    config = load_config(write(tmp_path, text))
    monkeypatch.delenv("HUB_PW", raising=False)
    with pytest.raises(ConfigError, match="directories.hub.password_env: the environment "
                                          "variable HUB_PW is not set"):
        config.directories["hub"].password()
    monkeypatch.setenv("HUB_PW", "from-env")
    assert config.directories["hub"].password() == "from-env"


@pytest.mark.parametrize(("edit", "problem"), [
    (('kind = "csv"', 'kind = "excel"'), "directories.po1.kind: must be one of ldap, ldif, csv"),
    (('path = "po1.csv"', 'path = "nope.csv"'), "directories.po1.path: no such file: nope.csv"),
    (('path = "po1.csv"', 'path = "po1.csv"\npassword = "x"'),
     "directories.po1.password: secrets never go in the config file"),
    (('path = "po1.csv"', 'path = "po1.csv"\nbind_dn = "cn=x"'),
     "directories.po1.bind_dn: does not apply to a csv directory"),
    (('path = "po1.csv"', 'path = "po1.csv"\ndelimiter = ";;"'),
     "directories.po1.delimiter: must be one character"),
    (('path = "po1.csv"', 'path = "po1.csv"\nencoding = "klingon"'),
     "directories.po1.encoding: unknown encoding"),
    (('path = "po1.csv"', 'path = "po1.csv"\nmulti_valued = ["Members"]'),
     "directories.po1.multi_valued: needs a multi_value_separator"),
    (('name = "po1"', 'name = "po 1"'), "connections[0].name: a connection name may hold"),
    (('foreign = "po1"', 'foreign = "po2"'), "connections[0].foreign: no directory named 'po2'"),
    (('hub = "hub"', 'hub = "po1"'), "connections[0].hub: 'po1' is a csv directory"),
    (('mapping = "csv-gal"', 'mapping = "nosuch"'), "connections[0].mapping: 'nosuch' is neither"),
    (('import_container = "ou=PO1,dc=example,dc=org"', 'import_container = "not a dn"'),
     "connections[0].import_container: 'not a dn' is not a valid DN"),
    (('import_container = "ou=PO1,dc=example,dc=org"', ''),
     "connections[0].import_container: missing"),
    (('hub = "hub"', 'hub = "hub"\ndirection = "sideways"'),
     "connections[0].direction: must be one of import, export, both"),
    (('hub = "hub"', 'hub = "hub"\nrecipients = "robot"'),
     "connections[0].recipients: must be one of contact, disabled-user, enabled-user"),
    (('hub = "hub"', 'hub = "hub"\nlists = "maybe"'),
     "connections[0].lists: must be one of contact, group, skip"),
    (('hub = "hub"', 'hub = "hub"\ndelete_threshold = -1'),
     "connections[0].delete_threshold: must not be negative"),
    (('hub = "hub"', 'hub = "hub"\ndelete_threshold = "150%"'),
     "connections[0].delete_threshold: a percentage must be between 0% and 100%"),
    (('hub = "hub"', 'hub = "hub"\ndelete_threshold = true'),
     "connections[0].delete_threshold: must be an integer or a string"),
    (('hub = "hub"', 'hub = "hub"\nschedule = "61 * * * *"'),
     "connections[0].schedule: '61 * * * *'"),
    (('hub = "hub"', 'hub = "hub"\nschedule = "now and then"'),
     "connections[0].schedule: 'now and then' is neither a cron line"),
    (('hub = "hub"', 'hub = "hub"\nexport_containers = ["bad"]'),
     "connections[0].export_containers[0]: 'bad' is not a valid DN"),
    (('hub = "hub"', 'hub = "hub"\nfrobnicate = 1'), "connections[0].frobnicate: unknown key"),
    (('[directories.hub]', 'stat = "x"\n[directories.hub]'), "stat: unknown key"),
])
def test_one_problem(tmp_path: Path, edit: tuple[str, str], problem: str) -> None:
    text = MINIMAL.replace(*edit, 1)
    _config, problems = check_config(write(tmp_path, text))
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "dirsync.toml")
    assert problem in str(raised.value)


def test_every_problem_at_once(tmp_path: Path) -> None:
    text = (MINIMAL.replace('kind = "csv"', 'kind = "excel"')
            .replace('name = "po1"', 'name = "po 1"')
            .replace('hub = "hub"', 'hub = "hub"\nlists = "maybe"\ndelete_threshold = "x"'))
    _, problems = check_config(write(tmp_path, text))
    assert [p.split(":")[0] for p in problems] == [
        "directories.po1.kind", "connections[0].name", "connections[0].foreign",
        "connections[0].lists", "connections[0].delete_threshold"]


def test_an_ldap_hub_needs_its_import_container_under_its_base(tmp_path: Path) -> None:
    text = MINIMAL.replace('[directories.hub]\nkind = "ldif"\npath = "var/hub.ldif"',
                           '[directories.hub]\nkind = "ldap"\nurl = "ldap://localhost"\n'
                           'base = "dc=other,dc=org"')
    _, problems = check_config(write(tmp_path, text))
    assert problems == [("connections[0].import_container: 'ou=PO1,dc=example,dc=org' is not "
                        "under the hub's base 'dc=other,dc=org'")]


def test_not_toml_and_no_file(tmp_path: Path) -> None:
    _, problems = check_config(write(tmp_path, "[[connections]\n"))
    assert problems[0].startswith("not valid TOML")
    _, problems = check_config(tmp_path / "missing.toml")
    assert problems[0].startswith("no config file")


@pytest.mark.parametrize(("value", "limit_of_1000"), [
    (0, 0), (500, 500), ("20", 20), ("10%", 100), ("0.5%", 5), ("100%", 1000)])
def test_thresholds(value: int | str, limit_of_1000: int) -> None:
    assert parse_threshold(value).limit(1000) == limit_of_1000


@pytest.mark.parametrize("value", ["ten", "-5%", "101%", 1.5, None])
def test_bad_thresholds(value: object) -> None:
    with pytest.raises(ValueError):
        parse_threshold(value)
