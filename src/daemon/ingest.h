/*
 * Decoding of sensor messages (JSON or the compact binary form) into a batch of timed samples.
 *
 * The adapters hand a message's bytes to ingest_decode, which validates every field against
 * what the served model needs and, on success, fills a batch of samples with nanosecond
 * timestamps and values already in the model's units. A decoder owns the batch buffers and
 * reuses them, so decoding allocates only when a message is larger than any before it (and
 * inside jansson). docs/ingest.md specifies both payload forms. Loop thread only.
 */
#ifndef BABYMAMBAD_INGEST_H
#define BABYMAMBAD_INGEST_H

#include <stddef.h>
#include <stdint.h>

/* Reasons for rejecting a whole message. The names are metric label values. */
#define INGEST_REASON_TABLE(X)                                                                     \
    X(INGEST_REJECT_PAYLOAD_TOO_LARGE, "payload_too_large")                                        \
    X(INGEST_REJECT_INVALID_JSON, "invalid_json")                                                  \
    X(INGEST_REJECT_INVALID_BINARY, "invalid_binary")                                              \
    X(INGEST_REJECT_INVALID_DEVICE_ID, "invalid_device_id")                                        \
    X(INGEST_REJECT_MISSING_FIELD, "missing_field")                                                \
    X(INGEST_REJECT_INVALID_FIELD, "invalid_field")                                                \
    X(INGEST_REJECT_LENGTH_MISMATCH, "length_mismatch")                                            \
    X(INGEST_REJECT_INVALID_UNITS, "invalid_units")                                                \
    X(INGEST_REJECT_NON_FINITE, "non_finite")                                                      \
    X(INGEST_REJECT_OUT_OF_RANGE, "out_of_range")                                                  \
    X(INGEST_REJECT_WRONG_CHANNELS, "wrong_channels")                                              \
    X(INGEST_REJECT_RATE_TOO_LOW, "rate_too_low")                                                  \
    X(INGEST_REJECT_TOO_MANY_DEVICES, "too_many_devices")                                          \
    X(INGEST_REJECT_QUEUE_FULL, "queue_full")                                                      \
    X(INGEST_REJECT_INFERENCE_BUSY, "inference_busy")                                              \
    X(INGEST_REJECT_TOO_MANY_WINDOWS, "too_many_windows")                                          \
    X(INGEST_REJECT_STOPPING, "stopping")                                                          \
    X(INGEST_REJECT_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")                              \
    X(INGEST_REJECT_NO_MODEL, "no_model")                                                          \
    X(INGEST_REJECT_INTERNAL, "internal_error")

typedef enum ingest_reason {
#define INGEST__REASON_ENUM(code, name) code,
    INGEST_REASON_TABLE(INGEST__REASON_ENUM)
#undef INGEST__REASON_ENUM
        INGEST_REASON_COUNT
} ingest_reason;

const char *ingest_reason_name(ingest_reason reason);

/* Largest magnitude a sample value may have after unit conversion. No sensor reports a billion
 * g or rad/s, and the bound keeps the resampler's and filters' arithmetic finite, so every
 * sample that passes ingest reaches the window. */
#define INGEST_MAX_ABS_VALUE 1e9

/* What the served model takes: raw accelerometer and gyroscope (INGEST_KIND_IMU, 6 values a
 * sample: acc xyz in g, gyro xyz in rad/s) or the model's own channels (INGEST_KIND_CHANNELS). */
typedef enum ingest_kind { INGEST_KIND_IMU, INGEST_KIND_CHANNELS } ingest_kind;

typedef struct ingest_expect {
    ingest_kind kind;
    int n_channels; /* values per sample of INGEST_KIND_CHANNELS */
} ingest_expect;

/* The decoded samples of one message. Pointers belong to the decoder and stay valid until its
 * next ingest_decode. */
typedef struct ingest_batch {
    int count;           /* samples */
    int width;           /* values per sample: 6 for IMU, n_channels for channels */
    const int64_t *t_ns; /* [count] sample times, in the sender's clock */
    const float *values; /* [count * width] sample-major */
    int has_seq;
    int64_t seq;
} ingest_batch;

/* Why a message was rejected: the reason and a message that names the field, the value found
 * and what was expected. */
typedef struct ingest_failure {
    ingest_reason reason;
    char message[256];
} ingest_failure;

/* Fills failure with reason and a formatted message, and returns -1, so a rejecting path can
 * end with `return ingest_fail(failure, INGEST_REJECT_..., "...", ...);`. */
int ingest_fail(ingest_failure *failure, ingest_reason reason, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct ingest_decoder ingest_decoder;

ingest_decoder *ingest_decoder_create(void);
void ingest_decoder_destroy(ingest_decoder *decoder);

/* Decodes one message. Binary messages start with the magic "BMIM"; anything else is parsed as
 * JSON. Returns 0 and fills batch, or -1 and fills failure. */
int ingest_decode(ingest_decoder *decoder, const void *payload, size_t size,
                  const ingest_expect *expect, ingest_batch *batch, ingest_failure *failure);

/* Returns nonzero when id (length bytes, not necessarily NUL-terminated) is 1 to 64 characters
 * of [A-Za-z0-9._-] other than "." and "..". */
int ingest_device_id_valid(const char *id, size_t length);

/* Extracts the device id from topic, as the level that matches the first '+' of filter; a
 * leading "$share/GROUP/" of the filter is skipped. Returns 0 with the id in out (NUL-terminated),
 * or -1 when the topic does not match or the id is invalid. */
int ingest_device_from_topic(const char *filter, const char *topic, char *out, size_t out_size);

/* Size of the fixed header of the binary form, and its magic and version. */
#define INGEST_BINARY_HEADER_SIZE 32
#define INGEST_BINARY_MAGIC       "BMIM"
#define INGEST_BINARY_VERSION     1

/* Flags of the binary header. */
#define INGEST_BINARY_ACC_MS2  0x01u /* accelerometer in m/s^2 instead of g */
#define INGEST_BINARY_GYRO_DEG 0x02u /* gyroscope in deg/s instead of rad/s */
#define INGEST_BINARY_TIMESTAMPS                                                                   \
    0x04u                           /* each frame starts with a uint32 offset in microseconds      \
                                     */
#define INGEST_BINARY_HAS_SEQ 0x08u /* the seq field is set */

/* Kinds of the binary header. */
#define INGEST_BINARY_KIND_IMU      1
#define INGEST_BINARY_KIND_CHANNELS 2

#endif
