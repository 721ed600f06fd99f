/*
 * Activity decisions and the events that announce them.
 *
 * Each classified window updates its device's decision, optionally smoothed over the last k
 * windows (a majority vote of their top classes, or the mean of their probabilities). An event
 * is due when the decision changes and, while it stays the same, every heartbeat interval.
 * The event is one JSON document, published retained on {prefix}/{device}/activity so that a
 * new subscriber sees the current state. Loop thread only.
 */
#ifndef BABYMAMBAD_EVENTS_H
#define BABYMAMBAD_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "babymamba/model.h"
#include "device.h"
#include "runner.h"

/* Records one classified window in d's history and recomputes d's decision with smoothing (a
 * cfg_smoothing value) over at most windows results. */
void events_record(device *d, const runner_result *result, int smoothing, int windows);

/* Returns nonzero when d's decision should be published now: it changed since the last event,
 * or heartbeat_s (when above 0) has passed since then. */
int events_due(const device *d, uint64_t now_ms, double heartbeat_s);

/* Marks d's decision as published at now_ms and advances its event sequence number. */
void events_mark_published(device *d, uint64_t now_ms);

/* Builds the event document of d's current decision. Returns a malloc'd string and its length
 * in *size, or NULL when out of memory. */
char *events_build(const device *d, const bm_model *model, int smoothing, size_t *size);

/* Writes the activity topic of device_id into out. Returns 0, or -1 when out is too small. */
int events_topic(const char *prefix, const char *device_id, char *out, size_t out_size);

#endif
