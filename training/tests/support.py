"""Shared helpers for the training tests: import paths, random models and a
numpy reference of the model function written directly from
docs/model-format.md."""

import math
import os
import sys

import numpy as np
import torch

TRAINING_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPOSITORY_DIR = os.path.dirname(TRAINING_DIR)
if TRAINING_DIR not in sys.path:
    sys.path.insert(0, TRAINING_DIR)

from babymamba_model import BabyMamba, BabyMambaConfig  # noqa: E402
from make_golden import randomise  # noqa: E402

GOLDEN_DIR = os.path.join(REPOSITORY_DIR, "tests", "golden")


def random_model(config: BabyMambaConfig, seed: int, weights: str = "normal") -> BabyMamba:
    """Build a model in eval mode with the golden script's random weights."""
    model = BabyMamba(config).eval()
    randomise(model, weights, torch.Generator().manual_seed(seed))
    return model


def random_input(config: BabyMambaConfig, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.window_length, config.n_channels, generator=generator)


# ---------------------------------------------------------------------------
# Numpy float64 reference. It loops over windows, channels and tokens and
# shares no code with babymamba_model, so agreement checks the module against
# the specification rather than against itself.


def _silu(x):
    # exp(-x) overflows to inf for x below about -709, and x / inf is the
    # correct limit -0, so the overflow warning is noise.
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def _softplus(x):
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def _batch_norm(x, p, prefix, eps):
    """x is [channels, length]."""
    scale = p[prefix + ".weight"] / np.sqrt(p[prefix + ".running_var"] + eps)
    return (x - p[prefix + ".running_mean"][:, None]) * scale[:, None] + p[prefix + ".bias"][:, None]


def _conv1d(x, weight, stride, padding, groups):
    """x is [in_channels, length], weight [out_channels, in_channels / groups, kernel]."""
    in_channels, length = x.shape
    out_channels, group_inputs, kernel = weight.shape
    padded = np.zeros((in_channels, length + 2 * padding))
    padded[:, padding : padding + length] = x
    out_length = (length + 2 * padding - kernel) // stride + 1
    outputs_per_group = out_channels // groups
    out = np.zeros((out_channels, out_length))
    for o in range(out_channels):
        first = (o // outputs_per_group) * group_inputs
        for t in range(out_length):
            window = padded[first : first + group_inputs, t * stride : t * stride + kernel]
            out[o, t] = np.sum(window * weight[o])
    return out


def _mixer(u, p, prefix, config):
    di, n, r, k = config.d_inner, config.d_state, config.dt_rank, config.d_conv
    tokens = u.shape[0]
    projected = u @ p[prefix + "in_proj.weight"].T
    a, z = projected[:, :di], projected[:, di:]

    conv_weight, conv_bias = p[prefix + "conv1d.weight"], p[prefix + "conv1d.bias"]
    convolved = np.zeros((tokens, di))
    for t in range(tokens):
        convolved[t] = conv_bias
        for tap in range(k):
            source = t - k + 1 + tap
            if source >= 0:
                convolved[t] += conv_weight[:, 0, tap] * a[source]
    a = _silu(convolved)

    projections = a @ p[prefix + "x_proj.weight"].T
    low_rank, B, C = projections[:, :r], projections[:, r : r + n], projections[:, r + n :]
    delta = _softplus(low_rank @ p[prefix + "dt_proj.weight"].T + p[prefix + "dt_proj.bias"])
    A = -np.exp(p[prefix + "A_log"])
    drive = [np.outer(delta[t] * a[t], B[t]) for t in range(tokens)]

    states = []
    if config.scan == "exact":
        h = np.zeros((di, n))
        for t in range(tokens):
            h = np.exp(delta[t][:, None] * A) * h + drive[t]
            states.append(h)
    else:
        h_before = np.zeros((di, n))
        for start in range(0, tokens, config.scan_chunk):
            end = min(start + config.scan_chunk, tokens)
            log_decay = [np.maximum(delta[j][:, None] * A, math.log(1e-6)) for j in range(start, end)]
            S = np.cumsum(np.stack(log_decay), axis=0)
            for t in range(end - start):
                decay_t = np.exp(np.minimum(S[t], 20.0))
                h = decay_t * h_before
                for s in range(t + 1):
                    h = h + decay_t * np.exp(-np.clip(S[s], -20.0, 20.0)) * drive[start + s]
                states.append(h)
            h_before = states[-1]

    y = np.stack([(states[t] @ C[t] + p[prefix + "D"] * a[t]) * _silu(z[t]) for t in range(tokens)])
    return y @ p[prefix + "out_proj.weight"].T


def _backbone(signal, p, config):
    """Run steps 1 to 4 of the model function on signal [stem channels, L]; return the pooled [d]."""
    eps = config.norm_eps
    x = _conv1d(signal, p["stem.conv.weight"], 1, config.stem_kernel // 2, 1)
    x = _silu(_batch_norm(x, p, "stem.bn", eps))
    x = _conv1d(x, p["patch.dw.weight"], config.patch_stride, config.patch_padding, config.d_model)
    x = _conv1d(x, p["patch.pw.weight"], 1, 0, 1)
    x = _silu(_batch_norm(x, p, "patch.bn", eps))
    x = x.T + p["pos_embed"]

    for index in range(config.n_layers):
        prefix = f"layers.{index}."
        u = _layer_norm(x, p[prefix + "pre_norm.weight"], p[prefix + "pre_norm.bias"], eps)
        total = x + _mixer(u, p, prefix + "mixer.", config)
        if config.bidirectional:
            total = total + _mixer(u[::-1], p, prefix + "mixer.", config)[::-1]
        x = _layer_norm(total, p[prefix + "post_norm.weight"], p[prefix + "post_norm.bias"], eps)

    if config.pooling == "mean":
        return x.mean(axis=0)
    scores = np.tanh(x @ p["pool.proj.weight"].T + p["pool.proj.bias"]) @ p["pool.context"]
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    return weights @ x


def reference_logits(model: BabyMamba, windows: torch.Tensor) -> np.ndarray:
    """Compute logits [batch, K] in float64 numpy from the model's weights."""
    config = model.config
    p = {name: value.detach().double().numpy() for name, value in model.state_dict().items()}
    logits = []
    for window in windows.double().numpy():
        if config.family == "cx":
            pooled = _backbone(window.T, p, config)
        else:
            pooled = np.mean([_backbone(window[:, [c]].T, p, config) for c in range(config.n_channels)], axis=0)
        normed = _layer_norm(pooled, p["head.norm.weight"], p["head.norm.bias"], config.norm_eps)
        logits.append(normed @ p["head.linear.weight"].T + p["head.linear.bias"])
    return np.stack(logits)
