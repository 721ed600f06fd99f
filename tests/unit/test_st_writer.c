/*
 * Unit tests of the safetensors writer: files it writes are read back with the library's
 * reader, their raw bytes are checked against the format (length prefix, padded header,
 * aligned offsets), and invalid tensors and unwritable paths are rejected.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "st_writer.h"

/* Temporary directory of the running test, which remove_directory deletes with its files. */
static char directory[64];

static void make_directory(void)
{
    snprintf(directory, sizeof directory, "/tmp/bm_st_writer_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(directory));
}

/* Counts the entries of the directory other than "." and "..". */
static int count_entries(void)
{
    DIR *dir = opendir(directory);
    ck_assert_ptr_nonnull(dir);
    int count = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            count++;
        }
    }
    closedir(dir);
    return count;
}

static void remove_directory(void)
{
    DIR *dir = opendir(directory);
    if (dir == NULL) {
        return;
    }
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            char path[sizeof directory + 300];
            snprintf(path, sizeof path, "%s/%s", directory, entry->d_name);
            unlink(path);
        }
    }
    closedir(dir);
    rmdir(directory);
}

/* Reads a whole file into a malloc'ed buffer. */
static unsigned char *read_whole(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    ck_assert_ptr_nonnull(file);
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    fseek(file, 0, SEEK_SET);
    unsigned char *bytes = malloc(*size + 1);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_uint_eq(fread(bytes, 1, *size, file), *size);
    fclose(file);
    return bytes;
}

START_TEST(writer_round_trip_all_dtypes)
{
    make_directory();
    char path[128];
    snprintf(path, sizeof path, "%s/all.safetensors", directory);

    /* The 1- and 4-byte tensors are added first and have odd byte counts, so only the writer's
     * reordering keeps the 8-byte tensors aligned. */
    const uint8_t bytes[3] = {1, 2, 255};
    const float floats[2][3] = {{1.5f, -2.0f, 3.25f}, {0.0f, 1e-30f, -7.0f}};
    const int32_t ints[1] = {-123456};
    const double doubles[2] = {3.141592653589793, -1e300};
    const int64_t longs[3] = {INT64_MIN, 0, INT64_MAX};
    const int64_t bytes_shape[1] = {3};
    const int64_t floats_shape[2] = {2, 3};
    const int64_t ints_shape[1] = {1};
    const int64_t doubles_shape[1] = {2};
    const int64_t longs_shape[2] = {3, 1};

    bm_st_writer *writer = NULL;
    bm_error error;
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "bytes", BM_ST_U8, 1, bytes_shape, bytes, &error), BM_OK);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "floats", BM_ST_F32, 2, floats_shape, floats, &error),
        BM_OK);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "ints", BM_ST_I32, 1, ints_shape, ints, &error), BM_OK);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "doubles", BM_ST_F64, 1, doubles_shape, doubles, &error),
        BM_OK);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "longs", BM_ST_I64, 2, longs_shape, longs, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_set_metadata(writer, "babymamba", "{\"a\": \"\\u00e9\"}", &error),
                     BM_OK);
    ck_assert_int_eq(bm_st_writer_set_metadata(writer, "note", "first", &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_set_metadata(writer, "note", "second", &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_write(writer, path, &error), BM_OK);
    bm_st_writer_destroy(writer);

    bm_st_file *file = NULL;
    ck_assert_int_eq(bm_st_open(path, &file, &error), BM_OK);
    ck_assert_int_eq(bm_st_tensor_count(file), 5);
    ck_assert_str_eq(bm_st_metadata(file, "babymamba"), "{\"a\": \"\\u00e9\"}");
    ck_assert_str_eq(bm_st_metadata(file, "note"), "second");

    const bm_st_tensor *tensor = bm_st_find(file, "bytes");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->dtype, BM_ST_U8);
    ck_assert_int_eq(tensor->n_dims, 1);
    ck_assert_int_eq(tensor->shape[0], 3);
    ck_assert_mem_eq(tensor->data, bytes, sizeof bytes);

    tensor = bm_st_find(file, "floats");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->dtype, BM_ST_F32);
    ck_assert_int_eq(tensor->n_dims, 2);
    ck_assert_int_eq(tensor->shape[0], 2);
    ck_assert_int_eq(tensor->shape[1], 3);
    ck_assert_mem_eq(tensor->data, floats, sizeof floats);

    tensor = bm_st_find(file, "ints");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->dtype, BM_ST_I32);
    ck_assert_mem_eq(tensor->data, ints, sizeof ints);

    tensor = bm_st_find(file, "doubles");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->dtype, BM_ST_F64);
    ck_assert_mem_eq(tensor->data, doubles, sizeof doubles);

    tensor = bm_st_find(file, "longs");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->dtype, BM_ST_I64);
    ck_assert_int_eq(tensor->n_dims, 2);
    ck_assert_int_eq(tensor->shape[0], 3);
    ck_assert_int_eq(tensor->shape[1], 1);
    ck_assert_mem_eq(tensor->data, longs, sizeof longs);

    bm_st_close(file);
    remove_directory();
}
END_TEST

