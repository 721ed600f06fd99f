/*
 * Reading the raw HAPT recordings and cutting labelled windows from them.
 *
 * Per experiment: read the accelerometer and gyroscope rows, plan the window starts from the
 * label segments, run all rows through a fresh hapt-causal-v1 bm_stream and copy the planned
 * windows out of it. The stream runs with a hop of 1, so a window is available after every row
 * and any start can be taken. The channel values do not depend on the hop.
 */
#include "hapt.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/stream.h"
#include "error_internal.h"
#include "st_writer.h"

/* Channels of every window, those of hapt-causal-v1. */
#define N_CHANNELS 9

/* Activity ids in labels.txt run from 1 to this value. Ids above BM__HAPT_N_CLASSES are
 * postural transitions. */
#define MAX_ACTIVITY 12

static const char *const class_names[BM__HAPT_N_CLASSES] = {
    "walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying",
};

/* Attribution that the CC BY 4.0 licence of the data set requires, stored in every file. */
static const char source_text[] =
    "Derived from \"Smartphone-Based Recognition of Human Activities and Postural "
    "Transitions\", version 2.1, by J. L. Reyes-Ortiz, D. Anguita, L. Oneto and X. Parra, UCI "
    "Machine Learning Repository, licensed under CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/). Changes: the raw accelerometer and "
    "gyroscope recordings were converted to hapt-causal-v1 channels and cut into labelled "
    "windows by babymamba prepare.";

/* One line of labels.txt. */
typedef struct segment {
    int experiment;
    int user;
    int activity;
    int64_t first; /* 0-based first row */
    int64_t last;  /* 0-based last row, inclusive */
    long line;     /* line in labels.txt, for messages */
} segment;

/* One experiment's recording, found by its accelerometer file name. */
typedef struct experiment {
    int number;
    int user;
} experiment;

/* A growable array of rows of 3 floats. */
typedef struct rows {
    float *values;
    int64_t count;
    int64_t capacity;
} rows;

/* A planned window: its first row and class index. */
typedef struct planned_window {
    int64_t start;
    int32_t label;
} planned_window;

const char *bm__hapt_class_name(int index)
{
    if (index < 0 || index >= BM__HAPT_N_CLASSES) {
        return NULL;
    }
    return class_names[index];
}

const char *bm__hapt_alignment_name(bm__hapt_alignment alignment)
{
    return alignment == BM__HAPT_ALIGN_STREAM ? "stream" : "segment";
}

int bm__hapt_is_test_user(int user)
{
    static const int test_users[] = {2, 4, 9, 10, 12, 13, 18, 20, 24};

    for (size_t i = 0; i < sizeof test_users / sizeof test_users[0]; i++) {
        if (test_users[i] == user) {
            return 1;
        }
    }
    return 0;
}

/* Returns "directory/RawData/name" in a malloc'ed string, or NULL when out of memory. */
static char *raw_path(const char *directory, const char *name)
{
    const size_t size = strlen(directory) + strlen("/RawData/") + strlen(name) + 1;
    char *path = malloc(size);
    if (path != NULL) {
        snprintf(path, size, "%s/RawData/%s", directory, name);
    }
    return path;
}

/* Removes a trailing newline and carriage return in place. */
static void strip_line_end(char *line)
{
    size_t length = strlen(line);
    while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) {
        line[--length] = '\0';
    }
}

/* Parses exactly count whitespace-separated decimal integers. Returns 1 on success. */
static int parse_integers(const char *line, long *values, int count)
{
    const char *cursor = line;

    for (int i = 0; i < count; i++) {
        char *end = NULL;
        errno = 0;
        values[i] = strtol(cursor, &end, 10);
        if (end == cursor || errno != 0) {
            return 0;
        }
        cursor = end;
    }
    while (*cursor == ' ' || *cursor == '\t') {
        cursor++;
    }
    return *cursor == '\0';
}

/* Parses exactly three whitespace-separated finite numbers. Returns 1 on success. */
static int parse_three_numbers(const char *line, float values[3])
{
    const char *cursor = line;

    for (int i = 0; i < 3; i++) {
        char *end = NULL;
        errno = 0;
        const double value = strtod(cursor, &end);
        if (end == cursor || errno != 0 || !isfinite(value)) {
            return 0;
        }
        values[i] = (float)value;
        cursor = end;
    }
    while (*cursor == ' ' || *cursor == '\t') {
        cursor++;
    }
    return *cursor == '\0';
}

