/*
 * Error codes of libbabymamba.
 *
 * Every fallible library function returns a bm_status and, when the caller passes a bm_error,
 * fills it with the code and a message that names the value at fault and what was expected.
 * The library never prints, logs or exits; reporting is the caller's job.
 */
#ifndef BABYMAMBA_ERROR_H
#define BABYMAMBA_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* One table defines the codes, their names and their generic messages. */
#define BM_STATUS_TABLE(X)                                                                         \
    X(BM_OK, "ok", "success")                                                                      \
    X(BM_ERR_INVALID_ARGUMENT, "invalid_argument", "invalid argument")                             \
    X(BM_ERR_NO_MEMORY, "no_memory", "out of memory")                                              \
    X(BM_ERR_IO, "io", "input/output error")                                                       \
    X(BM_ERR_FORMAT, "format", "malformed file")                                                   \
    X(BM_ERR_DTYPE, "dtype", "tensor has the wrong dtype")                                         \
    X(BM_ERR_SHAPE, "shape", "tensor has the wrong shape")                                         \
    X(BM_ERR_MISSING_TENSOR, "missing_tensor", "required tensor is missing")                       \
    X(BM_ERR_UNEXPECTED_TENSOR, "unexpected_tensor", "tensor is not used by this architecture")    \
    X(BM_ERR_METADATA, "metadata", "invalid model metadata")                                       \
    X(BM_ERR_VERSION, "version", "unsupported format version")                                     \
    X(BM_ERR_NON_FINITE, "non_finite", "input contains NaN or infinity")                           \
    X(BM_ERR_UNSUPPORTED, "unsupported", "unsupported feature")                                    \
    X(BM_ERR_RANGE, "range", "value out of range")

typedef enum bm_status {
#define BM__STATUS_ENUM(code, name, message) code,
    BM_STATUS_TABLE(BM__STATUS_ENUM)
#undef BM__STATUS_ENUM
        BM_STATUS_COUNT
} bm_status;

/* Size of bm_error.message, including the terminating NUL. */
#define BM_ERROR_MESSAGE_SIZE 320

/* Detail of a failure: the code and a message such as
 * "tensor 'layers.0.mixer.A_log': expected shape [52, 8], found [52, 16]". */
typedef struct bm_error {
    bm_status status;
    char message[BM_ERROR_MESSAGE_SIZE];
} bm_error;

/* Returns the short identifier of a code ("shape"), or "unknown" for a value outside the enum. */
const char *bm_status_name(bm_status status);

/* Returns the generic English message of a code ("tensor has the wrong shape"). */
const char *bm_status_message(bm_status status);

/* Resets an error to BM_OK with an empty message. Accepts NULL. */
void bm_error_clear(bm_error *error);

#ifdef __cplusplus
}
#endif

#endif
