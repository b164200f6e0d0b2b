"""``dirsync check`` says each mapping problem once, and never with a traceback.

The [person] templates are read once for each person type (contact,
disabled-user, enabled-user, ...); a problem in one of them is still one
problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dirsync.cli.main import main
from dirsync.testing.sync import gal_rows, write_csv

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def setup(tmp_path: Path, title: str) -> Path:
    mapping = (MAPPINGS / "csv-gal.toml").read_text()
    assert 'title = "{{ Title }}"' in mapping
    (tmp_path / "m.toml").write_text(mapping.replace('title = "{{ Title }}"',
                                                     f'title = "{title}"'))
    hub = tmp_path / "hub.ldif"
    hub.write_text("dn: dc=example,dc=org\nobjectClass: domain\ndc: example\n")
    source = write_csv(tmp_path / "gal.csv", gal_rows(2))
    config = tmp_path / "dirsync.toml"
    config.write_text(f"""
[directories.hub]
kind = "ldif"
path = "{hub}"

[directories.foreign]
kind = "csv"
path = "{source}"
key = "Alias"

[[connections]]
name = "gal"
foreign = "foreign"
hub = "hub"
mapping = "m.toml"
import_container = "ou=Import,dc=example,dc=org"
""")
    return config


@pytest.mark.parametrize(("title", "problem"), [
    ("{{ Titel }}", ("person.attributes.title: unknown source attribute 'Titel' (the columns "
                     "of {csv} are: ")),
    ("{{ Title ", ("person.attributes.title: template syntax error: unexpected end of "
                   "template")),
    ("{{ Title | nosuchfilter }}", ("person.attributes.title: template syntax error: No "
                                    "filter named 'nosuchfilter'.")),
])
def test_a_mapping_problem_is_said_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        title: str, problem: str) -> None:
    config = setup(tmp_path, title)
    capsys.readouterr()
    assert main(["-c", str(config), "--json", "check"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert len(result["problems"]) == 1, result["problems"]
    line = (MAPPINGS / "csv-gal.toml").read_text().splitlines().index(
        'title = "{{ Title }}"') + 1
    assert result["problems"][0].startswith(
        f"{tmp_path / 'm.toml'}:{line}: " + problem.format(csv=tmp_path / "gal.csv"))
    capsys.readouterr()
    assert main(["-c", str(config), "check"]) == 2
    out = capsys.readouterr().out
    assert out.count("problem  ") == 1 and out.rstrip().endswith("1 problem")
