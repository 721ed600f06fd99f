/*
 * Unit tests of the HAPT data set builder and `babymamba prepare`. Each test writes a tiny
 * HAPT-format folder into a temporary directory. Window starts, labels, users and channel rows
 * are checked exactly for both alignments, and every kind of bad input must fail with a message
 * that names the file and line.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "babymamba/stream.h"
#include "hapt.h"
#include "safetensors.h"

#define WINDOW 8
#define HOP    4

/* Temporary HAPT folder of the running test. */
static char root[64];

/* Rows of the generated experiments. Experiment 3 has no labels. */
static const int experiment_rows[3] = {60, 40, 10};
static const int experiment_users[3] = {2, 5, 7};

/*
 * Segments as 1-based inclusive rows, which the expected windows below follow from with
 * L = 8 and hop = 4:
 *   experiment 1: walking 1-20, stand-to-sit 21-25, sitting 26-40, unlabelled 41-45,
 *                 laying 46-60
 *   experiment 2: walking_downstairs 1-10 and again 11-30, unlabelled 31-40
 */
static const char labels_text[] = "1 2 1 1 20\n"
                                  "1 2 7 21 25\n"
                                  "1 2 4 26 40\n"
                                  "1 2 6 46 60\n"
                                  "2 5 3 1 10\n"
                                  "2 5 3 11 30\n";

typedef struct expected_window {
    int experiment;
    int64_t start; /* 0-based */
    int label;
} expected_window;

/* Segment alignment: starts at each segment's first row, then every hop rows. */
static const expected_window segment_windows[] = {
    {1, 0, 0},  {1, 4, 0}, {1, 8, 0},  {1, 12, 0}, {1, 25, 3}, {1, 29, 3}, {1, 45, 5},
    {1, 49, 5}, {2, 0, 2}, {2, 10, 2}, {2, 14, 2}, {2, 18, 2}, {2, 22, 2},
};

/* Stream alignment: starts on the grid 0, 4, 8, ... of each experiment. Rows 4-11 of
 * experiment 2 span two segments of the same activity and are dropped. */
static const expected_window stream_windows[] = {
    {1, 0, 0},  {1, 4, 0},  {1, 8, 0}, {1, 12, 0}, {1, 28, 3}, {1, 32, 3},
    {1, 48, 5}, {1, 52, 5}, {2, 0, 2}, {2, 12, 2}, {2, 16, 2}, {2, 20, 2},
};

/* Generated sensor values, distinct per experiment, row and axis, and exact in float. */
static float acc_value(int experiment, int row, int axis)
{
    return (float)(0.01 * experiment + 0.001 * row) + (axis == 2 ? 1.0f : 0.1f * (float)axis);
}

static float gyro_value(int experiment, int row, int axis)
{
    return (float)(-0.5 * experiment + 0.002 * row - 0.25 * axis);
}

static void write_text(const char *name, const char *text)
{
    char path[160];
    snprintf(path, sizeof path, "%s/RawData/%s", root, name);
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    fputs(text, file);
    fclose(file);
}

/* Writes a sensor file of the generated values with the given number of rows. */
static void write_sensor(const char *kind, int experiment, int rows)
{
    char path[160];
    snprintf(path, sizeof path, "%s/RawData/%s_exp%02d_user%02d.txt", root, kind, experiment,
             experiment_users[experiment - 1]);
    FILE *file = fopen(path, "w");
    ck_assert_ptr_nonnull(file);
    for (int row = 0; row < rows; row++) {
        for (int axis = 0; axis < 3; axis++) {
            const float value = strcmp(kind, "acc") == 0 ? acc_value(experiment, row, axis)
                                                         : gyro_value(experiment, row, axis);
            fprintf(file, "%s%.9g", axis ? " " : "", (double)value);
        }
        fputc('\n', file);
    }
    fclose(file);
}

