"""Convert a checkpoint of the BabyMamba-HAR authors' PyTorch code to a model file.

Those checkpoints are dicts whose `model_state_dict` uses the authors' module
names (`stem.0.weight` or `ciStem.conv.weight`, `patchDepthwise.weight`,
`mambaLayers.{i}.ssm.*`, `headLinear.*`, ...). The mixer tensors come in two
naming styles: the mamba_ssm names (`A_log`, `in_proj.weight`, ...), whose
checkpoints use the exact scan, and camelCase names (`ALog`, `inProj.weight`,
...), whose checkpoints were trained with the chunked, clamped scan.

Sizes, family and pooling are read from the tensor shapes. Classes, channels
and the window length cannot be, so they come from the command line, with
UCI-HAR defaults.

torch.load unpickles the checkpoint, which can run arbitrary code: import only
checkpoints from a trusted source.
"""

import argparse
import math
import os
import re
import sys
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from babymamba_export import ModelFileError, make_input_spec, save_model
from babymamba_model import DEFAULT_SCAN_CHUNK, SCAN_MODES, BabyMamba, BabyMambaConfig

UCI_HAR_CLASSES = ("walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying")
UCI_HAR_CHANNELS = (
    ("body_acc_x", "g"), ("body_acc_y", "g"), ("body_acc_z", "g"),
    ("body_gyro_x", "rad/s"), ("body_gyro_y", "rad/s"), ("body_gyro_z", "rad/s"),
    ("total_acc_x", "g"), ("total_acc_y", "g"), ("total_acc_z", "g"),
)

BATCH_NORM_FIELDS = ("weight", "bias", "running_mean", "running_var")
AFFINE_FIELDS = ("weight", "bias")

# Mixer tensor names in each naming style, mapped to our names under
# `layers.{i}.mixer.`.
MIXER_NAMES = {
    "mamba_ssm": {
        "A_log": "A_log",
        "D": "D",
        "in_proj.weight": "in_proj.weight",
        "conv1d.weight": "conv1d.weight",
        "conv1d.bias": "conv1d.bias",
        "x_proj.weight": "x_proj.weight",
        "dt_proj.weight": "dt_proj.weight",
        "dt_proj.bias": "dt_proj.bias",
        "out_proj.weight": "out_proj.weight",
    },
    "camelCase": {
        "ALog": "A_log",
        "D": "D",
        "inProj.weight": "in_proj.weight",
        "conv1d.weight": "conv1d.weight",
        "conv1d.bias": "conv1d.bias",
        "xProj.weight": "x_proj.weight",
        "dtProj.weight": "dt_proj.weight",
        "dtProj.bias": "dt_proj.bias",
        "outProj.weight": "out_proj.weight",
    },
}
# The name of the A_log tensor identifies the naming style.
STYLE_MARKERS = {"mamba_ssm": "A_log", "camelCase": "ALog"}
# The scan that checkpoints of each naming style were trained with.
STYLE_SCAN = {"mamba_ssm": "exact", "camelCase": "chunked_clamped"}

LAYER_PATTERN = re.compile(r"^mambaLayers\.(\d+)\.")


class CheckpointError(ValueError):
    """Raised when a checkpoint does not have the authors' layout."""


def _require(state: Mapping[str, torch.Tensor], key: str, purpose: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"checkpoint is missing {key!r}, needed for {purpose}")
    return state[key]


def name_map(family: str, pooling: str, n_layers: int, style: str) -> Dict[str, str]:
    """Map every authors' tensor name that a model of this shape has to our name."""
    names: Dict[str, str] = {}
    if family == "cx":
        names["stem.0.weight"] = "stem.conv.weight"
        names.update({f"stem.1.{field}": f"stem.bn.{field}" for field in BATCH_NORM_FIELDS})
    else:
        names["ciStem.conv.weight"] = "stem.conv.weight"
        names.update({f"ciStem.norm.{field}": f"stem.bn.{field}" for field in BATCH_NORM_FIELDS})

    names["patchDepthwise.weight"] = "patch.dw.weight"
    names["patchPointwise.weight"] = "patch.pw.weight"
    names.update({f"patchNorm.{field}": f"patch.bn.{field}" for field in BATCH_NORM_FIELDS})
    names["posEmbed"] = "pos_embed"

    for index in range(n_layers):
        source, target = f"mambaLayers.{index}", f"layers.{index}"
        for field in AFFINE_FIELDS:
            names[f"{source}.preNorm.{field}"] = f"{target}.pre_norm.{field}"
            names[f"{source}.postNorm.{field}"] = f"{target}.post_norm.{field}"
        for theirs, ours in MIXER_NAMES[style].items():
            names[f"{source}.ssm.{theirs}"] = f"{target}.mixer.{ours}"

    if pooling == "gated":
        names["gatedAttention.projection.weight"] = "pool.proj.weight"
        names["gatedAttention.projection.bias"] = "pool.proj.bias"
        names["gatedAttention.context"] = "pool.context"

    for field in AFFINE_FIELDS:
        names[f"headNorm.{field}"] = f"head.norm.{field}"
        names[f"headLinear.{field}"] = f"head.linear.{field}"
    return names


