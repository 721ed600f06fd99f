/*
 * Devices and their stream stages (see device.h).
 */
#include "device.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Buckets of the id hash table; a power of two. Chains stay short up to tens of thousands of
 * devices, more than devices.max allows by default. */
#define DEV_BUCKETS 4096

struct dev_table {
    device *buckets[DEV_BUCKETS];
    device *head;
    device *tail;
    int count;
};

/* State of one dev_push call, reachable from the resampler's emit callback. */
typedef struct push_context {
    device *d;
    dev_window_fn on_window;
    void *user;
} push_context;

void dev_spec_from_model(const bm_model *model, dev_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    bm_stream_config_from_model(model, &spec->stream);
    spec->n_classes = bm_model_get_info(model)->n_classes;
    if (strcmp(spec->stream.preprocessing, BM_PREPROCESSING_NONE) == 0)
        spec->expect.kind = INGEST_KIND_CHANNELS;
    else
        spec->expect.kind = INGEST_KIND_IMU;
    spec->expect.n_channels = spec->stream.n_channels;
}

static int same_floats(const float *a, const float *b, int n)
{
    if (a == NULL || b == NULL)
        return a == b;
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

int dev_spec_compatible(const dev_spec *a, const dev_spec *b)
{
    const bm_stream_config *x = &a->stream;
    const bm_stream_config *y = &b->stream;
    return strcmp(x->preprocessing, y->preprocessing) == 0 &&
           x->sample_rate_hz == y->sample_rate_hz && x->n_channels == y->n_channels &&
           x->window_length == y->window_length && x->hop == y->hop &&
           same_floats(x->mean, y->mean, x->n_channels) &&
           same_floats(x->std, y->std, x->n_channels) && a->n_classes == b->n_classes;
}

static uint32_t hash_id(const char *id)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p != '\0'; p++) {
        hash ^= (unsigned char)*p;
        hash *= 16777619u;
    }
    return hash;
}

dev_table *dev_table_create(void)
{
    return calloc(1, sizeof(dev_table));
}

static void free_stages(device *d)
{
    bm_resampler_destroy(d->resampler);
    bm_stream_destroy(d->stream);
    free(d->probabilities);
    free(d->history);
    free(d->history_top);
    d->resampler = NULL;
    d->stream = NULL;
    d->probabilities = NULL;
    d->history = NULL;
    d->history_top = NULL;
}

static void free_device(device *d)
{
    if (d == NULL)
        return;
    free_stages(d);
    free(d);
}

void dev_table_destroy(dev_table *table)
{
    if (table == NULL)
        return;
    device *d = table->head;
    while (d != NULL) {
        device *next = d->list_next;
        free_device(d);
        d = next;
    }
    free(table);
}

device *dev_find(dev_table *table, const char *id)
{
    for (device *d = table->buckets[hash_id(id) & (DEV_BUCKETS - 1)]; d != NULL; d = d->hash_next) {
        if (strcmp(d->id, id) == 0)
            return d;
    }
    return NULL;
}

/* Builds the resampler, the stream and the activity buffers of d for spec. */
static int build_stages(device *d, const dev_spec *spec, int history_capacity, char *error,
                        size_t error_size)
{
    bm_error bm_err;
    bm_error_clear(&bm_err);

    int width = spec->expect.kind == INGEST_KIND_IMU ? 6 : spec->expect.n_channels;
    if (bm_resampler_create(width, spec->stream.sample_rate_hz, &d->resampler, &bm_err) != BM_OK ||
        bm_stream_create(&spec->stream, &d->stream, &bm_err) != BM_OK) {
        snprintf(error, error_size, "%s", bm_err.message);
        free_stages(d);
        return -1;
    }

    d->n_classes = spec->n_classes;
    d->history_capacity = history_capacity;
    d->probabilities = calloc((size_t)spec->n_classes, sizeof *d->probabilities);
    d->history = calloc((size_t)history_capacity * (size_t)spec->n_classes, sizeof *d->history);
    d->history_top = calloc((size_t)history_capacity, sizeof *d->history_top);
    if (d->probabilities == NULL || d->history == NULL || d->history_top == NULL) {
        snprintf(error, error_size, "out of memory");
        free_stages(d);
        return -1;
    }

    d->kind = spec->expect.kind;
    d->window_length = spec->stream.window_length;
    d->period_ns = 1e9 / spec->stream.sample_rate_hz;
    d->has_activity = 0;
    d->published_activity = -1;
    d->history_count = 0;
    d->history_next = 0;
    dev_restart(d);
    return 0;
}

