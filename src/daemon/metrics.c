/*
 * Prometheus text rendering of the daemon's counters (see metrics.h).
 */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const double duration_bounds[METRICS_DURATION_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};

static const char *const transport_names[METRICS_TRANSPORT_COUNT] = {"mqtt", "http"};
static const char *const sample_drop_names[METRICS_SAMPLE_DROP_COUNT] = {"duplicate",
                                                                         "out_of_order"};
static const char *const window_drop_names[METRICS_WINDOW_DROP_COUNT] = {
    "queue_full", "inference_error", "stale", "cancelled"};

static const char *const event_failure_names[METRICS_EVENT_FAILURE_COUNT] = {
    "build_failed", "buffer_full", "delivery_failed", "discarded_at_stop"};

void metrics_observe_duration(metrics_counters *counters, double seconds)
{
    counters->duration_count++;
    counters->duration_sum_s += seconds;

    for (int i = 0; i < METRICS_DURATION_BUCKETS; i++) {
        if (seconds <= duration_bounds[i]) {
            counters->duration_buckets[i]++;
            return;
        }
    }
}

uint64_t metrics_resident_bytes(void)
{
    FILE *file = fopen("/proc/self/statm", "r");
    if (file == NULL)
        return 0;

    unsigned long long total_pages = 0;
    unsigned long long resident_pages = 0;
    int read = fscanf(file, "%llu %llu", &total_pages, &resident_pages);
    fclose(file);
    if (read != 2)
        return 0;
    return (uint64_t)resident_pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes a counter family with one sample per value of one label. */
static void labelled_counter(FILE *out, const char *name, const char *help, const char *label,
                             const char *const *label_values, const uint64_t *counts, int n)
{
    family(out, name, "counter", help);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, label_values[i], counts[i]);
}

/* Writes a counter family without labels. */
static void counter(FILE *out, const char *name, const char *help, uint64_t count)
{
    family(out, name, "counter", help);
    fprintf(out, "%s %" PRIu64 "\n", name, count);
}

