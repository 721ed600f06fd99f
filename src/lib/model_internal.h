/*
 * The layout of a loaded model, shared by the loader (model.c) and the forward pass
 * (forward.c). Weight pointers borrow from the safetensors buffer; the few derived tables
 * (folded BatchNorm, A = -exp(A_log)) are computed once at load time and owned by the model.
 */
#ifndef BM_MODEL_INTERNAL_H
#define BM_MODEL_INTERNAL_H

#include "babymamba/model.h"
#include "safetensors.h"

/* One mixer block. d = d_model, di = d_inner, N = d_state, R = dt_rank, W = d_conv.
 * Matrices read by bm__matvec are stored transposed ([in][out]) in tables the model owns, so
 * the kernel's inner loop runs over contiguous outputs and vectorises. */
typedef struct bm__layer {
    const float *pre_norm_weight;  /* [d] */
    const float *pre_norm_bias;    /* [d] */
    const float *post_norm_weight; /* [d] */
    const float *post_norm_bias;   /* [d] */
    const float *in_proj;          /* [d][2*di] transposed: outputs 0..di-1 give a, di.. z */
    const float *conv_weight;      /* [di, W] */
    const float *conv_bias;        /* [di] */
    const float *x_proj;           /* [di][R + 2*N] transposed: delta, then B, then C */
    const float *dt_proj_weight;   /* [R][di] transposed */
    const float *dt_proj_bias;     /* [di] */
    const float *D;                /* [di] */
    const float *out_proj;         /* [di][d] transposed */
    float *A;                      /* [di, N], -exp(A_log), owned */
} bm__layer;

/* Inference-mode BatchNorm folded to y = x * scale + shift per channel. */
typedef struct bm__batch_norm {
    float *scale; /* [d], owned */
    float *shift; /* [d], owned */
} bm__batch_norm;

struct bm_model {
    bm_st_file *file;
    float **owned; /* derived tables allocated at load time, freed with the model */
    int n_owned;
    int owned_capacity;
    bm_model_info info;

    char *metadata_json;
    char *name;
    char *version;
    char *preprocessing;
    char **class_names;   /* [K] */
    char **channel_names; /* [C] */
    char **channel_units; /* [C] */
    float *norm_mean;     /* [C] */
    float *norm_std;      /* [C] */
    char sha256[65];

    const float *stem_weight; /* [C_stem * stem_kernel][d] transposed */
    bm__batch_norm stem_bn;
    const float *patch_dw;    /* [patch_kernel][d] transposed */
    const float *patch_pw;    /* [d][d] transposed */
    bm__batch_norm patch_bn;
    const float *pos_embed;   /* [P, d] */
    bm__layer *layers;        /* [n_layers] */
    const float *pool_weight; /* [d][d] transposed, gated pooling only */
    const float *pool_bias;   /* [d] */
    const float *pool_context;/* [d] */
    const float *head_norm_weight; /* [d] */
    const float *head_norm_bias;   /* [d] */
    const float *head_weight;      /* [d][K] transposed */
    const float *head_bias;        /* [K] */
};

#endif
