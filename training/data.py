"""Read the window data file that `babymamba prepare` writes, and split it by user.

The data file is a safetensors file with tensors `windows` (F32 [N, L, C],
unnormalised channels), `labels` (I32 [N], class index), `users` (I32 [N]),
`experiments` (I32 [N]) and `starts` (I64 [N], first row of each window in its
recording), and a JSON document in `__metadata__["babymamba"]` with format
"babymamba-dataset". The preprocessing that computes the channels lives in the
C library only: this module reads its output and never recomputes channels.
"""

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from safetensors_io import SafetensorsError, read_babymamba_document, read_safetensors

DATASET_FORMAT = "babymamba-dataset"
DATASET_FORMAT_VERSION = 1
METADATA_ENTRY = "babymamba"
TENSOR_DTYPES = {
    "windows": np.float32,
    "labels": np.int32,
    "users": np.int32,
    "experiments": np.int32,
    "starts": np.int64,
}

# The standard UCI-HAR split by person: these 9 users are the test set.
TEST_USERS = (2, 4, 9, 10, 12, 13, 18, 20, 24)

# Users held out from the 21 training users for early stopping and every
# hyperparameter choice. They are every fourth training user, starting from
# the second (sorted training users 1, 3, 5, 6, 7, 8, ...), a rule fixed
# before any model was trained, so no score picked them.
VALIDATION_USERS = (3, 8, 16, 22, 27)

# Units of the channel families that hapt-causal-v1 writes, used when the data
# file lists channel names without units.
CHANNEL_UNITS = {"body_acc": "g", "body_gyro": "rad/s", "total_acc": "g"}


class DatasetError(ValueError):
    """Raised when a data file is missing a tensor or its metadata is invalid."""


@dataclass
class Dataset:
    """The windows of one data file, with their labels and provenance."""

    windows: np.ndarray  # float32 [N, L, C]
    labels: np.ndarray  # int32 [N]
    users: np.ndarray  # int32 [N]
    experiments: np.ndarray  # int32 [N]
    starts: np.ndarray  # int64 [N]
    metadata: Dict[str, Any]
    sha256: str
    path: str

    @property
    def classes(self) -> List[str]:
        return list(self.metadata["classes"])

    @property
    def channels(self) -> List[Tuple[str, str]]:
        """(name, unit) pairs in channel order."""
        return [channel_with_unit(entry) for entry in self.metadata["channels"]]

    def subset(self, indices: np.ndarray) -> "Dataset":
        return Dataset(
            windows=self.windows[indices],
            labels=self.labels[indices],
            users=self.users[indices],
            experiments=self.experiments[indices],
            starts=self.starts[indices],
            metadata=self.metadata,
            sha256=self.sha256,
            path=self.path,
        )


def channel_with_unit(entry: Any) -> Tuple[str, str]:
    """Return (name, unit) for a metadata channel entry: a name, or an object with name and unit."""
    if isinstance(entry, dict):
        name, unit = entry.get("name"), entry.get("unit")
        if isinstance(name, str) and name and isinstance(unit, str) and unit:
            return name, unit
        raise DatasetError(f"channel entry {entry!r} must have non-empty string name and unit")
    if isinstance(entry, str):
        family = entry.rsplit("_", 1)[0]
        if family in CHANNEL_UNITS:
            return entry, CHANNEL_UNITS[family]
        raise DatasetError(
            f"channel {entry!r} has no unit in the data file and is not one of the known families "
            f"{sorted(CHANNEL_UNITS)}"
        )
    raise DatasetError(f"channel entry must be a name or an object, got {entry!r}")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parse_metadata(metadata: Dict[str, str], path: str) -> Dict[str, Any]:
    if METADATA_ENTRY not in metadata:
        raise DatasetError(f"{path}: __metadata__ has no {METADATA_ENTRY!r} entry; is it a data file from `babymamba prepare`?")
    document = read_babymamba_document(metadata, path, DATASET_FORMAT, DATASET_FORMAT_VERSION, DatasetError)
    for key in ("preprocessing", "sample_rate_hz", "window_length", "hop", "channels", "classes"):
        if key not in document:
            raise DatasetError(f"{path}: metadata is missing key {key!r}")
    for key in ("channels", "classes"):
        if not isinstance(document[key], list) or not document[key]:
            raise DatasetError(f"{path}: metadata {key} must be a non-empty list")
    return document


