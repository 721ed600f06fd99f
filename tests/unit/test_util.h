/*
 * Helpers shared by the unit tests: locating the golden files, reading and writing whole files,
 * and temporary paths.
 */
#ifndef BM_TEST_UTIL_H
#define BM_TEST_UTIL_H

#include <stddef.h>

/* Returns the golden directory from $BM_GOLDEN_DIR, or "tests/golden". */
const char *test_golden_dir(void);

/* Writes "<golden dir>/<name>" into path. */
void test_golden_path(const char *name, char *path, size_t size);

/* Reads a whole file; returns a malloc'd buffer (caller frees) or NULL. */
unsigned char *test_read_file(const char *path, size_t *size);

/* Writes size bytes to path; returns 1 on success. */
int test_write_file(const char *path, const void *data, size_t size);

/* Writes a unique path in the temporary directory ending in suffix into path. */
void test_temp_path(const char *suffix, char *path, size_t size);

#endif
