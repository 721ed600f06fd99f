/*
 * Streaming resampler onto a regular time grid (see include/babymamba/resample.h).
 *
 * Each pair of consecutive input samples defines a linear segment. For every grid point k the
 * resampler keeps the integral of the segments over the output period [t_k - P/2, t_k + P/2)
 * and the point value at t_k. Output k is emitted as soon as the input reaches t_k (linear
 * interpolation) or t_k + P/2 (averaging), whichever mode the input rate selects.
 */
#include "babymamba/resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error_internal.h"

/* Averaging starts when the mean input interval falls below this fraction of the output period
 * and stops above the second fraction. The gap between them keeps a stream with a jittery rate
 * near the model's from switching modes on every sample. */
#define AVERAGE_ON_FRACTION  0.9
#define AVERAGE_OFF_FRACTION 0.95

/* Weight of the newest interval in the moving average of the input interval. */
#define INTERVAL_SMOOTHING 0.1

/* An input sample this close to a grid point, as a fraction of the period, is taken as lying on
 * it. Timestamps given in seconds as doubles carry sub-microsecond rounding, and without this
 * tolerance such a stream at the model's rate would be interpolated instead of passed through. */
#define ON_GRID_FRACTION 1e-3

/* The grid is re-anchored after this many outputs so that k * period stays exact in a double
 * over years of continuous streaming. */
#define REANCHOR_INTERVAL (1 << 20)

struct bm_resampler {
    int n_channels;
    double period_ns; /* P */

    int started;
    int averaging;
    int64_t anchor_ns;   /* grid time of index 0 */
    int64_t next_index;  /* k of the next output */
    int64_t previous_ns; /* time of the previous input sample */
    float *previous;     /* [n_channels] values of the previous input sample */

    double mean_interval_ns;
    uint64_t intervals;

    double *integral;     /* [n_channels] integral over the current output period so far */
    double covered_ns;    /* time the integral covers */
    double integrated_to; /* end of the covered part, relative to anchor_ns */
    float *output;        /* [n_channels] scratch for emitted values */
};

bm_status bm_resampler_create(int n_channels, double output_rate_hz, bm_resampler **out,
                              bm_error *error)
{
    if (out == NULL)
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "resampler: out is NULL");
    *out = NULL;

    if (n_channels < 1 || n_channels > 4096)
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "resampler: n_channels %d is out of range; expected 1 to 4096", n_channels);
    if (!(output_rate_hz > 0.0) || output_rate_hz > 1e6)
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "resampler: output rate %g Hz is out of range; expected above 0 and at "
                        "most 1e6",
                        output_rate_hz);

    bm_resampler *resampler = calloc(1, sizeof *resampler);
    if (resampler == NULL)
        goto fail;
    resampler->n_channels = n_channels;
    resampler->period_ns = 1e9 / output_rate_hz;

    resampler->previous = calloc((size_t)n_channels, sizeof *resampler->previous);
    resampler->integral = calloc((size_t)n_channels, sizeof *resampler->integral);
    resampler->output = calloc((size_t)n_channels, sizeof *resampler->output);
    if (resampler->previous == NULL || resampler->integral == NULL || resampler->output == NULL)
        goto fail;

    *out = resampler;
    return BM_OK;

fail:
    bm_resampler_destroy(resampler);
    return bm__fail(error, BM_ERR_NO_MEMORY, "resampler: out of memory for %d channels",
                    n_channels);
}

void bm_resampler_destroy(bm_resampler *resampler)
{
    if (resampler == NULL)
        return;
    free(resampler->previous);
    free(resampler->integral);
    free(resampler->output);
    free(resampler);
}

void bm_resampler_reset(bm_resampler *resampler)
{
    resampler->started = 0;
    resampler->averaging = 0;
    resampler->next_index = 0;
    resampler->mean_interval_ns = 0.0;
    resampler->intervals = 0;
}

/* Returns the time of grid point index relative to anchor_ns. */
static double grid_time(const bm_resampler *resampler, int64_t index)
{
    return (double)index * resampler->period_ns;
}

static void start_period(bm_resampler *resampler)
{
    memset(resampler->integral, 0, (size_t)resampler->n_channels * sizeof *resampler->integral);
    resampler->covered_ns = 0.0;
    resampler->integrated_to =
        grid_time(resampler, resampler->next_index) - 0.5 * resampler->period_ns;
}

/* Emits the current output and moves to the next grid point, re-anchoring the grid when the
 * index grows large. */
