"""Read and write safetensors files with numpy only.

The `safetensors` Python package is not installed on the build machines, and
the format is small: an 8-byte little-endian header length n, n bytes of JSON
header, then the raw little-endian tensor bytes. Offsets in the header count
from the first byte after the header.
"""

import json
import os
import struct
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

# Safetensors dtype names and the numpy dtypes with the same little-endian
# byte layout. Only the dtypes that babymamba files use are supported.
DTYPES = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
}

METADATA_KEY = "__metadata__"

# A header larger than this is rejected before it is read, so a corrupt length
# field cannot make the reader allocate gigabytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """Raised when a file is not a valid safetensors file."""


def _dtype_name(array: np.ndarray) -> str:
    for name, dtype in DTYPES.items():
        if array.dtype == dtype:
            return name
    supported = ", ".join(str(dtype) for dtype in DTYPES.values())
    raise SafetensorsError(f"unsupported numpy dtype {array.dtype}; supported: {supported}")


def encode_safetensors(
    tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None
) -> bytes:
    """Encode named arrays and string metadata as safetensors bytes.

    The output is a pure function of the input, so identical tensors give
    identical files. Tensors are laid out by decreasing element size, then by
    name, so every tensor starts at a multiple of its element size (the header
    is padded to a multiple of 8). The data has no gaps, which the reference
    safetensors implementation requires.
    """
    if METADATA_KEY in tensors:
        raise SafetensorsError(f"tensor name {METADATA_KEY!r} is reserved for metadata")

    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise SafetensorsError(f"tensor name must be a non-empty string, got {name!r}")
        array = np.asarray(value)
        dtype_name = _dtype_name(array)
        arrays[name] = (dtype_name, np.ascontiguousarray(array, dtype=DTYPES[dtype_name]))

    layout = sorted(arrays, key=lambda name: (-arrays[name][1].itemsize, name))

    header: Dict[str, object] = {}
    if metadata is not None:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SafetensorsError(
                    f"metadata keys and values must be strings, got {key!r}: {type(value).__name__}"
                )
        header[METADATA_KEY] = dict(metadata)

    offset = 0
    chunks = []
    for name in layout:
        dtype_name, array = arrays[name]
        data = array.tobytes(order="C")
        header[name] = {
            "dtype": dtype_name,
            "shape": [int(dim) for dim in array.shape],
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)

    header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(chunks)


def write_safetensors(
    path: str, tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None
) -> None:
    """Write named arrays and string metadata to a safetensors file.

    The file is written under a temporary name and renamed, so a reader never
    sees a half-written file.
    """
    payload = encode_safetensors(tensors, metadata)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as stream:
        stream.write(payload)
    os.replace(temporary, path)


def decode_safetensors(payload: bytes, source: str = "<bytes>") -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Decode safetensors bytes into (tensors, metadata).

    Raises SafetensorsError naming `source` and the offending tensor when the
    header is malformed or a tensor's offsets, dtype or shape are inconsistent.
    """
    if len(payload) < 8:
        raise SafetensorsError(f"{source}: file is {len(payload)} bytes, shorter than the 8-byte header length")
    (header_length,) = struct.unpack("<Q", payload[:8])
    if header_length > len(payload) - 8 or header_length > MAX_HEADER_BYTES:
        raise SafetensorsError(
            f"{source}: header length {header_length} does not fit the file of {len(payload)} bytes"
        )

    try:
        header = json.loads(payload[8 : 8 + header_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"{source}: header is not valid JSON: {error}") from error
    if not isinstance(header, dict):
        raise SafetensorsError(f"{source}: header is a JSON {type(header).__name__}, expected an object")

    metadata = header.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise SafetensorsError(f"{source}: {METADATA_KEY} must map strings to strings")

    data = memoryview(payload)[8 + header_length :]
    tensors = {}
    for name, entry in header.items():
        tensors[name] = _decode_tensor(name, entry, data, source)
    return tensors, metadata


def _decode_tensor(name: str, entry: object, data: memoryview, source: str) -> np.ndarray:
    where = f"{source}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SafetensorsError(f"{where}: header entry is not an object")

    dtype_name = entry.get("dtype")
    if dtype_name not in DTYPES:
        raise SafetensorsError(f"{where}: unsupported dtype {dtype_name!r}, expected one of {sorted(DTYPES)}")
    dtype = DTYPES[dtype_name]

    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        raise SafetensorsError(f"{where}: shape {shape!r} is not a list of non-negative integers")

    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(value, int) and not isinstance(value, bool) for value in offsets)
    ):
        raise SafetensorsError(f"{where}: data_offsets {offsets!r} is not a pair of integers")
    begin, end = offsets
    if not 0 <= begin <= end <= len(data):
        raise SafetensorsError(f"{where}: data_offsets {offsets} outside the {len(data)} data bytes")

    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if end - begin != count * dtype.itemsize:
        raise SafetensorsError(
            f"{where}: data_offsets span {end - begin} bytes, expected {count * dtype.itemsize} "
            f"for {dtype_name} {shape}"
        )
    return np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()


def read_safetensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Read a safetensors file and return (tensors, metadata)."""
    with open(path, "rb") as stream:
        payload = stream.read()
    return decode_safetensors(payload, source=path)


def read_babymamba_document(metadata, source, expected_format, expected_version, error_type):
    """Parse the babymamba entry of a file's __metadata__ and check its format and version.

    Model files and data files both keep one JSON document under the key "babymamba"; the caller
    names the format it expects and the exception type to raise, whose message names source.
    """
    if "babymamba" not in metadata:
        raise error_type(f"{source}: __metadata__ has no 'babymamba' entry")
    try:
        document = json.loads(metadata["babymamba"])
    except json.JSONDecodeError as error:
        raise error_type(f"{source}: __metadata__.babymamba is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise error_type(f"{source}: __metadata__.babymamba must be a JSON object")
    if document.get("format") != expected_format:
        raise error_type(f"{source}: format is {document.get('format')!r}, expected {expected_format!r}")
    if document.get("format_version") != expected_version:
        raise error_type(
            f"{source}: format_version is {document.get('format_version')!r}, this reader supports "
            f"{expected_version}"
        )
    return document
