/*
 * The BabyMamba-HAR forward pass (docs/model-format.md, "The function"). Activations are kept
 * token-major ([time][feature]) so that every per-token step is a matrix-vector product over
 * contiguous memory. Each step sits under a comment naming the equation it implements.
 */
#include "forward.h"

#include <math.h>
#include <string.h>

#include "kernels.h"

size_t bm__workspace_floats(const bm_model *model)
{
    const bm_model_info *m = &model->info;
    size_t l = (size_t)m->window_length, p = (size_t)m->n_tokens, d = (size_t)m->d_model;
    size_t di = (size_t)m->d_inner, n = (size_t)m->d_state, r = (size_t)m->dt_rank;
    size_t chunked = m->scan == BM_SCAN_CHUNKED_CLAMPED ? 3 : 0;

    return l * d + 3 * p * d + p * 2 * di + p * di + 2 * di + (r + 2 * n) + di + di * n +
           chunked * di * n + p + 3 * d;
}

void bm__workspace_bind(const bm_model *model, float *memory, bm__workspace *ws)
{
    const bm_model_info *m = &model->info;
    size_t l = (size_t)m->window_length, p = (size_t)m->n_tokens, d = (size_t)m->d_model;
    size_t di = (size_t)m->d_inner, n = (size_t)m->d_state, r = (size_t)m->dt_rank;
    float *next = memory;

#define TAKE(field, count) (ws->field = next, next += (count))
    TAKE(stem, l * d);
    TAKE(patch, p * d);
    TAKE(tokens, p * d);
    TAKE(normed, p * d);
    TAKE(xz, p * 2 * di);
    TAKE(y, p * di);
    TAKE(act, di);
    TAKE(scan_out, di);
    TAKE(dbc, r + 2 * n);
    TAKE(delta, di);
    TAKE(state, di * n);
    if (m->scan == BM_SCAN_CHUNKED_CLAMPED) {
        TAKE(chunk_sum, di * n);
        TAKE(chunk_acc, di * n);
        TAKE(chunk_base, di * n);
    } else {
        ws->chunk_sum = ws->chunk_acc = ws->chunk_base = NULL;
    }
    TAKE(scores, p);
    TAKE(gate, d);
    TAKE(pooled, d);
    TAKE(pooled_sum, d);
#undef TAKE
}

/* Stem: Conv1d(C_stem -> d, kernel k, padding k/2, no bias), BatchNorm, SiLU. For cx the
 * convolution reads all C channels; for ci it reads channel `channel` alone. */
static void run_stem(const bm_model *model, const float *window, int channel, float *out)
{
    const bm_model_info *m = &model->info;
    int l = m->window_length, d = m->d_model, c_all = m->n_channels, k = m->stem_kernel;
    int pad = k / 2;
    int c_first = channel < 0 ? 0 : channel;
    int c_count = channel < 0 ? c_all : 1;

    for (int t = 0; t < l; t++) {
        float *row = out + (long)t * d;
        for (int o = 0; o < d; o++) {
            row[o] = 0.0f;
        }

        /* The weights are stored [c * k + j][d], so each tap updates all d outputs at once. */
        for (int c = 0; c < c_count; c++) {
            for (int j = 0; j < k; j++) {
                int src = t + j - pad;
                if (src < 0 || src >= l) {
                    continue;
                }
                float x = window[(long)src * c_all + c_first + c];
                const float *w = model->stem_weight + ((long)c * k + j) * d;
                for (int o = 0; o < d; o++) {
                    row[o] += w[o] * x;
                }
            }
        }

        for (int o = 0; o < d; o++) {
            row[o] = bm__silu(row[o] * model->stem_bn.scale[o] + model->stem_bn.shift[o]);
        }
    }
}

/* Patch embedding: depthwise Conv1d(kernel, stride, padding) -> pointwise Conv1d -> BatchNorm
 * -> SiLU, then + pos_embed. */
