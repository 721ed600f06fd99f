/*
 * The daemon's lifecycle and its ingest path (see daemon.h).
 *
 * Start: config, model, device table, HTTP server, MQTT client, signals, then READY=1.
 * Message: decode, find or create the device, check its rate, and push its samples through the
 * device's stages. Each completed window goes to the runner, and each result updates the
 * device's decision and may publish an event.
 * Stop: stop HTTP, let queued windows finish, publish "offline", disconnect, close handles.
 */
#include "daemon.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "babymamba/model.h"
#include "events.h"

/* Maximum time a stop waits for queued windows before it disconnects anyway. */
#define DRAIN_TIMEOUT_MS 5000

/* Time the MQTT disconnect may take to deliver the "offline" status. */
#define DISCONNECT_TIMEOUT_MS 2000

/* Input intervals a device must have shown before its own rate estimate is trusted for a
 * message that carries a single sample. */
#define RATE_MIN_INTERVALS 8

int daemon_load_config(cfg_config *config, const char *config_path,
                       const daemon_override *overrides, int override_count, char *errors,
                       size_t errors_size)
{
    errors[0] = '\0';
    if (cfg_init_defaults(config) != 0) {
        snprintf(errors, errors_size, "out of memory for the configuration\n");
        return -1;
    }

    int status = 0;
    if (config_path != NULL && cfg_load_file(config, config_path, errors, errors_size) != 0)
        status = -1;
    for (int i = 0; i < override_count; i++) {
        if (cfg_set_text(config, overrides[i].key, overrides[i].value, errors, errors_size) != 0)
            status = -1;
    }

    /* Cross-key checks that the table cannot express. */
    if (config->mqtt_reconnect_min_s > config->mqtt_reconnect_max_s) {
        size_t used = strlen(errors);
        snprintf(errors + used, errors_size - used,
                 "key 'mqtt.reconnect_min_s': %d is above mqtt.reconnect_max_s %d\n",
                 config->mqtt_reconnect_min_s, config->mqtt_reconnect_max_s);
        status = -1;
    }
    if (strcmp(config->http_listen, "none") != 0) {
        struct sockaddr_storage address;
        char why[256];
        if (http_parse_listen(config->http_listen, &address, why, sizeof why) != 0) {
            size_t used = strlen(errors);
            snprintf(errors + used, errors_size - used, "key 'http.listen': %s\n", why);
            status = -1;
        }
    }
    return status;
}

static uint64_t now_ms(daemon_state *state)
{
    return uv_now(state->loop);
}

static int mqtt_enabled(const daemon_state *state)
{
    return state->mqtt != NULL;
}

/* Counts a rejected message and logs it, rate-limited per device when the device is known and
 * per reason otherwise, so that one faulty sender cannot hide the errors of others. */
static void reject(daemon_state *state, device *d, const char *device_id,
                   const ingest_failure *failure)
{
    state->counters.messages_rejected[failure->reason]++;

    /* Busy slots are the daemon's state, not the sender's fault, and hit every device at once,
     * so they share one log budget. */
    log_limit *limit = &state->reason_limits[failure->reason];
    if (d != NULL)
        d->messages_rejected++;
    if (d != NULL && failure->reason != INGEST_REJECT_INFERENCE_BUSY)
        limit = &d->log_limit;

    uint32_t suppressed = 0;
    if (!log_limit_allow(limit, now_ms(state), &suppressed))
        return;
    if (suppressed > 0)
        LOG_WARN("ingest", "device %s: message rejected (%s): %s (%u similar lines suppressed)",
                 device_id, ingest_reason_name(failure->reason), failure->message, suppressed);
    else
        LOG_WARN("ingest", "device %s: message rejected (%s): %s", device_id,
                 ingest_reason_name(failure->reason), failure->message);
}

/* Device callback: a window is complete, so copy it into a job slot and queue it. */
static void on_window(void *user, device *d, int64_t start_ns, int64_t end_ns)
{
    daemon_state *state = user;
    state->windows_completed++;

    runner_job *job = runner_job_acquire(state->runner);
    if (job == NULL) {
        state->counters.windows_dropped[METRICS_WINDOW_QUEUE_FULL]++;
        d->windows_dropped++;
        uint32_t suppressed = 0;
        if (log_limit_allow(&state->window_drop_limit, now_ms(state), &suppressed))
            LOG_WARN("runner",
                     "device %s: window dropped because all %d inference slots are "
                     "busy; raise inference.workers or inference.queue_windows",
                     d->id, state->config.inference_queue_windows);
        return;
    }

    bm_stream_copy_window(d->stream, runner_job_window(job), 1);

    runner_tag tag = {.epoch = state->model_epoch, .start_ns = start_ns, .end_ns = end_ns};
    snprintf(tag.device_id, sizeof tag.device_id, "%s", d->id);
    runner_job_submit(state->runner, job, &tag);
}

