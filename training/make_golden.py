"""Write the golden vectors that the C test suite compares the engine with.

For every variant this writes tests/golden/NAME.safetensors, a small randomly
initialised model, and tests/golden/NAME.io.safetensors with three tensors:
`input` (F32 [B, L, C]), `logits_f32` (F32 [B, K], the model in float32) and
`logits_f64` (F64 [B, K], the same weights in float64 applied to the float32
input cast to float64). tests/golden/manifest.json lists every variant with
its parameter count and shape.

The output depends only on the seeds below, so running the script twice
writes identical files.
"""

import argparse
import copy
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from babymamba_export import FORMAT_VERSION, make_input_spec, save_model
from babymamba_model import BabyMamba, BabyMambaConfig, count_parameters
from safetensors_io import write_safetensors

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "golden")
BASE_SEED = 20260209
EXTREME_INPUT = 1e4
# Smallest logit change, against the exact scan, that counts as the clamps
# biting in a "clamps" variant; rounding alone changes logits by about 1e-6.
MIN_CLAMP_EFFECT = 1e-2


@dataclass
class Variant:
    """One golden model: its config, batch size and how it is randomised."""

    name: str
    config: BabyMambaConfig
    batch: int
    description: str
    # "clamps" draws large A_log and dt_proj.bias so decays fall below 1e-6 and
    # the running log decay passes -20 inside a chunk.
    weights: str = "normal"
    # "extreme" sets many inputs to +-1e4.
    inputs: str = "normal"


def golden_variants() -> List[Variant]:
    """Return the variants in a fixed order; each one's seed is BASE_SEED plus its index."""
    published_cx = BabyMambaConfig(
        family="cx", d_model=26, d_state=8, expand=2, dt_rank=2, d_conv=4, n_layers=4,
        pooling="mean", n_channels=9, n_classes=6, window_length=128,
    )
    published_ci = BabyMambaConfig(
        family="ci", d_model=24, d_state=16, expand=2, dt_rank=2, d_conv=4, n_layers=4,
        pooling="gated", n_channels=9, n_classes=6, window_length=128,
    )
    small = BabyMambaConfig(d_model=8, d_state=4, expand=2, dt_rank=1, d_conv=4, n_layers=2)

    return [
        Variant("cx_published", published_cx, 3, "published CX size: d=26 N=8 expand 2 R=2, 4 layers"),
        Variant("ci_published", published_ci, 3, "published CI size: d=24 N=16 expand 2 R=2, 4 layers, gated"),
        Variant(
            "cx_c1_fwd_mean",
            small.replace(family="cx", bidirectional=False, pooling="mean", n_channels=1, n_classes=2,
                          window_length=64),
            4,
            "one channel, forward-only",
        ),
        Variant(
            "cx_c3_fwd_gated",
            small.replace(family="cx", d_model=10, d_state=6, expand=1, dt_rank=2, d_conv=3, n_layers=3,
                          bidirectional=False, pooling="gated", stem_kernel=3, n_channels=3, n_classes=4,
                          window_length=64),
            4,
            "expand 1, d_conv 3, stem kernel 3, forward-only, gated",
        ),
        Variant(
            "ci_c3_bidir_mean",
            small.replace(family="ci", pooling="mean", n_channels=3, n_classes=3, window_length=64),
            3,
            "channel-independent, bidirectional, mean",
        ),
        Variant(
            "ci_c6_fwd_gated",
            small.replace(family="ci", d_model=12, d_state=5, expand=3, dt_rank=3, n_layers=1,
                          bidirectional=False, pooling="gated", stem_kernel=7, n_channels=6, n_classes=5),
            3,
            "channel-independent, expand 3, stem kernel 7, one layer, forward-only, gated",
        ),
        Variant(
            "cx_c11_bidir_gated_chunked",
            small.replace(family="cx", d_model=12, n_layers=2, pooling="gated", scan="chunked_clamped",
                          n_channels=11, n_classes=12),
            3,
            "chunked_clamped with the default chunk of 32 tokens (P=31, one chunk)",
        ),
        Variant(
            "cx_c6_clamped_chunk8",
            small.replace(family="cx", d_model=12, d_state=6, n_layers=2, scan="chunked_clamped",
                          scan_chunk=8, n_channels=6, n_classes=7),
            4,
            "chunked_clamped, chunk 8 (P=31: chunks of 8, 8, 8, 7), weights chosen so the clamps bite",
            weights="clamps",
        ),
        Variant(
            "ci_c11_fwd_clamped_chunk8",
            small.replace(family="ci", bidirectional=False, scan="chunked_clamped", scan_chunk=8,
                          n_channels=11, n_classes=8, window_length=64),
            3,
            "channel-independent chunked_clamped, chunk 8 (P=15), weights chosen so the clamps bite",
            weights="clamps",
        ),
        Variant(
            "cx_c9_extreme_input",
            small.replace(family="cx", d_model=16, d_state=8, dt_rank=1, n_layers=2, n_channels=9,
                          n_classes=6),
            3,
            "inputs of +-1e4",
            inputs="extreme",
        ),
        Variant(
            "ci_c1_patch8_gated",
            small.replace(family="ci", pooling="gated", patch_kernel=8, patch_stride=2, patch_padding=2,
                          n_channels=1, n_classes=3, window_length=64),
            3,
            "patch kernel 8, stride 2, padding 2 (P=31), one channel, gated",
        ),
    ]


