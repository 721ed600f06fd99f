/*
 * The REST API, the health endpoints, /metrics and HTTP ingest (docs/daemon.md lists them).
 *
 * Every handler runs on the loop thread and reads the daemon's state directly. Responses are
 * JSON built with jansson, except /metrics (Prometheus text format 0.0.4) and the health
 * probes.
 * TODO: bearer-token checks belong at the top of api_handle, comparing request->authorization
 * with a token file named in the config, before any route is dispatched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "babymamba/model.h"
#include "daemon_internal.h"

#define SAMPLES_PREFIX "/api/v1/devices/"

static void respond_text(http_response *response, int status, const char *content_type, char *body,
                         size_t size)
{
    response->status = status;
    response->content_type = content_type;
    response->body = body;
    response->body_size = size;
}

/* Sends a JSON document; takes the reference to value. */
static void respond_json(http_response *response, int status, json_t *value)
{
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(value);
    if (text == NULL) {
        respond_text(response, 500, "text/plain; charset=utf-8", strdup("out of memory\n"), 14);
        return;
    }
    respond_text(response, status, "application/json", text, strlen(text));
}

static void respond_error(http_response *response, int status, const char *error,
                          const char *message)
{
    respond_json(response, status, json_pack("{s:s, s:s}", "error", error, "message", message));
}

static double uptime_s(daemon_state *state)
{
    return (double)(uv_now(state->loop) - state->start_ms) / 1000.0;
}

static json_t *counters_json(const metrics_counters *c)
{
    json_t *rejected = json_object();
    for (int i = 0; i < INGEST_REASON_COUNT; i++) {
        if (c->messages_rejected[i] > 0)
            json_object_set_new(rejected, ingest_reason_name((ingest_reason)i),
                                json_integer((json_int_t)c->messages_rejected[i]));
    }

    return json_pack("{s:I, s:I, s:o, s:I, s:I, s:{s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                     "messages_mqtt", (json_int_t)c->messages_received[METRICS_MQTT],
                     "messages_http", (json_int_t)c->messages_received[METRICS_HTTP],
                     "messages_rejected", rejected, "samples_mqtt",
                     (json_int_t)c->samples_ingested[METRICS_MQTT], "samples_http",
                     (json_int_t)c->samples_ingested[METRICS_HTTP], "samples_dropped", "duplicate",
                     (json_int_t)c->samples_dropped[METRICS_DROP_DUPLICATE], "out_of_order",
                     (json_int_t)c->samples_dropped[METRICS_DROP_OUT_OF_ORDER], "stream_gaps",
                     (json_int_t)c->stream_gaps, "sequence_gaps", (json_int_t)c->sequence_gaps,
                     "windows_classified", (json_int_t)c->windows_classified, "windows_dropped",
                     (json_int_t)(c->windows_dropped[METRICS_WINDOW_QUEUE_FULL] +
                                  c->windows_dropped[METRICS_WINDOW_INFERENCE_ERROR] +
                                  c->windows_dropped[METRICS_WINDOW_STALE] +
                                  c->windows_dropped[METRICS_WINDOW_CANCELLED]),
                     "events_published", (json_int_t)c->events_published, "events_failed",
                     (json_int_t)(c->events_failed[METRICS_EVENT_BUILD_FAILED] +
                                  c->events_failed[METRICS_EVENT_BUFFER_FULL] +
                                  c->events_failed[METRICS_EVENT_DELIVERY_FAILED] +
                                  c->events_failed[METRICS_EVENT_DISCARDED_AT_STOP]),
                     "devices_expired", (json_int_t)c->devices_expired);
}

static json_t *model_json(daemon_state *state)
{
    const bm_model *model = runner_model(state->runner);
    const bm_model_info *info = bm_model_get_info(model);

    json_t *classes = json_array();
    for (int k = 0; k < info->n_classes; k++)
        json_array_append_new(classes, json_string(bm_model_class_name(model, k)));
    json_t *channels = json_array();
    for (int c = 0; c < info->n_channels; c++)
        json_array_append_new(channels,
                              json_pack("{s:s, s:s}", "name", bm_model_channel_name(model, c),
                                        "unit", bm_model_channel_unit(model, c)));

    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:{s:o, s:f, s:i, s:i, s:s}}", "name",
        bm_model_name(model), "version", bm_model_version(model), "sha256", bm_model_sha256(model),
        "path", state->model_path, "family", bm_family_name(info->family), "parameter_count",
        (json_int_t)info->parameter_count, "classes", classes, "input", "channels", channels,
        "sample_rate_hz", info->sample_rate_hz, "window_length", info->window_length, "hop",
        info->hop, "preprocessing", bm_model_preprocessing(model));
}

static const char *mqtt_state(daemon_state *state)
{
    if (state->mqtt == NULL)
        return "disabled";
    return mqtt_is_connected(state->mqtt) ? "connected" : "disconnected";
}

