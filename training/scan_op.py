"""Selective scan for training, with a forward and backward pass written in C.

`selective_scan_fast` computes the same function as `selective_scan_reference`:
for each sequence and token t,

    h_t   = exp(delta_t * A) * h_{t-1} + (delta_t * x_t) outer B_t,   h_{-1} = 0
    y_t   = sum_n h_t[:, n] * C_t[n] + D * x_t
    out_t = y_t * SiLU(z_t)

Shapes: x, delta, z are [batch, L, di]; A is [di, N]; B, C are [batch, L, N];
D is [di]. delta is the step size after softplus and A is usually -exp(A_log).

The C code lives in src/lib/scan_train.c and is built by meson into
build/src/lib/libbabymamba_scan.so. See `library_path` for the environment
variables that point elsewhere.
"""

import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

ABI_VERSION = 1
LIBRARY_ENV = "BABYMAMBA_SCAN_LIB"
BUILD_DIR_ENV = "BABYMAMBA_BUILD_DIR"
THREADS_ENV = "BABYMAMBA_SCAN_THREADS"
REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_HINT = f"run `meson setup build && ninja -C build` in {REPO_ROOT}"

_library = None
_library_lock = threading.Lock()


def _library_file_name() -> str:
    if sys.platform == "darwin":
        return "libbabymamba_scan.dylib"
    return "libbabymamba_scan.so"


def library_path() -> Path:
    """Return the path of the scan library that `load_library` opens.

    In order of precedence: the file named by BABYMAMBA_SCAN_LIB, src/lib/ in
    the meson build directory named by BABYMAMBA_BUILD_DIR (which
    tests/run_all.sh sets), and build/src/lib/ under the repository root.
    """
    library_file = os.environ.get(LIBRARY_ENV)
    if library_file:
        return Path(library_file)
    build_dir = os.environ.get(BUILD_DIR_ENV)
    if build_dir:
        return Path(build_dir) / "src" / "lib" / _library_file_name()
    return REPO_ROOT / "build" / "src" / "lib" / _library_file_name()


def _declare_functions(library: ctypes.CDLL) -> None:
    float_pointer = ctypes.c_void_p
    dims = [ctypes.c_int64] * 4

    library.bm_scan_train_abi_version.argtypes = []
    library.bm_scan_train_abi_version.restype = ctypes.c_int
    library.bm_scan_train_status_message.argtypes = [ctypes.c_int]
    library.bm_scan_train_status_message.restype = ctypes.c_char_p

    # x, delta, A, B, C, D, z, out, then num_threads.
    library.bm_scan_train_forward.argtypes = dims + [float_pointer] * 8 + [ctypes.c_int]
    library.bm_scan_train_forward.restype = ctypes.c_int
    # x, delta, A, B, C, D, z, dout, then dx, ddelta, dA, dB, dC, dD, dz, then num_threads.
    library.bm_scan_train_backward.argtypes = dims + [float_pointer] * 15 + [ctypes.c_int]
    library.bm_scan_train_backward.restype = ctypes.c_int


def load_library() -> ctypes.CDLL:
    """Open the scan library once and return it.

    Raises FileNotFoundError with the build command when the library is
    missing, and RuntimeError when it was built from another ABI version.
    """
    global _library
    with _library_lock:
        if _library is not None:
            return _library

        path = library_path()
        if not path.is_file():
            if os.environ.get(LIBRARY_ENV):
                raise FileNotFoundError(f"{LIBRARY_ENV} is set to {path}, but that file does not exist")
            raise FileNotFoundError(f"selective scan library not found at {path}: {BUILD_HINT}")

        library = ctypes.CDLL(str(path))
        _declare_functions(library)
        version = library.bm_scan_train_abi_version()
        if version != ABI_VERSION:
            raise RuntimeError(
                f"{path} has scan ABI version {version}, but scan_op.py expects {ABI_VERSION}: "
                f"rebuild it ({BUILD_HINT})"
            )
        _library = library
        return library


def default_num_threads() -> int:
    """Return the thread count used when a call does not give one.

    BABYMAMBA_SCAN_THREADS takes precedence when set. Otherwise the result is
    torch.get_num_threads(), unless that is 1, and then the number of CPUs
    this process may run on. Debian 12's python3-torch 1.13 reported 1 thread
    on a 2-core machine (torch.__config__.parallel_info()), and the scan's
    threads never run at the same time as torch's own.
    """
    configured = os.environ.get(THREADS_ENV)
    if configured:
        try:
            value = int(configured)
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {configured!r}") from None
        if value < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {configured!r}")
        return value

    threads = torch.get_num_threads()
    if threads > 1:
        return threads
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _check_status(status: int, function: str) -> None:
    if status != 0:
        message = load_library().bm_scan_train_status_message(status).decode()
        raise RuntimeError(f"{function} failed with status {status}: {message}")