static int compare_segments(const void *a, const void *b)
{
    const segment *x = a;
    const segment *y = b;
    if (x->experiment != y->experiment) {
        return x->experiment < y->experiment ? -1 : 1;
    }
    if (x->first != y->first) {
        return x->first < y->first ? -1 : 1;
    }
    return 0;
}

/* Checks one parsed labels.txt line and converts it to a segment. */
static bm_status make_segment(const char *path, long line_number, const long fields[5],
                              segment *out, bm_error *error)
{
    if (fields[0] < 1 || fields[0] > 99 || fields[1] < 1 || fields[1] > 99) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "%s:%ld: experiment %ld and user %ld: expected numbers from 1 to 99", path,
                        line_number, fields[0], fields[1]);
    }
    if (fields[2] < 1 || fields[2] > MAX_ACTIVITY) {
        return bm__fail(error, BM_ERR_FORMAT, "%s:%ld: activity %ld: expected 1 to %d", path,
                        line_number, fields[2], MAX_ACTIVITY);
    }
    if (fields[3] < 1 || fields[4] < fields[3]) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "%s:%ld: rows %ld to %ld: expected 1-based rows with start <= end", path,
                        line_number, fields[3], fields[4]);
    }

    out->experiment = (int)fields[0];
    out->user = (int)fields[1];
    out->activity = (int)fields[2];
    out->first = fields[3] - 1;
    out->last = fields[4] - 1;
    out->line = line_number;
    return BM_OK;
}

/* Reads labels.txt into a malloc'ed array sorted by experiment and first row, and rejects
 * overlapping segments of one experiment. */
static bm_status read_labels(const char *directory, segment **out, int *out_count, bm_error *error)
{
    bm_status status = BM_OK;
    segment *segments = NULL;
    int count = 0;
    int capacity = 0;
    char *line = NULL;
    size_t line_size = 0;
    FILE *file = NULL;

    char *path = raw_path(directory, "labels.txt");
    if (path == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "labels.txt: cannot allocate the path");
    }
    file = fopen(path, "r");
    if (file == NULL) {
        status = bm__fail(error, BM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }

    long line_number = 0;
    while (getline(&line, &line_size, file) >= 0) {
        line_number++;
        strip_line_end(line);

        long fields[5];
        if (!parse_integers(line, fields, 5)) {
            status = bm__fail(error, BM_ERR_FORMAT,
                              "%s:%ld: expected 5 integers 'experiment user activity start "
                              "end', found '%.60s'",
                              path, line_number, line);
            goto done;
        }
        if (count == capacity) {
            capacity = capacity ? 2 * capacity : 256;
            segment *grown = realloc(segments, (size_t)capacity * sizeof *grown);
            if (grown == NULL) {
                status = bm__fail(error, BM_ERR_NO_MEMORY, "%s: cannot allocate %d segments", path,
                                  capacity);
                goto done;
            }
            segments = grown;
        }
        status = make_segment(path, line_number, fields, &segments[count], error);
        if (status != BM_OK) {
            goto done;
        }
        count++;
    }
    if (ferror(file)) {
        status = bm__fail(error, BM_ERR_IO, "%s: read failed after line %ld", path, line_number);
        goto done;
    }

    if (count > 0) {
        qsort(segments, (size_t)count, sizeof *segments, compare_segments);
    }
    for (int i = 1; i < count; i++) {
        const segment *previous = &segments[i - 1];
        const segment *current = &segments[i];
        if (current->experiment == previous->experiment && current->first <= previous->last) {
            status = bm__fail(error, BM_ERR_FORMAT,
                              "%s:%ld: rows %lld to %lld of experiment %d overlap the segment "
                              "of line %ld",
                              path, current->line, (long long)current->first + 1,
                              (long long)current->last + 1, current->experiment, previous->line);
            goto done;
        }
    }

    *out = segments;
    *out_count = count;
    segments = NULL;

done:
    free(segments);
    free(line);
    if (file != NULL) {
        fclose(file);
    }
    free(path);
    return status;
}

static int compare_experiments(const void *a, const void *b)
{
    const experiment *x = a;
    const experiment *y = b;
    return (x->number > y->number) - (x->number < y->number);
}

/* Parses "acc_expNN_userMM.txt". Returns 1 and fills out for such a name, 0 otherwise. */
static int parse_recording_name(const char *name, experiment *out)
{
    int number = 0;
    int user = 0;
    int consumed = 0;

    if (strlen(name) != strlen("acc_exp00_user00.txt") ||
        sscanf(name, "acc_exp%2d_user%2d.txt%n", &number, &user, &consumed) != 2 ||
        name[consumed] != '\0' || number < 1 || user < 1) {
        return 0;
    }
    out->number = number;
    out->user = user;
    return 1;
}

