/*
 * `babymamba replay`: streams a recording to babymambad as one or more simulated devices, over
 * MQTT or HTTP, prints the activity events that come back over MQTT, and with --labels scores
 * them against the recording's labels. docs/replay.md describes the command.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_common.h"
#include "commands.h"
#include "replay_http.h"
#include "replay_mqtt.h"
#include "replay_recording.h"
#include "replay_score.h"

static const char *const usage =
    "usage: babymamba replay FILE (--mqtt URI | --http URL [--mqtt URI]) [OPTIONS]\n"
    "       babymamba replay --hapt-acc FILE --hapt-gyro FILE [--hapt-labels FILE] ...\n"
    "\n"
    "Streams a recording to babymambad as N devices in batches of samples with t0_ns\n"
    "timestamps, prints each activity event that comes back over MQTT, and with --labels\n"
    "scores the events against the recording's labels.\n"
    "\n"
    "  FILE               CSV recording: t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z[,label]\n"
    "                     with t in seconds, acc in g, gyro in rad/s and label the HAPT\n"
    "                     activity id 0-12 (0 = unlabelled)\n"
    "  --hapt-acc FILE    raw HAPT accelerometer file acc_expXX_userYY.txt (50 Hz, g)\n"
    "  --hapt-gyro FILE   raw HAPT gyroscope file of the same experiment (rad/s)\n"
    "  --hapt-labels FILE HAPT labels.txt; its rows of this experiment and user are used\n"
    "  --mqtt URI         broker to publish to and to receive events from, tcp://HOST:PORT\n"
    "  --http URL         daemon to POST samples to, http://HOST:PORT; events are received\n"
    "                     only when --mqtt is given too\n"
    "  --speed X          replay at X times real time; 0 sends as fast as the broker or\n"
    "                     daemon acknowledges (default 1)\n"
    "  --devices N        number of simulated devices that each send the whole recording\n"
    "                     (default 1)\n"
    "  --device-prefix P  device ids are P1 ... PN (default replay-)\n"
    "  --batch N          samples per message (default 25)\n"
    "  --labels           score the events: accuracy and macro-F1 over labelled windows\n"
    "  --timeout S        seconds to wait for events after the last sample (default 10)\n"
    "  --window N         the daemon model's window length in samples, to count missing\n"
    "                     windows (default 128)\n"
    "  --hop N            the daemon model's hop in samples (default 64)\n"
    "  --topic-prefix P   the daemon's MQTT topic prefix (default babymamba)\n";

/* Messages published and not yet acknowledged before publishing waits. */
enum { REPLAY_MAX_INFLIGHT = 64 };

/* Seconds allowed to connect, subscribe, and for each HTTP POST. */
#define REPLAY_CONNECT_TIMEOUT_S 10.0

typedef struct replay_options {
    const char *csv_path;
    const char *acc_path;
    const char *gyro_path;
    const char *labels_path;
    const char *mqtt_uri;
    const char *http_url;
    const char *device_prefix;
    const char *topic_prefix;
    double speed;
    double timeout_s;
    long devices;
    long batch;
    long window_length;
    long hop;
    int labels;
} replay_options;

/* What the event callback needs; Paho calls it on its own thread, so the score and the output
 * are guarded by mutex. */
typedef struct replay_listener {
    pthread_mutex_t mutex;
    const replay_options *options;
    const replay_recording *recording;
    replay_score *score;
    int64_t base_ns; /* device time of the recording's first sample */
    long events;
    long ignored;
} replay_listener;

static int parse_count(const char *option, const char *value, long min, long max, long *out)
{
    return cli_parse_int("replay", option, value, min, max, out);
}

