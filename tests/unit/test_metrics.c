/*
 * Unit tests of the confusion matrix and its scores, with expected values worked out by hand
 * from the counts, including the zero-denominator cases.
 */
#include <check.h>
#include <stdlib.h>

#include "metrics.h"

static bm__metrics *make_metrics(int n_classes, const int *labels, const int *predicted, int n)
{
    bm__metrics *metrics = NULL;
    bm_error error;
    ck_assert_int_eq(bm__metrics_create(n_classes, &metrics, &error), BM_OK);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(bm__metrics_add(metrics, labels[i], predicted[i]), 0);
    }
    return metrics;
}

START_TEST(metrics_three_class_example)
{
    /* Class 0: 2 true positives of 3 predictions and 2 labels, so P = 2/3, R = 1, F1 = 0.8.
     * Classes 1 and 2 have no true positives, so all their scores are 0. */
    const int labels[6] = {0, 1, 2, 0, 1, 2};
    const int predicted[6] = {0, 2, 1, 0, 0, 1};
    bm__metrics *metrics = make_metrics(3, labels, predicted, 6);

    ck_assert_int_eq(bm__metrics_total(metrics), 6);
    ck_assert_int_eq(bm__metrics_count(metrics, 0, 0), 2);
    ck_assert_int_eq(bm__metrics_count(metrics, 1, 2), 1);
    ck_assert_int_eq(bm__metrics_count(metrics, 1, 0), 1);
    ck_assert_int_eq(bm__metrics_count(metrics, 2, 1), 2);
    ck_assert_int_eq(bm__metrics_count(metrics, 2, 2), 0);
    ck_assert_double_eq_tol(bm__metrics_accuracy(metrics), 2.0 / 6.0, 1e-12);

    bm__class_scores scores;
    bm__metrics_class_scores(metrics, 0, &scores);
    ck_assert_double_eq_tol(scores.precision, 2.0 / 3.0, 1e-12);
    ck_assert_double_eq_tol(scores.recall, 1.0, 1e-12);
    ck_assert_double_eq_tol(scores.f1, 0.8, 1e-12);
    ck_assert_int_eq(scores.support, 2);
    ck_assert_int_eq(scores.predicted, 3);

    bm__metrics_class_scores(metrics, 2, &scores);
    ck_assert_double_eq(scores.precision, 0.0);
    ck_assert_double_eq(scores.recall, 0.0);
    ck_assert_double_eq(scores.f1, 0.0);
    ck_assert_int_eq(scores.support, 2);
    ck_assert_int_eq(scores.predicted, 1);

    ck_assert_double_eq_tol(bm__metrics_macro_f1(metrics), 0.8 / 3.0, 1e-12);
    bm__metrics_destroy(metrics);
}
END_TEST

START_TEST(metrics_uneven_classes)
{
    /* Class 0: 3 labels, 2 found, 1 false alarm, so P = 2/3, R = 2/3, F1 = 2/3.
     * Class 1: 1 label, found, 1 false alarm, so P = 1/2, R = 1, F1 = 2/3.
     * Class 2: 1 label, missed, never predicted, so P = 0 by convention, R = 0, F1 = 0. */
    const int labels[5] = {0, 0, 0, 1, 2};
    const int predicted[5] = {0, 0, 1, 1, 0};
    bm__metrics *metrics = make_metrics(3, labels, predicted, 5);

    bm__class_scores scores;
    bm__metrics_class_scores(metrics, 0, &scores);
    ck_assert_double_eq_tol(scores.precision, 2.0 / 3.0, 1e-12);
    ck_assert_double_eq_tol(scores.recall, 2.0 / 3.0, 1e-12);
    ck_assert_double_eq_tol(scores.f1, 2.0 / 3.0, 1e-12);

    bm__metrics_class_scores(metrics, 1, &scores);
    ck_assert_double_eq_tol(scores.precision, 0.5, 1e-12);
    ck_assert_double_eq_tol(scores.recall, 1.0, 1e-12);
    ck_assert_double_eq_tol(scores.f1, 2.0 / 3.0, 1e-12);

    bm__metrics_class_scores(metrics, 2, &scores);
    ck_assert_int_eq(scores.predicted, 0);
    ck_assert_double_eq(scores.precision, 0.0);
    ck_assert_double_eq(scores.recall, 0.0);
    ck_assert_double_eq(scores.f1, 0.0);

    ck_assert_double_eq_tol(bm__metrics_accuracy(metrics), 3.0 / 5.0, 1e-12);
    ck_assert_double_eq_tol(bm__metrics_macro_f1(metrics), (2.0 / 3.0 + 2.0 / 3.0) / 3.0, 1e-12);
    bm__metrics_destroy(metrics);
}
END_TEST