/* Returns the rate of the batch from its own timestamps, or the device's estimate for a
 * single sample; 0 when neither is known yet. */
static double observed_rate_hz(const device *d, const ingest_batch *batch)
{
    if (batch->count >= 2) {
        int64_t span = batch->t_ns[batch->count - 1] - batch->t_ns[0];
        if (span > 0)
            return (double)(batch->count - 1) * 1e9 / (double)span;
        return 0.0;
    }
    if (bm_resampler_interval_count(d->resampler) >= RATE_MIN_INTERVALS)
        return dev_input_rate_hz(d);
    return 0.0;
}

/* Rejects an HTTP message whose windows the free inference slots could not take, before the
 * message changes any state, so that a sender answered 202 never loses a window to queue_full.
 * An HTTP sender can retry later. MQTT has no reply, so MQTT intake is paused instead
 * (apply_backpressure). Returns 0 when the message fits. */
static int check_inference_room(daemon_state *state, const device *d, const ingest_batch *batch,
                                int64_t gap_ns, ingest_failure *failure)
{
    int needed = dev_windows_upper_bound(d, &state->spec, batch, gap_ns);
    int capacity = state->config.inference_queue_windows;
    if (needed > capacity) {
        /* The bound for k samples at the model's rate is k + 1 stream samples, which complete
         * at most ceil((k + 1) / hop) windows from any position in the hop schedule, so this
         * many samples always fit in an idle queue. */
        long max_samples = (long)(capacity - 1) * state->spec.stream.hop;
        return ingest_fail(failure, INGEST_REJECT_TOO_MANY_WINDOWS,
                           "the message can complete up to %d windows, more than the %d "
                           "inference slots (inference.queue_windows); send at most %ld samples "
                           "per message at the model's %g Hz",
                           needed, capacity, max_samples, state->spec.stream.sample_rate_hz);
    }

    int free_slots = runner_free_slots(state->runner);
    if (needed > free_slots)
        return ingest_fail(failure, INGEST_REJECT_INFERENCE_BUSY,
                           "the message can complete up to %d windows but only %d of %d "
                           "inference slots are free; retry after %d s",
                           needed, free_slots, capacity, BUSY_RETRY_AFTER_S);
    return 0;
}