static void run_patch(const bm_model *model, bm__workspace *ws)
{
    const bm_model_info *m = &model->info;
    int l = m->window_length, d = m->d_model, p_count = m->n_tokens;
    int k = m->patch_kernel, stride = m->patch_stride, pad = m->patch_padding;

    for (int p = 0; p < p_count; p++) {
        float *patch = ws->patch + (long)p * d;
        for (int o = 0; o < d; o++) {
            patch[o] = 0.0f;
        }

        /* The depthwise weights are stored [k][d]: tap j scales every channel of one sample. */
        for (int j = 0; j < k; j++) {
            int src = p * stride + j - pad;
            if (src < 0 || src >= l) {
                continue;
            }
            const float *w = model->patch_dw + (long)j * d;
            const float *sample = ws->stem + (long)src * d;
            for (int o = 0; o < d; o++) {
                patch[o] += w[o] * sample[o];
            }
        }
    }

    for (int p = 0; p < p_count; p++) {
        float *token = ws->tokens + (long)p * d;
        bm__matvec(model->patch_pw, ws->patch + (long)p * d, token, d, d);
        for (int o = 0; o < d; o++) {
            float normed = token[o] * model->patch_bn.scale[o] + model->patch_bn.shift[o];
            token[o] = bm__silu(normed) + model->pos_embed[(long)p * d + o];
        }
    }
}

/* One token of the exact recurrence:
 * h = exp(delta ⊙ A) ⊙ h + (delta ⊙ a') ⊗ B, then y_i = h_i · C + D_i a'_i. */
static void scan_step_exact(const bm__layer *layer, bm__workspace *ws, int di, int n,
                            const float *b, const float *c, float *y)
{
    for (int i = 0; i < di; i++) {
        float *h = ws->state + (long)i * n;
        const float *a = layer->A + (long)i * n;
        float delta = ws->delta[i];
        float input = delta * ws->act[i];
        for (int j = 0; j < n; j++) {
            h[j] = bm__exp_inline(delta * a[j]) * h[j] + input * b[j];
        }

        /* The dot product runs as a separate loop so that the update above vectorises. */
        float out = 0.0f;
        for (int j = 0; j < n; j++) {
            out += h[j] * c[j];
        }
        y[i] = out + layer->D[i] * ws->act[i];
    }
}

/* One token of the chunked, clamped scan. At a chunk start the running sums restart and the
 * state so far becomes the base. With l = max(delta A, ln 1e-6) and S the chunk's running sum:
 * h_t = exp(min(S_t, 20)) * (h_base + Σ_s exp(-clamp(S_s, -20, 20)) (delta_s a'_s) B_s). */
static void scan_step_chunked(const bm__layer *layer, bm__workspace *ws, int di, int n,
                              int chunk_start, const float *b, const float *c, float *y)
{
    const float min_log_decay = logf(1e-6f);
    long size = (long)di * n;

    if (chunk_start) {
        memcpy(ws->chunk_base, ws->state, (size_t)size * sizeof *ws->state);
        memset(ws->chunk_sum, 0, (size_t)size * sizeof *ws->chunk_sum);
        memset(ws->chunk_acc, 0, (size_t)size * sizeof *ws->chunk_acc);
    }

    for (int i = 0; i < di; i++) {
        long row = (long)i * n;
        const float *a = layer->A + row;
        float delta = ws->delta[i];
        float input = delta * ws->act[i];
        float out = 0.0f;
        for (int j = 0; j < n; j++) {
            float log_decay = fmaxf(delta * a[j], min_log_decay);
            float s = ws->chunk_sum[row + j] + log_decay;
            ws->chunk_sum[row + j] = s;
            ws->chunk_acc[row + j] += expf(-fminf(fmaxf(s, -20.0f), 20.0f)) * input * b[j];
            float h = expf(fminf(s, 20.0f)) * (ws->chunk_base[row + j] + ws->chunk_acc[row + j]);
            ws->state[row + j] = h;
            out += h * c[j];
        }
        y[i] = out + layer->D[i] * ws->act[i];
    }
}

