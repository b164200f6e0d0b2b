#!/bin/sh
# The long fuzz run (docs/operations.md, "Security"): every fuzz test of
# tests/test_fuzz.py with EXAMPLES inputs a command test (five times as many
# a reader test), then the figures: inputs, runs by exit status, tracebacks,
# hangs over 20 s, and changes made by runs that exited 2.
#
#   benchmarks/fuzz.sh [EXAMPLES]      (default 1500: about ten minutes on a busy machine)
set -eu
cd "$(dirname "$0")/.."
figures=$(mktemp)
rm -f "$figures"
start=$(date +%s)
status=0
DIRSYNC_FUZZ_EXAMPLES="${1:-1500}" DIRSYNC_FUZZ_FIGURES="$figures" \
    .venv/bin/python -m pytest tests/test_fuzz.py -q -p no:cacheprovider \
    --hypothesis-show-statistics || status=$?
echo "wall time: $(( $(date +%s) - start )) s"
cat "$figures"
rm -f "$figures"
exit $status