int daemon_ingest(daemon_state *state, metrics_transport transport, const char *device_id,
                  const void *payload, size_t size, size_t oversize, ingest_failure *failure,
                  dev_push_result *pushed)
{
    memset(pushed, 0, sizeof *pushed);
    state->counters.messages_received[transport]++;

    device *d = NULL;
    if (!ingest_device_id_valid(device_id, strlen(device_id))) {
        ingest_fail(
            failure, INGEST_REJECT_INVALID_DEVICE_ID,
            "device id \"%.80s\" is invalid; expected 1 to 64 characters of [A-Za-z0-9._-], "
            "not '.' or '..'",
            device_id);
        goto rejected;
    }
    d = dev_find(state->devices, device_id);

    size_t limit = transport == METRICS_MQTT ? (size_t)state->config.ingest_max_payload_bytes
                                             : (size_t)state->config.http_max_body_bytes;
    if (oversize > 0 || size > limit) {
        ingest_fail(failure, INGEST_REJECT_PAYLOAD_TOO_LARGE,
                    "payload of %zu bytes is larger than the limit of %zu bytes",
                    oversize > 0 ? oversize : size, limit);
        goto rejected;
    }
    if (state->runner == NULL) {
        ingest_fail(failure, INGEST_REJECT_NO_MODEL, "no model is loaded");
        goto rejected;
    }

    ingest_batch batch;
    if (ingest_decode(state->decoder, payload, size, &state->spec.expect, &batch, failure) != 0)
        goto rejected;

    int64_t gap_ns = llround(state->config.stream_gap_limit_s * 1e9);
    if (transport == METRICS_HTTP && check_inference_room(state, d, &batch, gap_ns, failure) != 0)
        goto rejected;

    if (d == NULL) {
        if (dev_count(state->devices) >= state->config.devices_max) {
            ingest_fail(failure, INGEST_REJECT_TOO_MANY_DEVICES,
                        "%d devices are tracked already, the limit of devices.max",
                        state->config.devices_max);
            goto rejected;
        }
        char why[256];
        d = dev_create(state->devices, device_id, &state->spec,
                       state->config.events_smoothing_windows, now_ms(state), why, sizeof why);
        if (d == NULL) {
            ingest_fail(failure, INGEST_REJECT_INTERNAL, "creating the device state failed: %s",
                        why);
            goto rejected;
        }
        LOG_INFO("device", "device %s: first message, tracking %d devices", device_id,
                 dev_count(state->devices));
    }
    d->last_seen_ms = now_ms(state);
    d->messages++;

    double model_rate = state->spec.stream.sample_rate_hz;
    double rate = observed_rate_hz(d, &batch);
    if (rate > 0.0 && rate < state->config.stream_min_rate_fraction * model_rate) {
        ingest_fail(failure, INGEST_REJECT_RATE_TOO_LOW,
                    "input rate %.3g Hz is below %.3g Hz (stream.min_rate_fraction %.3g of the "
                    "model's %.3g Hz); the model cannot be served from this stream",
                    rate, state->config.stream_min_rate_fraction * model_rate,
                    state->config.stream_min_rate_fraction, model_rate);
        goto rejected;
    }

    uint64_t windows_dropped_before = d->windows_dropped;
    dev_push(d, &batch, gap_ns, on_window, state, pushed);
    pushed->windows_dropped = (int)(d->windows_dropped - windows_dropped_before);

    state->counters.samples_ingested[transport] += (uint64_t)pushed->accepted;
    state->counters.samples_dropped[METRICS_DROP_DUPLICATE] += (uint64_t)pushed->duplicate;
    state->counters.samples_dropped[METRICS_DROP_OUT_OF_ORDER] += (uint64_t)pushed->out_of_order;
    state->counters.stream_gaps += (uint64_t)pushed->gaps;
    state->counters.stream_clock_resets += (uint64_t)pushed->clock_resets;
    state->counters.sequence_gaps += (uint64_t)pushed->sequence_gaps;

    if (pushed->duplicate + pushed->out_of_order > 0 || pushed->gaps + pushed->clock_resets > 0) {
        uint32_t suppressed = 0;
        if (log_limit_allow(&d->stream_log_limit, now_ms(state), &suppressed))
            LOG_INFO("ingest",
                     "device %s: %d duplicate and %d out-of-order samples dropped, "
                     "%d gaps longer than %g s and %d clock jumps back restarted the window",
                     d->id, pushed->duplicate, pushed->out_of_order, pushed->gaps,
                     state->config.stream_gap_limit_s, pushed->clock_resets);
    }
    return 0;

rejected:
    reject(state, d, device_id, failure);
    return -1;
}

/* Publishes d's activity as classified by model, which may be the model a reload replaced. */
static void publish_event(daemon_state *state, device *d, const bm_model *model)
{
    size_t size = 0;
    char *payload = events_build(d, model, state->config.events_smoothing, &size);
    char topic[256];
    if (payload == NULL ||
        events_topic(state->config.mqtt_topic_prefix, d->id, topic, sizeof topic) != 0) {
        free(payload);
        state->counters.events_failed[METRICS_EVENT_BUILD_FAILED]++;
        LOG_ERROR("events", "device %s: building the activity event failed", d->id);
        return;
    }

    /* events_published counts the event when the client reports its delivery
     * (on_mqtt_event_delivered), not here, because Paho buffers it while the broker is down. */
    if (mqtt_publish(state->mqtt, topic, payload, size, state->config.events_qos,
                     state->config.events_retain, 1) == 0) {
        events_mark_published(d, now_ms(state));
    } else {
        state->counters.events_failed[METRICS_EVENT_BUFFER_FULL]++;
        uint32_t suppressed = 0;
        if (log_limit_allow(&state->event_fail_limit, now_ms(state), &suppressed))
            LOG_WARN("events",
                     "device %s: activity event not queued: the MQTT client's buffer "
                     "of %d messages is full",
                     d->id, state->config.mqtt_max_buffered);
    }
    free(payload);
}

/* Pauses MQTT intake while the free inference slots could not take the windows of the next
 * message, and resumes it when they can. The inbox then fills up to ingest.queue_capacity, so
 * a burst waits there instead of being dropped as queue_full windows while the CPU is idle. */
static void apply_backpressure(daemon_state *state)
{
    if (state->mqtt == NULL)
        return;

    int needed = state->peak_windows_per_message > 0 ? state->peak_windows_per_message : 1;
    if (runner_free_slots(state->runner) < needed)
        mqtt_pause_messages(state->mqtt);
    else
        mqtt_resume_messages(state->mqtt);
}

