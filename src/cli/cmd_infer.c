/*
 * `babymamba infer MODEL FILE`: cut a CSV or text file into windows and classify each.
 *
 * Two kinds of input are understood. A file whose columns are the model's channels (named in a
 * header, or exactly n_channels unnamed columns) is cut into windows of window_length rows every
 * hop rows and normalised with the model's statistics. A file with columns acc_x acc_y acc_z
 * gyro_x gyro_y gyro_z, for a model whose preprocessing is hapt-causal-v1, runs through the
 * library's stream preprocessing first, exactly as babymambad does.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/infer.h"
#include "babymamba/stream.h"
#include "cli_common.h"
#include "commands.h"
#include "table_reader.h"

static const char *const usage =
    "usage: babymamba infer MODEL FILE [--jsonl] [--hop N] [--normalized]\n"
    "\n"
    "Classifies the windows of FILE (CSV or whitespace-separated text, '-' for standard\n"
    "input) and prints one line per window.\n"
    "  FILE columns  the model's channels (by header name, or exactly as many unnamed\n"
    "                columns as channels), or acc_x acc_y acc_z gyro_x gyro_y gyro_z (g and\n"
    "                rad/s at the model's rate) for models with hapt-causal-v1 preprocessing\n"
    "  --jsonl       print one JSON object per window instead of a table\n"
    "  --hop N       samples between windows (default: the model's hop)\n"
    "  --normalized  channel values are already normalised; skip the model's mean and std\n";

typedef struct infer_options {
    const char *model_path;
    const char *input_path;
    int jsonl;
    long hop;
    int normalized;
} infer_options;

static const char *const imu_columns[6] = {"acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y",
                                           "gyro_z"};

/* Returns the width of class k's probability column: its name, and at least "0.0000". */
static int probability_width(const bm_model *model, int k)
{
    int length = (int)strlen(bm_model_class_name(model, k));
    return length > 6 ? length : 6;
}

/* Prints one window as a JSON object; jansson escapes class names, which come from the model
 * file and may contain any character. */
static void print_window_json(const bm_model *model, long index, size_t first_row,
                              size_t last_row, const float *probabilities, int best)
{
    const bm_model_info *m = bm_model_get_info(model);
    json_t *all = json_object();
    for (int k = 0; k < m->n_classes; k++) {
        json_object_set_new(all, bm_model_class_name(model, k),
                            json_real(round((double)probabilities[k] * 1e6) / 1e6));
    }
    json_t *row = json_pack("{s:I, s:I, s:I, s:s, s:i, s:f, s:o}", "window", (json_int_t)index,
                            "first_row", (json_int_t)first_row, "last_row", (json_int_t)last_row,
                            "class", bm_model_class_name(model, best), "index", best,
                            "confidence", round((double)probabilities[best] * 1e6) / 1e6,
                            "probabilities", all);
    char *text = row != NULL ? json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7)) : NULL;
    if (text != NULL) {
        puts(text);
    }
    free(text);
    json_decref(row);
}

static void print_window(const bm_model *model, long index, size_t first_row, size_t last_row,
                         const float *probabilities, int best, int jsonl)
{
    const bm_model_info *m = bm_model_get_info(model);
    if (jsonl) {
        print_window_json(model, index, first_row, last_row, probabilities, best);
        return;
    }

    printf("%6ld %8zu %8zu  %-20s %.4f ", index, first_row, last_row,
           bm_model_class_name(model, best), (double)probabilities[best]);
    for (int k = 0; k < m->n_classes; k++) {
        printf(" %*.4f", probability_width(model, k), (double)probabilities[k]);
    }
    printf("\n");
}

static void print_header(const bm_model *model, int jsonl)
{
    if (jsonl) {
        return;
    }
    const bm_model_info *m = bm_model_get_info(model);
    printf("%6s %8s %8s  %-20s %-6s ", "window", "first", "last", "class", "conf");
    for (int k = 0; k < m->n_classes; k++) {
        printf(" %*s", probability_width(model, k), bm_model_class_name(model, k));
    }
    printf("\n");
}

