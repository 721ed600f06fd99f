/*
 * `babymamba bench MODEL`: latency and throughput of the engine on random normalised input.
 *
 * Every thread owns one inference context, as a server would, and times each window with the
 * monotonic clock. The single-threaded run gives the latency of one device's window; the run with N
 * threads gives the throughput of the machine.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "babymamba/infer.h"
#include "cli_common.h"
#include "commands.h"

static const char *const usage =
    "usage: babymamba bench MODEL [--windows N] [--warmup N] [--threads N] [--json]\n"
    "\n"
    "Times inference on random input: median and p99 microseconds per window and windows per\n"
    "second, single-threaded and with N threads (each with its own context).\n"
    "  --windows N  timed windows per thread (default 2000)\n"
    "  --warmup N   untimed windows per thread first (default 100)\n"
    "  --threads N  threads of the parallel run (default: online CPUs)\n"
    "  --json       print one JSON object\n";

typedef struct bench_thread {
    const bm_model *model;
    long windows;
    long warmup;
    unsigned seed;
    double *latencies_us; /* [windows] */
    int failed;
    char message[BM_ERROR_MESSAGE_SIZE];
} bench_thread;

typedef struct bench_result {
    double median_us;
    double p99_us;
    double windows_per_second;
} bench_result;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A small xorshift generator, so threads need no shared state for their input. */
static float next_gaussianish(unsigned *state)
{
    float sum = 0.0f;
    for (int i = 0; i < 4; i++) {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        sum += (float)(*state & 0xffffff) / (float)0x1000000;
    }
    return (sum - 2.0f) * 1.7f;
}

