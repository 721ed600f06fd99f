/*
 * The safetensors reader. Every check that protects later code from a corrupt or hostile file
 * happens here, at open time: header length against the file size, JSON shape of each entry,
 * dtype, shape, byte range, element count and overlap. After bm_st_open succeeds, a tensor view
 * can be read in full without any further bounds check.
 */
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error_internal.h"

struct bm_st_file {
    uint8_t *allocation; /* owns the bytes; the file starts at bytes */
    const uint8_t *bytes;
    size_t size;
    const uint8_t *data; /* first byte after the header */
    size_t data_size;
    json_t *header;
    json_t *metadata; /* borrowed from header, may be NULL */
    bm_st_tensor *tensors;
    int n_tensors;
};

static const struct {
    const char *name;
    size_t size;
} dtype_table[BM_ST_DTYPE_COUNT] = {
    [BM_ST_F32] = {"F32", 4}, [BM_ST_F64] = {"F64", 8}, [BM_ST_I32] = {"I32", 4},
    [BM_ST_I64] = {"I64", 8}, [BM_ST_U8] = {"U8", 1},
};

const char *bm_st_dtype_name(bm_st_dtype dtype)
{
    if ((unsigned)dtype >= BM_ST_DTYPE_COUNT) {
        return "?";
    }
    return dtype_table[dtype].name;
}

size_t bm_st_dtype_size(bm_st_dtype dtype)
{
    if ((unsigned)dtype >= BM_ST_DTYPE_COUNT) {
        return 0;
    }
    return dtype_table[dtype].size;
}

void bm_st_format_shape(const int64_t *shape, int n_dims, char *buf, size_t size)
{
    size_t used = 0;
    int written = snprintf(buf, size, "[");
    if (written < 0) {
        return;
    }
    used = (size_t)written;

    for (int i = 0; i < n_dims && used < size; i++) {
        written = snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (written < 0) {
            return;
        }
        used += (size_t)written;
    }
    if (used < size) {
        snprintf(buf + used, size - used, "]");
    }
}

static int parse_dtype(const char *name, bm_st_dtype *out)
{
    for (int i = 0; i < BM_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (bm_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) {
        value = (value << 8) | p[i];
    }
    return value;
}

/* Fills one tensor view from its header entry, checking everything against the data section. */
static bm_status parse_tensor(bm_st_file *file, const char *name, json_t *entry, bm_st_tensor *t,
                              bm_error *error)
{
    if (!json_is_object(entry)) {
        return bm__fail(error, BM_ERR_FORMAT, "tensor '%s': header entry is not a JSON object",
                        name);
    }

    json_t *dtype = json_object_get(entry, "dtype");
    json_t *shape = json_object_get(entry, "shape");
    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets)) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "tensor '%s': header entry needs a string 'dtype', an array 'shape' and "
                        "an array 'data_offsets'",
                        name);
    }

    t->name = name;
    if (!parse_dtype(json_string_value(dtype), &t->dtype)) {
        return bm__fail(error, BM_ERR_DTYPE,
                        "tensor '%s': dtype '%s' is not supported (expected F32, F64, I32, I64 "
                        "or U8)",
                        name, json_string_value(dtype));
    }

    size_t n_dims = json_array_size(shape);
    if (n_dims > BM_ST_MAX_DIMS) {
        return bm__fail(error, BM_ERR_SHAPE, "tensor '%s': %zu dimensions, at most %d supported",
                        name, n_dims, BM_ST_MAX_DIMS);
    }
    t->n_dims = (int)n_dims;

    uint64_t count = 1;
    for (size_t i = 0; i < n_dims; i++) {
        json_t *dim = json_array_get(shape, i);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0) {
            return bm__fail(error, BM_ERR_SHAPE,
                            "tensor '%s': dimension %zu is not a non-negative integer", name, i);
        }
        t->shape[i] = json_integer_value(dim);

        /* The product must fit in the data section, so anything that would pass the data
         * size is rejected before it can overflow. */
        uint64_t dim_value = (uint64_t)t->shape[i];
        if (dim_value != 0 && count > file->data_size / dim_value) {
            return bm__fail(error, BM_ERR_SHAPE,
                            "tensor '%s': shape has more elements than the file has bytes", name);
        }
        count *= dim_value;
    }
    t->n_elements = count;

    if (json_array_size(offsets) != 2 || !json_is_integer(json_array_get(offsets, 0)) ||
        !json_is_integer(json_array_get(offsets, 1))) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "tensor '%s': 'data_offsets' must be two integers [begin, end]", name);
    }
    json_int_t begin = json_integer_value(json_array_get(offsets, 0));
    json_int_t end = json_integer_value(json_array_get(offsets, 1));
    if (begin < 0 || end < begin || (uint64_t)end > file->data_size) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "tensor '%s': data_offsets [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                        "] lie outside the %zu data bytes of the file",
                        name, begin, end, file->data_size);
    }

    size_t element_size = bm_st_dtype_size(t->dtype);
    uint64_t expected_bytes = count * element_size;
    if ((uint64_t)(end - begin) != expected_bytes) {
        char shape_text[128];
        bm_st_format_shape(t->shape, t->n_dims, shape_text, sizeof shape_text);
        return bm__fail(error, BM_ERR_FORMAT,
                        "tensor '%s': %s %s needs %" PRIu64 " bytes, data_offsets give %" PRIu64,
                        name, bm_st_dtype_name(t->dtype), shape_text, expected_bytes,
                        (uint64_t)(end - begin));
    }
    if ((uint64_t)begin % element_size != 0) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "tensor '%s': data offset %" JSON_INTEGER_FORMAT
                        " is not a multiple of the element size %zu",
                        name, begin, element_size);
    }

    t->data = file->data + begin;
    t->n_bytes = (size_t)(end - begin);
    return BM_OK;
}

