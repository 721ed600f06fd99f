/*
 * The safetensors writer: collects tensor descriptions and metadata, lays the tensors out so
 * each starts on a multiple of its element size, and writes header and data through a
 * temporary file that is renamed into place.
 */
#include "st_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error_internal.h"

/* Attempts at finding an unused temporary name before giving up. */
#define TEMP_NAME_ATTEMPTS 100

/* Largest single write(2) request. Linux transfers at most 0x7ffff000 bytes per call. */
#define WRITE_CHUNK_BYTES ((size_t)1 << 30)

typedef struct writer_tensor {
    char *name;
    bm_st_dtype dtype;
    int n_dims;
    int64_t shape[BM_ST_MAX_DIMS];
    uint64_t n_bytes;
    const void *data;
} writer_tensor;

struct bm_st_writer {
    writer_tensor *tensors;
    int n_tensors;
    int capacity;
    json_t *metadata; /* object of string values */
};

bm_status bm_st_writer_create(bm_st_writer **out, bm_error *error)
{
    if (out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "safetensors writer: out is NULL");
    }
    *out = NULL;

    bm_st_writer *writer = calloc(1, sizeof *writer);
    if (writer == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "safetensors writer: cannot allocate");
    }
    writer->metadata = json_object();
    if (writer->metadata == NULL) {
        free(writer);
        return bm__fail(error, BM_ERR_NO_MEMORY, "safetensors writer: cannot allocate metadata");
    }

    *out = writer;
    return BM_OK;
}

void bm_st_writer_destroy(bm_st_writer *writer)
{
    if (writer == NULL) {
        return;
    }
    for (int i = 0; i < writer->n_tensors; i++) {
        free(writer->tensors[i].name);
    }
    free(writer->tensors);
    json_decref(writer->metadata);
    free(writer);
}

static int has_tensor(const bm_st_writer *writer, const char *name)
{
    for (int i = 0; i < writer->n_tensors; i++) {
        if (strcmp(writer->tensors[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Computes the byte size of a tensor, failing when a dimension is negative or the product
 * overflows. */
static bm_status tensor_bytes(const char *name, bm_st_dtype dtype, int n_dims, const int64_t *shape,
                              uint64_t *out, bm_error *error)
{
    uint64_t n_bytes = bm_st_dtype_size(dtype);

    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0) {
            return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                            "tensor '%s': dimension %d is %lld, expected a value >= 0", name, i,
                            (long long)shape[i]);
        }
        const uint64_t dim = (uint64_t)shape[i];
        if (dim != 0 && n_bytes > UINT64_MAX / dim) {
            return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                            "tensor '%s': byte size overflows 64 bits", name);
        }
        n_bytes *= dim;
    }

    *out = n_bytes;
    return BM_OK;
}

bm_status bm_st_writer_add_tensor(bm_st_writer *writer, const char *name, bm_st_dtype dtype,
                                  int n_dims, const int64_t *shape, const void *data,
                                  bm_error *error)
{
    if (name == NULL || name[0] == '\0') {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "tensor name: expected a non-empty name");
    }
    if (strcmp(name, "__metadata__") == 0) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "tensor name '__metadata__': reserved for the metadata");
    }
    if (has_tensor(writer, name)) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "tensor '%s': added twice", name);
    }
    if ((unsigned)dtype >= BM_ST_DTYPE_COUNT) {
        return bm__fail(error, BM_ERR_DTYPE, "tensor '%s': dtype %d is not a bm_st_dtype", name,
                        (int)dtype);
    }
    if (n_dims < 0 || n_dims > BM_ST_MAX_DIMS) {
        return bm__fail(error, BM_ERR_SHAPE, "tensor '%s': %d dimensions, expected 0 to %d", name,
                        n_dims, BM_ST_MAX_DIMS);
    }
    if (n_dims > 0 && shape == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "tensor '%s': shape is NULL", name);
    }

    uint64_t n_bytes = 0;
    bm_status status = tensor_bytes(name, dtype, n_dims, shape, &n_bytes, error);
    if (status != BM_OK) {
        return status;
    }
    if (n_bytes > 0 && data == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "tensor '%s': data is NULL for %llu bytes",
                        name, (unsigned long long)n_bytes);
    }

    if (writer->n_tensors == writer->capacity) {
        const int capacity = writer->capacity ? 2 * writer->capacity : 8;
        writer_tensor *grown = realloc(writer->tensors, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            return bm__fail(error, BM_ERR_NO_MEMORY, "tensor '%s': cannot grow the tensor list",
                            name);
        }
        writer->tensors = grown;
        writer->capacity = capacity;
    }

    writer_tensor *tensor = &writer->tensors[writer->n_tensors];
    tensor->name = strdup(name);
    if (tensor->name == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "tensor '%s': cannot copy the name", name);
    }
    tensor->dtype = dtype;
    tensor->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) {
        tensor->shape[i] = shape[i];
    }
    tensor->n_bytes = n_bytes;
    tensor->data = data;
    writer->n_tensors++;
    return BM_OK;
}