/* Counts and logs a window that was not classified. Each reason has its own log budget, so a
 * burst of one kind cannot hide the others. */
static void drop_result(daemon_state *state, device *d, const runner_result *result)
{
    uint32_t suppressed = 0;

    if (result->cancelled) {
        state->counters.windows_dropped[METRICS_WINDOW_CANCELLED]++;
        if (log_limit_allow(&state->cancel_log_limit, now_ms(state), &suppressed))
            LOG_WARN("runner", "device %s: window dropped because the stop timed out",
                     result->tag.device_id);
        return;
    }
    if (d == NULL || result->tag.epoch != state->model_epoch) {
        state->counters.windows_dropped[METRICS_WINDOW_STALE]++;
        if (log_limit_allow(&state->stale_log_limit, now_ms(state), &suppressed))
            LOG_INFO("runner",
                     "device %s: result dropped because the device expired or the model's "
                     "input specification changed while its window was queued",
                     result->tag.device_id);
        return;
    }

    state->counters.windows_dropped[METRICS_WINDOW_INFERENCE_ERROR]++;
    d->windows_dropped++;
    if (log_limit_allow(&d->inference_log_limit, now_ms(state), &suppressed)) {
        if (suppressed > 0)
            LOG_WARN("runner", "device %s: window not classified: %s (%u similar lines suppressed)",
                     d->id, result->error, suppressed);
        else
            LOG_WARN("runner", "device %s: window not classified: %s", d->id, result->error);
    }
}

/* Runner callback: one window's result, from the current runner or from one a reload retired. */
static void on_result(void *user, const runner_result *result)
{
    daemon_state *state = user;
    apply_backpressure(state);

    device *d = dev_find(state->devices, result->tag.device_id);
    if (!result->ok || d == NULL || result->tag.epoch != state->model_epoch) {
        drop_result(state, d, result);
        return;
    }

    state->counters.windows_classified++;
    metrics_observe_duration(&state->counters, result->duration_s);
    d->windows++;

    events_record(d, result, state->config.events_smoothing,
                  state->config.events_smoothing_windows);
    /* Every-window events serve consumers that score or log each decision, such as
     * `babymamba replay --labels`; by default only changes and heartbeats are published. */
    int due = state->config.events_every_window ||
              events_due(d, now_ms(state), state->config.events_heartbeat_s);
    if (mqtt_enabled(state) && due)
        publish_event(state, d, result->model);
}

static void on_mqtt_message(void *user, const char *topic, const void *payload, size_t size,
                            size_t oversize)
{
    daemon_state *state = user;

    char device_id[65];
    if (ingest_device_from_topic(state->config.mqtt_topic_filter, topic, device_id,
                                 sizeof device_id) != 0) {
        ingest_failure failure;
        state->counters.messages_received[METRICS_MQTT]++;
        ingest_fail(&failure, INGEST_REJECT_INVALID_DEVICE_ID,
                    "topic \"%.120s\" has no valid device id at the '+' of %s; expected 1 to 64 "
                    "characters of [A-Za-z0-9._-]",
                    topic, state->config.mqtt_topic_filter);
        reject(state, NULL, "?", &failure);
        return;
    }

    ingest_failure failure;
    dev_push_result pushed;
    uint64_t windows_before = state->windows_completed;
    daemon_ingest(state, METRICS_MQTT, device_id, payload, size, oversize, &failure, &pushed);

    /* The maximum number of windows one message has completed sizes the room that
     * backpressure keeps free.
     * A message that completes more windows than there are slots loses the rest as queue_full
     * whatever the pause does. */
    uint64_t produced = state->windows_completed - windows_before;
    if (produced > (uint64_t)state->peak_windows_per_message)
        state->peak_windows_per_message = produced > (uint64_t)state->config.inference_queue_windows
                                              ? state->config.inference_queue_windows
                                              : (int)produced;
    apply_backpressure(state);
}

static void on_mqtt_connection(void *user, int connected)
{
    daemon_state *state = user;
    state->counters.mqtt_reconnects = mqtt_reconnects(state->mqtt);
    notify_status(state->notify, connected ? "serving; MQTT connected" : "serving; MQTT down");
}

static void on_mqtt_publish_failed(void *user, const char *topic, const char *why)
{
    daemon_state *state = user;
    uint32_t suppressed = 0;
    if (log_limit_allow(&state->event_fail_limit, now_ms(state), &suppressed))
        LOG_WARN("mqtt", "publish to %s failed: %s", topic, why);
}

