/*
 * Shared argument and output helpers of the babymamba tool.
 */
#include "cli_common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void cli_error(const char *command, const char *format, ...)
{
    va_list args;
    fprintf(stderr, "babymamba %s: ", command);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

void cli_report(const char *command, const char *subject, const bm_error *error)
{
    cli_error(command, "%s: %s (%s)", subject, error->message, bm_status_name(error->status));
}

int cli_parse_int(const char *command, const char *option, const char *text, long min, long max,
                  long *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        cli_error(command, "invalid value '%s' for %s: expected an integer from %ld to %ld", text,
                  option, min, max);
        return 0;
    }
    *out = value;
    return 1;
}

int cli_parse_double(const char *command, const char *option, const char *text, double min,
                     double max, double *out)
{
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value) || value < min ||
        value > max) {
        cli_error(command, "invalid value '%s' for %s: expected a number from %g to %g", text,
                  option, min, max);
        return 0;
    }
    *out = value;
    return 1;
}

bm_model *cli_load_model(const char *command, const char *path)
{
    bm_model *model = NULL;
    bm_error error;
    bm_error_clear(&error);
    if (bm_model_load(path, &model, &error) != BM_OK) {
        cli_report(command, path, &error);
        return NULL;
    }
    return model;
}

int cli_is_help(const char *argument)
{
    return strcmp(argument, "-h") == 0 || strcmp(argument, "--help") == 0;
}
