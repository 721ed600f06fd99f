/*
 * Decisions, smoothing and activity event documents (see events.h and docs/daemon.md).
 */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

/* Picks the decision from the history: the mean probabilities always, and the class either by
 * the largest mean probability or by the most frequent top class. A tie in the vote goes to the
 * class with the larger mean probability. */
static void decide(device *d, int smoothing)
{
    int k = d->n_classes;
    int count = d->history_count;

    for (int c = 0; c < k; c++)
        d->probabilities[c] = 0.0f;
    for (int h = 0; h < count; h++) {
        for (int c = 0; c < k; c++)
            d->probabilities[c] += d->history[(size_t)h * (size_t)k + (size_t)c];
    }
    for (int c = 0; c < k; c++)
        d->probabilities[c] /= (float)count;

    int best = 0;
    for (int c = 1; c < k; c++) {
        if (d->probabilities[c] > d->probabilities[best])
            best = c;
    }

    if (smoothing == CFG_SMOOTHING_MAJORITY) {
        int votes_best = -1;
        int vote_class = best;
        for (int c = 0; c < k; c++) {
            int votes = 0;
            for (int h = 0; h < count; h++)
                votes += d->history_top[h] == c;
            if (votes > votes_best ||
                (votes == votes_best && d->probabilities[c] > d->probabilities[vote_class])) {
                votes_best = votes;
                vote_class = c;
            }
        }
        best = vote_class;
    }
    d->activity = best;
}

void events_record(device *d, const runner_result *result, int smoothing, int windows)
{
    int k = d->n_classes;
    if (smoothing == CFG_SMOOTHING_NONE || windows < 1)
        windows = 1;
    if (windows > d->history_capacity)
        windows = d->history_capacity;

    /* A smaller window count after a reload keeps the newest entries only. */
    if (d->history_count > windows) {
        d->history_count = 0;
        d->history_next = 0;
    }

    int slot = d->history_next % windows;
    memcpy(d->history + (size_t)slot * (size_t)k, result->probabilities,
           (size_t)k * sizeof *d->history);
    d->history_top[slot] = result->top;
    d->history_next = (slot + 1) % windows;
    if (d->history_count < windows)
        d->history_count++;

    d->window_start_ns = result->tag.start_ns;
    d->window_end_ns = result->tag.end_ns;
    d->has_activity = 1;
    decide(d, smoothing);
}

int events_due(const device *d, uint64_t now_ms, double heartbeat_s)
{
    if (!d->has_activity)
        return 0;
    if (d->activity != d->published_activity)
        return 1;
    return heartbeat_s > 0.0 && (double)(now_ms - d->last_publish_ms) >= heartbeat_s * 1000.0;
}

void events_mark_published(device *d, uint64_t now_ms)
{
    d->published_activity = d->activity;
    d->last_publish_ms = now_ms;
    d->event_seq++;
    d->events++;
}

/* Seconds since the epoch as a JSON number; nanoseconds are also given exactly as integers. */
static json_t *seconds_value(int64_t t_ns)
{
    return json_real((double)t_ns / 1e9);
}

char *events_build(const device *d, const bm_model *model, int smoothing, size_t *size)
{
    json_t *probabilities = json_object();
    for (int c = 0; probabilities != NULL && c < d->n_classes; c++)
        json_object_set_new(probabilities, bm_model_class_name(model, c),
                            json_real(d->probabilities[c]));

    json_t *event =
        json_pack("{s:s, s:s, s:i, s:f, s:o, s:o, s:o, s:I, s:I, s:{s:s, s:s}, s:I, s:s}", "device",
                  d->id, "activity", bm_model_class_name(model, d->activity), "class_index",
                  d->activity, "confidence", (double)d->probabilities[d->activity], "probabilities",
                  probabilities, "window_start", seconds_value(d->window_start_ns), "window_end",
                  seconds_value(d->window_end_ns), "window_start_ns",
                  (json_int_t)d->window_start_ns, "window_end_ns", (json_int_t)d->window_end_ns,
                  "model", "name", bm_model_name(model), "version", bm_model_version(model), "seq",
                  (json_int_t)d->event_seq, "smoothing", cfg_smoothing_name(smoothing));
    if (event == NULL)
        return NULL;

    char *text = json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(event);
    if (text != NULL)
        *size = strlen(text);
    return text;
}

int events_topic(const char *prefix, const char *device_id, char *out, size_t out_size)
{
    int written = snprintf(out, out_size, "%s/%s/activity", prefix, device_id);
    return written < 0 || (size_t)written >= out_size ? -1 : 0;
}
