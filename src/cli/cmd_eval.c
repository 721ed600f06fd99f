/*
 * `babymamba eval MODEL DATAFILE`: classifies the windows of a data file written by
 * `babymamba prepare` and prints accuracy, macro-F1, per-class precision, recall and F1, and
 * the confusion matrix, as a table or as JSON.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/infer.h"
#include "babymamba/model.h"
#include "cli_common.h"
#include "commands.h"
#include "metrics.h"
#include "safetensors.h"

/* Maximum number of user ids that --users accepts. */
#define MAX_USERS 1024

static const char *const usage =
    "usage: babymamba eval MODEL DATAFILE [--json] [--users LIST] [--predictions FILE]\n"
    "\n"
    "Classifies every window of DATAFILE, a data file written by 'babymamba prepare', with\n"
    "MODEL after normalising it with the model's mean and std, and prints accuracy, macro-F1,\n"
    "per-class precision, recall and F1, and the confusion matrix. The data file's\n"
    "preprocessing, sample rate, window length, channels and classes must match the model's.\n"
    "\n"
    "  --json              print one JSON object instead of tables\n"
    "  --users LIST        score only the windows of these users, a comma-separated list such\n"
    "                      as 2,4,9,10,12,13,18,20,24 (the UCI-HAR test users); default: all\n"
    "  --predictions FILE  write a CSV line 'index,user,label,predicted' per scored window,\n"
    "                      where index counts the data file's windows from 0 and label and\n"
    "                      predicted are class indices\n";

typedef struct eval_options {
    const char *model_path;
    const char *data_path;
    const char *predictions_path;
    int json;
    int users[MAX_USERS];
    int n_users; /* 0 selects every window */
} eval_options;

/* The tensors of a data file, borrowed from the open file. */
typedef struct eval_data {
    int64_t n_windows;
    const float *windows;
    const int32_t *labels;
    const int32_t *users;
} eval_data;

/* Parses "2,4,9" into options->users. Returns 1 on success. */
static int parse_users(const char *text, eval_options *options)
{
    const char *cursor = text;
    options->n_users = 0;

    while (*cursor != '\0') {
        char *end = NULL;
        errno = 0;
        const long user = strtol(cursor, &end, 10);
        if (end == cursor || errno != 0 || user < 0 || user > 1000000 ||
            (*end != ',' && *end != '\0') || options->n_users == MAX_USERS) {
            cli_error("eval",
                      "invalid value '%s' for --users: expected up to %d comma-separated user "
                      "ids such as 2,4,9",
                      text, MAX_USERS);
            return 0;
        }
        options->users[options->n_users++] = (int)user;
        cursor = *end == ',' ? end + 1 : end;
    }
    if (options->n_users == 0) {
        cli_error("eval", "--users needs at least one user id");
        return 0;
    }
    return 1;
}

/* Parses the arguments after "eval". Returns -1 to go on, or the exit status. */
static int parse_arguments(int argc, char **argv, eval_options *options)
{
    for (int i = 1; i < argc; i++) {
        const char *argument = argv[i];
        if (cli_is_help(argument)) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argument, "--json") == 0) {
            options->json = 1;
        } else if (strcmp(argument, "--users") == 0 || strcmp(argument, "--predictions") == 0) {
            if (i + 1 >= argc) {
                cli_error("eval", "missing value for %s", argument);
                return CLI_EXIT_USAGE;
            }
            const char *value = argv[++i];
            if (strcmp(argument, "--predictions") == 0) {
                options->predictions_path = value;
            } else if (!parse_users(value, options)) {
                return CLI_EXIT_USAGE;
            }
        } else if (argument[0] == '-') {
            cli_error("eval", "unknown option '%s'", argument);
            return CLI_EXIT_USAGE;
        } else if (options->model_path == NULL) {
            options->model_path = argument;
        } else if (options->data_path == NULL) {
            options->data_path = argument;
        } else {
            cli_error("eval", "unexpected argument '%s'", argument);
            return CLI_EXIT_USAGE;
        }
    }

    if (options->model_path == NULL || options->data_path == NULL) {
        cli_error("eval", "MODEL and DATAFILE are required");
        return CLI_EXIT_USAGE;
    }
    return -1;
}

