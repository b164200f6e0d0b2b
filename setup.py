"""What pyproject.toml cannot say: the compiled part and the shipped files.

- dirsync.ldif._ldifstream (see its source for why) links against libldap,
  which python-ldap needs anyway. It is optional: a machine without the
  headers still installs dirsync and exports through the Python writer.
- The ready mappings and the OpenLDAP schema live at the top of the
  repository; a built package carries a copy in dirsync/bundled/ (found by
  dirsync.bundled). An editable install reads the repository's own.
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SHIPPED = ("mappings", "schemas")


class BuildWithShippedFiles(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        root = Path(__file__).resolve().parent
        for name in SHIPPED:
            target = Path(self.build_lib) / "dirsync" / "bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(root / name, target)


setup(
    ext_modules=[Extension("dirsync.ldif._ldifstream", ["dirsync/ldif/_ldifstream.c"],
                           libraries=["ldap", "lber"], optional=True)],
    cmdclass={"build_py": BuildWithShippedFiles},
)
