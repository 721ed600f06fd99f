"""Train a BabyMamba-HAR model on a data file from `babymamba prepare` and export it.

Protocol: the test users (the standard UCI-HAR split) are never seen until
the end. The validation users are held out from the training users. By
default (--select last) the run follows a fixed cosine schedule of --epochs
epochs and keeps the final weights, and the validation users serve to choose
--epochs and to compare runs. --select val_loss or val_f1 instead keeps the
epoch with the best validation score and stops early after --patience epochs
without improvement. The kept model is evaluated on the test users once,
after training ends, and the result is written to results.json.

The run directory keeps checkpoint.pt, written atomically after every epoch,
so rerunning the same command after an interruption resumes after the last
finished epoch. The finished model is written as RUN_DIR/model.safetensors
and, with --export, also to that path.

Example:

    /usr/bin/python3 training/train.py --data hapt.safetensors --family cx \\
        --seed 0 --run-dir /tmp/runs/cx-seed0 --export models/ucihar-cx.safetensors
"""

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

import babymamba_model
from babymamba_export import make_input_spec, save_model
from babymamba_model import BabyMamba, BabyMambaConfig, count_parameters
from data import (
    TEST_USERS,
    VALIDATION_USERS,
    Dataset,
    DatasetError,
    Split,
    load_dataset,
    normalization_stats,
    split_by_user,
)

CHECKPOINT_NAME = "checkpoint.pt"
RESULTS_NAME = "results.json"
HISTORY_NAME = "history.jsonl"
MODEL_NAME = "model.safetensors"
CHECKPOINT_VERSION = 1

# Published configurations of the two families for UCI-HAR.
FAMILY_CONFIGS = {
    "cx": dict(family="cx", d_model=26, d_state=8, expand=2, dt_rank=2, n_layers=4, bidirectional=True, pooling="mean"),
    "ci": dict(family="ci", d_model=24, d_state=16, expand=2, dt_rank=2, n_layers=4, bidirectional=True, pooling="gated"),
}

# Settings that must match between a checkpoint and the command that resumes it.
RESUME_KEYS = (
    "family", "seed", "epochs", "batch_size", "lr", "weight_decay", "select", "patience",
    "validation_users", "test_users", "pooling", "bidirectional", "max_batches", "data_sha256",
    "decay", "label_smoothing", "schedule_epochs", "augment_rotation", "augment_scale", "augment_jitter",
)


