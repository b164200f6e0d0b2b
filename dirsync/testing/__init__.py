"""Test support shipped with the package: a real slapd on loopback."""
