"""Summarise finished runs as Markdown tables and pick the seed to ship by validation score.

Reads RUNS_DIR/*/results.json (written by train.py), groups the runs by the
directory name without its -seedN suffix, and prints per-seed rows and
mean +- sample standard deviation per group. The seed to ship is the one with
the highest validation macro-F1, with the lower validation loss breaking a
tie; test scores play no part in that choice.

    /usr/bin/python3 training/experiments/summarize.py /tmp/runs --ship cx-e20=models/ucihar-cx.safetensors
"""

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import sys
from typing import Any, Dict, List, Optional, Set


def load_runs(runs_dir: str, seeds: Optional[Set[int]] = None) -> Dict[str, List[Dict[str, Any]]]:
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for path in sorted(glob.glob(os.path.join(runs_dir, "*", "results.json"))):
        run_dir = os.path.dirname(path)
        match = re.fullmatch(r"(.+)-seed(\d+)", os.path.basename(run_dir))
        if not match or (seeds is not None and int(match.group(2)) not in seeds):
            continue
        with open(path) as handle:
            results = json.load(handle)
        with open(os.path.join(run_dir, "history.jsonl")) as handle:
            history = [json.loads(line) for line in handle]
        results["run_dir"] = run_dir
        results["seconds_per_epoch"] = statistics.mean(record["seconds"] for record in history)
        groups.setdefault(match.group(1), []).append(results)
    for runs in groups.values():
        runs.sort(key=lambda results: results["training"]["seed"])
    return groups


def mean_std(values: List[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "-"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def shipped_run(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Return the run with the best validation macro-F1, the lower validation loss breaking a tie."""
    return max(runs, key=lambda results: (results["validation"]["macro_f1"], -results["validation"]["loss"]))


def print_tables(groups: Dict[str, List[Dict[str, Any]]]) -> None:
    print("| run | seed | epochs | val macro-F1 | val loss | test macro-F1 | test accuracy | wall time (min) | s/epoch | scan |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in groups.items():
        ship = shipped_run(runs)
        for results in runs:
            training = results["training"]
            marker = " (shipped)" if results is ship else ""
            print(
                f"| {name} | {training['seed']}{marker} | {training['epochs']} | "
                f"{results['validation']['macro_f1']:.2f} | {results['validation']['loss']:.4f} | "
                f"{results['test']['macro_f1']:.2f} | {results['test']['accuracy']:.2f} | "
                f"{training['wall_time_s'] / 60:.1f} | {results['seconds_per_epoch']:.1f} | {training['scan']} |"
            )
    print()
    print("| run | seeds | val macro-F1 | test macro-F1 | test accuracy | shipped seed (by validation) |")
    print("|---|---|---|---|---|---|")
    for name, runs in groups.items():
        ship = shipped_run(runs)
        print(
            f"| {name} | {len(runs)} | {mean_std([r['validation']['macro_f1'] for r in runs])} | "
            f"{mean_std([r['test']['macro_f1'] for r in runs])} | {mean_std([r['test']['accuracy'] for r in runs])} | "
            f"{ship['training']['seed']} (test macro-F1 {ship['test']['macro_f1']:.2f}, "
            f"accuracy {ship['test']['accuracy']:.2f}) |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="Summarise train.py runs and copy the seed to ship.")
    parser.add_argument("runs_dir", help="directory whose subdirectories NAME-seedN hold train.py runs")
    parser.add_argument(
        "--ship", action="append", default=[], metavar="GROUP=PATH",
        help="copy the model file of GROUP's seed with the best validation macro-F1 to PATH",
    )
    parser.add_argument(
        "--seeds", help="comma-separated seeds to include, for tables that compare groups on the same seeds"
    )
    args = parser.parse_args()

    seeds = {int(seed) for seed in args.seeds.split(",")} if args.seeds else None
    groups = load_runs(args.runs_dir, seeds)
    if not groups:
        print(f"error: no finished runs (NAME-seedN/results.json) in {args.runs_dir}", file=sys.stderr)
        return 1
    print_tables(groups)

    for request in args.ship:
        name, separator, path = request.partition("=")
        if not separator or name not in groups:
            print(f"error: --ship {request!r}: expected GROUP=PATH with GROUP one of {sorted(groups)}", file=sys.stderr)
            return 1
        ship = shipped_run(groups[name])
        shutil.copyfile(os.path.join(ship["run_dir"], "model.safetensors"), path)
        print(f"\ncopied {name} seed {ship['training']['seed']} to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