def parse_users(text: str) -> List[int]:
    try:
        users = sorted({int(item) for item in text.replace(",", " ").split()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected user ids separated by commas or spaces, got {text!r}") from None
    if not users:
        raise argparse.ArgumentTypeError("the user list is empty")
    return users


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a BabyMamba-HAR model, compare epochs and runs on validation users, "
        "and evaluate on the test users once.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, help="data file written by `babymamba prepare`")
    parser.add_argument("--run-dir", required=True, help="directory for the checkpoint, history, results and model")
    parser.add_argument("--family", choices=sorted(FAMILY_CONFIGS), default="cx", help="published configuration to train")
    parser.add_argument("--pooling", choices=babymamba_model.POOLINGS, help="override the family's pooling (ablation)")
    parser.add_argument(
        "--forward-only", action="store_true", help="drop the reversed direction of every block (ablation)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the batch order")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs; the cosine schedule spans them")
    parser.add_argument(
        "--patience", type=int, default=10, help="stop after this many epochs without a better validation score"
    )
    parser.add_argument(
        "--select",
        choices=("last", "val_loss", "val_f1"),
        default="last",
        help="last: keep the final epoch of the fixed schedule; val_loss, val_f1: keep the epoch with the best "
        "validation score and stop early after --patience epochs without a better one",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="windows per training step")
    parser.add_argument("--lr", type=float, default=1.55e-3, help="peak AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.039, help="AdamW weight decay")
    parser.add_argument(
        "--decay",
        choices=("all", "matrices"),
        default="all",
        help="parameters that get weight decay: all, or only weight matrices (not norms, biases, A_log, D or "
        "the position embedding)",
    )
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy")
    parser.add_argument(
        "--schedule-epochs",
        type=int,
        default=0,
        help="length of the cosine schedule in epochs (0: --epochs); longer keeps the learning rate high",
    )
    parser.add_argument(
        "--augment-rotation",
        type=float,
        default=0.0,
        help="rotate each training window's sensor axes by up to this many degrees about a random axis",
    )
    parser.add_argument(
        "--augment-scale", type=float, default=0.0, help="scale each training window by 1 +- up to this fraction"
    )
    parser.add_argument(
        "--augment-jitter", type=float, default=0.0, help="add Gaussian noise of this std to the normalised inputs"
    )
    parser.add_argument(
        "--validation-users", type=parse_users, default=list(VALIDATION_USERS), help="users held out for validation"
    )
    parser.add_argument("--test-users", type=parse_users, default=list(TEST_USERS), help="users of the test set")
    parser.add_argument(
        "--scan",
        choices=("auto", "fast", "plain"),
        default="auto",
        help="selective scan: fast is the C scan of scan_op.py, plain the PyTorch loop; auto uses fast when its "
        "library loads and agrees with plain on a check input",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch and for the C scan")
    parser.add_argument("--max-batches", type=int, default=0, help="stop each epoch after this many steps (0: all)")
    parser.add_argument(
        "--no-test",
        action="store_true",
        help="do not evaluate on the test users at all (for runs that compare recipes on validation)",
    )
    parser.add_argument("--export", help="also write the finished model file to this path")
    parser.add_argument("--name", help="model name in the model file (default ucihar-FAMILY)")
    parser.add_argument("--version", default="1.0.0", help="model version in the model file")
    return parser


# ---------------------------------------------------------------------------
# Scan selection


def _scan_check_inputs(generator: torch.Generator) -> Tuple[torch.Tensor, ...]:
    def normal(*shape):
        return torch.randn(*shape, generator=generator)

    batch, tokens, d_inner, d_state = 3, 9, 6, 4
    return (
        normal(batch, tokens, d_inner),
        F.softplus(normal(batch, tokens, d_inner)),
        -torch.exp(0.5 * normal(d_inner, d_state)),
        normal(batch, tokens, d_state),
        normal(batch, tokens, d_state),
        normal(d_inner),
        normal(batch, tokens, d_inner),
    )


def _scan_outputs_and_grads(scan, inputs) -> List[torch.Tensor]:
    leaves = [tensor.clone().requires_grad_(True) for tensor in inputs]
    out = scan(*leaves, "exact", babymamba_model.DEFAULT_SCAN_CHUNK)
    weights = torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
    (out * weights).sum().backward()
    return [out.detach()] + [leaf.grad for leaf in leaves]


def select_scan(request: str) -> Dict[str, Any]:
    """Install the C scan when requested and usable; return a description of the scan in use.

    The C scan is used only after its forward pass and all seven gradients
    agree with the plain scan on a small random input, to 1e-4 of the largest
    magnitude of each tensor. Raises RuntimeError when --scan fast was
    requested and that is not possible.
    """
    if request == "plain":
        return {"name": "plain", "implementation": "babymamba_model.selective_scan (PyTorch token loop)"}

    try:
        import scan_op

        library = scan_op.load_library()
        plain_scan = babymamba_model.selective_scan
        inputs = _scan_check_inputs(torch.Generator().manual_seed(1234))
        expected = _scan_outputs_and_grads(plain_scan, inputs)
        scan_op.install_fast_scan(babymamba_model)
        actual = _scan_outputs_and_grads(babymamba_model.selective_scan, inputs)
        for index, (want, got) in enumerate(zip(expected, actual)):
            error = (want - got).abs().max().item()
            scale = max(want.abs().max().item(), 1e-6)
            if not error <= 1e-4 * scale:
                babymamba_model.selective_scan = plain_scan
                raise RuntimeError(f"the C scan differs from the plain scan in tensor {index}: max error {error:.3g}")
    except (ImportError, OSError, RuntimeError) as error:
        if request == "fast":
            raise RuntimeError(f"--scan fast: the C scan is not usable: {error}") from error
        print(f"scan: falling back to the plain scan because the C scan is not usable: {error}", flush=True)
        return {
            "name": "plain",
            "implementation": "babymamba_model.selective_scan (PyTorch token loop)",
            "fast_scan_unavailable": str(error),
        }

    return {
        "name": "fast",
        "implementation": "scan_op.selective_scan_fast (C forward and backward)",
        "library": os.path.abspath(library._name),
        "library_sha256": _file_sha256(library._name),
    }


def _file_sha256(path: str) -> str:
    from data import file_sha256

    return file_sha256(path)


# ---------------------------------------------------------------------------
# Metrics


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Return counts [true class, predicted class]."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_report(confusion: np.ndarray, classes: Sequence[str]) -> Dict[str, Any]:
    """Return accuracy, macro-F1 (in percent) and per-class precision, recall, F1 and support.

    A class that is never predicted has precision 0, and one with no windows
    has recall 0, so both pull the macro average down instead of being skipped.
    """
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    total = confusion.sum()
    return {
        "accuracy": 100.0 * float(true_positive.sum() / total) if total else 0.0,
        "macro_f1": 100.0 * float(f1.mean()),
        "classes": list(classes),
        "confusion_matrix": confusion.tolist(),
        "per_class": [
            {
                "class": name,
                "precision": 100.0 * float(precision[index]),
                "recall": 100.0 * float(recall[index]),
                "f1": 100.0 * float(f1[index]),
                "support": int(support[index]),
            }
            for index, name in enumerate(classes)
        ],
    }


@torch.no_grad()
def evaluate(model: BabyMamba, windows: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> Dict[str, Any]:
    """Return the mean cross-entropy and the classification report of `model` on normalised windows."""
    model.eval()
    losses, predictions = [], []
    for start in range(0, windows.shape[0], 256):
        logits = model(windows[start : start + 256])
        losses.append(F.cross_entropy(logits, labels[start : start + 256], reduction="sum").item())
        predictions.append(logits.argmax(dim=1))
    predicted = torch.cat(predictions).numpy()
    report = classification_report(confusion_matrix(labels.numpy(), predicted, len(classes)), classes)
    report["loss"] = float(sum(losses) / windows.shape[0])
    return report


# ---------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write the checkpoint to a temporary file and rename it, so a kill never leaves half a file."""
    temporary = f"{path}.tmp"
    torch.save(state, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_history(path: str, history: Sequence[Dict[str, Any]]) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        for record in history:
            handle.write(json.dumps(record) + "\n")
    os.replace(temporary, path)


def check_resume_settings(saved: Dict[str, Any], current: Dict[str, Any], path: str) -> None:
    changed = [key for key in RESUME_KEYS if saved.get(key) != current.get(key)]
    if changed:
        details = ", ".join(f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}" for key in changed)
        raise SystemExit(
            f"error: {path} was written with other settings ({details}); use another --run-dir or delete it"
        )


# ---------------------------------------------------------------------------
# Training


def model_config(args: argparse.Namespace, dataset: Dataset) -> BabyMambaConfig:
    values = dict(FAMILY_CONFIGS[args.family])
    if args.pooling:
        values["pooling"] = args.pooling
    if args.forward_only:
        values["bidirectional"] = False
    return BabyMambaConfig(
        **values,
        n_channels=len(dataset.metadata["channels"]),
        n_classes=len(dataset.classes),
        window_length=int(dataset.metadata["window_length"]),
    )


def parameter_groups(model: BabyMamba, args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Return AdamW parameter groups: weight decay on every parameter, or on weight matrices only.

    With --decay matrices, norms, biases, the position embedding, A_log and D
    get none. Decay would pull A_log towards 0, which gives every state the
    same decay rate. D and the norm gains are scales, not weights that need
    regularising, so shrinking them only distorts the model.
    """
    if args.decay == "all":
        return [{"params": list(model.parameters()), "weight_decay": args.weight_decay}]
    matrices, others = [], []
    for name, parameter in model.named_parameters():
        exempt = parameter.dim() < 2 or name.endswith("A_log") or name == "pos_embed"
        (others if exempt else matrices).append(parameter)
    return [{"params": matrices, "weight_decay": args.weight_decay}, {"params": others, "weight_decay": 0.0}]


def cosine_lr(peak: float, step: int, total_steps: int) -> float:
    """Learning rate at `step` of a cosine decay from `peak` to 0 over `total_steps`."""
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def format_progress(record: Dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {record['epoch']:3d}/{epochs}  train_loss {record['train_loss']:.4f}  "
        f"val_loss {record['val_loss']:.4f}  val_f1 {record['val_f1']:6.2f}  val_acc {record['val_accuracy']:6.2f}  "
        f"lr {record['lr']:.2e}  {record['seconds']:6.1f} s  total {record['wall_seconds'] / 60:6.1f} min"
        + ("  *" if record["improved"] else "")
    )


def is_better(select: str, score: float, best: Optional[float]) -> bool:
    if best is None or select == "last":
        return True
    return score < best if select == "val_loss" else score > best


def run_settings(args: argparse.Namespace, dataset: Dataset, split: Split, config: BabyMambaConfig) -> Dict[str, Any]:
    """Return the settings that a checkpoint records and a resumed run must repeat (RESUME_KEYS)."""
    return {
        "family": args.family,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "select": args.select,
        "patience": args.patience,
        "validation_users": split.validation_users,
        "test_users": split.test_users,
        "pooling": config.pooling,
        "bidirectional": config.bidirectional,
        "max_batches": args.max_batches,
        "data_sha256": dataset.sha256,
        "decay": args.decay,
        "label_smoothing": args.label_smoothing,
        "schedule_epochs": args.schedule_epochs or args.epochs,
        "augment_rotation": args.augment_rotation,
        "augment_scale": args.augment_scale,
        "augment_jitter": args.augment_jitter,
    }


def normalised_tensors(
    dataset: Dataset, indices: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (windows [n, L, C] as (x - mean) / std in float32, labels as int64) of the given windows."""
    windows = (dataset.windows[indices] - mean.astype(np.float32)) / std.astype(np.float32)
    labels = dataset.labels[indices].astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)), torch.from_numpy(labels)


def initial_state(settings: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "checkpoint_version": CHECKPOINT_VERSION,
        "settings": settings,
        "epoch": 0,
        "best_epoch": 0,
        "best_score": None,
        "best_model": None,
        "epochs_without_improvement": 0,
        "wall_seconds": 0.0,
        "finished": False,
        "stop_reason": None,
        "history": [],
        "scans": [],
    }


def restore_checkpoint(
    path: str, settings: Dict[str, Any], model: BabyMamba, optimizer: torch.optim.Optimizer, state: Dict[str, Any]
) -> None:
    """Load model, optimizer and progress from `path` into the arguments.

    Exits with a message when the checkpoint has another version or was
    written with other settings.
    """
    saved = torch.load(path)
    if saved.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise SystemExit(
            f"error: {path} has checkpoint version {saved.get('checkpoint_version')!r}, "
            f"expected {CHECKPOINT_VERSION}; use another --run-dir"
        )
    check_resume_settings(saved["settings"], settings, path)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    state.update({key: saved[key] for key in state if key in saved})
    print(
        f"resuming {path} after epoch {state['epoch']} ({state['wall_seconds'] / 60:.1f} min of training so far)",
        flush=True,
    )


def vector_triplets(channels: Sequence[Tuple[str, str]]) -> List[int]:
    """Return the first channel index of every NAME_x, NAME_y, NAME_z run of three channels.

    These are the 3-axis sensor vectors that a rotation of the device turns
    together.
    """
    names = [name for name, _ in channels]
    starts = []
    for index in range(len(names) - 2):
        prefix = names[index][:-2]
        if [names[index + k] for k in range(3)] == [f"{prefix}_{axis}" for axis in "xyz"]:
            starts.append(index)
    return starts


def random_rotations(count: int, max_degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Return `count` rotation matrices [count, 3, 3] about uniformly random axes by up to max_degrees."""
    axis = torch.randn(count, 3, generator=generator)
    axis = axis / axis.norm(dim=1, keepdim=True)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * math.radians(max_degrees)
    cross = torch.zeros(count, 3, 3)
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    cross = cross - cross.transpose(1, 2)
    sin, cos = angle.sin()[:, None, None], angle.cos()[:, None, None]
    # Rodrigues' formula.
    return torch.eye(3) + sin * cross + (1 - cos) * (cross @ cross)


@dataclass
class FitData:
    """The fit windows in physical units, their labels, and what a batch needs to become model input."""

    windows: torch.Tensor  # [n, L, C], not normalised, so rotations act on physical axes
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    triplets: List[int]


def training_batch(
    data: FitData, indices: torch.Tensor, args: argparse.Namespace, generator: torch.Generator
) -> torch.Tensor:
    """Return the normalised input of one training step, augmented as the --augment options request."""
    x = data.windows[indices]
    count = x.shape[0]
    if args.augment_rotation or args.augment_scale:
        transform = (
            random_rotations(count, args.augment_rotation, generator)
            if args.augment_rotation
            else torch.eye(3).expand(count, 3, 3)
        )
        if args.augment_scale:
            transform = transform * (1 + (torch.rand(count, 1, 1, generator=generator) * 2 - 1) * args.augment_scale)
        x = x.clone()
        for start in data.triplets:
            x[:, :, start : start + 3] = x[:, :, start : start + 3] @ transform.transpose(1, 2)
    x = (x - data.mean) / data.std
    if args.augment_jitter:
        x = x + args.augment_jitter * torch.randn(x.shape, generator=generator)
    return x


def train_epoch(
    model: BabyMamba,
    optimizer: torch.optim.Optimizer,
    data: FitData,
    args: argparse.Namespace,
    epoch: int,
    batches_per_epoch: int,
) -> float:
    """Run one epoch of AdamW steps on the cosine schedule and return the mean training loss.

    The batch order and the augmentation depend only on the seed and the
    epoch number, so a resumed run gets the same batches as an
    uninterrupted one.
    """
    total_steps = (args.schedule_epochs or args.epochs) * batches_per_epoch
    model.train()
    order = torch.randperm(data.windows.shape[0], generator=torch.Generator().manual_seed(args.seed * 100003 + epoch))
    augment = torch.Generator().manual_seed(args.seed * 100003 + epoch + 7919 * 100003)
    loss_sum, seen = 0.0, 0
    for batch_index in range(batches_per_epoch):
        step = (epoch - 1) * batches_per_epoch + batch_index
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(args.lr, step, total_steps)
        indices = order[batch_index * args.batch_size : (batch_index + 1) * args.batch_size]
        inputs = training_batch(data, indices, args, augment)
        loss = F.cross_entropy(model(inputs), data.labels[indices], label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(indices)
        seen += len(indices)
    return loss_sum / seen


def update_progress(
    state: Dict[str, Any], args: argparse.Namespace, model: BabyMamba, report: Dict[str, Any], epoch: int
) -> bool:
    """Record the validation report of `epoch` in `state`, keep the weights it selects, and decide on stopping.

    Returns whether the epoch became the kept one.
    """
    score = report["macro_f1"] if args.select == "val_f1" else report["loss"]
    improved = is_better(args.select, score, state["best_score"])
    if improved:
        state.update(
            best_score=score, best_epoch=epoch, epochs_without_improvement=0,
            best_model=copy.deepcopy(model.state_dict()),
        )
    else:
        state["epochs_without_improvement"] += 1

    state["epoch"] = epoch
    if state["epochs_without_improvement"] >= args.patience:
        state.update(finished=True, stop_reason=f"no better {args.select} for {args.patience} epochs")
    elif epoch == args.epochs:
        state.update(finished=True, stop_reason="reached --epochs")
    return improved


def input_spec_for(dataset: Dataset, mean: np.ndarray, std: np.ndarray) -> Dict[str, Any]:
    """Build the model file's `input` object from the data file's metadata and the normalisation."""
    sample_rate = float(dataset.metadata["sample_rate_hz"])
    return make_input_spec(
        dataset.channels,
        int(sample_rate) if sample_rate.is_integer() else sample_rate,
        int(dataset.metadata["window_length"]),
        int(dataset.metadata["hop"]),
        preprocessing=dataset.metadata["preprocessing"],
        mean=[float(value) for value in mean],
        std=[float(value) for value in std],
    )


def training_block(
    args: argparse.Namespace,
    state: Dict[str, Any],
    split: Split,
    dataset: Dataset,
    validation: Dict[str, Any],
    test: Optional[Dict[str, Any]],
) -> Dict[str, Any]:
    """Return the model file's `training` object: provenance of the run and its scores."""
    return {
        "seed": args.seed,
        "epochs": state["epoch"],
        "max_epochs": args.epochs,
        "selected_epoch": state["best_epoch"],
        "selection": "final epoch of the fixed schedule" if args.select == "last"
        else f"best {args.select} on the validation users",
        "stop_reason": state["stop_reason"],
        "validation_users": split.validation_users,
        "test_users": split.test_users,
        "fit_users": split.fit_users,
        "data_file_sha256": dataset.sha256,
        "data_preprocessing": dataset.metadata["preprocessing"],
        "optimizer": {
            "name": "AdamW", "lr": args.lr, "weight_decay": args.weight_decay,
            "schedule": f"cosine to 0 over {args.schedule_epochs or args.epochs} epochs, per step",
            "batch_size": args.batch_size, "decay": args.decay,
        },
        "loss": "cross-entropy" + (f", label smoothing {args.label_smoothing}" if args.label_smoothing else ""),
        "augmentation": {
            "rotation_degrees": args.augment_rotation, "scale": args.augment_scale, "jitter": args.augment_jitter,
        },
        # A run resumed with another scan lists both, in the order used.
        "scan": "+".join(state["scans"]),
        "threads": args.threads,
        "wall_time_s": round(state["wall_seconds"], 1),
        "validation": {"macro_f1": validation["macro_f1"], "accuracy": validation["accuracy"], "loss": validation["loss"]},
        "test": {"macro_f1": test["macro_f1"], "accuracy": test["accuracy"]} if test else None,
        "torch": torch.__version__,
    }


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Train, resume or finish the run in args.run_dir, evaluate it on the test users once, and export it."""
    torch.set_num_threads(args.threads)
    # scan_op sizes its thread pool from this variable. Without it the C scan
    # would use every CPU even when PyTorch uses one thread.
    os.environ.setdefault("BABYMAMBA_SCAN_THREADS", str(args.threads))
    os.makedirs(args.run_dir, exist_ok=True)
    checkpoint_path = os.path.join(args.run_dir, CHECKPOINT_NAME)
    history_path = os.path.join(args.run_dir, HISTORY_NAME)

    dataset = load_dataset(args.data)
    split = split_by_user(dataset, args.test_users, args.validation_users)
    classes = dataset.classes
    config = model_config(args, dataset)
    settings = run_settings(args, dataset, split, config)

    # The normalisation comes from the fit users only, so neither validation
    # nor test windows influence the inputs the model is trained on.
    mean, std = normalization_stats(dataset.windows[split.fit])
    fit = FitData(
        windows=torch.from_numpy(np.ascontiguousarray(dataset.windows[split.fit], dtype=np.float32)),
        labels=torch.from_numpy(dataset.labels[split.fit].astype(np.int64)),
        mean=torch.from_numpy(mean.astype(np.float32)),
        std=torch.from_numpy(std.astype(np.float32)),
        triplets=vector_triplets(dataset.channels),
    )
    if args.augment_rotation and not fit.triplets:
        raise DatasetError(
            f"{args.data}: --augment-rotation requires 3-axis channels named NAME_x, NAME_y, NAME_z, "
            "and the data file has none; remove the option"
        )
    val_x, val_y = normalised_tensors(dataset, split.validation, mean, std)

    torch.manual_seed(args.seed)
    model = BabyMamba(config)
    optimizer = torch.optim.AdamW(parameter_groups(model, args), lr=args.lr)
    batches_per_epoch = math.ceil(fit.windows.shape[0] / args.batch_size)
    if args.max_batches:
        batches_per_epoch = min(batches_per_epoch, args.max_batches)

    state = initial_state(settings)
    if os.path.exists(checkpoint_path):
        restore_checkpoint(checkpoint_path, settings, model, optimizer, state)

    scan = select_scan(args.scan)
    print(
        f"{config.family}: {count_parameters(model)} parameters, pooling {config.pooling}, "
        f"{'bidirectional' if config.bidirectional else 'forward-only'}, scan {scan['name']}, "
        f"{args.threads} thread(s)\n"
        f"fit users {split.fit_users} ({len(split.fit)} windows), validation users {split.validation_users} "
        f"({len(split.validation)} windows), test users held back until the end",
        flush=True,
    )

    while not state["finished"] and state["epoch"] < args.epochs:
        if scan["name"] not in state["scans"]:
            state["scans"].append(scan["name"])
        epoch = state["epoch"] + 1
        started = time.monotonic()
        train_loss = train_epoch(model, optimizer, fit, args, epoch, batches_per_epoch)
        report = evaluate(model, val_x, val_y, classes)
        improved = update_progress(state, args, model, report, epoch)
        seconds = time.monotonic() - started
        state["wall_seconds"] += seconds
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": report["loss"],
            "val_f1": report["macro_f1"],
            "val_accuracy": report["accuracy"],
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "wall_seconds": state["wall_seconds"],
            "improved": improved and args.select != "last",
        }
        state["history"].append(record)
        save_checkpoint(checkpoint_path, {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict()})
        # The history is rewritten from the checkpoint, so a kill between the
        # two writes never leaves an epoch missing or twice in the file.
        write_history(history_path, state["history"])
        print(format_progress(record, args.epochs), flush=True)

    print(f"stopped after epoch {state['epoch']}: {state['stop_reason']}; kept epoch {state['best_epoch']}", flush=True)
    model.load_state_dict(state["best_model"])
    validation = evaluate(model, val_x, val_y, classes)

    # The only evaluation on the test users. Runs that compare recipes skip
    # it, so that the person choosing a recipe sees no test score.
    test = None
    if args.no_test:
        print("test: not evaluated (--no-test)", flush=True)
    else:
        test_x, test_y = normalised_tensors(dataset, split.test, mean, std)
        test = evaluate(model, test_x, test_y, classes)
        print(
            f"test: macro-F1 {test['macro_f1']:.2f}, accuracy {test['accuracy']:.2f} "
            f"({len(split.test)} windows of users {split.test_users})",
            flush=True,
        )

    training_info = training_block(args, state, split, dataset, validation, test)
    results = {
        "settings": settings,
        "config": config.architecture(),
        "parameters": count_parameters(model),
        "training": training_info,
        "scan": scan,
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count()},
        "normalization": {"mean": mean.tolist(), "std": std.tolist()},
        "validation": validation,
        "test": test,
    }

    name = args.name or f"ucihar-{config.family}"
    input_spec = input_spec_for(dataset, mean, std)
    targets = [os.path.join(args.run_dir, MODEL_NAME)] + ([args.export] if args.export else [])
    for target in targets:
        save_model(target, model, classes, input_spec, name, args.version, training_info)
    with open(os.path.join(args.run_dir, RESULTS_NAME), "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {', '.join(targets)} and {os.path.join(args.run_dir, RESULTS_NAME)}", flush=True)
    return results


def recipe_problem(args: argparse.Namespace) -> Optional[str]:
    """Return a message naming the first recipe option outside its range, or None."""
    if not 0.0 <= args.label_smoothing < 1.0:
        return f"--label-smoothing must be in [0, 1), got {args.label_smoothing}"
    if args.schedule_epochs and args.schedule_epochs < args.epochs:
        return f"--schedule-epochs must be 0 or at least --epochs ({args.epochs}), got {args.schedule_epochs}"
    if args.schedule_epochs < 0:
        return f"--schedule-epochs must be 0 or positive, got {args.schedule_epochs}"
    if not 0.0 <= args.augment_rotation <= 180.0:
        return f"--augment-rotation must be in [0, 180] degrees, got {args.augment_rotation}"
    if not 0.0 <= args.augment_scale < 1.0:
        return f"--augment-scale must be in [0, 1), got {args.augment_scale}"
    if not args.augment_jitter >= 0.0:
        return f"--augment-jitter must be 0 or positive, got {args.augment_jitter}"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("epochs", "batch_size", "patience", "threads"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    problem = recipe_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        train(args)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