static void on_mqtt_event_delivered(void *user)
{
    daemon_state *state = user;
    state->counters.events_published++;
}

static void on_mqtt_event_failed(void *user, int code)
{
    daemon_state *state = user;
    state->counters.events_failed[METRICS_EVENT_DELIVERY_FAILED]++;
    uint32_t suppressed = 0;
    if (log_limit_allow(&state->event_fail_limit, now_ms(state), &suppressed))
        LOG_WARN("events", "delivering an activity event failed (Paho code %d)", code);
}

static void close_all(daemon_state *state);

/* Counts the events Paho still holds, which the disconnect discards, and logs the stop as it
 * happened: with "offline" acknowledged, or with the broker out of reach. */
static void on_mqtt_stopped(void *user)
{
    daemon_state *state = user;

    int discarded = mqtt_events_pending(state->mqtt);
    if (discarded > 0) {
        state->counters.events_failed[METRICS_EVENT_DISCARDED_AT_STOP] += (uint64_t)discarded;
        LOG_WARN("events",
                 "%d activity events were not delivered before the stop and are discarded; "
                 "the broker was unreachable or did not acknowledge them",
                 discarded);
    }

    /* Messages that arrive after the drain are not decoded, because their windows could not
     * finish before the stop timeout anyway. They are counted so the loss is visible. */
    uint64_t unprocessed = mqtt_messages_discarded(state->mqtt);
    if (unprocessed > 0) {
        state->counters.messages_received[METRICS_MQTT] += unprocessed;
        state->counters.messages_rejected[INGEST_REJECT_STOPPING] += unprocessed;
        LOG_WARN("mqtt", "%llu sensor messages received during the stop were discarded unprocessed",
                 (unsigned long long)unprocessed);
    }

    if (mqtt_offline_acknowledged(state->mqtt))
        LOG_INFO("daemon", "disconnected from the broker; status %s set offline",
                 state->status_topic);
    else if (mqtt_ever_connected(state->mqtt))
        LOG_WARN("daemon",
                 "stopped without an acknowledged \"offline\": the broker is unreachable or "
                 "did not acknowledge it; the broker publishes the last will \"offline\" to %s "
                 "when it notices the lost connection",
                 state->status_topic);
    else
        LOG_WARN("daemon", "stopped without ever reaching the broker %s; status %s was not changed",
                 state->config.mqtt_uri, state->status_topic);
    close_all(state);
}

/* Expires idle devices and collects the counts of other threads. */
static void on_housekeeping(uv_timer_t *timer)
{
    daemon_state *state = timer->data;
    uint64_t now = now_ms(state);
    uint64_t idle_ms = (uint64_t)(state->config.devices_idle_expiry_s * 1000.0);

    device *d = dev_first(state->devices);
    while (d != NULL) {
        device *next = dev_next(d);
        if (now - d->last_seen_ms >= idle_ms) {
            LOG_INFO("device", "device %s: expired after %.0f s without data", d->id,
                     state->config.devices_idle_expiry_s);

            /* An empty retained message clears the broker's copy of the last activity, so a
             * new subscriber does not receive a stale state of a device that is gone. */
            char topic[256];
            if (mqtt_enabled(state) && d->has_activity &&
                events_topic(state->config.mqtt_topic_prefix, d->id, topic, sizeof topic) == 0)
                mqtt_publish(state->mqtt, topic, "", 0, state->config.events_qos, 1, 0);
            dev_remove(state->devices, d);
            state->counters.devices_expired++;
        }
        d = next;
    }

    if (state->mqtt != NULL) {
        uint64_t dropped = mqtt_queue_dropped(state->mqtt);
        uint64_t fresh = dropped - state->mqtt_dropped_seen;
        state->mqtt_dropped_seen = dropped;
        state->counters.messages_rejected[INGEST_REJECT_QUEUE_FULL] += fresh;
        state->counters.messages_received[METRICS_MQTT] += fresh;

        uint32_t suppressed = 0;
        if (fresh > 0 && log_limit_allow(&state->queue_drop_limit, now, &suppressed))
            LOG_WARN("mqtt",
                     "%llu messages dropped because the queue of %d was full; raise "
                     "ingest.queue_capacity or reduce the input rate",
                     (unsigned long long)fresh, state->config.ingest_queue_capacity);
    }
}