def detect_layout(state: Mapping[str, torch.Tensor]) -> Tuple[str, str, str, int]:
    """Return (family, pooling, mixer naming style, layer count) of a state dict."""
    has_cx, has_ci = "stem.0.weight" in state, "ciStem.conv.weight" in state
    if has_cx == has_ci:
        found = "both" if has_cx else "neither"
        raise CheckpointError(
            f"checkpoint has {found} of 'stem.0.weight' (CX stem) and 'ciStem.conv.weight' (CI stem); "
            "expected exactly one"
        )
    family = "cx" if has_cx else "ci"
    pooling = "gated" if any(key.startswith("gatedAttention.") for key in state) else "mean"

    indices = sorted({int(match.group(1)) for match in map(LAYER_PATTERN.match, state) if match})
    if not indices:
        raise CheckpointError("checkpoint has no 'mambaLayers.{i}.*' tensors")
    n_layers = indices[-1] + 1
    absent = sorted(set(range(n_layers)) - set(indices))
    if absent:
        raise CheckpointError(f"checkpoint has no tensors for mambaLayers.{absent[0]} but has mambaLayers.{n_layers - 1}")

    styles = [style for style, marker in STYLE_MARKERS.items() if f"mambaLayers.0.ssm.{marker}" in state]
    if len(styles) != 1:
        raise CheckpointError(
            "checkpoint is missing 'mambaLayers.0.ssm.A_log' (mamba_ssm names) or "
            "'mambaLayers.0.ssm.ALog' (camelCase names)"
        )
    return family, pooling, styles[0], n_layers