START_TEST(metrics_macro_skips_absent_classes)
{
    /* Classes 3 and 4 occur neither as a label nor as a prediction, so the mean runs over
     * classes 0 to 2 only. */
    const int labels[4] = {0, 1, 2, 2};
    const int predicted[4] = {0, 1, 2, 1};
    bm__metrics *metrics = make_metrics(5, labels, predicted, 4);

    /* F1: class 0 is 1, class 1 is 2/3 (P = 1/2, R = 1), class 2 is 2/3 (P = 1, R = 1/2). */
    ck_assert_double_eq_tol(bm__metrics_macro_f1(metrics), (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0,
                            1e-12);

    bm__class_scores scores;
    bm__metrics_class_scores(metrics, 4, &scores);
    ck_assert_int_eq(scores.support, 0);
    ck_assert_double_eq(scores.f1, 0.0);
    bm__metrics_destroy(metrics);
}
END_TEST

START_TEST(metrics_perfect_and_empty)
{
    const int labels[3] = {2, 0, 1};
    bm__metrics *metrics = make_metrics(3, labels, labels, 3);
    ck_assert_double_eq(bm__metrics_accuracy(metrics), 1.0);
    ck_assert_double_eq(bm__metrics_macro_f1(metrics), 1.0);
    bm__metrics_destroy(metrics);

    metrics = make_metrics(3, labels, labels, 0);
    ck_assert_int_eq(bm__metrics_total(metrics), 0);
    ck_assert_double_eq(bm__metrics_accuracy(metrics), 0.0);
    ck_assert_double_eq(bm__metrics_macro_f1(metrics), 0.0);
    bm__metrics_destroy(metrics);
}
END_TEST

START_TEST(metrics_rejects_out_of_range)
{
    bm__metrics *metrics = make_metrics(2, NULL, NULL, 0);
    ck_assert_int_eq(bm__metrics_add(metrics, 2, 0), -1);
    ck_assert_int_eq(bm__metrics_add(metrics, 0, -1), -1);
    ck_assert_int_eq(bm__metrics_add(metrics, -1, 1), -1);
    ck_assert_int_eq(bm__metrics_total(metrics), 0);
    ck_assert_int_eq(bm__metrics_count(metrics, 5, 5), 0);
    ck_assert_int_eq(bm__metrics_class_count(metrics), 2);
    bm__metrics_destroy(metrics);
    bm__metrics_destroy(NULL);

    bm__metrics *invalid = NULL;
    bm_error error;
    ck_assert_int_eq(bm__metrics_create(0, &invalid, &error), BM_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_null(invalid);
    ck_assert_int_eq(bm__metrics_create(1001, &invalid, &error), BM_ERR_INVALID_ARGUMENT);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *suite = suite_create("metrics");
    TCase *cases = tcase_create("metrics");
    tcase_add_test(cases, metrics_three_class_example);
    tcase_add_test(cases, metrics_uneven_classes);
    tcase_add_test(cases, metrics_macro_skips_absent_classes);
    tcase_add_test(cases, metrics_perfect_and_empty);
    tcase_add_test(cases, metrics_rejects_out_of_range);
    suite_add_tcase(suite, cases);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(metrics_suite());
    srunner_run_all(runner, CK_NORMAL);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