bm_status bm_st_writer_set_metadata(bm_st_writer *writer, const char *key, const char *value,
                                    bm_error *error)
{
    if (key == NULL || value == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "metadata: key and value must be set");
    }

    json_t *string = json_string(value);
    if (string == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "metadata '%s': value is not valid UTF-8",
                        key);
    }
    if (json_object_set_new(writer->metadata, key, string) != 0) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT,
                        "metadata key '%s': not valid UTF-8 or out of memory", key);
    }
    return BM_OK;
}

/* Fills order with tensor indices by descending element size, so that every offset is a
 * multiple of the element size. Tensors of equal element size keep the order they were added. */
static void layout_order(const bm_st_writer *writer, int *order)
{
    static const size_t sizes[] = {8, 4, 2, 1};
    int n = 0;

    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int i = 0; i < writer->n_tensors; i++) {
            if (bm_st_dtype_size(writer->tensors[i].dtype) == sizes[s]) {
                order[n++] = i;
            }
        }
    }
}

/* Builds the JSON header, padded with spaces to a multiple of 8 bytes. *out is malloc'ed. */
static bm_status build_header(const bm_st_writer *writer, const int *order, char **out,
                              size_t *out_size, bm_error *error)
{
    bm_status status = BM_OK;
    char *text = NULL;
    json_t *header = json_object();
    if (header == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "safetensors header: cannot allocate");
    }

    if (json_object_size(writer->metadata) > 0 &&
        json_object_set(header, "__metadata__", writer->metadata) != 0) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "safetensors header: cannot add metadata");
        goto done;
    }

    uint64_t offset = 0;
    for (int k = 0; k < writer->n_tensors; k++) {
        const writer_tensor *tensor = &writer->tensors[order[k]];

        json_t *shape = json_array();
        for (int i = 0; shape != NULL && i < tensor->n_dims; i++) {
            if (json_array_append_new(shape, json_integer((json_int_t)tensor->shape[i])) != 0) {
                json_decref(shape);
                shape = NULL;
            }
        }

        /* The "o" format steals the shape reference, also when json_pack fails. */
        json_t *entry = NULL;
        if (shape != NULL) {
            entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", bm_st_dtype_name(tensor->dtype),
                              "shape", shape, "data_offsets", (json_int_t)offset,
                              (json_int_t)(offset + tensor->n_bytes));
        }
        if (entry == NULL || json_object_set_new(header, tensor->name, entry) != 0) {
            status = bm__fail(error, BM_ERR_NO_MEMORY, "tensor '%s': cannot build its header entry",
                              tensor->name);
            goto done;
        }
        offset += tensor->n_bytes;
    }

    text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "safetensors header: cannot serialise");
        goto done;
    }

    const size_t length = strlen(text);
    const size_t padded = (length + 7) / 8 * 8;
    char *grown = realloc(text, padded);
    if (grown == NULL) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "safetensors header: cannot pad");
        goto done;
    }
    text = grown;
    memset(text + length, ' ', padded - length);

    *out = text;
    *out_size = padded;
    text = NULL;

