/*
 * `babymamba prepare --hapt DIR --out FILE`: builds a labelled window data file from the raw
 * HAPT recordings with the library's hapt-causal-v1 stream, and prints the windows per class
 * and split.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli_common.h"
#include "commands.h"
#include "hapt.h"

static const char *const usage =
    "usage: babymamba prepare --hapt DIR --out FILE [--window N] [--hop N] [--rate HZ]\n"
    "                         [--align segment|stream]\n"
    "\n"
    "Reads the raw HAPT recordings in DIR/RawData (acc_expXX_userYY.txt, gyro_expXX_userYY.txt\n"
    "and labels.txt), runs each experiment through a fresh hapt-causal-v1 stream and writes the\n"
    "labelled windows to FILE as a safetensors data file: windows F32 [N, L, 9] (unnormalised),\n"
    "labels I32 [N] (activity - 1), users I32 [N], experiments I32 [N] and starts I64 [N]\n"
    "(0-based first row of each window in its experiment).\n"
    "\n"
    "A window is kept only when all its L rows lie inside one labelled segment of activity 1-6\n"
    "(walking ... laying). Windows that touch a postural transition (activities 7-12), an\n"
    "unlabelled row or a second segment are dropped.\n"
    "\n"
    "  --hapt DIR     folder of the HAPT data set, containing RawData/\n"
    "  --out FILE     data file to write; replaced atomically\n"
    "  --window N     window length L in samples (default 128, 2.56 s at 50 Hz)\n"
    "  --hop N        samples between window starts (default 64)\n"
    "  --rate HZ      sample rate of the windows; only 50, the rate of the recordings, is\n"
    "                 supported because prepare does not resample (default 50)\n"
    "  --align MODE   segment: windows start at each segment's first row and every hop rows\n"
    "                 after it (default). stream: windows lie on the hop grid of a stream\n"
    "                 that starts at the experiment's first row, as the daemon cuts them\n"
    "\n"
    "The summary counts the test users of the standard UCI-HAR split (2 4 9 10 12 13 18 20 24)\n"
    "as 'test' and everyone else as 'train'.\n";

/* Prints the windows per class and split. */
static void print_summary(const bm__hapt_dataset *dataset)
{
    int64_t counts[BM__HAPT_N_CLASSES][2] = {{0}};
    for (int64_t i = 0; i < dataset->n_windows; i++) {
        counts[dataset->labels[i]][bm__hapt_is_test_user(dataset->users[i])]++;
    }

    int64_t totals[2] = {0, 0};
    printf("%-20s %8s %8s %8s\n", "class", "train", "test", "total");
    for (int k = 0; k < BM__HAPT_N_CLASSES; k++) {
        printf("%-20s %8lld %8lld %8lld\n", bm__hapt_class_name(k), (long long)counts[k][0],
               (long long)counts[k][1], (long long)(counts[k][0] + counts[k][1]));
        totals[0] += counts[k][0];
        totals[1] += counts[k][1];
    }
    printf("%-20s %8lld %8lld %8lld\n", "total", (long long)totals[0], (long long)totals[1],
           (long long)(totals[0] + totals[1]));
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

/* Parses the arguments after "prepare". Returns CLI_EXIT_OK to go on, or the exit status. */
static int parse_arguments(int argc, char **argv, const char **directory, const char **out,
                           bm__hapt_options *options, int *help)
{
    long window = 128;
    long hop = 64;
    double rate = BM__HAPT_SAMPLE_RATE_HZ;
    options->alignment = BM__HAPT_ALIGN_SEGMENT;

    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (cli_is_help(option)) {
            *help = 1;
            return CLI_EXIT_OK;
        }
        if (option[0] != '-') {
            cli_error("prepare", "unexpected argument '%s'", option);
            return CLI_EXIT_USAGE;
        }
        if (i + 1 >= argc) {
            cli_error("prepare", "missing value for %s", option);
            return CLI_EXIT_USAGE;
        }

        const char *value = argv[++i];
        if (strcmp(option, "--hapt") == 0) {
            *directory = value;
        } else if (strcmp(option, "--out") == 0) {
            *out = value;
        } else if (strcmp(option, "--window") == 0) {
            if (!cli_parse_int("prepare", option, value, 1, 1000000, &window)) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(option, "--hop") == 0) {
            if (!cli_parse_int("prepare", option, value, 1, 1000000, &hop)) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(option, "--rate") == 0) {
            if (!cli_parse_double("prepare", option, value, 0.0, 1e6, &rate)) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(option, "--align") == 0) {
            if (strcmp(value, "segment") == 0) {
                options->alignment = BM__HAPT_ALIGN_SEGMENT;
            } else if (strcmp(value, "stream") == 0) {
                options->alignment = BM__HAPT_ALIGN_STREAM;
            } else {
                cli_error("prepare", "invalid value '%s' for --align: expected segment or stream",
                          value);
                return CLI_EXIT_USAGE;
            }
        } else {
            cli_error("prepare", "unknown option '%s'", option);
            return CLI_EXIT_USAGE;
        }
    }

    if (*directory == NULL || *out == NULL) {
        cli_error("prepare", "--hapt DIR and --out FILE are required");
        return CLI_EXIT_USAGE;
    }
    /* TODO: other rates need the recordings resampled before the stream, as the daemon does
     * for senders at other rates. */
    if (rate != BM__HAPT_SAMPLE_RATE_HZ) {
        cli_error("prepare",
                  "--rate %g is not supported: the HAPT recordings are sampled at %g Hz and "
                  "prepare does not resample, so use --rate %g",
                  rate, BM__HAPT_SAMPLE_RATE_HZ, BM__HAPT_SAMPLE_RATE_HZ);
        return CLI_EXIT_USAGE;
    }
    options->window_length = (int)window;
    options->hop = (int)hop;
    return CLI_EXIT_OK;
}

int cmd_prepare(int argc, char **argv)
{
    const char *directory = NULL;
    const char *out = NULL;
    bm__hapt_options options;
    int help = 0;

    int status = parse_arguments(argc, argv, &directory, &out, &options, &help);
    if (help) {
        fputs(usage, stdout);
        return CLI_EXIT_OK;
    }
    if (status != CLI_EXIT_OK) {
        fputs(usage, stderr);
        return status;
    }

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);

    bm__hapt_dataset *dataset = NULL;
    bm_error error;
    bm_error_clear(&error);
    if (bm__hapt_build(directory, &options, &dataset, &error) != BM_OK) {
        cli_error("prepare", "%s", error.message);
        return CLI_EXIT_FAILURE;
    }
    if (bm__hapt_write(dataset, out, &error) != BM_OK) {
        cli_error("prepare", "%s", error.message);
        bm__hapt_destroy(dataset);
        return CLI_EXIT_FAILURE;
    }

    printf("read %d experiments, %lld rows per sensor, from %s\n", dataset->n_experiments,
           (long long)dataset->n_rows, directory);
    printf("wrote %lld windows of %d samples x 9 channels at %g Hz (hop %d, %s alignment) to "
           "%s in %.1f s\n\n",
           (long long)dataset->n_windows, dataset->window_length, BM__HAPT_SAMPLE_RATE_HZ,
           dataset->hop, bm__hapt_alignment_name(dataset->alignment), out, seconds_since(&start));
    print_summary(dataset);

    bm__hapt_destroy(dataset);
    return CLI_EXIT_OK;
}