/* Finds a tensor of the expected dtype and rank, printing an error naming it otherwise. */
static const bm_st_tensor *find_tensor(const bm_st_file *file, const char *path, const char *name,
                                       bm_st_dtype dtype, int n_dims)
{
    const bm_st_tensor *tensor = bm_st_find(file, name);
    if (tensor == NULL) {
        cli_error("eval", "%s: tensor '%s' is missing; is this a 'babymamba prepare' data file?",
                  path, name);
        return NULL;
    }
    if (tensor->dtype != dtype || tensor->n_dims != n_dims) {
        char shape[128];
        bm_st_format_shape(tensor->shape, tensor->n_dims, shape, sizeof shape);
        cli_error("eval", "%s: tensor '%s' is %s %s, expected %s with %d dimensions", path, name,
                  bm_st_dtype_name(tensor->dtype), shape, bm_st_dtype_name(dtype), n_dims);
        return NULL;
    }
    return tensor;
}

/* Compares a JSON array of names (strings, or objects with a "name") with the model's. */
static int check_names(const char *path, const char *what, json_t *names, int count,
                       const bm_model *model,
                       const char *(*model_name)(const bm_model *model, int index))
{
    if (!json_is_array(names) || (int)json_array_size(names) != count) {
        cli_error("eval", "%s: the data file has %d %s, the model %d", path,
                  json_is_array(names) ? (int)json_array_size(names) : 0, what, count);
        return 0;
    }
    for (int i = 0; i < count; i++) {
        json_t *entry = json_array_get(names, (size_t)i);
        const char *name = json_is_object(entry) ? json_string_value(json_object_get(entry, "name"))
                                                 : json_string_value(entry);
        const char *expected = model_name(model, i);
        if (name == NULL || strcmp(name, expected) != 0) {
            cli_error("eval", "%s: %s %d is '%s' in the data file but '%s' in the model", path,
                      what, i, name != NULL ? name : "?", expected);
            return 0;
        }
    }
    return 1;
}

/* Checks the data file's metadata against the model's input specification. */
static int check_metadata(const char *path, json_t *metadata, const bm_model *model)
{
    const bm_model_info *info = bm_model_get_info(model);
    const char *format = json_string_value(json_object_get(metadata, "format"));
    json_t *version = json_object_get(metadata, "format_version");
    if (format == NULL || strcmp(format, "babymamba-dataset") != 0 || !json_is_integer(version) ||
        json_integer_value(version) != 1) {
        cli_error("eval", "%s: expected a babymamba-dataset data file of format_version 1", path);
        return 0;
    }

    const char *preprocessing = json_string_value(json_object_get(metadata, "preprocessing"));
    if (preprocessing == NULL || strcmp(preprocessing, bm_model_preprocessing(model)) != 0) {
        cli_error("eval",
                  "%s: the data file's preprocessing '%s' differs from the model's '%s', so its "
                  "channels are not what the model was trained on",
                  path, preprocessing != NULL ? preprocessing : "?", bm_model_preprocessing(model));
        return 0;
    }

    const double rate = json_number_value(json_object_get(metadata, "sample_rate_hz"));
    if (fabs(rate - info->sample_rate_hz) > 1e-9 * info->sample_rate_hz) {
        cli_error("eval", "%s: the data file is sampled at %g Hz, the model expects %g Hz", path,
                  rate, info->sample_rate_hz);
        return 0;
    }

    json_t *length = json_object_get(metadata, "window_length");
    if (!json_is_integer(length) || json_integer_value(length) != info->window_length) {
        cli_error("eval", "%s: the data file's window_length is %lld, the model expects %d", path,
                  (long long)json_integer_value(length), info->window_length);
        return 0;
    }

    return check_names(path, "channels", json_object_get(metadata, "channels"), info->n_channels,
                       model, bm_model_channel_name) &&
           check_names(path, "classes", json_object_get(metadata, "classes"), info->n_classes,
                       model, bm_model_class_name);
}

/* Checks the tensors of the data file and fills data with views of them. */
static int load_tensors(const char *path, const bm_st_file *file, const bm_model *model,
                        eval_data *data)
{
    const bm_model_info *info = bm_model_get_info(model);
    const bm_st_tensor *windows = find_tensor(file, path, "windows", BM_ST_F32, 3);
    const bm_st_tensor *labels = find_tensor(file, path, "labels", BM_ST_I32, 1);
    const bm_st_tensor *users = find_tensor(file, path, "users", BM_ST_I32, 1);
    if (windows == NULL || labels == NULL || users == NULL) {
        return 0;
    }

    const int64_t n = windows->shape[0];
    if (windows->shape[1] != info->window_length || windows->shape[2] != info->n_channels ||
        labels->shape[0] != n || users->shape[0] != n) {
        cli_error("eval",
                  "%s: windows [%lld, %lld, %lld], labels [%lld] and users [%lld] do not fit "
                  "%d samples x %d channels per window",
                  path, (long long)n, (long long)windows->shape[1], (long long)windows->shape[2],
                  (long long)labels->shape[0], (long long)users->shape[0], info->window_length,
                  info->n_channels);
        return 0;
    }

    data->n_windows = n;
    data->windows = windows->data;
    data->labels = labels->data;
    data->users = users->data;
    for (int64_t i = 0; i < n; i++) {
        if (data->labels[i] < 0 || data->labels[i] >= info->n_classes) {
            cli_error("eval", "%s: window %lld has label %d, expected 0 to %d", path, (long long)i,
                      data->labels[i], info->n_classes - 1);
            return 0;
        }
    }
    return 1;
}

