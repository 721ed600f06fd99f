"""Compare the C engine with PyTorch on every window of a data file.

Runs `babymamba eval MODEL DATA --json --predictions` for the C engine's
classes and scores. Loads the same model file into PyTorch and classifies the
same windows there. Reports the share of windows on which the two give the
same class, and the difference between their macro-F1 scores. Exits with
status 1 when agreement is below --min-agreement or the macro-F1 difference
is above --max-f1-difference (by default the model card's bars: 99.9% and
0.05 points).

    /usr/bin/python3 training/experiments/check_agreement.py models/ucihar-cx.safetensors \
        hapt.safetensors --users 2,4,9,10,12,13,18,20,24
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))

from babymamba_export import load_model_with_metadata  # noqa: E402
from data import load_dataset  # noqa: E402
from train import classification_report, confusion_matrix  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir))
DEFAULT_CLI = os.path.join(os.environ.get("BABYMAMBA_BUILD_DIR", os.path.join(ROOT, "build")), "src", "cli", "babymamba")


def engine_predictions(cli, model_path, data_path, users):
    """Return (window indices, C engine classes, C engine report) from `babymamba eval`."""
    with tempfile.TemporaryDirectory(prefix="bm-agree-") as work:
        predictions_path = os.path.join(work, "predictions.csv")
        command = [cli, "eval", model_path, data_path, "--json", "--predictions", predictions_path]
        if users:
            command += ["--users", users]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        report = json.loads(done.stdout)
        indices, classes = [], []
        with open(predictions_path) as handle:
            for line in handle:
                fields = line.strip().split(",")
                if fields[0].isdigit():
                    indices.append(int(fields[0]))
                    classes.append(int(fields[3]))
    return np.array(indices, dtype=np.int64), np.array(classes, dtype=np.int64), report


def torch_predictions(model_path, windows):
    """Classify float32 windows [n, L, C] with the model file loaded into PyTorch."""
    model, metadata = load_model_with_metadata(model_path)
    model.eval()
    normalization = metadata["input"]["normalization"]
    mean = torch.tensor(normalization["mean"], dtype=torch.float32)
    std = torch.tensor(normalization["std"], dtype=torch.float32)
    classes = []
    with torch.no_grad():
        for start in range(0, len(windows), 512):
            batch = (torch.from_numpy(windows[start : start + 512]) - mean) / std
            classes.append(model(batch).argmax(dim=1))
    return torch.cat(classes).numpy() if classes else np.zeros(0, dtype=np.int64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model file")
    parser.add_argument("data", help="data file written by `babymamba prepare`")
    parser.add_argument("--users", help="comma-separated users to score, as for `babymamba eval --users`")
    parser.add_argument("--cli", default=DEFAULT_CLI, help="the babymamba program (default: %(default)s)")
    parser.add_argument("--min-agreement", type=float, default=99.9, help="lowest passing agreement in percent")
    parser.add_argument("--max-f1-difference", type=float, default=0.05, help="highest passing macro-F1 gap in points")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    dataset = load_dataset(args.data)
    indices, engine, engine_report = engine_predictions(args.cli, args.model, args.data, args.users)
    if indices.size == 0:
        print(f"error: no windows of {args.data} were scored; check --users", file=sys.stderr)
        return 1
    labels = dataset.labels[indices].astype(np.int64)
    torch_classes = torch_predictions(args.model, np.ascontiguousarray(dataset.windows[indices]))

    n_classes = len(dataset.classes)
    torch_report = classification_report(confusion_matrix(labels, torch_classes, n_classes), dataset.classes)
    same = int((engine == torch_classes).sum())
    result = {
        "model": args.model,
        "data": args.data,
        "users": args.users or "all",
        "windows": int(indices.size),
        "same_class": same,
        "agreement_percent": 100.0 * same / indices.size,
        # `babymamba eval` reports fractions; train.py's reports are in percent.
        "engine": {"macro_f1": 100.0 * engine_report["macro_f1"], "accuracy": 100.0 * engine_report["accuracy"]},
        "pytorch": {"macro_f1": torch_report["macro_f1"], "accuracy": torch_report["accuracy"]},
    }
    result["macro_f1_difference"] = abs(result["engine"]["macro_f1"] - result["pytorch"]["macro_f1"])
    passed = (
        result["agreement_percent"] >= args.min_agreement and result["macro_f1_difference"] <= args.max_f1_difference
    )
    result["passed"] = passed

    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{os.path.basename(args.model)}: {same} of {indices.size} windows have the same class "
            f"({result['agreement_percent']:.2f}%); macro-F1 C {result['engine']['macro_f1']:.2f}, "
            f"PyTorch {result['pytorch']['macro_f1']:.2f} (difference {result['macro_f1_difference']:.3f}); "
            + ("passed" if passed else f"FAILED (need >= {args.min_agreement}% and <= {args.max_f1_difference})")
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
