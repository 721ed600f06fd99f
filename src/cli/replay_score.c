/*
 * Window scoring for `babymamba replay --labels` (see replay_score.h).
 */
#include "replay_score.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Class names of HAPT activities 1-6, as the shipped models and `babymamba prepare` name them. */
static const char *const activity_names[REPLAY_SCORE_N_CLASSES] = {
    "walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"};

struct replay_score {
    const replay_recording *recording;
    const int64_t *t_ns;
    int n_devices;
    int window_length;
    int hop;
    int64_t tolerance_ns; /* half a sample period, for matching resampled window times */
    size_t n_expected;    /* expected windows per device */
    unsigned char *seen;  /* [n_devices, n_expected] */
    size_t received;      /* distinct expected windows with an event, all devices */
    size_t scored;
    size_t unscored;
    size_t extra; /* off the expected window grid */
    size_t confusion[REPLAY_SCORE_N_CLASSES + 1][REPLAY_SCORE_N_CLASSES + 1]; /* [truth][pred] */
};

int replay_activity_id(const char *name)
{
    for (int k = 0; k < REPLAY_SCORE_N_CLASSES; k++) {
        if (strcasecmp(name, activity_names[k]) == 0) {
            return k + 1;
        }
    }
    return 0;
}

replay_score *replay_score_create(const replay_recording *recording, const int64_t *t_ns,
                                  int n_devices, int window_length, int hop)
{
    replay_score *score = calloc(1, sizeof *score);
    if (score == NULL) {
        return NULL;
    }
    score->recording = recording;
    score->t_ns = t_ns;
    score->n_devices = n_devices;
    score->window_length = window_length;
    score->hop = hop;
    score->tolerance_ns = (int64_t)(0.5e9 / recording->rate_hz);
    if (recording->n_samples >= (size_t)window_length) {
        score->n_expected = 1 + (recording->n_samples - (size_t)window_length) / (size_t)hop;
    }
    score->seen = calloc((size_t)n_devices * score->n_expected + 1, 1);
    if (score->seen == NULL) {
        free(score);
        return NULL;
    }
    return score;
}

void replay_score_destroy(replay_score *score)
{
    if (score == NULL) {
        return;
    }
    free(score->seen);
    free(score);
}

/* Returns the index of the first sample at or after time_ns - tolerance. */
static size_t first_sample_from(const replay_score *score, int64_t time_ns)
{
    size_t low = 0;
    size_t high = score->recording->n_samples;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (score->t_ns[middle] < time_ns - score->tolerance_ns) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    return low;
}

/* Returns the true activity 1-6 of samples [first, last], or 0 when they do not all lie in one
 * segment of activity 1-6. */
static int window_truth(const replay_recording *recording, size_t first, size_t last)
{
    int segment = recording->segments[first];
    int activity = recording->labels[first];
    if (segment < 0 || activity < 1 || activity > REPLAY_SCORE_N_CLASSES) {
        return 0;
    }
    for (size_t i = first + 1; i <= last; i++) {
        if (recording->segments[i] != segment) {
            return 0;
        }
    }
    return activity;
}

replay_window_kind replay_score_add(replay_score *score, int device, int64_t start_ns,
                                    int64_t end_ns, const char *activity, int *truth)
{
    const replay_recording *recording = score->recording;
    size_t n = recording->n_samples;
    *truth = 0;
    if (device < 0 || device >= score->n_devices || end_ns < start_ns ||
        start_ns < score->t_ns[0] - score->tolerance_ns ||
        end_ns > score->t_ns[n - 1] + score->tolerance_ns) {
        return REPLAY_WINDOW_OUTSIDE;
    }

    size_t first = first_sample_from(score, start_ns);
    size_t last = first_sample_from(score, end_ns);
    if (last >= n || first > last) {
        return REPLAY_WINDOW_OUTSIDE;
    }

    /* A window that ends on the hop grid is an expected one. A second event for it is a
     * heartbeat repeating the last decision, so it is not counted again. */
    size_t end_offset = last + 1;
    if (end_offset >= (size_t)score->window_length &&
        (end_offset - (size_t)score->window_length) % (size_t)score->hop == 0) {
        size_t index = (end_offset - (size_t)score->window_length) / (size_t)score->hop;
        if (index < score->n_expected) {
            unsigned char *seen = &score->seen[(size_t)device * score->n_expected + index];
            if (*seen) {
                return REPLAY_WINDOW_DUPLICATE;
            }
            *seen = 1;
            score->received++;
        }
    } else {
        score->extra++;
    }

    int true_activity = recording->has_labels ? window_truth(recording, first, last) : 0;
    if (true_activity == 0) {
        score->unscored++;
        return REPLAY_WINDOW_UNSCORED;
    }
    score->confusion[true_activity][replay_activity_id(activity)]++;
    score->scored++;
    *truth = true_activity;
    return REPLAY_WINDOW_SCORED;
}

int replay_score_complete(const replay_score *score)
{
    if (score->n_expected == 0) {
        return 1;
    }
    for (int d = 0; d < score->n_devices; d++) {
        if (!score->seen[(size_t)d * score->n_expected + score->n_expected - 1]) {
            return 0;
        }
    }
    return 1;
}

void replay_score_print(const replay_score *score, FILE *out)
{
    size_t correct = 0;
    double f1_sum = 0.0;
    int f1_classes = 0;

    fprintf(out, "%-20s %8s %8s %8s %8s\n", "class", "windows", "correct", "predicted", "F1");
    for (int k = 1; k <= REPLAY_SCORE_N_CLASSES; k++) {
        size_t true_positive = score->confusion[k][k];
        size_t actual = 0;
        size_t predicted = 0;
        for (int j = 0; j <= REPLAY_SCORE_N_CLASSES; j++) {
            actual += score->confusion[k][j];
            predicted += score->confusion[j][k];
        }
        correct += true_positive;

        /* Macro-F1 averages over the classes that occur in the truth or the predictions, so a
         * short recording with two activities is not penalised for the four it lacks. */
        if (actual + predicted == 0) {
            continue;
        }
        double f1 = 2.0 * (double)true_positive / (double)(actual + predicted);
        f1_sum += f1;
        f1_classes++;
        fprintf(out, "%-20s %8zu %8zu %8zu %8.4f\n", activity_names[k - 1], actual, true_positive,
                predicted, f1);
    }

    size_t expected = (size_t)score->n_devices * score->n_expected;
    fprintf(out,
            "windows: %zu expected, %zu scored, %zu unscored, %zu missing, %zu off the hop "
            "grid\n",
            expected, score->scored, score->unscored, expected - score->received, score->extra);
    if (score->scored == 0) {
        fprintf(out, "accuracy: n/a (no scored windows)\n");
        fprintf(out, "macro-F1: n/a (no scored windows)\n");
        return;
    }
    fprintf(out, "accuracy: %.4f (%zu of %zu scored windows)\n",
            (double)correct / (double)score->scored, correct, score->scored);
    fprintf(out, "macro-F1: %.4f over %d classes\n", f1_sum / f1_classes, f1_classes);
}
