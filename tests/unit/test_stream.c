/*
 * Unit tests of the stream preprocessing: the gravity low-pass against independently derived
 * coefficients and its frequency response, the hapt-causal-v1 channels, the window schedule,
 * the ring buffer, normalisation, reset and the rejection of bad configurations and samples.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "babymamba/model.h"
#include "babymamba/stream.h"
#include "butterworth.h"

/*
 * Reference coefficients of the 3rd-order Butterworth low-pass at 0.3 Hz for 50 Hz, derived
 * without scipy and without the library's formulas, by this numpy computation:
 *
 *   fs, fc, N = 50.0, 0.3, 3
 *   wc = 2 * fs * np.tan(np.pi * fc / fs)                  # prewarped cutoff in rad/s
 *   p = wc * np.exp(1j * np.pi * (2 * np.arange(N) + N + 1) / (2 * N))  # analog poles
 *   z = (1 + p / (2 * fs)) / (1 - p / (2 * fs))            # bilinear transform of the poles
 *   a = np.real(np.poly(z))
 *   b = np.poly([-1, -1, -1]); b = b * a.sum() / b.sum()  # zeros at z = -1, unit DC gain
 *
 * The library instead multiplies out closed-form first- and second-order sections.
 */
static const double reference_b[4] = {6.4518491290493918e-06, 1.9355547387148175e-05,
                                      1.9355547387148175e-05, 6.4518491290493918e-06};
static const double reference_a[4] = {1.0, -2.9246062354506974, 2.8520278185938936,
                                      -0.9273699683501638};

/* Returns |H(e^{jw})| of a section with n_taps feed-forward coefficients b and feedback
 * coefficients 1, a[0], ..., a[n_taps - 2]. */
static double section_magnitude(const double *b, const double *a, int n_taps, double w)
{
    double num_re = 0.0, num_im = 0.0, den_re = 1.0, den_im = 0.0;
    for (int k = 0; k < n_taps; k++) {
        num_re += b[k] * cos(w * k);
        num_im -= b[k] * sin(w * k);
    }
    for (int k = 1; k < n_taps; k++) {
        den_re += a[k - 1] * cos(w * k);
        den_im -= a[k - 1] * sin(w * k);
    }
    return sqrt(num_re * num_re + num_im * num_im) / sqrt(den_re * den_re + den_im * den_im);
}

/* Returns |H(e^{jw})| of the cascade at frequency_hz. The product of the sections is used
 * because the expanded 3rd-order polynomials lose digits to cancellation near z = 1. */
static double magnitude_at(const bm__butterworth3 *filter, double frequency_hz,
                           double sample_rate_hz)
{
    const double w = 2.0 * M_PI * frequency_hz / sample_rate_hz;
    return section_magnitude(filter->b1, filter->a1, 2, w) *
           section_magnitude(filter->b2, filter->a2, 3, w);
}

static bm_stream *make_hapt_stream(double rate, int length, int hop)
{
    bm_stream_config config = {
        .preprocessing = BM_PREPROCESSING_HAPT,
        .sample_rate_hz = rate,
        .n_channels = 9,
        .window_length = length,
        .hop = hop,
    };
    bm_stream *stream = NULL;
    bm_error error;
    ck_assert_int_eq(bm_stream_create(&config, &stream, &error), BM_OK);
    return stream;
}

static bm_stream *make_none_stream(int channels, int length, int hop, const float *mean,
                                   const float *std)
{
    bm_stream_config config = {
        .preprocessing = BM_PREPROCESSING_NONE,
        .sample_rate_hz = 50.0,
        .n_channels = channels,
        .window_length = length,
        .hop = hop,
        .mean = mean,
        .std = std,
    };
    bm_stream *stream = NULL;
    bm_error error;
    ck_assert_int_eq(bm_stream_create(&config, &stream, &error), BM_OK);
    return stream;
}

/* Pushes x as the accelerometer's x axis and returns that axis's gravity estimate, computed
 * from a window of length 1 as total_acc - body_acc. */
