"""Tests that the model's logits and gradients with the C selective scan match its plain scan.

scan_op.install_fast_scan replaces babymamba_model.selective_scan, the
function that every mixer looks up at call time. The library must be built
first (`meson setup build && ninja -C build`).
"""

import unittest
from unittest import mock

import torch

import support  # noqa: F401  (puts training/ on sys.path)
import babymamba_model
import scan_op
from babymamba_model import BabyMambaConfig
from support import random_input, random_model

# Small versions of both families, with the d_inner and d_state of their default training
# shapes: cx di 52, N 8; ci di 48, N 16. Both are bidirectional, so every mixer runs the scan twice.
CX_CONFIG = BabyMambaConfig(family="cx", d_model=26, d_state=8, n_layers=2, n_channels=3, n_classes=4,
                            window_length=64)
CI_CONFIG = BabyMambaConfig(family="ci", d_model=24, d_state=16, n_layers=2, n_channels=3, n_classes=4,
                            window_length=64, pooling="gated")


def logits_and_gradients(model, windows, loss_weights):
    """Return the logits and a dict of parameter gradients of sum(logits * loss_weights)."""
    model.zero_grad(set_to_none=True)
    logits = model(windows)
    (logits * loss_weights).sum().backward()
    gradients = {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()}
    return logits.detach(), gradients


def relative_error(actual, expected):
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale > 0 else 1.0)


class ModelFastScanTest(unittest.TestCase):
    def setUp(self):
        self.plain_scan = babymamba_model.selective_scan

    def tearDown(self):
        babymamba_model.selective_scan = self.plain_scan

    def run_both(self, config, seed, dtype=torch.float32):
        """Return (plain, fast) results of logits_and_gradients and the fast scan's call count."""
        model = random_model(config, seed).to(dtype).train()
        windows = random_input(config, batch=4, seed=seed).to(dtype)
        loss_weights = torch.randn(4, config.n_classes, generator=torch.Generator().manual_seed(seed)).to(dtype)

        plain = logits_and_gradients(model, windows, loss_weights)
        replaced = scan_op.install_fast_scan(babymamba_model)
        self.assertIs(replaced, self.plain_scan)
        with mock.patch.object(scan_op, "selective_scan_fast", wraps=scan_op.selective_scan_fast) as fast_scan:
            fast = logits_and_gradients(model, windows, loss_weights)
        return plain, fast, fast_scan.call_count

    def check_match(self, plain, fast):
        plain_logits, plain_gradients = plain
        fast_logits, fast_gradients = fast
        error = relative_error(fast_logits, plain_logits)
        self.assertLessEqual(error, 1e-5, f"logits: relative error {error:.3g}")
        self.assertEqual(set(fast_gradients), set(plain_gradients))
        for name, expected in plain_gradients.items():
            error = relative_error(fast_gradients[name], expected)
            self.assertLessEqual(error, 1e-4, f"gradient of {name}: relative error {error:.3g}")

    def test_cx_model_matches_plain_scan(self):
        plain, fast, calls = self.run_both(CX_CONFIG, seed=1)
        # Two layers, two directions each.
        self.assertEqual(calls, 4)
        self.check_match(plain, fast)

    def test_ci_model_matches_plain_scan(self):
        plain, fast, calls = self.run_both(CI_CONFIG, seed=2)
        self.assertEqual(calls, 4)
        self.check_match(plain, fast)

    def test_chunked_clamped_scan_uses_plain_scan(self):
        config = CX_CONFIG.replace(scan="chunked_clamped", scan_chunk=8)
        plain, fast, calls = self.run_both(config, seed=3)
        self.assertEqual(calls, 0)
        self.assertTrue(torch.equal(fast[0], plain[0]))

    def test_float64_model_uses_plain_scan(self):
        plain, fast, calls = self.run_both(CX_CONFIG, seed=4, dtype=torch.float64)
        self.assertEqual(calls, 0)
        self.assertTrue(torch.equal(fast[0], plain[0]))


if __name__ == "__main__":
    unittest.main()