/* Maps the model's channels to table columns: by name when the table has a header, where every
 * channel must be present, or in order when it has none and exactly n_channels columns. A header
 * with a misspelt name is an error, because reading its columns by position would silently feed
 * the wrong channel. Returns 0 when the table does not fit. */
static int map_channels(const bm_model *model, const cli_table *table, int *columns)
{
    const bm_model_info *m = bm_model_get_info(model);
    if (table->names != NULL) {
        for (int c = 0; c < m->n_channels; c++) {
            columns[c] = cli_table_column(table, bm_model_channel_name(model, c));
            if (columns[c] < 0) {
                cli_error("infer", "the header has no column '%s', a channel of the model",
                          bm_model_channel_name(model, c));
                return 0;
            }
        }
        return 1;
    }
    if (table->n_columns != m->n_channels) {
        return 0;
    }
    for (int c = 0; c < m->n_channels; c++) {
        columns[c] = c;
    }
    return 1;
}

static int map_imu(const bm_model *model, const cli_table *table, int *columns)
{
    if (strcmp(bm_model_preprocessing(model), BM_PREPROCESSING_HAPT) != 0) {
        return 0;
    }
    for (int i = 0; i < 6; i++) {
        columns[i] = cli_table_column(table, imu_columns[i]);
        if (columns[i] < 0) {
            return 0;
        }
    }
    return 1;
}

/* Runs windows through the model, feeding the rows of the table into a stream, which applies
 * the model's preprocessing (imu mode) or passes channels through (channel mode). */
static int classify(const infer_options *options, const bm_model *model, const cli_table *table,
                    const int *columns, int imu)
{
    const bm_model_info *m = bm_model_get_info(model);
    bm_stream_config config;
    bm_stream_config_from_model(model, &config);
    config.hop = (int)options->hop;
    if (!imu) {
        config.preprocessing = BM_PREPROCESSING_NONE;
    }

    bm_error error;
    bm_error_clear(&error);
    bm_stream *stream = NULL;
    bm_ctx *ctx = NULL;
    size_t n_values = (size_t)m->window_length * m->n_channels;
    float *window = malloc(n_values * sizeof *window);
    float *logits = malloc((size_t)m->n_classes * sizeof *logits);
    float *probabilities = malloc((size_t)m->n_classes * sizeof *probabilities);
    float *sample = malloc((size_t)m->n_channels * sizeof *sample);
    int status = CLI_EXIT_FAILURE;

    if (window == NULL || logits == NULL || probabilities == NULL || sample == NULL) {
        cli_error("infer", "out of memory");
        goto cleanup;
    }
    if (bm_stream_create(&config, &stream, &error) != BM_OK ||
        bm_ctx_create(model, &ctx, &error) != BM_OK) {
        cli_report("infer", options->model_path, &error);
        goto cleanup;
    }

    long index = 0;
    for (size_t r = 0; r < table->n_rows; r++) {
        const double *row = table->values + r * (size_t)table->n_columns;
        int ready;
        if (imu) {
            float acc[3], gyro[3];
            for (int i = 0; i < 3; i++) {
                acc[i] = (float)row[columns[i]];
                gyro[i] = (float)row[columns[3 + i]];
            }
            ready = bm_stream_push_imu(stream, acc, gyro);
        } else {
            for (int c = 0; c < m->n_channels; c++) {
                sample[c] = (float)row[columns[c]];
            }
            ready = bm_stream_push_channels(stream, sample);
        }
        if (ready < 0) {
            cli_error("infer", "%s: data row %zu: a value is NaN or infinite; expected finite "
                      "numbers",
                      options->input_path, r + 1);
            goto cleanup;
        }
        if (!ready) {
            continue;
        }

        if (index == 0) {
            print_header(model, options->jsonl);
        }
        bm_stream_copy_window(stream, window, !options->normalized);
        if (bm_ctx_run(ctx, window, logits, NULL, &error) != BM_OK) {
            cli_error("infer", "%s: window %ld (rows %zu-%zu): %s", options->input_path, index,
                      r + 1 - (size_t)m->window_length, r, error.message);
            goto cleanup;
        }
        int best = bm_softmax(logits, m->n_classes, probabilities);
        print_window(model, index, r + 1 - (size_t)m->window_length, r, probabilities, best,
                     options->jsonl);
        index++;
    }

    if (index == 0) {
        cli_error("infer", "%s: %zu rows make no window of %d samples", options->input_path,
                  table->n_rows, m->window_length);
        goto cleanup;
    }
    status = CLI_EXIT_OK;

cleanup:
    bm_ctx_destroy(ctx);
    bm_stream_destroy(stream);
    free(sample);
    free(probabilities);
    free(logits);
    free(window);
    return status;
}

