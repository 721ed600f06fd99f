/*
 * Loading of replay recordings (see replay_recording.h). The table reader parses the numbers;
 * this module checks what the numbers mean and turns labels into segments.
 */
#include "replay_recording.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"
#include "table_reader.h"

static const char *const imu_columns[6] = {"acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"};

/* Returns the 1-based line number of data row `row` (0-based) of path, or 0 when the file
 * cannot be read again. The table reader skips the same lines: blank ones, comments and, when
 * has_header is set, the first remaining line. */
static long data_row_line(const char *path, size_t row, int has_header)
{
    FILE *stream = fopen(path, "r");
    if (stream == NULL) {
        return 0;
    }

    char *line = NULL;
    size_t line_size = 0;
    long line_number = 0;
    long found = 0;
    size_t data_rows = 0;
    int header_pending = has_header;
    while (getline(&line, &line_size, stream) >= 0) {
        line_number++;
        char *start = line + strspn(line, " \t");
        if (start[strspn(start, ",; \t\r\n")] == '\0' || *start == '#') {
            continue;
        }
        if (header_pending) {
            header_pending = 0;
            continue;
        }
        if (data_rows == row) {
            found = line_number;
            break;
        }
        data_rows++;
    }
    free(line);
    fclose(stream);
    return found;
}

/* Prints "path:line: message" for data row `row`, or "path: data row N: message" when the line
 * cannot be found. */
static void report_row(const char *path, size_t row, int has_header, const char *message)
{
    long line = data_row_line(path, row, has_header);
    if (line > 0) {
        cli_error("replay", "%s:%ld: %s", path, line, message);
    } else {
        cli_error("replay", "%s: data row %zu: %s", path, row + 1, message);
    }
}

static int allocate(replay_recording *recording, size_t n_samples)
{
    memset(recording, 0, sizeof *recording);
    recording->n_samples = n_samples;
    recording->t = malloc(n_samples * sizeof *recording->t);
    recording->acc = malloc(n_samples * 3 * sizeof *recording->acc);
    recording->gyro = malloc(n_samples * 3 * sizeof *recording->gyro);
    recording->labels = calloc(n_samples, sizeof *recording->labels);
    recording->segments = malloc(n_samples * sizeof *recording->segments);
    if (recording->t == NULL || recording->acc == NULL || recording->gyro == NULL ||
        recording->labels == NULL || recording->segments == NULL) {
        cli_error("replay", "out of memory for %zu samples", n_samples);
        replay_recording_free(recording);
        return 0;
    }
    for (size_t i = 0; i < n_samples; i++) {
        recording->segments[i] = -1;
    }
    return 1;
}

/* Numbers consecutive runs of one non-zero label as segments, because a CSV recording has
 * per-sample labels only. */
static void segments_from_labels(replay_recording *recording)
{
    int segment = -1;
    for (size_t i = 0; i < recording->n_samples; i++) {
        int label = recording->labels[i];
        if (label != 0 && (i == 0 || label != recording->labels[i - 1])) {
            segment++;
        }
        recording->segments[i] = label != 0 ? segment : -1;
    }
}

int replay_recording_read_csv(const char *path, replay_recording *recording)
{
    memset(recording, 0, sizeof *recording);
    cli_table table;
    if (!cli_table_read("replay", path, &table)) {
        return 0;
    }

    int ok = 0;
    int columns[6];
    int t_column = cli_table_column(&table, "t");
    int label_column = cli_table_column(&table, "label");
    if (table.names == NULL) {
        cli_error("replay",
                  "%s: missing header line; expected t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z "
                  "and optionally label",
                  path);
        goto cleanup;
    }
    if (t_column < 0) {
        cli_error("replay", "%s:1: missing column 't' (time in seconds)", path);
        goto cleanup;
    }
    for (int i = 0; i < 6; i++) {
        columns[i] = cli_table_column(&table, imu_columns[i]);
        if (columns[i] < 0) {
            cli_error("replay", "%s:1: missing column '%s'", path, imu_columns[i]);
            goto cleanup;
        }
    }
    if (table.n_rows < 2) {
        cli_error("replay", "%s: %zu samples; a recording needs at least 2", path, table.n_rows);
        goto cleanup;
    }
    if (!allocate(recording, table.n_rows)) {
        goto cleanup;
    }
    recording->has_labels = label_column >= 0;

    for (size_t r = 0; r < table.n_rows; r++) {
        const double *row = table.values + r * (size_t)table.n_columns;
        for (int c = 0; c < table.n_columns; c++) {
            if (!isfinite(row[c])) {
                report_row(path, r, 1, "invalid value: expected a finite number");
                goto cleanup;
            }
        }

        recording->t[r] = row[t_column];
        if (r > 0 && !(recording->t[r] > recording->t[r - 1])) {
            report_row(path, r, 1,
                       "time 't' does not increase; expected strictly increasing times");
            goto cleanup;
        }
        for (int i = 0; i < 3; i++) {
            recording->acc[r * 3 + (size_t)i] = (float)row[columns[i]];
            recording->gyro[r * 3 + (size_t)i] = (float)row[columns[3 + i]];
        }
        if (label_column >= 0) {
            double label = row[label_column];
            if (label != floor(label) || label < 0 || label > REPLAY_MAX_ACTIVITY) {
                report_row(path, r, 1,
                           "invalid label: expected a HAPT activity id from 0 (unlabelled) to 12");
                goto cleanup;
            }
            recording->labels[r] = (int)label;
        }
    }

    /* Ten significant digits turn the mean spacing of times written with a few decimals back
     * into the nominal rate (50 rather than 49.999999999999993). */
    double duration = recording->t[recording->n_samples - 1] - recording->t[0];
    char rate[32];
    snprintf(rate, sizeof rate, "%.10g", (double)(recording->n_samples - 1) / duration);
    recording->rate_hz = strtod(rate, NULL);
    segments_from_labels(recording);
    ok = 1;

cleanup:
    cli_table_free(&table);
    if (!ok) {
        replay_recording_free(recording);
    }
    return ok;
}