static void make_folder(void)
{
    snprintf(root, sizeof root, "/tmp/bm_hapt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
    char raw[96];
    snprintf(raw, sizeof raw, "%s/RawData", root);
    ck_assert_int_eq(mkdir(raw, 0755), 0);

    for (int e = 1; e <= 3; e++) {
        write_sensor("acc", e, experiment_rows[e - 1]);
        write_sensor("gyro", e, experiment_rows[e - 1]);
    }
    write_text("labels.txt", labels_text);
}

static void remove_folder(void)
{
    const char *const subdirectories[] = {"/RawData", ""};
    for (int d = 0; d < 2; d++) {
        char path[96];
        snprintf(path, sizeof path, "%s%s", root, subdirectories[d]);
        DIR *dir = opendir(path);
        if (dir == NULL) {
            continue;
        }
        for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
            if (entry->d_name[0] != '.' && strcmp(entry->d_name, "RawData") != 0) {
                char file[400];
                snprintf(file, sizeof file, "%s/%s", path, entry->d_name);
                unlink(file);
            }
        }
        closedir(dir);
        rmdir(path);
    }
}

static bm_status build(bm__hapt_alignment alignment, bm__hapt_dataset **dataset, bm_error *error)
{
    const bm__hapt_options options = {.window_length = WINDOW, .hop = HOP, .alignment = alignment};
    bm_error_clear(error);
    return bm__hapt_build(root, &options, dataset, error);
}

/* Checks every window of a data set against the expected list and the generated rows. */
static void check_windows(const bm__hapt_dataset *dataset, const expected_window *expected,
                          int n_expected)
{
    ck_assert_int_eq(dataset->n_windows, n_expected);
    ck_assert_int_eq(dataset->n_experiments, 3);
    ck_assert_int_eq(dataset->n_rows, 60 + 40 + 10);

    for (int i = 0; i < n_expected; i++) {
        const int experiment = expected[i].experiment;
        ck_assert_int_eq(dataset->experiments[i], experiment);
        ck_assert_int_eq(dataset->starts[i], expected[i].start);
        ck_assert_int_eq(dataset->labels[i], expected[i].label);
        ck_assert_int_eq(dataset->users[i], experiment_users[experiment - 1]);

        /* total_acc and body_gyro are the raw rows, so they show the window's exact rows. */
        const float *window = dataset->windows + (size_t)i * WINDOW * 9;
        for (int t = 0; t < WINDOW; t++) {
            const int row = (int)expected[i].start + t;
            for (int axis = 0; axis < 3; axis++) {
                ck_assert_float_eq(window[t * 9 + 3 + axis], gyro_value(experiment, row, axis));
                ck_assert_float_eq(window[t * 9 + 6 + axis], acc_value(experiment, row, axis));
            }
        }
    }
}

START_TEST(hapt_segment_alignment_windows)
{
    make_folder();
    bm__hapt_dataset *dataset = NULL;
    bm_error error;
    ck_assert_int_eq(build(BM__HAPT_ALIGN_SEGMENT, &dataset, &error), BM_OK);
    check_windows(dataset, segment_windows, sizeof segment_windows / sizeof segment_windows[0]);
    bm__hapt_destroy(dataset);
    remove_folder();
}
END_TEST

START_TEST(hapt_stream_alignment_windows)
{
    make_folder();
    bm__hapt_dataset *dataset = NULL;
    bm_error error;
    ck_assert_int_eq(build(BM__HAPT_ALIGN_STREAM, &dataset, &error), BM_OK);
    check_windows(dataset, stream_windows, sizeof stream_windows / sizeof stream_windows[0]);
    bm__hapt_destroy(dataset);
    remove_folder();
}
END_TEST