static int parse_options(int argc, char **argv, infer_options *options)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (cli_is_help(arg)) {
            fputs(usage, stdout);
            exit(CLI_EXIT_OK);
        } else if (strcmp(arg, "--jsonl") == 0 || strcmp(arg, "--json") == 0) {
            options->jsonl = 1;
        } else if (strcmp(arg, "--normalized") == 0) {
            options->normalized = 1;
        } else if (strcmp(arg, "--hop") == 0) {
            if (i + 1 >= argc) {
                cli_error("infer", "option '--hop' needs a value");
                return 0;
            }
            if (!cli_parse_int("infer", "--hop", argv[++i], 1, 1 << 20, &options->hop)) {
                return 0;
            }
        } else if (arg[0] == '-' && arg[1] != '\0') {
            cli_error("infer", "unknown option '%s'", arg);
            return 0;
        } else if (options->model_path == NULL) {
            options->model_path = arg;
        } else if (options->input_path == NULL) {
            options->input_path = arg;
        } else {
            cli_error("infer", "unexpected argument '%s'", arg);
            return 0;
        }
    }
    if (options->model_path == NULL || options->input_path == NULL) {
        cli_error("infer", "MODEL and FILE are required");
        return 0;
    }
    return 1;
}

int cmd_infer(int argc, char **argv)
{
    infer_options options = {0};
    if (!parse_options(argc, argv, &options)) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }

    bm_model *model = cli_load_model("infer", options.model_path);
    if (model == NULL) {
        return CLI_EXIT_FAILURE;
    }
    const bm_model_info *m = bm_model_get_info(model);
    if (options.hop == 0) {
        options.hop = m->hop;
    }

    cli_table table;
    int status = CLI_EXIT_FAILURE;
    int *columns = malloc((size_t)(m->n_channels > 6 ? m->n_channels : 6) * sizeof *columns);
    if (columns == NULL || !cli_table_read("infer", options.input_path, &table)) {
        free(columns);
        bm_model_destroy(model);
        return CLI_EXIT_FAILURE;
    }

    if (map_imu(model, &table, columns)) {
        status = classify(&options, model, &table, columns, 1);
    } else if (map_channels(model, &table, columns)) {
        status = classify(&options, model, &table, columns, 0);
    } else if (table.names == NULL) {
        cli_error("infer",
                  "%s: %d columns do not match the model: expected its %d channels (by header "
                  "name or as exactly %d columns)%s",
                  options.input_path, table.n_columns, m->n_channels, m->n_channels,
                  strcmp(bm_model_preprocessing(model), BM_PREPROCESSING_HAPT) == 0
                      ? ", or columns acc_x acc_y acc_z gyro_x gyro_y gyro_z"
                      : "");
    }

    cli_table_free(&table);
    free(columns);
    bm_model_destroy(model);
    return status;
}
