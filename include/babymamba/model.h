/*
 * Loading BabyMamba-HAR model files.
 *
 * A model file is a safetensors container whose metadata describes the architecture, the class
 * names and the input the model expects (docs/model-format.md). bm_model_load validates the
 * whole file before it returns a model: every tensor's dtype, shape and byte range, and every
 * metadata key. A loaded model is read-only: any number of inference contexts, on any threads,
 * may share it, as long as it outlives them.
 */
#ifndef BABYMAMBA_MODEL_H
#define BABYMAMBA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "babymamba/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The metadata format version this library reads; training/babymamba_export.py writes the same
 * number, and a test checks that the two agree. */
#define BM_MODEL_FORMAT_VERSION 1

typedef struct bm_model bm_model;

typedef enum bm_family {
    BM_FAMILY_CX, /* Crossover-BiDir: the stem mixes all channels. */
    BM_FAMILY_CI  /* Channel-independent: each channel runs the backbone alone. */
} bm_family;

typedef enum bm_pooling { BM_POOLING_MEAN, BM_POOLING_GATED } bm_pooling;

typedef enum bm_scan {
    BM_SCAN_EXACT,          /* The plain recurrence. */
    BM_SCAN_CHUNKED_CLAMPED /* The chunked scan with clamped decays of some published checkpoints. */
} bm_scan;

/* Architecture and sizes of a loaded model. Every dimension comes from the file. */
typedef struct bm_model_info {
    bm_family family;
    bm_pooling pooling;
    bm_scan scan;
    int bidirectional;
    int d_model;       /* d */
    int d_state;       /* N */
    int expand;        /* d_inner = expand * d_model */
    int d_inner;
    int dt_rank;       /* R */
    int d_conv;        /* width of the mixer's causal convolution */
    int n_layers;
    int n_channels;    /* C */
    int n_classes;     /* K */
    int window_length; /* L */
    int hop;
    int n_tokens;      /* P */
    int stem_kernel;
    int patch_kernel;
    int patch_stride;
    int patch_padding;
    int scan_chunk;
    float norm_eps;
    double sample_rate_hz;
    uint64_t parameter_count; /* as PyTorch counts parameters: BatchNorm running stats excluded */
    uint64_t macs_per_window; /* multiply-accumulates of one forward pass */
} bm_model_info;

/* Loads and validates a model file. On success *out owns the model; free it with
 * bm_model_destroy. On failure *out is NULL and error names the tensor or key at fault. */
bm_status bm_model_load(const char *path, bm_model **out, bm_error *error);

/* Loads a model from a buffer holding a whole model file. The buffer is copied, so the caller may
 * free it on return. */
bm_status bm_model_load_buffer(const void *data, size_t size, bm_model **out, bm_error *error);

/* Frees a model. Accepts NULL. No context created from it may be used afterwards. */
void bm_model_destroy(bm_model *model);

/* Returns the architecture and sizes. The pointer lives as long as the model. */
const bm_model_info *bm_model_get_info(const bm_model *model);

/* Returns the model's name and version from the metadata ("" when absent). */
const char *bm_model_name(const bm_model *model);
const char *bm_model_version(const bm_model *model);

/* Returns the name of class index (0 <= index < n_classes), or NULL for an index out of range. */
const char *bm_model_class_name(const bm_model *model, int index);

/* Returns the name and unit of input channel index, or NULL for an index out of range. */
const char *bm_model_channel_name(const bm_model *model, int index);
const char *bm_model_channel_unit(const bm_model *model, int index);

/* Returns the per-channel normalisation, arrays of n_channels values; the engine's callers
 * compute (x - mean) / std before inference. */
const float *bm_model_norm_mean(const bm_model *model);
const float *bm_model_norm_std(const bm_model *model);

/* Returns the name of the preprocessing that produces the input channels from raw sensor
 * streams ("none" when the caller supplies the channels directly). */
const char *bm_model_preprocessing(const bm_model *model);

/* Returns the metadata document as stored in the file (a JSON string). */
const char *bm_model_metadata_json(const bm_model *model);

/* Returns the SHA-256 of the whole file as 64 lowercase hex digits, for logs and status APIs. */
const char *bm_model_sha256(const bm_model *model);

/* Returns the family, pooling or scan as the lowercase word used in the metadata. */
const char *bm_family_name(bm_family family);
const char *bm_pooling_name(bm_pooling pooling);
const char *bm_scan_name(bm_scan scan);

#ifdef __cplusplus
}
#endif

#endif