START_TEST(hapt_body_acc_matches_stream)
{
    make_folder();
    bm__hapt_dataset *dataset = NULL;
    bm_error error;
    ck_assert_int_eq(build(BM__HAPT_ALIGN_SEGMENT, &dataset, &error), BM_OK);

    /* A stream that receives experiment 1 from its first row must produce, at every kept
     * window's last row, exactly the window in the data set, body acceleration included. */
    const bm_stream_config config = {.preprocessing = BM_PREPROCESSING_HAPT,
                                     .sample_rate_hz = 50.0,
                                     .n_channels = 9,
                                     .window_length = WINDOW,
                                     .hop = 1};
    bm_stream *stream = NULL;
    ck_assert_int_eq(bm_stream_create(&config, &stream, &error), BM_OK);
    float window[WINDOW * 9];
    int checked = 0;
    for (int row = 0; row < experiment_rows[0]; row++) {
        float acc[3];
        float gyro[3];
        for (int axis = 0; axis < 3; axis++) {
            acc[axis] = acc_value(1, row, axis);
            gyro[axis] = gyro_value(1, row, axis);
        }
        bm_stream_push_imu(stream, acc, gyro);
        for (int i = 0; i < dataset->n_windows; i++) {
            if (dataset->experiments[i] == 1 && dataset->starts[i] + WINDOW - 1 == row) {
                bm_stream_copy_window(stream, window, 0);
                ck_assert_mem_eq(window, dataset->windows + (size_t)i * WINDOW * 9, sizeof window);
                checked++;
            }
        }
    }
    ck_assert_int_eq(checked, 8);
    bm_stream_destroy(stream);
    bm__hapt_destroy(dataset);
    remove_folder();
}
END_TEST

START_TEST(hapt_data_file_layout)
{
    make_folder();
    bm__hapt_dataset *dataset = NULL;
    bm_error error;
    ck_assert_int_eq(build(BM__HAPT_ALIGN_SEGMENT, &dataset, &error), BM_OK);
    char path[96];
    snprintf(path, sizeof path, "%s/data.safetensors", root);
    ck_assert_int_eq(bm__hapt_write(dataset, path, &error), BM_OK);

    bm_st_file *file = NULL;
    ck_assert_int_eq(bm_st_open(path, &file, &error), BM_OK);
    const int64_t n = dataset->n_windows;

    const bm_st_tensor *windows = bm_st_find(file, "windows");
    ck_assert_ptr_nonnull(windows);
    ck_assert_int_eq(windows->dtype, BM_ST_F32);
    ck_assert_int_eq(windows->n_dims, 3);
    ck_assert_int_eq(windows->shape[0], n);
    ck_assert_int_eq(windows->shape[1], WINDOW);
    ck_assert_int_eq(windows->shape[2], 9);
    ck_assert_mem_eq(windows->data, dataset->windows, (size_t)n * WINDOW * 9 * sizeof(float));

    static const struct {
        const char *name;
        bm_st_dtype dtype;
    } vectors[] = {{"labels", BM_ST_I32},
                   {"users", BM_ST_I32},
                   {"experiments", BM_ST_I32},
                   {"starts", BM_ST_I64}};
    for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
        const bm_st_tensor *tensor = bm_st_find(file, vectors[v].name);
        ck_assert_ptr_nonnull(tensor);
        ck_assert_int_eq(tensor->dtype, vectors[v].dtype);
        ck_assert_int_eq(tensor->n_dims, 1);
        ck_assert_int_eq(tensor->shape[0], n);
    }
    ck_assert_mem_eq(bm_st_find(file, "labels")->data, dataset->labels, (size_t)n * 4);
    ck_assert_mem_eq(bm_st_find(file, "starts")->data, dataset->starts, (size_t)n * 8);

    const char *text = bm_st_metadata(file, "babymamba");
    ck_assert_ptr_nonnull(text);
    json_t *metadata = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(metadata);
    ck_assert_str_eq(json_string_value(json_object_get(metadata, "format")), "babymamba-dataset");
    ck_assert_int_eq(json_integer_value(json_object_get(metadata, "format_version")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(metadata, "preprocessing")),
                     BM_PREPROCESSING_HAPT);
    ck_assert_double_eq(json_number_value(json_object_get(metadata, "sample_rate_hz")), 50.0);
    ck_assert_int_eq(json_integer_value(json_object_get(metadata, "window_length")), WINDOW);
    ck_assert_int_eq(json_integer_value(json_object_get(metadata, "hop")), HOP);
    ck_assert_str_eq(json_string_value(json_object_get(metadata, "alignment")), "segment");

    json_t *channels = json_object_get(metadata, "channels");
    ck_assert_int_eq(json_array_size(channels), 9);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(channels, 0), "name")),
                     "body_acc_x");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(channels, 5), "unit")),
                     "rad/s");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(channels, 8), "name")),
                     "total_acc_z");
    json_t *classes = json_object_get(metadata, "classes");
    ck_assert_int_eq(json_array_size(classes), 6);
    ck_assert_str_eq(json_string_value(json_array_get(classes, 0)), "walking");
    ck_assert_str_eq(json_string_value(json_array_get(classes, 5)), "laying");
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(metadata, "source")), "CC BY 4.0"));

    json_decref(metadata);
    bm_st_close(file);
    bm__hapt_destroy(dataset);
    remove_folder();
}
END_TEST

