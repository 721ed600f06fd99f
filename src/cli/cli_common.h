/*
 * Helpers shared by the subcommands: error reporting, number parsing and model loading.
 */
#ifndef BM_CLI_COMMON_H
#define BM_CLI_COMMON_H

#include <stdio.h>

#include "babymamba/error.h"
#include "babymamba/model.h"

/* Exit statuses: 0 success, 1 a runtime failure, 2 a usage error. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILURE = 1, CLI_EXIT_USAGE = 2 };

/* Prints "babymamba <command>: <message>" to stderr. */
void cli_error(const char *command, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints a library error with the command name and the file it concerns. */
void cli_report(const char *command, const char *subject, const bm_error *error);

/* Parses a whole decimal integer within [min, max]; prints an error naming option and returns
 * 0 on failure. */
int cli_parse_int(const char *command, const char *option, const char *text, long min, long max,
                  long *out);

/* Parses a finite decimal number within [min, max]. */
int cli_parse_double(const char *command, const char *option, const char *text, double min,
                     double max, double *out);

/* Loads a model, printing the library's message on failure. Returns NULL on failure. */
bm_model *cli_load_model(const char *command, const char *path);

/* Returns non-zero when argument is "-h" or "--help". */
int cli_is_help(const char *argument);

#endif