/* Reads one sensor file of three whitespace-separated columns. */
static int read_sensor(const char *path, cli_table *table)
{
    if (!cli_table_read("replay", path, table)) {
        return 0;
    }
    if (table->names != NULL || table->n_columns != 3) {
        cli_error("replay", "%s:1: expected 3 numeric columns (x y z) without a header", path);
        cli_table_free(table);
        return 0;
    }
    for (size_t i = 0; i < table->n_rows * 3; i++) {
        if (!isfinite(table->values[i])) {
            report_row(path, i / 3, 0, "invalid value: expected a finite number");
            cli_table_free(table);
            return 0;
        }
    }
    return 1;
}

/* Takes experiment and user from a name of the form acc_expXX_userYY.txt. */
static int parse_hapt_name(const char *path, int *experiment, int *user)
{
    const char *name = strrchr(path, '/');
    name = name != NULL ? name + 1 : path;
    char rest[8];
    return sscanf(name, "acc_exp%d_user%d%7s", experiment, user, rest) == 3 &&
           strcmp(rest, ".txt") == 0;
}

/* Applies the rows of labels.txt that belong to this experiment and user. */
static int apply_hapt_labels(const char *path, int experiment, int user,
                             replay_recording *recording)
{
    cli_table table;
    if (!cli_table_read("replay", path, &table)) {
        return 0;
    }
    int ok = 0;
    if (table.names != NULL || table.n_columns != 5) {
        cli_error("replay", "%s:1: expected 5 integer columns: experiment user activity start end",
                  path);
        goto cleanup;
    }

    int segment = 0;
    for (size_t r = 0; r < table.n_rows; r++) {
        const double *row = table.values + r * 5;
        for (int c = 0; c < 5; c++) {
            if (row[c] != floor(row[c]) || fabs(row[c]) > 1e12) {
                report_row(path, r, 0, "invalid value: expected integers");
                goto cleanup;
            }
        }
        if ((int)row[0] != experiment || (int)row[1] != user) {
            continue;
        }

        long activity = (long)row[2];
        long start = (long)row[3];
        long end = (long)row[4];
        if (activity < 1 || activity > REPLAY_MAX_ACTIVITY) {
            report_row(path, r, 0, "invalid activity: expected an id from 1 to 12");
            goto cleanup;
        }
        if (start < 1 || end < start || (size_t)end > recording->n_samples) {
            char message[160];
            snprintf(message, sizeof message,
                     "segment %ld-%ld lies outside the recording's %zu samples (1-based, "
                     "inclusive)",
                     start, end, recording->n_samples);
            report_row(path, r, 0, message);
            goto cleanup;
        }
        for (long i = start - 1; i < end; i++) {
            if (recording->segments[i] >= 0) {
                report_row(path, r, 0, "segment overlaps an earlier segment");
                goto cleanup;
            }
            recording->labels[i] = (int)activity;
            recording->segments[i] = segment;
        }
        segment++;
    }
    if (segment == 0) {
        cli_error("replay", "%s: no segment of experiment %d, user %d", path, experiment, user);
        goto cleanup;
    }
    recording->has_labels = 1;
    ok = 1;

cleanup:
    cli_table_free(&table);
    return ok;
}

int replay_recording_read_hapt(const char *acc_path, const char *gyro_path, const char *labels_path,
                               replay_recording *recording)
{
    memset(recording, 0, sizeof *recording);
    int experiment = 0;
    int user = 0;
    if (labels_path != NULL && !parse_hapt_name(acc_path, &experiment, &user)) {
        cli_error("replay",
                  "%s: cannot take experiment and user from the file name; expected "
                  "acc_expXX_userYY.txt to select the rows of %s",
                  acc_path, labels_path);
        return 0;
    }

    cli_table acc;
    cli_table gyro;
    if (!read_sensor(acc_path, &acc)) {
        return 0;
    }
    if (!read_sensor(gyro_path, &gyro)) {
        cli_table_free(&acc);
        return 0;
    }

    int ok = 0;
    if (acc.n_rows != gyro.n_rows) {
        cli_error("replay", "%s has %zu rows but %s has %zu; expected one row per sample in both",
                  acc_path, acc.n_rows, gyro_path, gyro.n_rows);
        goto cleanup;
    }
    if (acc.n_rows < 2) {
        cli_error("replay", "%s: %zu samples; a recording needs at least 2", acc_path, acc.n_rows);
        goto cleanup;
    }
    if (!allocate(recording, acc.n_rows)) {
        goto cleanup;
    }
    for (size_t i = 0; i < acc.n_rows; i++) {
        recording->t[i] = (double)i / REPLAY_HAPT_RATE_HZ;
    }
    for (size_t i = 0; i < acc.n_rows * 3; i++) {
        recording->acc[i] = (float)acc.values[i];
        recording->gyro[i] = (float)gyro.values[i];
    }
    recording->rate_hz = REPLAY_HAPT_RATE_HZ;
    if (labels_path != NULL && !apply_hapt_labels(labels_path, experiment, user, recording)) {
        goto cleanup;
    }
    ok = 1;

cleanup:
    cli_table_free(&acc);
    cli_table_free(&gyro);
    if (!ok) {
        replay_recording_free(recording);
    }
    return ok;
}

void replay_recording_free(replay_recording *recording)
{
    free(recording->t);
    free(recording->acc);
    free(recording->gyro);
    free(recording->labels);
    free(recording->segments);
    memset(recording, 0, sizeof *recording);
}
