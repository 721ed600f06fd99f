/*
 * Unit tests of the configuration table: defaults, file parsing with nested keys, errors that
 * name the key path and the allowed values, overrides, and the keys a reload cannot change.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char path[64];

/* Writes text to a temporary file whose name is left in path. */
static void write_config(const char *text)
{
    snprintf(path, sizeof path, "/tmp/babymambad-test-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *file = fdopen(fd, "w");
    fputs(text, file);
    fclose(file);
}

START_TEST(defaults_are_safe)
{
    cfg_config config;
    ck_assert_int_eq(cfg_init_defaults(&config), 0);
    ck_assert_str_eq(config.http_listen, "127.0.0.1:8080");
    ck_assert_str_eq(config.mqtt_uri, "tcp://127.0.0.1:1883");
    ck_assert_str_eq(config.mqtt_topic_filter, "babymamba/+/imu");
    ck_assert_int_eq(config.mqtt_qos, 1);
    ck_assert_int_eq(config.mqtt_protocol, 4);
    ck_assert_int_eq(config.events_smoothing, CFG_SMOOTHING_NONE);
    ck_assert_int_eq(config.log_level, LOG_LEVEL_INFO);
    cfg_deinit(&config);
}
END_TEST

START_TEST(file_sets_nested_keys)
{
    cfg_config config;
    char errors[CFG_ERRORS_SIZE] = "";
    write_config("{\"model\": \"m.safetensors\", \"mqtt\": {\"uri\": \"none\", \"protocol\": "
                 "\"5\"}, \"events\": {\"smoothing\": \"majority\", \"heartbeat_s\": 2.5}}");

    ck_assert_int_eq(cfg_init_defaults(&config), 0);
    ck_assert_int_eq(cfg_load_file(&config, path, errors, sizeof errors), 0);
    ck_assert_str_eq(config.model_path, "m.safetensors");
    ck_assert_str_eq(config.mqtt_uri, "none");
    ck_assert_int_eq(config.mqtt_protocol, 5);
    ck_assert_int_eq(config.events_smoothing, CFG_SMOOTHING_MAJORITY);
    ck_assert_double_eq(config.events_heartbeat_s, 2.5);
    cfg_deinit(&config);
    unlink(path);
}
END_TEST

START_TEST(errors_name_key_and_allowed_values)
{
    cfg_config config;
    char errors[CFG_ERRORS_SIZE] = "";
    write_config("{\"mqtt\": {\"qos\": 7, \"urii\": \"x\"}, \"log\": {\"level\": \"loud\"},"
                 " \"devices\": {\"max\": \"10\"}, \"events\": 3}");

    ck_assert_int_eq(cfg_init_defaults(&config), 0);
    ck_assert_int_eq(cfg_load_file(&config, path, errors, sizeof errors), -1);
    ck_assert_ptr_nonnull(strstr(errors, "key 'mqtt.qos': invalid value \"7\"; expected an "
                                         "integer from 0 to 2"));
    ck_assert_ptr_nonnull(strstr(errors, "unknown key 'mqtt.urii'"));
    ck_assert_ptr_nonnull(strstr(errors, "key 'log.level'"));
    ck_assert_ptr_nonnull(strstr(errors, "\"debug\""));
    ck_assert_ptr_nonnull(strstr(errors, "key 'devices.max': invalid value \"10\""));
    ck_assert_ptr_nonnull(strstr(errors, "key 'events': expected an object"));
    ck_assert_int_eq(config.mqtt_qos, 1);
    cfg_deinit(&config);
    unlink(path);
}
END_TEST

START_TEST(syntax_error_names_line)
{
    cfg_config config;
    char errors[CFG_ERRORS_SIZE] = "";
    write_config("{\n\"model\": \"x\",\n}\n");

    ck_assert_int_eq(cfg_init_defaults(&config), 0);
    ck_assert_int_eq(cfg_load_file(&config, path, errors, sizeof errors), -1);
    ck_assert_ptr_nonnull(strstr(errors, ":3:"));
    cfg_deinit(&config);
    unlink(path);
}
END_TEST

START_TEST(overrides_are_validated)
{
    cfg_config config;
    char errors[CFG_ERRORS_SIZE] = "";
    ck_assert_int_eq(cfg_init_defaults(&config), 0);

    ck_assert_int_eq(cfg_set_text(&config, "http.listen", "none", errors, sizeof errors), 0);
    ck_assert_str_eq(config.http_listen, "none");
    ck_assert_int_eq(cfg_set_text(&config, "stream.gap_limit_s", "0.5", errors, sizeof errors), 0);
    ck_assert_double_eq(config.stream_gap_limit_s, 0.5);
    ck_assert_int_eq(
        cfg_set_text(&config, "mqtt.topic_filter", "babymamba/x/imu", errors, sizeof errors), -1);
    ck_assert_ptr_nonnull(strstr(errors, "'+'"));
    ck_assert_int_eq(cfg_set_text(&config, "nope", "1", errors, sizeof errors), -1);
    ck_assert_ptr_nonnull(strstr(errors, "unknown key 'nope'"));
    ck_assert_int_eq(cfg_set_text(&config, "mqtt.keepalive_s", "2.5", errors, sizeof errors), -1);
    cfg_deinit(&config);
}
END_TEST

START_TEST(reload_keeps_restart_keys)
{
    cfg_config old_config;
    cfg_config new_config;
    char errors[CFG_ERRORS_SIZE] = "";
    ck_assert_int_eq(cfg_init_defaults(&old_config), 0);
    ck_assert_int_eq(cfg_copy(&new_config, &old_config), 0);

    cfg_set_text(&new_config, "mqtt.uri", "tcp://127.0.0.1:1999", errors, sizeof errors);
    cfg_set_text(&new_config, "log.level", "debug", errors, sizeof errors);
    ck_assert_int_eq(cfg_list_restart_keys(&old_config, &new_config, errors, sizeof errors), 1);
    ck_assert_ptr_nonnull(strstr(errors, "'mqtt.uri'"));

    ck_assert_int_eq(cfg_keep_restart_keys(&new_config, &old_config), 0);
    ck_assert_str_eq(new_config.mqtt_uri, "tcp://127.0.0.1:1883");
    ck_assert_int_eq(new_config.log_level, LOG_LEVEL_DEBUG);
    cfg_deinit(&old_config);
    cfg_deinit(&new_config);
}
END_TEST

START_TEST(json_dump_lists_every_key)
{
    cfg_config config;
    ck_assert_int_eq(cfg_init_defaults(&config), 0);
    char *text = cfg_to_json(&config);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\"topic_filter\": \"babymamba/+/imu\""));
    ck_assert_ptr_nonnull(strstr(text, "\"smoothing\": \"none\""));
    ck_assert_ptr_nonnull(strstr(text, "\"protocol\": \"3.1.1\""));
    free(text);
    cfg_deinit(&config);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, defaults_are_safe);
    tcase_add_test(tc, file_sets_nested_keys);
    tcase_add_test(tc, errors_name_key_and_allowed_values);
    tcase_add_test(tc, syntax_error_names_line);
    tcase_add_test(tc, overrides_are_validated);
    tcase_add_test(tc, reload_keeps_restart_keys);
    tcase_add_test(tc, json_dump_lists_every_key);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
