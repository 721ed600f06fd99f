/*
 * The configuration table and everything it drives (see config.h).
 *
 * Each row names a key, its type, its bounds or allowed words, its default, whether a SIGHUP
 * reload applies it, and the struct field that stores it. Adding a key means adding one row.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <jansson.h>

#include "log.h"

typedef enum cfg_type { CFG_STRING, CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_ENUM } cfg_type;

/* The allowed words of an enum key and the integer each one stores. */
typedef struct cfg_word {
    const char *word;
    int value;
} cfg_word;

typedef struct cfg_key {
    const char *key;
    cfg_type type;
    size_t offset;
    double min, max; /* inclusive bounds of CFG_INT and CFG_DOUBLE */
    const char *default_text;
    int reloadable;
    const cfg_word *words; /* CFG_ENUM only, terminated by a NULL word */
    const char *help;
} cfg_key;

static const cfg_word protocol_words[] = {{"3.1.1", 4}, {"5", 5}, {NULL, 0}};
static const cfg_word level_words[] = {{"error", LOG_LEVEL_ERROR},
                                       {"warn", LOG_LEVEL_WARN},
                                       {"info", LOG_LEVEL_INFO},
                                       {"debug", LOG_LEVEL_DEBUG},
                                       {NULL, 0}};
static const cfg_word smoothing_words[] = {{"none", CFG_SMOOTHING_NONE},
                                           {"majority", CFG_SMOOTHING_MAJORITY},
                                           {"mean", CFG_SMOOTHING_MEAN},
                                           {NULL, 0}};

#define FIELD(name) offsetof(cfg_config, name)

/* The defaults suit one gateway with a local broker; docs/daemon.md explains each key. */
static const cfg_key cfg_table[] = {
    {"model", CFG_STRING, FIELD(model_path), 0, 0,
     "/usr/local/share/babymamba/ucihar-cx.safetensors", 1, NULL,
     "model file (safetensors) to serve"},
    {"mqtt.uri", CFG_STRING, FIELD(mqtt_uri), 0, 0, "tcp://127.0.0.1:1883", 0, NULL,
     "broker URI, or \"none\" to disable MQTT"},
    {"mqtt.client_id", CFG_STRING, FIELD(mqtt_client_id), 0, 0, "babymambad", 0, NULL,
     "MQTT client identifier; unique per daemon on a shared broker"},
    {"mqtt.protocol", CFG_ENUM, FIELD(mqtt_protocol), 0, 0, "3.1.1", 0, protocol_words,
     "MQTT protocol version"},
    {"mqtt.topic_filter", CFG_STRING, FIELD(mqtt_topic_filter), 0, 0, "babymamba/+/imu", 0, NULL,
     "subscription filter; its first '+' level is the device id"},
    {"mqtt.topic_prefix", CFG_STRING, FIELD(mqtt_topic_prefix), 0, 0, "babymamba", 0, NULL,
     "prefix of the activity and status topics"},
    {"mqtt.qos", CFG_INT, FIELD(mqtt_qos), 0, 2, "1", 0, NULL, "QoS of the ingest subscription"},
    {"mqtt.keepalive_s", CFG_INT, FIELD(mqtt_keepalive_s), 5, 3600, "30", 0, NULL,
     "MQTT keep-alive interval in seconds"},
    {"mqtt.reconnect_min_s", CFG_INT, FIELD(mqtt_reconnect_min_s), 1, 3600, "1", 0, NULL,
     "first reconnect delay in seconds"},
    {"mqtt.reconnect_max_s", CFG_INT, FIELD(mqtt_reconnect_max_s), 1, 3600, "30", 0, NULL,
     "largest reconnect delay in seconds"},
    {"mqtt.max_buffered", CFG_INT, FIELD(mqtt_max_buffered), 1, 1000000, "10000", 0, NULL,
     "outgoing messages buffered while the broker is unreachable"},
    {"http.listen", CFG_STRING, FIELD(http_listen), 0, 0, "127.0.0.1:8080", 0, NULL,
     "HTTP listen address ADDR:PORT or [ADDR]:PORT, or \"none\""},
    {"http.max_body_bytes", CFG_INT, FIELD(http_max_body_bytes), 64, 16777216, "1048576", 1, NULL,
     "largest accepted HTTP request body in bytes"},
    {"log.level", CFG_ENUM, FIELD(log_level), 0, 0, "info", 1, level_words,
     "lowest level that is logged"},
    {"ingest.queue_capacity", CFG_INT, FIELD(ingest_queue_capacity), 16, 1000000, "4096", 0, NULL,
     "MQTT messages waiting for the loop before new ones are dropped"},
    {"ingest.max_payload_bytes", CFG_INT, FIELD(ingest_max_payload_bytes), 64, 16777216, "262144",
     1, NULL, "largest accepted MQTT payload in bytes"},
    {"devices.max", CFG_INT, FIELD(devices_max), 1, 1000000, "1000", 1, NULL,
     "devices tracked at once; messages from further devices are rejected"},
    {"devices.idle_expiry_s", CFG_DOUBLE, FIELD(devices_idle_expiry_s), 1, 31536000, "600", 1, NULL,
     "seconds without data after which a device's state is dropped"},
    {"stream.gap_limit_s", CFG_DOUBLE, FIELD(stream_gap_limit_s), 0.001, 3600, "1", 1, NULL,
     "a longer silence between samples restarts the device's window"},
    {"stream.min_rate_fraction", CFG_DOUBLE, FIELD(stream_min_rate_fraction), 0.05, 1, "0.5", 1,
     NULL, "streams slower than this fraction of the model's rate are rejected"},
    {"inference.workers", CFG_INT, FIELD(inference_workers), 1, 64, "1", 0, NULL,
     "inference contexts, each used by one worker thread at a time"},
    {"inference.queue_windows", CFG_INT, FIELD(inference_queue_windows), 1, 1000000, "256", 0, NULL,
     "windows waiting for a context before new ones are dropped"},
    {"events.heartbeat_s", CFG_DOUBLE, FIELD(events_heartbeat_s), 0, 86400, "60", 1, NULL,
     "republish an unchanged activity after this many seconds; 0 disables"},
    {"events.every_window", CFG_BOOL, FIELD(events_every_window), 0, 0, "false", 1, NULL,
     "publish an event for every classified window, not only on changes and heartbeats"},
    {"events.qos", CFG_INT, FIELD(events_qos), 0, 2, "1", 1, NULL, "QoS of activity events"},
    {"events.retain", CFG_BOOL, FIELD(events_retain), 0, 0, "true", 1, NULL,
     "publish activity events retained"},
    {"events.smoothing", CFG_ENUM, FIELD(events_smoothing), 0, 0, "none", 1, smoothing_words,
     "decision smoothing over consecutive windows"},
    {"events.smoothing_windows", CFG_INT, FIELD(events_smoothing_windows), 1, 64, "3", 1, NULL,
     "windows that smoothing combines"},
};

