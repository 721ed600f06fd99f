/*
 * Recordings for `babymamba replay`: a CSV file with a time column, or a raw HAPT pair of
 * accelerometer and gyroscope files with an optional labels.txt. Both load into one layout of
 * timestamps, samples in g and rad/s, and per-sample labels with the segment they belong to.
 * docs/replay.md describes both formats.
 */
#ifndef BM_CLI_REPLAY_RECORDING_H
#define BM_CLI_REPLAY_RECORDING_H

#include <stddef.h>

/* Sample rate of the raw HAPT recordings in Hz. */
#define REPLAY_HAPT_RATE_HZ 50.0

/* Largest HAPT activity id: 1-6 are activities, 7-12 postural transitions, 0 unlabelled. */
#define REPLAY_MAX_ACTIVITY 12

typedef struct replay_recording {
    size_t n_samples;
    double rate_hz; /* mean sample rate over the recording */
    double *t;      /* [n_samples] seconds, strictly increasing */
    float *acc;     /* [n_samples, 3] g */
    float *gyro;    /* [n_samples, 3] rad/s */
    int has_labels; /* nonzero when the recording carries labels */
    int *labels;    /* [n_samples] HAPT activity id 0-12, all 0 without labels */
    int *segments;  /* [n_samples] labelled segment index, -1 for unlabelled samples */
} replay_recording;

/* Reads a CSV recording with the header t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z and an
 * optional label column. On failure prints an error naming the file and line, and returns 0. */
int replay_recording_read_csv(const char *path, replay_recording *recording);

/* Reads a raw HAPT pair at 50 Hz. labels_path may be NULL. The experiment and user whose
 * segments apply are taken from the name acc_expXX_userYY.txt. On failure prints an error
 * naming the file and line, and returns 0. */
int replay_recording_read_hapt(const char *acc_path, const char *gyro_path, const char *labels_path,
                               replay_recording *recording);

/* Frees the arrays of a recording. Accepts a zeroed recording. */
void replay_recording_free(replay_recording *recording);

#endif
