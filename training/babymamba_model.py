"""BabyMamba-HAR in PyTorch, computing the function of docs/model-format.md.

The module's state-dict keys are the tensor names of the model file, so the
exporter writes `state_dict()` as it is (without BatchNorm's
`num_batches_tracked`). Inputs are windows of shape [batch, L, C], sample-major,
already normalised. The forward pass returns logits of shape [batch, K].
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping

import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("cx", "ci")
POOLINGS = ("mean", "gated")
SCAN_MODES = ("exact", "chunked_clamped")
DEFAULT_SCAN_CHUNK = 32

# Limits of the chunked, clamped scan: each per-token log decay is clamped
# below at ln(1e-6), and the running sum S inside a chunk at +-20.
DECAY_LOG_FLOOR = math.log(1e-6)
CUMULATIVE_LOG_LIMIT = 20.0

# Architecture keys of the metadata, in the order the exporter writes them.
ARCHITECTURE_KEYS = (
    "family",
    "d_model",
    "d_state",
    "expand",
    "dt_rank",
    "d_conv",
    "n_layers",
    "bidirectional",
    "pooling",
    "stem_kernel",
    "patch_kernel",
    "patch_stride",
    "patch_padding",
    "norm_eps",
    "scan",
    "scan_chunk",
)


@dataclass
class BabyMambaConfig:
    """Hyperparameters of one model: the metadata architecture keys plus the
    input channel count C, the class count K and the window length L.

    The defaults are the published CX model for UCI-HAR.
    """

    family: str = "cx"
    d_model: int = 26
    d_state: int = 8
    expand: int = 2
    dt_rank: int = 2
    d_conv: int = 4
    n_layers: int = 4
    bidirectional: bool = True
    pooling: str = "mean"
    stem_kernel: int = 5
    patch_kernel: int = 16
    patch_stride: int = 4
    patch_padding: int = 4
    norm_eps: float = 1e-5
    scan: str = "exact"
    scan_chunk: int = DEFAULT_SCAN_CHUNK
    n_channels: int = 9
    n_classes: int = 6
    window_length: int = 128

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def stem_channels(self) -> int:
        """Input channels of the stem convolution: C for cx, 1 for ci."""
        return self.n_channels if self.family == "cx" else 1

    @property
    def n_tokens(self) -> int:
        """Token count P after the patch embedding."""
        return (self.window_length + 2 * self.patch_padding - self.patch_kernel) // self.patch_stride + 1

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value is invalid."""
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.scan not in SCAN_MODES:
            raise ValueError(f"scan must be one of {SCAN_MODES}, got {self.scan!r}")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional must be a bool, got {self.bidirectional!r}")

        positive = (
            "d_model", "d_state", "expand", "dt_rank", "d_conv", "n_layers", "stem_kernel",
            "patch_kernel", "patch_stride", "scan_chunk", "n_channels", "n_classes", "window_length",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.patch_padding, int) or isinstance(self.patch_padding, bool) or self.patch_padding < 0:
            raise ValueError(f"patch_padding must be a non-negative integer, got {self.patch_padding!r}")
        if self.stem_kernel % 2 != 1:
            raise ValueError(f"stem_kernel must be odd so that padding stem_kernel/2 keeps L, got {self.stem_kernel}")
        if not isinstance(self.norm_eps, (int, float)) or isinstance(self.norm_eps, bool) or not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be a positive number, got {self.norm_eps!r}")
        if self.window_length + 2 * self.patch_padding < self.patch_kernel:
            raise ValueError(
                f"window_length {self.window_length} with patch_padding {self.patch_padding} "
                f"is shorter than patch_kernel {self.patch_kernel}, so no token fits"
            )

    def architecture(self) -> Dict[str, Any]:
        """Return the `architecture` object of the metadata.

        `scan_chunk` appears only with the chunked_clamped scan, as the format
        requires.
        """
        values = {key: getattr(self, key) for key in ARCHITECTURE_KEYS}
        values["norm_eps"] = float(self.norm_eps)
        if self.scan != "chunked_clamped":
            del values["scan_chunk"]
        return values

    @classmethod
    def from_architecture(
        cls, architecture: Mapping[str, Any], n_channels: int, n_classes: int, window_length: int
    ) -> "BabyMambaConfig":
        """Build a config from a metadata `architecture` object.

        Raises ValueError naming any missing, unknown or invalid key.
        """
        required = [key for key in ARCHITECTURE_KEYS if key != "scan_chunk"]
        missing = [key for key in required if key not in architecture]
        if missing:
            raise ValueError(f"architecture is missing key(s): {', '.join(missing)}")
        unknown = sorted(set(architecture) - set(ARCHITECTURE_KEYS))
        if unknown:
            raise ValueError(f"architecture has unknown key(s): {', '.join(unknown)}")
        if "scan_chunk" in architecture and architecture["scan"] != "chunked_clamped":
            raise ValueError(
                f"architecture.scan_chunk is only valid with scan 'chunked_clamped', got scan {architecture['scan']!r}"
            )

        values = dict(architecture)
        values.setdefault("scan_chunk", DEFAULT_SCAN_CHUNK)
        if isinstance(values["norm_eps"], int) and not isinstance(values["norm_eps"], bool):
            values["norm_eps"] = float(values["norm_eps"])
        config = cls(**values, n_channels=n_channels, n_classes=n_classes, window_length=window_length)
        config.validate()
        return config

    def replace(self, **changes: Any) -> "BabyMambaConfig":
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def selective_scan(
    a: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    scan: str = "exact",
    chunk: int = DEFAULT_SCAN_CHUNK,
) -> torch.Tensor:
    """Run the gated selective scan of one direction and return y [batch, T, di].

    Shapes: `a`, `delta`, `z` are [batch, T, di]; `A` is [di, N]; `B` and `C`
    are [batch, T, N]; `D` is [di]. `delta` is the step size after softplus and
    `A` is the negative matrix -exp(A_log). The state starts at zero.

    The mixer looks this function up at call time, so assigning a faster
    implementation with the same signature to `babymamba_model.selective_scan`
    replaces it for every model. The replacement must support autograd itself,
    for example through torch.autograd.Function.
    """
    if scan == "exact":
        return selective_scan_exact(a, delta, A, B, C, D, z)
    if scan == "chunked_clamped":
        return selective_scan_chunked_clamped(a, delta, A, B, C, D, z, chunk)
    raise ValueError(f"scan must be one of {SCAN_MODES}, got {scan!r}")