#define CFG_KEY_COUNT (sizeof cfg_table / sizeof cfg_table[0])

/* Appends one formatted line to an error buffer, keeping it NUL-terminated when full. */
static void append_error(char *errors, size_t errors_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void append_error(char *errors, size_t errors_size, const char *format, ...)
{
    if (errors == NULL || errors_size == 0)
        return;

    size_t used = strnlen(errors, errors_size - 1);
    va_list args;
    va_start(args, format);
    vsnprintf(errors + used, errors_size - used, format, args);
    va_end(args);

    used = strnlen(errors, errors_size - 1);
    if (used + 1 < errors_size) {
        errors[used] = '\n';
        errors[used + 1] = '\0';
    }
}

static void *field_of(cfg_config *config, const cfg_key *key)
{
    return (char *)config + key->offset;
}

static const void *const_field_of(const cfg_config *config, const cfg_key *key)
{
    return (const char *)config + key->offset;
}

static const cfg_key *find_key(const char *name)
{
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (strcmp(cfg_table[i].key, name) == 0)
            return &cfg_table[i];
    }
    return NULL;
}

/* Describes what a key accepts, for error messages. */
static void describe_expected(const cfg_key *key, char *out, size_t out_size)
{
    switch (key->type) {
    case CFG_STRING:
        if (strcmp(key->key, "mqtt.uri") == 0)
            snprintf(out, out_size, "\"none\" or tcp://HOST[:PORT]");
        else
            snprintf(out, out_size, "a non-empty string");
        break;
    case CFG_INT:
        snprintf(out, out_size, "an integer from %.0f to %.0f", key->min, key->max);
        break;
    case CFG_DOUBLE:
        snprintf(out, out_size, "a number from %g to %g", key->min, key->max);
        break;
    case CFG_BOOL:
        snprintf(out, out_size, "true or false");
        break;
    case CFG_ENUM: {
        size_t used = (size_t)snprintf(out, out_size, "one of");
        for (const cfg_word *w = key->words; w->word != NULL && used < out_size; w++)
            used += (size_t)snprintf(out + used, out_size - used, "%s \"%s\"",
                                     w == key->words ? "" : ",", w->word);
        break;
    }
    }
}