/* Lists the experiments of directory/RawData by their accelerometer files, sorted by number. */
static bm_status list_experiments(const char *directory, experiment **out, int *out_count,
                                  bm_error *error)
{
    bm_status status = BM_OK;
    experiment *experiments = NULL;
    int count = 0;
    int capacity = 0;

    char *path = raw_path(directory, "");
    if (path == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "RawData: cannot allocate the path");
    }
    DIR *dir = opendir(path);
    if (dir == NULL) {
        status = bm__fail(error, BM_ERR_IO,
                          "%s: cannot open the directory: %s (expected the HAPT folder that "
                          "contains RawData/)",
                          path, strerror(errno));
        free(path);
        return status;
    }

    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        experiment found;
        if (!parse_recording_name(entry->d_name, &found)) {
            continue;
        }
        if (count == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            experiment *grown = realloc(experiments, (size_t)capacity * sizeof *grown);
            if (grown == NULL) {
                status = bm__fail(error, BM_ERR_NO_MEMORY, "%s: cannot list the recordings", path);
                goto done;
            }
            experiments = grown;
        }
        experiments[count++] = found;
    }

    if (count == 0) {
        status = bm__fail(error, BM_ERR_IO,
                          "%s: no acc_expXX_userYY.txt recordings found in the directory", path);
        goto done;
    }
    qsort(experiments, (size_t)count, sizeof *experiments, compare_experiments);
    for (int i = 1; i < count; i++) {
        if (experiments[i].number == experiments[i - 1].number) {
            status = bm__fail(error, BM_ERR_FORMAT,
                              "%s: experiment %d has recordings of users %d and %d", path,
                              experiments[i].number, experiments[i - 1].user, experiments[i].user);
            goto done;
        }
    }

    *out = experiments;
    *out_count = count;
    experiments = NULL;

done:
    free(experiments);
    closedir(dir);
    free(path);
    return status;
}

/* Reads a sensor file of "x y z" rows into a growable array, replacing its contents. */
static bm_status read_sensor_file(const char *path, rows *out, bm_error *error)
{
    bm_status status = BM_OK;
    char *line = NULL;
    size_t line_size = 0;

    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return bm__fail(error, BM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }

    out->count = 0;
    while (getline(&line, &line_size, file) >= 0) {
        strip_line_end(line);
        if (out->count == out->capacity) {
            const int64_t capacity = out->capacity ? 2 * out->capacity : 32768;
            float *grown = realloc(out->values, (size_t)capacity * 3 * sizeof *grown);
            if (grown == NULL) {
                status = bm__fail(error, BM_ERR_NO_MEMORY, "%s: cannot allocate %lld rows", path,
                                  (long long)capacity);
                goto done;
            }
            out->values = grown;
            out->capacity = capacity;
        }
        if (!parse_three_numbers(line, out->values + 3 * out->count)) {
            status = bm__fail(error, BM_ERR_FORMAT,
                              "%s:%lld: expected 3 finite numbers 'x y z', found '%.60s'", path,
                              (long long)out->count + 1, line);
            goto done;
        }
        out->count++;
    }
    if (ferror(file)) {
        status = bm__fail(error, BM_ERR_IO, "%s: read failed after line %lld", path,
                          (long long)out->count);
    }

done:
    free(line);
    fclose(file);
    return status;
}

/* Reads both sensor files of an experiment and checks that their rows align. */
static bm_status read_recording(const char *directory, const experiment *recording, rows *acc,
                                rows *gyro, bm_error *error)
{
    char acc_name[64];
    char gyro_name[64];
    snprintf(acc_name, sizeof acc_name, "acc_exp%02d_user%02d.txt", recording->number,
             recording->user);
    snprintf(gyro_name, sizeof gyro_name, "gyro_exp%02d_user%02d.txt", recording->number,
             recording->user);

    bm_status status = BM_OK;
    char *acc_path = raw_path(directory, acc_name);
    char *gyro_path = raw_path(directory, gyro_name);
    if (acc_path == NULL || gyro_path == NULL) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "%s: cannot allocate the path", acc_name);
        goto done;
    }

    status = read_sensor_file(acc_path, acc, error);
    if (status != BM_OK) {
        goto done;
    }
    status = read_sensor_file(gyro_path, gyro, error);
    if (status != BM_OK) {
        goto done;
    }
    if (acc->count != gyro->count) {
        status = bm__fail(error, BM_ERR_FORMAT,
                          "%s has %lld rows but %s has %lld: the two sensors of an experiment "
                          "must have one row per sample each",
                          gyro_path, (long long)gyro->count, acc_path, (long long)acc->count);
    }