device *dev_create(dev_table *table, const char *id, const dev_spec *spec, int history_capacity,
                   uint64_t now_ms, char *error, size_t error_size)
{
    device *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    snprintf(d->id, sizeof d->id, "%s", id);
    d->created_ms = now_ms;
    d->last_seen_ms = now_ms;

    if (build_stages(d, spec, history_capacity, error, error_size) != 0) {
        free_device(d);
        return NULL;
    }

    uint32_t bucket = hash_id(id) & (DEV_BUCKETS - 1);
    d->hash_next = table->buckets[bucket];
    table->buckets[bucket] = d;
    d->list_prev = table->tail;
    if (table->tail != NULL)
        table->tail->list_next = d;
    else
        table->head = d;
    table->tail = d;
    table->count++;
    return d;
}

void dev_remove(dev_table *table, device *d)
{
    device **link = &table->buckets[hash_id(d->id) & (DEV_BUCKETS - 1)];
    while (*link != d)
        link = &(*link)->hash_next;
    *link = d->hash_next;

    if (d->list_prev != NULL)
        d->list_prev->list_next = d->list_next;
    else
        table->head = d->list_next;
    if (d->list_next != NULL)
        d->list_next->list_prev = d->list_prev;
    else
        table->tail = d->list_prev;
    table->count--;
    free_device(d);
}

int dev_count(const dev_table *table)
{
    return table->count;
}

device *dev_first(dev_table *table)
{
    return table->head;
}

device *dev_next(device *d)
{
    return d->list_next;
}

void dev_restart(device *d)
{
    bm_resampler_reset(d->resampler);
    bm_stream_reset(d->stream);
    d->has_last = 0;
    d->history_count = 0;
    d->history_next = 0;
}

int dev_rebuild_all(dev_table *table, const dev_spec *spec, int history_capacity, char *error,
                    size_t error_size)
{
    int status = 0;
    device *d = table->head;
    while (d != NULL) {
        device *next = d->list_next;
        free_stages(d);
        if (build_stages(d, spec, history_capacity, error, error_size) != 0) {
            status = -1;
            dev_remove(table, d);
        }
        d = next;
    }
    return status;
}

double dev_input_rate_hz(const device *d)
{
    return bm_resampler_input_rate_hz(d->resampler);
}

/* Returns the windows a stream completes while its sample count grows from before to after:
 * the counts window_length + k * hop in (before, after]. */
static int64_t windows_between(int64_t before, int64_t after, int64_t window_length, int64_t hop)
{
    int64_t upto_after = after < window_length ? 0 : (after - window_length) / hop + 1;
    int64_t upto_before = before < window_length ? 0 : (before - window_length) / hop + 1;
    return upto_after - upto_before;
}

/* Returns the bound on resampler outputs for a run of input from first_ns to last_ns. A new
 * run emits its first sample and every grid point up to last_ns. A run that continues earlier
 * input can emit every grid point after that input's last time minus half a period, which the
 * averaging mode may still owe. Either way that is at most span / period + 2 outputs, the extra
 * one covering the on-grid tolerance and the rounding of grid times. */
static int64_t outputs_upper_bound(int64_t first_ns, int64_t last_ns, double period_ns)
{
    return (int64_t)floor((double)(last_ns - first_ns) / period_ns) + 2;
}