def selective_scan_exact(a, delta, A, B, C, D, z) -> torch.Tensor:
    """Reference scan: the plain recurrence h_t = exp(delta_t A) h_{t-1} + (delta_t a_t) B_t."""
    batch, tokens, d_inner = a.shape
    decay = torch.exp(delta.unsqueeze(-1) * A)  # [batch, T, di, N]
    drive = (delta * a).unsqueeze(-1) * B.unsqueeze(2)  # [batch, T, di, N]

    h = a.new_zeros(batch, d_inner, A.shape[1])
    outputs = []
    for t in range(tokens):
        h = decay[:, t] * h + drive[:, t]
        outputs.append((h * C[:, t].unsqueeze(1)).sum(dim=-1))
    return _gate_output(torch.stack(outputs, dim=1), a, D, z)


def selective_scan_chunked_clamped(a, delta, A, B, C, D, z, chunk: int = DEFAULT_SCAN_CHUNK) -> torch.Tensor:
    """Chunked scan with the clamps that some published checkpoints were trained with.

    Within a chunk starting at t0, l_j = max(delta_j A, ln 1e-6),
    S_t = sum_{j=t0..t} l_j and
    h_t = exp(min(S_t, 20)) h_{t0-1}
          + sum_{s=t0..t} exp(min(S_t, 20)) exp(-clamp(S_s, -20, 20)) (delta_s a_s) B_s.
    Each term is formed as that product of three factors, as written in the
    format specification. Without the clamps this equals the exact scan.
    """
    if chunk <= 0:
        raise ValueError(f"scan chunk must be positive, got {chunk}")
    batch, tokens, d_inner = a.shape
    log_decay = torch.clamp(delta.unsqueeze(-1) * A, min=DECAY_LOG_FLOOR)  # [batch, T, di, N]
    drive = (delta * a).unsqueeze(-1) * B.unsqueeze(2)  # [batch, T, di, N]

    state = a.new_zeros(batch, d_inner, A.shape[1])
    outputs = []
    for start in range(0, tokens, chunk):
        end = min(start + chunk, tokens)
        cumulative = torch.cumsum(log_decay[:, start:end], dim=1)
        decay = torch.exp(torch.clamp(cumulative, max=CUMULATIVE_LOG_LIMIT))
        growth = torch.exp(-torch.clamp(cumulative, min=-CUMULATIVE_LOG_LIMIT, max=CUMULATIVE_LOG_LIMIT))
        chunk_drive = drive[:, start:end]

        chunk_start_state = state
        for t in range(end - start):
            decay_t = decay[:, t]
            terms = decay_t.unsqueeze(1) * growth[:, : t + 1] * chunk_drive[:, : t + 1]
            state = decay_t * chunk_start_state + terms.sum(dim=1)
            outputs.append((state * C[:, start + t].unsqueeze(1)).sum(dim=-1))
    return _gate_output(torch.stack(outputs, dim=1), a, D, z)


