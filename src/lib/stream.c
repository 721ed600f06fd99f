/*
 * Per-device stream preprocessing: the channels of BM_PREPROCESSING_HAPT and
 * BM_PREPROCESSING_NONE, the ring buffer of the current window and the hop schedule.
 *
 * docs/preprocessing.md defines the channels. Everything a stream needs is allocated in
 * bm_stream_create, so pushing samples and copying windows never allocate.
 */
#include "babymamba/stream.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "butterworth.h"
#include "error_internal.h"

/* Cutoff of the low-pass that estimates gravity, in Hz. */
#define GRAVITY_CUTOFF_HZ 0.3

/* Channel count of BM_PREPROCESSING_HAPT: body_acc xyz, body_gyro xyz, total_acc xyz. */
#define HAPT_CHANNELS 9

typedef enum stream_kind { STREAM_HAPT, STREAM_NONE } stream_kind;

static const struct {
    const char *name;
    const char *unit;
} hapt_channels[HAPT_CHANNELS] = {
    {"body_acc_x", "g"},      {"body_acc_y", "g"},      {"body_acc_z", "g"},
    {"body_gyro_x", "rad/s"}, {"body_gyro_y", "rad/s"}, {"body_gyro_z", "rad/s"},
    {"total_acc_x", "g"},     {"total_acc_y", "g"},     {"total_acc_z", "g"},
};

struct bm_stream {
    stream_kind kind;
    double sample_rate_hz;
    int n_channels;
    int window_length;
    int hop;

    /* window_length * n_channels unnormalised values, sample-major. Sample number k since the
     * last reset sits in row k % window_length, so the next row to write is the oldest. */
    float *ring;

    /* Private copies of the configured normalisation, or NULL for none. */
    float *mean;
    float *std;

    uint64_t count;
    bm__butterworth3 gravity[3]; /* one low-pass per accelerometer axis */
};

int bm_preprocessing_channel_count(const char *preprocessing)
{
    if (preprocessing != NULL && strcmp(preprocessing, BM_PREPROCESSING_HAPT) == 0) {
        return HAPT_CHANNELS;
    }
    return 0;
}

const char *bm_preprocessing_channel_name(const char *preprocessing, int index)
{
    if (index < 0 || index >= bm_preprocessing_channel_count(preprocessing)) {
        return NULL;
    }
    return hapt_channels[index].name;
}

const char *bm_preprocessing_channel_unit(const char *preprocessing, int index)
{
    if (index < 0 || index >= bm_preprocessing_channel_count(preprocessing)) {
        return NULL;
    }
    return hapt_channels[index].unit;
}

void bm_stream_config_from_model(const bm_model *model, bm_stream_config *config)
{
    const bm_model_info *info = bm_model_get_info(model);

    config->preprocessing = bm_model_preprocessing(model);
    config->sample_rate_hz = info->sample_rate_hz;
    config->n_channels = info->n_channels;
    config->window_length = info->window_length;
    config->hop = info->hop;
    config->mean = bm_model_norm_mean(model);
    config->std = bm_model_norm_std(model);
}

static bm_status check_sizes(const bm_stream_config *config, stream_kind kind, bm_error *error)
{
    if (!isfinite(config->sample_rate_hz) || config->sample_rate_hz <= 0.0) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream sample_rate_hz (%g): expected a positive finite rate in Hz",
                        config->sample_rate_hz);
    }
    if (kind == STREAM_HAPT && config->n_channels != HAPT_CHANNELS) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream n_channels (%d): preprocessing '%s' produces %d channels",
                        config->n_channels, BM_PREPROCESSING_HAPT, HAPT_CHANNELS);
    }
    if (config->n_channels < 1) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream n_channels (%d): expected at least 1", config->n_channels);
    }
    if (config->window_length < 1) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream window_length (%d): expected at least 1", config->window_length);
    }
    if (config->hop < 1) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "stream hop (%d): expected at least 1",
                        config->hop);
    }
    if ((size_t)config->window_length > SIZE_MAX / sizeof(float) / (size_t)config->n_channels) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream window of %d x %d values: too large to allocate",
                        config->window_length, config->n_channels);
    }
    return BM_OK;
}

static bm_status check_normalization(const bm_stream_config *config, bm_error *error)
{
    if ((config->mean == NULL) != (config->std == NULL)) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream normalisation: expected both mean and std, or neither");
    }
    if (config->mean == NULL) {
        return BM_OK;
    }

    for (int c = 0; c < config->n_channels; c++) {
        if (!isfinite(config->mean[c])) {
            return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                            "stream mean[%d] (%g): expected a finite value", c,
                            (double)config->mean[c]);
        }
        if (!isfinite(config->std[c]) || config->std[c] <= 0.0f) {
            return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                            "stream std[%d] (%g): expected a positive finite value", c,
                            (double)config->std[c]);
        }
    }
    return BM_OK;
}

