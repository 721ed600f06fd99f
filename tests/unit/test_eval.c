/*
 * Tests of `babymamba eval` through the real binary. A golden model is rewritten to expect
 * hapt-causal-v1 input, a small data file of random windows is written next to it, and the
 * command's predictions, metrics and confusion matrix are compared with the engine's own
 * results. Data files that do not fit the model must be rejected.
 *
 * Needs BM_CLI (the babymamba binary) and BM_GOLDEN_DIR, which tests/meson.build sets.
 */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "babymamba/infer.h"
#include "babymamba/model.h"
#include "babymamba/stream.h"
#include "hapt.h"
#include "safetensors.h"
#include "st_writer.h"

#define N_WINDOWS 24
#define LENGTH    128

static char directory[64];
static char model_path[128];
static char data_path[128];

static const char *const class_names[6] = {"walking", "walking_upstairs", "walking_downstairs",
                                           "sitting", "standing",         "laying"};

/* Copies a golden model to model_path with the given preprocessing, the channel names of
 * hapt-causal-v1 and the HAPT class names. */
static void write_hapt_model(const char *preprocessing)
{
    const char *golden = getenv("BM_GOLDEN_DIR");
    ck_assert_ptr_nonnull(golden);
    char source[512];
    snprintf(source, sizeof source, "%s/cx_published.safetensors", golden);

    bm_st_file *file = NULL;
    bm_error error;
    ck_assert_int_eq(bm_st_open(source, &file, &error), BM_OK);
    json_t *metadata = json_loads(bm_st_metadata(file, "babymamba"), 0, NULL);
    ck_assert_ptr_nonnull(metadata);

    json_t *input = json_object_get(metadata, "input");
    json_object_set_new(input, "preprocessing", json_string(preprocessing));
    json_t *channels = json_object_get(input, "channels");
    for (int c = 0; c < 9; c++) {
        json_t *channel = json_array_get(channels, (size_t)c);
        json_object_set_new(channel, "name",
                            json_string(bm_preprocessing_channel_name(BM_PREPROCESSING_HAPT, c)));
        json_object_set_new(channel, "unit",
                            json_string(bm_preprocessing_channel_unit(BM_PREPROCESSING_HAPT, c)));
    }
    json_t *classes = json_object_get(metadata, "classes");
    for (int k = 0; k < 6; k++) {
        json_array_set_new(classes, (size_t)k, json_string(class_names[k]));
    }
    char *text = json_dumps(metadata, JSON_COMPACT);

    bm_st_writer *writer = NULL;
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_set_metadata(writer, "babymamba", text, &error), BM_OK);
    for (int i = 0; i < bm_st_tensor_count(file); i++) {
        const bm_st_tensor *tensor = bm_st_tensor_at(file, i);
        ck_assert_int_eq(bm_st_writer_add_tensor(writer, tensor->name, tensor->dtype,
                                                 tensor->n_dims, tensor->shape, tensor->data,
                                                 &error),
                         BM_OK);
    }
    ck_assert_int_eq(bm_st_writer_write(writer, model_path, &error), BM_OK);

    bm_st_writer_destroy(writer);
    free(text);
    json_decref(metadata);
    bm_st_close(file);
}

/* Writes N_WINDOWS random windows of users 1 to 4 with labels cycling through the classes. */
static void write_data(int window_length)
{
    static float windows[N_WINDOWS * LENGTH * 9];
    static int32_t labels[N_WINDOWS];
    static int32_t users[N_WINDOWS];
    static int32_t experiments[N_WINDOWS];
    static int64_t starts[N_WINDOWS];

    srand(7);
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        windows[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    }
    for (int i = 0; i < N_WINDOWS; i++) {
        labels[i] = i % 6;
        users[i] = 1 + i % 4;
        experiments[i] = 1;
        starts[i] = 64 * i;
    }

    bm__hapt_dataset dataset = {
        .window_length = window_length,
        .hop = window_length / 2,
        .alignment = BM__HAPT_ALIGN_SEGMENT,
        .n_windows = N_WINDOWS,
        .windows = windows,
        .labels = labels,
        .users = users,
        .experiments = experiments,
        .starts = starts,
    };
    bm_error error;
    ck_assert_int_eq(bm__hapt_write(&dataset, data_path, &error), BM_OK);
}

