#!/bin/sh
# The README's main command: scripts/demo.sh must serve the shipped model, replay the shipped
# recording and end with the live stream's score, with nothing on stderr that looks like a crash.
set -u
root=${BM_SOURCE_ROOT:?BM_SOURCE_ROOT must name the source tree}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if ! "$root/scripts/demo.sh" --speed 0 > "$out" 2>&1; then
  cat "$out"
  echo "FAIL demo.sh exited with an error"
  exit 1
fi
status=0
grep -q '^babymambad serving ucihar-cx ' "$out" || { echo "FAIL no serving banner"; status=1; }
grep -q '^windows: 257 expected, .* 0 missing' "$out" || { echo "FAIL windows missing"; status=1; }
grep -q '^macro-F1: ' "$out" || { echo "FAIL no closing score"; status=1; }
if grep -q 'Traceback\|ERROR\|error:' "$out"; then echo "FAIL error text in the output"; status=1; fi
[ "$status" -eq 0 ] || cat "$out"
exit "$status"