static double push_and_gravity_x(bm_stream *stream, float x)
{
    const float acc[3] = {x, 0.0f, 1.0f};
    const float gyro[3] = {0.0f, 0.0f, 0.0f};
    float row[9];

    ck_assert_int_ge(bm_stream_push_imu(stream, acc, gyro), 0);
    bm_stream_copy_window(stream, row, 0);
    return (double)row[6] - (double)row[0];
}

START_TEST(butterworth_matches_reference_coefficients)
{
    bm__butterworth3 filter;
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, 50.0), 0);

    double b[4];
    double a[4];
    bm__butterworth3_polynomials(&filter, b, a);
    for (int k = 0; k < 4; k++) {
        ck_assert_double_eq_tol(b[k], reference_b[k], 1e-9 * reference_b[k]);
        ck_assert_double_eq_tol(a[k], reference_a[k], 1e-12);
    }
}
END_TEST

START_TEST(butterworth_is_3db_down_at_cutoff)
{
    static const double rates[] = {10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 1000.0};

    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        bm__butterworth3 filter;
        ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, rates[i]), 0);
        ck_assert_double_eq_tol(magnitude_at(&filter, 0.0, rates[i]), 1.0, 1e-8);
        ck_assert_double_eq_tol(magnitude_at(&filter, 0.3, rates[i]), sqrt(0.5), 1e-9);

        /* A 3rd-order low-pass falls by about 18 dB per octave above the cutoff. */
        ck_assert_double_lt(magnitude_at(&filter, 1.2, rates[i]), 0.02);
    }
}
END_TEST

START_TEST(butterworth_rejects_bad_cutoff)
{
    bm__butterworth3 filter;
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, 0.6), -1);
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.0, 50.0), -1);
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, -50.0), -1);
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, NAN), -1);
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, 0.61), 0);
}
END_TEST

START_TEST(butterworth_steady_start_holds_constant)
{
    bm__butterworth3 filter;
    ck_assert_int_eq(bm__butterworth3_design(&filter, 0.3, 50.0), 0);
    bm__butterworth3_start(&filter, 0.987654321);

    for (int i = 0; i < 1000; i++) {
        ck_assert_double_eq_tol(bm__butterworth3_step(&filter, 0.987654321), 0.987654321, 1e-12);
    }
}
END_TEST

