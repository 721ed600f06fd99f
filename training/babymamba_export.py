"""Write and read babymamba model files (docs/model-format.md).

A model file is a safetensors container with every tensor of the model in F32
and one JSON document in `__metadata__["babymamba"]` that describes the
architecture, classes and input stream.

Run `python3 training/babymamba_export.py --check FILE` to load a model file
and print a summary.
"""

import argparse
import json
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from babymamba_model import BabyMamba, BabyMambaConfig, count_parameters
from safetensors_io import SafetensorsError, read_babymamba_document, read_safetensors, write_safetensors

# Shared with BM_MODEL_FORMAT_VERSION in include/babymamba/model.h.
FORMAT_VERSION = 1
FORMAT_NAME = "babymamba-model"
METADATA_ENTRY = "babymamba"

INPUT_KEYS = ("channels", "sample_rate_hz", "window_length", "hop", "preprocessing", "normalization")


class ModelFileError(ValueError):
    """Raised when a model file or its metadata is invalid."""


def make_input_spec(
    channels: Sequence[Tuple[str, str]],
    sample_rate_hz: float,
    window_length: int,
    hop: int,
    preprocessing: str = "none",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Dict[str, Any]:
    """Build the metadata `input` object from (name, unit) channel pairs.

    The normalization defaults to mean 0 and standard deviation 1 for every
    channel, which leaves the input unchanged.
    """
    count = len(channels)
    spec = {
        "channels": [{"name": name, "unit": unit} for name, unit in channels],
        "sample_rate_hz": sample_rate_hz,
        "window_length": window_length,
        "hop": hop,
        "preprocessing": preprocessing,
        "normalization": {
            "mean": list(mean) if mean is not None else [0] * count,
            "std": list(std) if std is not None else [1] * count,
        },
    }
    validate_input_spec(spec)
    return spec


def validate_input_spec(spec: Mapping[str, Any]) -> None:
    """Raise ModelFileError naming the first invalid key of an `input` object."""
    missing = [key for key in INPUT_KEYS if key not in spec]
    if missing:
        raise ModelFileError(f"input is missing key(s): {', '.join(missing)}")

    channels = spec["channels"]
    if not isinstance(channels, list) or not channels:
        raise ModelFileError("input.channels must be a non-empty list")
    for index, channel in enumerate(channels):
        if (
            not isinstance(channel, dict)
            or not isinstance(channel.get("name"), str)
            or not isinstance(channel.get("unit"), str)
            or not channel["name"]
        ):
            raise ModelFileError(f"input.channels[{index}] must be an object with string name and unit, got {channel!r}")

    for key in ("sample_rate_hz", "window_length", "hop"):
        value = spec[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ModelFileError(f"input.{key} must be a positive number, got {value!r}")
    for key in ("window_length", "hop"):
        if not isinstance(spec[key], int):
            raise ModelFileError(f"input.{key} must be an integer, got {spec[key]!r}")
    if not isinstance(spec["preprocessing"], str) or not spec["preprocessing"]:
        raise ModelFileError(f"input.preprocessing must be a non-empty string, got {spec['preprocessing']!r}")

    normalization = spec["normalization"]
    if not isinstance(normalization, dict):
        raise ModelFileError("input.normalization must be an object with mean and std lists")
    for key in ("mean", "std"):
        values = normalization.get(key)
        if not isinstance(values, list) or len(values) != len(channels):
            raise ModelFileError(f"input.normalization.{key} must be a list of {len(channels)} numbers, got {values!r}")
        for value in values:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise ModelFileError(f"input.normalization.{key} contains {value!r}, expected a finite number")
    if any(value <= 0 for value in normalization["std"]):
        raise ModelFileError(f"input.normalization.std must be positive, got {normalization['std']}")


def build_metadata(
    config: BabyMambaConfig,
    classes: Sequence[str],
    input_spec: Mapping[str, Any],
    name: str,
    version: str,
    training_info: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """Build the metadata document and check it against the model config."""
    validate_input_spec(input_spec)
    if len(classes) != config.n_classes:
        raise ModelFileError(f"got {len(classes)} class names for a model with {config.n_classes} classes")
    if not all(isinstance(label, str) and label for label in classes):
        raise ModelFileError(f"class names must be non-empty strings, got {list(classes)!r}")
    if len(input_spec["channels"]) != config.n_channels:
        raise ModelFileError(
            f"input spec lists {len(input_spec['channels'])} channels for a model with {config.n_channels} channels"
        )
    if input_spec["window_length"] != config.window_length:
        raise ModelFileError(
            f"input.window_length {input_spec['window_length']} differs from the model's window length "
            f"{config.window_length}"
        )
    if not name or not version:
        raise ModelFileError("model name and version must be non-empty strings")

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "architecture": config.architecture(),
        "classes": list(classes),
        "input": dict(input_spec),
        "training": dict(training_info or {}),
    }


def model_tensors(model: BabyMamba) -> Dict[str, np.ndarray]:
    """Return the model's state dict as float32 arrays, without num_batches_tracked."""
    return {
        name: value.detach().cpu().to(torch.float32).numpy()
        for name, value in model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    }


def save_model(
    path: str,
    model: BabyMamba,
    classes: Sequence[str],
    input_spec: Mapping[str, Any],
    name: str,
    version: str,
    training_info: Optional[Mapping[str, Any]] = None,
) -> None:
    """Write `model` to a model file at `path`.

    `input_spec` is the metadata `input` object (see make_input_spec) and
    `training_info` the free-form `training` object. Tensors are written in
    F32 whatever the model's dtype.
    """
    metadata = build_metadata(model.config, classes, input_spec, name, version, training_info)
    document = json.dumps(metadata, separators=(",", ":"), allow_nan=False)
    write_safetensors(path, model_tensors(model), {METADATA_ENTRY: document})


def parse_metadata(metadata: Mapping[str, str], source: str) -> Dict[str, Any]:
    """Parse and check the babymamba metadata document of a safetensors file."""
    document = read_babymamba_document(metadata, source, FORMAT_NAME, FORMAT_VERSION, ModelFileError)
    for key in ("name", "version", "architecture", "classes", "input"):
        if key not in document:
            raise ModelFileError(f"{source}: metadata is missing key {key!r}")
    if not isinstance(document["classes"], list) or not document["classes"]:
        raise ModelFileError(f"{source}: classes must be a non-empty list of names")
    try:
        validate_input_spec(document["input"])
    except ModelFileError as error:
        raise ModelFileError(f"{source}: {error}") from error
    return document


def config_from_metadata(document: Mapping[str, Any], source: str) -> BabyMambaConfig:
    try:
        return BabyMambaConfig.from_architecture(
            document["architecture"],
            n_channels=len(document["input"]["channels"]),
            n_classes=len(document["classes"]),
            window_length=document["input"]["window_length"],
        )
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{source}: {error}") from error


def check_tensors(model: BabyMamba, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Raise ModelFileError unless `tensors` has exactly the model's names, F32 dtype and shapes."""
    expected = {
        name: tuple(value.shape)
        for name, value in model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    }
    for name in sorted(expected):
        if name not in tensors:
            raise ModelFileError(f"{source}: missing tensor {name!r} with shape {list(expected[name])}")
    for name in sorted(tensors):
        if name not in expected:
            raise ModelFileError(f"{source}: unexpected tensor {name!r}, which this architecture does not use")
        array = tensors[name]
        if array.dtype != np.float32:
            raise ModelFileError(f"{source}: tensor {name!r} has dtype {array.dtype}, expected F32")
        if tuple(array.shape) != expected[name]:
            raise ModelFileError(
                f"{source}: tensor {name!r} has shape {list(array.shape)}, expected {list(expected[name])}"
            )


def load_model_with_metadata(path: str) -> Tuple[BabyMamba, Dict[str, Any]]:
    """Read a model file and return (model in eval mode, metadata document)."""
    try:
        tensors, metadata = read_safetensors(path)
    except SafetensorsError as error:
        raise ModelFileError(str(error)) from error
    document = parse_metadata(metadata, path)
    config = config_from_metadata(document, path)
    model = BabyMamba(config)
    check_tensors(model, tensors, path)

    state = {name: torch.from_numpy(array) for name, array in tensors.items()}
    model.load_state_dict(state, strict=False)
    return model.eval(), document


def load_model(path: str) -> BabyMamba:
    """Read a model file into a BabyMamba module in eval mode."""
    model, _ = load_model_with_metadata(path)
    return model


def describe_model(model: BabyMamba, document: Mapping[str, Any]) -> List[str]:
    """Return the summary lines that --check prints."""
    config = model.config
    channels = ", ".join(f"{channel['name']} [{channel['unit']}]" for channel in document["input"]["channels"])
    architecture = ", ".join(f"{key}={value}" for key, value in config.architecture().items())
    return [
        f"name: {document['name']} {document['version']}",
        f"architecture: {architecture}",
        f"parameters: {count_parameters(model)}",
        f"tokens: {config.n_tokens}",
        f"window: {config.window_length} samples at {document['input']['sample_rate_hz']} Hz, "
        f"hop {document['input']['hop']}",
        f"channels ({config.n_channels}): {channels}",
        f"classes ({config.n_classes}): {', '.join(document['classes'])}",
        f"preprocessing: {document['input']['preprocessing']}",
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Check a babymamba model file.")
    parser.add_argument("--check", metavar="FILE", required=True, help="model file to load and summarise")
    args = parser.parse_args(argv)

    try:
        model, document = load_model_with_metadata(args.check)
    except OSError as error:
        print(f"error: cannot read {args.check}: {error.strerror}", file=sys.stderr)
        return 1
    except ModelFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    with torch.no_grad():
        logits = model(torch.zeros(1, model.config.window_length, model.config.n_channels))
    if not torch.isfinite(logits).all():
        print(f"error: {args.check}: logits for an all-zero window are not finite", file=sys.stderr)
        return 1

    for line in describe_model(model, document):
        print(line)
    print("status: ok (loaded, and an all-zero window gives finite logits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
