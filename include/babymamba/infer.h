/*
 * Inference contexts: running a loaded model on windows.
 *
 * A context owns one workspace, sized from the model and allocated by bm_ctx_create; bm_ctx_run
 * never allocates. A context is not thread-safe: give each thread its own. Contexts only read the
 * model, so many contexts may share one model.
 */
#ifndef BABYMAMBA_INFER_H
#define BABYMAMBA_INFER_H

#include <stddef.h>

#include "babymamba/error.h"
#include "babymamba/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bm_ctx bm_ctx;

/* Creates a context for model. The model must outlive the context. */
bm_status bm_ctx_create(const bm_model *model, bm_ctx **out, bm_error *error);

/* Frees a context. Accepts NULL. */
void bm_ctx_destroy(bm_ctx *ctx);

/* Returns the bytes of workspace the context allocated, for memory accounting. */
size_t bm_ctx_workspace_bytes(const bm_ctx *ctx);

/* Classifies one window. window contains window_length * n_channels normalised values, sample-major
 * (window[t * n_channels + c]). logits receives n_classes values; probabilities, when not NULL,
 * receives their softmax. Returns BM_ERR_NON_FINITE, and leaves the outputs untouched, when the
 * window contains NaN or infinity. */
bm_status bm_ctx_run(bm_ctx *ctx, const float *window, float *logits, float *probabilities,
                     bm_error *error);
/* NOTE: every call recomputes the whole window. With the usual hop of half a window, the stem and
 * patch tokens of the overlapping half could be reused from the previous call of the same stream;
 * that needs a per-stream token cache and is not implemented yet. */

/* Normalises a window in place with the model's per-channel mean and standard deviation. */
void bm_model_normalize(const bm_model *model, float *window);

/* Writes the softmax of n logits into probabilities, subtracting the maximum first so that large
 * logits do not overflow. Returns the index of the largest logit. */
int bm_softmax(const float *logits, int n, float *probabilities);

#ifdef __cplusplus
}
#endif

#endif