/* Checks the value of a string key beyond non-emptiness. Returns NULL or the reason. */
/* Returns why an MQTT broker URI cannot be used, or NULL: it must be "none" or
 * tcp://HOST[:PORT] (mqtt:// is the same), with a port from 1 to 65535 when one is given. */
static const char *check_mqtt_uri(const char *uri)
{
    if (strcmp(uri, "none") == 0)
        return NULL;

    const char *rest;
    if (strncmp(uri, "tcp://", 6) == 0)
        rest = uri + 6;
    else if (strncmp(uri, "mqtt://", 7) == 0)
        rest = uri + 7;
    else if (strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0)
        /* TODO: TLS to the broker (certificates and keys in the config) is not implemented. */
        return "uses TLS, which babymambad does not support yet";
    else
        return "has no tcp:// or mqtt:// scheme";

    if (strchr(rest, '/') != NULL)
        return "has a path after the host; a broker URI ends at the port";

    const char *colon = strrchr(rest, ':');
    const char *bracket = strrchr(rest, ']');
    if (colon != NULL && bracket != NULL && colon < bracket)
        colon = NULL; /* the colon is inside an IPv6 address */
    size_t host_length = colon != NULL ? (size_t)(colon - rest) : strlen(rest);
    if (host_length == 0)
        return "has no host";
    if (colon == NULL)
        return NULL;

    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port < 1 || port > 65535)
        return "has a port outside 1 to 65535";
    return NULL;
}

static const char *check_string(const cfg_key *key, const char *text)
{
    if (text[0] == '\0')
        return "empty";
    if (strcmp(key->key, "mqtt.uri") == 0)
        return check_mqtt_uri(text);
    if (strcmp(key->key, "mqtt.topic_filter") == 0 && strchr(text, '+') == NULL)
        return "has no '+' level to take the device id from";
    if (strcmp(key->key, "mqtt.topic_prefix") == 0 &&
        (strchr(text, '+') != NULL || strchr(text, '#') != NULL))
        return "contains a wildcard";
    return NULL;
}

/* Stores a value, given as text, into the field of key. Returns 0, or -1 with an error line
 * that names the key, the value and what was expected. */
static int set_from_text(cfg_config *config, const cfg_key *key, const char *text, char *errors,
                         size_t errors_size)
{
    char expected[256];
    describe_expected(key, expected, sizeof expected);

    switch (key->type) {
    case CFG_STRING: {
        const char *why = check_string(key, text);
        if (why != NULL) {
            append_error(errors, errors_size, "key '%s': value \"%s\" %s; expected %s", key->key,
                         text, why, expected);
            return -1;
        }
        char *copy = strdup(text);
        if (copy == NULL) {
            append_error(errors, errors_size, "key '%s': out of memory", key->key);
            return -1;
        }
        char **slot = field_of(config, key);
        free(*slot);
        *slot = copy;
        return 0;
    }
    case CFG_INT:
    case CFG_DOUBLE: {
        char *end = NULL;
        errno = 0;
        double value = strtod(text, &end);
        int bad = errno != 0 || end == text || *end != '\0' || !isfinite(value) ||
                  value < key->min || value > key->max;
        if (!bad && key->type == CFG_INT && value != floor(value))
            bad = 1;
        if (bad) {
            append_error(errors, errors_size, "key '%s': invalid value \"%s\"; expected %s",
                         key->key, text, expected);
            return -1;
        }
        if (key->type == CFG_INT)
            *(int *)field_of(config, key) = (int)value;
        else
            *(double *)field_of(config, key) = value;
        return 0;
    }
    case CFG_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
            *(int *)field_of(config, key) = text[0] == 't';
            return 0;
        }
        append_error(errors, errors_size, "key '%s': invalid value \"%s\"; expected %s", key->key,
                     text, expected);
        return -1;
    case CFG_ENUM:
        for (const cfg_word *w = key->words; w->word != NULL; w++) {
            if (strcmp(w->word, text) == 0) {
                *(int *)field_of(config, key) = w->value;
                return 0;
            }
        }
        append_error(errors, errors_size, "key '%s': invalid value \"%s\"; expected %s", key->key,
                     text, expected);
        return -1;
    }
    return -1;
}