static int compare_by_offset(const void *a, const void *b)
{
    const bm_st_tensor *x = a;
    const bm_st_tensor *y = b;
    if (x->data != y->data) {
        return x->data < y->data ? -1 : 1;
    }
    return x->n_bytes < y->n_bytes ? -1 : (x->n_bytes > y->n_bytes);
}

/* Rejects files whose tensors share bytes: a writer never produces them, and a reader that
 * accepted them could be tricked into aliasing weights. */
static bm_status check_overlaps(bm_st_file *file, bm_error *error)
{
    if (file->n_tensors < 2) {
        return BM_OK;
    }

    bm_st_tensor *sorted = malloc((size_t)file->n_tensors * sizeof *sorted);
    if (sorted == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "safetensors: no memory for %d tensor views",
                        file->n_tensors);
    }
    memcpy(sorted, file->tensors, (size_t)file->n_tensors * sizeof *sorted);
    qsort(sorted, (size_t)file->n_tensors, sizeof *sorted, compare_by_offset);

    bm_status status = BM_OK;
    for (int i = 1; i < file->n_tensors; i++) {
        const bm_st_tensor *prev = &sorted[i - 1];
        if (prev->n_bytes > 0 &&
            (const uint8_t *)prev->data + prev->n_bytes > (const uint8_t *)sorted[i].data) {
            status = bm__fail(error, BM_ERR_FORMAT, "tensors '%s' and '%s' overlap in the file",
                              prev->name, sorted[i].name);
            break;
        }
    }
    free(sorted);
    return status;
}

static bm_status parse_header(bm_st_file *file, size_t header_size, bm_error *error)
{
    json_error_t json_error;
    file->header = json_loadb((const char *)file->bytes + 8, header_size,
                              JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &json_error);
    if (file->header == NULL) {
        return bm__fail(error, BM_ERR_FORMAT, "safetensors header is not valid JSON: %s (at %d)",
                        json_error.text, json_error.position);
    }
    if (!json_is_object(file->header)) {
        return bm__fail(error, BM_ERR_FORMAT, "safetensors header is not a JSON object");
    }

    file->metadata = json_object_get(file->header, "__metadata__");
    if (file->metadata != NULL) {
        if (!json_is_object(file->metadata)) {
            return bm__fail(error, BM_ERR_FORMAT, "__metadata__ is not a JSON object");
        }
        const char *key;
        json_t *value;
        json_object_foreach(file->metadata, key, value)
        {
            if (!json_is_string(value)) {
                return bm__fail(error, BM_ERR_FORMAT, "__metadata__['%s'] is not a string", key);
            }
        }
    }

    size_t n_entries = json_object_size(file->header) - (file->metadata != NULL);
    file->tensors = calloc(n_entries ? n_entries : 1, sizeof *file->tensors);
    if (file->tensors == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "safetensors: no memory for %zu tensor views",
                        n_entries);
    }

    const char *name;
    json_t *entry;
    json_object_foreach(file->header, name, entry)
    {
        if (strcmp(name, "__metadata__") == 0) {
            continue;
        }
        bm_status status = parse_tensor(file, name, entry, &file->tensors[file->n_tensors], error);
        if (status != BM_OK) {
            return status;
        }
        file->n_tensors++;
    }

    return check_overlaps(file, error);
}

/* Validates the length prefix and places the file so that its data section starts on an
 * 8-byte boundary, which keeps every aligned tensor offset aligned in memory. */
static bm_status validate_prefix(const uint8_t *prefix, size_t size, uint64_t *header_size,
                                 bm_error *error)
{
    if (size < 8) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "file is %zu bytes, too short for the 8-byte safetensors header length",
                        size);
    }

    uint64_t n = read_le64(prefix);
    if (n < 2 || n > BM_ST_MAX_HEADER_BYTES) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "safetensors header length %" PRIu64 " is outside 2..%u bytes", n,
                        BM_ST_MAX_HEADER_BYTES);
    }
    if (n > size - 8) {
        return bm__fail(error, BM_ERR_FORMAT,
                        "safetensors header length %" PRIu64
                        " exceeds the %zu bytes that follow it (truncated file?)",
                        n, size - 8);
    }
    *header_size = n;
    return BM_OK;
}

