/*
 * Scheduling of inference: complete windows in, class probabilities out.
 *
 * A runner serves one loaded model with a fixed set of inference contexts (one per worker) and a
 * fixed pool of job slots, all allocated at creation, so that classifying a window allocates
 * nothing. The loop thread takes a free slot, fills its window and submits it. The forward pass
 * runs on libuv's thread pool with a context no other job is using, and the result comes back
 * to the loop thread through the done callback. Windows that find no free slot are the caller's to
 * count as dropped. Every function here is called on the loop thread.
 */
#ifndef BABYMAMBAD_RUNNER_H
#define BABYMAMBAD_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "babymamba/model.h"

/* Identifies what a window belongs to; the runner only carries it back. */
typedef struct runner_tag {
    char device_id[65];
    uint64_t epoch;
    int64_t start_ns;
    int64_t end_ns;
} runner_tag;

typedef struct runner_result {
    runner_tag tag;
    const bm_model *model;      /* that classified the window, valid during the callback */
    int ok;                     /* 0 when the window was not classified */
    int cancelled;              /* 1 when ok is 0 because runner_cancel_waiting removed it */
    const char *error;          /* the engine's message when ok is 0 */
    const float *probabilities; /* n_classes values, valid during the callback */
    int top;                    /* index of the most probable class */
    double duration_s;          /* of the forward pass */
} runner_result;

typedef void (*runner_done_fn)(void *user, const runner_result *result);

typedef struct runner runner;
typedef struct runner_job runner_job;

/* Creates a runner that owns model (it destroys the model when it is destroyed). */
runner *runner_create(uv_loop_t *loop, bm_model *model, int workers, int slots, runner_done_fn done,
                      void *user, char *error, size_t error_size);

/* Takes a free job slot, or returns NULL when all are in use or the runner is retired. */
runner_job *runner_job_acquire(runner *r);

/* Returns the slots runner_job_acquire can take now; 0 for NULL or a retired runner. */
int runner_free_slots(const runner *r);

/* The slot's window buffer: window_length * n_channels values, sample-major. */
float *runner_job_window(runner_job *job);

/* Queues a filled job; it runs when a context is free. */
void runner_job_submit(runner *r, runner_job *job, const runner_tag *tag);

/* Returns the jobs submitted and not yet reported, those of the runners r follows included. */
int runner_pending(const runner *r);

const bm_model *runner_model(const runner *r);

/* Makes r start no forward pass before predecessor, and every runner predecessor follows, has
 * finished its jobs. A reload uses it so that the windows of the old model complete first and
 * each device's results stay in order. Accepts a NULL predecessor. */
void runner_follow(runner *r, runner *predecessor);

/* Accepts no more jobs and frees the runner once every submitted job has finished. Queued jobs
 * still run on this runner's model and are reported as usual. Accepts NULL. */
void runner_retire(runner *r);

/* Reports every job of r, and of the runners r follows, that has not started as not classified,
 * with cancelled set. Running jobs finish and report as usual. For a stop that cannot wait any
 * longer. Accepts NULL. */
void runner_cancel_waiting(runner *r);

#endif