int cfg_init_defaults(cfg_config *config)
{
    memset(config, 0, sizeof *config);

    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (set_from_text(config, &cfg_table[i], cfg_table[i].default_text, NULL, 0) != 0) {
            cfg_deinit(config);
            return -1;
        }
    }
    return 0;
}

void cfg_deinit(cfg_config *config)
{
    if (config == NULL)
        return;

    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (cfg_table[i].type == CFG_STRING) {
            char **slot = field_of(config, &cfg_table[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}

int cfg_set_text(cfg_config *config, const char *key_name, const char *text, char *errors,
                 size_t errors_size)
{
    const cfg_key *key = find_key(key_name);
    if (key == NULL) {
        append_error(errors, errors_size, "unknown key '%s'", key_name);
        return -1;
    }
    return set_from_text(config, key, text, errors, errors_size);
}

/* Converts a JSON value to the text form that set_from_text parses, checking the JSON type
 * first so that "qos": "1" is reported as a string where an integer was expected. */
static int set_from_json(cfg_config *config, const cfg_key *key, json_t *value, char *errors,
                         size_t errors_size)
{
    char text[64];
    char expected[256];
    describe_expected(key, expected, sizeof expected);

    switch (key->type) {
    case CFG_STRING:
    case CFG_ENUM:
        if (json_is_string(value))
            return set_from_text(config, key, json_string_value(value), errors, errors_size);
        break;
    case CFG_INT:
        if (json_is_integer(value)) {
            snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
            return set_from_text(config, key, text, errors, errors_size);
        }
        break;
    case CFG_DOUBLE:
        if (json_is_number(value)) {
            snprintf(text, sizeof text, "%.17g", json_number_value(value));
            return set_from_text(config, key, text, errors, errors_size);
        }
        break;
    case CFG_BOOL:
        if (json_is_boolean(value))
            return set_from_text(config, key, json_is_true(value) ? "true" : "false", errors,
                                 errors_size);
        break;
    }

    char *shown = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    append_error(errors, errors_size, "key '%s': invalid value %s; expected %s", key->key,
                 shown != NULL ? shown : "?", expected);
    free(shown);
    return -1;
}

/* Walks a JSON object, joining nested keys with dots, and applies every leaf. Returns the
 * number of problems found. */
static int apply_object(cfg_config *config, json_t *object, const char *prefix, char *errors,
                        size_t errors_size)
{
    int problems = 0;
    const char *name;
    json_t *value;

    json_object_foreach(object, name, value)
    {
        char path[256];
        if (prefix[0] != '\0')
            snprintf(path, sizeof path, "%s.%s", prefix, name);
        else
            snprintf(path, sizeof path, "%s", name);

        const cfg_key *key = find_key(path);
        if (key != NULL) {
            problems += set_from_json(config, key, value, errors, errors_size) != 0;
            continue;
        }

        /* A path that is the start of known keys must be an object of them. */
        size_t path_length = strlen(path);
        int is_section = 0;
        for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
            if (strncmp(cfg_table[i].key, path, path_length) == 0 &&
                cfg_table[i].key[path_length] == '.')
                is_section = 1;
        }
        if (is_section && json_is_object(value)) {
            problems += apply_object(config, value, path, errors, errors_size);
        } else if (is_section) {
            append_error(errors, errors_size, "key '%s': expected an object of settings", path);
            problems++;
        } else {
            append_error(errors, errors_size, "unknown key '%s'", path);
            problems++;
        }
    }
    return problems;
}

int cfg_load_file(cfg_config *config, const char *path, char *errors, size_t errors_size)
{
    struct stat info;
    if (stat(path, &info) != 0) {
        append_error(errors, errors_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(info.st_mode)) {
        append_error(errors, errors_size, "%s: not a regular file", path);
        return -1;
    }

    json_error_t json_error;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL) {
        if (json_error.line > 0)
            append_error(errors, errors_size, "%s:%d:%d: %s", path, json_error.line,
                         json_error.column, json_error.text);
        else
            append_error(errors, errors_size, "%s: %s", path, json_error.text);
        return -1;
    }

    if (!json_is_object(root)) {
        append_error(errors, errors_size, "%s: expected a JSON object at the top level", path);
        json_decref(root);
        return -1;
    }

    int problems = apply_object(config, root, "", errors, errors_size);
    json_decref(root);
    return problems == 0 ? 0 : -1;
}

int cfg_copy(cfg_config *dst, const cfg_config *src)
{
    memcpy(dst, src, sizeof *dst);

    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (cfg_table[i].type != CFG_STRING)
            continue;
        char **slot = field_of(dst, &cfg_table[i]);
        *slot = NULL;
    }
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (cfg_table[i].type != CFG_STRING)
            continue;
        const char *const *source = const_field_of(src, &cfg_table[i]);
        char **slot = field_of(dst, &cfg_table[i]);
        *slot = strdup(*source);
        if (*slot == NULL) {
            cfg_deinit(dst);
            return -1;
        }
    }
    return 0;
}

