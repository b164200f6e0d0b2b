#!/usr/bin/env bash
# The whole test suite, against a real slapd the tests start themselves.
# Installs what it needs first (see bootstrap.sh). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIRSYNC_TEST_TOOLS=1 source "$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
