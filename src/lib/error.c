/*
 * The error table of libbabymamba and the helper that fills a caller's bm_error.
 */
#include "error_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define BM__STATUS_NAME(code, name, message) name,
    BM_STATUS_TABLE(BM__STATUS_NAME)
#undef BM__STATUS_NAME
};

static const char *const status_messages[] = {
#define BM__STATUS_MESSAGE(code, name, message) message,
    BM_STATUS_TABLE(BM__STATUS_MESSAGE)
#undef BM__STATUS_MESSAGE
};

const char *bm_status_name(bm_status status)
{
    if ((unsigned)status >= BM_STATUS_COUNT) {
        return "unknown";
    }
    return status_names[status];
}

const char *bm_status_message(bm_status status)
{
    if ((unsigned)status >= BM_STATUS_COUNT) {
        return "unknown error";
    }
    return status_messages[status];
}

void bm_error_clear(bm_error *error)
{
    if (error == NULL) {
        return;
    }
    error->status = BM_OK;
    error->message[0] = '\0';
}

bm_status bm__fail(bm_error *error, bm_status status, const char *format, ...)
{
    if (error == NULL) {
        return status;
    }

    va_list args;
    va_start(args, format);
    vsnprintf(error->message, sizeof error->message, format, args);
    va_end(args);
    error->status = status;
    return status;
}
