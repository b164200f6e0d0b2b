"""Test support shipped with the package: a real slapd on loopback.

The top floor: it may import any other floor, and only tests and
benchmarks import it."""
