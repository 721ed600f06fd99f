"""Tests of the C selective scan in training/scan_op.py against the PyTorch token loop.

The library must be built first (`meson setup build && ninja -C build`).
Results are compared with the reference run in float32 and in float64. The
float64 run shows the error of the float32 kernels themselves. Errors are
measured relative to the largest magnitude of the expected tensor, because
elementwise relative errors of values near zero tell nothing about a float32
computation.
"""

import ctypes
import os
import random
import sys
import unittest
from unittest import mock

import torch
import torch.nn.functional as F

TRAINING_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if TRAINING_DIR not in sys.path:
    sys.path.insert(0, TRAINING_DIR)

import scan_op  # noqa: E402
from scan_op import selective_scan_fast, selective_scan_reference  # noqa: E402

NAMES = ("x", "delta", "A", "B", "C", "D", "z")
FORWARD_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4


def make_inputs(batch, length, d_inner, d_state, seed, delta_scale=1.0, A_scale=1.0):
    """Return float32 inputs (x, delta, A, B, C, D, z) shaped like the model's.

    delta is softplus of a normal sample times delta_scale. A is
    -exp(normal) times A_scale, so a negative A_scale gives a growing state.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=generator)

    x = normal(batch, length, d_inner)
    delta = F.softplus(normal(batch, length, d_inner)) * delta_scale
    A = -torch.exp(0.5 * normal(d_inner, d_state)) * A_scale
    B = normal(batch, length, d_state)
    C = normal(batch, length, d_state)
    D = normal(d_inner)
    z = normal(batch, length, d_inner)
    return [x, delta, A, B, C, D, z]


def relative_error(actual, expected):
    """Return max |actual - expected| divided by max |expected| (or by 1 if that is 0)."""
    expected = expected.double()
    scale = expected.abs().max().item() if expected.numel() else 0.0
    difference = (actual.double() - expected).abs().max().item() if expected.numel() else 0.0
    return difference / (scale if scale > 0 else 1.0)


def forward_and_gradients(scan, inputs, grad_out, dtype, **kwargs):
    """Run scan on copies of inputs in dtype; return the output and the seven gradients."""
    leaves = [tensor.detach().to(dtype).requires_grad_() for tensor in inputs]
    out = scan(*leaves, **kwargs)
    gradients = torch.autograd.grad(out, leaves, grad_out.to(dtype))
    return out.detach(), [gradient.detach() for gradient in gradients]


class ScanTestCase(unittest.TestCase):
    def assert_relative_close(self, actual, expected, tolerance, label):
        self.assertEqual(tuple(actual.shape), tuple(expected.shape), f"{label}: shape")
        self.assertTrue(torch.isfinite(actual).all().item(), f"{label}: non-finite values")
        error = relative_error(actual, expected)
        self.assertLessEqual(error, tolerance, f"{label}: relative error {error:.3g} > {tolerance:g}")

    def check_against_reference(self, inputs, label, forward_tolerance=FORWARD_TOLERANCE,
                                gradient_tolerance=GRADIENT_TOLERANCE, **kwargs):
        """Compare output and gradients of the fast scan with the reference in float32 and float64."""
        grad_out = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(99))
        out, gradients = forward_and_gradients(selective_scan_fast, inputs, grad_out, torch.float32, **kwargs)

        for dtype in (torch.float32, torch.float64):
            reference_out, reference_gradients = forward_and_gradients(
                selective_scan_reference, inputs, grad_out, dtype
            )
            self.assert_relative_close(out, reference_out, forward_tolerance, f"{label} out vs {dtype}")
            for name, gradient, expected in zip(NAMES, gradients, reference_gradients):
                self.assert_relative_close(gradient, expected, gradient_tolerance, f"{label} d{name} vs {dtype}")


class ForwardAndGradientTest(ScanTestCase):
    def test_training_shapes_match_reference(self):
        # The CX and CI shapes with a smaller batch: L 31, (di 52, N 8) and (di 48, N 16).
        for d_inner, d_state in ((52, 8), (48, 16)):
            with self.subTest(d_inner=d_inner, d_state=d_state):
                inputs = make_inputs(6, 31, d_inner, d_state, seed=d_inner, delta_scale=0.1)
                self.check_against_reference(inputs, f"di={d_inner} N={d_state}")

    def test_edge_shapes_match_reference(self):
        shapes = [(1, 1, 1, 1), (1, 1, 7, 3), (3, 1, 5, 4), (2, 9, 5, 1), (1, 17, 1, 6), (1, 40, 9, 16)]
        for batch, length, d_inner, d_state in shapes:
            with self.subTest(batch=batch, length=length, d_inner=d_inner, d_state=d_state):
                inputs = make_inputs(batch, length, d_inner, d_state, seed=batch * 1000 + length)
                self.check_against_reference(inputs, f"shape {(batch, length, d_inner, d_state)}")

    def test_random_shapes_match_reference(self):
        rng = random.Random(1234)
        for case in range(12):
            batch = rng.randint(1, 5)
            length = rng.randint(1, 40)
            d_inner = rng.randint(1, 20)
            d_state = rng.randint(1, 17)
            with self.subTest(case=case, batch=batch, length=length, d_inner=d_inner, d_state=d_state):
                inputs = make_inputs(batch, length, d_inner, d_state, seed=case, delta_scale=rng.choice([0.05, 1.0]))
                self.check_against_reference(inputs, f"case {case}", num_threads=rng.randint(1, 4))

    def test_underflowing_decays_stay_finite(self):
        # delta * A reaches about -1e4, so exp(delta * A) underflows to 0 in float32.
        inputs = make_inputs(3, 12, 6, 5, seed=7, delta_scale=20.0, A_scale=50.0)
        products = (inputs[1].unsqueeze(-1) * inputs[2]).flatten()
        self.assertLess(products.min().item(), -1000.0, "the case must contain underflowing decays")

        out = selective_scan_fast(*inputs)
        self.assertTrue(torch.isfinite(out).all().item())
        self.check_against_reference(inputs, "underflow")

    def test_decay_matches_exp_elementwise(self):
        # With L 2, N 1, A 1, x = (1, 0), delta = (1, v), B = (1, 0), C_1 = 2^-6, D 0 and
        # z 64 (SiLU(64) is 64 in float32), every step is exact except the exp, so
        # out[0, 1, d] = exp(v[d]). This checks the kernel's exp over its range.
        arguments = torch.cat([torch.linspace(-80.0, 88.0, 20001), torch.tensor([-87.0, -88.0, -100.0, -1e4])])
        d_inner = arguments.numel()
        x = torch.zeros(1, 2, d_inner)
        x[0, 0] = 1.0
        delta = torch.ones(1, 2, d_inner)
        delta[0, 1] = arguments
        A = torch.ones(d_inner, 1)
        B = torch.tensor([1.0, 0.0]).reshape(1, 2, 1)
        C = torch.tensor([0.0, 2.0**-6]).reshape(1, 2, 1)
        D = torch.zeros(d_inner)
        z = torch.full((1, 2, d_inner), 64.0)

        decays = selective_scan_fast(x, delta, A, B, C, D, z)[0, 1].double()
        expected = torch.exp(arguments.double())

        in_range = arguments >= -80.0
        relative = ((decays[in_range] - expected[in_range]).abs() / expected[in_range]).max().item()
        # 2 ulp of float32; the kernel's exp was measured at 1.22 ulp at most.
        self.assertLessEqual(relative, 2 * 2.0**-23)
        # Below about -87, exp(v) < 1.7e-38 and the kernel flushes it to zero.
        self.assertTrue(torch.all(decays[~in_range].abs() <= 1.7e-38).item())
        self.assertEqual(decays[-1].item(), 0.0)

    def test_growing_state_matches_reference(self):
        # A > 0 makes exp(delta * A) > 1, which covers positive arguments of the exp.
        inputs = make_inputs(2, 10, 6, 4, seed=11, delta_scale=0.3, A_scale=-1.0)
        self.assertGreater(inputs[2].min().item(), 0.0)
        self.check_against_reference(inputs, "growing state")

    def test_large_batch_dA_matches_float64(self):
        # dA and dD add one term per token of every sequence; the kernel sums them in double.
        inputs = make_inputs(512, 31, 4, 3, seed=5, delta_scale=0.1)
        grad_out = torch.randn(inputs[0].shape, generator=torch.Generator().manual_seed(3))
        _, gradients = forward_and_gradients(selective_scan_fast, inputs, grad_out, torch.float32)
        _, expected = forward_and_gradients(selective_scan_reference, inputs, grad_out, torch.float64)
        self.assert_relative_close(gradients[2], expected[2], 1e-5, "dA")
        self.assert_relative_close(gradients[5], expected[5], 1e-5, "dD")


class LayoutAndThreadTest(ScanTestCase):
    def test_non_contiguous_inputs_match_contiguous(self):
        batch, length, d_inner, d_state = 3, 8, 5, 4
        inputs = make_inputs(batch, length, d_inner, d_state, seed=21)
        # Views like the model's: x and z split from one projection, B and C from another, A transposed.
        projection = torch.cat([inputs[0], inputs[6]], dim=-1)
        x_view, z_view = projection.split(d_inner, dim=-1)
        state_projection = torch.cat([inputs[3], inputs[4]], dim=-1)
        B_view, C_view = state_projection.split(d_state, dim=-1)
        A_view = inputs[2].t().contiguous().t()
        views = [x_view, inputs[1], A_view, B_view, C_view, inputs[5], z_view]
        self.assertFalse(x_view.is_contiguous())
        self.assertFalse(B_view.is_contiguous())
        self.assertFalse(A_view.is_contiguous())

        grad_out = torch.randn(batch, length, d_inner, generator=torch.Generator().manual_seed(1))
        out_views, gradients_views = forward_and_gradients(selective_scan_fast, views, grad_out, torch.float32)
        out, gradients = forward_and_gradients(selective_scan_fast, inputs, grad_out, torch.float32)
        self.assertTrue(torch.equal(out_views, out))
        for name, actual, expected in zip(NAMES, gradients_views, gradients):
            self.assertTrue(torch.equal(actual, expected), f"d{name} differs for non-contiguous inputs")

    def test_thread_counts_agree(self):
        inputs = make_inputs(5, 9, 6, 4, seed=3)
        grad_out = torch.randn(5, 9, 6, generator=torch.Generator().manual_seed(4))
        out_one, gradients_one = forward_and_gradients(selective_scan_fast, inputs, grad_out, torch.float32, num_threads=1)
        for threads in (2, 3, 5, 8):
            with self.subTest(threads=threads):
                out, gradients = forward_and_gradients(
                    selective_scan_fast, inputs, grad_out, torch.float32, num_threads=threads
                )
                # Per-sequence results do not depend on the split; only the sums dA and dD may round differently.
                self.assertTrue(torch.equal(out, out_one))
                for name, actual, expected in zip(NAMES, gradients, gradients_one):
                    if name in ("A", "D"):
                        self.assert_relative_close(actual, expected, 1e-6, f"d{name}")
                    else:
                        self.assertTrue(torch.equal(actual, expected), f"d{name} changes with {threads} threads")

    def test_partial_requires_grad(self):
        inputs = make_inputs(2, 5, 3, 2, seed=8)
        x = inputs[0].clone().requires_grad_()
        A = inputs[2].clone().requires_grad_()
        out = selective_scan_fast(x, inputs[1], A, inputs[3], inputs[4], inputs[5], inputs[6])
        out.sum().backward()
        self.assertIsNotNone(x.grad)
        self.assertIsNotNone(A.grad)
        for index in (1, 3, 4, 5, 6):
            self.assertIsNone(inputs[index].grad)

        expected_x = inputs[0].clone().requires_grad_()
        expected_A = inputs[2].clone().requires_grad_()
        selective_scan_reference(expected_x, inputs[1], expected_A, *inputs[3:]).sum().backward()
        self.assert_relative_close(x.grad, expected_x.grad, GRADIENT_TOLERANCE, "dx")
        self.assert_relative_close(A.grad, expected_A.grad, GRADIENT_TOLERANCE, "dA")

    def test_no_grad_forward_matches_reference(self):
        inputs = make_inputs(2, 6, 4, 3, seed=2)
        with torch.no_grad():
            out = selective_scan_fast(*inputs)
            expected = selective_scan_reference(*inputs)
        self.assertFalse(out.requires_grad)
        self.assert_relative_close(out, expected, FORWARD_TOLERANCE, "out")

    def test_double_backward_raises(self):
        # The upstream gradient depends on weights, so a second derivative would need the
        # backward pass to be differentiable. It must raise, not return a wrong value.
        inputs = [tensor.requires_grad_() for tensor in make_inputs(2, 3, 4, 2, seed=6)]
        weights = torch.randn(2, 3, 4, requires_grad=True)
        out = selective_scan_fast(*inputs)
        (gradient_x,) = torch.autograd.grad((out * weights).sum(), inputs[0], create_graph=True)
        with self.assertRaisesRegex(RuntimeError, "once_differentiable"):
            gradient_x.sum().backward()

    def test_empty_batch(self):
        inputs = [tensor.requires_grad_() for tensor in make_inputs(0, 4, 3, 2, seed=0)]
        out = selective_scan_fast(*inputs)
        self.assertEqual(tuple(out.shape), (0, 4, 3))
        out.sum().backward()
        self.assertTrue(torch.equal(inputs[2].grad, torch.zeros(3, 2)))
        self.assertTrue(torch.equal(inputs[5].grad, torch.zeros(3)))


class ValidationTest(unittest.TestCase):
    def test_rejects_float64(self):
        inputs = [tensor.double() for tensor in make_inputs(1, 2, 3, 2, seed=0)]
        with self.assertRaisesRegex(TypeError, "float32 CPU tensors only"):
            selective_scan_fast(*inputs)

    def test_rejects_wrong_shapes(self):
        inputs = make_inputs(2, 3, 4, 5, seed=0)
        cases = {
            "delta": torch.zeros(2, 3, 5),
            "A": torch.zeros(5, 5),
            "B": torch.zeros(2, 3, 4),
            "C": torch.zeros(2, 2, 5),
            "D": torch.zeros(5),
            "z": torch.zeros(2, 4, 4),
        }
        for name, bad in cases.items():
            with self.subTest(name=name):
                arguments = list(inputs)
                arguments[NAMES.index(name)] = bad
                with self.assertRaisesRegex(ValueError, f"^{name} must have shape"):
                    selective_scan_fast(*arguments)

    def test_rejects_bad_thread_count(self):
        inputs = make_inputs(1, 2, 3, 2, seed=0)
        for value in (0, -1, 1.5, True):
            with self.subTest(value=value):
                with self.assertRaisesRegex(ValueError, "num_threads must be a positive integer"):
                    selective_scan_fast(*inputs, num_threads=value)

    def test_thread_count_from_environment(self):
        with mock.patch.dict(os.environ, {scan_op.THREADS_ENV: "3"}):
            self.assertEqual(scan_op.default_num_threads(), 3)
        with mock.patch.dict(os.environ, {scan_op.THREADS_ENV: "zero"}):
            with self.assertRaisesRegex(ValueError, "BABYMAMBA_SCAN_THREADS must be a positive integer"):
                scan_op.default_num_threads()
        with mock.patch.dict(os.environ, {scan_op.THREADS_ENV: ""}):
            self.assertGreaterEqual(scan_op.default_num_threads(), 1)

    def test_c_api_rejects_invalid_arguments(self):
        library = scan_op.load_library()
        # Shape (batch 1, L 1, di 2, N 2): every array fits in 4 floats. Outputs must not alias inputs.
        buffers = [torch.zeros(4) for _ in range(15)]
        pointers = [buffer.data_ptr() for buffer in buffers[:8]]
        valid = library.bm_scan_train_forward(1, 1, 2, 2, *pointers, 1)
        self.assertEqual(valid, 0)

        invalid_calls = {
            "zero batch": (0, 1, 2, 2, *pointers, 1),
            "negative length": (1, -1, 2, 2, *pointers, 1),
            "zero threads": (1, 1, 2, 2, *pointers, 0),
            "NULL x": (1, 1, 2, 2, None, *pointers[1:], 1),
            "overflowing size": (2**62, 2**62, 2, 2, *pointers, 1),
        }
        for label, arguments in invalid_calls.items():
            with self.subTest(label=label):
                self.assertEqual(library.bm_scan_train_forward(*arguments), 1)
        message = library.bm_scan_train_status_message(1).decode()
        self.assertIn("invalid argument", message)

        gradient_pointers = [buffer.data_ptr() for buffer in buffers]
        self.assertEqual(library.bm_scan_train_backward(1, 1, 2, 2, *gradient_pointers, 1), 0)
        self.assertEqual(library.bm_scan_train_backward(1, 1, 2, 2, *gradient_pointers[:-1], None, 1), 1)


class LibraryLoadingTest(unittest.TestCase):
    def setUp(self):
        self.saved_library = scan_op._library
        scan_op._library = None

    def tearDown(self):
        scan_op._library = self.saved_library

    def test_missing_library_names_build_command(self):
        environment = {scan_op.LIBRARY_ENV: "", scan_op.BUILD_DIR_ENV: "/nonexistent/build"}
        with mock.patch.dict(os.environ, environment):
            with self.assertRaisesRegex(FileNotFoundError, r"meson setup build && ninja -C build"):
                scan_op.load_library()

    def test_missing_override_file_is_named(self):
        with mock.patch.dict(os.environ, {scan_op.LIBRARY_ENV: "/nonexistent/libscan.so"}):
            with self.assertRaisesRegex(FileNotFoundError, "BABYMAMBA_SCAN_LIB is set to /nonexistent/libscan.so"):
                scan_op.load_library()

    def test_library_path_precedence(self):
        with mock.patch.dict(os.environ, {scan_op.LIBRARY_ENV: "/a/lib.so", scan_op.BUILD_DIR_ENV: "/b"}):
            self.assertEqual(str(scan_op.library_path()), "/a/lib.so")
        with mock.patch.dict(os.environ, {scan_op.LIBRARY_ENV: "", scan_op.BUILD_DIR_ENV: "/b"}):
            self.assertEqual(scan_op.library_path().parent.as_posix(), "/b/src/lib")
        with mock.patch.dict(os.environ, {scan_op.LIBRARY_ENV: "", scan_op.BUILD_DIR_ENV: ""}):
            self.assertEqual(scan_op.library_path().parent, scan_op.REPO_ROOT / "build" / "src" / "lib")

    def test_loaded_library_reports_abi_version(self):
        library = scan_op.load_library()
        self.assertIsInstance(library, ctypes.CDLL)
        self.assertEqual(library.bm_scan_train_abi_version(), scan_op.ABI_VERSION)


if __name__ == "__main__":
    unittest.main()
