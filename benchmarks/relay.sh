#!/usr/bin/env bash
# The relay benchmark, as recorded in benchmarks/RESULTS.md ("## Relay").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$root/.venv/bin/python" "$root/benchmarks/relay_bench.py" "$@"