def _check_inputs(x, delta, A, B, C, D, z) -> Tuple[int, int, int, int]:
    """Raise ValueError or TypeError unless the inputs fit the kernel; return (batch, L, di, N)."""
    tensors = {"x": x, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype != torch.float32 or tensor.device.type != "cpu":
            raise TypeError(
                f"selective_scan_fast supports float32 CPU tensors only, but {name} is "
                f"{tensor.dtype} on {tensor.device}; use selective_scan_reference for other types"
            )

    if x.dim() != 3:
        raise ValueError(f"x must have shape [batch, L, di], got {list(x.shape)}")
    batch, length, d_inner = x.shape
    if A.dim() != 2 or A.shape[0] != d_inner:
        raise ValueError(f"A must have shape [di={d_inner}, N], got {list(A.shape)}")
    d_state = A.shape[1]
    if d_inner == 0 or d_state == 0:
        raise ValueError(f"d_inner and d_state must be positive, got di={d_inner}, N={d_state}")

    expected = {
        "delta": (delta, [batch, length, d_inner]),
        "z": (z, [batch, length, d_inner]),
        "B": (B, [batch, length, d_state]),
        "C": (C, [batch, length, d_state]),
        "D": (D, [d_inner]),
    }
    for name, (tensor, shape) in expected.items():
        if list(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {list(tensor.shape)}")
    return batch, length, d_inner, d_state


def _pointer(tensor: torch.Tensor) -> int:
    return tensor.data_ptr()


class SelectiveScanFn(torch.autograd.Function):
    """Autograd function over the C kernels; inputs as in `selective_scan_fast`.

    The forward pass keeps only its inputs. The backward pass recomputes the
    states in C, so no [batch, L, di, N] tensor is ever stored. The backward
    pass is not differentiable itself, so double backward raises.
    """

    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, z, num_threads: int):
        batch, length, d_inner, d_state = _check_inputs(x, delta, A, B, C, D, z)
        inputs = [tensor.contiguous() for tensor in (x, delta, A, B, C, D, z)]
        ctx.save_for_backward(*inputs)
        ctx.num_threads = num_threads

        out = torch.empty(batch, length, d_inner, dtype=torch.float32)
        if batch == 0 or length == 0:
            return out

        library = load_library()
        status = library.bm_scan_train_forward(
            batch, length, d_inner, d_state, *[_pointer(tensor) for tensor in inputs], _pointer(out), num_threads
        )
        _check_status(status, "bm_scan_train_forward")
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        x, delta, A, B, C, D, z = ctx.saved_tensors
        batch, length, d_inner = x.shape
        d_state = A.shape[1]
        if batch == 0 or length == 0:
            grads = [torch.zeros_like(tensor) for tensor in (x, delta, A, B, C, D, z)]
        else:
            # The kernel overwrites every element, so the buffers need no zeroing.
            grads = [torch.empty_like(tensor) for tensor in (x, delta, A, B, C, D, z)]
            dout = dout.to(torch.float32).contiguous()
            dx, ddelta, dA, dB, dC, dD, dz = grads
            library = load_library()
            status = library.bm_scan_train_backward(
                batch, length, d_inner, d_state,
                *[_pointer(tensor) for tensor in (x, delta, A, B, C, D, z, dout)],
                *[_pointer(tensor) for tensor in (dx, ddelta, dA, dB, dC, dD, dz)],
                ctx.num_threads,
            )
            _check_status(status, "bm_scan_train_backward")

        needed = ctx.needs_input_grad
        return tuple(grad if needed[index] else None for index, grad in enumerate(grads)) + (None,)


def selective_scan_fast(x, delta, A, B, C, D, z, *, num_threads: Optional[int] = None) -> torch.Tensor:
    """Run the gated selective scan in C and return out [batch, L, di].

    Same arguments and result as `selective_scan_reference`, for float32 CPU
    tensors of any strides. Gradients flow to all seven inputs; dA and dD are
    summed over the batch. num_threads defaults to `default_num_threads()`.
    Raises TypeError for other dtypes or devices.
    """
    if num_threads is None:
        num_threads = default_num_threads()
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    return SelectiveScanFn.apply(x, delta, A, B, C, D, z, num_threads)


def selective_scan_reference(x, delta, A, B, C, D, z) -> torch.Tensor:
    """Run the gated selective scan as a plain token loop and return out [batch, L, di].

    This is the specification that the C kernels are tested against; autograd
    differentiates it. Works for any dtype and device.
    """
    batch, length, d_inner = x.shape
    h = x.new_zeros(batch, d_inner, A.shape[1])
    outputs = []
    for t in range(length):
        delta_t = delta[:, t].unsqueeze(-1)  # [batch, di, 1]
        h = torch.exp(delta_t * A) * h + (delta_t * x[:, t].unsqueeze(-1)) * B[:, t].unsqueeze(1)
        outputs.append((h * C[:, t].unsqueeze(1)).sum(dim=-1) + D * x[:, t])
    if not outputs:
        return x.new_zeros(batch, 0, d_inner)
    return torch.stack(outputs, dim=1) * F.silu(z)


def install_fast_scan(model_module) -> Callable:
    """Replace `model_module.selective_scan` so that the exact scan runs in C.

    `model_module` is training/babymamba_model.py (imported as a module), whose
    mixer looks `selective_scan(a, delta, A, B, C, D, z, scan, chunk)` up at
    call time. The installed function calls `selective_scan_fast` for
    scan == "exact" on float32 CPU tensors and the replaced function for
    anything else (the chunked, clamped scan, other dtypes and devices).
    Returns the replaced function, so that the caller can put it back.
    """
    plain_scan = model_module.selective_scan

    def selective_scan(a, delta, A, B, C, D, z, scan="exact", chunk=None):
        tensors = (a, delta, A, B, C, D, z)
        if scan == "exact" and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors):
            return selective_scan_fast(a, delta, A, B, C, D, z)
        if chunk is None:
            return plain_scan(a, delta, A, B, C, D, z, scan)
        return plain_scan(a, delta, A, B, C, D, z, scan, chunk)

    model_module.selective_scan = selective_scan
    return plain_scan
