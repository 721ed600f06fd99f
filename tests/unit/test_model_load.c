/*
 * Rejection of bad model files. Each test rebuilds a valid golden model with one defect and
 * checks that bm_model_load fails with the right code and a message naming the tensor or key.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/infer.h"
#include "babymamba/model.h"
#include "safetensors.h"
#include "test_util.h"

#define BASE_MODEL "cx_c1_fwd_mean.safetensors"
#define GATED_MODEL "cx_c3_fwd_gated.safetensors"

/* A model file being rebuilt: a JSON header and a data section that grows as tensors are
 * added. */
typedef struct builder {
    json_t *header;
    unsigned char *data;
    size_t size;
} builder;

static void builder_add(builder *b, const char *name, const char *dtype, json_t *shape,
                        const void *bytes, size_t n_bytes)
{
    /* Keep offsets 8-aligned like real writers. */
    size_t begin = (b->size + 7) & ~(size_t)7;
    b->data = realloc(b->data, begin + n_bytes + 8);
    memset(b->data + b->size, 0, begin - b->size);
    memcpy(b->data + begin, bytes, n_bytes);
    b->size = begin + n_bytes;
    json_object_set_new(b->header, name,
                        json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype, "shape", shape,
                                  "data_offsets", (json_int_t)begin, (json_int_t)b->size));
}

static json_t *shape_of(const bm_st_tensor *t)
{
    json_t *shape = json_array();
    for (int i = 0; i < t->n_dims; i++) {
        json_array_append_new(shape, json_integer(t->shape[i]));
    }
    return shape;
}

/* Copies every tensor of a golden model except skip (NULL for none) into a builder. */
static bm_st_file *builder_from_golden(builder *b, const char *file_name, const char *skip)
{
    char path[1024];
    test_golden_path(file_name, path, sizeof path);
    bm_st_file *file = NULL;
    bm_error error;
    ck_assert_msg(bm_st_open(path, &file, &error) == BM_OK, "%s: %s", path, error.message);

    b->header = json_object();
    b->data = NULL;
    b->size = 0;
    json_object_set_new(b->header, "__metadata__",
                        json_pack("{s:s}", "babymamba", bm_st_metadata(file, "babymamba")));
    for (int i = 0; i < bm_st_tensor_count(file); i++) {
        const bm_st_tensor *t = bm_st_tensor_at(file, i);
        if (skip == NULL || strcmp(t->name, skip) != 0) {
            builder_add(b, t->name, bm_st_dtype_name(t->dtype), shape_of(t), t->data, t->n_bytes);
        }
    }
    return file;
}

/* Serialises the builder: 8-byte length, header, data. */
static unsigned char *builder_bytes(builder *b, size_t *size)
{
    char *header = json_dumps(b->header, JSON_COMPACT);
    size_t header_size = strlen(header);
    *size = 8 + header_size + b->size;
    unsigned char *bytes = malloc(*size);
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)((uint64_t)header_size >> (8 * i));
    }
    memcpy(bytes + 8, header, header_size);
    memcpy(bytes + 8 + header_size, b->data, b->size);
    free(header);
    return bytes;
}

static void builder_free(builder *b)
{
    json_decref(b->header);
    free(b->data);
}

/* Loads bytes as a model through a real file and returns the status; error receives the
 * message. */
static bm_status load_bytes(const unsigned char *bytes, size_t size, bm_error *error)
{
    char path[1024];
    test_temp_path(".safetensors", path, sizeof path);
    ck_assert(test_write_file(path, bytes, size));
    bm_model *model = NULL;
    bm_error_clear(error);
    bm_status status = bm_model_load(path, &model, error);
    remove(path);

    /* The buffer loader must agree with the file loader. */
    bm_model *from_buffer = NULL;
    bm_error buffer_error;
    ck_assert_int_eq(bm_model_load_buffer(bytes, size, &from_buffer, &buffer_error), status);
    if (status == BM_OK) {
        ck_assert_ptr_nonnull(model);
    } else {
        ck_assert_ptr_null(model);
        ck_assert_ptr_null(from_buffer);
    }
    bm_model_destroy(from_buffer);
    bm_model_destroy(model);
    return status;
}

