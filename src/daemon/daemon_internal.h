/*
 * The daemon's state, shared by the modules that compose it (daemon.c for the lifecycle and
 * ingest, api.c for the REST endpoints). Everything here lives on the loop thread.
 */
#ifndef BABYMAMBAD_DAEMON_INTERNAL_H
#define BABYMAMBAD_DAEMON_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "device.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "mqtt.h"
#include "notify.h"
#include "runner.h"

#ifndef BABYMAMBAD_VERSION
#define BABYMAMBAD_VERSION "unknown"
#endif

/* Seconds an HTTP sender is asked to wait (Retry-After) when the inference slots are busy. One
 * second is the smallest value that still asks for a wait. */
#define BUSY_RETRY_AFTER_S 1

/* One command-line override, reapplied over the file on every reload. */
typedef struct daemon_override {
    const char *key;
    const char *value;
} daemon_override;

typedef struct daemon_state {
    uv_loop_t *loop;
    cfg_config config;
    const char *config_path; /* NULL when only defaults and overrides apply */
    const daemon_override *overrides;
    int override_count;

    metrics_counters counters;
    dev_table *devices;
    dev_spec spec;
    runner *runner;
    uint64_t model_epoch; /* changes when a reload replaces the model's input specification */
    char model_path[4096];
    ingest_decoder *decoder;

    mqtt_client *mqtt;
    uint64_t mqtt_dropped_seen;
    char status_topic[256];
    http_server *http;
    notify *notify;

    uv_signal_t signal_term;
    uv_signal_t signal_int;
    uv_signal_t signal_hup;
    uv_timer_t housekeeping;
    uv_timer_t drain_timer;
    uint64_t drain_deadline_ms;

    uint64_t start_ms;
    double start_time_s;
    int stopping;
    int exit_code;
    log_limit reason_limits[INGEST_REASON_COUNT];
    log_limit window_drop_limit;
    log_limit event_fail_limit;
    log_limit queue_drop_limit;
    log_limit stale_log_limit;
    log_limit cancel_log_limit;

    /* Backpressure on MQTT intake (daemon.c). */
    uint64_t windows_completed;
    int peak_windows_per_message;
} daemon_state;

/* The outcome of one ingested message, for the HTTP reply. */
typedef struct daemon_ingest_result {
    dev_push_result pushed;
    int windows_before;
} daemon_ingest_result;

/* Decodes and applies one sensor message for device_id, from either transport. Returns 0, or
 * -1 with failure filled; the rejection is already counted and logged. */
int daemon_ingest(daemon_state *state, metrics_transport transport, const char *device_id,
                  const void *payload, size_t size, size_t oversize, ingest_failure *failure,
                  dev_push_result *pushed);

/* Samples the gauges for /metrics. */
void daemon_fill_gauges(daemon_state *state, metrics_gauges *gauges);

/* Serves one HTTP request (api.c). */
void api_handle(void *user, const http_request *request, http_response *response);

#endif
