/*
 * Per-device state and the table of devices.
 *
 * Each device keeps the stages that turn its raw samples into windows: the order checks on
 * timestamps, a bm_resampler onto the model's grid and the library's bm_stream preprocessing
 * and window ring. Both run per sample as messages arrive, so a hop costs only the forward
 * pass. The device also keeps its last activity, its smoothing history and its counters.
 * Devices live in a hash table keyed by id, with a list for iteration. Loop thread only.
 *
 * TODO: daemons that share a broker through a shared subscription receive messages, not
 * devices, so one device's samples can be split between daemons. Keeping each device on one
 * daemon needs a partitioned topic filter per daemon or a broker that assigns by topic.
 */
#ifndef BABYMAMBAD_DEVICE_H
#define BABYMAMBAD_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "babymamba/model.h"
#include "babymamba/resample.h"
#include "babymamba/stream.h"
#include "ingest.h"
#include "log.h"

/* What the served model needs from a stream. The pointers in stream borrow from the model. */
typedef struct dev_spec {
    bm_stream_config stream;
    ingest_expect expect;
    int n_classes;
} dev_spec;

/* Fills spec from model. */
void dev_spec_from_model(const bm_model *model, dev_spec *spec);

/* Returns nonzero when devices built for a can keep their state under b: the same
 * preprocessing, rate, channels, window, hop, normalisation and class count. */
int dev_spec_compatible(const dev_spec *a, const dev_spec *b);

typedef struct device {
    char id[65];

    /* Stream stages. */
    bm_resampler *resampler;
    bm_stream *stream;
    ingest_kind kind;
    int window_length;
    double period_ns;
    int has_last;
    int64_t last_t_ns; /* newest accepted input sample */
    int has_seq;
    int64_t last_seq;

    /* Activity. */
    int n_classes;
    int has_activity;
    int activity;         /* class index of the current decision */
    float *probabilities; /* [n_classes] of the current decision */
    int64_t window_start_ns;
    int64_t window_end_ns;
    uint64_t event_seq;
    uint64_t last_publish_ms;
    int published_activity; /* -1 before the first event */
    float *history;         /* [history_capacity * n_classes] recent probabilities */
    int *history_top;       /* [history_capacity] recent top classes */
    int history_capacity;
    int history_count;
    int history_next;

    /* Counters and bookkeeping. */
    uint64_t last_seen_ms;
    uint64_t created_ms;
    uint64_t messages;
    uint64_t messages_rejected;
    uint64_t samples;
    uint64_t samples_duplicate;
    uint64_t samples_out_of_order;
    uint64_t gaps;
    uint64_t clock_resets;
    uint64_t sequence_gaps;
    uint64_t windows;
    uint64_t windows_dropped;
    uint64_t events;
    /* Separate log budgets, so a burst of one kind of problem cannot hide another. */
    log_limit log_limit;           /* rejected messages */
    log_limit stream_log_limit;    /* dropped samples, gaps and clock resets */
    log_limit inference_log_limit; /* windows the engine could not classify */

    /* Table links. */
    struct device *hash_next;
    struct device *list_prev;
    struct device *list_next;
} device;

/* Called for each window a push completes; the stream's newest window is the one to copy. */
typedef void (*dev_window_fn)(void *user, device *d, int64_t start_ns, int64_t end_ns);

/* What one push did, for the metrics. */
typedef struct dev_push_result {
    int accepted;
    int duplicate;
    int out_of_order;
    int gaps;
    int clock_resets; /* samples older than the last by more than the gap limit */
    int sequence_gaps;
    int windows_dropped; /* completed windows that no inference slot took; the caller fills it */
} dev_push_result;

typedef struct dev_table dev_table;

dev_table *dev_table_create(void);

/* Frees every device and the table. Accepts NULL. */
void dev_table_destroy(dev_table *table);

device *dev_find(dev_table *table, const char *id);

/* Creates a device for spec with room for history_capacity smoothed windows. Returns NULL with
 * the reason in error when out of memory or when the library rejects the spec. */
device *dev_create(dev_table *table, const char *id, const dev_spec *spec, int history_capacity,
                   uint64_t now_ms, char *error, size_t error_size);

/* Removes a device from the table and frees it. */
void dev_remove(dev_table *table, device *d);

int dev_count(const dev_table *table);

/* Iteration in creation order: dev_first, then dev_next until NULL. */
device *dev_first(dev_table *table);
device *dev_next(device *d);

/* Restarts the device's window: after a gap, or when the model changes. */
void dev_restart(device *d);

/* Rebuilds the stream stages of every device for a new, incompatible spec, dropping their
 * windows and activity. Returns 0, or -1 with the reason in error; devices that failed are
 * removed. */
int dev_rebuild_all(dev_table *table, const dev_spec *spec, int history_capacity, char *error,
                    size_t error_size);

/* Returns the device's estimated input rate in Hz (0 before two samples). */
double dev_input_rate_hz(const device *d);

/* Returns an upper bound on the windows that dev_push of batch would complete for d, or for a
 * new device when d is NULL, without changing anything. It repeats dev_push's order checks on
 * the timestamps and counts the model-rate grid points each run of samples can reach, which
 * may exceed the resampler's true output by one sample per run. */
int dev_windows_upper_bound(const device *d, const dev_spec *spec, const ingest_batch *batch,
                            int64_t gap_ns);

/* Pushes a decoded batch through the order checks, the resampler and the stream; calls
 * on_window for every completed window. gap_ns is the longest silence that does not restart
 * the window. */
void dev_push(device *d, const ingest_batch *batch, int64_t gap_ns, dev_window_fn on_window,
              void *user, dev_push_result *result);

#endif