done:
    free(gyro_path);
    free(acc_path);
    return status;
}

/* Checks the segments of one experiment against its recording. */
static bm_status check_segments(const char *directory, const experiment *recording,
                                const segment *segments, int n_segments, int64_t n_rows,
                                bm_error *error)
{
    for (int i = 0; i < n_segments; i++) {
        const segment *s = &segments[i];
        if (s->user != recording->user) {
            return bm__fail(error, BM_ERR_FORMAT,
                            "%s/RawData/labels.txt:%ld: experiment %d is user %d, but its "
                            "recording acc_exp%02d_user%02d.txt is of user %d",
                            directory, s->line, s->experiment, s->user, recording->number,
                            recording->user, recording->user);
        }
        if (s->last >= n_rows) {
            return bm__fail(error, BM_ERR_FORMAT,
                            "%s/RawData/labels.txt:%ld: segment ends at row %lld, but "
                            "experiment %d has %lld rows",
                            directory, s->line, (long long)s->last + 1, s->experiment,
                            (long long)n_rows);
        }
    }
    return BM_OK;
}

/* Fills plan with the windows of one experiment in increasing order of start and returns
 * their number. plan needs room for n_rows entries, the most any alignment can produce. */
static int64_t plan_windows(const segment *segments, int n_segments, int64_t n_rows,
                            const bm__hapt_options *options, planned_window *plan)
{
    const int64_t length = options->window_length;
    const int64_t hop = options->hop;
    int64_t count = 0;

    for (int i = 0; i < n_segments; i++) {
        const segment *s = &segments[i];
        if (s->activity > BM__HAPT_N_CLASSES) {
            continue;
        }

        /* The first start on the grid at or after the segment's first row. */
        int64_t start = s->first;
        if (options->alignment == BM__HAPT_ALIGN_STREAM) {
            start = (s->first + hop - 1) / hop * hop;
        }
        for (; start + length - 1 <= s->last && start + length <= n_rows; start += hop) {
            plan[count].start = start;
            plan[count].label = s->activity - 1;
            count++;
        }
    }
    return count;
}

/* Makes room for extra more windows in the data set. */
static bm_status reserve_windows(bm__hapt_dataset *dataset, int64_t extra, bm_error *error)
{
    const int64_t needed = dataset->n_windows + extra;
    if (needed <= dataset->capacity) {
        return BM_OK;
    }

    int64_t capacity = dataset->capacity ? dataset->capacity : 1024;
    while (capacity < needed) {
        capacity *= 2;
    }
    const size_t window_values = (size_t)dataset->window_length * N_CHANNELS;

    float *windows = realloc(dataset->windows, (size_t)capacity * window_values * sizeof(float));
    if (windows != NULL) {
        dataset->windows = windows;
    }
    int32_t *labels = realloc(dataset->labels, (size_t)capacity * sizeof(int32_t));
    if (labels != NULL) {
        dataset->labels = labels;
    }
    int32_t *users = realloc(dataset->users, (size_t)capacity * sizeof(int32_t));
    if (users != NULL) {
        dataset->users = users;
    }
    int32_t *experiments = realloc(dataset->experiments, (size_t)capacity * sizeof(int32_t));
    if (experiments != NULL) {
        dataset->experiments = experiments;
    }
    int64_t *starts = realloc(dataset->starts, (size_t)capacity * sizeof(int64_t));
    if (starts != NULL) {
        dataset->starts = starts;
    }

    if (windows == NULL || labels == NULL || users == NULL || experiments == NULL ||
        starts == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "data set: cannot allocate %lld windows",
                        (long long)capacity);
    }
    dataset->capacity = capacity;
    return BM_OK;
}

