#!/usr/bin/env bash
# Engine benchmark: runs `babymamba bench` REPEATS times on each model and prints the median of
# the per-run medians, p99s and throughputs, plus callgrind's instruction count per window,
# which does not depend on what else the machine is doing.
#
# usage: bench/engine_bench.sh [BUILD_DIR] [REPEATS] [MODEL...]
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
repeats=${2:-5}
shift $(($# > 2 ? 2 : $#))
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=(tests/golden/cx_published.safetensors tests/golden/ci_published.safetensors)
fi
cli="$build/src/cli/babymamba"
python=/usr/bin/python3

for model in "${models[@]}"; do
  windows=2000
  case "$model" in *ci*) windows=200 ;; esac
  runs=()
  for _ in $(seq "$repeats"); do
    runs+=("$("$cli" bench "$model" --windows "$windows" --warmup 50 --threads 2 --json)")
  done

  # Instructions per window: the difference between two callgrind runs of different lengths
  # removes the cost of loading the model and starting the process.
  instructions_per_window=n/a
  if command -v valgrind >/dev/null 2>&1; then
    count() {
      valgrind --tool=callgrind --callgrind-out-file=/dev/null "$cli" bench "$model" \
        --windows "$1" --warmup 0 --threads 1 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    }
    short=$(count 5)
    long=$(count 25)
    instructions_per_window=$(( (long - short) / 40 ))
  fi

  printf '%s\n' "${runs[@]}" | $python -c "
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin]
def median(run, key):
    return statistics.median(r[run][key] for r in runs)
print(f'model {sys.argv[1]}: {len(runs)} runs, median of each figure')
print(f'  1 thread   median {median(\"single\", \"median_us\"):8.1f} us  p99 {median(\"single\", \"p99_us\"):8.1f} us  {median(\"single\", \"windows_per_second\"):8.1f} windows/s')
print(f'  2 threads  median {median(\"parallel\", \"median_us\"):8.1f} us  p99 {median(\"parallel\", \"p99_us\"):8.1f} us  {median(\"parallel\", \"windows_per_second\"):8.1f} windows/s')
print(f'  instructions per window (callgrind): {sys.argv[2]}')
" "$model" "$instructions_per_window"
done
