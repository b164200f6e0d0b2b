#!/bin/sh
# dirsync diff --format html on the generated pair of benchmarks/diff.sh
# (1,000,000 entries each by default): time, peak memory and size of the
# page, and how long headless Chromium takes to open it. Prints a result
# block for benchmarks/RESULTS.md. Options: benchmarks/diff_html.sh --help
set -eu
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
exec "$PY" benchmarks/diff_html_bench.py "$@"