/* Streams one experiment's rows and appends its planned windows to the data set. */
static bm_status stream_experiment(bm__hapt_dataset *dataset, const experiment *recording,
                                   const rows *acc, const rows *gyro, const planned_window *plan,
                                   int64_t n_planned, bm_error *error)
{
    bm_status status = reserve_windows(dataset, n_planned, error);
    if (status != BM_OK) {
        return status;
    }

    const bm_stream_config config = {
        .preprocessing = BM_PREPROCESSING_HAPT,
        .sample_rate_hz = BM__HAPT_SAMPLE_RATE_HZ,
        .n_channels = N_CHANNELS,
        .window_length = dataset->window_length,
        .hop = 1,
    };
    bm_stream *stream = NULL;
    status = bm_stream_create(&config, &stream, error);
    if (status != BM_OK) {
        return status;
    }

    const int64_t length = dataset->window_length;
    const size_t window_values = (size_t)length * N_CHANNELS;
    int64_t next = 0;
    for (int64_t row = 0; row < acc->count && next < n_planned; row++) {
        /* The rows were parsed as finite numbers, so the stream accepts every one. */
        bm_stream_push_imu(stream, acc->values + 3 * row, gyro->values + 3 * row);

        if (row + 1 - length != plan[next].start) {
            continue;
        }
        const int64_t index = dataset->n_windows;
        bm_stream_copy_window(stream, dataset->windows + (size_t)index * window_values, 0);
        dataset->labels[index] = plan[next].label;
        dataset->users[index] = recording->user;
        dataset->experiments[index] = recording->number;
        dataset->starts[index] = plan[next].start;
        dataset->n_windows++;
        next++;
    }

    bm_stream_destroy(stream);
    return BM_OK;
}

static bm_status check_options(const bm__hapt_options *options, bm_error *error)
{
    if (options->window_length < 1 || options->window_length > 1000000) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "window length %d: expected 1 to 1000000 samples", options->window_length);
    }
    if (options->hop < 1 || options->hop > 1000000) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "hop %d: expected 1 to 1000000 samples",
                        options->hop);
    }
    if (options->alignment != BM__HAPT_ALIGN_SEGMENT &&
        options->alignment != BM__HAPT_ALIGN_STREAM) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "alignment %d: not a bm__hapt_alignment",
                        (int)options->alignment);
    }
    return BM_OK;
}

/* Returns the index of the first segment of experiment number at or after from. */
static int first_segment_of(const segment *segments, int n_segments, int from, int number)
{
    while (from < n_segments && segments[from].experiment < number) {
        from++;
    }
    return from;
}

bm_status bm__hapt_build(const char *directory, const bm__hapt_options *options,
                         bm__hapt_dataset **out, bm_error *error)
{
    if (directory == NULL || options == NULL || out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "hapt: directory, options and out must not be NULL");
    }
    *out = NULL;
    bm_status status = check_options(options, error);
    if (status != BM_OK) {
        return status;
    }

    segment *segments = NULL;
    int n_segments = 0;
    experiment *experiments = NULL;
    int n_experiments = 0;
    rows acc = {0};
    rows gyro = {0};
    planned_window *plan = NULL;
    int64_t plan_capacity = 0;

    bm__hapt_dataset *dataset = calloc(1, sizeof *dataset);
    if (dataset == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "hapt: cannot allocate the data set");
    }
    dataset->window_length = options->window_length;
    dataset->hop = options->hop;
    dataset->alignment = options->alignment;

    status = read_labels(directory, &segments, &n_segments, error);
    if (status != BM_OK) {
        goto fail;
    }
    status = list_experiments(directory, &experiments, &n_experiments, error);
    if (status != BM_OK) {
        goto fail;
    }

    /* Every labelled experiment needs its recording; both lists are sorted by experiment. */
    for (int i = 0, e = 0; i < n_segments; i++) {
        while (e < n_experiments && experiments[e].number < segments[i].experiment) {
            e++;
        }
        if (e == n_experiments || experiments[e].number != segments[i].experiment) {
            status = bm__fail(error, BM_ERR_IO,
                              "%s/RawData/labels.txt:%ld: experiment %d has no recording "
                              "acc_exp%02d_user%02d.txt",
                              directory, segments[i].line, segments[i].experiment,
                              segments[i].experiment, segments[i].user);
            goto fail;
        }
    }

    int first = 0;
    for (int e = 0; e < n_experiments; e++) {
        const experiment *recording = &experiments[e];
        status = read_recording(directory, recording, &acc, &gyro, error);
        if (status != BM_OK) {
            goto fail;
        }
        dataset->n_rows += acc.count;
        dataset->n_experiments++;

        first = first_segment_of(segments, n_segments, first, recording->number);
        const int end = first_segment_of(segments, n_segments, first, recording->number + 1);
        status =
            check_segments(directory, recording, segments + first, end - first, acc.count, error);
        if (status != BM_OK) {
            goto fail;
        }

        if (acc.count > plan_capacity) {
            planned_window *grown = realloc(plan, (size_t)acc.count * sizeof *grown);
            if (grown == NULL) {
                status =
                    bm__fail(error, BM_ERR_NO_MEMORY, "hapt: cannot plan the windows of %lld rows",
                             (long long)acc.count);
                goto fail;
            }
            plan = grown;
            plan_capacity = acc.count;
        }
        const int64_t n_planned =
            plan_windows(segments + first, end - first, acc.count, options, plan);
        status = stream_experiment(dataset, recording, &acc, &gyro, plan, n_planned, error);
        if (status != BM_OK) {
            goto fail;
        }
        first = end;
    }

    *out = dataset;
    dataset = NULL;