static bm_status load_builder(builder *b, bm_error *error)
{
    size_t size;
    unsigned char *bytes = builder_bytes(b, &size);
    bm_status status = load_bytes(bytes, size, error);
    free(bytes);
    return status;
}

#define ck_assert_message_has(error, text)                                                     \
    ck_assert_msg(strstr((error).message, (text)) != NULL, "message '%s' lacks '%s'",          \
                  (error).message, (text))

START_TEST(rebuilt_golden_model_loads)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
    bm_error error;
    ck_assert_msg(load_builder(&b, &error) == BM_OK, "%s", error.message);
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(truncated_file_rejected)
{
    char path[1024];
    test_golden_path(BASE_MODEL, path, sizeof path);
    size_t size;
    unsigned char *bytes = test_read_file(path, &size);
    ck_assert_ptr_nonnull(bytes);

    /* Cut inside the length prefix, inside the header, inside the data and one byte short. */
    size_t cuts[] = {0, 5, 8, 40, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        bm_error error;
        bm_status status = load_bytes(bytes, cuts[i], &error);
        ck_assert_msg(status == BM_ERR_FORMAT, "cut at %zu: status %s (%s)", cuts[i],
                      bm_status_name(status), error.message);
        ck_assert_msg(strlen(error.message) > 10, "cut at %zu: empty message", cuts[i]);
    }
    free(bytes);
}
END_TEST

START_TEST(oversized_header_length_rejected)
{
    char path[1024];
    test_golden_path(BASE_MODEL, path, sizeof path);
    size_t size;
    unsigned char *bytes = test_read_file(path, &size);

    /* A header length past the end of the file, and one far beyond any sane header. */
    uint64_t claims[] = {(uint64_t)size, (uint64_t)1 << 40, UINT64_MAX};
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        for (int j = 0; j < 8; j++) {
            bytes[j] = (unsigned char)(claims[i] >> (8 * j));
        }
        bm_error error;
        ck_assert_int_eq(load_bytes(bytes, size, &error), BM_ERR_FORMAT);
        ck_assert_message_has(error, "header length");
    }
    free(bytes);
}
END_TEST

START_TEST(oversized_tensor_rejected)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
    bm_error error;

    /* data_offsets that run past the end of the data section. */
    json_t *entry = json_object_get(b.header, "head.linear.bias");
    json_array_set_new(json_object_get(entry, "data_offsets"), 1,
                       json_integer((json_int_t)b.size + 64));
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_FORMAT);
    ck_assert_message_has(error, "head.linear.bias");
    builder_free(&b);

    /* A shape with more elements than the file has bytes, which must not overflow. */
    original = (bm_st_close(original), builder_from_golden(&b, BASE_MODEL, NULL));
    entry = json_object_get(b.header, "pos_embed");
    json_object_set_new(entry, "shape", json_pack("[I, I]", (json_int_t)1 << 40,
                                                  (json_int_t)1 << 40));
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_SHAPE);
    ck_assert_message_has(error, "pos_embed");
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(wrong_dtype_rejected)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, "layers.0.mixer.D");
    const bm_st_tensor *d = bm_st_find(original, "layers.0.mixer.D");
    ck_assert_ptr_nonnull(d);

    /* The same values stored as F64: a valid container, but not what the engine reads. */
    double *wide = malloc(d->n_elements * sizeof *wide);
    for (uint64_t i = 0; i < d->n_elements; i++) {
        wide[i] = ((const float *)d->data)[i];
    }
    builder_add(&b, d->name, "F64", shape_of(d), wide, d->n_elements * sizeof *wide);

    bm_error error;
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_DTYPE);
    ck_assert_message_has(error, "layers.0.mixer.D");
    ck_assert_message_has(error, "F64");

    /* An unknown dtype name is rejected by the container reader. */
    json_object_set_new(json_object_get(b.header, "layers.0.mixer.D"), "dtype",
                        json_string("BF16"));
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_DTYPE);
    ck_assert_message_has(error, "BF16");

    free(wide);
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(wrong_shape_rejected)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);

    /* Swap the two dimensions of in_proj: same byte count, wrong layout. */
    json_t *entry = json_object_get(b.header, "layers.0.mixer.in_proj.weight");
    json_t *shape = json_object_get(entry, "shape");
    json_int_t rows = json_integer_value(json_array_get(shape, 0));
    json_int_t cols = json_integer_value(json_array_get(shape, 1));
    json_object_set_new(entry, "shape", json_pack("[I, I]", cols, rows));

    bm_error error;
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_SHAPE);
    ck_assert_message_has(error, "layers.0.mixer.in_proj.weight");
    ck_assert_message_has(error, "expected shape");
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(missing_tensor_rejected)
{
    const char *names[] = {"layers.0.mixer.A_log", "stem.bn.running_var", "pos_embed",
                           "head.linear.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        builder b;
        bm_st_file *original = builder_from_golden(&b, BASE_MODEL, names[i]);
        bm_error error;
        ck_assert_int_eq(load_builder(&b, &error), BM_ERR_MISSING_TENSOR);
        ck_assert_message_has(error, names[i]);
        builder_free(&b);
        bm_st_close(original);
    }

    /* Gated pooling needs its three tensors. */
    builder b;
    bm_st_file *original = builder_from_golden(&b, GATED_MODEL, "pool.context");
    bm_error error;
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_MISSING_TENSOR);
    ck_assert_message_has(error, "pool.context");
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(unexpected_tensor_rejected)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
    float extra[4] = {1, 2, 3, 4};
    builder_add(&b, "layers.9.mixer.D", "F32", json_pack("[i]", 4), extra, sizeof extra);

    bm_error error;
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_UNEXPECTED_TENSOR);
    ck_assert_message_has(error, "layers.9.mixer.D");
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(overlapping_tensors_rejected)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
    json_t *a = json_object_get(json_object_get(b.header, "head.norm.weight"), "data_offsets");
    json_t *c = json_object_get(json_object_get(b.header, "head.norm.bias"), "data_offsets");
    json_array_set(c, 0, json_array_get(a, 0));
    json_array_set(c, 1, json_array_get(a, 1));

    bm_error error;
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_FORMAT);
    ck_assert_message_has(error, "overlap");
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

