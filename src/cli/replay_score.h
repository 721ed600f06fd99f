/*
 * Scoring of the daemon's activity events against a replayed recording's labels.
 *
 * Each event names a window [start, end] in device time. Its true label is the recording's
 * activity when every sample of the window lies in one labelled segment of activity 1-6, as in
 * `babymamba prepare`. Other windows are counted as unscored. The windows the daemon
 * should produce are known from its window length and hop, so windows without an event are
 * counted as missing. Not thread-safe: the caller serialises the calls.
 */
#ifndef BM_CLI_REPLAY_SCORE_H
#define BM_CLI_REPLAY_SCORE_H

#include <stdint.h>
#include <stdio.h>

#include "replay_recording.h"

/* Classes that are scored: HAPT activities 1-6. */
#define REPLAY_SCORE_N_CLASSES 6

typedef enum replay_window_kind {
    REPLAY_WINDOW_SCORED,    /* labelled, counted in accuracy and macro-F1 */
    REPLAY_WINDOW_UNSCORED,  /* crosses a segment boundary, a transition or unlabelled samples */
    REPLAY_WINDOW_DUPLICATE, /* a window already seen, as a heartbeat repeats it */
    REPLAY_WINDOW_OUTSIDE    /* not within the replayed samples, such as an earlier run's */
} replay_window_kind;

typedef struct replay_score replay_score;

/* Creates a score for n_devices devices that each send the recording's samples with the device
 * times t_ns ([n_samples], increasing). window_length and hop are the daemon model's, in
 * samples, and give the expected windows. Returns NULL when out of memory. */
replay_score *replay_score_create(const replay_recording *recording, const int64_t *t_ns,
                                  int n_devices, int window_length, int hop);

void replay_score_destroy(replay_score *score);

/* Records the event of device (0-based) for window [start_ns, end_ns] with the predicted
 * activity name. Returns how the window was counted and, for a scored window, stores the true
 * HAPT activity id in *truth. */
replay_window_kind replay_score_add(replay_score *score, int device, int64_t start_ns,
                                    int64_t end_ns, const char *activity, int *truth);

/* Returns nonzero when every device's last expected window has arrived. */
int replay_score_complete(const replay_score *score);

/* Prints the per-class table, then the window counts, accuracy and macro-F1 as the last
 * lines. */
void replay_score_print(const replay_score *score, FILE *out);

/* Returns the HAPT activity id 1-6 of a class name such as "walking_upstairs" (any case), or 0
 * for another name. */
int replay_activity_id(const char *name);

#endif