/* Runs the mixer over the tokens in one direction and adds its gated output y ⊙ SiLU(z) into
 * ws->y. Running the mixer on flip(u) and flipping its output back equals visiting the tokens
 * in reverse order with the causal convolution looking at the tokens already visited, which is
 * what `reverse` does without copying. */
static void run_direction(const bm_model *model, const bm__layer *layer, bm__workspace *ws,
                          int reverse)
{
    const bm_model_info *m = &model->info;
    int p_count = m->n_tokens, di = m->d_inner, n = m->d_state, r = m->dt_rank;
    int width = m->d_conv;
    float *y = ws->scan_out;

    memset(ws->state, 0, (size_t)di * n * sizeof *ws->state);

    for (int step = 0; step < p_count; step++) {
        int t = reverse ? p_count - 1 - step : step;

        /* a' = SiLU(conv1d_bias + Σ_k w_k a_{step-W+1+k}), zero before the first token. */
        for (int i = 0; i < di; i++) {
            float sum = layer->conv_bias[i];
            for (int k = 0; k < width; k++) {
                int past = step - (width - 1) + k;
                if (past >= 0) {
                    int src = reverse ? p_count - 1 - past : past;
                    sum += layer->conv_weight[(long)i * width + k] * ws->xz[(long)src * 2 * di + i];
                }
            }
            ws->act[i] = bm__silu(sum);
        }

        /* [delta; B; C] = W_x a'; Δ = softplus(W_dt delta + b_dt). */
        bm__matvec(layer->x_proj, ws->act, ws->dbc, r + 2 * n, di);
        bm__matvec_bias(layer->dt_proj_weight, layer->dt_proj_bias, ws->dbc, ws->delta, di, r);
        for (int i = 0; i < di; i++) {
            ws->delta[i] = bm__softplus(ws->delta[i]);
        }

        const float *b = ws->dbc + r;
        const float *c = ws->dbc + r + n;
        if (m->scan == BM_SCAN_CHUNKED_CLAMPED) {
            scan_step_chunked(layer, ws, di, n, step % m->scan_chunk == 0, b, c, y);
        } else {
            scan_step_exact(layer, ws, di, n, b, c, y);
        }

        /* y_t ⊙ SiLU(z_t), summed over directions; run_layer stored SiLU(z) in xz. */
        const float *gate = ws->xz + (long)t * 2 * di + di;
        float *y_sum = ws->y + (long)t * di;
        for (int i = 0; i < di; i++) {
            y_sum[i] += y[i] * gate[i];
        }
    }
}

/* One block: u = LN_pre(x); x = LN_post(x + M(u) + flip(M(flip(u)))). Because W_out is linear,
 * the two directions' outputs share one output projection of their sum. */
static void run_layer(const bm_model *model, const bm__layer *layer, bm__workspace *ws)
{
    const bm_model_info *m = &model->info;
    int p_count = m->n_tokens, d = m->d_model, di = m->d_inner;

    for (int p = 0; p < p_count; p++) {
        float *u = ws->normed + (long)p * d;
        bm__layer_norm(ws->tokens + (long)p * d, layer->pre_norm_weight, layer->pre_norm_bias, d,
                       m->norm_eps, u);
        float *xz = ws->xz + (long)p * 2 * di;
        bm__matvec(layer->in_proj, u, xz, 2 * di, d);

        /* Both directions gate with SiLU(z), so it is computed once, in place of z. */
        for (int i = di; i < 2 * di; i++) {
            xz[i] = bm__silu(xz[i]);
        }
    }

    memset(ws->y, 0, (size_t)p_count * di * sizeof *ws->y);
    run_direction(model, layer, ws, 0);
    if (m->bidirectional) {
        run_direction(model, layer, ws, 1);
    }

    for (int p = 0; p < p_count; p++) {
        float *mixed = ws->normed + (long)p * d;
        float *token = ws->tokens + (long)p * d;
        bm__matvec(layer->out_proj, ws->y + (long)p * di, mixed, d, di);
        for (int o = 0; o < d; o++) {
            mixed[o] += token[o];
        }
        bm__layer_norm(mixed, layer->post_norm_weight, layer->post_norm_bias, d, m->norm_eps,
                       token);
    }
}

