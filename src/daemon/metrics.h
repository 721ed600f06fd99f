/*
 * The daemon's counters and their rendering in the Prometheus text exposition format 0.0.4.
 *
 * Counters are plain fields updated by the loop thread. Gauges that other modules own (queue
 * depths, device count, broker state) are passed in at render time. Names follow the Prometheus
 * rules: a babymambad_ prefix, base units (seconds, bytes), _total on counters, and one HELP
 * and TYPE line per family.
 */
#ifndef BABYMAMBAD_METRICS_H
#define BABYMAMBAD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "ingest.h"

typedef enum metrics_transport {
    METRICS_MQTT,
    METRICS_HTTP,
    METRICS_TRANSPORT_COUNT
} metrics_transport;

/* Reasons for dropping single samples of an accepted message. */
typedef enum metrics_sample_drop {
    METRICS_DROP_DUPLICATE, /* same time as the newest sample, or old samples of a resent message */
    METRICS_DROP_OUT_OF_ORDER, /* earlier than the previous sample */
    METRICS_SAMPLE_DROP_COUNT
} metrics_sample_drop;

/* Reasons for dropping a complete window instead of classifying it. */
typedef enum metrics_window_drop {
    METRICS_WINDOW_QUEUE_FULL,      /* every inference slot was busy */
    METRICS_WINDOW_INFERENCE_ERROR, /* the engine rejected the window (non-finite input) */
    METRICS_WINDOW_STALE,           /* the device or the model changed while it was queued */
    METRICS_WINDOW_CANCELLED,       /* a stop timed out while it was queued */
    METRICS_WINDOW_DROP_COUNT
} metrics_window_drop;

/* Reasons for an activity event that never reached the broker. */
typedef enum metrics_event_failure {
    METRICS_EVENT_BUILD_FAILED,      /* building the payload or topic failed (out of memory) */
    METRICS_EVENT_BUFFER_FULL,       /* the MQTT client's buffer (mqtt.max_buffered) was full */
    METRICS_EVENT_DELIVERY_FAILED,   /* the client reported that delivery failed */
    METRICS_EVENT_DISCARDED_AT_STOP, /* still buffered or unacknowledged when the daemon stopped */
    METRICS_EVENT_FAILURE_COUNT
} metrics_event_failure;

/* Upper bounds of the inference duration histogram, in seconds. */
#define METRICS_DURATION_BUCKETS 12

typedef struct metrics_counters {
    uint64_t messages_received[METRICS_TRANSPORT_COUNT];
    uint64_t messages_rejected[INGEST_REASON_COUNT];
    uint64_t samples_ingested[METRICS_TRANSPORT_COUNT];
    uint64_t samples_dropped[METRICS_SAMPLE_DROP_COUNT];
    uint64_t stream_gaps;
    uint64_t stream_clock_resets;
    uint64_t sequence_gaps;
    uint64_t windows_classified;
    uint64_t windows_dropped[METRICS_WINDOW_DROP_COUNT];
    uint64_t duration_buckets[METRICS_DURATION_BUCKETS]; /* not cumulative */
    uint64_t duration_count;
    double duration_sum_s;
    uint64_t devices_expired;
    uint64_t events_published; /* acknowledged by the broker (QoS 1, 2) or sent (QoS 0) */
    uint64_t events_failed[METRICS_EVENT_FAILURE_COUNT];
    uint64_t mqtt_reconnects;
    uint64_t reloads_succeeded;
    uint64_t reloads_failed;
} metrics_counters;

/* Values owned by other modules, sampled when the metrics are rendered. */
typedef struct metrics_gauges {
    const char *version;
    const char *model_name;
    const char *model_version;
    const char *model_sha256;
    int devices_active;
    int mqtt_enabled;
    int mqtt_connected;
    int ingest_queue_depth;
    int ingest_queue_capacity;
    int inference_queue_depth;
    double start_time_s; /* Unix time of the process start */
} metrics_gauges;

/* Records one inference duration. */
void metrics_observe_duration(metrics_counters *counters, double seconds);

/* Renders every family. Returns a malloc'd NUL-terminated text and its length in *size, or NULL
 * when out of memory. */
char *metrics_render(const metrics_counters *counters, const metrics_gauges *gauges, size_t *size);

/* Reads the resident set size of this process in bytes, or 0 when /proc is unavailable. */
uint64_t metrics_resident_bytes(void);

#endif
