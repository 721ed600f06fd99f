#!/bin/sh
# Train one variant for several seeds, one after another, with the settings
# that docs/training.md reports. Each seed gets RUNS/VARIANT-seedS/, and a
# rerun resumes any seed that did not finish.
#
# Usage: run_seeds.sh DATA_FILE RUNS_DIR VARIANT SEED...
#   VARIANT: cx, ci (the published configurations), cx-forward (cx without
#   the reversed direction) or cx-gated (cx with gated attention pooling).
# Set BABYMAMBA_SCAN_LIB when the scan library is not in build/src/lib.
set -eu

if [ "$#" -lt 4 ]; then
    echo "usage: $0 DATA_FILE RUNS_DIR VARIANT SEED..." >&2
    exit 2
fi
data=$1
runs=$2
variant=$3
shift 3

here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-/usr/bin/python3}

# Epoch budgets: the cosine schedule spans them, and early stopping on the
# validation loss may end a run sooner. CI costs about 9 times as much per
# epoch as CX on the same CPU, which sets its smaller budget.
case "$variant" in
    cx) options="--family cx --epochs 25" ;;
    ci) options="--family ci --epochs 10" ;;
    cx-forward) options="--family cx --forward-only --epochs 25" ;;
    cx-gated) options="--family cx --pooling gated --epochs 25" ;;
    *)
        echo "error: unknown variant '$variant'; expected cx, ci, cx-forward or cx-gated" >&2
        exit 2
        ;;
esac

mkdir -p "$runs"
for seed in "$@"; do
    run_dir="$runs/$variant-seed$seed"
    echo "=== $variant seed $seed -> $run_dir ($(date -u +%H:%M:%S))"
    # shellcheck disable=SC2086 # options is a list of words on purpose
    "$python" "$here/../train.py" --data "$data" --run-dir "$run_dir" --seed "$seed" \
        --name "ucihar-$variant" $options
done
echo "=== $variant done ($(date -u +%H:%M:%S))"
