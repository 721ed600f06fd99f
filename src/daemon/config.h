/*
 * The daemon's configuration: one table of keys drives the defaults, the parsing of the JSON
 * file and of command-line overrides, validation, --check-config and what a SIGHUP reload may
 * change.
 *
 * A config is a plain struct that the caller owns; strings in it are owned by the struct and
 * freed by cfg_deinit. Keys use dotted paths ("mqtt.uri") that mirror the nesting of the JSON
 * file. Only the loop thread touches configs.
 */
#ifndef BABYMAMBAD_CONFIG_H
#define BABYMAMBAD_CONFIG_H

#include <stddef.h>

/* Smoothing of activity decisions over consecutive windows. */
typedef enum cfg_smoothing {
    CFG_SMOOTHING_NONE,
    CFG_SMOOTHING_MAJORITY,
    CFG_SMOOTHING_MEAN
} cfg_smoothing;

typedef struct cfg_config {
    char *model_path;

    char *mqtt_uri; /* "none" disables MQTT */
    char *mqtt_client_id;
    int mqtt_protocol; /* 4 for MQTT 3.1.1, 5 for MQTT 5 */
    char *mqtt_topic_filter;
    char *mqtt_topic_prefix;
    int mqtt_qos;
    int mqtt_keepalive_s;
    int mqtt_reconnect_min_s;
    int mqtt_reconnect_max_s;
    int mqtt_max_buffered;

    char *http_listen; /* "ADDR:PORT", "[V6ADDR]:PORT" or "none" */
    int http_max_body_bytes;

    int log_level; /* a log_level value */

    int ingest_queue_capacity;
    int ingest_max_payload_bytes;

    int devices_max;
    double devices_idle_expiry_s;

    double stream_gap_limit_s;
    double stream_min_rate_fraction;

    int inference_workers;
    int inference_queue_windows;

    double events_heartbeat_s;
    int events_every_window;
    int events_qos;
    int events_retain;
    int events_smoothing; /* a cfg_smoothing value */
    int events_smoothing_windows;
} cfg_config;

/* Size of the buffer that receives validation errors, one per line. */
#define CFG_ERRORS_SIZE 4096

/* Fills config with the defaults of the table. Returns 0, or -1 when out of memory. */
int cfg_init_defaults(cfg_config *config);

/* Frees the strings of config. Accepts a zeroed or half-filled struct. */
void cfg_deinit(cfg_config *config);

/* Applies the keys of a JSON file over config. Returns 0 when every key is known and valid;
 * otherwise -1 with one line per problem in errors ("key 'mqtt.qos': expected an integer from
 * 0 to 2, found 7"), and config contains the valid keys only. */
int cfg_load_file(cfg_config *config, const char *path, char *errors, size_t errors_size);

/* Sets one key from text, as command-line overrides do. Returns 0, or -1 with the reason in
 * errors. */
int cfg_set_text(cfg_config *config, const char *key, const char *text, char *errors,
                 size_t errors_size);

/* Copies a config, strings included. Returns 0, or -1 when out of memory. */
int cfg_copy(cfg_config *dst, const cfg_config *src);

/* Writes to errors one line per key that differs between old and new but that a reload cannot
 * apply, and returns their count. The caller keeps the old value of those keys. */
int cfg_list_restart_keys(const cfg_config *old_config, const cfg_config *new_config, char *errors,
                          size_t errors_size);

/* Copies the keys that need a restart from old into new, so that new can be applied whole. */
int cfg_keep_restart_keys(cfg_config *new_config, const cfg_config *old_config);

/* Writes the effective config as a JSON document with every key, for --check-config and
 * --print-config. Returns a malloc'd string, or NULL when out of memory. */
char *cfg_to_json(const cfg_config *config);

const char *cfg_smoothing_name(int smoothing);

#endif
