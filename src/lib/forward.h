/*
 * The forward pass of both families over a preallocated workspace.
 */
#ifndef BM_FORWARD_H
#define BM_FORWARD_H

#include <stddef.h>

#include "model_internal.h"

/* Scratch buffers of one forward pass, carved out of one allocation. Shapes use L = window
 * length, P = tokens, d = d_model, di = d_inner, N = d_state, R = dt_rank. */
typedef struct bm__workspace {
    float *stem;       /* [L, d] stem output, token-major */
    float *patch;      /* [P, d] depthwise patch convolution output */
    float *tokens;     /* [P, d] the residual stream */
    float *normed;     /* [P, d] LayerNorm output, later the mixer output */
    float *xz;         /* [P, 2*di] a and SiLU(z) of the input projection, shared by both
                        * scan directions */
    float *y;          /* [P, di] gated scan output summed over directions */
    float *act;        /* [di] the convolved, activated a' of the current token */
    float *scan_out;   /* [di] y of the current token before the gate */
    float *dbc;        /* [R + 2N] delta, B and C of the current token */
    float *delta;      /* [di] step sizes of the current token */
    float *state;      /* [di, N] the SSM state h */
    float *chunk_sum;  /* [di, N] running sum of clamped log-decays (chunked scan only) */
    float *chunk_acc;  /* [di, N] accumulated scaled inputs of the chunk (chunked scan only) */
    float *chunk_base; /* [di, N] the state at the end of the previous chunk (chunked scan) */
    float *scores;     /* [P] attention scores of gated pooling */
    float *gate;       /* [d] tanh projection of one token */
    float *pooled;     /* [d] pooled vector of one sequence */
    float *pooled_sum; /* [d] sum over channels (ci) */
} bm__workspace;

/* Returns the number of floats a workspace for model needs. */
size_t bm__workspace_floats(const bm_model *model);

/* Points the workspace's buffers into memory, which holds bm__workspace_floats(model) floats. */
void bm__workspace_bind(const bm_model *model, float *memory, bm__workspace *ws);

/* Computes the logits of one normalised window (window[t * C + c]) into logits[K]. */
void bm__forward(const bm_model *model, bm__workspace *ws, const float *window, float *logits);

#endif