/* Classifies window index of the data written by write_data with the engine directly. */
static int engine_prediction(const bm_model *model, bm_ctx *ctx, const bm_st_file *data, int index)
{
    const bm_st_tensor *windows = bm_st_find(data, "windows");
    float window[LENGTH * 9];
    float logits[6];
    bm_error error;

    memcpy(window, (const float *)windows->data + (size_t)index * LENGTH * 9, sizeof window);
    bm_model_normalize(model, window);
    ck_assert_int_eq(bm_ctx_run(ctx, window, logits, NULL, &error), BM_OK);
    float probabilities[6];
    return bm_softmax(logits, 6, probabilities);
}

static void setup(void)
{
    snprintf(directory, sizeof directory, "/tmp/bm_eval_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(directory));
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", directory);
    snprintf(data_path, sizeof data_path, "%s/data.safetensors", directory);
}

static void teardown(void)
{
    DIR *dir = opendir(directory);
    if (dir == NULL) {
        return;
    }
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (entry->d_name[0] != '.') {
            char path[sizeof directory + 300];
            snprintf(path, sizeof path, "%s/%s", directory, entry->d_name);
            unlink(path);
        }
    }
    closedir(dir);
    rmdir(directory);
}

/* Runs the binary with arguments, sends its output to output_path and returns its exit status. */
static int run_eval(const char *arguments, const char *output_path)
{
    char command[1024];
    snprintf(command, sizeof command, "'%s' eval %s >'%s' 2>&1", getenv("BM_CLI"), arguments,
             output_path);
    return system(command);
}

static char *read_text(const char *path)
{
    FILE *file = fopen(path, "r");
    ck_assert_ptr_nonnull(file);
    static char text[65536];
    const size_t length = fread(text, 1, sizeof text - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

START_TEST(eval_matches_engine_predictions)
{
    write_hapt_model(BM_PREPROCESSING_HAPT);
    write_data(LENGTH);

    char predictions_path[160];
    char output_path[160];
    char arguments[600];
    snprintf(predictions_path, sizeof predictions_path, "%s/predictions.csv", directory);
    snprintf(output_path, sizeof output_path, "%s/output.json", directory);
    snprintf(arguments, sizeof arguments, "'%s' '%s' --json --users 2,4 --predictions '%s'",
             model_path, data_path, predictions_path);
    ck_assert_int_eq(run_eval(arguments, output_path), 0);

    bm_model *model = NULL;
    bm_ctx *ctx = NULL;
    bm_st_file *data = NULL;
    bm_error error;
    ck_assert_int_eq(bm_model_load(model_path, &model, &error), BM_OK);
    ck_assert_int_eq(bm_ctx_create(model, &ctx, &error), BM_OK);
    ck_assert_int_eq(bm_st_open(data_path, &data, &error), BM_OK);

    /* Users 2 and 4 own windows 1, 3, 5, ..., so 12 lines follow the header. */
    FILE *predictions = fopen(predictions_path, "r");
    ck_assert_ptr_nonnull(predictions);
    char line[128];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, predictions));
    ck_assert_str_eq(line, "index,user,label,predicted\n");
    int64_t confusion[6][6] = {{0}};
    int lines = 0;
    int correct = 0;
    int index, user, label, predicted;
    while (fscanf(predictions, "%d,%d,%d,%d\n", &index, &user, &label, &predicted) == 4) {
        ck_assert_int_eq(index, 2 * lines + 1);
        ck_assert_int_eq(user, 1 + index % 4);
        ck_assert_int_eq(label, index % 6);
        ck_assert_int_eq(predicted, engine_prediction(model, ctx, data, index));
        confusion[label][predicted]++;
        correct += label == predicted;
        lines++;
    }
    fclose(predictions);
    ck_assert_int_eq(lines, 12);

    json_error_t json_error;
    json_t *root = json_loads(read_text(output_path), 0, &json_error);
    ck_assert_msg(root != NULL, "output is not JSON: %s", json_error.text);
    ck_assert_int_eq(json_integer_value(json_object_get(root, "n_windows")), 12);
    ck_assert_double_eq_tol(json_number_value(json_object_get(root, "accuracy")),
                            (double)correct / 12.0, 1e-12);
    json_t *users = json_object_get(root, "users");
    ck_assert_int_eq(json_array_size(users), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(users, 1)), 4);
    json_t *classes = json_object_get(root, "classes");
    ck_assert_int_eq(json_array_size(classes), 6);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(classes, 3), "name")),
                     "sitting");
    json_t *matrix = json_object_get(root, "confusion");
    for (int t = 0; t < 6; t++) {
        for (int p = 0; p < 6; p++) {
            ck_assert_int_eq(json_integer_value(json_array_get(json_array_get(matrix, t), p)),
                             confusion[t][p]);
        }
    }

    json_decref(root);
    bm_st_close(data);
    bm_ctx_destroy(ctx);
    bm_model_destroy(model);
}
END_TEST