void daemon_fill_gauges(daemon_state *state, metrics_gauges *gauges)
{
    const bm_model *model = state->runner != NULL ? runner_model(state->runner) : NULL;

    memset(gauges, 0, sizeof *gauges);
    gauges->version = BABYMAMBAD_VERSION;
    gauges->model_name = model != NULL ? bm_model_name(model) : "";
    gauges->model_version = model != NULL ? bm_model_version(model) : "";
    gauges->model_sha256 = model != NULL ? bm_model_sha256(model) : "";
    gauges->devices_active = dev_count(state->devices);
    gauges->mqtt_enabled = mqtt_enabled(state);
    gauges->mqtt_connected = mqtt_is_connected(state->mqtt);
    gauges->ingest_queue_depth = mqtt_queue_depth(state->mqtt);
    gauges->ingest_queue_capacity = state->config.ingest_queue_capacity;
    gauges->inference_queue_depth = runner_pending(state->runner);
    gauges->start_time_s = state->start_time_s;
}

/* Loads a model file and creates its runner. Returns NULL with the reason logged. */
static runner *load_runner(daemon_state *state, const char *path)
{
    bm_model *model = NULL;
    bm_error bm_err;
    bm_error_clear(&bm_err);
    if (bm_model_load(path, &model, &bm_err) != BM_OK) {
        LOG_ERROR("model", "loading %s failed (%s): %s", path, bm_status_name(bm_err.status),
                  bm_err.message);
        return NULL;
    }

    char why[256];
    runner *r =
        runner_create(state->loop, model, state->config.inference_workers,
                      state->config.inference_queue_windows, on_result, state, why, sizeof why);
    if (r == NULL) {
        LOG_ERROR("model", "preparing %s for inference failed: %s", path, why);
        return NULL;
    }

    const bm_model_info *info = bm_model_get_info(model);
    LOG_INFO("model",
             "loaded %s: %s %s, sha256 %s, %s %d channels at %g Hz, window %d, hop %d, "
             "%d classes",
             path, bm_model_name(model), bm_model_version(model), bm_model_sha256(model),
             bm_model_preprocessing(model), info->n_channels, info->sample_rate_hz,
             info->window_length, info->hop, info->n_classes);
    return r;
}

/* Swaps in the model of state->config when its file changed. Device state is kept when the
 * input specification is unchanged and rebuilt otherwise. */
static int reload_model(daemon_state *state)
{
    runner *fresh = load_runner(state, state->config.model_path);
    if (fresh == NULL)
        return -1;

    const bm_model *old_model = runner_model(state->runner);
    const bm_model *new_model = runner_model(fresh);
    if (strcmp(bm_model_sha256(old_model), bm_model_sha256(new_model)) == 0) {
        LOG_INFO("model", "model unchanged (sha256 %s)", bm_model_sha256(new_model));
        runner_retire(fresh);
        return 0;
    }

    dev_spec spec;
    dev_spec_from_model(new_model, &spec);
    if (dev_spec_compatible(&state->spec, &spec)) {
        LOG_INFO("model", "input specification unchanged; %d devices keep their windows",
                 dev_count(state->devices));
    } else {
        state->model_epoch++;
        char why[256];
        if (dev_rebuild_all(state->devices, &spec, state->config.events_smoothing_windows, why,
                            sizeof why) != 0)
            LOG_ERROR("model", "rebuilding device state failed: %s; those devices were dropped",
                      why);
        LOG_INFO("model", "input specification changed; the windows of %d devices restarted",
                 dev_count(state->devices));
    }

    /* The old runner finishes the windows it has queued on the old model before the new one
     * starts, so results stay in order per device. */
    runner_follow(fresh, state->runner);
    runner_retire(state->runner);
    state->runner = fresh;
    state->spec = spec;
    apply_backpressure(state);
    snprintf(state->model_path, sizeof state->model_path, "%s", state->config.model_path);
    return 0;
}

