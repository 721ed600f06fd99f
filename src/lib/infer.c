/*
 * Inference contexts: one workspace per context, allocated once, and the checks around a
 * forward pass (finite input in, finite logits out).
 */
#include "babymamba/infer.h"

#include <math.h>
#include <stdlib.h>

#include "error_internal.h"
#include "forward.h"

struct bm_ctx {
    const bm_model *model;
    float *memory;
    size_t n_floats;
    bm__workspace ws;
};

bm_status bm_ctx_create(const bm_model *model, bm_ctx **out, bm_error *error)
{
    if (model == NULL || out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "bm_ctx_create: NULL argument");
    }
    *out = NULL;

    bm_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "bm_ctx_create: no memory for the context");
    }

    ctx->model = model;
    ctx->n_floats = bm__workspace_floats(model);
    ctx->memory = calloc(ctx->n_floats, sizeof *ctx->memory);
    if (ctx->memory == NULL) {
        free(ctx);
        return bm__fail(error, BM_ERR_NO_MEMORY,
                        "bm_ctx_create: no memory for a workspace of %zu floats",
                        bm__workspace_floats(model));
    }
    bm__workspace_bind(model, ctx->memory, &ctx->ws);

    *out = ctx;
    return BM_OK;
}

void bm_ctx_destroy(bm_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    free(ctx->memory);
    free(ctx);
}

size_t bm_ctx_workspace_bytes(const bm_ctx *ctx)
{
    return ctx->n_floats * sizeof *ctx->memory;
}

bm_status bm_ctx_run(bm_ctx *ctx, const float *window, float *logits, float *probabilities,
                     bm_error *error)
{
    if (ctx == NULL || window == NULL || logits == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "bm_ctx_run: NULL argument");
    }

    const bm_model_info *info = bm_model_get_info(ctx->model);
    long n_values = (long)info->window_length * info->n_channels;
    for (long i = 0; i < n_values; i++) {
        if (!isfinite(window[i])) {
            return bm__fail(error, BM_ERR_NON_FINITE,
                            "input value at sample %ld, channel %ld is %s; expected a finite "
                            "number",
                            i / info->n_channels, i % info->n_channels,
                            isnan(window[i]) ? "NaN" : "infinite");
        }
    }

    bm__forward(ctx->model, &ctx->ws, window, logits);

    /* Inputs of the magnitude of real normalised sensor data give finite logits; inputs near
     * float32's limit (about 1e38) or extreme weights can overflow inside the network, and a
     * caller must not act on such a result. */
    for (int k = 0; k < info->n_classes; k++) {
        if (!isfinite(logits[k])) {
            return bm__fail(error, BM_ERR_NON_FINITE,
                            "logit %d of the forward pass is not finite: the input or the "
                            "weights overflow float32 inside the network",
                            k);
        }
    }

    if (probabilities != NULL) {
        bm_softmax(logits, info->n_classes, probabilities);
    }
    return BM_OK;
}

void bm_model_normalize(const bm_model *model, float *window)
{
    const bm_model_info *info = bm_model_get_info(model);
    const float *mean = bm_model_norm_mean(model);
    const float *std = bm_model_norm_std(model);
    int c_count = info->n_channels;

    for (int t = 0; t < info->window_length; t++) {
        float *sample = window + (long)t * c_count;
        for (int c = 0; c < c_count; c++) {
            sample[c] = (sample[c] - mean[c]) / std[c];
        }
    }
}

int bm_softmax(const float *logits, int n, float *probabilities)
{
    int best = 0;
    for (int k = 1; k < n; k++) {
        if (logits[k] > logits[best]) {
            best = k;
        }
    }

    float total = 0.0f;
    for (int k = 0; k < n; k++) {
        probabilities[k] = expf(logits[k] - logits[best]);
        total += probabilities[k];
    }
    for (int k = 0; k < n; k++) {
        probabilities[k] /= total;
    }
    return best;
}
