"""Score a training recipe by cross-validation over the training users.

The users of the data file minus the test users are split into K folds by a
fixed rule: in sorted order, user number i (counting from 0) goes to fold
i mod K. For each fold, train.py trains on the other folds' users with the
given recipe and validates on the fold's users, with --no-test, so the test
users are never evaluated. The folds' validation confusion matrices are then
added up, and the pooled macro-F1 and accuracy score the recipe. Every user
is held out once, so the score does not rest on a few validation users.

Arguments this script does not know are passed to train.py as they are, so a
recipe is written exactly as for a final run:

    /usr/bin/python3 training/experiments/cross_validate.py --data hapt.safetensors \\
        --runs-dir runs/cv --name cx-e15 -- --family cx --epochs 15

Each fold gets RUNS_DIR/NAME/fold-K/, and a rerun resumes unfinished folds.
The summary goes to RUNS_DIR/NAME/cv.json and to the last output line.
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))

import train  # noqa: E402
from data import TEST_USERS, DatasetError, load_dataset  # noqa: E402

# train.py options that this script sets itself for every fold.
RESERVED = ("--data", "--run-dir", "--validation-users", "--test-users", "--no-test", "--export", "--select")


def user_folds(users: Sequence[int], count: int) -> List[List[int]]:
    """Split users into `count` folds: user number i of the sorted list goes to fold i mod count."""
    ordered = sorted(users)
    return [[user for index, user in enumerate(ordered) if index % count == fold] for fold in range(count)]


def pooled_report(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Add up the folds' validation confusion matrices and return the report of the sum."""
    classes = results[0]["validation"]["classes"]
    confusion = sum(np.array(result["validation"]["confusion_matrix"], dtype=np.int64) for result in results)
    return train.classification_report(confusion, classes)


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score a train.py recipe by cross-validation over the training users; unknown "
        "arguments go to train.py.",
    )
    parser.add_argument("--data", required=True, help="data file written by `babymamba prepare`")
    parser.add_argument("--runs-dir", required=True, help="directory that gets one subdirectory per recipe")
    parser.add_argument("--name", required=True, help="name of the recipe, used for its subdirectory")
    parser.add_argument("--folds", type=int, default=3, help="number of folds")
    parser.add_argument(
        "--test-users", type=train.parse_users, default=list(TEST_USERS), help="users left out of every fold"
    )
    args, recipe = parser.parse_known_args(argv)
    if recipe and recipe[0] == "--":
        recipe = recipe[1:]
    reserved = [option for option in recipe if option.split("=")[0] in RESERVED]
    if reserved:
        print(
            f"error: {', '.join(reserved)} is set by this script for every fold; "
            "remove it from the train.py arguments",
            file=sys.stderr,
        )
        return 2

    try:
        dataset = load_dataset(args.data)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    training_users = sorted(set(int(user) for user in np.unique(dataset.users)) - set(args.test_users))
    if not 2 <= args.folds <= len(training_users):
        print(f"error: --folds must be between 2 and {len(training_users)} (the training users), "
              f"got {args.folds}", file=sys.stderr)
        return 2

    folds = user_folds(training_users, args.folds)
    results = []
    for index, users in enumerate(folds):
        run_dir = os.path.join(args.runs_dir, args.name, f"fold-{index}")
        print(f"=== {args.name} fold {index + 1}/{len(folds)}: validation users {users}", flush=True)
        status = train.main([
            "--data", args.data, "--run-dir", run_dir, "--select", "last", "--no-test",
            "--validation-users", ",".join(map(str, users)),
            "--test-users", ",".join(map(str, args.test_users)), *recipe,
        ])
        if status != 0:
            return status
        with open(os.path.join(run_dir, train.RESULTS_NAME)) as handle:
            results.append(json.load(handle))

    report = pooled_report(results)
    summary = {
        "name": args.name,
        "recipe": recipe,
        "folds": [
            {"validation_users": users, "macro_f1": result["validation"]["macro_f1"],
             "accuracy": result["validation"]["accuracy"], "loss": result["validation"]["loss"],
             "wall_time_s": result["training"]["wall_time_s"]}
            for users, result in zip(folds, results)
        ],
        "pooled": report,
    }
    with open(os.path.join(args.runs_dir, args.name, "cv.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    fold_scores = ", ".join(f"{fold['macro_f1']:.2f}" for fold in summary["folds"])
    print(
        f"{args.name}: pooled validation macro-F1 {report['macro_f1']:.2f}, accuracy {report['accuracy']:.2f} "
        f"(folds {fold_scores})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