static void reload(daemon_state *state)
{
    notify_reloading(state->notify);
    LOG_INFO("daemon", "reloading %s",
             state->config_path != NULL ? state->config_path : "(no config file)");

    cfg_config fresh;
    char errors[CFG_ERRORS_SIZE];
    if (daemon_load_config(&fresh, state->config_path, state->overrides, state->override_count,
                           errors, sizeof errors) != 0) {
        LOG_ERROR("config", "reload rejected; the running configuration stays:\n%s", errors);
        cfg_deinit(&fresh);
        state->counters.reloads_failed++;
        notify_ready(state->notify, "serving; the last reload failed");
        return;
    }

    errors[0] = '\0';
    if (cfg_list_restart_keys(&state->config, &fresh, errors, sizeof errors) > 0)
        LOG_WARN("config", "%s", errors);
    cfg_keep_restart_keys(&fresh, &state->config);

    cfg_config old = state->config;
    state->config = fresh;
    cfg_deinit(&old);

    log_set_level((log_level)state->config.log_level);
    http_set_max_body(state->http, (size_t)state->config.http_max_body_bytes);

    if (reload_model(state) != 0) {
        LOG_ERROR("model", "the model %s stays in service", state->model_path);
        state->counters.reloads_failed++;
        notify_ready(state->notify, "serving; the last model reload failed");
        return;
    }

    state->counters.reloads_succeeded++;
    LOG_INFO("daemon", "reloaded: babymambad %s, model %s (sha256 %s)", BABYMAMBAD_VERSION,
             state->model_path, bm_model_sha256(runner_model(state->runner)));
    notify_ready(state->notify, "serving");
}

static void on_close_handle(uv_handle_t *handle)
{
    (void)handle;
}

static void close_all(daemon_state *state)
{
    runner_retire(state->runner);
    state->runner = NULL;
    mqtt_destroy(state->mqtt);
    state->mqtt = NULL;
    notify_destroy(state->notify);
    state->notify = NULL;

    uv_close((uv_handle_t *)&state->signal_term, on_close_handle);
    uv_close((uv_handle_t *)&state->signal_int, on_close_handle);
    uv_close((uv_handle_t *)&state->signal_hup, on_close_handle);
    uv_close((uv_handle_t *)&state->housekeeping, on_close_handle);
    uv_close((uv_handle_t *)&state->drain_timer, on_close_handle);
}

/* Waits, a tick at a time, for queued windows to finish and publish their events, then
 * disconnects from the broker. */
static void on_drain_tick(uv_timer_t *timer)
{
    daemon_state *state = timer->data;

    int pending = runner_pending(state->runner);
    if (pending > 0 && now_ms(state) < state->drain_deadline_ms)
        return;
    if (pending > 0) {
        LOG_WARN("daemon", "stopping with %d windows still queued; they are dropped", pending);
        runner_cancel_waiting(state->runner);
    }
    uv_timer_stop(timer);

    if (state->mqtt != NULL)
        mqtt_stop(state->mqtt, DISCONNECT_TIMEOUT_MS);
    else
        close_all(state);
}

