"""dirsync: keep an LDAP hub and foreign address books in step."""

__version__ = "0.1.0"