static void get_status(daemon_state *state, http_response *response)
{
    json_t *model = state->runner != NULL ? model_json(state) : json_null();
    respond_json(response, 200,
                 json_pack("{s:s, s:f, s:o, s:{s:s, s:s, s:I, s:i}, s:{s:s}, s:{s:i, s:i}, s:o}",
                           "version", BABYMAMBAD_VERSION, "uptime_s", uptime_s(state), "model",
                           model, "mqtt", "state", mqtt_state(state), "uri", state->config.mqtt_uri,
                           "reconnects", (json_int_t)mqtt_reconnects(state->mqtt), "queue_depth",
                           mqtt_queue_depth(state->mqtt), "http", "listen",
                           state->config.http_listen, "devices", "active",
                           dev_count(state->devices), "max", state->config.devices_max, "counters",
                           counters_json(&state->counters)));
}

static json_t *activity_json(daemon_state *state, const device *d)
{
    if (!d->has_activity || state->runner == NULL)
        return json_null();
    return json_string(bm_model_class_name(runner_model(state->runner), d->activity));
}

static void get_devices(daemon_state *state, http_response *response)
{
    json_t *list = json_array();
    uint64_t now = uv_now(state->loop);
    for (device *d = dev_first(state->devices); d != NULL; d = dev_next(d)) {
        json_array_append_new(
            list, json_pack("{s:s, s:o, s:f, s:f, s:I, s:I}", "id", d->id, "activity",
                            activity_json(state, d), "confidence",
                            d->has_activity ? (double)d->probabilities[d->activity] : 0.0,
                            "last_seen_s_ago", (double)(now - d->last_seen_ms) / 1000.0, "samples",
                            (json_int_t)d->samples, "windows", (json_int_t)d->windows));
    }
    respond_json(response, 200,
                 json_pack("{s:i, s:o}", "count", dev_count(state->devices), "devices", list));
}

static void get_device(daemon_state *state, const char *id, http_response *response)
{
    device *d = dev_find(state->devices, id);
    if (d == NULL) {
        char message[160];
        snprintf(message, sizeof message, "device \"%.64s\" is not tracked", id);
        respond_error(response, 404, "not_found", message);
        return;
    }

    json_t *probabilities = json_object();
    if (d->has_activity && state->runner != NULL) {
        for (int k = 0; k < d->n_classes; k++)
            json_object_set_new(probabilities, bm_model_class_name(runner_model(state->runner), k),
                                json_real(d->probabilities[k]));
    }

    json_t *body = json_pack(
        "{s:s, s:o, s:f, s:o, s:f, s:f, s:I, s:I, s:I, s:f, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:I}}",
        "id", d->id, "activity", activity_json(state, d), "confidence",
        d->has_activity ? (double)d->probabilities[d->activity] : 0.0, "probabilities",
        probabilities, "window_start", (double)d->window_start_ns / 1e9, "window_end",
        (double)d->window_end_ns / 1e9, "window_start_ns", (json_int_t)d->window_start_ns,
        "window_end_ns", (json_int_t)d->window_end_ns, "event_seq", (json_int_t)d->event_seq,
        "input_rate_hz", dev_input_rate_hz(d), "counters", "messages", (json_int_t)d->messages,
        "messages_rejected", (json_int_t)d->messages_rejected, "samples", (json_int_t)d->samples,
        "samples_duplicate", (json_int_t)d->samples_duplicate, "samples_out_of_order",
        (json_int_t)d->samples_out_of_order, "gaps", (json_int_t)d->gaps, "clock_resets",
        (json_int_t)d->clock_resets, "sequence_gaps", (json_int_t)d->sequence_gaps, "windows",
        (json_int_t)d->windows, "windows_dropped", (json_int_t)d->windows_dropped, "events",
        (json_int_t)d->events);
    respond_json(response, 200, body);
}

static void get_models(daemon_state *state, http_response *response)
{
    json_t *models = json_array();
    if (state->runner != NULL)
        json_array_append_new(models, model_json(state));
    respond_json(response, 200, json_pack("{s:o}", "models", models));
}

static void get_metrics(daemon_state *state, http_response *response)
{
    metrics_gauges gauges;
    daemon_fill_gauges(state, &gauges);

    size_t size = 0;
    char *text = metrics_render(&state->counters, &gauges, &size);
    if (text == NULL) {
        respond_error(response, 500, "internal_error", "rendering the metrics failed");
        return;
    }
    respond_text(response, 200, "text/plain; version=0.0.4; charset=utf-8", text, size);
}

static void get_readyz(daemon_state *state, http_response *response)
{
    int model_loaded = state->runner != NULL;
    int mqtt_ok = state->mqtt == NULL || mqtt_is_connected(state->mqtt);
    int ready = model_loaded && mqtt_ok && !state->stopping;
    respond_json(response, ready ? 200 : 503,
                 json_pack("{s:b, s:b, s:s, s:b}", "ready", ready, "model_loaded", model_loaded,
                           "mqtt", mqtt_state(state), "stopping", state->stopping));
}

