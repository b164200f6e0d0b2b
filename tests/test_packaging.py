"""A built wheel is complete: the compiled reader, the ready mappings and
the OpenLDAP schema, found from where the wheel puts them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_carries_the_extension_mappings_and_schema(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("dirsync-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for mapping in (ROOT / "mappings").glob("*.toml"):
        assert f"dirsync/bundled/mappings/{mapping.name}" in names
    assert "dirsync/bundled/schemas/dirsync.schema" in names
    assert "dirsync/bundled/schemas/dirsync.ldif" in names
    assert any(n.startswith("dirsync/ldif/_ldifstream") and n.endswith(".so") for n in names)
    # Imported from the unpacked wheel (not this source tree), dirsync finds
    # its mappings inside the package.
    site = tmp_path / "site"
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import dirsync.config as c, dirsync.ldif._ldifstream as x\n"
            "print(c.__file__); print(c.BUNDLED_MAPPINGS); print(x.__file__)\n"
            "print(','.join(c.bundled_mappings()))")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith(str(site))
    assert out[1] == str(site / "dirsync" / "bundled" / "mappings")
    assert out[2].startswith(str(site))
    assert out[3].split(",") == sorted(p.stem for p in (ROOT / "mappings").glob("*.toml"))
