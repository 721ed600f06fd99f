/*
 * A reader of numeric tables in CSV or whitespace-separated text, for `infer` and `replay`.
 * An optional first line of column names is kept so that columns can be picked by name.
 */
#ifndef BM_CLI_TABLE_READER_H
#define BM_CLI_TABLE_READER_H

#include <stddef.h>

typedef struct cli_table {
    int n_columns;
    char **names;  /* [n_columns] header names, or NULL when the file has no header */
    size_t n_rows;
    double *values; /* [n_rows, n_columns] */
} cli_table;

/* Reads path ("-" for standard input). Lines may be separated by commas, semicolons, tabs or
 * spaces; empty lines and lines starting with '#' are skipped. Every data row must have the
 * same number of values. On failure prints an error naming the file and line, and returns 0. */
int cli_table_read(const char *command, const char *path, cli_table *table);

/* Returns the index of the column called name, or -1. */
int cli_table_column(const cli_table *table, const char *name);

void cli_table_free(cli_table *table);

#endif