static void emit_output(bm_resampler *resampler, bm_resampler_emit_fn emit, void *user)
{
    int64_t t_ns = resampler->anchor_ns + llround(grid_time(resampler, resampler->next_index));
    emit(user, t_ns, resampler->output);

    resampler->next_index++;
    if (resampler->next_index >= REANCHOR_INTERVAL) {
        double shift = grid_time(resampler, resampler->next_index);
        resampler->anchor_ns += llround(shift);
        resampler->integrated_to -= shift;
        resampler->next_index = 0;
    }
}

/* Adds the integral of the segment between (a, va) and (b, vb), restricted to [from, to), to
 * the current period. Times are relative to anchor_ns. */
static void integrate(bm_resampler *resampler, double a, const float *va, double b, const float *vb,
                      double from, double to)
{
    double s = fmax(a, from);
    double e = fmin(b, to);
    if (!(e > s))
        return;

    double ws = (s - a) / (b - a);
    double we = (e - a) / (b - a);
    for (int c = 0; c < resampler->n_channels; c++) {
        double value_s = (1.0 - ws) * va[c] + ws * vb[c];
        double value_e = (1.0 - we) * va[c] + we * vb[c];
        resampler->integral[c] += 0.5 * (value_s + value_e) * (e - s);
    }
    resampler->covered_ns += e - s;
    resampler->integrated_to = e;
}

static void update_rate(bm_resampler *resampler, double interval_ns)
{
    if (resampler->intervals == 0)
        resampler->mean_interval_ns = interval_ns;
    else
        resampler->mean_interval_ns +=
            INTERVAL_SMOOTHING * (interval_ns - resampler->mean_interval_ns);
    resampler->intervals++;

    double ratio = resampler->mean_interval_ns / resampler->period_ns;
    if (!resampler->averaging && ratio < AVERAGE_ON_FRACTION)
        resampler->averaging = 1;
    else if (resampler->averaging && ratio > AVERAGE_OFF_FRACTION)
        resampler->averaging = 0;
}

bm_status bm_resampler_push(bm_resampler *resampler, int64_t t_ns, const float *values,
                            bm_resampler_emit_fn emit, void *user)
{
    size_t row_bytes = (size_t)resampler->n_channels * sizeof *values;

    /* The first sample defines the grid and is its first output. */
    if (!resampler->started) {
        resampler->started = 1;
        resampler->anchor_ns = t_ns;
        resampler->previous_ns = t_ns;
        memcpy(resampler->previous, values, row_bytes);
        memcpy(resampler->output, values, row_bytes);
        resampler->next_index = 0;
        emit_output(resampler, emit, user);
        start_period(resampler);
        return BM_OK;
    }

    if (t_ns <= resampler->previous_ns)
        return BM_ERR_RANGE;

    update_rate(resampler, (double)(t_ns - resampler->previous_ns));

    double a = (double)(resampler->previous_ns - resampler->anchor_ns);
    double b = (double)(t_ns - resampler->anchor_ns);
    const float *va = resampler->previous;
    double tolerance = ON_GRID_FRACTION * resampler->period_ns;

    for (;;) {
        double t_k = grid_time(resampler, resampler->next_index);
        double period_end = t_k + 0.5 * resampler->period_ns;

        integrate(resampler, a, va, b, values, resampler->integrated_to, period_end);

        if (resampler->averaging) {
            if (b < period_end)
                break;
            for (int c = 0; c < resampler->n_channels; c++)
                resampler->output[c] = (float)(resampler->integral[c] / resampler->covered_ns);
        } else {
            if (b < t_k - tolerance)
                break;
            if (fabs(b - t_k) <= tolerance) {
                memcpy(resampler->output, values, row_bytes);
            } else {
                double w = (t_k - a) / (b - a);
                for (int c = 0; c < resampler->n_channels; c++)
                    resampler->output[c] = (float)((1.0 - w) * va[c] + w * values[c]);
            }
        }

        /* The remainder of this segment belongs to the next period, which starts where the
         * current one ends. */
        emit_output(resampler, emit, user);
        double shift = (double)(t_ns - resampler->anchor_ns) - b;
        a += shift;
        b += shift;
        start_period(resampler);
    }

    resampler->previous_ns = t_ns;
    memcpy(resampler->previous, values, row_bytes);
    return BM_OK;
}

double bm_resampler_input_rate_hz(const bm_resampler *resampler)
{
    if (resampler->intervals == 0 || !(resampler->mean_interval_ns > 0.0))
        return 0.0;
    return 1e9 / resampler->mean_interval_ns;
}

uint64_t bm_resampler_interval_count(const bm_resampler *resampler)
{
    return resampler->intervals;
}

int bm_resampler_is_averaging(const bm_resampler *resampler)
{
    return resampler->averaging;
}
