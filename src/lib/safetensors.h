/*
 * A validating reader of safetensors containers.
 *
 * Layout: an 8-byte little-endian header length n, n bytes of a JSON object, then the tensor
 * bytes. The reader owns a copy of the whole file, checks every tensor entry against the file
 * size before anyone can see it, and hands out borrowed views. Model files and data files (from
 * `babymamba prepare`) and the golden vectors of the tests are all read through it.
 */
#ifndef BM_SAFETENSORS_H
#define BM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "babymamba/error.h"

#define BM_ST_MAX_DIMS 8

/* Largest header the reader accepts. Model headers are a few kilobytes; a larger claim means a
 * corrupt or hostile file, and the limit keeps the JSON parser's memory bounded. */
#define BM_ST_MAX_HEADER_BYTES (16u * 1024u * 1024u)

typedef enum bm_st_dtype {
    BM_ST_F32,
    BM_ST_F64,
    BM_ST_I32,
    BM_ST_I64,
    BM_ST_U8,
    BM_ST_DTYPE_COUNT
} bm_st_dtype;

/* A borrowed view of one tensor; data points into the file buffer and is suitably aligned for
 * its dtype only if the writer padded the header (the reader copies the buffer to an aligned
 * allocation, so offsets that are multiples of the element size give aligned data). */
typedef struct bm_st_tensor {
    const char *name;
    bm_st_dtype dtype;
    int n_dims;
    int64_t shape[BM_ST_MAX_DIMS];
    uint64_t n_elements;
    const void *data;
    size_t n_bytes;
} bm_st_tensor;

typedef struct bm_st_file bm_st_file;

/* Reads a whole file and validates its header. */
bm_status bm_st_open(const char *path, bm_st_file **out, bm_error *error);

/* Validates a container held in memory; the bytes are copied. */
bm_status bm_st_open_buffer(const void *data, size_t size, bm_st_file **out, bm_error *error);

void bm_st_close(bm_st_file *file);

/* Returns the number of tensors and the view of tensor index (in header order). */
int bm_st_tensor_count(const bm_st_file *file);
const bm_st_tensor *bm_st_tensor_at(const bm_st_file *file, int index);

/* Returns the tensor called name, or NULL. */
const bm_st_tensor *bm_st_find(const bm_st_file *file, const char *name);

/* Returns the string value of __metadata__[key], or NULL when absent. */
const char *bm_st_metadata(const bm_st_file *file, const char *key);

/* Returns the raw file bytes and size, for hashing. */
const uint8_t *bm_st_bytes(const bm_st_file *file, size_t *size);

/* Returns the safetensors spelling of a dtype ("F32"). */
const char *bm_st_dtype_name(bm_st_dtype dtype);

/* Returns the element size of a dtype in bytes. */
size_t bm_st_dtype_size(bm_st_dtype dtype);

/* Writes "[52, 8]" for a tensor's shape into buf. */
void bm_st_format_shape(const int64_t *shape, int n_dims, char *buf, size_t size);

#endif
