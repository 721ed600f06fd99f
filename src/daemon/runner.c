/*
 * Inference scheduling on libuv's thread pool (see runner.h).
 *
 * Contexts and slots are separate pools: a slot contains one window from the moment the loop copies
 * it until its result is reported, and a context is lent to a slot only while its forward pass
 * runs. Slots waiting for a context form a FIFO, so windows of one device are classified in the
 * order they completed.
 *
 * A retired runner keeps classifying the windows it has, on its own model, and frees itself
 * after the last one. Its successor (the runner of a reloaded model) starts no forward pass
 * before then, so a device's windows keep their order across a reload.
 */
#include "runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "babymamba/infer.h"
#include "log.h"

struct runner_job {
    uv_work_t work;
    runner *owner;
    runner_job *next;
    bm_ctx *ctx;
    runner_tag tag;
    float *window;        /* [window_length * n_channels] */
    float *logits;        /* [n_classes] */
    float *probabilities; /* [n_classes] */
    bm_status status;
    bm_error error;
    double duration_s;
};

struct runner {
    uv_loop_t *loop;
    bm_model *model;
    int n_classes;

    bm_ctx **contexts;
    int n_contexts;
    int free_contexts; /* contexts[0 .. free_contexts-1] are free */

    runner_job *jobs;
    int n_jobs;
    runner_job *free_jobs;
    int n_free_jobs;
    runner_job *waiting_head;
    runner_job *waiting_tail;
    int pending;
    int retired;

    /* The runners of successive models, oldest first. A runner dispatches only when it has no
     * predecessor left, that is, when every older runner has finished its windows. */
    runner *predecessor;
    runner *successor;

    runner_done_fn done;
    void *user;
};

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static void dispatch(runner *r);

static void free_runner(runner *r)
{
    if (r == NULL)
        return;

    /* Unlinks r from the chain, and lets its successor start when r was the oldest. */
    if (r->predecessor != NULL)
        r->predecessor->successor = r->successor;
    if (r->successor != NULL) {
        r->successor->predecessor = r->predecessor;
        if (r->predecessor == NULL)
            dispatch(r->successor);
    }
    for (int i = 0; r->jobs != NULL && i < r->n_jobs; i++) {
        free(r->jobs[i].window);
        free(r->jobs[i].logits);
        free(r->jobs[i].probabilities);
    }
    free(r->jobs);
    for (int i = 0; r->contexts != NULL && i < r->n_contexts; i++)
        bm_ctx_destroy(r->contexts[i]);
    free(r->contexts);
    bm_model_destroy(r->model);
    free(r);
}

runner *runner_create(uv_loop_t *loop, bm_model *model, int workers, int slots, runner_done_fn done,
                      void *user, char *error, size_t error_size)
{
    const bm_model_info *info = bm_model_get_info(model);
    size_t window_values = (size_t)info->window_length * (size_t)info->n_channels;

    runner *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(error, error_size, "out of memory");
        bm_model_destroy(model);
        return NULL;
    }
    r->loop = loop;
    r->model = model;
    r->n_classes = info->n_classes;
    r->done = done;
    r->user = user;

    r->contexts = calloc((size_t)workers, sizeof *r->contexts);
    r->jobs = calloc((size_t)slots, sizeof *r->jobs);
    if (r->contexts == NULL || r->jobs == NULL) {
        snprintf(error, error_size, "out of memory for %d job slots", slots);
        goto fail;
    }
    r->n_contexts = workers;
    r->n_jobs = slots;

    for (int i = 0; i < workers; i++) {
        bm_error bm_err;
        bm_error_clear(&bm_err);
        if (bm_ctx_create(model, &r->contexts[i], &bm_err) != BM_OK) {
            snprintf(error, error_size, "creating inference context %d failed: %s", i,
                     bm_err.message);
            goto fail;
        }
    }
    r->free_contexts = workers;

    for (int i = slots - 1; i >= 0; i--) {
        runner_job *job = &r->jobs[i];
        job->owner = r;
        job->window = calloc(window_values, sizeof *job->window);
        job->logits = calloc((size_t)r->n_classes, sizeof *job->logits);
        job->probabilities = calloc((size_t)r->n_classes, sizeof *job->probabilities);
        if (job->window == NULL || job->logits == NULL || job->probabilities == NULL) {
            snprintf(error, error_size, "out of memory for %d job slots", slots);
            goto fail;
        }
        job->work.data = job;
        job->next = r->free_jobs;
        r->free_jobs = job;
        r->n_free_jobs++;
    }
    return r;

