"""The one compiled part: dirsync._ldifstream (see its source for why).

Everything else is configured in pyproject.toml. The extension links
against libldap, which python-ldap needs anyway; it is optional, so a
machine without the headers still installs dirsync and exports through
the pure-Python path.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dirsync._ldifstream", ["dirsync/_ldifstream.c"],
                             libraries=["ldap", "lber"], optional=True)])
