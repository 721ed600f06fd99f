"""Tests of the BabyMamba module against the format specification."""

import unittest

import numpy as np
import torch

import support  # noqa: F401  (puts training/ on sys.path)
import babymamba_model
from babymamba_model import BabyMamba, BabyMambaConfig, count_parameters
from support import random_input, random_model, reference_logits

SMALL = BabyMambaConfig(d_model=6, d_state=3, expand=2, dt_rank=1, d_conv=3, n_layers=2, n_channels=2,
                        n_classes=3, window_length=32)


def spec_tensor_names(config: BabyMambaConfig):
    """List the tensor names that docs/model-format.md requires for a config."""
    names = ["stem.conv.weight", "patch.dw.weight", "patch.pw.weight", "pos_embed"]
    for norm in ("stem.bn", "patch.bn"):
        names += [f"{norm}.{field}" for field in ("weight", "bias", "running_mean", "running_var")]
    for index in range(config.n_layers):
        prefix = f"layers.{index}."
        names += [prefix + "pre_norm.weight", prefix + "pre_norm.bias",
                  prefix + "post_norm.weight", prefix + "post_norm.bias"]
        names += [prefix + "mixer." + leaf for leaf in (
            "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
            "dt_proj.bias", "A_log", "D", "out_proj.weight")]
    if config.pooling == "gated":
        names += ["pool.proj.weight", "pool.proj.bias", "pool.context"]
    names += ["head.norm.weight", "head.norm.bias", "head.linear.weight", "head.linear.bias"]
    return sorted(names)


class ModelStructureTest(unittest.TestCase):
    def test_published_cx_parameter_count(self):
        model = BabyMamba(BabyMambaConfig())
        self.assertEqual(count_parameters(model), 27306)

    def test_state_dict_names_match_spec(self):
        for family in ("cx", "ci"):
            for pooling in ("mean", "gated"):
                config = SMALL.replace(family=family, pooling=pooling)
                with self.subTest(family=family, pooling=pooling):
                    names = [name for name in BabyMamba(config).state_dict() if "num_batches_tracked" not in name]
                    self.assertEqual(sorted(names), spec_tensor_names(config))

    def test_tensor_shapes_match_spec(self):
        config = SMALL.replace(family="cx", pooling="gated", n_channels=5, n_classes=4)
        state = BabyMamba(config).state_dict()
        d, di, n, r, p = 6, 12, 3, 1, config.n_tokens
        expected = {
            "stem.conv.weight": (d, 5, 5),
            "patch.dw.weight": (d, 1, 16),
            "patch.pw.weight": (d, d, 1),
            "pos_embed": (p, d),
            "layers.1.mixer.in_proj.weight": (2 * di, d),
            "layers.1.mixer.conv1d.weight": (di, 1, 3),
            "layers.1.mixer.x_proj.weight": (r + 2 * n, di),
            "layers.1.mixer.dt_proj.weight": (di, r),
            "layers.1.mixer.A_log": (di, n),
            "layers.1.mixer.out_proj.weight": (d, di),
            "pool.proj.weight": (d, d),
            "pool.context": (d,),
            "head.linear.weight": (4, d),
        }
        for name, shape in expected.items():
            self.assertEqual(tuple(state[name].shape), shape, name)

    def test_ci_stem_has_one_input_channel(self):
        state = BabyMamba(SMALL.replace(family="ci", n_channels=7)).state_dict()
        self.assertEqual(tuple(state["stem.conv.weight"].shape), (6, 1, 5))

    def test_token_count(self):
        self.assertEqual(BabyMambaConfig(window_length=128).n_tokens, 31)
        self.assertEqual(BabyMambaConfig(window_length=64).n_tokens, 15)

    def test_invalid_config_names_field(self):
        with self.assertRaisesRegex(ValueError, "family"):
            BabyMamba(SMALL.replace(family="xx"))
        with self.assertRaisesRegex(ValueError, "stem_kernel"):
            BabyMamba(SMALL.replace(stem_kernel=4))
        with self.assertRaisesRegex(ValueError, "d_state"):
            BabyMamba(SMALL.replace(d_state=0))

    def test_wrong_input_shape_rejected(self):
        model = BabyMamba(SMALL)
        with self.assertRaisesRegex(ValueError, r"\[batch, 32, 2\]"):
            model(torch.zeros(1, 2, 32))


class ModelFunctionTest(unittest.TestCase):
    """Compare the module with the numpy reference written from the specification."""

    def check_against_reference(self, config, weights="normal", seed=1):
        model = random_model(config, seed, weights).double()
        windows = random_input(config, 2, seed + 100).double()
        with torch.no_grad():
            actual = model(windows).numpy()
        np.testing.assert_allclose(actual, reference_logits(model, windows), rtol=0, atol=1e-10)

    def test_cx_bidirectional_mean(self):
        self.check_against_reference(SMALL.replace(family="cx"))

    def test_cx_forward_only_gated(self):
        self.check_against_reference(SMALL.replace(family="cx", bidirectional=False, pooling="gated"))

    def test_ci_bidirectional_gated(self):
        self.check_against_reference(SMALL.replace(family="ci", pooling="gated", n_channels=3))

    def test_ci_other_patch_geometry(self):
        self.check_against_reference(
            SMALL.replace(family="ci", stem_kernel=3, patch_kernel=8, patch_stride=2, patch_padding=1)
        )

    def test_chunked_clamped_with_biting_clamps(self):
        config = SMALL.replace(scan="chunked_clamped", scan_chunk=4)
        self.check_against_reference(config, weights="clamps")