/* Builds the data set from the current folder and checks that it fails as expected. */
static void expect_failure(bm_status expected_status, const char *expected_text)
{
    bm__hapt_dataset *dataset = NULL;
    bm_error error;
    ck_assert_int_eq(build(BM__HAPT_ALIGN_SEGMENT, &dataset, &error), expected_status);
    ck_assert_ptr_null(dataset);
    ck_assert_msg(strstr(error.message, expected_text) != NULL, "message '%s' lacks '%s'",
                  error.message, expected_text);
}

START_TEST(hapt_rejects_missing_folder)
{
    make_folder();
    char raw[96];
    snprintf(raw, sizeof raw, "%s/RawData", root);
    remove_folder();
    expect_failure(BM_ERR_IO, raw);
}
END_TEST

START_TEST(hapt_rejects_missing_labels)
{
    make_folder();
    char path[96];
    snprintf(path, sizeof path, "%s/RawData/labels.txt", root);
    unlink(path);
    expect_failure(BM_ERR_IO, "labels.txt");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_missing_gyro_file)
{
    make_folder();
    char path[96];
    snprintf(path, sizeof path, "%s/RawData/gyro_exp02_user05.txt", root);
    unlink(path);
    expect_failure(BM_ERR_IO, "gyro_exp02_user05.txt");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_malformed_sensor_row)
{
    make_folder();
    write_text("acc_exp01_user02.txt", "0.1 0.2 0.3\n0.1 0.2 0.3\n0.1 0.2 0.3\n0.1 0.2 0.3\n"
                                       "0.1 0.2 0.3\n0.1 0.2 0.3\n0.1 0.2\n");
    expect_failure(BM_ERR_FORMAT, "acc_exp01_user02.txt:7:");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_non_finite_value)
{
    make_folder();
    write_text("gyro_exp03_user07.txt", "0 0 0\n0 nan 0\n");
    expect_failure(BM_ERR_FORMAT, "gyro_exp03_user07.txt:2:");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_row_count_mismatch)
{
    make_folder();
    write_sensor("gyro", 2, 39);
    expect_failure(BM_ERR_FORMAT, "gyro_exp02_user05.txt has 39 rows but");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_malformed_label_line)
{
    make_folder();
    write_text("labels.txt", "1 2 1 1 20\n1 2 7 21\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:2:");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_bad_label_values)
{
    make_folder();
    write_text("labels.txt", "1 2 13 1 20\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:1: activity 13");
    write_text("labels.txt", "1 2 1 0 20\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:1: rows 0 to 20");
    write_text("labels.txt", "1 2 1 30 20\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:1: rows 30 to 20");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_segment_past_end)
{
    make_folder();
    write_text("labels.txt", "1 2 1 1 20\n2 5 3 11 41\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:2: segment ends at row 41");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_overlapping_segments)
{
    make_folder();
    write_text("labels.txt", "1 2 1 1 20\n1 2 4 20 40\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:2: rows 20 to 40 of experiment 1 overlap");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_wrong_user)
{
    make_folder();
    write_text("labels.txt", "1 3 1 1 20\n");
    expect_failure(BM_ERR_FORMAT, "labels.txt:1: experiment 1 is user 3");
    remove_folder();
}
END_TEST

