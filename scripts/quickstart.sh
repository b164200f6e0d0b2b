#!/usr/bin/env bash
# The quick start: a real sync of a bundled foreign address book (a CSV
# export of a global address list) into a hub that is a plain LDIF file, so
# no server is needed. Installs what it needs first (see bootstrap.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"

example="$root/examples/quickstart"
dirsync() { "$root/.venv/bin/dirsync" -c "$example/dirsync.toml" "$@"; }

# Start from nothing: a fresh hub, state and reports, and the foreign
# export as the post office wrote it.
rm -rf "$example/var"
mkdir -p "$example/var"
cp "$root/fixtures/gal.csv" "$example/var/po1.csv"

echo "== dirsync check: config, mapping, directories"
dirsync check
echo
echo "== dirsync sync: the first run adds every recipient to the hub"
dirsync sync
echo
echo "== dirsync sync again: nothing changed, nothing to do"
dirsync sync
echo
echo "== dirsync status"
dirsync status
echo
echo "The hub is examples/quickstart/var/hub.ldif; every run's report is in"
echo "examples/quickstart/var/reports/. To see a modify, a rename and a delete:"
echo "  cp fixtures/gal-edited.csv examples/quickstart/var/po1.csv"
echo "  .venv/bin/dirsync -c examples/quickstart/dirsync.toml sync"