def load_dataset(path: str) -> Dataset:
    """Read a data file and check its tensors against each other and the metadata.

    Raises DatasetError for a missing or mistyped tensor, inconsistent shapes,
    labels outside the class list, or invalid metadata, and OSError when the
    file cannot be read.
    """
    try:
        tensors, metadata = read_safetensors(path)
    except SafetensorsError as error:
        raise DatasetError(str(error)) from error
    document = _parse_metadata(metadata, path)

    for name, dtype in TENSOR_DTYPES.items():
        if name not in tensors:
            raise DatasetError(f"{path}: missing tensor {name!r}")
        if tensors[name].dtype != np.dtype(dtype):
            raise DatasetError(f"{path}: tensor {name!r} has dtype {tensors[name].dtype}, expected {np.dtype(dtype)}")

    windows = tensors["windows"]
    count = windows.shape[0] if windows.ndim == 3 else -1
    expected_shape = (count, document["window_length"], len(document["channels"]))
    if windows.ndim != 3 or tuple(windows.shape) != expected_shape:
        raise DatasetError(
            f"{path}: windows has shape {list(windows.shape)}, expected [N, {document['window_length']}, "
            f"{len(document['channels'])}] from the metadata"
        )
    for name in ("labels", "users", "experiments", "starts"):
        if tensors[name].shape != (count,):
            raise DatasetError(f"{path}: tensor {name!r} has shape {list(tensors[name].shape)}, expected [{count}]")

    labels = tensors["labels"]
    n_classes = len(document["classes"])
    if count and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{path}: labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    if not np.isfinite(windows).all():
        raise DatasetError(f"{path}: windows contain NaN or infinite values")

    dataset = Dataset(
        windows=windows,
        labels=labels,
        users=tensors["users"],
        experiments=tensors["experiments"],
        starts=tensors["starts"],
        metadata=document,
        sha256=file_sha256(path),
        path=path,
    )
    dataset.channels  # raises DatasetError for a channel without a known unit
    return dataset


@dataclass
class Split:
    """Indices of the fit, validation and test windows, and the users of each part."""

    fit: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    fit_users: List[int]
    validation_users: List[int]
    test_users: List[int]


def split_by_user(dataset: Dataset, test_users: Sequence[int], validation_users: Sequence[int]) -> Split:
    """Split windows by user: test users, validation users, and everyone else to fit on.

    Raises DatasetError when the two user lists overlap or a part has no windows.
    """
    test_set, validation_set = set(test_users), set(validation_users)
    overlap = sorted(test_set & validation_set)
    if overlap:
        raise DatasetError(f"users {overlap} are listed as both test and validation users")

    users = dataset.users
    test = np.flatnonzero(np.isin(users, sorted(test_set)))
    validation = np.flatnonzero(np.isin(users, sorted(validation_set)))
    fit = np.flatnonzero(~np.isin(users, sorted(test_set | validation_set)))
    for name, indices, listed in (("test", test, test_set), ("validation", validation, validation_set), ("fit", fit, None)):
        if indices.size == 0:
            wanted = f" (users {sorted(listed)})" if listed else ""
            raise DatasetError(f"{dataset.path}: the {name} part{wanted} has no windows")

    return Split(
        fit=fit,
        validation=validation,
        test=test,
        fit_users=sorted(int(user) for user in np.unique(users[fit])),
        validation_users=sorted(int(user) for user in np.unique(users[validation])),
        test_users=sorted(int(user) for user in np.unique(users[test])),
    )


def normalization_stats(windows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Return per-channel mean and standard deviation over every sample of `windows` [N, L, C].

    Windows overlap, so a sample that lies in two windows counts twice. A
    channel with zero spread gets std 1, which leaves it centred but unscaled.
    """
    flat = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std[std == 0] = 1.0
    return mean, std