START_TEST(writer_layout_follows_format)
{
    make_directory();
    char path[128];
    snprintf(path, sizeof path, "%s/layout.safetensors", directory);

    const uint8_t small[1] = {7};
    const float floats[3] = {1.0f, 2.0f, 3.0f};
    const double wide[1] = {0.5};
    const int64_t one[1] = {1};
    const int64_t three[1] = {3};

    bm_st_writer *writer = NULL;
    bm_error error;
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "small", BM_ST_U8, 1, one, small, &error),
                     BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "floats", BM_ST_F32, 1, three, floats, &error),
                     BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "wide", BM_ST_F64, 1, one, wide, &error),
                     BM_OK);
    ck_assert_int_eq(bm_st_writer_write(writer, path, &error), BM_OK);
    bm_st_writer_destroy(writer);

    size_t size = 0;
    unsigned char *bytes = read_whole(path, &size);
    uint64_t header_size = 0;
    for (int i = 7; i >= 0; i--) {
        header_size = (header_size << 8) | bytes[i];
    }

    /* Length prefix, header padded with spaces to a multiple of 8, then 8 + 12 + 1 data bytes
     * with the 8-byte tensor first and the 1-byte tensor last. */
    ck_assert_uint_eq(header_size % 8, 0);
    ck_assert_uint_eq(size, 8 + header_size + 8 + 12 + 1);
    ck_assert_int_eq(bytes[8], '{');
    size_t last = 8 + header_size - 1;
    while (bytes[last] == ' ') {
        last--;
    }
    ck_assert_int_eq(bytes[last], '}');
    ck_assert_mem_eq(bytes + 8 + header_size, wide, 8);
    ck_assert_mem_eq(bytes + 8 + header_size + 8, floats, 12);
    ck_assert_int_eq(bytes[size - 1], 7);

    /* Without metadata the header has no __metadata__ entry. */
    bytes[8 + header_size] = '\0';
    ck_assert_ptr_null(strstr((const char *)bytes + 8, "__metadata__"));
    free(bytes);
    remove_directory();
}
END_TEST

START_TEST(writer_scalar_and_empty_tensors)
{
    make_directory();
    char path[128];
    snprintf(path, sizeof path, "%s/edge.safetensors", directory);

    const float scalar = 42.0f;
    const int64_t empty_shape[2] = {0, 9};

    bm_st_writer *writer = NULL;
    bm_error error;
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "scalar", BM_ST_F32, 0, NULL, &scalar, &error),
                     BM_OK);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "empty", BM_ST_F32, 2, empty_shape, NULL, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_write(writer, path, &error), BM_OK);
    bm_st_writer_destroy(writer);

    bm_st_file *file = NULL;
    ck_assert_int_eq(bm_st_open(path, &file, &error), BM_OK);
    const bm_st_tensor *tensor = bm_st_find(file, "scalar");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->n_dims, 0);
    ck_assert_uint_eq(tensor->n_elements, 1);
    ck_assert_float_eq(*(const float *)tensor->data, 42.0f);

    tensor = bm_st_find(file, "empty");
    ck_assert_ptr_nonnull(tensor);
    ck_assert_int_eq(tensor->n_dims, 2);
    ck_assert_uint_eq(tensor->n_elements, 0);
    ck_assert_uint_eq(tensor->n_bytes, 0);
    bm_st_close(file);
    remove_directory();
}
END_TEST

