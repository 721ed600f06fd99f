/*
 * Unit tests of activity decisions: no smoothing, the mean and the majority over the last
 * windows, ties, and when an event is due (change or heartbeat).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "events.h"

#define CLASSES 3
#define HISTORY 4

static device d;
static float probabilities[CLASSES];
static float history[HISTORY * CLASSES];
static int history_top[HISTORY];

static void setup(void)
{
    memset(&d, 0, sizeof d);
    d.n_classes = CLASSES;
    d.probabilities = probabilities;
    d.history = history;
    d.history_top = history_top;
    d.history_capacity = HISTORY;
    d.published_activity = -1;
}

/* Records one window whose probabilities are p0, p1, p2. */
static void record(float p0, float p1, float p2, int smoothing, int windows)
{
    float p[CLASSES] = {p0, p1, p2};
    int top = 0;
    for (int k = 1; k < CLASSES; k++) {
        if (p[k] > p[top])
            top = k;
    }
    runner_result result = {.ok = 1, .probabilities = p, .top = top};
    result.tag.start_ns = 100;
    result.tag.end_ns = 200;
    events_record(&d, &result, smoothing, windows);
}

START_TEST(no_smoothing_follows_last_window)
{
    record(0.7f, 0.2f, 0.1f, CFG_SMOOTHING_NONE, 3);
    ck_assert_int_eq(d.activity, 0);
    record(0.1f, 0.1f, 0.8f, CFG_SMOOTHING_NONE, 3);
    ck_assert_int_eq(d.activity, 2);
    ck_assert_float_eq(d.probabilities[2], 0.8f);
    ck_assert_int_eq(d.window_end_ns, 200);
}
END_TEST

START_TEST(mean_averages_last_windows)
{
    record(0.6f, 0.4f, 0.0f, CFG_SMOOTHING_MEAN, 2);
    record(0.0f, 0.5f, 0.5f, CFG_SMOOTHING_MEAN, 2);
    ck_assert_float_eq_tol(d.probabilities[0], 0.3f, 1e-6f);
    ck_assert_float_eq_tol(d.probabilities[1], 0.45f, 1e-6f);
    ck_assert_int_eq(d.activity, 1);

    /* The first window leaves the history of two. */
    record(0.0f, 0.0f, 1.0f, CFG_SMOOTHING_MEAN, 2);
    ck_assert_float_eq_tol(d.probabilities[1], 0.25f, 1e-6f);
    ck_assert_int_eq(d.activity, 2);
}
END_TEST

START_TEST(majority_removes_single_flicker)
{
    record(0.9f, 0.05f, 0.05f, CFG_SMOOTHING_MAJORITY, 3);
    record(0.9f, 0.05f, 0.05f, CFG_SMOOTHING_MAJORITY, 3);
    record(0.1f, 0.85f, 0.05f, CFG_SMOOTHING_MAJORITY, 3);
    ck_assert_int_eq(d.activity, 0);

    record(0.1f, 0.85f, 0.05f, CFG_SMOOTHING_MAJORITY, 3);
    ck_assert_int_eq(d.activity, 1);
}
END_TEST

START_TEST(majority_tie_uses_mean)
{
    record(0.45f, 0.55f, 0.0f, CFG_SMOOTHING_MAJORITY, 2);
    record(0.9f, 0.1f, 0.0f, CFG_SMOOTHING_MAJORITY, 2);
    ck_assert_int_eq(d.activity, 0);
}
END_TEST

START_TEST(event_due_on_change_or_heartbeat)
{
    ck_assert(!events_due(&d, 0, 60.0));

    record(0.7f, 0.2f, 0.1f, CFG_SMOOTHING_NONE, 1);
    ck_assert(events_due(&d, 1000, 60.0));
    events_mark_published(&d, 1000);
    ck_assert_int_eq(d.event_seq, 1);

    record(0.8f, 0.1f, 0.1f, CFG_SMOOTHING_NONE, 1);
    ck_assert(!events_due(&d, 2000, 60.0));
    ck_assert(events_due(&d, 61000, 60.0));
    ck_assert(!events_due(&d, 61000, 0.0));

    record(0.1f, 0.8f, 0.1f, CFG_SMOOTHING_NONE, 1);
    ck_assert(events_due(&d, 2000, 0.0));
}
END_TEST

START_TEST(activity_topic_is_built)
{
    char topic[32];
    ck_assert_int_eq(events_topic("babymamba", "w1", topic, sizeof topic), 0);
    ck_assert_str_eq(topic, "babymamba/w1/activity");
    ck_assert_int_eq(
        events_topic("babymamba", "a-very-long-device-identifier", topic, sizeof topic), -1);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("events");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, no_smoothing_follows_last_window);
    tcase_add_test(tc, mean_averages_last_windows);
    tcase_add_test(tc, majority_removes_single_flicker);
    tcase_add_test(tc, majority_tie_uses_mean);
    tcase_add_test(tc, event_due_on_change_or_heartbeat);
    tcase_add_test(tc, activity_topic_is_built);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
