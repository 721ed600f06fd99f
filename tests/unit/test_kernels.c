/*
 * The numeric kernels against values computed by hand or in double precision.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "kernels.h"

START_TEST(softplus_matches_pytorch_threshold)
{
    /* Below the threshold: log(1 + e^x). Above 20: x itself, as PyTorch's default. */
    ck_assert_float_eq_tol(bm__softplus(0.0f), (float)log(2.0), 1e-7f);
    ck_assert_float_eq_tol(bm__softplus(-5.0f), (float)log1p(exp(-5.0)), 1e-9f);
    ck_assert_float_eq_tol(bm__softplus(19.5f), (float)log1p(exp(19.5)), 1e-5f);
    ck_assert_float_eq(bm__softplus(20.5f), 20.5f);
    ck_assert_float_eq(bm__softplus(1e4f), 1e4f);
    ck_assert_float_eq(bm__softplus(-1e4f), 0.0f);
}
END_TEST

START_TEST(silu_is_finite_at_extremes)
{
    ck_assert_float_eq_tol(bm__silu(1.0f), (float)(1.0 / (1.0 + exp(-1.0))), 1e-7f);
    ck_assert_float_eq(bm__silu(1e4f), 1e4f);
    ck_assert(isfinite(bm__silu(-1e4f)));
    ck_assert_float_eq_tol(bm__silu(-1e4f), 0.0f, 1e-30f);
}
END_TEST

START_TEST(layer_norm_matches_double)
{
    float x[5] = {1e4f, -1e4f, 3.0f, 0.5f, 7.25f};
    float weight[5] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
    float bias[5] = {0.0f, 0.1f, -0.2f, 0.3f, 0.0f};
    float out[5];
    bm__layer_norm(x, weight, bias, 5, 1e-5f, out);

    double mean = 0.0, var = 0.0;
    for (int i = 0; i < 5; i++) {
        mean += x[i] / 5.0;
    }
    for (int i = 0; i < 5; i++) {
        var += (x[i] - mean) * (x[i] - mean) / 5.0;
    }
    for (int i = 0; i < 5; i++) {
        double expected = (x[i] - mean) / sqrt(var + 1e-5) * weight[i] + bias[i];
        ck_assert_double_eq_tol(out[i], expected, 1e-5);
    }
}
END_TEST

START_TEST(matvec_bias_computes_rows)
{
    /* W = [[1, 2, 3], [4, 5, 6]], passed transposed. */
    float w[6] = {1, 4, 2, 5, 3, 6};
    float x[3] = {1, -1, 2};
    float b[2] = {0.5f, -0.5f};
    float y[2];
    bm__matvec_bias(w, b, x, y, 2, 3);
    ck_assert_float_eq(y[0], 1 - 2 + 6 + 0.5f);
    ck_assert_float_eq(y[1], 4 - 5 + 12 - 0.5f);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, softplus_matches_pytorch_threshold);
    tcase_add_test(tc, silu_is_finite_at_extremes);
    tcase_add_test(tc, layer_norm_matches_double);
    tcase_add_test(tc, matvec_bias_computes_rows);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