START_TEST(eval_prints_tables)
{
    write_hapt_model(BM_PREPROCESSING_HAPT);
    write_data(LENGTH);

    char output_path[160];
    char arguments[600];
    snprintf(output_path, sizeof output_path, "%s/output.txt", directory);
    snprintf(arguments, sizeof arguments, "'%s' '%s'", model_path, data_path);
    ck_assert_int_eq(run_eval(arguments, output_path), 0);

    const char *text = read_text(output_path);
    ck_assert_ptr_nonnull(strstr(text, ", 24 windows\n"));
    ck_assert_ptr_nonnull(strstr(text, "accuracy   "));
    ck_assert_ptr_nonnull(strstr(text, "macro-F1   "));
    ck_assert_ptr_nonnull(strstr(text, "walking_downstairs"));
    ck_assert_ptr_nonnull(strstr(text, "confusion matrix (rows: true class"));
}
END_TEST

START_TEST(eval_rejects_mismatched_data)
{
    char output_path[160];
    char arguments[600];
    snprintf(output_path, sizeof output_path, "%s/output.txt", directory);
    snprintf(arguments, sizeof arguments, "'%s' '%s'", model_path, data_path);

    /* A model that expects channels supplied by the sender. */
    write_hapt_model(BM_PREPROCESSING_NONE);
    write_data(LENGTH);
    ck_assert_int_ne(run_eval(arguments, output_path), 0);
    ck_assert_ptr_nonnull(strstr(read_text(output_path), "preprocessing 'hapt-causal-v1' differs"));

    /* Windows of 64 samples for a model of 128. */
    write_hapt_model(BM_PREPROCESSING_HAPT);
    write_data(LENGTH / 2);
    ck_assert_int_ne(run_eval(arguments, output_path), 0);
    ck_assert_ptr_nonnull(strstr(read_text(output_path), "window_length is 64"));

    /* Users that own no window. */
    write_data(LENGTH);
    snprintf(arguments, sizeof arguments, "'%s' '%s' --users 99", model_path, data_path);
    ck_assert_int_ne(run_eval(arguments, output_path), 0);
    ck_assert_ptr_nonnull(strstr(read_text(output_path), "no window belongs"));

    /* A malformed user list and a missing data file. */
    snprintf(arguments, sizeof arguments, "'%s' '%s' --users 2,x", model_path, data_path);
    ck_assert_int_ne(run_eval(arguments, output_path), 0);
    ck_assert_ptr_nonnull(strstr(read_text(output_path), "invalid value '2,x' for --users"));
    snprintf(arguments, sizeof arguments, "'%s' '%s/missing.safetensors'", model_path, directory);
    ck_assert_int_ne(run_eval(arguments, output_path), 0);
    ck_assert_ptr_nonnull(strstr(read_text(output_path), "missing.safetensors"));
}
END_TEST

static Suite *eval_suite(void)
{
    Suite *suite = suite_create("eval");
    TCase *cases = tcase_create("eval");
    tcase_add_checked_fixture(cases, setup, teardown);
    tcase_add_test(cases, eval_matches_engine_predictions);
    tcase_add_test(cases, eval_prints_tables);
    tcase_add_test(cases, eval_rejects_mismatched_data);
    suite_add_tcase(suite, cases);
    return suite;
}

int main(void)
{
    if (getenv("BM_CLI") == NULL || getenv("BM_GOLDEN_DIR") == NULL) {
        fprintf(stderr, "test_eval: BM_CLI and BM_GOLDEN_DIR must be set\n");
        return 77;
    }
    SRunner *runner = srunner_create(eval_suite());
    srunner_run_all(runner, CK_NORMAL);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
