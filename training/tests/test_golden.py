"""Tests of training/make_golden.py and the files it wrote to tests/golden."""

import contextlib
import filecmp
import json
import os
import tempfile
import unittest

import numpy as np
import torch

import support  # noqa: F401  (puts training/ on sys.path)
import make_golden
from babymamba_export import load_model_with_metadata
from babymamba_model import count_parameters
from safetensors_io import read_safetensors
from support import GOLDEN_DIR, reference_logits

MAX_GOLDEN_BYTES = 2 * 1024 * 1024


def generate(directory):
    """Run make_golden.py into `directory` and return the file names written."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        status = make_golden.main(["--output", directory])
    if status != 0:
        raise AssertionError(f"make_golden.py exited with status {status}")
    return sorted(os.listdir(directory))


class GoldenFilesTest(unittest.TestCase):
    """Check the committed golden files against the model code."""

    def setUp(self):
        manifest_path = os.path.join(GOLDEN_DIR, "manifest.json")
        if not os.path.exists(manifest_path):
            self.skipTest("tests/golden/manifest.json is missing; run training/make_golden.py")
        with open(manifest_path, encoding="utf-8") as stream:
            self.manifest = json.load(stream)

    def test_manifest_lists_every_variant(self):
        names = [entry["name"] for entry in self.manifest["variants"]]
        self.assertEqual(names, [variant.name for variant in make_golden.golden_variants()])

    def test_variants_cover_required_cases(self):
        entries = self.manifest["variants"]
        self.assertEqual({entry["family"] for entry in entries}, {"cx", "ci"})
        self.assertEqual({entry["pooling"] for entry in entries}, {"mean", "gated"})
        self.assertEqual({entry["bidirectional"] for entry in entries}, {True, False})
        self.assertEqual({entry["scan"] for entry in entries}, {"exact", "chunked_clamped"})
        self.assertEqual({entry["window_length"] for entry in entries}, {64, 128})
        self.assertTrue({1, 3, 6, 9, 11} <= {entry["n_channels"] for entry in entries})
        self.assertTrue(all(2 <= entry["n_classes"] <= 12 for entry in entries))
        self.assertTrue(any(entry.get("max_abs_clamp_effect", 0) > 0.01 for entry in entries))

    def test_stored_logits_match_model(self):
        for entry in self.manifest["variants"]:
            name = entry["name"]
            with self.subTest(name):
                model, document = load_model_with_metadata(os.path.join(GOLDEN_DIR, f"{name}.safetensors"))
                io_tensors, _ = read_safetensors(os.path.join(GOLDEN_DIR, f"{name}.io.safetensors"))
                self.assertEqual(sorted(io_tensors), ["input", "logits_f32", "logits_f64"])
                self.assertEqual(io_tensors["input"].dtype, np.float32)
                self.assertEqual(io_tensors["logits_f32"].dtype, np.float32)
                self.assertEqual(io_tensors["logits_f64"].dtype, np.float64)
                self.assertEqual(count_parameters(model), entry["parameters"])
                self.assertEqual(document["training"], {"golden": True, "seed": entry["seed"]})

                windows = torch.from_numpy(io_tensors["input"])
                self.assertEqual(list(windows.shape), [entry["batch"], entry["window_length"], entry["n_channels"]])
                with torch.no_grad():
                    logits_f32 = model(windows).numpy()
                    logits_f64 = model.double()(windows.double()).numpy()
                np.testing.assert_allclose(logits_f32, io_tensors["logits_f32"], rtol=0, atol=1e-5)
                np.testing.assert_allclose(logits_f64, io_tensors["logits_f64"], rtol=0, atol=1e-12)
                np.testing.assert_allclose(io_tensors["logits_f32"], io_tensors["logits_f64"], rtol=0, atol=1e-4)

    def test_float64_logits_match_numpy_reference(self):
        for entry in self.manifest["variants"]:
            name = entry["name"]
            with self.subTest(name):
                model, _ = load_model_with_metadata(os.path.join(GOLDEN_DIR, f"{name}.safetensors"))
                io_tensors, _ = read_safetensors(os.path.join(GOLDEN_DIR, f"{name}.io.safetensors"))
                expected = reference_logits(model, torch.from_numpy(io_tensors["input"]))
                np.testing.assert_allclose(io_tensors["logits_f64"], expected, rtol=0, atol=1e-12)

    def test_total_size_is_small(self):
        total = sum(os.path.getsize(os.path.join(GOLDEN_DIR, name)) for name in os.listdir(GOLDEN_DIR))
        self.assertLess(total, MAX_GOLDEN_BYTES)


class MakeGoldenDeterminismTest(unittest.TestCase):
    def test_two_runs_write_identical_files(self):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            names = generate(first)
            self.assertEqual(generate(second), names)
            self.assertIn("manifest.json", names)
            _, mismatched, errors = filecmp.cmpfiles(first, second, names, shallow=False)
            self.assertEqual(mismatched + errors, [])

            # The committed files must be what the script writes now, or the C
            # tests compare the engine against stale vectors.
            if os.path.isdir(GOLDEN_DIR):
                _, stale, absent = filecmp.cmpfiles(first, GOLDEN_DIR, names, shallow=False)
                self.assertEqual(stale + absent, [], "tests/golden is stale; rerun training/make_golden.py")


if __name__ == "__main__":
    unittest.main()
