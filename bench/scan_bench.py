"""Time forward plus backward of the selective scan: PyTorch token loops against the C operator.

Shapes are those of one training batch of 64 windows with L 31 tokens. cx
runs 64 sequences with di 52 and N 8. ci runs each of the 9 channels as its
own sequence, so 576 sequences with di 48 and N 16. One timed call is
the scan's forward pass plus the backward pass of a random upstream
gradient to all seven inputs, as in one direction of one layer of training.

Run from the repository root after `meson setup build && ninja -C build`:

    /usr/bin/python3 bench/scan_bench.py
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "training"))

import babymamba_model  # noqa: E402
import scan_op  # noqa: E402

# (name, sequences, L, d_inner, d_state)
SHAPES = [
    ("cx", 64, 31, 52, 8),
    ("ci", 64 * 9, 31, 48, 16),
]


def make_inputs(sequences, length, d_inner, d_state):
    """Return float32 inputs with the model's initial value ranges, as leaves that require grad."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sequences, length, d_inner, generator=generator)
    # 90% of the deltas fall between 0.0035 and 0.09, inside the model's initial step sizes of
    # 1e-3 to 1e-1. A is the model's initial -exp(A_log) = -(1..N) in every row.
    delta = F.softplus(torch.randn(sequences, length, d_inner, generator=generator) - 4.0)
    A = -torch.arange(1, d_state + 1, dtype=torch.float32).expand(d_inner, d_state).contiguous()
    B = torch.randn(sequences, length, d_state, generator=generator)
    C = torch.randn(sequences, length, d_state, generator=generator)
    D = torch.ones(d_inner)
    z = torch.randn(sequences, length, d_inner, generator=generator)
    return [tensor.requires_grad_() for tensor in (x, delta, A, B, C, D, z)]


def time_call(scan, inputs, grad_out):
    """Return the wall time in seconds of one forward plus backward call."""
    start = time.perf_counter()
    out = scan(*inputs)
    torch.autograd.grad(out, inputs, grad_out)
    return time.perf_counter() - start


def time_round_robin(implementations, inputs, repeats, warmup):
    """Return {name: [seconds, ...]} with one call of each implementation per round.

    Interleaving the implementations spreads changes in machine load evenly
    over them, which keeps their ratios meaningful on a shared machine.
    """
    grad_out = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(1))
    for _, scan in implementations:
        for _ in range(warmup):
            time_call(scan, inputs, grad_out)

    times = {name: [] for name, _ in implementations}
    for _ in range(repeats):
        for name, scan in implementations:
            times[name].append(time_call(scan, inputs, grad_out))
    return times


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed calls per implementation and shape (default 9)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each implementation before the timed ones (default 2)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="threads of the C operator (default: scan_op.default_num_threads())",
    )
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5, so that the median is meaningful")

    threads = args.threads if args.threads is not None else scan_op.default_num_threads()
    if threads < 1:
        parser.error("--threads must be at least 1")
    implementations = [
        ("reference token loop", scan_op.selective_scan_reference),
        ("model exact scan", babymamba_model.selective_scan_exact),
        ("C, 1 thread", lambda *inputs: scan_op.selective_scan_fast(*inputs, num_threads=1)),
    ]
    if threads > 1:
        implementations.append(
            (f"C, {threads} threads", lambda *inputs: scan_op.selective_scan_fast(*inputs, num_threads=threads))
        )

    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, "
          f"median (min) of {args.repeats} calls after {args.warmup} warm-up calls, forward + backward")
    print(f"load average (1, 5, 15 min) before: {load_average()}")
    header = f"{'shape':<28} {'implementation':<22} {'median ms':>10} {'min ms':>8} {'vs reference':>13}"
    print(header)
    print("-" * len(header))
    for name, sequences, length, d_inner, d_state in SHAPES:
        inputs = make_inputs(sequences, length, d_inner, d_state)
        label = f"{name}: {sequences}x{length}, di {d_inner}, N {d_state}"
        times = time_round_robin(implementations, inputs, args.repeats, args.warmup)
        reference_median = statistics.median(times[implementations[0][0]])
        for implementation, _ in implementations:
            median = statistics.median(times[implementation])
            minimum = min(times[implementation])
            ratio = reference_median / median
            print(f"{label:<28} {implementation:<22} {median * 1e3:>10.2f} {minimum * 1e3:>8.2f} {ratio:>12.1f}x")
    print(f"load average (1, 5, 15 min) after: {load_average()}")

if __name__ == "__main__":
    main()