done:
    free(text);
    json_decref(header);
    return status;
}

/* Writes all bytes, retrying short writes and interrupted calls. Returns 0 or an errno. */
static int write_all(int fd, const void *data, uint64_t size)
{
    const unsigned char *bytes = data;

    while (size > 0) {
        const size_t chunk = size < WRITE_CHUNK_BYTES ? (size_t)size : WRITE_CHUNK_BYTES;
        const ssize_t written = write(fd, bytes, chunk);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        bytes += written;
        size -= (uint64_t)written;
    }
    return 0;
}

/* Creates a new temporary file next to path. Returns the descriptor, or -1 with errno set. */
static int open_temporary(const char *path, char *temp_path, size_t temp_size)
{
    for (int attempt = 0; attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        const int length =
            snprintf(temp_path, temp_size, "%s.tmp-%ld-%d", path, (long)getpid(), attempt);
        if (length < 0 || (size_t)length >= temp_size) {
            errno = ENAMETOOLONG;
            return -1;
        }
        const int fd = open(temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) {
            return fd;
        }
    }
    errno = EEXIST;
    return -1;
}

static int host_is_little_endian(void)
{
    const uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 1;
}

bm_status bm_st_writer_write(const bm_st_writer *writer, const char *path, bm_error *error)
{
    if (path == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "safetensors writer: path is NULL");
    }
    if (!host_is_little_endian()) {
        return bm__fail(error, BM_ERR_UNSUPPORTED,
                        "%s: safetensors stores little-endian values and this host is "
                        "big-endian",
                        path);
    }

    bm_status status = BM_OK;
    char *header = NULL;
    size_t header_size = 0;
    int fd = -1;
    const size_t temp_size = strlen(path) + 64;
    char *temp_path = malloc(temp_size);
    int *order = malloc((size_t)(writer->n_tensors > 0 ? writer->n_tensors : 1) * sizeof *order);
    if (temp_path == NULL || order == NULL) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "%s: cannot allocate for writing", path);
        goto done;
    }

    layout_order(writer, order);
    status = build_header(writer, order, &header, &header_size, error);
    if (status != BM_OK) {
        goto done;
    }

    fd = open_temporary(path, temp_path, temp_size);
    if (fd < 0) {
        status = bm__fail(error, BM_ERR_IO, "%s: cannot create a temporary file: %s", path,
                          strerror(errno));
        goto done;
    }

    unsigned char length_bytes[8];
    for (int i = 0; i < 8; i++) {
        length_bytes[i] = (unsigned char)((uint64_t)header_size >> (8 * i));
    }
    int err = write_all(fd, length_bytes, sizeof length_bytes);
    if (err == 0) {
        err = write_all(fd, header, header_size);
    }
    for (int k = 0; err == 0 && k < writer->n_tensors; k++) {
        const writer_tensor *tensor = &writer->tensors[order[k]];
        err = write_all(fd, tensor->data, tensor->n_bytes);
    }
    if (err == 0 && fsync(fd) != 0) {
        err = errno;
    }
    if (close(fd) != 0 && err == 0) {
        err = errno;
    }
    fd = -1;
    if (err != 0) {
        status =
            bm__fail(error, BM_ERR_IO, "%s: cannot write %s: %s", path, temp_path, strerror(err));
        unlink(temp_path);
        goto done;
    }

    if (rename(temp_path, path) != 0) {
        status = bm__fail(error, BM_ERR_IO, "%s: cannot rename %s into place: %s", path, temp_path,
                          strerror(errno));
        unlink(temp_path);
        goto done;
    }

done:
    free(order);
    free(header);
    free(temp_path);
    return status;
}
