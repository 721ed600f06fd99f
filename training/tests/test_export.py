"""Tests of the model file writer and reader."""

import contextlib
import io
import json
import os
import re
import tempfile
import unittest

import numpy as np
import torch

import support  # noqa: F401  (puts training/ on sys.path)
import babymamba_export
from babymamba_export import FORMAT_VERSION, ModelFileError, load_model, load_model_with_metadata, make_input_spec, save_model
from babymamba_model import BabyMambaConfig
from safetensors_io import SafetensorsError, decode_safetensors, encode_safetensors, read_safetensors, write_safetensors
from support import REPOSITORY_DIR, random_input, random_model

CONFIG = BabyMambaConfig(d_model=8, d_state=4, expand=2, dt_rank=1, d_conv=4, n_layers=2, pooling="gated",
                         n_channels=3, n_classes=4, window_length=64)
CLASSES = ["a", "b", "c", "d"]


def input_spec(config=CONFIG):
    return make_input_spec([(f"ch{i}", "g") for i in range(config.n_channels)], 50, config.window_length,
                           config.window_length // 2)


class ExportTest(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.directory.name, "model.safetensors")

    def tearDown(self):
        self.directory.cleanup()

    def save(self, model, **overrides):
        arguments = dict(classes=CLASSES, input_spec=input_spec(model.config), name="test", version="0.1.0",
                         training_info={"seed": 1})
        arguments.update(overrides)
        save_model(self.path, model, **arguments)

    def rewrite(self, change_tensors=None, change_document=None):
        """Edit the saved file's tensors or metadata document in place."""
        tensors, metadata = read_safetensors(self.path)
        document = json.loads(metadata["babymamba"])
        if change_tensors:
            change_tensors(tensors)
        if change_document:
            change_document(document)
        write_safetensors(self.path, tensors, {"babymamba": json.dumps(document)})

    def test_round_trip_keeps_logits(self):
        for family, scan, chunk in (("cx", "exact", 32), ("ci", "chunked_clamped", 8)):
            config = CONFIG.replace(family=family, scan=scan, scan_chunk=chunk)
            model = random_model(config, seed=11)
            self.save(model)
            loaded, document = load_model_with_metadata(self.path)
            windows = random_input(config, 3, seed=12)
            with torch.no_grad(), self.subTest(family=family, scan=scan):
                self.assertEqual(loaded.config, config)
                self.assertEqual(document["classes"], CLASSES)
                self.assertEqual(document["training"], {"seed": 1})
                torch.testing.assert_close(loaded(windows), model(windows), rtol=0, atol=0)

    def test_format_version_is_one(self):
        self.assertEqual(FORMAT_VERSION, 1)
        self.save(random_model(CONFIG, seed=1))
        document = json.loads(read_safetensors(self.path)[1]["babymamba"])
        self.assertEqual(document["format"], "babymamba-model")
        self.assertEqual(document["format_version"], 1)

    def test_format_version_matches_c_header(self):
        header = os.path.join(REPOSITORY_DIR, "include", "babymamba", "model.h")
        if not os.path.exists(header):
            self.skipTest("include/babymamba/model.h does not exist yet")
        with open(header, encoding="utf-8") as stream:
            match = re.search(r"#\s*define\s+BM_MODEL_FORMAT_VERSION\s+(\d+)", stream.read())
        self.assertIsNotNone(match, "BM_MODEL_FORMAT_VERSION is not defined in include/babymamba/model.h")
        self.assertEqual(int(match.group(1)), FORMAT_VERSION)

    def test_file_contains_exactly_spec_tensors(self):
        self.save(random_model(CONFIG, seed=1))
        tensors, _ = read_safetensors(self.path)
        self.assertFalse([name for name in tensors if "num_batches_tracked" in name])
        self.assertTrue(all(array.dtype == np.float32 for array in tensors.values()))
        self.assertIn("pool.context", tensors)

    def test_metadata_layout(self):
        self.save(random_model(CONFIG.replace(scan="chunked_clamped", scan_chunk=16), seed=1))
        document = json.loads(read_safetensors(self.path)[1]["babymamba"])
        self.assertEqual(document["architecture"]["scan_chunk"], 16)
        self.assertEqual(document["input"]["normalization"], {"mean": [0, 0, 0], "std": [1, 1, 1]})
        self.save(random_model(CONFIG, seed=1))
        document = json.loads(read_safetensors(self.path)[1]["babymamba"])
        self.assertNotIn("scan_chunk", document["architecture"])

    def test_float64_model_written_as_f32(self):
        self.save(random_model(CONFIG, seed=1).double())
        tensors, _ = read_safetensors(self.path)
        self.assertEqual({array.dtype for array in tensors.values()}, {np.dtype(np.float32)})

    def test_save_rejects_mismatched_metadata(self):
        model = random_model(CONFIG, seed=1)
        with self.assertRaisesRegex(ModelFileError, "class names"):
            self.save(model, classes=["a"])
        with self.assertRaisesRegex(ModelFileError, "channels"):
            self.save(model, input_spec=make_input_spec([("x", "g")], 50, 64, 32))
        with self.assertRaisesRegex(ModelFileError, "window_length"):
            self.save(model, input_spec=make_input_spec([("x", "g")] * 3, 50, 128, 64))

    def test_load_rejects_other_format_version(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_document=lambda document: document.update(format_version=2))
        with self.assertRaisesRegex(ModelFileError, "format_version"):
            load_model(self.path)

    def test_load_rejects_unused_tensor(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_tensors=lambda tensors: tensors.update({"extra.weight": np.zeros(3, np.float32)}))
        with self.assertRaisesRegex(ModelFileError, "extra.weight"):
            load_model(self.path)

    def test_load_rejects_missing_tensor(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_tensors=lambda tensors: tensors.pop("layers.1.mixer.D"))
        with self.assertRaisesRegex(ModelFileError, "layers.1.mixer.D"):
            load_model(self.path)

    def test_load_rejects_wrong_shape(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_tensors=lambda tensors: tensors.update({"pos_embed": np.zeros((3, 8), np.float32)}))
        with self.assertRaisesRegex(ModelFileError, "pos_embed.*shape"):
            load_model(self.path)

    def test_load_rejects_f64_tensor(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_tensors=lambda tensors: tensors.update(
            {"head.linear.bias": tensors["head.linear.bias"].astype(np.float64)}))
        with self.assertRaisesRegex(ModelFileError, "head.linear.bias.*F32"):
            load_model(self.path)

    def test_load_rejects_unknown_architecture_key(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_document=lambda document: document["architecture"].update(heads=2))
        with self.assertRaisesRegex(ModelFileError, "heads"):
            load_model(self.path)

    def test_load_rejects_scan_chunk_with_exact_scan(self):
        self.save(random_model(CONFIG, seed=1))
        self.rewrite(change_document=lambda document: document["architecture"].update(scan_chunk=8))
        with self.assertRaisesRegex(ModelFileError, "scan_chunk"):
            load_model(self.path)

    def test_check_option_prints_summary(self):
        self.save(random_model(CONFIG, seed=1))
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            status = babymamba_export.main(["--check", self.path])
        self.assertEqual(status, 0)
        self.assertIn("parameters: ", output.getvalue())
        self.assertIn("classes (4): a, b, c, d", output.getvalue())

    def test_check_option_reports_missing_file(self):
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            status = babymamba_export.main(["--check", os.path.join(self.directory.name, "absent.safetensors")])
        self.assertEqual(status, 1)
        self.assertIn("cannot read", errors.getvalue())


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_all_dtypes(self):
        tensors = {
            "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
            "f64": np.array([1.5, -2.25]),
            "i32": np.array([-1, 2], dtype=np.int32),
            "i64": np.array([[7]], dtype=np.int64),
            "u8": np.array([0, 255, 3], dtype=np.uint8),
            "scalar": np.float32(2.0),
            "empty": np.zeros((0, 4), dtype=np.float32),
        }
        decoded, metadata = decode_safetensors(encode_safetensors(tensors, {"key": "value"}))
        self.assertEqual(metadata, {"key": "value"})
        self.assertEqual(sorted(decoded), sorted(tensors))
        for name, array in tensors.items():
            np.testing.assert_array_equal(decoded[name], array)
            self.assertEqual(decoded[name].dtype, np.asarray(array).dtype, name)

    def test_layout_is_aligned_and_contiguous(self):
        payload = encode_safetensors({"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float64),
                                      "c": np.zeros(5, np.uint8)})
        header_length = int.from_bytes(payload[:8], "little")
        self.assertEqual(header_length % 8, 0)
        header = json.loads(payload[8 : 8 + header_length])
        spans = sorted(entry["data_offsets"] for entry in header.values())
        self.assertEqual(spans[0][0], 0)
        for previous, following in zip(spans, spans[1:]):
            self.assertEqual(previous[1], following[0])
        self.assertEqual(spans[-1][1], len(payload) - 8 - header_length)
        for entry in header.values():
            itemsize = {"F64": 8, "F32": 4, "U8": 1}[entry["dtype"]]
            self.assertEqual(entry["data_offsets"][0] % itemsize, 0)

    def test_encoding_is_deterministic(self):
        tensors = {"z": np.ones(2, np.float32), "a": np.zeros(3, np.float32)}
        self.assertEqual(encode_safetensors(tensors), encode_safetensors(dict(reversed(list(tensors.items())))))

    def test_truncated_file_rejected(self):
        payload = encode_safetensors({"a": np.zeros(4, np.float32)})
        with self.assertRaisesRegex(SafetensorsError, "'a'.*outside"):
            decode_safetensors(payload[:-1])
        with self.assertRaisesRegex(SafetensorsError, "header length"):
            decode_safetensors(payload[:20])
        with self.assertRaisesRegex(SafetensorsError, "shorter than"):
            decode_safetensors(payload[:5])

    def test_inconsistent_entry_rejected(self):
        def payload_with(entry):
            header = json.dumps({"a": entry}).encode()
            header += b" " * (-len(header) % 8)
            return len(header).to_bytes(8, "little") + header + bytes(16)

        cases = {
            "dtype": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
            "shape": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]},
            "span": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},
            "data_offsets": {"dtype": "F32", "shape": [1], "data_offsets": [0]},
        }
        for message, entry in cases.items():
            with self.subTest(message), self.assertRaisesRegex(SafetensorsError, message):
                decode_safetensors(payload_with(entry))

    def test_non_object_header_rejected(self):
        header = b"[1, 2]  "
        with self.assertRaisesRegex(SafetensorsError, "expected an object"):
            decode_safetensors(len(header).to_bytes(8, "little") + header)


if __name__ == "__main__":
    unittest.main()
