/*
 * A safetensors writer for data files and test fixtures.
 *
 * The caller adds tensors and string metadata, then writes the container in one step. The
 * file appears atomically: the bytes go to a temporary file in the same directory, which is
 * flushed to disk and then renamed over the target, so a reader never sees a partial file.
 * src/lib/safetensors.h is the matching reader and defines the dtypes.
 */
#ifndef BM_ST_WRITER_H
#define BM_ST_WRITER_H

#include <stdint.h>

#include "babymamba/error.h"
#include "safetensors.h"

typedef struct bm_st_writer bm_st_writer;

/* Creates an empty writer. */
bm_status bm_st_writer_create(bm_st_writer **out, bm_error *error);

/* Frees a writer. Accepts NULL. */
void bm_st_writer_destroy(bm_st_writer *writer);

/* Adds a tensor of n_dims dimensions (0 for a scalar, at most BM_ST_MAX_DIMS). The name is
 * copied, but the data is borrowed: it must stay valid, holding the product of the shape times
 * the dtype size in bytes, until bm_st_writer_write returns. data may be NULL only for a tensor
 * with no elements. Rejects duplicate names, the reserved name "__metadata__" and negative
 * dimensions with BM_ERR_INVALID_ARGUMENT. */
bm_status bm_st_writer_add_tensor(bm_st_writer *writer, const char *name, bm_st_dtype dtype,
                                  int n_dims, const int64_t *shape, const void *data,
                                  bm_error *error);

/* Sets __metadata__[key] to value, replacing an earlier value of the same key. Both strings
 * are copied. */
bm_status bm_st_writer_set_metadata(bm_st_writer *writer, const char *key, const char *value,
                                    bm_error *error);

/* Writes the container to path, replacing any existing file. Tensors whose dtype has 8-byte
 * elements come first, then 4-byte, then 1-byte ones, each group in the order added, and the
 * header is padded with spaces to a multiple of 8 bytes. Every tensor therefore starts at an
 * offset that is a multiple of its element size. Fails with BM_ERR_IO, naming the path, when
 * the file cannot be written, and with BM_ERR_UNSUPPORTED on a big-endian host, because
 * safetensors stores little-endian values. */
bm_status bm_st_writer_write(const bm_st_writer *writer, const char *path, bm_error *error);

#endif
