/*
 * Unit tests of the streaming resampler: pass-through on the grid, interpolation of jittered
 * and slower input, box-filter averaging of faster input, and its rejection of bad arguments.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/resample.h"

#define MAX_OUT 4096

typedef struct collected {
    int count;
    int64_t t_ns[MAX_OUT];
    float value[MAX_OUT];
} collected;

static void collect(void *user, int64_t t_ns, const float *values)
{
    collected *out = user;
    if (out->count < MAX_OUT) {
        out->t_ns[out->count] = t_ns;
        out->value[out->count] = values[0];
        out->count++;
    }
}

static bm_resampler *make(double rate_hz)
{
    bm_resampler *resampler = NULL;
    ck_assert_int_eq(bm_resampler_create(1, rate_hz, &resampler, NULL), BM_OK);
    return resampler;
}

START_TEST(on_grid_input_passes_through)
{
    bm_resampler *resampler = make(50.0);
    static collected out;
    out.count = 0;

    for (int i = 0; i < 500; i++) {
        float value = sinf(0.37f * (float)i) * 3.0f + (float)i;
        bm_resampler_push(resampler, 1700000000000000000LL + (int64_t)i * 20000000LL, &value,
                          collect, &out);
    }

    ck_assert_int_eq(out.count, 500);
    for (int i = 0; i < 500; i++) {
        float value = sinf(0.37f * (float)i) * 3.0f + (float)i;
        ck_assert_float_eq(out.value[i], value);
        ck_assert_int_eq(out.t_ns[i], 1700000000000000000LL + (int64_t)i * 20000000LL);
    }
    ck_assert(!bm_resampler_is_averaging(resampler));
    ck_assert_double_eq_tol(bm_resampler_input_rate_hz(resampler), 50.0, 1e-9);
    bm_resampler_destroy(resampler);
}
END_TEST

START_TEST(sub_microsecond_jitter_passes_through)
{
    bm_resampler *resampler = make(50.0);
    static collected out;
    out.count = 0;

    /* Timestamps sent as float seconds near 1.7e9 carry rounding of a few hundred ns. */
    for (int i = 0; i < 200; i++) {
        float value = (float)(i * i % 17);
        int64_t jitter = (i % 3 - 1) * 300;
        bm_resampler_push(resampler, (int64_t)i * 20000000LL + jitter, &value, collect, &out);
    }

    ck_assert_int_eq(out.count, 200);
    for (int i = 0; i < 200; i++)
        ck_assert_float_eq(out.value[i], (float)(i * i % 17));
    bm_resampler_destroy(resampler);
}
END_TEST

START_TEST(slower_input_is_interpolated)
{
    bm_resampler *resampler = make(50.0);
    static collected out;
    out.count = 0;

    /* A ramp at 25 Hz: the 50 Hz outputs in between lie on the same ramp. */
    for (int i = 0; i < 100; i++) {
        float value = 2.0f * (float)i;
        bm_resampler_push(resampler, (int64_t)i * 40000000LL, &value, collect, &out);
    }

    ck_assert_int_eq(out.count, 199);
    for (int k = 0; k < out.count; k++) {
        ck_assert_int_eq(out.t_ns[k], (int64_t)k * 20000000LL);
        ck_assert_float_eq_tol(out.value[k], (float)k, 1e-4f);
    }
    bm_resampler_destroy(resampler);
}
END_TEST

START_TEST(faster_input_is_averaged)
{
    bm_resampler *resampler = make(50.0);
    static collected out;
    out.count = 0;

    /* A 100 Hz signal alternating +1/-1 is at the Nyquist rate of the input and far above the
     * output's: averaging over each output period must remove it. A plain interpolation would
     * alias it to a constant +1. */
    for (int i = 0; i < 400; i++) {
        float value = 5.0f + ((i % 2) != 0 ? -1.0f : 1.0f);
        bm_resampler_push(resampler, (int64_t)i * 10000000LL, &value, collect, &out);
    }

    ck_assert(bm_resampler_is_averaging(resampler));
    ck_assert_double_eq_tol(bm_resampler_input_rate_hz(resampler), 100.0, 1e-6);
    ck_assert_int_ge(out.count, 195);
    for (int k = 20; k < out.count; k++) {
        ck_assert_float_eq_tol(out.value[k], 5.0f, 1e-3f);
        ck_assert_int_eq(out.t_ns[k], (int64_t)k * 20000000LL);
    }
    bm_resampler_destroy(resampler);
}
END_TEST

START_TEST(non_increasing_time_is_rejected)
{
    bm_resampler *resampler = make(50.0);
    static collected out;
    out.count = 0;
    float value = 1.0f;

    ck_assert_int_eq(bm_resampler_push(resampler, 1000, &value, collect, &out), BM_OK);
    ck_assert_int_eq(bm_resampler_push(resampler, 1000, &value, collect, &out), BM_ERR_RANGE);
    ck_assert_int_eq(bm_resampler_push(resampler, 999, &value, collect, &out), BM_ERR_RANGE);
    ck_assert_int_eq(out.count, 1);

    bm_resampler_reset(resampler);
    ck_assert_int_eq(bm_resampler_push(resampler, 5, &value, collect, &out), BM_OK);
    ck_assert_int_eq(out.count, 2);
    ck_assert_int_eq(out.t_ns[1], 5);
    bm_resampler_destroy(resampler);
}
END_TEST

START_TEST(invalid_arguments_are_rejected)
{
    bm_resampler *resampler = NULL;
    bm_error error;

    ck_assert_int_eq(bm_resampler_create(0, 50.0, &resampler, &error), BM_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(resampler);
    ck_assert_ptr_nonnull(strstr(error.message, "n_channels 0"));
    ck_assert_int_eq(bm_resampler_create(3, 0.0, &resampler, &error), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(bm_resampler_create(3, NAN, &resampler, &error), BM_ERR_INVALID_ARGUMENT);
    bm_resampler_destroy(NULL);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("resample");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, on_grid_input_passes_through);
    tcase_add_test(tc, sub_microsecond_jitter_passes_through);
    tcase_add_test(tc, slower_input_is_interpolated);
    tcase_add_test(tc, faster_input_is_averaged);
    tcase_add_test(tc, non_increasing_time_is_rejected);
    tcase_add_test(tc, invalid_arguments_are_rejected);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
