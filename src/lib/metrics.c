/*
 * The confusion matrix and the scores derived from it.
 */
#include "metrics.h"

#include <stdlib.h>

#include "error_internal.h"

/* Largest class count accepted, which bounds the matrix at 8 MB. */
#define MAX_CLASSES 1000

struct bm__metrics {
    int n_classes;
    int64_t total;
    int64_t *counts; /* [label * n_classes + predicted] */
};

bm_status bm__metrics_create(int n_classes, bm__metrics **out, bm_error *error)
{
    if (out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "metrics: out is NULL");
    }
    *out = NULL;
    if (n_classes < 1 || n_classes > MAX_CLASSES) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "metrics: %d classes, expected 1 to %d",
                        n_classes, MAX_CLASSES);
    }

    bm__metrics *metrics = calloc(1, sizeof *metrics);
    if (metrics == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "metrics: cannot allocate");
    }
    metrics->counts = calloc((size_t)n_classes * (size_t)n_classes, sizeof *metrics->counts);
    if (metrics->counts == NULL) {
        free(metrics);
        return bm__fail(error, BM_ERR_NO_MEMORY,
                        "metrics: cannot allocate a %d x %d confusion matrix", n_classes,
                        n_classes);
    }
    metrics->n_classes = n_classes;

    *out = metrics;
    return BM_OK;
}

void bm__metrics_destroy(bm__metrics *metrics)
{
    if (metrics == NULL) {
        return;
    }
    free(metrics->counts);
    free(metrics);
}

int bm__metrics_add(bm__metrics *metrics, int label, int predicted)
{
    if (label < 0 || label >= metrics->n_classes || predicted < 0 ||
        predicted >= metrics->n_classes) {
        return -1;
    }
    metrics->counts[(size_t)label * (size_t)metrics->n_classes + (size_t)predicted]++;
    metrics->total++;
    return 0;
}

int bm__metrics_class_count(const bm__metrics *metrics)
{
    return metrics->n_classes;
}

int64_t bm__metrics_total(const bm__metrics *metrics)
{
    return metrics->total;
}

int64_t bm__metrics_count(const bm__metrics *metrics, int label, int predicted)
{
    if (label < 0 || label >= metrics->n_classes || predicted < 0 ||
        predicted >= metrics->n_classes) {
        return 0;
    }
    return metrics->counts[(size_t)label * (size_t)metrics->n_classes + (size_t)predicted];
}

double bm__metrics_accuracy(const bm__metrics *metrics)
{
    if (metrics->total == 0) {
        return 0.0;
    }

    int64_t correct = 0;
    for (int k = 0; k < metrics->n_classes; k++) {
        correct += bm__metrics_count(metrics, k, k);
    }
    return (double)correct / (double)metrics->total;
}

void bm__metrics_class_scores(const bm__metrics *metrics, int index, bm__class_scores *out)
{
    int64_t support = 0;
    int64_t predicted = 0;
    for (int k = 0; k < metrics->n_classes; k++) {
        support += bm__metrics_count(metrics, index, k);
        predicted += bm__metrics_count(metrics, k, index);
    }
    const double true_positives = (double)bm__metrics_count(metrics, index, index);

    out->support = support;
    out->predicted = predicted;
    out->precision = predicted > 0 ? true_positives / (double)predicted : 0.0;
    out->recall = support > 0 ? true_positives / (double)support : 0.0;

    const double sum = out->precision + out->recall;
    out->f1 = sum > 0.0 ? 2.0 * out->precision * out->recall / sum : 0.0;
}

double bm__metrics_macro_f1(const bm__metrics *metrics)
{
    double sum = 0.0;
    int present = 0;

    for (int k = 0; k < metrics->n_classes; k++) {
        bm__class_scores scores;
        bm__metrics_class_scores(metrics, k, &scores);
        if (scores.support > 0 || scores.predicted > 0) {
            sum += scores.f1;
            present++;
        }
    }
    return present > 0 ? sum / present : 0.0;
}