/* Pooling over tokens into ws->pooled: the mean, or gated attention
 * u_t = tanh(W h_t + b), e_t = u_t · context, α = softmax(e), pooled = Σ α_t h_t. */
static void run_pooling(const bm_model *model, bm__workspace *ws)
{
    const bm_model_info *m = &model->info;
    int p_count = m->n_tokens, d = m->d_model;

    if (m->pooling == BM_POOLING_MEAN) {
        for (int o = 0; o < d; o++) {
            float sum = 0.0f;
            for (int p = 0; p < p_count; p++) {
                sum += ws->tokens[(long)p * d + o];
            }
            ws->pooled[o] = sum / (float)p_count;
        }
        return;
    }

    float max_score = -INFINITY;
    for (int p = 0; p < p_count; p++) {
        bm__matvec_bias(model->pool_weight, model->pool_bias, ws->tokens + (long)p * d, ws->gate, d,
                        d);
        float score = 0.0f;
        for (int o = 0; o < d; o++) {
            score += tanhf(ws->gate[o]) * model->pool_context[o];
        }
        ws->scores[p] = score;
        max_score = fmaxf(max_score, score);
    }

    float total = 0.0f;
    for (int p = 0; p < p_count; p++) {
        ws->scores[p] = expf(ws->scores[p] - max_score);
        total += ws->scores[p];
    }

    memset(ws->pooled, 0, (size_t)d * sizeof *ws->pooled);
    for (int p = 0; p < p_count; p++) {
        float weight = ws->scores[p] / total;
        for (int o = 0; o < d; o++) {
            ws->pooled[o] += weight * ws->tokens[(long)p * d + o];
        }
    }
}

/* Stem through pooling for one sequence: all channels (cx, channel = -1) or one (ci). */
static void run_backbone(const bm_model *model, bm__workspace *ws, const float *window, int channel)
{
    run_stem(model, window, channel, ws->stem);
    run_patch(model, ws);
    for (int i = 0; i < model->info.n_layers; i++) {
        run_layer(model, &model->layers[i], ws);
    }
    run_pooling(model, ws);
}

void bm__forward(const bm_model *model, bm__workspace *ws, const float *window, float *logits)
{
    const bm_model_info *m = &model->info;
    int d = m->d_model;
    const float *pooled = ws->pooled;

    if (m->family == BM_FAMILY_CX) {
        run_backbone(model, ws, window, -1);
    } else {
        /* ci: every channel is its own sequence; the pooled vectors are averaged. */
        memset(ws->pooled_sum, 0, (size_t)d * sizeof *ws->pooled_sum);
        for (int c = 0; c < m->n_channels; c++) {
            run_backbone(model, ws, window, c);
            for (int o = 0; o < d; o++) {
                ws->pooled_sum[o] += ws->pooled[o];
            }
        }
        for (int o = 0; o < d; o++) {
            ws->pooled_sum[o] /= (float)m->n_channels;
        }
        pooled = ws->pooled_sum;
    }

    /* Head: LayerNorm, then Linear(d -> K). ws->gate is free by now. */
    bm__layer_norm(pooled, model->head_norm_weight, model->head_norm_bias, d, m->norm_eps,
                   ws->gate);
    bm__matvec_bias(model->head_weight, model->head_bias, ws->gate, logits, m->n_classes, d);
}