/* Replaces one key of the metadata document and loads the result. */
static bm_status load_with_metadata(const char *section, const char *key, json_t *value,
                                    bm_error *error)
{
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
    json_t *meta = json_loads(bm_st_metadata(original, "babymamba"), 0, NULL);
    json_t *target = section != NULL ? json_object_get(meta, section) : meta;
    if (value != NULL) {
        json_object_set_new(target, key, value);
    } else {
        json_object_del(target, key);
    }
    char *text = json_dumps(meta, JSON_COMPACT);
    json_object_set_new(b.header, "__metadata__", json_pack("{s:s}", "babymamba", text));

    bm_status status = load_builder(&b, error);
    free(text);
    json_decref(meta);
    builder_free(&b);
    bm_st_close(original);
    return status;
}

START_TEST(bad_metadata_rejected)
{
    bm_error error;
    ck_assert_int_eq(load_with_metadata(NULL, "format_version", json_integer(99), &error),
                     BM_ERR_VERSION);
    ck_assert_message_has(error, "format_version");

    ck_assert_int_eq(load_with_metadata("architecture", "d_model", json_integer(0), &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "architecture.d_model");

    ck_assert_int_eq(load_with_metadata("architecture", "family", json_string("rnn"), &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "rnn");

    ck_assert_int_eq(load_with_metadata("architecture", "pooling", NULL, &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "architecture.pooling");

    ck_assert_int_eq(load_with_metadata("input", "window_length", json_integer(4), &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "window_length");

    /* A d_model that disagrees with the tensors is caught by the shape check. */
    ck_assert_int_eq(load_with_metadata("architecture", "d_model", json_integer(7), &error),
                     BM_ERR_SHAPE);

    /* A class list longer than the head is caught by the head's shape. */
    ck_assert_int_eq(
        load_with_metadata(NULL, "classes", json_pack("[s, s, s, s, s, s, s, s, s, s, s, s, s]",
                                                      "a", "b", "c", "d", "e", "f", "g", "h",
                                                      "i", "j", "k", "l", "m"),
                           &error),
        BM_ERR_SHAPE);
    ck_assert_message_has(error, "head.linear");
}
END_TEST

/* Overwrites every element of one F32 tensor of the builder with value. */
static void fill_tensor(builder *b, const char *name, float value)
{
    json_t *offsets = json_object_get(json_object_get(b->header, name), "data_offsets");
    ck_assert_ptr_nonnull(offsets);
    size_t begin = (size_t)json_integer_value(json_array_get(offsets, 0));
    size_t end = (size_t)json_integer_value(json_array_get(offsets, 1));
    for (size_t at = begin; at < end; at += sizeof value) {
        memcpy(b->data + at, &value, sizeof value);
    }
}

START_TEST(non_finite_weights_rejected)
{
    const char *names[] = {"layers.0.mixer.in_proj.weight", "pos_embed", "head.linear.bias"};
    float values[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        builder b;
        bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
        fill_tensor(&b, names[i], values[i]);
        bm_error error;
        ck_assert_int_eq(load_builder(&b, &error), BM_ERR_RANGE);
        ck_assert_message_has(error, names[i]);
        builder_free(&b);
        bm_st_close(original);
    }

    /* A finite A_log whose exponential overflows float32. */
    builder b;
    bm_st_file *original = builder_from_golden(&b, BASE_MODEL, NULL);
    fill_tensor(&b, "layers.0.mixer.A_log", 100.0f);
    bm_error error;
    ck_assert_int_eq(load_builder(&b, &error), BM_ERR_RANGE);
    ck_assert_message_has(error, "layers.0.mixer.A_log");
    builder_free(&b);
    bm_st_close(original);
}
END_TEST

START_TEST(float32_limits_of_metadata_rejected)
{
    bm_error error;

    /* Positive or finite as doubles, but 0 or infinity as the floats the engine uses. */
    ck_assert_int_eq(load_with_metadata("architecture", "norm_eps", json_real(1e-50), &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "architecture.norm_eps");

    json_t *meta_std = json_pack("{s:[f], s:[f]}", "mean", 0.0, "std", 1e-50);
    ck_assert_int_eq(load_with_metadata("input", "normalization", meta_std, &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "input.normalization.std[0]");

    json_t *meta_mean = json_pack("{s:[f], s:[f]}", "mean", 1e39, "std", 1.0);
    ck_assert_int_eq(load_with_metadata("input", "normalization", meta_mean, &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "input.normalization.mean[0]");
}
END_TEST

START_TEST(unknown_preprocessing_rejected)
{
    bm_error error;
    ck_assert_int_eq(load_with_metadata("input", "preprocessing", json_string("fancy-v9"), &error),
                     BM_ERR_METADATA);
    ck_assert_message_has(error, "fancy-v9");

    /* hapt-causal-v1 produces 9 channels; the base model has 1. */
    ck_assert_int_eq(
        load_with_metadata("input", "preprocessing", json_string("hapt-causal-v1"), &error),
        BM_ERR_METADATA);
    ck_assert_message_has(error, "9 channels");
}
END_TEST

START_TEST(not_a_model_rejected)
{
    const unsigned char junk[] = "this is not a safetensors file at all";
    bm_error error;
    ck_assert_int_eq(load_bytes(junk, sizeof junk, &error), BM_ERR_FORMAT);

    bm_model *model = NULL;
    ck_assert_int_eq(bm_model_load("/nonexistent/model.safetensors", &model, &error), BM_ERR_IO);
    ck_assert_message_has(error, "/nonexistent/model.safetensors");
}
END_TEST

/* Flipping random header bytes must never crash or read out of bounds (the sanitizer build
 * checks the second part); whatever loads must still run. */
START_TEST(corrupted_headers_never_crash)
{
    char path[1024];
    test_golden_path(BASE_MODEL, path, sizeof path);
    size_t size;
    unsigned char *original = test_read_file(path, &size);
    unsigned char *bytes = malloc(size);
    uint64_t header_size = 0;
    for (int j = 7; j >= 0; j--) {
        header_size = (header_size << 8) | original[j];
    }
    size_t header_end = 8 + (size_t)header_size;

    unsigned state = 12345;
    int loaded = 0;
    for (int trial = 0; trial < 2000; trial++) {
        memcpy(bytes, original, size);
        for (int flips = 0; flips < 3; flips++) {
            state = state * 1103515245u + 12345u;
            size_t at = (state >> 8) % header_end;
            state = state * 1103515245u + 12345u;
            bytes[at] = (unsigned char)(state >> 16);
        }
        bm_model *model = NULL;
        bm_error error;
        if (bm_model_load_buffer(bytes, size, &model, &error) == BM_OK) {
            loaded++;
            bm_ctx *ctx = NULL;
            const bm_model_info *info = bm_model_get_info(model);
            if (bm_ctx_create(model, &ctx, &error) == BM_OK) {
                float *window = calloc((size_t)info->window_length * info->n_channels, 4);
                float *logits = calloc((size_t)info->n_classes, 4);
                bm_ctx_run(ctx, window, logits, NULL, &error);
                free(logits);
                free(window);
            }
            bm_ctx_destroy(ctx);
            bm_model_destroy(model);
        } else {
            ck_assert_int_ne(error.status, BM_OK);
            ck_assert(strlen(error.message) > 0);
        }
    }
    (void)loaded;
    free(bytes);
    free(original);
}
END_TEST

START_TEST(non_finite_input_rejected)
{
    char path[1024];
    test_golden_path(BASE_MODEL, path, sizeof path);
    bm_model *model = NULL;
    bm_error error;
    ck_assert_int_eq(bm_model_load(path, &model, &error), BM_OK);
    const bm_model_info *info = bm_model_get_info(model);
    bm_ctx *ctx = NULL;
    ck_assert_int_eq(bm_ctx_create(model, &ctx, &error), BM_OK);

    size_t n = (size_t)info->window_length * info->n_channels;
    float *window = calloc(n, sizeof *window);
    float logits[64] = {0};
    float sentinel = 12345.0f;
    for (int k = 0; k < info->n_classes; k++) {
        logits[k] = sentinel;
    }

    float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        window[n / 2] = bad[i];
        ck_assert_int_eq(bm_ctx_run(ctx, window, logits, NULL, &error), BM_ERR_NON_FINITE);
        ck_assert_message_has(error, "sample");
        ck_assert(logits[0] == sentinel);
    }

    /* Extreme but finite inputs give finite logits. */
    for (size_t i = 0; i < n; i++) {
        window[i] = (i % 3 == 0) ? 1e4f : (i % 3 == 1 ? -1e4f : 0.0f);
    }
    ck_assert_int_eq(bm_ctx_run(ctx, window, logits, NULL, &error), BM_OK);
    for (int k = 0; k < info->n_classes; k++) {
        ck_assert(isfinite(logits[k]));
    }

    /* Finite inputs near float32's limit overflow inside the network: a clear error, and no
     * undefined behaviour on the way (the sanitizer build checks that). */
    for (size_t i = 0; i < n; i++) {
        window[i] = 2e38f;
    }
    bm_status status = bm_ctx_run(ctx, window, logits, NULL, &error);
    if (status != BM_OK) {
        ck_assert_int_eq(status, BM_ERR_NON_FINITE);
        ck_assert_message_has(error, "overflow");
    }

    free(window);
    bm_ctx_destroy(ctx);
    bm_model_destroy(model);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("model_load");
    TCase *tc = tcase_create("rejection");
    tcase_add_test(tc, rebuilt_golden_model_loads);
    tcase_add_test(tc, truncated_file_rejected);
    tcase_add_test(tc, oversized_header_length_rejected);
    tcase_add_test(tc, oversized_tensor_rejected);
    tcase_add_test(tc, wrong_dtype_rejected);
    tcase_add_test(tc, wrong_shape_rejected);
    tcase_add_test(tc, missing_tensor_rejected);
    tcase_add_test(tc, unexpected_tensor_rejected);
    tcase_add_test(tc, overlapping_tensors_rejected);
    tcase_add_test(tc, bad_metadata_rejected);
    tcase_add_test(tc, non_finite_weights_rejected);
    tcase_add_test(tc, float32_limits_of_metadata_rejected);
    tcase_add_test(tc, unknown_preprocessing_rejected);
    tcase_add_test(tc, not_a_model_rejected);
    tcase_add_test(tc, corrupted_headers_never_crash);
    tcase_add_test(tc, non_finite_input_rejected);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
