/*
 * The numeric table reader of the CLI; see table_reader.h.
 */
#include "table_reader.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_common.h"

static const char *const separators = ",; \t\r\n";

/* Splits line in place into fields; returns the count, at most max_fields + 1 so that the
 * caller can see an overflow. */
static int split_fields(char *line, char **fields, int max_fields)
{
    int count = 0;
    char *save = NULL;
    for (char *field = strtok_r(line, separators, &save); field != NULL;
         field = strtok_r(NULL, separators, &save)) {
        if (count < max_fields) {
            fields[count] = field;
        }
        count++;
        if (count > max_fields) {
            break;
        }
    }
    return count;
}

/* Parses a whole field as a number. Values too small for a double read as 0 (strtod reports
 * underflow with ERANGE too); values too large are rejected. Returns 1 on success, 0 for text
 * that is not a number and -1 for a number beyond the range of a double. */
static int parse_number(const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end != '\0') {
        return 0;
    }
    if (errno == ERANGE && isinf(value)) {
        return -1;
    }
    *out = value;
    return 1;
}

/* Limits that keep a malformed or endless input (such as /dev/zero) from exhausting memory. */
enum { MAX_COLUMNS = 1024, MAX_LINE_BYTES = 1 << 20 };

enum { LINE_END_OF_FILE = -1, LINE_TOO_LONG = -2, LINE_HAS_NUL = -3 };

/* Reads one line without its newline into line (MAX_LINE_BYTES + 1 bytes) and returns its
 * length, or one of the LINE_ codes. Unlike getline it stops at the limit, so an input without
 * newlines cannot grow the buffer without bound, and unlike fgets it detects NUL bytes. */
static int read_line(FILE *stream, char *line)
{
    int length = 0;
    int c;
    while ((c = getc(stream)) != EOF && c != '\n') {
        if (c == '\0') {
            return LINE_HAS_NUL;
        }
        if (length == MAX_LINE_BYTES) {
            return LINE_TOO_LONG;
        }
        line[length++] = (char)c;
    }
    if (c == EOF && length == 0) {
        return LINE_END_OF_FILE;
    }
    line[length] = '\0';
    return length;
}

static int store_header(cli_table *table, char **fields, int count)
{
    table->names = calloc((size_t)count, sizeof *table->names);
    if (table->names == NULL) {
        return 0;
    }
    for (int i = 0; i < count; i++) {
        table->names[i] = strdup(fields[i]);
        if (table->names[i] == NULL) {
            return 0;
        }
    }
    return 1;
}

static int append_row(cli_table *table, const double *row, size_t *capacity)
{
    if (table->n_rows == *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 4096;
        double *values = realloc(table->values, grown * (size_t)table->n_columns * sizeof *values);
        if (values == NULL) {
            return 0;
        }
        table->values = values;
        *capacity = grown;
    }
    memcpy(table->values + table->n_rows * (size_t)table->n_columns, row,
           (size_t)table->n_columns * sizeof *row);
    table->n_rows++;
    return 1;
}

int cli_table_read(const char *command, const char *path, cli_table *table)
{
    memset(table, 0, sizeof *table);
    FILE *stream = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (stream == NULL) {
        cli_error(command, "cannot open '%s': %s", path, strerror(errno));
        return 0;
    }

    char *line = malloc(MAX_LINE_BYTES + 1);
    size_t capacity = 0;
    long line_number = 0;
    int ok = 1;
    static char *fields[MAX_COLUMNS];
    static double row[MAX_COLUMNS];

    if (line == NULL) {
        cli_error(command, "out of memory");
        ok = 0;
    }
    int length;
    while (ok && (length = read_line(stream, line)) != LINE_END_OF_FILE) {
        line_number++;
        if (length == LINE_TOO_LONG || length == LINE_HAS_NUL) {
            cli_error(command, "%s:%ld: %s", path, line_number,
                      length == LINE_TOO_LONG ? "line longer than 1 MiB"
                                              : "line contains a NUL byte; expected text");
            ok = 0;
            break;
        }

        char *start = line + strspn(line, " \t");
        if (*start == '#' || *start == '\n' || *start == '\r' || *start == '\0') {
            continue;
        }

        int count = split_fields(start, fields, MAX_COLUMNS);
        if (count == 0) {
            continue;
        }
        if (count > MAX_COLUMNS) {
            cli_error(command, "%s:%ld: more than %d columns", path, line_number, MAX_COLUMNS);
            ok = 0;
            break;
        }

        int numeric = 1;
        for (int i = 0; i < count && numeric == 1; i++) {
            numeric = parse_number(fields[i], &row[i]);
            if (numeric < 0) {
                cli_error(command, "%s:%ld: value '%s' in column %d is beyond the range of a "
                          "double",
                          path, line_number, fields[i], i + 1);
                ok = 0;
            }
        }
        if (!ok) {
            break;
        }

        if (!numeric && table->n_rows == 0 && table->names == NULL && table->n_columns == 0) {
            table->n_columns = count;
            ok = store_header(table, fields, count);
            if (!ok) {
                cli_error(command, "%s: out of memory", path);
            }
            continue;
        }
        if (!numeric) {
            cli_error(command, "%s:%ld: expected numbers, found a non-numeric field", path,
                      line_number);
            ok = 0;
            break;
        }
        if (table->n_columns == 0) {
            table->n_columns = count;
        }
        if (count != table->n_columns) {
            cli_error(command, "%s:%ld: %d values, expected %d like the first row", path,
                      line_number, count, table->n_columns);
            ok = 0;
            break;
        }
        if (!append_row(table, row, &capacity)) {
            cli_error(command, "%s: out of memory after %zu rows", path, table->n_rows);
            ok = 0;
        }
    }

    if (ok && ferror(stream)) {
        cli_error(command, "cannot read '%s': %s", path, strerror(errno));
        ok = 0;
    }
    free(line);
    if (stream != stdin) {
        fclose(stream);
    }
    if (!ok) {
        cli_table_free(table);
    }
    return ok;
}

int cli_table_column(const cli_table *table, const char *name)
{
    if (table->names == NULL) {
        return -1;
    }
    for (int i = 0; i < table->n_columns; i++) {
        if (strcmp(table->names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

void cli_table_free(cli_table *table)
{
    if (table->names != NULL) {
        for (int i = 0; i < table->n_columns; i++) {
            free(table->names[i]);
        }
        free(table->names);
    }
    free(table->values);
    memset(table, 0, sizeof *table);
}