class SelectiveScanTest(unittest.TestCase):
    def scan_inputs(self, delta_scale, a_log_scale, tokens=37, seed=3):
        generator = torch.Generator().manual_seed(seed)
        batch, d_inner, n = 2, 5, 4
        a = torch.randn(batch, tokens, d_inner, generator=generator, dtype=torch.float64)
        delta = torch.rand(batch, tokens, d_inner, generator=generator, dtype=torch.float64) * delta_scale
        A = -torch.exp(torch.rand(d_inner, n, generator=generator, dtype=torch.float64) * a_log_scale)
        B = torch.randn(batch, tokens, n, generator=generator, dtype=torch.float64)
        C = torch.randn(batch, tokens, n, generator=generator, dtype=torch.float64)
        D = torch.randn(d_inner, generator=generator, dtype=torch.float64)
        z = torch.randn(batch, tokens, d_inner, generator=generator, dtype=torch.float64)
        return a, delta, A, B, C, D, z

    def test_chunked_equals_exact_without_clamping(self):
        # delta * A stays above -0.1, so no decay reaches the 1e-6 floor and
        # a chunk of up to 37 tokens keeps S above -3.7, far from -20.
        inputs = self.scan_inputs(delta_scale=0.1, a_log_scale=0.0)
        exact = babymamba_model.selective_scan(*inputs, scan="exact")
        for chunk in (1, 4, 8, 32, 64):
            with self.subTest(chunk=chunk):
                chunked = babymamba_model.selective_scan(*inputs, scan="chunked_clamped", chunk=chunk)
                torch.testing.assert_close(chunked, exact, rtol=1e-12, atol=1e-12)

    def test_chunked_differs_when_clamps_bite(self):
        inputs = self.scan_inputs(delta_scale=3.0, a_log_scale=4.0)
        exact = babymamba_model.selective_scan(*inputs, scan="exact")
        chunked = babymamba_model.selective_scan(*inputs, scan="chunked_clamped", chunk=8)
        self.assertGreater(float((exact - chunked).abs().max()), 1e-3)

    def test_model_chunked_equals_exact_without_clamping(self):
        config = SMALL.replace(window_length=64, scan="chunked_clamped", scan_chunk=4)
        chunked = random_model(config, seed=5)
        with torch.no_grad():
            for layer in chunked.layers:
                layer.mixer.A_log.fill_(-3.0)
                layer.mixer.dt_proj.bias.fill_(-3.0)
                layer.mixer.dt_proj.weight.mul_(0.01)
        exact = BabyMamba(config.replace(scan="exact")).eval()
        exact.load_state_dict(chunked.state_dict())
        windows = random_input(config, 3, seed=6)
        with torch.no_grad():
            torch.testing.assert_close(chunked(windows), exact(windows), rtol=1e-5, atol=1e-6)

    def test_unknown_scan_rejected(self):
        inputs = self.scan_inputs(delta_scale=0.1, a_log_scale=0.0, tokens=3)
        with self.assertRaisesRegex(ValueError, "scan"):
            babymamba_model.selective_scan(*inputs, scan="parallel")

    def test_scan_function_is_replaceable(self):
        calls = []
        original = babymamba_model.selective_scan

        def counting_scan(*args, **kwargs):
            calls.append(args[0].shape)
            return original(*args, **kwargs)

        model = random_model(SMALL, seed=7)
        babymamba_model.selective_scan = counting_scan
        try:
            with torch.no_grad():
                model(random_input(SMALL, 3, seed=8))
        finally:
            babymamba_model.selective_scan = original
        # Two layers, two directions each, all windows batched in one call.
        self.assertEqual(len(calls), 4)
        self.assertEqual(tuple(calls[0]), (3, SMALL.n_tokens, SMALL.d_inner))

    def test_gradients_reach_scan_parameters(self):
        model = BabyMamba(SMALL.replace(scan="chunked_clamped", scan_chunk=4)).train()
        loss = model(random_input(SMALL, 4, seed=9)).logsumexp(dim=1).mean()
        loss.backward()
        for name in ("A_log", "D", "dt_proj.bias"):
            gradient = dict(model.named_parameters())[f"layers.0.mixer.{name}"].grad
            self.assertIsNotNone(gradient, name)
            self.assertTrue(torch.isfinite(gradient).all(), name)


if __name__ == "__main__":
    unittest.main()
