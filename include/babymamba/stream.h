/*
 * Per-device stream preprocessing: raw sensor samples in, model windows out.
 *
 * One bm_stream per device turns samples that already arrive at the model's sample rate into
 * the model's input channels, keeps the current window in a ring buffer and reports when the hop
 * schedule completes a window. Training (`babymamba prepare`) and serving (babymambad) both run
 * this code, so a model sees the same channels in both. docs/preprocessing.md describes the
 * preprocessing kinds and their channels.
 *
 * A stream allocates at creation only; pushing samples and copying windows never allocate.
 * A stream is not thread-safe.
 */
#ifndef BABYMAMBA_STREAM_H
#define BABYMAMBA_STREAM_H

#include <stdint.h>

#include "babymamba/error.h"
#include "babymamba/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Name of the preprocessing of the UCI-HAR-style models: 9 channels body_acc xyz (g),
 * body_gyro xyz (rad/s), total_acc xyz (g) from a 3-axis accelerometer and gyroscope, with
 * gravity from a causal 3rd-order Butterworth low-pass at 0.3 Hz. */
#define BM_PREPROCESSING_HAPT "hapt-causal-v1"

/* Name of the identity preprocessing: the sender supplies the model's channels. */
#define BM_PREPROCESSING_NONE "none"

typedef struct bm_stream bm_stream;

/* Returns the number of channels that a preprocessing produces: 9 for BM_PREPROCESSING_HAPT,
 * and 0 for BM_PREPROCESSING_NONE, whose channels the sender defines, or for an unknown name. */
int bm_preprocessing_channel_count(const char *preprocessing);

/* Returns the name ("body_acc_x") or unit ("g") of channel index of a preprocessing, or NULL
 * when the preprocessing defines no such channel. */
const char *bm_preprocessing_channel_name(const char *preprocessing, int index);
const char *bm_preprocessing_channel_unit(const char *preprocessing, int index);

/* What a stream needs to know; bm_stream_config_from_model fills it from a model file. */
typedef struct bm_stream_config {
    const char *preprocessing; /* BM_PREPROCESSING_HAPT or BM_PREPROCESSING_NONE */
    double sample_rate_hz;     /* the model's rate; samples must already arrive at it */
    int n_channels;            /* channels the model expects (9 for BM_PREPROCESSING_HAPT) */
    int window_length;         /* L */
    int hop;                   /* samples between window ends, 1 <= hop */
    const float *mean;         /* n_channels values, or NULL for no normalisation */
    const float *std;          /* n_channels values, or NULL for no normalisation */
} bm_stream_config;

/* Fills config from a model's input specification. The pointers borrow from the model. */
void bm_stream_config_from_model(const bm_model *model, bm_stream_config *config);

/* Creates a stream; fails with BM_ERR_UNSUPPORTED for an unknown preprocessing name and
 * BM_ERR_INVALID_ARGUMENT for inconsistent sizes. */
bm_status bm_stream_create(const bm_stream_config *config, bm_stream **out, bm_error *error);

/* Frees a stream. Accepts NULL. */
void bm_stream_destroy(bm_stream *stream);

/* Empties the window and restarts the filters, which take their steady state from the next
 * sample. Used after a gap in the data. */
void bm_stream_reset(bm_stream *stream);

/* Pushes one raw sample of a BM_PREPROCESSING_HAPT stream: acc in g, gyro in rad/s, both xyz.
 * Returns 1 when this sample completes a window (the first after window_length samples, then
 * one every hop samples), 0 otherwise. Returns -1 and ignores the sample when a value is NaN or
 * infinite, because it would corrupt the gravity filter until the next reset, or when the
 * stream's preprocessing is not BM_PREPROCESSING_HAPT. */
int bm_stream_push_imu(bm_stream *stream, const float acc[3], const float gyro[3]);

/* Pushes one sample of n_channels values for a BM_PREPROCESSING_NONE stream. Returns as
 * bm_stream_push_imu, with -1 for a non-finite value or a stream of another preprocessing. */
int bm_stream_push_channels(bm_stream *stream, const float *channels);

/* Copies the last window_length samples pushed, window_length * n_channels values sample-major,
 * oldest first, into out; normalised with the configured mean and std when normalize is
 * non-zero. Called right after a push that returned 1, this is the window that push completed.
 * Before the first window completes, the rows not yet pushed come first and are zero. */
void bm_stream_copy_window(const bm_stream *stream, float *out, int normalize);

/* Returns the samples pushed since creation or the last reset. */
uint64_t bm_stream_sample_count(const bm_stream *stream);

#ifdef __cplusplus
}
#endif

#endif
