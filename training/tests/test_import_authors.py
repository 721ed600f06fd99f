"""Tests of the converter for the BabyMamba-HAR authors' checkpoints.

The checkpoints are synthetic: one of our random models with its tensors
renamed to the authors' module names, and a positional table shorter than the
token count, as the authors' code stores it.
"""

import contextlib
import io
import os
import tempfile
import unittest
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import support  # noqa: F401  (puts training/ on sys.path)
import import_authors
from babymamba_export import load_model_with_metadata
from babymamba_model import BabyMamba, BabyMambaConfig
from import_authors import CheckpointError, convert_state_dict
from support import random_input, random_model

CAMEL_CASE_MIXER = {
    "A_log": "ALog",
    "in_proj.weight": "inProj.weight",
    "x_proj.weight": "xProj.weight",
    "dt_proj.weight": "dtProj.weight",
    "dt_proj.bias": "dtProj.bias",
    "out_proj.weight": "outProj.weight",
}


def authors_name(name: str, family: str, style: str) -> str:
    """Rename one of our tensor names to the authors' module name."""
    prefixes = [
        ("stem.conv.", "stem.0." if family == "cx" else "ciStem.conv."),
        ("stem.bn.", "stem.1." if family == "cx" else "ciStem.norm."),
        ("patch.dw.", "patchDepthwise."),
        ("patch.pw.", "patchPointwise."),
        ("patch.bn.", "patchNorm."),
        ("pool.proj.", "gatedAttention.projection."),
        ("pool.context", "gatedAttention.context"),
        ("head.norm.", "headNorm."),
        ("head.linear.", "headLinear."),
        ("pos_embed", "posEmbed"),
    ]
    for ours, theirs in prefixes:
        if name.startswith(ours):
            return theirs + name[len(ours):]

    _, index, module, leaf = name.split(".", 3)
    if module == "mixer":
        if style == "camelCase":
            leaf = CAMEL_CASE_MIXER.get(leaf, leaf)
        return f"mambaLayers.{index}.ssm.{leaf}"
    module = {"pre_norm": "preNorm", "post_norm": "postNorm"}[module]
    return f"mambaLayers.{index}.{module}.{leaf}"


def authors_state(model: BabyMamba, style: str, pos_table: torch.Tensor, context_shape=None):
    """Return the model's state dict under the authors' names, with `pos_table` as posEmbed."""
    state = {}
    for name, tensor in model.state_dict().items():
        key = authors_name(name, model.config.family, style)
        if name == "pos_embed":
            tensor = pos_table
        elif name == "pool.context" and context_shape is not None:
            tensor = tensor.reshape(context_shape)
        state[key] = tensor.clone()
    return state


def interpolate_by_hand(table: np.ndarray, tokens: int) -> np.ndarray:
    """Linear interpolation with align_corners=False, written out per row."""
    rows = table.shape[0]
    out = np.zeros((tokens, table.shape[1]), dtype=np.float64)
    for index in range(tokens):
        position = max((index + 0.5) * rows / tokens - 0.5, 0.0)
        low = min(int(np.floor(position)), rows - 1)
        high = min(low + 1, rows - 1)
        fraction = position - low
        out[index] = (1 - fraction) * table[low] + fraction * table[high]
    return out


CONFIG = BabyMambaConfig(d_model=8, d_state=4, expand=2, dt_rank=2, d_conv=4, n_layers=2, n_channels=9,
                         n_classes=6, window_length=128)


def build_checkpoint(family, pooling, style, seed=21, context_shape=None):
    """Return (our model with the interpolated table, authors' state dict, the short table)."""
    config = CONFIG.replace(family=family, pooling=pooling, scan=import_authors.STYLE_SCAN[style])
    model = random_model(config, seed)
    rows = (config.window_length - 16) // 4 + 1
    generator = torch.Generator().manual_seed(seed + 1)
    table = torch.randn(1, rows, config.d_model, generator=generator)
    state = authors_state(model, style, table, context_shape)
    with torch.no_grad():
        model.pos_embed.copy_(torch.from_numpy(interpolate_by_hand(table[0].numpy(), config.n_tokens)))
    return model, state, table


