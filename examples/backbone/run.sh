#!/bin/sh
# The backbone scenario of seeds/003: two MS Mail post offices over two
# replicating LDAP sites. Starts two slapd servers, runs the syncs at each
# site, prints both post offices' address books, and exits 0 only when every
# check passed. Needs slapd (Debian: apt-get install slapd ldap-utils).
#
#   examples/backbone/run.sh [--work DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$here/driver.py" "$@"