static void stop(daemon_state *state, const char *why)
{
    if (state->stopping)
        return;
    state->stopping = 1;

    LOG_INFO("daemon", "stopping (%s): %d devices, %d windows queued", why,
             dev_count(state->devices), runner_pending(state->runner));
    notify_stopping(state->notify);

    http_destroy(state->http);
    state->http = NULL;
    uv_timer_stop(&state->housekeeping);

    state->drain_deadline_ms = now_ms(state) + DRAIN_TIMEOUT_MS;
    uv_timer_start(&state->drain_timer, on_drain_tick, 0, 10);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    daemon_state *state = handle->data;
    if (signum == SIGHUP) {
        if (!state->stopping)
            reload(state);
        return;
    }
    stop(state, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int start_mqtt(daemon_state *state)
{
    if (strcmp(state->config.mqtt_uri, "none") == 0) {
        LOG_INFO("mqtt", "MQTT disabled (mqtt.uri is \"none\")");
        return 0;
    }

    snprintf(state->status_topic, sizeof state->status_topic, "%s/_status",
             state->config.mqtt_topic_prefix);
    mqtt_options options = {
        .uri = state->config.mqtt_uri,
        .client_id = state->config.mqtt_client_id,
        .filter = state->config.mqtt_topic_filter,
        .status_topic = state->status_topic,
        .protocol = state->config.mqtt_protocol,
        .qos = state->config.mqtt_qos,
        .keepalive_s = state->config.mqtt_keepalive_s,
        .reconnect_min_s = state->config.mqtt_reconnect_min_s,
        .reconnect_max_s = state->config.mqtt_reconnect_max_s,
        .max_buffered = state->config.mqtt_max_buffered,
        .queue_capacity = state->config.ingest_queue_capacity,
        .max_payload = (size_t)state->config.ingest_max_payload_bytes,
    };
    mqtt_callbacks callbacks = {
        .message = on_mqtt_message,
        .connection = on_mqtt_connection,
        .publish_failed = on_mqtt_publish_failed,
        .event_delivered = on_mqtt_event_delivered,
        .event_failed = on_mqtt_event_failed,
        .stopped = on_mqtt_stopped,
        .user = state,
    };

    char why[256];
    state->mqtt = mqtt_create(state->loop, &options, &callbacks, why, sizeof why);
    if (state->mqtt == NULL) {
        LOG_ERROR("mqtt", "%s", why);
        return -1;
    }
    return mqtt_start(state->mqtt);
}

static int start_http(daemon_state *state)
{
    if (strcmp(state->config.http_listen, "none") == 0) {
        LOG_INFO("http", "HTTP disabled (http.listen is \"none\")");
        return 0;
    }

    char why[256];
    state->http =
        http_create(state->loop, state->config.http_listen,
                    (size_t)state->config.http_max_body_bytes, api_handle, state, why, sizeof why);
    if (state->http == NULL) {
        LOG_ERROR("http", "%s", why);
        return -1;
    }
    LOG_INFO("http", "listening on %s (port %d)", state->config.http_listen,
             http_port(state->http));
    return 0;
}

static void start_signals_and_timers(daemon_state *state)
{
    uv_signal_init(state->loop, &state->signal_term);
    uv_signal_init(state->loop, &state->signal_int);
    uv_signal_init(state->loop, &state->signal_hup);
    state->signal_term.data = state;
    state->signal_int.data = state;
    state->signal_hup.data = state;
    uv_signal_start(&state->signal_term, on_signal, SIGTERM);
    uv_signal_start(&state->signal_int, on_signal, SIGINT);
    uv_signal_start(&state->signal_hup, on_signal, SIGHUP);

    uv_timer_init(state->loop, &state->housekeeping);
    uv_timer_init(state->loop, &state->drain_timer);
    state->housekeeping.data = state;
    state->drain_timer.data = state;
    uv_timer_start(&state->housekeeping, on_housekeeping, 1000, 1000);
}

int daemon_run(const char *config_path, const daemon_override *overrides, int override_count)
{
    daemon_state state_storage;
    daemon_state *state = &state_storage;
    memset(state, 0, sizeof *state);
    state->config_path = config_path;
    state->overrides = overrides;
    state->override_count = override_count;
    state->exit_code = 1;

    char errors[CFG_ERRORS_SIZE];
    if (daemon_load_config(&state->config, config_path, overrides, override_count, errors,
                           sizeof errors) != 0) {
        LOG_ERROR("config", "invalid configuration:\n%s", errors);
        cfg_deinit(&state->config);
        return 2;
    }
    log_set_level((log_level)state->config.log_level);
    LOG_INFO("daemon", "babymambad %s starting, config %s", BABYMAMBAD_VERSION,
             config_path != NULL ? config_path : "(defaults)");

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        LOG_ERROR("daemon", "initialising the event loop failed");
        cfg_deinit(&state->config);
        return 1;
    }
    state->loop = &loop;
    uv_update_time(&loop);
    state->start_ms = uv_now(&loop);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    state->start_time_s = (double)wall.tv_sec + 1e-9 * (double)wall.tv_nsec;

    state->devices = dev_table_create();
    state->decoder = ingest_decoder_create();
    state->notify = notify_create(&loop);
    if (state->devices == NULL || state->decoder == NULL || state->notify == NULL) {
        LOG_ERROR("daemon", "out of memory at startup");
        goto fail;
    }

    state->runner = load_runner(state, state->config.model_path);
    if (state->runner == NULL)
        goto fail;
    dev_spec_from_model(runner_model(state->runner), &state->spec);
    snprintf(state->model_path, sizeof state->model_path, "%s", state->config.model_path);

    start_signals_and_timers(state);
    if (start_http(state) != 0 || start_mqtt(state) != 0) {
        stop(state, "startup failed");
        uv_run(&loop, UV_RUN_DEFAULT);
        goto fail;
    }

    notify_ready(state->notify, "serving");
    LOG_INFO("daemon", "ready: model %s (sha256 %s), HTTP %s, MQTT %s",
             bm_model_name(runner_model(state->runner)),
             bm_model_sha256(runner_model(state->runner)), state->config.http_listen,
             state->config.mqtt_uri);

    uv_run(&loop, UV_RUN_DEFAULT);
    state->exit_code = 0;
    LOG_INFO("daemon", "stopped");

fail:
    if (state->notify != NULL || state->runner != NULL) {
        runner_retire(state->runner);
        state->runner = NULL;
        notify_destroy(state->notify);
        state->notify = NULL;
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&loop) != 0)
        LOG_WARN("daemon", "the event loop closed with handles still open");
    dev_table_destroy(state->devices);
    ingest_decoder_destroy(state->decoder);
    cfg_deinit(&state->config);
    return state->exit_code;
}