/* Writes a label value with the escapes the text format requires. */
static void label_value(FILE *out, const char *value)
{
    for (const char *p = value != NULL ? value : ""; *p != '\0'; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '"')
            fputs("\\\"", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void render_ingest(FILE *out, const metrics_counters *c)
{
    const char *reason_names[INGEST_REASON_COUNT];
    for (int i = 0; i < INGEST_REASON_COUNT; i++)
        reason_names[i] = ingest_reason_name((ingest_reason)i);

    labelled_counter(out, "babymambad_messages_received_total",
                     "Sensor messages received, by transport.", "transport", transport_names,
                     c->messages_received, METRICS_TRANSPORT_COUNT);

    labelled_counter(out, "babymambad_messages_rejected_total",
                     "Sensor messages rejected whole, by reason.", "reason", reason_names,
                     c->messages_rejected, INGEST_REASON_COUNT);

    labelled_counter(out, "babymambad_samples_ingested_total",
                     "Samples accepted into device streams, by transport.", "transport",
                     transport_names, c->samples_ingested, METRICS_TRANSPORT_COUNT);

    labelled_counter(out, "babymambad_samples_dropped_total",
                     "Samples of accepted messages dropped, by reason (duplicate or out_of_order).",
                     "reason", sample_drop_names, c->samples_dropped, METRICS_SAMPLE_DROP_COUNT);

    counter(out, "babymambad_stream_gaps_total",
            "Silences longer than stream.gap_limit_s, each of which restarted a device's window.",
            c->stream_gaps);

    counter(out, "babymambad_stream_clock_resets_total",
            "Samples older than a device's last by more than stream.gap_limit_s, each of which "
            "restarted its window as a sender clock reset.",
            c->stream_clock_resets);

    counter(out, "babymambad_sequence_gaps_total",
            "Messages missing according to the senders' sequence numbers.", c->sequence_gaps);
}

static void render_inference(FILE *out, const metrics_counters *c)
{
    counter(out, "babymambad_windows_classified_total", "Windows classified.",
            c->windows_classified);

    labelled_counter(out, "babymambad_windows_dropped_total",
                     "Complete windows not classified, by reason.", "reason", window_drop_names,
                     c->windows_dropped, METRICS_WINDOW_DROP_COUNT);

    family(out, "babymambad_inference_duration_seconds", "histogram",
           "Duration of one forward pass.");
    uint64_t cumulative = 0;
    for (int i = 0; i < METRICS_DURATION_BUCKETS; i++) {
        cumulative += c->duration_buckets[i];
        fprintf(out, "babymambad_inference_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                duration_bounds[i], cumulative);
    }
    fprintf(out, "babymambad_inference_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
            c->duration_count);
    fprintf(out, "babymambad_inference_duration_seconds_sum %.9g\n", c->duration_sum_s);
    fprintf(out, "babymambad_inference_duration_seconds_count %" PRIu64 "\n", c->duration_count);
}

static void render_state(FILE *out, const metrics_counters *c, const metrics_gauges *g)
{
    family(out, "babymambad_build_info", "gauge", "Version of the running daemon; always 1.");
    fputs("babymambad_build_info{version=\"", out);
    label_value(out, g->version);
    fputs("\"} 1\n", out);

    family(out, "babymambad_model_info", "gauge", "The served model; always 1.");
    fputs("babymambad_model_info{name=\"", out);
    label_value(out, g->model_name);
    fputs("\",version=\"", out);
    label_value(out, g->model_version);
    fputs("\",sha256=\"", out);
    label_value(out, g->model_sha256);
    fputs("\"} 1\n", out);

    family(out, "babymambad_devices_active", "gauge", "Devices with state in memory.");
    fprintf(out, "babymambad_devices_active %d\n", g->devices_active);

    counter(out, "babymambad_devices_expired_total",
            "Devices dropped after devices.idle_expiry_s without data.", c->devices_expired);

    counter(out, "babymambad_events_published_total",
            "Activity events the broker acknowledged (QoS 1 and 2) or the client sent (QoS 0).",
            c->events_published);

    labelled_counter(out, "babymambad_events_failed_total",
                     "Activity events that never reached the broker, by reason.", "reason",
                     event_failure_names, c->events_failed, METRICS_EVENT_FAILURE_COUNT);

    family(out, "babymambad_mqtt_connected", "gauge",
           "1 while connected to the broker, 0 otherwise (also when MQTT is disabled).");
    fprintf(out, "babymambad_mqtt_connected %d\n", g->mqtt_enabled && g->mqtt_connected);

    counter(out, "babymambad_mqtt_reconnects_total",
            "Connections to the broker made after a lost connection.", c->mqtt_reconnects);

    family(out, "babymambad_ingest_queue_depth", "gauge",
           "MQTT messages waiting for the loop thread.");
    fprintf(out, "babymambad_ingest_queue_depth %d\n", g->ingest_queue_depth);

    family(out, "babymambad_ingest_queue_capacity", "gauge",
           "Capacity of the MQTT message queue (ingest.queue_capacity).");
    fprintf(out, "babymambad_ingest_queue_capacity %d\n", g->ingest_queue_capacity);

    family(out, "babymambad_inference_queue_depth", "gauge",
           "Windows waiting for or running on an inference context.");
    fprintf(out, "babymambad_inference_queue_depth %d\n", g->inference_queue_depth);

    family(out, "babymambad_reloads_total", "counter", "Configuration reloads, by result.");
    fprintf(out, "babymambad_reloads_total{result=\"success\"} %" PRIu64 "\n",
            c->reloads_succeeded);
    fprintf(out, "babymambad_reloads_total{result=\"failure\"} %" PRIu64 "\n", c->reloads_failed);

    family(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    fprintf(out, "process_resident_memory_bytes %" PRIu64 "\n", metrics_resident_bytes());

    family(out, "process_start_time_seconds", "gauge",
           "Start time of the process since the Unix epoch in seconds.");
    fprintf(out, "process_start_time_seconds %.3f\n", g->start_time_s);
}

char *metrics_render(const metrics_counters *counters, const metrics_gauges *gauges, size_t *size)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, size);
    if (out == NULL)
        return NULL;

    render_ingest(out, counters);
    render_inference(out, counters);
    render_state(out, counters, gauges);

    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
