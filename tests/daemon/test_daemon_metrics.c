/*
 * Unit tests of the Prometheus rendering: one HELP and TYPE per family, counters ending in
 * _total, cumulative histogram buckets, and escaped label values.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(metrics_counters *counters, const char *model_name)
{
    metrics_gauges gauges = {.version = "1.2.3",
                             .model_name = model_name,
                             .model_version = "1",
                             .model_sha256 = "ab",
                             .devices_active = 4,
                             .mqtt_enabled = 1,
                             .mqtt_connected = 1};
    size_t size = 0;
    char *text = metrics_render(counters, &gauges, &size);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(size, strlen(text));
    return text;
}

START_TEST(families_are_declared_once)
{
    metrics_counters counters = {0};
    char *text = render(&counters, "m");

    char *copy = strdup(text);
    char *saveptr = NULL;
    char seen[64][96];
    int n_seen = 0;
    for (char *line = strtok_r(copy, "\n", &saveptr); line != NULL;
         line = strtok_r(NULL, "\n", &saveptr)) {
        char name[96];
        char type[32];
        if (sscanf(line, "# TYPE %95s %31s", name, type) != 2)
            continue;
        for (int i = 0; i < n_seen; i++)
            ck_assert_msg(strcmp(seen[i], name) != 0, "family %s declared twice", name);
        ck_assert_int_lt(n_seen, 64);
        snprintf(seen[n_seen++], sizeof seen[0], "%s", name);

        size_t length = strlen(name);
        int is_total = length > 6 && strcmp(name + length - 6, "_total") == 0;
        if (strcmp(type, "counter") == 0)
            ck_assert_msg(is_total, "counter %s lacks _total", name);
        else
            ck_assert_msg(!is_total, "%s %s ends in _total", type, name);
    }
    ck_assert_int_ge(n_seen, 20);
    free(copy);
    free(text);
}
END_TEST

START_TEST(values_and_buckets_are_rendered)
{
    metrics_counters counters = {0};
    counters.messages_rejected[INGEST_REJECT_INVALID_JSON] = 3;
    counters.samples_ingested[METRICS_HTTP] = 128;
    metrics_observe_duration(&counters, 0.0003);
    metrics_observe_duration(&counters, 0.02);
    metrics_observe_duration(&counters, 5.0);

    char *text = render(&counters, "m");
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_messages_rejected_total{reason=\"invalid_json\"} 3\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_samples_ingested_total{transport=\"http\"} 128\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_inference_duration_seconds_bucket{le=\"0.0001\"} 0\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_inference_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_inference_duration_seconds_bucket{le=\"0.025\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_inference_duration_seconds_bucket{le=\"1\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "babymambad_inference_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "babymambad_inference_duration_seconds_count 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "babymambad_devices_active 4\n"));
    ck_assert_ptr_nonnull(strstr(text, "babymambad_mqtt_connected 1\n"));
    free(text);
}
END_TEST

START_TEST(label_values_are_escaped)
{
    metrics_counters counters = {0};
    char *text = render(&counters, "a\"b\\c\nd");
    ck_assert_ptr_nonnull(strstr(text, "name=\"a\\\"b\\\\c\\nd\""));
    free(text);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("daemon_metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, families_are_declared_once);
    tcase_add_test(tc, values_and_buckets_are_rendered);
    tcase_add_test(tc, label_values_are_escaped);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