static void *run_thread(void *argument)
{
    bench_thread *job = argument;
    const bm_model_info *m = bm_model_get_info(job->model);
    size_t n_values = (size_t)m->window_length * m->n_channels;
    float *window = malloc(n_values * sizeof *window);
    float *logits = malloc((size_t)m->n_classes * sizeof *logits);
    bm_ctx *ctx = NULL;
    bm_error error;
    bm_error_clear(&error);

    if (window == NULL || logits == NULL || bm_ctx_create(job->model, &ctx, &error) != BM_OK) {
        job->failed = 1;
        snprintf(job->message, sizeof job->message, "%s",
                 error.message[0] ? error.message : "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n_values; i++) {
        window[i] = next_gaussianish(&job->seed);
    }

    for (long i = 0; i < job->warmup + job->windows; i++) {
        double start = now_seconds();
        if (bm_ctx_run(ctx, window, logits, NULL, &error) != BM_OK) {
            job->failed = 1;
            snprintf(job->message, sizeof job->message, "%s", error.message);
            break;
        }
        double elapsed = now_seconds() - start;
        if (i >= job->warmup) {
            job->latencies_us[i - job->warmup] = elapsed * 1e6;
        }
        /* Perturb one value so successive windows differ, as live ones do. */
        window[(size_t)i % n_values] = next_gaussianish(&job->seed);
    }

cleanup:
    bm_ctx_destroy(ctx);
    free(logits);
    free(window);
    return NULL;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Returns the median of n sorted values: the middle one, or the mean of the two middle ones. */
static double median_of_sorted(const double *sorted, size_t n)
{
    if (n % 2 == 1) {
        return sorted[n / 2];
    }
    return 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

/* Returns the nearest-rank percentile of n sorted values: the smallest value with at least a
 * fraction q of all values at or below it. */
static double nearest_rank(const double *sorted, size_t n, double q)
{
    size_t rank = (size_t)ceil(q * (double)n);
    return sorted[rank > 0 ? rank - 1 : 0];
}

/* Runs n_threads threads and summarises all their latencies. */
static int run_bench(const bm_model *model, int n_threads, long windows, long warmup,
                     bench_result *result)
{
    bench_thread *jobs = calloc((size_t)n_threads, sizeof *jobs);
    pthread_t *threads = calloc((size_t)n_threads, sizeof *threads);
    double *latencies = malloc((size_t)n_threads * (size_t)windows * sizeof *latencies);
    int ok = jobs != NULL && threads != NULL && latencies != NULL;
    int started = 0;

    double start = now_seconds();
    for (int t = 0; ok && t < n_threads; t++) {
        jobs[t] = (bench_thread){.model = model,
                                 .windows = windows,
                                 .warmup = warmup,
                                 .seed = 2463534242u + 7919u * (unsigned)t,
                                 .latencies_us = latencies + (size_t)t * (size_t)windows};
        if (pthread_create(&threads[t], NULL, run_thread, &jobs[t]) != 0) {
            cli_error("bench", "cannot start thread %d of %d", t + 1, n_threads);
            ok = 0;
            break;
        }
        started++;
    }
    for (int t = 0; t < started; t++) {
        pthread_join(threads[t], NULL);
        if (jobs[t].failed) {
            cli_error("bench", "thread %d: %s", t + 1, jobs[t].message);
            ok = 0;
        }
    }
    double elapsed = now_seconds() - start;

    if (ok) {
        /* Warm-up windows are inside the wall time, so throughput counts them too. */
        size_t total = (size_t)n_threads * (size_t)windows;
        qsort(latencies, total, sizeof *latencies, compare_doubles);
        result->median_us = median_of_sorted(latencies, total);
        result->p99_us = nearest_rank(latencies, total, 0.99);
        result->windows_per_second = (double)n_threads * (double)(windows + warmup) / elapsed;
    } else if (jobs == NULL || threads == NULL || latencies == NULL) {
        cli_error("bench", "out of memory");
    }

    free(latencies);
    free(threads);
    free(jobs);
    return ok;
}

int cmd_bench(int argc, char **argv)
{
    const char *path = NULL;
    long windows = 2000, warmup = 100, n_threads = 0;
    int json = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (cli_is_help(arg)) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(arg, "--json") == 0) {
            json = 1;
        } else if (strcmp(arg, "--windows") == 0 && i + 1 < argc) {
            if (!cli_parse_int("bench", arg, argv[++i], 1, 100000000, &windows)) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(arg, "--warmup") == 0 && i + 1 < argc) {
            if (!cli_parse_int("bench", arg, argv[++i], 0, 100000000, &warmup)) {
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(arg, "--threads") == 0 && i + 1 < argc) {
            if (!cli_parse_int("bench", arg, argv[++i], 1, 1024, &n_threads)) {
                return CLI_EXIT_USAGE;
            }
        } else if (arg[0] == '-' || path != NULL) {
            cli_error("bench", "unexpected argument '%s'", arg);
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        } else {
            path = arg;
        }
    }
    if (path == NULL) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    if (n_threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = online > 0 ? online : 1;
    }

    bm_model *model = cli_load_model("bench", path);
    if (model == NULL) {
        return CLI_EXIT_FAILURE;
    }

    bench_result single, parallel;
    int ok = run_bench(model, 1, windows, warmup, &single) &&
             run_bench(model, (int)n_threads, windows, warmup, &parallel);
    if (ok && json) {
        /* jansson escapes the path, which may contain any character. */
        json_t *root = json_pack(
            "{s:s, s:I, s:{s:f, s:f, s:f}, s:I, s:{s:f, s:f, s:f}}", "model", path, "windows",
            (json_int_t)windows, "single", "median_us", single.median_us, "p99_us", single.p99_us,
            "windows_per_second", single.windows_per_second, "threads", (json_int_t)n_threads,
            "parallel", "median_us", parallel.median_us, "p99_us", parallel.p99_us,
            "windows_per_second", parallel.windows_per_second);
        char *text = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7)) : NULL;
        if (text != NULL) {
            puts(text);
        }
        ok = text != NULL;
        free(text);
        json_decref(root);
    } else if (ok) {
        printf("model       %s (%s, %llu parameters)\n", path,
               bm_family_name(bm_model_get_info(model)->family),
               (unsigned long long)bm_model_get_info(model)->parameter_count);
        printf("%-12s %12s %12s %14s\n", "run", "median us", "p99 us", "windows/s");
        printf("%-12s %12.1f %12.1f %14.1f\n", "1 thread", single.median_us, single.p99_us,
               single.windows_per_second);
        char label[32];
        snprintf(label, sizeof label, "%ld threads", n_threads);
        printf("%-12s %12.1f %12.1f %14.1f\n", label, parallel.median_us, parallel.p99_us,
               parallel.windows_per_second);
    }

    bm_model_destroy(model);
    return ok ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
