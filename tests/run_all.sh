#!/usr/bin/env bash
# The project's test command: builds into build/ and build-sanitize/ (AddressSanitizer and
# UndefinedBehaviorSanitizer), runs every meson suite in both, runs the Python tests, and
# prints one closing line "N passed, N failed" over all of them. Exits non-zero on any failure.
#
# Daemon tests start their own mosquitto brokers on free loopback ports; mosquitto must be
# installed (see README).
set -uo pipefail
cd "$(dirname "$0")/.."

python=/usr/bin/python3
passed=0
failed=0

# Adds the results of one meson test log to the totals.
count_meson() {
  local log=$1
  local counts
  counts=$($python - "$log" <<'PY'
import json, sys
ok = bad = 0
with open(sys.argv[1]) as f:
    for line in f:
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL", "SKIP"):
            ok += 1
        else:
            bad += 1
print(ok, bad)
PY
)
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
}

run_meson() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" || { failed=$((failed + 1)); return; }
  fi
  ninja -C "$dir" || { echo "build failed in $dir"; failed=$((failed + 1)); return; }
  meson test -C "$dir" --print-errorlogs --num-processes 2
  count_meson "$dir/meson-logs/testlog.json"
}

echo "== build and unit, CLI and daemon tests"
run_meson build

echo "== the same under AddressSanitizer and UndefinedBehaviorSanitizer"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_meson build-sanitize -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

echo "== Python tests (training tools)"
export BABYMAMBA_BUILD_DIR="$PWD/build"
python_log=$(mktemp)
$python -m unittest discover -s training/tests -v 2>&1 | tee "$python_log"
ran=$(grep -Eo '^Ran [0-9]+ tests?' "$python_log" | grep -Eo '[0-9]+' || echo 0)
python_failed=$(grep -Eo '(failures|errors)=[0-9]+' "$python_log" | awk -F= '{ s += $2 } END { print s + 0 }')
[ -n "$python_failed" ] || python_failed=0
if [ "$ran" -eq 0 ]; then
  python_failed=1
fi
passed=$((passed + ran - python_failed))
failed=$((failed + python_failed))
rm -f "$python_log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