def infer_config(
    state: Mapping[str, torch.Tensor],
    family: str,
    pooling: str,
    style: str,
    n_layers: int,
    n_channels: int,
    window_length: int,
    bidirectional: bool,
    scan: str,
    scan_chunk: int,
    patch_stride: int,
    patch_padding: int,
    norm_eps: float,
) -> BabyMambaConfig:
    """Read the model sizes from tensor shapes and combine them with the given settings."""
    stem_key = "stem.0.weight" if family == "cx" else "ciStem.conv.weight"
    stem = _require(state, stem_key, "d_model and stem_kernel")
    if stem.dim() != 3:
        raise CheckpointError(f"{stem_key!r} has shape {list(stem.shape)}, expected [d_model, channels, kernel]")
    d_model, stem_channels, stem_kernel = stem.shape
    if family == "cx" and stem_channels != n_channels:
        raise CheckpointError(
            f"{stem_key!r} has {stem_channels} input channels but {n_channels} channels were given; "
            "pass --channels with one name:unit per input channel"
        )
    if family == "ci" and stem_channels != 1:
        raise CheckpointError(f"{stem_key!r} has shape {list(stem.shape)}, expected one input channel for CI")

    patch = _require(state, "patchDepthwise.weight", "patch_kernel")
    if patch.dim() != 3:
        raise CheckpointError(f"'patchDepthwise.weight' has shape {list(patch.shape)}, expected [d_model, 1, kernel]")

    mixer = {ours: f"mambaLayers.0.ssm.{theirs}" for theirs, ours in MIXER_NAMES[style].items()}
    a_log = _require(state, mixer["A_log"], "d_inner and d_state")
    dt_weight = _require(state, mixer["dt_proj.weight"], "dt_rank")
    conv = _require(state, mixer["conv1d.weight"], "d_conv")
    head = _require(state, "headLinear.weight", "the class count")
    for key, tensor, rank in ((mixer["A_log"], a_log, 2), (mixer["dt_proj.weight"], dt_weight, 2),
                              (mixer["conv1d.weight"], conv, 3), ("headLinear.weight", head, 2)):
        if tensor.dim() != rank:
            raise CheckpointError(f"{key!r} has shape {list(tensor.shape)}, expected {rank} dimensions")

    d_inner, d_state = a_log.shape
    if d_inner % d_model != 0:
        raise CheckpointError(
            f"{mixer['A_log']!r} has {d_inner} rows, not a multiple of d_model {d_model} from {stem_key!r}"
        )

    config = BabyMambaConfig(
        family=family,
        d_model=int(d_model),
        d_state=int(d_state),
        expand=int(d_inner // d_model),
        dt_rank=int(dt_weight.shape[1]),
        d_conv=int(conv.shape[2]),
        n_layers=n_layers,
        bidirectional=bidirectional,
        pooling=pooling,
        stem_kernel=int(stem_kernel),
        patch_kernel=int(patch.shape[2]),
        patch_stride=patch_stride,
        patch_padding=patch_padding,
        norm_eps=norm_eps,
        scan=scan,
        scan_chunk=scan_chunk,
        n_channels=n_channels,
        n_classes=int(head.shape[0]),
        window_length=window_length,
    )
    try:
        config.validate()
    except ValueError as error:
        raise CheckpointError(f"inferred architecture is invalid: {error}") from error
    return config


def interpolate_pos_embed(table: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Resample a [1, Q, d] positional table to [n_tokens, d].

    The authors' model does this on every forward pass with linear
    interpolation and align_corners=False, so storing the result gives the
    same function. The table keeps its dtype so the values match theirs.
    """
    if table.dim() == 2:
        table = table.unsqueeze(0)
    resampled = F.interpolate(table.transpose(1, 2), size=n_tokens, mode="linear", align_corners=False)
    return resampled.transpose(1, 2)[0]


def convert_state_dict(
    state: Mapping[str, torch.Tensor],
    n_channels: int = len(UCI_HAR_CHANNELS),
    window_length: int = 128,
    bidirectional: bool = True,
    scan: Optional[str] = None,
    scan_chunk: int = DEFAULT_SCAN_CHUNK,
    patch_stride: int = 4,
    patch_padding: int = 4,
    norm_eps: float = 1e-5,
) -> Tuple[BabyMamba, Dict[str, Any]]:
    """Convert an authors' `model_state_dict` to a BabyMamba module in eval mode.

    `scan` defaults to the scan of the checkpoint's naming style. Returns the
    model and a dict of facts about the conversion for the `training` metadata.
    Raises CheckpointError naming the first unknown, missing or misshapen key.
    """
    state = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"model_state_dict entry {key!r} is a {type(value).__name__}, expected a tensor")

    family, pooling, style, n_layers = detect_layout(state)
    names = name_map(family, pooling, n_layers, style)
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise CheckpointError(
            f"checkpoint has unknown key {unknown[0]!r} ({len(unknown)} unknown in total) for a "
            f"{family} model with {pooling} pooling and {style} mixer names"
        )
    missing = [key for key in names if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint is missing {missing[0]!r} ({len(missing)} missing in total), expected for a "
            f"{family} model with {pooling} pooling and {style} mixer names"
        )

    config = infer_config(
        state, family, pooling, style, n_layers, n_channels, window_length, bidirectional,
        scan or STYLE_SCAN[style], scan_chunk, patch_stride, patch_padding, norm_eps,
    )
    model = BabyMamba(config)
    expected_shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}

    pos_embed = state["posEmbed"]
    if pos_embed.dim() not in (2, 3) or (pos_embed.dim() == 3 and pos_embed.shape[0] != 1) or pos_embed.shape[-1] != config.d_model:
        raise CheckpointError(f"'posEmbed' has shape {list(pos_embed.shape)}, expected [1, tokens, {config.d_model}]")
    authors_tokens = (window_length - config.patch_kernel) // config.patch_stride + 1
    if pos_embed.shape[-2] != authors_tokens:
        warnings.warn(
            f"'posEmbed' has {pos_embed.shape[-2]} rows, but the authors' code makes {authors_tokens} for "
            f"window length {window_length}; check --window-length"
        )

    converted = {}
    for theirs, ours in names.items():
        tensor = state[theirs]
        if theirs == "posEmbed":
            tensor = interpolate_pos_embed(tensor, config.n_tokens)
        elif theirs == "gatedAttention.context":
            if tensor.numel() != config.d_model or tensor.dim() > 2 or (tensor.dim() == 2 and 1 not in tensor.shape):
                raise CheckpointError(
                    f"'gatedAttention.context' has shape {list(tensor.shape)}, expected [{config.d_model}], "
                    f"[{config.d_model}, 1] or [1, {config.d_model}]"
                )
            tensor = tensor.reshape(config.d_model)
        if tensor.shape != expected_shapes[ours]:
            raise CheckpointError(
                f"{theirs!r} has shape {list(tensor.shape)}, expected {list(expected_shapes[ours])} for {ours!r}"
            )
        converted[ours] = tensor.detach().to(torch.float32)

    model.load_state_dict(converted, strict=False)
    info = {
        "source": "BabyMamba-HAR authors' PyTorch checkpoint",
        "ssm_naming": style,
        "pos_embed_rows": int(pos_embed.shape[-2]),
    }
    return model.eval(), info


def load_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Load a checkpoint file and return (model_state_dict, scalar top-level fields)."""
    checkpoint = torch.load(path, map_location="cpu")
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: expected a dict with a 'model_state_dict' entry")
    state = checkpoint["model_state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'model_state_dict' is a {type(state).__name__}, expected a dict")
    # Scalars such as the epoch or the best accuracy are kept as provenance.
    # Non-finite floats are dropped because JSON cannot represent them.
    fields = {
        key: value
        for key, value in checkpoint.items()
        if isinstance(key, str)
        and isinstance(value, (bool, int, float, str))
        and not (isinstance(value, float) and not math.isfinite(value))
    }
    return state, fields


def _parse_list(text: str, option: str) -> List[str]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{option} has an empty entry in {text!r}")
    return items


def parse_channels(text: str) -> List[Tuple[str, str]]:
    """Parse 'name:unit,name:unit,...' into (name, unit) pairs."""
    channels = []
    for item in _parse_list(text, "--channels"):
        name, separator, unit = item.partition(":")
        if not separator or not name or not unit:
            raise argparse.ArgumentTypeError(f"--channels entry {item!r} is not of the form name:unit")
        channels.append((name, unit))
    return channels


def parse_numbers(text: str) -> List[float]:
    try:
        return [float(item) for item in _parse_list(text, "number list")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid number list {text!r}: {error}") from error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a BabyMamba-HAR authors' checkpoint (.pt with model_state_dict) to a babymamba "
        "model file. Load only trusted checkpoints: torch.load unpickles them.",
    )
    parser.add_argument("checkpoint", help="authors' checkpoint file")
    parser.add_argument("output", help="model file to write (.safetensors)")
    parser.add_argument("--name", help="model name in the metadata (default: output file name without extension)")
    parser.add_argument("--version", default="1.0.0", help="model version in the metadata (default: %(default)s)")

    parser.add_argument(
        "--classes",
        type=lambda text: _parse_list(text, "--classes"),
        default=list(UCI_HAR_CLASSES),
        help="comma-separated class names in logit order (default: the six UCI-HAR activities)",
    )
    parser.add_argument(
        "--channels",
        type=parse_channels,
        default=list(UCI_HAR_CHANNELS),
        help="comma-separated name:unit input channels in order (default: the nine UCI-HAR channels)",
    )

    parser.add_argument("--sample-rate", type=float, default=50, help="input sample rate in Hz (default: 50)")
    parser.add_argument("--window-length", type=int, default=128, help="samples per window L (default: 128)")
    parser.add_argument("--hop", type=int, default=64, help="samples between window starts (default: 64)")
    parser.add_argument(
        "--preprocessing", default="none", help="name of the preprocessing that makes the channels (default: none)"
    )
    parser.add_argument("--mean", type=parse_numbers, help="comma-separated per-channel normalization mean (default: 0)")
    parser.add_argument("--std", type=parse_numbers, help="comma-separated per-channel normalization std (default: 1)")

    parser.add_argument(
        "--forward-only", action="store_true", help="mark the model forward-only (default: bidirectional)"
    )
    parser.add_argument(
        "--scan",
        choices=SCAN_MODES,
        help="override the scan (default: exact for mamba_ssm names, chunked_clamped for camelCase names)",
    )
    parser.add_argument(
        "--scan-chunk", type=int, default=DEFAULT_SCAN_CHUNK, help="tokens per chunk of chunked_clamped (default: 32)"
    )
    parser.add_argument("--patch-stride", type=int, default=4, help="patch convolution stride (default: 4)")
    parser.add_argument("--patch-padding", type=int, default=4, help="patch convolution padding (default: 4)")
    parser.add_argument("--norm-eps", type=float, default=1e-5, help="BatchNorm and LayerNorm epsilon (default: 1e-5)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]

    try:
        state, fields = load_checkpoint(args.checkpoint)
        model, info = convert_state_dict(
            state,
            n_channels=len(args.channels),
            window_length=args.window_length,
            bidirectional=not args.forward_only,
            scan=args.scan,
            scan_chunk=args.scan_chunk,
            patch_stride=args.patch_stride,
            patch_padding=args.patch_padding,
            norm_eps=args.norm_eps,
        )
        # A whole number of Hz is written as a JSON integer, as in the format's example.
        sample_rate = int(args.sample_rate) if float(args.sample_rate).is_integer() else args.sample_rate
        input_spec = make_input_spec(
            args.channels, sample_rate, args.window_length, args.hop, args.preprocessing, args.mean, args.std
        )
        info["checkpoint"] = os.path.basename(args.checkpoint)
        if fields:
            info["checkpoint_fields"] = fields
        save_model(args.output, model, args.classes, input_spec, name, args.version, info)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (CheckpointError, ModelFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    config = model.config
    print(
        f"wrote {args.output}: {config.family} d={config.d_model} N={config.d_state} expand={config.expand} "
        f"R={config.dt_rank} layers={config.n_layers} pooling={config.pooling} scan={config.scan} "
        f"C={config.n_channels} K={config.n_classes} L={config.window_length} ({info['ssm_naming']} names)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