bm_status bm_stream_create(const bm_stream_config *config, bm_stream **out, bm_error *error)
{
    if (out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "stream: out must not be NULL");
    }
    *out = NULL;
    if (config == NULL || config->preprocessing == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "stream: config and config->preprocessing must not be NULL");
    }

    stream_kind kind;
    if (strcmp(config->preprocessing, BM_PREPROCESSING_HAPT) == 0) {
        kind = STREAM_HAPT;
    } else if (strcmp(config->preprocessing, BM_PREPROCESSING_NONE) == 0) {
        kind = STREAM_NONE;
    } else {
        return bm__fail(error, BM_ERR_UNSUPPORTED,
                        "stream preprocessing '%s': expected '%s' or '%s'", config->preprocessing,
                        BM_PREPROCESSING_HAPT, BM_PREPROCESSING_NONE);
    }

    bm_status status = check_sizes(config, kind, error);
    if (status != BM_OK) {
        return status;
    }
    status = check_normalization(config, error);
    if (status != BM_OK) {
        return status;
    }

    bm_stream *stream = calloc(1, sizeof *stream);
    if (stream == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "stream: cannot allocate the stream");
    }
    stream->kind = kind;
    stream->sample_rate_hz = config->sample_rate_hz;
    stream->n_channels = config->n_channels;
    stream->window_length = config->window_length;
    stream->hop = config->hop;

    const size_t n_values = (size_t)config->window_length * (size_t)config->n_channels;
    stream->ring = calloc(n_values, sizeof *stream->ring);
    if (stream->ring == NULL) {
        status =
            bm__fail(error, BM_ERR_NO_MEMORY, "stream: cannot allocate a window of %d x %d values",
                     config->window_length, config->n_channels);
        goto fail;
    }

    if (config->mean != NULL) {
        const size_t n_bytes = (size_t)config->n_channels * sizeof(float);
        stream->mean = malloc(n_bytes);
        stream->std = malloc(n_bytes);
        if (stream->mean == NULL || stream->std == NULL) {
            status = bm__fail(error, BM_ERR_NO_MEMORY,
                              "stream: cannot allocate the normalisation of %d channels",
                              config->n_channels);
            goto fail;
        }
        memcpy(stream->mean, config->mean, n_bytes);
        memcpy(stream->std, config->std, n_bytes);
    }

    if (kind == STREAM_HAPT) {
        for (int axis = 0; axis < 3; axis++) {
            if (bm__butterworth3_design(&stream->gravity[axis], GRAVITY_CUTOFF_HZ,
                                        config->sample_rate_hz) != 0) {
                status = bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                                  "stream sample_rate_hz (%g): preprocessing '%s' needs a rate "
                                  "above %g Hz for its %g Hz gravity low-pass",
                                  config->sample_rate_hz, BM_PREPROCESSING_HAPT,
                                  2.0 * GRAVITY_CUTOFF_HZ, GRAVITY_CUTOFF_HZ);
                goto fail;
            }
        }
    }

    *out = stream;
    return BM_OK;

fail:
    bm_stream_destroy(stream);
    return status;
}

void bm_stream_destroy(bm_stream *stream)
{
    if (stream == NULL) {
        return;
    }
    free(stream->std);
    free(stream->mean);
    free(stream->ring);
    free(stream);
}

void bm_stream_reset(bm_stream *stream)
{
    const size_t n_values = (size_t)stream->window_length * (size_t)stream->n_channels;
    memset(stream->ring, 0, n_values * sizeof *stream->ring);

    /* The filters need no clearing, because the next push finds count == 0 and starts them at
     * the steady state of its own sample. */
    stream->count = 0;
}

/* Returns a pointer to the ring row that the next sample overwrites. */
static float *next_row(bm_stream *stream)
{
    const uint64_t row = stream->count % (uint64_t)stream->window_length;
    return stream->ring + (size_t)row * (size_t)stream->n_channels;
}

/* Counts the sample just written and returns 1 when it completes a window on the hop grid. */
static int advance(bm_stream *stream)
{
    stream->count++;

    const uint64_t length = (uint64_t)stream->window_length;
    if (stream->count < length) {
        return 0;
    }
    return (stream->count - length) % (uint64_t)stream->hop == 0 ? 1 : 0;
}

int bm_stream_push_imu(bm_stream *stream, const float acc[3], const float gyro[3])
{
    if (stream->kind != STREAM_HAPT) {
        return -1;
    }
    for (int axis = 0; axis < 3; axis++) {
        if (!isfinite(acc[axis]) || !isfinite(gyro[axis])) {
            return -1;
        }
    }

    float *row = next_row(stream);
    for (int axis = 0; axis < 3; axis++) {
        const double total = (double)acc[axis];
        if (stream->count == 0) {
            bm__butterworth3_start(&stream->gravity[axis], total);
        }
        const double gravity = bm__butterworth3_step(&stream->gravity[axis], total);

        row[axis] = (float)(total - gravity);
        row[3 + axis] = gyro[axis];
        row[6 + axis] = acc[axis];
    }
    return advance(stream);
}

int bm_stream_push_channels(bm_stream *stream, const float *channels)
{
    if (stream->kind != STREAM_NONE) {
        return -1;
    }
    for (int c = 0; c < stream->n_channels; c++) {
        if (!isfinite(channels[c])) {
            return -1;
        }
    }

    float *row = next_row(stream);
    memcpy(row, channels, (size_t)stream->n_channels * sizeof *row);
    return advance(stream);
}

void bm_stream_copy_window(const bm_stream *stream, float *out, int normalize)
{
    const size_t row_values = (size_t)stream->n_channels;
    const size_t length = (size_t)stream->window_length;
    const size_t oldest = (size_t)(stream->count % (uint64_t)stream->window_length);

    /* The rows from the oldest to the end of the ring come first, then the rows from the start
     * of the ring up to the newest. */
    const size_t tail_rows = length - oldest;
    memcpy(out, stream->ring + oldest * row_values, tail_rows * row_values * sizeof *out);
    memcpy(out + tail_rows * row_values, stream->ring, oldest * row_values * sizeof *out);

    if (!normalize || stream->mean == NULL) {
        return;
    }
    for (size_t t = 0; t < length; t++) {
        float *row = out + t * row_values;
        for (size_t c = 0; c < row_values; c++) {
            row[c] = (row[c] - stream->mean[c]) / stream->std[c];
        }
    }
}

uint64_t bm_stream_sample_count(const bm_stream *stream)
{
    return stream->count;
}