START_TEST(writer_replaces_file_without_leftovers)
{
    make_directory();
    char path[128];
    snprintf(path, sizeof path, "%s/data.safetensors", directory);
    FILE *old = fopen(path, "wb");
    ck_assert_ptr_nonnull(old);
    fputs("an older file that the writer must replace", old);
    fclose(old);

    const int32_t values[2] = {5, 6};
    const int64_t shape[1] = {2};
    bm_st_writer *writer = NULL;
    bm_error error;
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "values", BM_ST_I32, 1, shape, values, &error),
                     BM_OK);
    ck_assert_int_eq(bm_st_writer_write(writer, path, &error), BM_OK);
    bm_st_writer_destroy(writer);

    ck_assert_int_eq(count_entries(), 1);
    bm_st_file *file = NULL;
    ck_assert_int_eq(bm_st_open(path, &file, &error), BM_OK);
    ck_assert_mem_eq(bm_st_find(file, "values")->data, values, sizeof values);
    bm_st_close(file);
    remove_directory();
}
END_TEST

START_TEST(writer_reports_unwritable_path)
{
    make_directory();
    char path[160];
    snprintf(path, sizeof path, "%s/missing/data.safetensors", directory);

    const uint8_t value = 1;
    const int64_t shape[1] = {1};
    bm_st_writer *writer = NULL;
    bm_error error;
    bm_error_clear(&error);
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "value", BM_ST_U8, 1, shape, &value, &error),
                     BM_OK);
    ck_assert_int_eq(bm_st_writer_write(writer, path, &error), BM_ERR_IO);
    ck_assert_ptr_nonnull(strstr(error.message, path));
    bm_st_writer_destroy(writer);

    ck_assert_int_eq(count_entries(), 0);
    remove_directory();
}
END_TEST

START_TEST(writer_rejects_invalid_tensors)
{
    const float data[4] = {0};
    const int64_t shape[1] = {4};
    const int64_t negative[2] = {2, -1};
    const int64_t huge[3] = {INT64_MAX, INT64_MAX, 4};
    const int64_t many[BM_ST_MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

    bm_st_writer *writer = NULL;
    bm_error error;
    ck_assert_int_eq(bm_st_writer_create(&writer, &error), BM_OK);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "x", BM_ST_F32, 1, shape, data, &error),
                     BM_OK);

    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "x", BM_ST_F32, 1, shape, data, &error),
                     BM_ERR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(error.message, "'x'"));
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "__metadata__", BM_ST_F32, 1, shape, data, &error),
        BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "", BM_ST_F32, 1, shape, data, &error),
                     BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, NULL, BM_ST_F32, 1, shape, data, &error),
                     BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "n", BM_ST_F32, 2, negative, data, &error),
                     BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "h", BM_ST_F32, 3, huge, data, &error),
                     BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "m", BM_ST_F32, BM_ST_MAX_DIMS + 1, many, data, &error),
        BM_ERR_SHAPE);
    ck_assert_int_eq(
        bm_st_writer_add_tensor(writer, "d", BM_ST_DTYPE_COUNT, 1, shape, data, &error),
        BM_ERR_DTYPE);
    ck_assert_int_eq(bm_st_writer_add_tensor(writer, "p", BM_ST_F32, 1, shape, NULL, &error),
                     BM_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(bm_st_writer_set_metadata(writer, "bad", "\xff\xfe", &error),
                     BM_ERR_INVALID_ARGUMENT);
    bm_st_writer_destroy(writer);
    bm_st_writer_destroy(NULL);
}
END_TEST

static Suite *writer_suite(void)
{
    Suite *suite = suite_create("st_writer");
    TCase *cases = tcase_create("writer");
    tcase_add_test(cases, writer_round_trip_all_dtypes);
    tcase_add_test(cases, writer_layout_follows_format);
    tcase_add_test(cases, writer_scalar_and_empty_tensors);
    tcase_add_test(cases, writer_replaces_file_without_leftovers);
    tcase_add_test(cases, writer_reports_unwritable_path);
    tcase_add_test(cases, writer_rejects_invalid_tensors);
    suite_add_tcase(suite, cases);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(writer_suite());
    srunner_run_all(runner, CK_NORMAL);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
