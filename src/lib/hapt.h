/*
 * Building labelled window data sets from the raw HAPT recordings.
 *
 * The HAPT data set ("Smartphone-Based Recognition of Human Activities and Postural
 * Transitions", UCI) holds, per experiment, an accelerometer file and a gyroscope file at
 * 50 Hz and a shared labels.txt of labelled segments. bm__hapt_build runs every experiment
 * through a fresh bm_stream, so the windows carry exactly the channels that a daemon computes
 * from the same samples, and keeps the windows that lie inside one segment of activity 1-6.
 * docs/preprocessing.md states the label rule and the data file layout.
 */
#ifndef BM_HAPT_H
#define BM_HAPT_H

#include <stdint.h>

#include "babymamba/error.h"

/* Sample rate of the HAPT recordings in Hz. */
#define BM__HAPT_SAMPLE_RATE_HZ 50.0

/* Activities 1-6 become classes 0-5. Activities 7-12 are postural transitions. */
#define BM__HAPT_N_CLASSES 6

/* Version of the data file layout, stored as format_version in the metadata. */
#define BM__HAPT_DATASET_FORMAT_VERSION 1

/* Where windows start. */
typedef enum bm__hapt_alignment {
    /* At each labelled segment's first row and every hop rows after it. */
    BM__HAPT_ALIGN_SEGMENT,
    /* On the hop grid of a stream that starts at the experiment's first row, as a daemon
     * receiving the whole recording would produce them. */
    BM__HAPT_ALIGN_STREAM
} bm__hapt_alignment;

typedef struct bm__hapt_options {
    int window_length; /* L, in samples */
    int hop;           /* in samples */
    bm__hapt_alignment alignment;
} bm__hapt_options;

/* The kept windows, ordered by experiment and then by first row. */
typedef struct bm__hapt_dataset {
    int window_length;
    int hop;
    bm__hapt_alignment alignment;
    int64_t n_windows;
    float *windows;       /* [n_windows, window_length, 9], unnormalised hapt-causal-v1 channels */
    int32_t *labels;      /* [n_windows] class index, activity - 1 */
    int32_t *users;       /* [n_windows] */
    int32_t *experiments; /* [n_windows] */
    int64_t *starts;      /* [n_windows] 0-based first row of the window in its experiment */
    int n_experiments;    /* experiments read */
    int64_t n_rows;       /* rows read per sensor over all experiments */
    int64_t capacity;     /* windows the arrays have room for */
} bm__hapt_dataset;

/* Reads directory/RawData (acc_expXX_userYY.txt, gyro_expXX_userYY.txt and labels.txt) and
 * builds the data set. Fails with BM_ERR_IO for a missing or unreadable file. Fails with
 * BM_ERR_FORMAT for a malformed row, for sensor files whose row counts differ, and for a label
 * segment that overlaps another or lies outside its recording. The message names the file and
 * line. */
bm_status bm__hapt_build(const char *directory, const bm__hapt_options *options,
                         bm__hapt_dataset **out, bm_error *error);

/* Frees a data set. Accepts NULL. */
void bm__hapt_destroy(bm__hapt_dataset *dataset);

/* Writes the data set as a safetensors data file (docs/preprocessing.md) to path, atomically. */
bm_status bm__hapt_write(const bm__hapt_dataset *dataset, const char *path, bm_error *error);

/* Returns the name of class index 0-5 ("walking"), or NULL outside that range. */
const char *bm__hapt_class_name(int index);

/* Returns "segment" or "stream". */
const char *bm__hapt_alignment_name(bm__hapt_alignment alignment);

/* Returns 1 for the users of the standard UCI-HAR test split (2, 4, 9, 10, 12, 13, 18, 20
 * and 24), whose windows make up the test set, and 0 for the others. */
int bm__hapt_is_test_user(int user);

#endif