def _uniform(shape, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def _normal(shape, std: float, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator) * std


@torch.no_grad()
def randomise(model: BabyMamba, weights: str, generator: torch.Generator) -> None:
    """Give every parameter and running statistic a random non-trivial value.

    Scales keep activations of order one so the logits stay informative:
    norms get weights around 1, BatchNorm gets running variances in [0.5, 2],
    and projections get fan-in scaled normals. Tensors are visited in
    state-dict order, which is fixed by the module structure.
    """
    for name, tensor in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = tensor.shape
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("running_mean"):
            value = _normal(shape, 0.3, generator)
        elif name.endswith("running_var"):
            value = _uniform(shape, 0.5, 2.0, generator)
        elif name == "pos_embed":
            value = _normal(shape, 0.5, generator)
        elif name.endswith("mixer.A_log"):
            low, high = (math.log(0.5), math.log(60.0)) if weights == "clamps" else (math.log(0.5), math.log(8.0))
            value = _uniform(shape, low, high, generator)
        elif name.endswith("mixer.dt_proj.bias"):
            # softplus(-1) = 0.31 and softplus(3) = 3.05, so delta*A reaches
            # below ln(1e-6) = -13.8 for many states with the "clamps" A_log.
            low, high = (-1.0, 3.0) if weights == "clamps" else (-4.0, -1.0)
            value = _uniform(shape, low, high, generator)
        elif name.endswith("mixer.D"):
            value = 1.0 + _normal(shape, 0.5, generator)
        elif name == "pool.context":
            value = _normal(shape, 1.0, generator)
        elif leaf == "weight" and tensor.dim() == 1:
            value = _uniform(shape, 0.5, 1.5, generator)
        elif leaf == "bias":
            value = _normal(shape, 0.1, generator)
        else:
            fan_in = tensor[0].numel()
            value = _normal(shape, 1.0 / math.sqrt(fan_in), generator)
        tensor.copy_(value)


def make_input(config: BabyMambaConfig, batch: int, inputs: str, generator: torch.Generator) -> torch.Tensor:
    """Draw the float32 input windows [batch, L, C].

    For "extreme" inputs the first window is +-1e4 everywhere, the second has
    +-1e4 at a random half of the samples, and the rest are standard normal.
    """
    shape = (batch, config.window_length, config.n_channels)
    windows = torch.randn(shape, generator=generator)
    if inputs == "extreme":
        signs = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        spikes = torch.rand(shape, generator=generator) < 0.5
        windows[0] = signs[0] * EXTREME_INPUT
        windows[1] = torch.where(spikes[1], signs[1] * EXTREME_INPUT, windows[1])
    return windows.to(torch.float32)


def golden_input_spec(config: BabyMambaConfig) -> Dict[str, Any]:
    channels = [(f"ch{index}", "1") for index in range(config.n_channels)]
    return make_input_spec(
        channels,
        sample_rate_hz=50,
        window_length=config.window_length,
        hop=config.window_length // 2,
        preprocessing="none",
    )


def build_variant(variant: Variant, seed: int):
    """Return (model in eval mode, input, logits_f32, logits_f64) for a variant."""
    generator = torch.Generator().manual_seed(seed)
    model = BabyMamba(variant.config).eval()
    randomise(model, variant.weights, generator)
    windows = make_input(variant.config, variant.batch, variant.inputs, generator)

    with torch.no_grad():
        logits_f32 = model(windows)
        logits_f64 = copy.deepcopy(model).double()(windows.to(torch.float64))
    for label, logits in (("float32", logits_f32), ("float64", logits_f64)):
        if not torch.isfinite(logits).all():
            raise RuntimeError(f"variant {variant.name}: {label} logits are not finite")
    return model, windows, logits_f32, logits_f64


def clamp_effect(model: BabyMamba, windows: torch.Tensor) -> float:
    """Return the largest logit change when the same weights use the exact scan.

    The chunked scan equals the exact one unless a clamp is active, so a
    large value shows that the clamps change the result.
    """
    exact = BabyMamba(model.config.replace(scan="exact")).eval()
    exact.load_state_dict(model.state_dict())
    with torch.no_grad():
        return float((exact(windows) - model(windows)).abs().max())


def write_variant(variant: Variant, seed: int, output_dir: str) -> Dict[str, Any]:
    """Write the two files of one variant and return its manifest entry."""
    model, windows, logits_f32, logits_f64 = build_variant(variant, seed)
    config = variant.config
    classes = [f"class{index}" for index in range(config.n_classes)]

    save_model(
        os.path.join(output_dir, f"{variant.name}.safetensors"),
        model,
        classes,
        golden_input_spec(config),
        name=f"golden-{variant.name}",
        version="1.0.0",
        training_info={"golden": True, "seed": seed},
    )
    write_safetensors(
        os.path.join(output_dir, f"{variant.name}.io.safetensors"),
        {
            "input": windows.numpy(),
            "logits_f32": logits_f32.numpy(),
            "logits_f64": logits_f64.numpy(),
        },
    )

    entry: Dict[str, Any] = {
        "name": variant.name,
        "description": variant.description,
        "family": config.family,
        "pooling": config.pooling,
        "bidirectional": config.bidirectional,
        "scan": config.scan,
        "n_channels": config.n_channels,
        "n_classes": config.n_classes,
        "window_length": config.window_length,
        "n_tokens": config.n_tokens,
        "batch": variant.batch,
        "parameters": count_parameters(model),
        "architecture": config.architecture(),
        "seed": seed,
        "max_abs_f32_f64": float((logits_f32.double() - logits_f64).abs().max()),
    }
    if config.scan == "chunked_clamped":
        entry["scan_chunk"] = config.scan_chunk
        entry["max_abs_clamp_effect"] = clamp_effect(model, windows)
        if variant.weights == "clamps" and entry["max_abs_clamp_effect"] < MIN_CLAMP_EFFECT:
            raise RuntimeError(
                f"variant {variant.name}: the clamps change the logits by only "
                f"{entry['max_abs_clamp_effect']:.3g}; choose weights that make them bite"
            )
    if variant.inputs == "extreme":
        entry["input_max_abs"] = EXTREME_INPUT
    return entry


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the golden model and logit files for the C tests.")
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="directory for the .safetensors files and manifest.json (default: tests/golden)",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="write only these variants")
    parser.add_argument("--list", action="store_true", help="list the variant names and exit")
    args = parser.parse_args(argv)

    # One thread keeps float32 reductions in a fixed order, so the logits are
    # identical from run to run.
    torch.set_num_threads(1)

    variants = golden_variants()
    if args.list:
        for variant in variants:
            print(f"{variant.name}: {variant.description}")
        return 0

    names = [variant.name for variant in variants]
    selected = set(args.only or names)
    unknown = sorted(selected - set(names))
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; run with --list to see the names", file=sys.stderr)
        return 2

    output_dir = os.path.normpath(args.output)
    os.makedirs(output_dir, exist_ok=True)

    entries = []
    for index, variant in enumerate(variants):
        if variant.name not in selected:
            continue
        entry = write_variant(variant, BASE_SEED + index, output_dir)
        entries.append(entry)
        print(f"{variant.name}: {entry['parameters']} parameters, max |f32 - f64| {entry['max_abs_f32_f64']:.3g}")

    if args.only is None:
        manifest = {
            "format_version": FORMAT_VERSION,
            "generator": "training/make_golden.py",
            "variants": entries,
        }
        with open(os.path.join(output_dir, "manifest.json"), "w", encoding="utf-8") as stream:
            json.dump(manifest, stream, indent=2)
            stream.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
