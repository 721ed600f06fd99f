/*
 * Streaming resampling of irregularly timed sensor samples onto a model's regular time grid.
 *
 * Real senders deliver samples with jittered, drifting or different rates. A bm_resampler takes
 * samples one at a time with their timestamps and emits samples on the grid t0 + k / rate,
 * where t0 is the time of the first sample after creation or reset. Each output is the linear
 * interpolation of the input at the grid time. Input that arrives faster than the output rate
 * (its mean interval, an exponential moving average, is below 0.9 output periods) is instead
 * averaged over the output period centred on the grid time. This box filter is the
 * anti-aliasing for downsampling. A sample within 0.1 % of a period of a grid point passes
 * through unchanged, so a stream at the model's rate gives exactly the values that offline
 * processing of the same recording computes.
 *
 * A resampler allocates at creation only. It is not thread-safe.
 */
#ifndef BABYMAMBA_RESAMPLE_H
#define BABYMAMBA_RESAMPLE_H

#include <stdint.h>

#include "babymamba/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bm_resampler bm_resampler;

/* Receives one output sample: its grid time in nanoseconds and n_channels values, which are
 * valid only during the call. */
typedef void (*bm_resampler_emit_fn)(void *user, int64_t t_ns, const float *values);

/* Creates a resampler for n_channels channels (1 to 4096) at output_rate_hz (above 0 and at
 * most 1 MHz). */
bm_status bm_resampler_create(int n_channels, double output_rate_hz, bm_resampler **out,
                              bm_error *error);

/* Frees a resampler. Accepts NULL. */
void bm_resampler_destroy(bm_resampler *resampler);

/* Forgets all input; the next sample starts a new grid. */
void bm_resampler_reset(bm_resampler *resampler);

/* Pushes one input sample of n_channels values at t_ns and calls emit for every output sample
 * that this sample completes, in time order. t_ns must be later than the previous sample's;
 * returns BM_ERR_RANGE, and changes nothing, otherwise. */
bm_status bm_resampler_push(bm_resampler *resampler, int64_t t_ns, const float *values,
                            bm_resampler_emit_fn emit, void *user);

/* Returns the estimated input rate in Hz (the inverse of the moving average of the intervals),
 * or 0 before the second sample. */
double bm_resampler_input_rate_hz(const bm_resampler *resampler);

/* Returns the number of input intervals seen since creation or the last reset. */
uint64_t bm_resampler_interval_count(const bm_resampler *resampler);

/* Returns nonzero while the resampler averages over output periods (downsampling). */
int bm_resampler_is_averaging(const bm_resampler *resampler);

#ifdef __cplusplus
}
#endif

#endif