/* Maps a rejection to its HTTP status: 413 for size and for more windows than the inference
 * queue holds, 429 when the daemon is at a limit, 503 without a model or while the inference
 * slots are busy, 400 for everything the sender got wrong. */
static int status_for(ingest_reason reason)
{
    switch (reason) {
    case INGEST_REJECT_PAYLOAD_TOO_LARGE:
    case INGEST_REJECT_TOO_MANY_WINDOWS:
        return 413;
    case INGEST_REJECT_UNSUPPORTED_MEDIA_TYPE:
        return 415;
    case INGEST_REJECT_TOO_MANY_DEVICES:
    case INGEST_REJECT_QUEUE_FULL:
        return 429;
    case INGEST_REJECT_NO_MODEL:
    case INGEST_REJECT_INTERNAL:
    case INGEST_REJECT_INFERENCE_BUSY:
        return 503;
    default:
        return 400;
    }
}

/* Returns nonzero when the media type (before any parameters) equals expected. */
static int media_type_is(const char *content_type, const char *expected)
{
    size_t length = strcspn(content_type, "; ");
    return length == strlen(expected) && strncasecmp(content_type, expected, length) == 0;
}

static void post_samples(daemon_state *state, const char *id, const http_request *request,
                         http_response *response)
{
    ingest_failure failure;
    dev_push_result pushed;

    const char *type = request->content_type;
    int supported = type == NULL || media_type_is(type, "application/json") ||
                    media_type_is(type, "application/octet-stream");
    int status;
    if (!supported) {
        state->counters.messages_received[METRICS_HTTP]++;
        failure.reason = INGEST_REJECT_UNSUPPORTED_MEDIA_TYPE;
        snprintf(failure.message, sizeof failure.message,
                 "content type \"%.80s\" is not supported; expected application/json or "
                 "application/octet-stream",
                 type);
        state->counters.messages_rejected[failure.reason]++;
        status = -1;
    } else {
        status =
            daemon_ingest(state, METRICS_HTTP, id, request->body, request->body_size,
                          request->body_too_large ? request->body_limit + 1 : 0, &failure, &pushed);
    }

    if (status != 0) {
        respond_error(response, status_for(failure.reason), ingest_reason_name(failure.reason),
                      failure.message);
        if (failure.reason == INGEST_REJECT_INFERENCE_BUSY)
            response->retry_after_s = BUSY_RETRY_AFTER_S;
        return;
    }
    /* windows_dropped reports windows lost after acceptance. The room check before the push
     * keeps it at 0, so a nonzero value means that the bound on the message's windows was
     * wrong. */
    respond_json(response, 202,
                 json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i}", "device", id, "accepted",
                           pushed.accepted, "duplicate", pushed.duplicate, "out_of_order",
                           pushed.out_of_order, "gaps", pushed.gaps, "clock_resets",
                           pushed.clock_resets, "windows_dropped", pushed.windows_dropped));
}

static void method_not_allowed(http_response *response, const char *allow)
{
    respond_error(response, 405, "method_not_allowed", "method not allowed on this path");
    response->allow = allow;
}

void api_handle(void *user, const http_request *request, http_response *response)
{
    daemon_state *state = user;
    const char *path = request->path;
    int is_get = strcmp(request->method, "GET") == 0 || strcmp(request->method, "HEAD") == 0;
    int is_post = strcmp(request->method, "POST") == 0;

    /* POST /api/v1/devices/{id}/samples */
    size_t prefix_length = strlen(SAMPLES_PREFIX);
    if (strncmp(path, SAMPLES_PREFIX, prefix_length) == 0) {
        const char *id = path + prefix_length;
        const char *slash = strchr(id, '/');
        char device_id[128];
        size_t id_length = slash != NULL ? (size_t)(slash - id) : strlen(id);
        if (id_length >= sizeof device_id)
            id_length = sizeof device_id - 1;
        memcpy(device_id, id, id_length);
        device_id[id_length] = '\0';

        if (slash != NULL && strcmp(slash, "/samples") == 0) {
            if (!is_post) {
                method_not_allowed(response, "POST");
                return;
            }
            post_samples(state, device_id, request, response);
            return;
        }
        if (slash == NULL) {
            if (!is_get) {
                method_not_allowed(response, "GET, HEAD");
                return;
            }
            get_device(state, device_id, response);
            return;
        }
        respond_error(response, 404, "not_found", "no such endpoint");
        return;
    }

    static const struct {
        const char *path;
        void (*handler)(daemon_state *, http_response *);
    } routes[] = {
        {"/healthz", NULL},
        {"/readyz", get_readyz},
        {"/metrics", get_metrics},
        {"/api/v1/status", get_status},
        {"/api/v1/devices", get_devices},
        {"/api/v1/models", get_models},
    };

    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        if (!is_get) {
            method_not_allowed(response, "GET, HEAD");
            return;
        }
        if (routes[i].handler == NULL) {
            respond_json(response, 200, json_pack("{s:s}", "status", "ok"));
            return;
        }
        routes[i].handler(state, response);
        return;
    }
    respond_error(response, 404, "not_found", "no such endpoint");
}
