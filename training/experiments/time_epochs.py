"""Measure training seconds per epoch for one family and one scan.

Runs --batches training steps (AdamW, batch 64, real windows from the data
file, after --warmup untimed steps) and extrapolates to a full epoch over the
fit users, so that slow configurations can be timed on a fraction of an
epoch. The validation pass is not included. Prints one JSON line.

    /usr/bin/python3 training/experiments/time_epochs.py --data hapt.safetensors \\
        --family ci --scan plain --batches 5
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import train  # noqa: E402
from babymamba_model import BabyMamba  # noqa: E402
from data import TEST_USERS, VALIDATION_USERS, load_dataset, normalization_stats, split_by_user  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="Time training steps and extrapolate to seconds per epoch.")
    parser.add_argument("--data", required=True, help="data file written by `babymamba prepare`")
    parser.add_argument("--family", choices=sorted(train.FAMILY_CONFIGS), default="cx")
    parser.add_argument("--scan", choices=("fast", "plain"), required=True)
    parser.add_argument("--batches", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing starts")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch and the C scan")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    os.environ.setdefault("BABYMAMBA_SCAN_THREADS", str(args.threads))
    scan = train.select_scan(args.scan)

    dataset = load_dataset(args.data)
    split = split_by_user(dataset, TEST_USERS, VALIDATION_USERS)
    mean, std = normalization_stats(dataset.windows[split.fit])
    windows = torch.from_numpy(((dataset.windows[split.fit] - mean) / std).astype(np.float32))
    labels = torch.from_numpy(dataset.labels[split.fit].astype(np.int64))

    parser_args = train.build_parser().parse_args(["--data", args.data, "--run-dir", "-", "--family", args.family])
    torch.manual_seed(0)
    model = BabyMamba(train.model_config(parser_args, dataset)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.55e-3, weight_decay=0.039)
    order = torch.randperm(windows.shape[0], generator=torch.Generator().manual_seed(0))

    def step(index: int) -> None:
        batch = order[(index * args.batch_size) % windows.shape[0] :][: args.batch_size]
        loss = F.cross_entropy(model(windows[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for index in range(args.warmup):
        step(index)
    started = time.monotonic()
    for index in range(args.batches):
        step(args.warmup + index)
    seconds_per_step = (time.monotonic() - started) / args.batches

    steps_per_epoch = math.ceil(windows.shape[0] / args.batch_size)
    print(json.dumps({
        "family": args.family,
        "scan": scan["name"],
        "threads": args.threads,
        "timed_steps": args.batches,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_step": round(seconds_per_step, 4),
        "seconds_per_epoch_estimate": round(seconds_per_step * steps_per_epoch, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