static bm_status finish_open(bm_st_file *file, uint64_t header_size, bm_st_file **out,
                             bm_error *error)
{
    file->data = file->bytes + 8 + header_size;
    file->data_size = file->size - 8 - (size_t)header_size;

    bm_status status = parse_header(file, (size_t)header_size, error);
    if (status != BM_OK) {
        bm_st_close(file);
        return status;
    }
    *out = file;
    return BM_OK;
}

/* Allocates room for size bytes placed so that byte 8 + header_size is 8-aligned. */
static bm_st_file *allocate_file(size_t size, uint64_t header_size, bm_error *error)
{
    bm_st_file *file = calloc(1, sizeof *file);
    if (file == NULL) {
        bm__fail(error, BM_ERR_NO_MEMORY, "safetensors: no memory for the file handle");
        return NULL;
    }

    size_t shift = (8 - (size_t)((8 + header_size) % 8)) % 8;
    file->allocation = malloc(size + shift + 1);
    if (file->allocation == NULL) {
        bm__fail(error, BM_ERR_NO_MEMORY, "safetensors: no memory for %zu bytes", size);
        free(file);
        return NULL;
    }
    file->bytes = file->allocation + shift;
    file->size = size;
    return file;
}

bm_status bm_st_open_buffer(const void *data, size_t size, bm_st_file **out, bm_error *error)
{
    if (out == NULL || (data == NULL && size > 0)) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "bm_st_open_buffer: NULL argument");
    }
    *out = NULL;

    uint64_t header_size;
    bm_status status = validate_prefix(data, size, &header_size, error);
    if (status != BM_OK) {
        return status;
    }

    bm_st_file *file = allocate_file(size, header_size, error);
    if (file == NULL) {
        return BM_ERR_NO_MEMORY;
    }
    memcpy((uint8_t *)file->bytes, data, size);
    return finish_open(file, header_size, out, error);
}

bm_status bm_st_open(const char *path, bm_st_file **out, bm_error *error)
{
    if (path == NULL || out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "bm_st_open: NULL argument");
    }
    *out = NULL;

    FILE *stream = fopen(path, "rb");
    if (stream == NULL) {
        return bm__fail(error, BM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    }

    /* Devices, FIFOs and directories have no meaningful size; /dev/zero would read forever. */
    struct stat info;
    if (fstat(fileno(stream), &info) != 0 || !S_ISREG(info.st_mode)) {
        fclose(stream);
        return bm__fail(error, BM_ERR_IO, "cannot read '%s': not a regular file", path);
    }

    bm_status status = BM_OK;
    bm_st_file *file = NULL;
    long end = -1;
    if (fseek(stream, 0, SEEK_END) != 0 || (end = ftell(stream)) < 0 ||
        fseek(stream, 0, SEEK_SET) != 0) {
        status = bm__fail(error, BM_ERR_IO, "cannot determine the size of '%s': %s", path,
                          strerror(errno));
        goto close_stream;
    }

    size_t size = (size_t)end;
    uint8_t prefix[8] = {0};
    if (size >= sizeof prefix && fread(prefix, 1, sizeof prefix, stream) != sizeof prefix) {
        status = bm__fail(error, BM_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        goto close_stream;
    }
    uint64_t header_size;
    status = validate_prefix(prefix, size, &header_size, error);
    if (status != BM_OK) {
        goto close_stream;
    }

    file = allocate_file(size, header_size, error);
    if (file == NULL) {
        status = BM_ERR_NO_MEMORY;
        goto close_stream;
    }
    memcpy((uint8_t *)file->bytes, prefix, 8);
    if (fread((uint8_t *)file->bytes + 8, 1, size - 8, stream) != size - 8) {
        status =
            bm__fail(error, BM_ERR_IO, "cannot read '%s': the file changed while reading", path);
        goto free_file;
    }
    fclose(stream);
    return finish_open(file, header_size, out, error);

free_file:
    bm_st_close(file);
close_stream:
    fclose(stream);
    return status;
}

void bm_st_close(bm_st_file *file)
{
    if (file == NULL) {
        return;
    }
    json_decref(file->header);
    free(file->tensors);
    free(file->allocation);
    free(file);
}

int bm_st_tensor_count(const bm_st_file *file)
{
    return file->n_tensors;
}

const bm_st_tensor *bm_st_tensor_at(const bm_st_file *file, int index)
{
    if (index < 0 || index >= file->n_tensors) {
        return NULL;
    }
    return &file->tensors[index];
}

const bm_st_tensor *bm_st_find(const bm_st_file *file, const char *name)
{
    for (int i = 0; i < file->n_tensors; i++) {
        if (strcmp(file->tensors[i].name, name) == 0) {
            return &file->tensors[i];
        }
    }
    return NULL;
}

const char *bm_st_metadata(const bm_st_file *file, const char *key)
{
    if (file->metadata == NULL) {
        return NULL;
    }
    return json_string_value(json_object_get(file->metadata, key));
}

const uint8_t *bm_st_bytes(const bm_st_file *file, size_t *size)
{
    *size = file->size;
    return file->bytes;
}
