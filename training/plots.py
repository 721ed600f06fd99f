"""Render a confusion matrix and per-class F1 as PNG images from an evaluation JSON file.

Two inputs are accepted:

- the output of `babymamba eval MODEL DATAFILE --json`: "classes" is a list
  of objects with "name" and "f1", "confusion" is the K x K count matrix
  (rows the true class, columns the predicted class), and "macro_f1" and
  "accuracy" are fractions from 0 to 1;
- the results.json that train.py writes, whose "test" object has "classes"
  (names), "confusion_matrix" (as above), optional "per_class" objects with
  "class" and "f1", and "macro_f1" and "accuracy", all in percent. A document
  with "confusion_matrix" at the top level is read the same way.

Example:

    babymamba eval models/ucihar-cx.safetensors hapt.safetensors --json \
        --users 2,4,9,10,12,13,18,20,24 > eval.json
    /usr/bin/python3 training/plots.py eval.json --out-dir docs/figures --prefix ucihar-cx
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


class EvaluationFileError(ValueError):
    """Raised when the evaluation JSON lacks a key or has inconsistent sizes."""


def select_report(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the object with the confusion matrix: the document itself or its "test" object."""
    if "confusion" in document or "confusion_matrix" in document:
        return document
    test = document.get("test")
    if isinstance(test, dict) and "confusion_matrix" in test:
        return test
    raise EvaluationFileError('no "confusion" or "confusion_matrix" at the top level or in a "test" object')


def f1_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Return per-class F1 in percent. A class never predicted or without windows gets 0."""
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    total = precision + recall
    return 100.0 * np.divide(2 * precision * recall, total, out=np.zeros_like(true_positive), where=total > 0)


def parse_report(report: Mapping[str, Any]) -> Dict[str, Any]:
    """Check the keys and sizes of a report and return its classes, confusion matrix and scores in percent."""
    from_eval = "confusion" in report
    scale = 100.0 if from_eval else 1.0
    entries = report.get("classes")
    if not isinstance(entries, list) or not entries:
        raise EvaluationFileError('"classes" must be a non-empty list')
    if from_eval:
        if not all(isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in entries):
            raise EvaluationFileError('"classes" must be a list of objects with a "name"')
        classes = [entry["name"] for entry in entries]
        per_class = [{"class": entry["name"], "f1": entry.get("f1")} for entry in entries]
    else:
        if not all(isinstance(name, str) for name in entries):
            raise EvaluationFileError('"classes" must be a list of class names')
        classes = list(entries)
        per_class = report.get("per_class")

    confusion = np.asarray(report["confusion" if from_eval else "confusion_matrix"])
    if confusion.shape != (len(classes), len(classes)) or not np.issubdtype(confusion.dtype, np.number):
        raise EvaluationFileError(
            f"the confusion matrix must be {len(classes)} x {len(classes)} numbers, got shape {list(confusion.shape)}"
        )

    if per_class is None:
        f1 = f1_from_confusion(confusion)
    else:
        by_name = {entry.get("class"): entry.get("f1") for entry in per_class if isinstance(entry, dict)}
        missing = [name for name in classes if not isinstance(by_name.get(name), (int, float))]
        if missing:
            raise EvaluationFileError(f"no numeric F1 for class(es) {missing}")
        f1 = scale * np.array([by_name[name] for name in classes], dtype=np.float64)

    scores = {}
    for key in ("macro_f1", "accuracy"):
        value = report.get(key)
        scores[key] = scale * value if isinstance(value, (int, float)) else None
    return {"classes": classes, "confusion": confusion, "f1": f1, **scores}


def plot_confusion(classes: Sequence[str], confusion: np.ndarray, title: str, path: str) -> None:
    """Draw row-normalised colours (recall) with the raw counts written in each cell."""
    rows = confusion.sum(axis=1, keepdims=True)
    fractions = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)

    figure, axes = plt.subplots(figsize=(6.4, 5.6), dpi=120)
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xticks(range(len(classes)), labels=classes, rotation=40, ha="right")
    axes.set_yticks(range(len(classes)), labels=classes)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    for row in range(len(classes)):
        for column in range(len(classes)):
            colour = "white" if fractions[row, column] > 0.5 else "black"
            axes.text(column, row, str(int(confusion[row, column])), ha="center", va="center", color=colour, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)


def plot_f1(classes: Sequence[str], f1: np.ndarray, title: str, path: str) -> None:
    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    bars = axes.barh(range(len(classes)), f1, color="#3a78b5")
    axes.set_yticks(range(len(classes)), labels=classes)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("F1 (%)")
    axes.set_title(title)
    for bar, value in zip(bars, f1):
        axes.text(min(value, 100) - 1, bar.get_y() + bar.get_height() / 2, f"{value:.1f}", ha="right", va="center",
                  color="white", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Render a confusion matrix and per-class F1 as PNG images.")
    parser.add_argument("evaluation", help="JSON from `babymamba eval --json` or train.py's results.json")
    parser.add_argument("--out-dir", default="docs/figures", help="directory for the PNG files")
    parser.add_argument("--prefix", default="model", help="file name prefix: PREFIX-confusion.png, PREFIX-f1.png")
    parser.add_argument("--title", help="title prefix (default: the prefix)")
    args = parser.parse_args(argv)

    try:
        with open(args.evaluation) as handle:
            document = json.load(handle)
        report = parse_report(select_report(document))
    except OSError as error:
        print(f"error: cannot read {args.evaluation}: {error.strerror}", file=sys.stderr)
        return 1
    except (json.JSONDecodeError, EvaluationFileError, KeyError) as error:
        print(f"error: {args.evaluation}: {error}", file=sys.stderr)
        return 1

    title = args.title or args.prefix
    scores = []
    if isinstance(report["macro_f1"], (int, float)):
        scores.append(f"macro-F1 {report['macro_f1']:.1f}")
    if isinstance(report["accuracy"], (int, float)):
        scores.append(f"accuracy {report['accuracy']:.1f}")
    suffix = f" ({', '.join(scores)})" if scores else ""

    os.makedirs(args.out_dir, exist_ok=True)
    confusion_path = os.path.join(args.out_dir, f"{args.prefix}-confusion.png")
    f1_path = os.path.join(args.out_dir, f"{args.prefix}-f1.png")
    plot_confusion(report["classes"], report["confusion"], f"{title}{suffix}", confusion_path)
    plot_f1(report["classes"], report["f1"], f"{title}: F1 per class", f1_path)
    print(f"wrote {confusion_path} and {f1_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
