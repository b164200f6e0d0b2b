#!/bin/sh
# dirsync diff against ldifsort.pl + ldifdiff.pl (Debian: libnet-ldap-perl) on
# two generated LDIF files of 1,000,000 entries each (and 100,000 for the
# perl tools too). Wall time and peak memory per tool; add --record to write
# the results into benchmarks/RESULTS.md. Options: benchmarks/diff.sh --help
set -eu
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
exec "$PY" benchmarks/diff_bench.py "$@"