def _gate_output(scanned: torch.Tensor, a: torch.Tensor, D: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (scanned + D * a) * F.silu(z)


class Stem(nn.Module):
    """Conv1d (padding stem_kernel/2, no bias), BatchNorm and SiLU."""

    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        self.conv = nn.Conv1d(
            config.stem_channels,
            config.d_model,
            config.stem_kernel,
            padding=config.stem_kernel // 2,
            bias=False,
        )
        self.bn = nn.BatchNorm1d(config.d_model, eps=config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.bn(self.conv(x)))


class PatchEmbedding(nn.Module):
    """Depthwise strided Conv1d, pointwise Conv1d, BatchNorm and SiLU."""

    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        d = config.d_model
        self.dw = nn.Conv1d(
            d,
            d,
            config.patch_kernel,
            stride=config.patch_stride,
            padding=config.patch_padding,
            groups=d,
            bias=False,
        )
        self.pw = nn.Conv1d(d, d, 1, bias=False)
        self.bn = nn.BatchNorm1d(d, eps=config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.bn(self.pw(self.dw(x))))


class Mixer(nn.Module):
    """The Mamba mixer: input projection, causal depthwise convolution,
    selective scan gated by SiLU(z), and output projection."""

    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        d, di, n, r = config.d_model, config.d_inner, config.d_state, config.dt_rank
        self.d_inner = di
        self.d_state = n
        self.dt_rank = r
        self.d_conv = config.d_conv
        self.scan = config.scan
        self.scan_chunk = config.scan_chunk

        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        # Padding is applied by hand on the left only, which makes the
        # convolution causal without computing outputs that are dropped.
        self.conv1d = nn.Conv1d(di, di, config.d_conv, groups=di, bias=True)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.A_log = nn.Parameter(torch.empty(di, n))
        self.D = nn.Parameter(torch.empty(di))
        self.out_proj = nn.Linear(di, d, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Map tokens u [batch, T, d] to [batch, T, d]."""
        a, z = self.in_proj(u).split(self.d_inner, dim=-1)

        a = F.pad(a.transpose(1, 2), (self.d_conv - 1, 0))
        a = F.silu(self.conv1d(a)).transpose(1, 2)  # [batch, T, di]

        delta_low_rank, B, C = self.x_proj(a).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta_low_rank))
        A = -torch.exp(self.A_log)

        y = selective_scan(a, delta, A, B, C, self.D, z, self.scan, self.scan_chunk)
        return self.out_proj(y)


class Block(nn.Module):
    """x = LN_post(x + M(LN_pre(x)) + flip(M(flip(LN_pre(x))))), with the
    flipped term only when bidirectional. Both directions share one mixer."""

    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        self.bidirectional = config.bidirectional
        self.pre_norm = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.mixer = Mixer(config)
        self.post_norm = nn.LayerNorm(config.d_model, eps=config.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.pre_norm(x)
        total = x + self.mixer(u)
        if self.bidirectional:
            total = total + self.mixer(u.flip(1)).flip(1)
        return self.post_norm(total)


class MeanPooling(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=1)


class GatedPooling(nn.Module):
    """Context-gated temporal attention: alpha = softmax_t(tanh(W h_t + b) . context)."""

    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.context = nn.Parameter(torch.empty(config.d_model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.tanh(self.proj(h)) @ self.context  # [batch, T]
        weights = torch.softmax(scores, dim=1)
        return (weights.unsqueeze(-1) * h).sum(dim=1)


class Head(nn.Module):
    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.linear = nn.Linear(config.d_model, config.n_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(pooled))


class BabyMamba(nn.Module):
    """BabyMamba-HAR classifier for windows x [batch, L, C]; returns logits [batch, K]."""

    def __init__(self, config: BabyMambaConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.stem = Stem(config)
        self.patch = PatchEmbedding(config)
        self.pos_embed = nn.Parameter(torch.empty(config.n_tokens, config.d_model))
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.pool = GatedPooling(config) if config.pooling == "gated" else MeanPooling()
        self.head = Head(config)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise the parameters that PyTorch's layers leave empty.

        A_log starts at log(1..N) in every row, so each state decays at a
        different rate. dt_proj.bias starts at softplus^-1 of step sizes drawn
        log-uniformly from [1e-3, 1e-1], and D at 1. These are the usual Mamba
        initial values.
        """
        nn.init.normal_(self.pos_embed, std=0.02)
        for layer in self.layers:
            mixer = layer.mixer
            states = torch.arange(1, mixer.d_state + 1, dtype=mixer.A_log.dtype)
            mixer.A_log.copy_(torch.log(states).expand(mixer.d_inner, -1))
            mixer.D.fill_(1.0)
            step = torch.exp(
                torch.rand(mixer.d_inner) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3)
            )
            mixer.dt_proj.bias.copy_(step + torch.log(-torch.expm1(-step)))
        if isinstance(self.pool, GatedPooling):
            nn.init.normal_(self.pool.context, std=self.config.d_model ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        if x.dim() != 3 or x.shape[1] != config.window_length or x.shape[2] != config.n_channels:
            raise ValueError(
                f"input must have shape [batch, {config.window_length}, {config.n_channels}], got {list(x.shape)}"
            )
        batch = x.shape[0]

        # The ci family runs every channel through the backbone as its own
        # sequence, so channels become extra batch entries until pooling.
        streams = x.transpose(1, 2)
        if config.family == "ci":
            streams = streams.reshape(batch * config.n_channels, 1, config.window_length)

        h = self.patch(self.stem(streams))  # [streams, d, P]
        h = h.transpose(1, 2) + self.pos_embed  # [streams, P, d]
        for layer in self.layers:
            h = layer(h)
        pooled = self.pool(h)

        if config.family == "ci":
            pooled = pooled.reshape(batch, config.n_channels, config.d_model).mean(dim=1)
        return self.head(pooled)


def count_parameters(model: nn.Module) -> int:
    """Count trainable parameters; BatchNorm running statistics are buffers and excluded."""
    return sum(parameter.numel() for parameter in model.parameters())
