/*
 * Classification metrics from a confusion matrix: accuracy, per-class precision, recall and
 * F1, and macro-F1.
 *
 * The definitions match scikit-learn's f1_score and precision_score with their default labels
 * and zero_division (as documented for scikit-learn 1.3), so that `babymamba eval` and Python
 * tools report the same numbers. A precision, recall or F1 whose denominator is zero counts as
 * 0, and macro-F1 averages over the classes that occur as a label or as a prediction.
 */
#ifndef BM_METRICS_H
#define BM_METRICS_H

#include <stdint.h>

#include "babymamba/error.h"

typedef struct bm__metrics bm__metrics;

/* Scores of one class. */
typedef struct bm__class_scores {
    double precision;  /* true positives / predicted as the class */
    double recall;     /* true positives / labelled as the class */
    double f1;         /* harmonic mean of precision and recall */
    int64_t support;   /* windows labelled as the class */
    int64_t predicted; /* windows predicted as the class */
} bm__class_scores;

/* Creates an empty confusion matrix of n_classes x n_classes (1 to 1000). */
bm_status bm__metrics_create(int n_classes, bm__metrics **out, bm_error *error);

/* Frees the matrix. Accepts NULL. */
void bm__metrics_destroy(bm__metrics *metrics);

/* Counts one window with its true label and its predicted class. Returns 0, or -1 without
 * counting when either is outside 0 to n_classes - 1. */
int bm__metrics_add(bm__metrics *metrics, int label, int predicted);

/* Returns the number of classes. */
int bm__metrics_class_count(const bm__metrics *metrics);

/* Returns the number of windows counted. */
int64_t bm__metrics_total(const bm__metrics *metrics);

/* Returns the number of windows labelled label and predicted as predicted. */
int64_t bm__metrics_count(const bm__metrics *metrics, int label, int predicted);

/* Returns the fraction of windows predicted correctly, or 0 when none were counted. */
double bm__metrics_accuracy(const bm__metrics *metrics);

/* Computes the scores of class index (0 to n_classes - 1). */
void bm__metrics_class_scores(const bm__metrics *metrics, int index, bm__class_scores *out);

/* Returns the mean F1 over the classes that occur as a label or a prediction, or 0 when none
 * were counted. */
double bm__metrics_macro_f1(const bm__metrics *metrics);

#endif