static int is_selected(const eval_options *options, int user)
{
    if (options->n_users == 0) {
        return 1;
    }
    for (int i = 0; i < options->n_users; i++) {
        if (options->users[i] == user) {
            return 1;
        }
    }
    return 0;
}

/* Classifies the selected windows into metrics, and writes predictions when requested. */
static int classify(const eval_options *options, const bm_model *model, const eval_data *data,
                    bm__metrics *metrics)
{
    const bm_model_info *info = bm_model_get_info(model);
    const size_t window_values = (size_t)info->window_length * (size_t)info->n_channels;
    int status = 0;
    FILE *predictions = NULL;
    bm_ctx *ctx = NULL;
    bm_error error;
    bm_error_clear(&error);

    float *window = malloc(window_values * sizeof *window);
    float *logits = malloc((size_t)info->n_classes * sizeof *logits);
    float *probabilities = malloc((size_t)info->n_classes * sizeof *probabilities);
    if (window == NULL || logits == NULL || probabilities == NULL) {
        cli_error("eval", "out of memory for a window of %zu values", window_values);
        goto done;
    }
    if (bm_ctx_create(model, &ctx, &error) != BM_OK) {
        cli_report("eval", options->model_path, &error);
        goto done;
    }
    if (options->predictions_path != NULL) {
        predictions = fopen(options->predictions_path, "w");
        if (predictions == NULL) {
            cli_error("eval", "%s: cannot create: %s", options->predictions_path, strerror(errno));
            goto done;
        }
        fprintf(predictions, "index,user,label,predicted\n");
    }

    for (int64_t i = 0; i < data->n_windows; i++) {
        if (!is_selected(options, data->users[i])) {
            continue;
        }
        memcpy(window, data->windows + (size_t)i * window_values, window_values * sizeof *window);
        bm_model_normalize(model, window);
        if (bm_ctx_run(ctx, window, logits, probabilities, &error) != BM_OK) {
            cli_error("eval", "%s: window %lld: %s", options->data_path, (long long)i,
                      error.message);
            goto done;
        }
        const int predicted = bm_softmax(logits, info->n_classes, probabilities);
        bm__metrics_add(metrics, data->labels[i], predicted);
        if (predictions != NULL) {
            fprintf(predictions, "%lld,%d,%d,%d\n", (long long)i, data->users[i], data->labels[i],
                    predicted);
        }
    }
    status = 1;

done:
    if (predictions != NULL && (fclose(predictions) != 0) && status) {
        cli_error("eval", "%s: write failed: %s", options->predictions_path, strerror(errno));
        status = 0;
    }
    bm_ctx_destroy(ctx);
    free(probabilities);
    free(logits);
    free(window);
    return status;
}

static void print_table(const eval_options *options, const bm_model *model,
                        const bm__metrics *metrics)
{
    const int n_classes = bm__metrics_class_count(metrics);

    printf("model      %s %s (%s)\n", bm_model_name(model), bm_model_version(model),
           options->model_path);
    printf("data       %s, %lld windows", options->data_path,
           (long long)bm__metrics_total(metrics));
    if (options->n_users > 0) {
        printf(" of users");
        for (int i = 0; i < options->n_users; i++) {
            printf("%s%d", i ? "," : " ", options->users[i]);
        }
    }
    printf("\naccuracy   %.4f\nmacro-F1   %.4f\n\n", bm__metrics_accuracy(metrics),
           bm__metrics_macro_f1(metrics));

    printf("%-3s %-20s %9s %9s %9s %9s\n", "", "class", "precision", "recall", "f1", "support");
    for (int k = 0; k < n_classes; k++) {
        bm__class_scores scores;
        bm__metrics_class_scores(metrics, k, &scores);
        printf("%-3d %-20s %9.4f %9.4f %9.4f %9lld\n", k, bm_model_class_name(model, k),
               scores.precision, scores.recall, scores.f1, (long long)scores.support);
    }

    printf("\nconfusion matrix (rows: true class, columns: predicted class)\n%-24s", "");
    for (int k = 0; k < n_classes; k++) {
        printf(" %7d", k);
    }
    printf("\n");
    for (int label = 0; label < n_classes; label++) {
        printf("%-3d %-20s", label, bm_model_class_name(model, label));
        for (int predicted = 0; predicted < n_classes; predicted++) {
            printf(" %7lld", (long long)bm__metrics_count(metrics, label, predicted));
        }
        printf("\n");
    }
}