int dev_windows_upper_bound(const device *d, const dev_spec *spec, const ingest_batch *batch,
                            int64_t gap_ns)
{
    int64_t window_length = spec->stream.window_length;
    int64_t hop = spec->stream.hop;
    double period_ns = 1e9 / spec->stream.sample_rate_hz;

    /* The run of samples that will go through the stream without a restart. */
    int has_last = d != NULL && d->has_last;
    int64_t last_ns = has_last ? d->last_t_ns : 0;
    int64_t run_first_ns = last_ns;
    int run_open = 0;
    int64_t run_samples_before = has_last ? (int64_t)bm_stream_sample_count(d->stream) : 0;
    int64_t windows = 0;

    int resent = d != NULL && batch->has_seq && d->has_seq && batch->seq <= d->last_seq;
    for (int i = 0; i < batch->count; i++) {
        int64_t t_ns = batch->t_ns[i];
        if (has_last && (t_ns == last_ns || (resent && t_ns < last_ns)))
            continue;
        if (has_last && t_ns < last_ns && last_ns - t_ns <= gap_ns)
            continue;

        /* A clock jump back or a gap restarts the window, as in dev_push, so the current run
         * ends and a new one starts from an empty stream. */
        if (has_last && (t_ns < last_ns || t_ns - last_ns > gap_ns)) {
            if (run_open) {
                int64_t outputs = outputs_upper_bound(run_first_ns, last_ns, period_ns);
                windows += windows_between(run_samples_before, run_samples_before + outputs,
                                           window_length, hop);
            }
            run_open = 0;
            has_last = 0;
        }
        if (!has_last) {
            run_first_ns = t_ns;
            run_samples_before = 0;
        }
        run_open = 1;
        has_last = 1;
        last_ns = t_ns;
    }
    if (run_open) {
        int64_t outputs = outputs_upper_bound(run_first_ns, last_ns, period_ns);
        windows +=
            windows_between(run_samples_before, run_samples_before + outputs, window_length, hop);
    }
    return windows > INT32_MAX ? INT32_MAX : (int)windows;
}

/* Resampler callback: one sample on the model's grid goes through the preprocessing. */
static void on_resampled(void *user, int64_t t_ns, const float *values)
{
    push_context *context = user;
    device *d = context->d;

    int complete;
    if (d->kind == INGEST_KIND_IMU)
        complete = bm_stream_push_imu(d->stream, values, values + 3);
    else
        complete = bm_stream_push_channels(d->stream, values);

    /* The stream returns -1 only for a non-finite value, which ingest's range check rules out,
     * so every accepted sample lands in the window. */
    if (complete > 0) {
        int64_t span_ns = llround((double)(d->window_length - 1) * d->period_ns);
        context->on_window(context->user, d, t_ns - span_ns, t_ns);
    }
}

void dev_push(device *d, const ingest_batch *batch, int64_t gap_ns, dev_window_fn on_window,
              void *user, dev_push_result *result)
{
    memset(result, 0, sizeof *result);
    push_context context = {.d = d, .on_window = on_window, .user = user};

    /* A message whose sequence number was seen already is a resend (a QoS 1 redelivery, or a
     * retry after a lost HTTP reply), so its old samples count as duplicates rather than as
     * out of order. Otherwise sequence numbers only count lost messages; a lower number can
     * also mean that the sender restarted. */
    int resent = batch->has_seq && d->has_seq && batch->seq <= d->last_seq;
    if (batch->has_seq) {
        if (d->has_seq && batch->seq > d->last_seq + 1)
            result->sequence_gaps =
                (int)(batch->seq - d->last_seq - 1 > 1000000 ? 1000000
                                                             : batch->seq - d->last_seq - 1);
        d->has_seq = 1;
        d->last_seq = batch->seq;
    }

    for (int i = 0; i < batch->count; i++) {
        int64_t t_ns = batch->t_ns[i];
        const float *values = batch->values + (size_t)i * (size_t)batch->width;

        if (d->has_last && (t_ns == d->last_t_ns || (resent && t_ns < d->last_t_ns))) {
            result->duplicate++;
            continue;
        }
        /* A sample a little older than the last one arrived late and is dropped. One older by
         * more than the gap limit means the sender's clock jumped back (a reboot, or a single
         * bad timestamp far in the future before it), and dropping everything until the clock
         * catches up would silence the device, so the window restarts as after a gap. */
        if (d->has_last && t_ns < d->last_t_ns && d->last_t_ns - t_ns <= gap_ns) {
            result->out_of_order++;
            continue;
        }
        if (d->has_last && t_ns < d->last_t_ns) {
            result->clock_resets++;
            dev_restart(d);
        } else if (d->has_last && t_ns - d->last_t_ns > gap_ns) {
            result->gaps++;
            dev_restart(d);
        }

        bm_resampler_push(d->resampler, t_ns, values, on_resampled, &context);
        d->has_last = 1;
        d->last_t_ns = t_ns;
        result->accepted++;
    }

    d->samples += (uint64_t)result->accepted;
    d->samples_duplicate += (uint64_t)result->duplicate;
    d->samples_out_of_order += (uint64_t)result->out_of_order;
    d->gaps += (uint64_t)result->gaps;
    d->clock_resets += (uint64_t)result->clock_resets;
    d->sequence_gaps += (uint64_t)result->sequence_gaps;
}
