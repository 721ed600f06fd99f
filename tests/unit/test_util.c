/*
 * Helpers shared by the unit tests; see test_util.h.
 */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char *test_golden_dir(void)
{
    const char *dir = getenv("BM_GOLDEN_DIR");
    return dir != NULL ? dir : "tests/golden";
}

void test_golden_path(const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", test_golden_dir(), name);
}

unsigned char *test_read_file(const char *path, size_t *size)
{
    FILE *stream = fopen(path, "rb");
    if (stream == NULL) {
        return NULL;
    }
    fseek(stream, 0, SEEK_END);
    long end = ftell(stream);
    fseek(stream, 0, SEEK_SET);
    unsigned char *data = malloc(end > 0 ? (size_t)end : 1);
    if (data != NULL && fread(data, 1, (size_t)end, stream) != (size_t)end) {
        free(data);
        data = NULL;
    }
    fclose(stream);
    *size = (size_t)end;
    return data;
}

int test_write_file(const char *path, const void *data, size_t size)
{
    FILE *stream = fopen(path, "wb");
    if (stream == NULL) {
        return 0;
    }
    int ok = fwrite(data, 1, size, stream) == size;
    return fclose(stream) == 0 && ok;
}

void test_temp_path(const char *suffix, char *path, size_t size)
{
    static int counter;
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/bm-test-%ld-%d%s", dir != NULL ? dir : "/tmp", (long)getpid(),
             counter++, suffix);
}
