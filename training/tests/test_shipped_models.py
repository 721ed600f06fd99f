"""The shipped models give the same class in the C engine and in PyTorch.

The windows come from the shipped real recording, cut by `babymamba prepare --align stream`
(the library's preprocessing, as the daemon runs it). `babymamba eval --predictions` gives the
C engine's class per window, and the exported model loaded back into PyTorch gives its own. The
two must agree on at least 99.9% of the windows, the bar the model card's figures rest on.

Needs the meson build (BABYMAMBA_BUILD_DIR, or build/ in the repository).
"""

import csv
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "experiments"))

import check_agreement  # noqa: E402
from data import load_dataset  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
BUILD = os.environ.get("BABYMAMBA_BUILD_DIR", os.path.join(ROOT, "build"))
CLI = os.path.join(BUILD, "src", "cli", "babymamba")
RECORDING = os.path.join(ROOT, "data", "samples", "hapt_exp04_user02.csv")
MODELS = [os.path.join(ROOT, "models", name) for name in ("ucihar-cx.safetensors", "ucihar-ci.safetensors")]


def write_hapt_folder(folder):
    """Write the recording as HAPT experiment 4 of user 2 for `babymamba prepare`."""
    raw = os.path.join(folder, "RawData")
    os.makedirs(raw)
    labels = []
    with open(RECORDING) as f, open(os.path.join(raw, "acc_exp04_user02.txt"), "w") as acc, \
            open(os.path.join(raw, "gyro_exp04_user02.txt"), "w") as gyro:
        for row in csv.DictReader(f):
            acc.write(f"{row['acc_x']} {row['acc_y']} {row['acc_z']}\n")
            gyro.write(f"{row['gyro_x']} {row['gyro_y']} {row['gyro_z']}\n")
            labels.append(int(row["label"]))
    with open(os.path.join(raw, "labels.txt"), "w") as f:
        start = None
        for i, label in enumerate(labels + [0]):
            if start is not None and label != labels[start]:
                f.write(f"4 2 {labels[start]} {start + 1} {i}\n")
                start = None
            if start is None and i < len(labels) and label != 0:
                start = i


@unittest.skipUnless(os.access(CLI, os.X_OK), f"{CLI} is not built; run meson setup build && ninja -C build")
class ShippedModelsAgree(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory(prefix="bm-shipped-")
        hapt = os.path.join(cls.work.name, "hapt")
        write_hapt_folder(hapt)
        cls.data_file = os.path.join(cls.work.name, "recording.safetensors")
        subprocess.run([CLI, "prepare", "--hapt", hapt, "--out", cls.data_file, "--align", "stream"],
                       check=True, capture_output=True)
        cls.dataset = load_dataset(cls.data_file)

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()

    def test_models_agree_with_pytorch(self):
        for path in MODELS:
            with self.subTest(model=os.path.basename(path)):
                indices, engine, _ = check_agreement.engine_predictions(CLI, path, self.data_file, None)
                self.assertEqual(len(engine), len(self.dataset.windows))
                self.assertEqual(indices.tolist(), list(range(len(self.dataset.windows))))

                torch_classes = check_agreement.torch_predictions(path, self.dataset.windows)
                same = int((engine == torch_classes).sum())
                self.assertGreaterEqual(same / len(torch_classes), 0.999,
                                        f"{len(torch_classes) - same} of {len(torch_classes)} windows differ")

if __name__ == "__main__":
    unittest.main(verbosity=2)