/* Device ids must satisfy the daemon's rule: 1 to 64 characters of [A-Za-z0-9._-]. */
static int check_device_prefix(const char *prefix, long devices)
{
    char digits[32];
    int n_digits = snprintf(digits, sizeof digits, "%ld", devices);
    static const char allowed[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    if (strlen(prefix) + (size_t)n_digits > 64 || prefix[strspn(prefix, allowed)] != '\0') {
        cli_error("replay",
                  "invalid value '%s' for --device-prefix: device ids must be 1 to 64 characters "
                  "of A-Z a-z 0-9 . _ -",
                  prefix);
        return 0;
    }
    return 1;
}

/* Applies one option with its value. Returns CLI_EXIT_OK or CLI_EXIT_USAGE. */
static int apply_option(replay_options *options, const char *option, const char *value)
{
    if (strcmp(option, "--hapt-acc") == 0) {
        options->acc_path = value;
    } else if (strcmp(option, "--hapt-gyro") == 0) {
        options->gyro_path = value;
    } else if (strcmp(option, "--hapt-labels") == 0) {
        options->labels_path = value;
    } else if (strcmp(option, "--mqtt") == 0) {
        options->mqtt_uri = value;
    } else if (strcmp(option, "--http") == 0) {
        options->http_url = value;
    } else if (strcmp(option, "--device-prefix") == 0) {
        options->device_prefix = value;
    } else if (strcmp(option, "--topic-prefix") == 0) {
        options->topic_prefix = value;
    } else if (strcmp(option, "--speed") == 0) {
        if (!cli_parse_double("replay", option, value, 0.0, 1e6, &options->speed)) {
            return CLI_EXIT_USAGE;
        }
    } else if (strcmp(option, "--timeout") == 0) {
        if (!cli_parse_double("replay", option, value, 0.0, 86400.0, &options->timeout_s)) {
            return CLI_EXIT_USAGE;
        }
    } else if (strcmp(option, "--devices") == 0) {
        if (!parse_count(option, value, 1, 100000, &options->devices)) {
            return CLI_EXIT_USAGE;
        }
    } else if (strcmp(option, "--batch") == 0) {
        /* At an estimated 100 bytes per sample, 2000 samples fit the daemon's default limit of
         * 256 KiB per MQTT payload. */
        if (!parse_count(option, value, 1, 2000, &options->batch)) {
            return CLI_EXIT_USAGE;
        }
    } else if (strcmp(option, "--window") == 0) {
        if (!parse_count(option, value, 1, 1000000, &options->window_length)) {
            return CLI_EXIT_USAGE;
        }
    } else if (strcmp(option, "--hop") == 0) {
        if (!parse_count(option, value, 1, 1000000, &options->hop)) {
            return CLI_EXIT_USAGE;
        }
    } else {
        cli_error("replay", "unknown option '%s'", option);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* Checks that the options fit together. Returns CLI_EXIT_OK or CLI_EXIT_USAGE. */
static int check_options(const replay_options *options)
{
    int hapt =
        options->acc_path != NULL || options->gyro_path != NULL || options->labels_path != NULL;
    if (options->csv_path != NULL && hapt) {
        cli_error("replay", "give either FILE or --hapt-acc and --hapt-gyro, not both");
        return CLI_EXIT_USAGE;
    }
    if (options->csv_path == NULL && !hapt) {
        cli_error("replay", "missing recording: give FILE or --hapt-acc and --hapt-gyro");
        return CLI_EXIT_USAGE;
    }
    if (hapt && (options->acc_path == NULL || options->gyro_path == NULL)) {
        cli_error("replay", "--hapt-acc and --hapt-gyro are both required for a HAPT recording");
        return CLI_EXIT_USAGE;
    }
    if (options->mqtt_uri == NULL && options->http_url == NULL) {
        cli_error("replay", "missing destination: give --mqtt URI or --http URL");
        return CLI_EXIT_USAGE;
    }
    if (options->labels && options->mqtt_uri == NULL) {
        cli_error("replay", "--labels needs --mqtt URI to receive the daemon's events");
        return CLI_EXIT_USAGE;
    }
    if (options->topic_prefix[0] == '\0' || strpbrk(options->topic_prefix, "+#") != NULL) {
        cli_error("replay",
                  "invalid value '%s' for --topic-prefix: expected a topic without + or #",
                  options->topic_prefix);
        return CLI_EXIT_USAGE;
    }
    if (!check_device_prefix(options->device_prefix, options->devices)) {
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* Parses the arguments after "replay". Returns CLI_EXIT_OK to go on, or the exit status. */
static int parse_arguments(int argc, char **argv, replay_options *options, int *help)
{
    memset(options, 0, sizeof *options);
    options->device_prefix = "replay-";
    options->topic_prefix = "babymamba";
    options->speed = 1.0;
    options->timeout_s = 10.0;
    options->devices = 1;
    options->batch = 25;
    options->window_length = 128;
    options->hop = 64;

    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (cli_is_help(option)) {
            *help = 1;
            return CLI_EXIT_OK;
        }
        if (option[0] != '-' || strcmp(option, "-") == 0) {
            if (options->csv_path != NULL) {
                cli_error("replay", "unexpected argument '%s': only one FILE is replayed", option);
                return CLI_EXIT_USAGE;
            }
            options->csv_path = option;
            continue;
        }
        if (strcmp(option, "--labels") == 0) {
            options->labels = 1;
            continue;
        }
        if (i + 1 >= argc) {
            cli_error("replay", "missing value for %s", option);
            return CLI_EXIT_USAGE;
        }
        int status = apply_option(options, option, argv[++i]);
        if (status != CLI_EXIT_OK) {
            return status;
        }
    }
    return check_options(options);
}

static int64_t realtime_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static double monotonic_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static void sleep_until(double deadline_s)
{
    double remaining = deadline_s - monotonic_s();
    if (remaining <= 0.0) {
        return;
    }
    struct timespec pause = {.tv_sec = (time_t)remaining,
                             .tv_nsec = (long)((remaining - floor(remaining)) * 1e9)};
    nanosleep(&pause, NULL);
}

/* The device time of batch first sample: base_ns plus the recording's offset. */
static int64_t batch_t0_ns(const replay_recording *recording, int64_t base_ns, size_t first)
{
    return base_ns + llround((recording->t[first] - recording->t[0]) * 1e9);
}

/* Fills t_ns with the device time of each sample exactly as the daemon computes it from a
 * batch's t0_ns and rate_hz, so that event windows map back to samples. */
static void compute_device_times(const replay_recording *recording, int64_t base_ns, size_t batch,
                                 int64_t *t_ns)
{
    double period_ns = 1e9 / recording->rate_hz;
    for (size_t first = 0; first < recording->n_samples; first += batch) {
        int64_t t0_ns = batch_t0_ns(recording, base_ns, first);
        for (size_t i = first; i < first + batch && i < recording->n_samples; i++) {
            t_ns[i] = t0_ns + llround((double)(i - first) * period_ns);
        }
    }
}

/* Writes value with the fewest significant digits (at most nine) that read back as the same
 * float, so 0.1f is sent as 0.1 and not 0.100000001. */
static int format_float(char *out, size_t size, float value)
{
    int written = 0;
    for (int digits = 6; digits <= 9; digits++) {
        written = snprintf(out, size, "%.*g", digits, (double)value);
        if (written < 0 || (size_t)written >= size || strtof(out, NULL) == value) {
            break;
        }
    }
    return written;
}

/* Writes the JSON document of samples [first, first + count) into buffer. Returns its length,
 * or 0 when buffer is too small. */
static size_t build_payload(const replay_recording *recording, int64_t t0_ns, size_t first,
                            size_t count, long seq, char *buffer, size_t size)
{
    size_t used = 0;
    int written = snprintf(buffer, size,
                           "{\"t0_ns\":%lld,\"rate_hz\":%.17g,\"seq\":%ld,"
                           "\"units\":{\"acc\":\"g\",\"gyro\":\"rad/s\"}",
                           (long long)t0_ns, recording->rate_hz, seq);
    if (written < 0 || (size_t)written >= size) {
        return 0;
    }
    used = (size_t)written;

    const float *sensors[2] = {recording->acc, recording->gyro};
    const char *names[2] = {"acc", "gyro"};
    for (int s = 0; s < 2; s++) {
        written = snprintf(buffer + used, size - used, ",\"%s\":[", names[s]);
        if (written < 0 || (size_t)written >= size - used) {
            return 0;
        }
        used += (size_t)written;
        for (size_t i = first; i < first + count; i++) {
            const float *v = sensors[s] + i * 3;
            char numbers[3][24];
            for (int axis = 0; axis < 3; axis++) {
                format_float(numbers[axis], sizeof numbers[axis], v[axis]);
            }
            written = snprintf(buffer + used, size - used, "%s[%s,%s,%s]", i > first ? "," : "",
                               numbers[0], numbers[1], numbers[2]);
            if (written < 0 || (size_t)written >= size - used) {
                return 0;
            }
            used += (size_t)written;
        }
        if (used + 1 >= size) {
            return 0;
        }
        buffer[used++] = ']';
    }
    if (used + 2 >= size) {
        return 0;
    }
    buffer[used++] = '}';
    buffer[used] = '\0';
    return used;
}

/* Returns the 0-based device index of id, or -1 for an id that this replay does not use. */
static int device_index(const replay_options *options, const char *id)
{
    size_t prefix_length = strlen(options->device_prefix);
    if (strncmp(id, options->device_prefix, prefix_length) != 0) {
        return -1;
    }
    const char *digits = id + prefix_length;
    char *end = NULL;
    long k = strtol(digits, &end, 10);
    if (end == digits || *end != '\0' || digits[0] == '0' || k < 1 || k > options->devices) {
        return -1;
    }
    return (int)(k - 1);
}

/* Reads a window bound from "NAME_ns" (integer nanoseconds), else "NAME" (seconds). */
static int read_time_ns(json_t *event, const char *name, int64_t *out)
{
    char key[32];
    snprintf(key, sizeof key, "%s_ns", name);
    json_t *value = json_object_get(event, key);
    if (json_is_integer(value)) {
        *out = (int64_t)json_integer_value(value);
        return 1;
    }
    value = json_object_get(event, name);
    if (json_is_number(value)) {
        *out = llround(json_number_value(value) * 1e9);
        return 1;
    }
    return 0;
}

/* Prints one event as "device start-end activity confidence", with times in the recording's
 * own seconds, and records it in the score. Runs on Paho's thread. */
static void on_event(void *user, const char *topic, const char *payload, size_t size, int retained)
{
    replay_listener *listener = user;
    json_error_t error;
    json_t *event = json_loadb(payload, size, 0, &error);
    const char *device = json_string_value(json_object_get(event, "device"));
    const char *activity = json_string_value(json_object_get(event, "activity"));
    json_t *confidence = json_object_get(event, "confidence");
    int64_t start_ns = 0;
    int64_t end_ns = 0;

    pthread_mutex_lock(&listener->mutex);
    /* A retained event was published before this replay subscribed, so it belongs to an
     * earlier run. */
    if (retained) {
        listener->ignored++;
        goto done;
    }
    if (event == NULL || device == NULL || activity == NULL || !json_is_number(confidence) ||
        !read_time_ns(event, "window_start", &start_ns) ||
        !read_time_ns(event, "window_end", &end_ns)) {
        fprintf(stderr,
                "babymamba replay: ignoring an invalid event on %s: expected device, activity, "
                "confidence, window_start and window_end\n",
                topic);
        listener->ignored++;
        goto done;
    }

    int index = device_index(listener->options, device);
    int truth = 0;
    replay_window_kind kind =
        replay_score_add(listener->score, index, start_ns, end_ns, activity, &truth);
    const replay_recording *recording = listener->recording;
    double start_s = recording->t[0] + (double)(start_ns - listener->base_ns) / 1e9;
    double end_s = recording->t[0] + (double)(end_ns - listener->base_ns) / 1e9;
    printf("%s %.3f-%.3f %s %.4f", device, start_s, end_s, activity, json_number_value(confidence));
    if (kind == REPLAY_WINDOW_DUPLICATE) {
        printf(" (repeated window)");
    } else if (kind == REPLAY_WINDOW_OUTSIDE) {
        printf(" (not a window of this replay)");
    } else if (listener->options->labels && kind == REPLAY_WINDOW_SCORED) {
        printf(" (label %d)", truth);
    } else if (listener->options->labels) {
        printf(" (unscored)");
    }
    printf("\n");
    fflush(stdout);
    listener->events++;

done:
    pthread_mutex_unlock(&listener->mutex);
    json_decref(event);
}

/* Subscribes to the activity topic of every device. */
static int subscribe_devices(replay_mqtt *mqtt, const replay_options *options)
{
    char **topics = calloc((size_t)options->devices, sizeof *topics);
    if (topics == NULL) {
        cli_error("replay", "out of memory");
        return 0;
    }
    int ok = 1;
    for (long k = 0; k < options->devices && ok; k++) {
        size_t size = strlen(options->topic_prefix) + strlen(options->device_prefix) + 48;
        topics[k] = malloc(size);
        if (topics[k] == NULL) {
            cli_error("replay", "out of memory");
            ok = 0;
            break;
        }
        snprintf(topics[k], size, "%s/%s%ld/activity", options->topic_prefix,
                 options->device_prefix, k + 1);
    }
    if (ok) {
        ok = replay_mqtt_subscribe(mqtt, topics, (int)options->devices, REPLAY_CONNECT_TIMEOUT_S);
    }
    for (long k = 0; k < options->devices; k++) {
        free(topics[k]);
    }
    free(topics);
    return ok;
}

/* Sends every batch to every device, paced at real time times speed. */
static int send_recording(const replay_options *options, const replay_recording *recording,
                          int64_t base_ns, replay_mqtt *mqtt, replay_http *http)
{
    size_t batch = (size_t)options->batch;
    /* Each sample takes at most 2 * 3 numbers of about 16 characters with separators. */
    size_t payload_size = batch * 120 + 256;
    size_t topic_size = strlen(options->topic_prefix) + strlen(options->device_prefix) + 48;
    char *payload = malloc(payload_size);
    char *topic = malloc(topic_size);
    char device[96];
    int ok = 0;
    if (payload == NULL || topic == NULL) {
        cli_error("replay", "out of memory");
        goto cleanup;
    }

    double start_s = monotonic_s();
    long seq = 0;
    for (size_t first = 0; first < recording->n_samples; first += batch, seq++) {
        size_t count = recording->n_samples - first < batch ? recording->n_samples - first : batch;

        /* A device sends a batch once its last sample has been taken. */
        if (options->speed > 0.0) {
            double offset = recording->t[first + count - 1] - recording->t[0];
            sleep_until(start_s + offset / options->speed);
        }

        int64_t t0_ns = batch_t0_ns(recording, base_ns, first);
        size_t length = build_payload(recording, t0_ns, first, count, seq, payload, payload_size);
        if (length == 0) {
            cli_error("replay", "batch %ld does not fit in %zu bytes", seq, payload_size);
            goto cleanup;
        }
        for (long k = 1; k <= options->devices; k++) {
            snprintf(device, sizeof device, "%s%ld", options->device_prefix, k);
            if (http != NULL && !replay_http_post(http, device, payload, length)) {
                goto cleanup;
            }
            if (http == NULL) {
                snprintf(topic, topic_size, "%s/%s/imu", options->topic_prefix, device);
                if (!replay_mqtt_publish(mqtt, topic, payload, length)) {
                    goto cleanup;
                }
            }
        }
    }
    if (http == NULL && !replay_mqtt_flush(mqtt, options->timeout_s + REPLAY_CONNECT_TIMEOUT_S)) {
        goto cleanup;
    }

    printf("sent %zu samples in %ld batches to each of %ld devices over %s in %.2f s\n",
           recording->n_samples, seq, options->devices, http != NULL ? "HTTP" : "MQTT",
           monotonic_s() - start_s);
    fflush(stdout);
    ok = 1;

cleanup:
    free(topic);
    free(payload);
    return ok;
}

/* Waits up to the time-out for the events of the last windows. */
static void wait_for_events(const replay_options *options, replay_listener *listener)
{
    double deadline = monotonic_s() + options->timeout_s;
    for (;;) {
        pthread_mutex_lock(&listener->mutex);
        int complete = replay_score_complete(listener->score);
        pthread_mutex_unlock(&listener->mutex);
        if (complete || monotonic_s() >= deadline) {
            return;
        }
        sleep_until(monotonic_s() + 0.05);
    }
}

static int load_recording(const replay_options *options, replay_recording *recording)
{
    if (options->csv_path != NULL) {
        return replay_recording_read_csv(options->csv_path, recording);
    }
    return replay_recording_read_hapt(options->acc_path, options->gyro_path, options->labels_path,
                                      recording);
}

int cmd_replay(int argc, char **argv)
{
    replay_options options;
    int help = 0;
    int status = parse_arguments(argc, argv, &options, &help);
    if (help) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (status != CLI_EXIT_OK) {
        fputs(usage, stderr);
        return status;
    }

    replay_recording recording;
    if (!load_recording(&options, &recording)) {
        return CLI_EXIT_FAILURE;
    }
    status = CLI_EXIT_FAILURE;
    replay_listener listener = {.options = &options, .recording = &recording};
    replay_mqtt *mqtt = NULL;
    replay_http *http = NULL;
    int listener_ready = 0;
    int64_t *t_ns = malloc(recording.n_samples * sizeof *t_ns);
    if (t_ns == NULL || pthread_mutex_init(&listener.mutex, NULL) != 0) {
        cli_error("replay", "out of memory");
        goto cleanup;
    }
    listener_ready = 1;
    if (options.labels && !recording.has_labels) {
        cli_error("replay", "--labels: the recording has no labels; add a label column or "
                            "--hapt-labels FILE");
        goto cleanup;
    }

    /* Device time starts now, rounded to the millisecond, so that the windows of earlier runs
     * lie outside this run's samples. */
    listener.base_ns = realtime_ns() / 1000000 * 1000000;
    compute_device_times(&recording, listener.base_ns, (size_t)options.batch, t_ns);
    listener.score = replay_score_create(&recording, t_ns, (int)options.devices,
                                         (int)options.window_length, (int)options.hop);
    if (listener.score == NULL) {
        cli_error("replay", "out of memory");
        goto cleanup;
    }

    if (options.mqtt_uri != NULL) {
        mqtt = replay_mqtt_connect(options.mqtt_uri, REPLAY_MAX_INFLIGHT, REPLAY_CONNECT_TIMEOUT_S,
                                   on_event, &listener);
        if (mqtt == NULL || !subscribe_devices(mqtt, &options)) {
            goto cleanup;
        }
    }
    if (options.http_url != NULL) {
        http = replay_http_open(options.http_url, REPLAY_CONNECT_TIMEOUT_S);
        if (http == NULL) {
            goto cleanup;
        }
    }

    if (!send_recording(&options, &recording, listener.base_ns, mqtt, http)) {
        goto cleanup;
    }
    if (mqtt != NULL) {
        wait_for_events(&options, &listener);
    }
    if (options.labels) {
        pthread_mutex_lock(&listener.mutex);
        replay_score_print(listener.score, stdout);
        pthread_mutex_unlock(&listener.mutex);
    }
    status = CLI_EXIT_OK;

cleanup:
    /* Closing the client first stops the callbacks that use the listener. */
    replay_mqtt_close(mqtt);
    replay_http_close(http);
    replay_score_destroy(listener.score);
    if (listener_ready) {
        pthread_mutex_destroy(&listener.mutex);
    }
    free(t_ns);
    replay_recording_free(&recording);
    return status;
}