START_TEST(gravity_constant_from_first_sample)
{
    bm_stream *stream = make_hapt_stream(50.0, 1, 1);
    const float acc[3] = {0.25f, -0.5f, 0.98f};
    const float gyro[3] = {0.1f, -0.2f, 0.3f};
    float row[9];

    for (int i = 0; i < 500; i++) {
        ck_assert_int_eq(bm_stream_push_imu(stream, acc, gyro), 1);
        bm_stream_copy_window(stream, row, 0);
        for (int axis = 0; axis < 3; axis++) {
            ck_assert_float_eq_tol(row[axis], 0.0f, 1e-7f);
            ck_assert_float_eq(row[3 + axis], gyro[axis]);
            ck_assert_float_eq(row[6 + axis], acc[axis]);
        }
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(gravity_step_settles_to_one)
{
    bm_stream *stream = make_hapt_stream(50.0, 1, 1);
    for (int i = 0; i < 100; i++) {
        ck_assert_double_eq_tol(push_and_gravity_x(stream, 0.0f), 0.0, 1e-12);
    }

    double peak = 0.0;
    double gravity = 0.0;
    for (int i = 0; i < 50 * 30; i++) {
        gravity = push_and_gravity_x(stream, 1.0f);
        peak = fmax(peak, gravity);
    }

    /* The analog 3rd-order Butterworth step response overshoots by about 8 %. */
    ck_assert_double_gt(peak, 1.05);
    ck_assert_double_lt(peak, 1.10);
    ck_assert_double_eq_tol(gravity, 1.0, 1e-6);
    bm_stream_destroy(stream);
}
END_TEST

/* Measures the amplitude of the gravity estimate for a sine of frequency_hz by projecting
 * whole periods onto sine and cosine, after letting the transient decay. */
static double sine_gain(double rate, double frequency_hz, int settle, int measured)
{
    bm_stream *stream = make_hapt_stream(rate, 1, 1);
    double in_phase = 0.0;
    double quadrature = 0.0;

    for (int i = 0; i < settle + measured; i++) {
        const double phase = 2.0 * M_PI * frequency_hz * i / rate;
        const double gravity = push_and_gravity_x(stream, (float)sin(phase));
        if (i >= settle) {
            in_phase += gravity * sin(phase);
            quadrature += gravity * cos(phase);
        }
    }
    bm_stream_destroy(stream);
    return 2.0 / measured * sqrt(in_phase * in_phase + quadrature * quadrature);
}

START_TEST(gravity_sine_at_cutoff_is_3db_down)
{
    /* 500 samples at 50 Hz are exactly 3 periods of 0.3 Hz, and so are 1000 samples at 100 Hz. */
    const double gain_50 = sine_gain(50.0, 0.3, 5000, 5000);
    ck_assert_double_eq_tol(20.0 * log10(gain_50), -3.0103, 0.01);

    const double gain_100 = sine_gain(100.0, 0.3, 10000, 10000);
    ck_assert_double_eq_tol(20.0 * log10(gain_100), -3.0103, 0.01);

    /* Well below the cutoff, gravity follows the input. */
    const double gain_slow = sine_gain(50.0, 0.03, 20000, 5000);
    ck_assert_double_eq_tol(gain_slow, 1.0, 1e-3);
}
END_TEST

START_TEST(stream_channel_order)
{
    bm_stream *stream = make_hapt_stream(50.0, 2, 1);
    const float acc[2][3] = {{0.1f, 0.2f, 0.3f}, {0.4f, 0.5f, 0.6f}};
    const float gyro[2][3] = {{1.0f, 2.0f, 3.0f}, {4.0f, 5.0f, 6.0f}};
    float window[2 * 9];

    ck_assert_int_eq(bm_stream_push_imu(stream, acc[0], gyro[0]), 0);
    ck_assert_int_eq(bm_stream_push_imu(stream, acc[1], gyro[1]), 1);
    bm_stream_copy_window(stream, window, 0);

    for (int t = 0; t < 2; t++) {
        for (int axis = 0; axis < 3; axis++) {
            ck_assert_float_eq(window[t * 9 + 3 + axis], gyro[t][axis]);
            ck_assert_float_eq(window[t * 9 + 6 + axis], acc[t][axis]);
        }
    }

    /* The first row is at steady state, the second receives a jump of 0.3 g with gain near 1. */
    for (int axis = 0; axis < 3; axis++) {
        ck_assert_float_eq_tol(window[axis], 0.0f, 1e-7f);
        ck_assert_float_eq_tol(window[9 + axis], 0.3f, 0.01f);
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_window_schedule)
{
    bm_stream *stream = make_none_stream(1, 4, 3, NULL, NULL);
    static const int expected[] = {0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1};

    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++) {
        const float value = (float)i;
        ck_assert_int_eq(bm_stream_push_channels(stream, &value), expected[i]);
        ck_assert_uint_eq(bm_stream_sample_count(stream), (uint64_t)i + 1);
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_hop_longer_than_window)
{
    bm_stream *stream = make_none_stream(1, 2, 5, NULL, NULL);
    static const int expected[] = {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};

    for (int i = 0; i < (int)(sizeof expected / sizeof expected[0]); i++) {
        const float value = (float)i;
        ck_assert_int_eq(bm_stream_push_channels(stream, &value), expected[i]);
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_window_oldest_first)
{
    bm_stream *stream = make_none_stream(2, 5, 1, NULL, NULL);
    float window[5 * 2];

    for (int i = 0; i < 23; i++) {
        const float sample[2] = {(float)i, (float)(-i)};
        const int complete = bm_stream_push_channels(stream, sample);
        ck_assert_int_eq(complete, i >= 4);

        bm_stream_copy_window(stream, window, 0);
        for (int t = 0; t < 5; t++) {
            /* Rows that precede the first sample are zero. */
            const int index = i - 4 + t;
            const float expected = index >= 0 ? (float)index : 0.0f;
            ck_assert_float_eq(window[2 * t], expected);
            ck_assert_float_eq(window[2 * t + 1], -expected);
        }
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_window_normalised)
{
    const float mean[2] = {1.0f, -2.0f};
    const float std[2] = {2.0f, 0.5f};
    bm_stream *stream = make_none_stream(2, 3, 3, mean, std);
    float raw[3 * 2];
    float normalised[3 * 2];

    for (int i = 0; i < 3; i++) {
        const float sample[2] = {(float)(3 * i), (float)(i - 1)};
        bm_stream_push_channels(stream, sample);
    }
    bm_stream_copy_window(stream, raw, 0);
    bm_stream_copy_window(stream, normalised, 1);

    for (int t = 0; t < 3; t++) {
        ck_assert_float_eq(raw[2 * t], (float)(3 * t));
        ck_assert_float_eq(raw[2 * t + 1], (float)(t - 1));
        ck_assert_float_eq_tol(normalised[2 * t], ((float)(3 * t) - 1.0f) / 2.0f, 1e-6f);
        ck_assert_float_eq_tol(normalised[2 * t + 1], ((float)(t - 1) + 2.0f) / 0.5f, 1e-6f);
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_window_normalisation_copied)
{
    float mean[1] = {10.0f};
    float std[1] = {5.0f};
    bm_stream *stream = make_none_stream(1, 1, 1, mean, std);

    /* The stream keeps its own copy, so the caller's arrays may change or go away. */
    mean[0] = 0.0f;
    std[0] = 1.0f;

    const float value = 20.0f;
    float window[1];
    bm_stream_push_channels(stream, &value);
    bm_stream_copy_window(stream, window, 1);
    ck_assert_float_eq_tol(window[0], 2.0f, 1e-6f);
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_reset_restarts)
{
    bm_stream *stream = make_hapt_stream(50.0, 3, 1);
    const float acc_before[3] = {0.0f, 0.0f, 1.0f};
    const float acc_after[3] = {0.7f, -0.7f, 0.1f};
    const float gyro[3] = {0.0f, 0.0f, 0.0f};
    float window[3 * 9];

    for (int i = 0; i < 10; i++) {
        bm_stream_push_imu(stream, acc_before, gyro);
    }
    bm_stream_reset(stream);
    ck_assert_uint_eq(bm_stream_sample_count(stream), 0);

    /* The window is empty again, and the first window after the reset needs 3 samples. */
    ck_assert_int_eq(bm_stream_push_imu(stream, acc_after, gyro), 0);
    bm_stream_copy_window(stream, window, 0);
    for (int c = 0; c < 2 * 9; c++) {
        ck_assert_float_eq(window[c], 0.0f);
    }
    ck_assert_int_eq(bm_stream_push_imu(stream, acc_after, gyro), 0);
    ck_assert_int_eq(bm_stream_push_imu(stream, acc_after, gyro), 1);

    /* The filters restarted at the new level, so body acceleration stays zero. */
    bm_stream_copy_window(stream, window, 0);
    for (int t = 0; t < 3; t++) {
        for (int axis = 0; axis < 3; axis++) {
            ck_assert_float_eq_tol(window[t * 9 + axis], 0.0f, 1e-7f);
            ck_assert_float_eq(window[t * 9 + 6 + axis], acc_after[axis]);
        }
    }
    bm_stream_destroy(stream);
}
END_TEST

START_TEST(stream_rejects_bad_samples)
{
    bm_stream *hapt = make_hapt_stream(50.0, 2, 1);
    bm_stream *none = make_none_stream(3, 2, 1, NULL, NULL);
    const float good[3] = {0.0f, 0.0f, 1.0f};
    const float bad[3] = {0.0f, NAN, 1.0f};
    const float infinite[3] = {INFINITY, 0.0f, 1.0f};

    ck_assert_int_eq(bm_stream_push_imu(hapt, bad, good), -1);
    ck_assert_int_eq(bm_stream_push_imu(hapt, good, infinite), -1);
    ck_assert_int_eq(bm_stream_push_channels(hapt, good), -1);
    ck_assert_uint_eq(bm_stream_sample_count(hapt), 0);

    ck_assert_int_eq(bm_stream_push_channels(none, bad), -1);
    ck_assert_int_eq(bm_stream_push_imu(none, good, good), -1);
    ck_assert_uint_eq(bm_stream_sample_count(none), 0);

    /* A rejected sample leaves the filter usable. */
    ck_assert_int_eq(bm_stream_push_imu(hapt, good, good), 0);
    ck_assert_int_eq(bm_stream_push_imu(hapt, good, good), 1);
    float window[2 * 9];
    bm_stream_copy_window(hapt, window, 0);
    ck_assert_float_eq_tol(window[9 + 2], 0.0f, 1e-7f);

    bm_stream_destroy(hapt);
    bm_stream_destroy(none);
}
END_TEST

static bm_status try_create(const char *preprocessing, double rate, int channels, int length,
                            int hop, const float *mean, const float *std)
{
    bm_stream_config config = {
        .preprocessing = preprocessing,
        .sample_rate_hz = rate,
        .n_channels = channels,
        .window_length = length,
        .hop = hop,
        .mean = mean,
        .std = std,
    };
    bm_stream *stream = NULL;
    bm_error error;
    bm_error_clear(&error);

    const bm_status status = bm_stream_create(&config, &stream, &error);
    if (status == BM_OK) {
        ck_assert_ptr_nonnull(stream);
    } else {
        ck_assert_ptr_null(stream);
        ck_assert_int_eq(error.status, status);
        ck_assert_str_ne(error.message, "");
    }
    bm_stream_destroy(stream);
    return status;
}

START_TEST(stream_create_validates_config)
{
    const float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float zeros[9] = {0};
    const float with_nan[9] = {1, 1, 1, 1, NAN, 1, 1, 1, 1};
    const char *hapt = BM_PREPROCESSING_HAPT;

    ck_assert_int_eq(try_create(hapt, 50.0, 9, 128, 64, zeros, ones), BM_OK);
    ck_assert_int_eq(try_create("none", 50.0, 4, 16, 8, NULL, NULL), BM_OK);
    ck_assert_int_eq(try_create("hapt-causal-v2", 50.0, 9, 128, 64, NULL, NULL),
                     BM_ERR_UNSUPPORTED);
    ck_assert_int_eq(try_create(NULL, 50.0, 9, 128, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 6, 128, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create("none", 50.0, 0, 128, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 9, 0, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 9, 128, 0, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 0.0, 9, 128, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, NAN, 9, 128, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 0.5, 9, 128, 64, NULL, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 9, 128, 64, zeros, NULL), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 9, 128, 64, zeros, zeros), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 9, 128, 64, with_nan, ones), BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(try_create(hapt, 50.0, 9, 128, 64, zeros, with_nan), BM_ERR_INVALID_ARGUMENT);

    bm_error error;
    ck_assert_int_eq(bm_stream_create(NULL, NULL, &error), BM_ERR_INVALID_ARGUMENT);
    bm_stream_destroy(NULL);
}
END_TEST

START_TEST(preprocessing_channel_names)
{
    static const char *const names[9] = {"body_acc_x",  "body_acc_y",  "body_acc_z",
                                         "body_gyro_x", "body_gyro_y", "body_gyro_z",
                                         "total_acc_x", "total_acc_y", "total_acc_z"};

    ck_assert_int_eq(bm_preprocessing_channel_count(BM_PREPROCESSING_HAPT), 9);
    ck_assert_int_eq(bm_preprocessing_channel_count(BM_PREPROCESSING_NONE), 0);
    ck_assert_int_eq(bm_preprocessing_channel_count("unknown"), 0);
    ck_assert_int_eq(bm_preprocessing_channel_count(NULL), 0);
    for (int c = 0; c < 9; c++) {
        ck_assert_str_eq(bm_preprocessing_channel_name(BM_PREPROCESSING_HAPT, c), names[c]);
        ck_assert_str_eq(bm_preprocessing_channel_unit(BM_PREPROCESSING_HAPT, c),
                         c >= 3 && c < 6 ? "rad/s" : "g");
    }
    ck_assert_ptr_null(bm_preprocessing_channel_name(BM_PREPROCESSING_HAPT, 9));
    ck_assert_ptr_null(bm_preprocessing_channel_name(BM_PREPROCESSING_HAPT, -1));
    ck_assert_ptr_null(bm_preprocessing_channel_unit(BM_PREPROCESSING_NONE, 0));
}
END_TEST

START_TEST(stream_config_from_model)
{
    const char *golden = getenv("BM_GOLDEN_DIR");
    if (golden == NULL) {
        return;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/cx_published.safetensors", golden);
    bm_model *model = NULL;
    bm_error error;
    ck_assert_int_eq(bm_model_load(path, &model, &error), BM_OK);

    bm_stream_config config;
    bm_stream_config_from_model(model, &config);
    const bm_model_info *info = bm_model_get_info(model);
    ck_assert_str_eq(config.preprocessing, bm_model_preprocessing(model));
    ck_assert_double_eq(config.sample_rate_hz, info->sample_rate_hz);
    ck_assert_int_eq(config.n_channels, info->n_channels);
    ck_assert_int_eq(config.window_length, info->window_length);
    ck_assert_int_eq(config.hop, info->hop);
    ck_assert_ptr_eq(config.mean, bm_model_norm_mean(model));
    ck_assert_ptr_eq(config.std, bm_model_norm_std(model));

    bm_stream *stream = NULL;
    ck_assert_int_eq(bm_stream_create(&config, &stream, &error), BM_OK);
    bm_stream_destroy(stream);
    bm_model_destroy(model);
}
END_TEST

static Suite *stream_suite(void)
{
    Suite *suite = suite_create("stream");

    TCase *filter = tcase_create("butterworth");
    tcase_add_test(filter, butterworth_matches_reference_coefficients);
    tcase_add_test(filter, butterworth_is_3db_down_at_cutoff);
    tcase_add_test(filter, butterworth_rejects_bad_cutoff);
    tcase_add_test(filter, butterworth_steady_start_holds_constant);
    suite_add_tcase(suite, filter);

    TCase *gravity = tcase_create("gravity");
    tcase_add_test(gravity, gravity_constant_from_first_sample);
    tcase_add_test(gravity, gravity_step_settles_to_one);
    tcase_add_test(gravity, gravity_sine_at_cutoff_is_3db_down);
    suite_add_tcase(suite, gravity);

    TCase *windows = tcase_create("windows");
    tcase_add_test(windows, stream_channel_order);
    tcase_add_test(windows, stream_window_schedule);
    tcase_add_test(windows, stream_hop_longer_than_window);
    tcase_add_test(windows, stream_window_oldest_first);
    tcase_add_test(windows, stream_window_normalised);
    tcase_add_test(windows, stream_window_normalisation_copied);
    tcase_add_test(windows, stream_reset_restarts);
    tcase_add_test(windows, stream_rejects_bad_samples);
    tcase_add_test(windows, stream_create_validates_config);
    tcase_add_test(windows, preprocessing_channel_names);
    tcase_add_test(windows, stream_config_from_model);
    suite_add_tcase(suite, windows);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(stream_suite());
    srunner_run_all(runner, CK_NORMAL);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