class ImportAuthorsTest(unittest.TestCase):
    def test_all_families_and_naming_styles(self):
        cases = [("cx", "mean", "mamba_ssm"), ("cx", "gated", "camelCase"),
                 ("ci", "gated", "mamba_ssm"), ("ci", "mean", "camelCase")]
        for family, pooling, style in cases:
            with self.subTest(family=family, pooling=pooling, style=style):
                reference, state, _ = build_checkpoint(family, pooling, style)
                imported, info = convert_state_dict(state)
                self.assertEqual(imported.config, reference.config)
                self.assertEqual(info["ssm_naming"], style)
                windows = random_input(reference.config, 3, seed=22)
                with torch.no_grad():
                    torch.testing.assert_close(imported(windows), reference(windows), rtol=1e-5, atol=1e-5)

    def test_scan_follows_naming_style(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        self.assertEqual(convert_state_dict(state)[0].config.scan, "exact")
        _, state, _ = build_checkpoint("cx", "mean", "camelCase")
        self.assertEqual(convert_state_dict(state)[0].config.scan, "chunked_clamped")
        self.assertEqual(convert_state_dict(state, scan="exact")[0].config.scan, "exact")

    def test_pos_embed_is_interpolated(self):
        _, state, table = build_checkpoint("cx", "mean", "mamba_ssm")
        imported, info = convert_state_dict(state)
        self.assertEqual(info["pos_embed_rows"], 29)
        self.assertEqual(tuple(imported.pos_embed.shape), (31, 8))
        expected = interpolate_by_hand(table[0].double().numpy(), 31)
        np.testing.assert_allclose(imported.pos_embed.detach().numpy(), expected, rtol=0, atol=1e-6)
        # The ends are clamped to the first and last rows of the table.
        np.testing.assert_allclose(imported.pos_embed[0].detach().numpy(), table[0, 0].numpy(), atol=1e-6)
        np.testing.assert_allclose(imported.pos_embed[-1].detach().numpy(), table[0, -1].numpy(), atol=1e-6)
        torch.testing.assert_close(
            imported.pos_embed.detach(),
            F.interpolate(table.transpose(1, 2), size=31, mode="linear", align_corners=False)[0].T,
        )

    def test_unexpected_pos_embed_length_warns(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            convert_state_dict(state, window_length=64)
        self.assertTrue(any("posEmbed" in str(warning.message) for warning in caught))

    def test_context_shapes_accepted(self):
        for shape in ((8,), (8, 1), (1, 8)):
            with self.subTest(shape=shape):
                reference, state, _ = build_checkpoint("cx", "gated", "mamba_ssm", context_shape=shape)
                imported, _ = convert_state_dict(state)
                torch.testing.assert_close(imported.pool.context, reference.pool.context)

    def test_forward_only_flag(self):
        _, state, _ = build_checkpoint("ci", "mean", "mamba_ssm")
        self.assertFalse(convert_state_dict(state, bidirectional=False)[0].config.bidirectional)

    def test_num_batches_tracked_ignored(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        state["stem.1.num_batches_tracked"] = torch.tensor(100)
        state["patchNorm.num_batches_tracked"] = torch.tensor(100)
        convert_state_dict(state)

    def test_unknown_key_named(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        state["mambaLayers.0.ssm.in_proj.bias"] = torch.zeros(32)
        with self.assertRaisesRegex(CheckpointError, r"unknown key 'mambaLayers\.0\.ssm\.in_proj\.bias'"):
            convert_state_dict(state)

    def test_mixed_naming_styles_rejected(self):
        _, state, _ = build_checkpoint("cx", "mean", "camelCase")
        state["mambaLayers.1.ssm.in_proj.weight"] = state.pop("mambaLayers.1.ssm.inProj.weight")
        with self.assertRaisesRegex(CheckpointError, r"'mambaLayers\.1\.ssm\.in_proj\.weight'"):
            convert_state_dict(state)

    def test_missing_key_named(self):
        _, state, _ = build_checkpoint("ci", "gated", "camelCase")
        del state["mambaLayers.1.ssm.dtProj.bias"]
        with self.assertRaisesRegex(CheckpointError, r"missing 'mambaLayers\.1\.ssm\.dtProj\.bias'"):
            convert_state_dict(state)

    def test_missing_stem_named(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        del state["stem.0.weight"]
        with self.assertRaisesRegex(CheckpointError, "stem.0.weight"):
            convert_state_dict(state)

    def test_wrong_shape_named(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        state["mambaLayers.1.ssm.D"] = torch.zeros(5)
        with self.assertRaisesRegex(CheckpointError, r"'mambaLayers\.1\.ssm\.D' has shape \[5\]"):
            convert_state_dict(state)

    def test_cx_channel_count_mismatch(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        with self.assertRaisesRegex(CheckpointError, "--channels"):
            convert_state_dict(state, n_channels=6)


class ImportCommandTest(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.directory.cleanup()

    def path(self, name):
        return os.path.join(self.directory.name, name)

    def run_main(self, arguments):
        output, errors = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
            status = import_authors.main(arguments)
        return status, output.getvalue(), errors.getvalue()

    def test_command_writes_loadable_model(self):
        model, state, _ = build_checkpoint("cx", "gated", "camelCase")
        torch.save({"model_state_dict": state, "epoch": 42, "best_f1": 0.91, "optimizer": {}}, self.path("ckpt.pt"))

        status, output, errors = self.run_main([self.path("ckpt.pt"), self.path("ucihar.safetensors")])
        self.assertEqual(status, 0, errors)
        self.assertIn("scan=chunked_clamped", output)

        loaded, document = load_model_with_metadata(self.path("ucihar.safetensors"))
        self.assertEqual(document["name"], "ucihar")
        self.assertEqual(document["classes"][0], "walking")
        self.assertEqual(len(document["classes"]), 6)
        self.assertEqual(document["input"]["channels"][3], {"name": "body_gyro_x", "unit": "rad/s"})
        self.assertEqual(document["input"]["hop"], 64)
        self.assertEqual(document["architecture"]["scan_chunk"], 32)
        self.assertEqual(document["training"]["checkpoint_fields"], {"epoch": 42, "best_f1": 0.91})
        windows = random_input(model.config, 2, seed=23)
        with torch.no_grad():
            torch.testing.assert_close(loaded(windows), model(windows), rtol=1e-5, atol=1e-5)

    def test_command_custom_input_spec(self):
        config = CONFIG.replace(family="ci", n_channels=3, n_classes=2, window_length=64)
        model = random_model(config, seed=24)
        state = authors_state(model, "mamba_ssm", torch.randn(1, 13, 8))
        torch.save({"model_state_dict": state}, self.path("ckpt.pt"))

        status, _, errors = self.run_main([
            self.path("ckpt.pt"), self.path("out.safetensors"), "--name", "wrist", "--classes", "rest,move",
            "--channels", "acc_x:m/s^2,acc_y:m/s^2,acc_z:m/s^2", "--window-length", "64", "--hop", "16",
            "--sample-rate", "25", "--mean", "0,0,9.8", "--std", "1,1,2", "--forward-only",
        ])
        self.assertEqual(status, 0, errors)
        loaded, document = load_model_with_metadata(self.path("out.safetensors"))
        self.assertEqual(document["classes"], ["rest", "move"])
        self.assertEqual(document["input"]["normalization"]["mean"], [0.0, 0.0, 9.8])
        self.assertEqual(document["input"]["sample_rate_hz"], 25)
        self.assertFalse(loaded.config.bidirectional)
        self.assertEqual(loaded.config.n_channels, 3)

    def test_command_reports_bad_checkpoint(self):
        torch.save({"state": {}}, self.path("bad.pt"))
        status, _, errors = self.run_main([self.path("bad.pt"), self.path("out.safetensors")])
        self.assertEqual(status, 1)
        self.assertIn("model_state_dict", errors)
        self.assertFalse(os.path.exists(self.path("out.safetensors")))

    def test_command_reports_class_count_mismatch(self):
        _, state, _ = build_checkpoint("cx", "mean", "mamba_ssm")
        torch.save({"model_state_dict": state}, self.path("ckpt.pt"))
        status, _, errors = self.run_main([self.path("ckpt.pt"), self.path("out.safetensors"), "--classes", "a,b"])
        self.assertEqual(status, 1)
        self.assertIn("class names", errors)


if __name__ == "__main__":
    unittest.main()