fail:
    free(plan);
    free(gyro.values);
    free(acc.values);
    free(experiments);
    free(segments);
    bm__hapt_destroy(dataset);
    return status;
}

void bm__hapt_destroy(bm__hapt_dataset *dataset)
{
    if (dataset == NULL) {
        return;
    }
    free(dataset->starts);
    free(dataset->experiments);
    free(dataset->users);
    free(dataset->labels);
    free(dataset->windows);
    free(dataset);
}

/* Builds the JSON document stored as __metadata__.babymamba. */
static char *metadata_json(const bm__hapt_dataset *dataset)
{
    json_t *channels = json_array();
    json_t *classes = json_array();
    for (int c = 0; channels != NULL && c < N_CHANNELS; c++) {
        json_array_append_new(
            channels,
            json_pack("{s:s, s:s}", "name", bm_preprocessing_channel_name(BM_PREPROCESSING_HAPT, c),
                      "unit", bm_preprocessing_channel_unit(BM_PREPROCESSING_HAPT, c)));
    }
    for (int k = 0; classes != NULL && k < BM__HAPT_N_CLASSES; k++) {
        json_array_append_new(classes, json_string(class_names[k]));
    }

    /* json_pack takes over channels and classes ("o"), also when it fails. */
    json_t *document = json_pack(
        "{s:s, s:i, s:s, s:f, s:i, s:i, s:s, s:o, s:o, s:s}", "format", "babymamba-dataset",
        "format_version", BM__HAPT_DATASET_FORMAT_VERSION, "preprocessing", BM_PREPROCESSING_HAPT,
        "sample_rate_hz", BM__HAPT_SAMPLE_RATE_HZ, "window_length", dataset->window_length, "hop",
        dataset->hop, "alignment", bm__hapt_alignment_name(dataset->alignment), "channels",
        channels, "classes", classes, "source", source_text);
    if (document == NULL) {
        return NULL;
    }
    char *text = json_dumps(document, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(document);
    return text;
}

bm_status bm__hapt_write(const bm__hapt_dataset *dataset, const char *path, bm_error *error)
{
    const int64_t n = dataset->n_windows;
    const int64_t window_shape[3] = {n, dataset->window_length, N_CHANNELS};
    const int64_t vector_shape[1] = {n};

    bm_st_writer *writer = NULL;
    bm_status status = bm_st_writer_create(&writer, error);
    if (status != BM_OK) {
        return status;
    }

    char *metadata = metadata_json(dataset);
    if (metadata == NULL) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "%s: cannot build the metadata", path);
        goto done;
    }

    status = bm_st_writer_set_metadata(writer, "babymamba", metadata, error);
    if (status == BM_OK) {
        status = bm_st_writer_add_tensor(writer, "windows", BM_ST_F32, 3, window_shape,
                                         dataset->windows, error);
    }
    if (status == BM_OK) {
        status = bm_st_writer_add_tensor(writer, "labels", BM_ST_I32, 1, vector_shape,
                                         dataset->labels, error);
    }
    if (status == BM_OK) {
        status = bm_st_writer_add_tensor(writer, "users", BM_ST_I32, 1, vector_shape,
                                         dataset->users, error);
    }
    if (status == BM_OK) {
        status = bm_st_writer_add_tensor(writer, "experiments", BM_ST_I32, 1, vector_shape,
                                         dataset->experiments, error);
    }
    if (status == BM_OK) {
        status = bm_st_writer_add_tensor(writer, "starts", BM_ST_I64, 1, vector_shape,
                                         dataset->starts, error);
    }
    if (status == BM_OK) {
        status = bm_st_writer_write(writer, path, error);
    }

done:
    free(metadata);
    bm_st_writer_destroy(writer);
    return status;
}