/* Returns nonzero when key has the same value in both configs. */
static int same_value(const cfg_config *a, const cfg_config *b, const cfg_key *key)
{
    switch (key->type) {
    case CFG_STRING:
        return strcmp(*(char *const *)const_field_of(a, key),
                      *(char *const *)const_field_of(b, key)) == 0;
    case CFG_DOUBLE:
        return *(const double *)const_field_of(a, key) == *(const double *)const_field_of(b, key);
    default:
        return *(const int *)const_field_of(a, key) == *(const int *)const_field_of(b, key);
    }
}

int cfg_list_restart_keys(const cfg_config *old_config, const cfg_config *new_config, char *errors,
                          size_t errors_size)
{
    int count = 0;
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (cfg_table[i].reloadable || same_value(old_config, new_config, &cfg_table[i]))
            continue;
        append_error(errors, errors_size, "key '%s' changed but takes effect only after a restart",
                     cfg_table[i].key);
        count++;
    }
    return count;
}

int cfg_keep_restart_keys(cfg_config *new_config, const cfg_config *old_config)
{
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const cfg_key *key = &cfg_table[i];
        if (key->reloadable)
            continue;

        if (key->type == CFG_STRING) {
            char *copy = strdup(*(char *const *)const_field_of(old_config, key));
            if (copy == NULL)
                return -1;
            char **slot = field_of(new_config, key);
            free(*slot);
            *slot = copy;
        } else if (key->type == CFG_DOUBLE) {
            *(double *)field_of(new_config, key) = *(const double *)const_field_of(old_config, key);
        } else {
            *(int *)field_of(new_config, key) = *(const int *)const_field_of(old_config, key);
        }
    }
    return 0;
}

/* Adds value under a dotted path, creating the intermediate objects. */
static int set_path(json_t *root, const char *path, json_t *value)
{
    char buffer[256];
    snprintf(buffer, sizeof buffer, "%s", path);

    json_t *object = root;
    char *start = buffer;
    for (char *dot = strchr(start, '.'); dot != NULL; dot = strchr(start, '.')) {
        *dot = '\0';
        json_t *child = json_object_get(object, start);
        if (child == NULL) {
            child = json_object();
            if (json_object_set_new(object, start, child) != 0) {
                json_decref(value);
                return -1;
            }
        }
        object = child;
        start = dot + 1;
    }
    return json_object_set_new(object, start, value);
}

char *cfg_to_json(const cfg_config *config)
{
    json_t *root = json_object();
    if (root == NULL)
        return NULL;

    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const cfg_key *key = &cfg_table[i];
        const void *field = const_field_of(config, key);
        json_t *value = NULL;

        switch (key->type) {
        case CFG_STRING:
            value = json_string(*(char *const *)field);
            break;
        case CFG_INT:
            value = json_integer(*(const int *)field);
            break;
        case CFG_DOUBLE:
            value = json_real(*(const double *)field);
            break;
        case CFG_BOOL:
            value = json_boolean(*(const int *)field);
            break;
        case CFG_ENUM:
            for (const cfg_word *w = key->words; w->word != NULL; w++) {
                if (w->value == *(const int *)field)
                    value = json_string(w->word);
            }
            break;
        }

        if (value == NULL || set_path(root, key->key, value) != 0) {
            json_decref(root);
            return NULL;
        }
    }

    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

const char *cfg_smoothing_name(int smoothing)
{
    for (const cfg_word *w = smoothing_words; w->word != NULL; w++) {
        if (w->value == smoothing)
            return w->word;
    }
    return "unknown";
}