static int print_json(const eval_options *options, const bm_model *model,
                      const bm__metrics *metrics)
{
    const int n_classes = bm__metrics_class_count(metrics);
    json_t *classes = json_array();
    json_t *confusion = json_array();
    json_t *users = options->n_users > 0 ? json_array() : json_null();

    for (int k = 0; k < n_classes; k++) {
        bm__class_scores scores;
        bm__metrics_class_scores(metrics, k, &scores);
        json_array_append_new(classes, json_pack("{s:s, s:f, s:f, s:f, s:I}", "name",
                                                 bm_model_class_name(model, k), "precision",
                                                 scores.precision, "recall", scores.recall, "f1",
                                                 scores.f1, "support", (json_int_t)scores.support));

        json_t *row = json_array();
        for (int predicted = 0; predicted < n_classes; predicted++) {
            json_array_append_new(row, json_integer(bm__metrics_count(metrics, k, predicted)));
        }
        json_array_append_new(confusion, row);
    }
    for (int i = 0; i < options->n_users; i++) {
        json_array_append_new(users, json_integer(options->users[i]));
    }

    json_t *root = json_pack(
        "{s:{s:s, s:s, s:s, s:s}, s:s, s:o, s:I, s:f, s:f, s:o, s:o}", "model", "path",
        options->model_path, "name", bm_model_name(model), "version", bm_model_version(model),
        "sha256", bm_model_sha256(model), "data", options->data_path, "users", users, "n_windows",
        (json_int_t)bm__metrics_total(metrics), "accuracy", bm__metrics_accuracy(metrics),
        "macro_f1", bm__metrics_macro_f1(metrics), "classes", classes, "confusion", confusion);
    char *text = root != NULL ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (text == NULL) {
        cli_error("eval", "cannot build the JSON output");
        return CLI_EXIT_FAILURE;
    }
    printf("%s\n", text);
    free(text);
    return CLI_EXIT_OK;
}

int cmd_eval(int argc, char **argv)
{
    eval_options options = {0};
    const int parsed = parse_arguments(argc, argv, &options);
    if (parsed == CLI_EXIT_USAGE) {
        fputs(usage, stderr);
    }
    if (parsed >= 0) {
        return parsed;
    }

    int status = CLI_EXIT_FAILURE;
    bm_st_file *file = NULL;
    json_t *metadata = NULL;
    bm__metrics *metrics = NULL;
    bm_error error;
    bm_error_clear(&error);

    bm_model *model = cli_load_model("eval", options.model_path);
    if (model == NULL) {
        return CLI_EXIT_FAILURE;
    }
    if (bm_st_open(options.data_path, &file, &error) != BM_OK) {
        cli_report("eval", options.data_path, &error);
        goto done;
    }

    const char *text = bm_st_metadata(file, "babymamba");
    json_error_t json_error;
    metadata = text != NULL ? json_loads(text, 0, &json_error) : NULL;
    if (!json_is_object(metadata)) {
        cli_error("eval", "%s: __metadata__.babymamba is missing or not a JSON object",
                  options.data_path);
        goto done;
    }
    eval_data data;
    if (!check_metadata(options.data_path, metadata, model) ||
        !load_tensors(options.data_path, file, model, &data)) {
        goto done;
    }

    if (bm__metrics_create(bm_model_get_info(model)->n_classes, &metrics, &error) != BM_OK) {
        cli_report("eval", options.model_path, &error);
        goto done;
    }
    if (!classify(&options, model, &data, metrics)) {
        goto done;
    }
    if (bm__metrics_total(metrics) == 0) {
        cli_error("eval", "%s: no window belongs to the users given with --users",
                  options.data_path);
        goto done;
    }

    if (options.json) {
        status = print_json(&options, model, metrics);
    } else {
        print_table(&options, model, metrics);
        status = CLI_EXIT_OK;
    }

done:
    bm__metrics_destroy(metrics);
    json_decref(metadata);
    bm_st_close(file);
    bm_model_destroy(model);
    return status;
}