START_TEST(hapt_rejects_unknown_experiment)
{
    make_folder();
    write_text("labels.txt", "1 2 1 1 20\n9 4 1 1 20\n");
    expect_failure(BM_ERR_IO, "labels.txt:2: experiment 9 has no recording");
    remove_folder();
}
END_TEST

/* Runs a shell command and returns its standard output, or NULL when it exits non-zero. */
static char *run_command(const char *command)
{
    FILE *pipe = popen(command, "r");
    ck_assert_ptr_nonnull(pipe);
    static char output[8192];
    const size_t length = fread(output, 1, sizeof output - 1, pipe);
    output[length] = '\0';
    return pclose(pipe) == 0 ? output : NULL;
}

START_TEST(prepare_command_summary)
{
    const char *cli = getenv("BM_CLI");
    if (cli == NULL) {
        return;
    }
    make_folder();
    char command[512];

    snprintf(command, sizeof command,
             "'%s' prepare --hapt '%s' --out '%s/out.safetensors' "
             "--window 8 --hop 4",
             cli, root, root);
    const char *output = run_command(command);
    ck_assert_ptr_nonnull(output);
    ck_assert_ptr_nonnull(strstr(output, "wrote 13 windows of 8 samples x 9 channels"));
    char total_line[128];
    snprintf(total_line, sizeof total_line, "%-20s %8d %8d %8d", "total", 5, 8, 13);
    ck_assert_msg(strstr(output, total_line) != NULL, "summary lacks '%s': %s", total_line, output);

    snprintf(command, sizeof command,
             "'%s' prepare --hapt '%s' --out '%s/out.safetensors' --window 8 --hop 4 "
             "--align stream",
             cli, root, root);
    output = run_command(command);
    ck_assert_ptr_nonnull(output);
    ck_assert_ptr_nonnull(strstr(output, "wrote 12 windows"));

    snprintf(command, sizeof command,
             "'%s' prepare --hapt '%s' --out '%s/x.safetensors' --rate 25 2>&1", cli, root, root);
    ck_assert_ptr_null(run_command(command));
    snprintf(command, sizeof command, "'%s' prepare --hapt '%s' 2>&1", cli, root);
    ck_assert_ptr_null(run_command(command));
    snprintf(command, sizeof command, "'%s' prepare --help", cli);
    output = run_command(command);
    ck_assert_ptr_nonnull(output);
    ck_assert_ptr_nonnull(strstr(output, "inside one labelled segment of activity 1-6"));
    remove_folder();
}
END_TEST

static Suite *hapt_suite(void)
{
    Suite *suite = suite_create("hapt");

    TCase *windows = tcase_create("windows");
    tcase_add_test(windows, hapt_segment_alignment_windows);
    tcase_add_test(windows, hapt_stream_alignment_windows);
    tcase_add_test(windows, hapt_body_acc_matches_stream);
    tcase_add_test(windows, hapt_data_file_layout);
    tcase_add_test(windows, prepare_command_summary);
    suite_add_tcase(suite, windows);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, hapt_rejects_missing_folder);
    tcase_add_test(errors, hapt_rejects_missing_labels);
    tcase_add_test(errors, hapt_rejects_missing_gyro_file);
    tcase_add_test(errors, hapt_rejects_malformed_sensor_row);
    tcase_add_test(errors, hapt_rejects_non_finite_value);
    tcase_add_test(errors, hapt_rejects_row_count_mismatch);
    tcase_add_test(errors, hapt_rejects_malformed_label_line);
    tcase_add_test(errors, hapt_rejects_bad_label_values);
    tcase_add_test(errors, hapt_rejects_segment_past_end);
    tcase_add_test(errors, hapt_rejects_overlapping_segments);
    tcase_add_test(errors, hapt_rejects_wrong_user);
    tcase_add_test(errors, hapt_rejects_unknown_experiment);
    suite_add_tcase(suite, errors);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(hapt_suite());
    srunner_run_all(runner, CK_NORMAL);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