fail:
    free_runner(r);
    return NULL;
}

const bm_model *runner_model(const runner *r)
{
    return r->model;
}

runner_job *runner_job_acquire(runner *r)
{
    runner_job *job = r->free_jobs;
    if (job == NULL || r->retired)
        return NULL;
    r->free_jobs = job->next;
    r->n_free_jobs--;
    job->next = NULL;
    return job;
}

int runner_free_slots(const runner *r)
{
    return r != NULL && !r->retired ? r->n_free_jobs : 0;
}

void runner_follow(runner *r, runner *predecessor)
{
    if (predecessor == NULL)
        return;
    r->predecessor = predecessor;
    predecessor->successor = r;
}

float *runner_job_window(runner_job *job)
{
    return job->window;
}

/* Thread pool: the forward pass, with the context lent to this job alone. */
static void on_work(uv_work_t *work)
{
    runner_job *job = work->data;

    double start = now_seconds();
    bm_error_clear(&job->error);
    job->status = bm_ctx_run(job->ctx, job->window, job->logits, job->probabilities, &job->error);
    job->duration_s = now_seconds() - start;
}

static void report(runner *r, runner_job *job, int ok, int cancelled, const char *why)
{
    runner_result result = {
        .tag = job->tag,
        .model = r->model,
        .ok = ok,
        .cancelled = cancelled,
        .error = why,
        .probabilities = job->probabilities,
        .top = 0,
        .duration_s = job->duration_s,
    };
    for (int k = 1; ok && k < r->n_classes; k++) {
        if (job->probabilities[k] > job->probabilities[result.top])
            result.top = k;
    }
    job->next = r->free_jobs;
    r->free_jobs = job;
    r->n_free_jobs++;
    r->pending--;

    /* The slot is free before the callback runs, so the callback can use the capacity it frees. The
     * job's buffers stay untouched until the next acquire, which the callback does not do. */
    r->done(r->user, &result);
}

static void on_after_work(uv_work_t *work, int status)
{
    runner_job *job = work->data;
    runner *r = job->owner;

    r->contexts[r->free_contexts++] = job->ctx;
    job->ctx = NULL;

    if (status == UV_ECANCELED)
        report(r, job, 0, 1, "cancelled");
    else if (job->status != BM_OK)
        report(r, job, 0, 0, job->error.message);
    else
        report(r, job, 1, 0, NULL);

    if (r->retired && r->pending == 0) {
        free_runner(r);
        return;
    }
    dispatch(r);
}

/* Starts waiting jobs while contexts are free and no older runner has windows left. */
static void dispatch(runner *r)
{
    while (r->predecessor == NULL && r->free_contexts > 0 && r->waiting_head != NULL) {
        runner_job *job = r->waiting_head;
        r->waiting_head = job->next;
        if (r->waiting_head == NULL)
            r->waiting_tail = NULL;
        job->next = NULL;

        job->ctx = r->contexts[--r->free_contexts];
        int rc = uv_queue_work(r->loop, &job->work, on_work, on_after_work);
        if (rc != 0) {
            LOG_ERROR("runner", "queueing a forward pass failed: %s", uv_strerror(rc));
            r->contexts[r->free_contexts++] = job->ctx;
            job->ctx = NULL;
            report(r, job, 0, 0, "the thread pool rejected the job");
        }
    }
}

void runner_job_submit(runner *r, runner_job *job, const runner_tag *tag)
{
    job->tag = *tag;
    job->next = NULL;
    if (r->waiting_tail != NULL)
        r->waiting_tail->next = job;
    else
        r->waiting_head = job;
    r->waiting_tail = job;
    r->pending++;
    dispatch(r);
}

int runner_pending(const runner *r)
{
    int pending = 0;
    for (; r != NULL; r = r->predecessor)
        pending += r->pending;
    return pending;
}

void runner_retire(runner *r)
{
    if (r == NULL)
        return;
    r->retired = 1;
    if (r->pending == 0)
        free_runner(r);
}

void runner_cancel_waiting(runner *r)
{
    if (r == NULL)
        return;
    runner_cancel_waiting(r->predecessor);

    while (r->waiting_head != NULL) {
        runner_job *job = r->waiting_head;
        r->waiting_head = job->next;
        if (r->waiting_head == NULL)
            r->waiting_tail = NULL;
        job->duration_s = 0.0;
        report(r, job, 0, 1, "cancelled");
    }
    if (r->retired && r->pending == 0)
        free_runner(r);
}
