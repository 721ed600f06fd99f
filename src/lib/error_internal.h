/*
 * Internal helper for reporting errors from inside the library.
 */
#ifndef BM_ERROR_INTERNAL_H
#define BM_ERROR_INTERNAL_H

#include "babymamba/error.h"

#if defined(__GNUC__)
#define BM__PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define BM__PRINTF(fmt_index, first_arg)
#endif

/* Fills error (when not NULL) with status and a formatted message, and returns status, so a
 * failing path can end with `return bm__fail(error, BM_ERR_SHAPE, "...", ...);`. */
bm_status bm__fail(bm_error *error, bm_status status, const char *format, ...) BM__PRINTF(3, 4);

#endif
