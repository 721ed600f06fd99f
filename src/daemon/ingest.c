/*
 * Sensor message decoding and validation (see ingest.h and docs/ingest.md).
 */
#include "ingest.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <inttypes.h>
#include <jansson.h>

/* Maximum samples in one message, so senders split larger batches. It bounds the decoder's
 * buffers independently of the payload size limits. */
#define INGEST_MAX_SAMPLES 65536

/* The range of sample rates a sender may declare. The lower bound keeps the period, and so
 * every offset t0 + i / rate_hz of a message, finite and far inside int64 nanoseconds. */
#define INGEST_MAX_RATE_HZ 100000.0
#define INGEST_MIN_RATE_HZ 0.001

/* Sample times must lie within +-2^62 ns of 1970 (years 1824 to 2116). Differences of two such
 * times, which the device state and the rate estimate compute, then always fit in int64. */
#define INGEST_MAX_ABS_TIME_NS ((int64_t)1 << 62)
#define INGEST_MAX_ABS_TIME_S  4.6e9

/* Returns 0 when t_ns is within the accepted range of sample times, else fills failure. */
static int check_time(int64_t t_ns, const char *field, size_t index, ingest_failure *failure)
{
    if (t_ns >= -INGEST_MAX_ABS_TIME_NS && t_ns <= INGEST_MAX_ABS_TIME_NS)
        return 0;
    return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                       "'%s' of sample %zu: time %" PRId64 " ns is outside +-2^62 ns of 1970 "
                       "(years 1824 to 2116)",
                       field, index, t_ns);
}

#define STANDARD_GRAVITY   9.80665
#define DEGREES_TO_RADIANS (3.14159265358979323846 / 180.0)

static const char *const reason_names[] = {
#define INGEST__REASON_NAME(code, name) name,
    INGEST_REASON_TABLE(INGEST__REASON_NAME)
#undef INGEST__REASON_NAME
};

struct ingest_decoder {
    int64_t *t_ns;
    float *values;
    size_t sample_capacity;
    size_t value_capacity;
};

const char *ingest_reason_name(ingest_reason reason)
{
    if ((unsigned)reason >= INGEST_REASON_COUNT)
        return "unknown";
    return reason_names[reason];
}

ingest_decoder *ingest_decoder_create(void)
{
    return calloc(1, sizeof(ingest_decoder));
}

void ingest_decoder_destroy(ingest_decoder *decoder)
{
    if (decoder == NULL)
        return;
    free(decoder->t_ns);
    free(decoder->values);
    free(decoder);
}

int ingest_fail(ingest_failure *failure, ingest_reason reason, const char *format, ...)
{
    failure->reason = reason;
    va_list args;
    va_start(args, format);
    vsnprintf(failure->message, sizeof failure->message, format, args);
    va_end(args);
    return -1;
}

/* Grows the batch buffers to hold count samples of width values. */
static int reserve(ingest_decoder *decoder, size_t count, size_t width, ingest_failure *failure)
{
    if (count > decoder->sample_capacity) {
        int64_t *t_ns = realloc(decoder->t_ns, count * sizeof *t_ns);
        if (t_ns == NULL)
            return ingest_fail(failure, INGEST_REJECT_PAYLOAD_TOO_LARGE,
                               "out of memory for %zu samples", count);
        decoder->t_ns = t_ns;
        decoder->sample_capacity = count;
    }
    if (count * width > decoder->value_capacity) {
        float *values = realloc(decoder->values, count * width * sizeof *values);
        if (values == NULL)
            return ingest_fail(failure, INGEST_REJECT_PAYLOAD_TOO_LARGE,
                               "out of memory for %zu samples", count);
        decoder->values = values;
        decoder->value_capacity = count * width;
    }
    return 0;
}

int ingest_device_id_valid(const char *id, size_t length)
{
    if (length < 1 || length > 64)
        return 0;

    /* "." and ".." are path segments that HTTP clients normalise away, so such a device could
     * send over MQTT but never be queried over REST. */
    if ((length == 1 && id[0] == '.') || (length == 2 && id[0] == '.' && id[1] == '.'))
        return 0;
    for (size_t i = 0; i < length; i++) {
        char c = id[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

int ingest_device_from_topic(const char *filter, const char *topic, char *out, size_t out_size)
{
    /* A shared subscription's "$share/GROUP/" prefix is not part of the topic names. */
    if (strncmp(filter, "$share/", 7) == 0) {
        const char *slash = strchr(filter + 7, '/');
        if (slash == NULL)
            return -1;
        filter = slash + 1;
    }

    /* Walk filter and topic level by level: the id is the topic level under the first '+'. */
    const char *f = filter;
    const char *t = topic;
    int found = 0;
    for (;;) {
        size_t f_len = strcspn(f, "/");
        size_t t_len = strcspn(t, "/");

        if (f_len == 1 && f[0] == '#')
            break;
        if (f_len == 1 && f[0] == '+') {
            if (!found) {
                if (!ingest_device_id_valid(t, t_len) || t_len + 1 > out_size)
                    return -1;
                memcpy(out, t, t_len);
                out[t_len] = '\0';
                found = 1;
            }
        } else if (f_len != t_len || memcmp(f, t, f_len) != 0) {
            return -1;
        }

        int f_end = f[f_len] == '\0';
        int t_end = t[t_len] == '\0';
        if (f_end || t_end) {
            if (f_end != t_end)
                return -1;
            break;
        }
        f += f_len + 1;
        t += t_len + 1;
    }
    return found ? 0 : -1;
}

/* Reads one array of rows of width numbers into values (with stride and offset), converting by
 * scale. */
static int read_rows(json_t *rows, const char *name, size_t count, size_t width, float *values,
                     size_t stride, size_t offset, double scale, ingest_failure *failure)
{
    for (size_t i = 0; i < count; i++) {
        json_t *row = json_array_get(rows, i);
        if (!json_is_array(row) || json_array_size(row) != width)
            return ingest_fail(failure, INGEST_REJECT_WRONG_CHANNELS,
                               "'%s[%zu]': expected an array of %zu numbers, found %s of %zu", name,
                               i, width, json_is_array(row) ? "an array" : "a non-array",
                               json_is_array(row) ? json_array_size(row) : (size_t)0);

        for (size_t c = 0; c < width; c++) {
            json_t *item = json_array_get(row, c);
            if (!json_is_number(item))
                return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                                   "'%s[%zu][%zu]': expected a number", name, i, c);
            double value = json_number_value(item) * scale;
            if (!isfinite(value))
                return ingest_fail(failure, INGEST_REJECT_NON_FINITE,
                                   "'%s[%zu][%zu]': value %g is not finite", name, i, c, value);
            if (fabs(value) > INGEST_MAX_ABS_VALUE)
                return ingest_fail(failure, INGEST_REJECT_OUT_OF_RANGE,
                                   "'%s[%zu][%zu]': value %g is outside +-%g", name, i, c, value,
                                   INGEST_MAX_ABS_VALUE);
            values[i * stride + offset + c] = (float)value;
        }
    }
    return 0;
}

/* Reads the unit strings of "units" into the scale factors to g and rad/s. */
static int read_units(json_t *root, const ingest_expect *expect, double *acc_scale,
                      double *gyro_scale, ingest_failure *failure)
{
    *acc_scale = 1.0;
    *gyro_scale = 1.0;

    json_t *units = json_object_get(root, "units");
    if (units == NULL)
        return 0;
    if (!json_is_object(units))
        return ingest_fail(failure, INGEST_REJECT_INVALID_UNITS, "'units': expected an object");
    if (expect->kind == INGEST_KIND_CHANNELS)
        return ingest_fail(failure, INGEST_REJECT_INVALID_UNITS,
                           "'units': applies to acc and gyro only, and this model takes 'channels' "
                           "already in its own units");

    const char *key;
    json_t *value;
    json_object_foreach(units, key, value)
    {
        const char *text = json_string_value(value);
        if (strcmp(key, "acc") == 0 && text != NULL && strcmp(text, "g") == 0) {
            *acc_scale = 1.0;
        } else if (strcmp(key, "acc") == 0 && text != NULL && strcmp(text, "m/s2") == 0) {
            *acc_scale = 1.0 / STANDARD_GRAVITY;
        } else if (strcmp(key, "gyro") == 0 && text != NULL && strcmp(text, "rad/s") == 0) {
            *gyro_scale = 1.0;
        } else if (strcmp(key, "gyro") == 0 && text != NULL && strcmp(text, "deg/s") == 0) {
            *gyro_scale = DEGREES_TO_RADIANS;
        } else if (strcmp(key, "acc") == 0) {
            return ingest_fail(failure, INGEST_REJECT_INVALID_UNITS,
                               "'units.acc': invalid value \"%s\"; expected \"g\" or \"m/s2\"",
                               text != NULL ? text : "(not a string)");
        } else if (strcmp(key, "gyro") == 0) {
            return ingest_fail(
                failure, INGEST_REJECT_INVALID_UNITS,
                "'units.gyro': invalid value \"%s\"; expected \"rad/s\" or \"deg/s\"",
                text != NULL ? text : "(not a string)");
        } else {
            return ingest_fail(failure, INGEST_REJECT_INVALID_UNITS,
                               "'units.%s': unknown sensor; expected \"acc\" or \"gyro\"", key);
        }
    }
    return 0;
}

/* Converts seconds to nanoseconds through the whole and fractional parts, so that a time such
 * as 1700000000.25, exact in a double, gives exactly 1700000000250000000. A single multiply by
 * 1e9 would round it to the 256 ns spacing of doubles near 1.7e18. */
static int64_t seconds_to_ns(double seconds)
{
    double whole = floor(seconds);
    return (int64_t)whole * 1000000000LL + llround((seconds - whole) * 1e9);
}

/* Fills the timestamps from t0/t0_ns with rate_hz, or from t/t_ns. */
static int read_times(json_t *root, size_t count, int64_t *t_ns, ingest_failure *failure)
{
    json_t *t0 = json_object_get(root, "t0");
    json_t *t0_ns = json_object_get(root, "t0_ns");
    json_t *t = json_object_get(root, "t");
    json_t *t_ns_array = json_object_get(root, "t_ns");

    int given = (t0 != NULL) + (t0_ns != NULL) + (t != NULL) + (t_ns_array != NULL);
    if (given == 0)
        return ingest_fail(failure, INGEST_REJECT_MISSING_FIELD,
                           "missing timestamps: expected one of 't0' or 't0_ns' with 'rate_hz', or "
                           "'t' or 't_ns' per sample");
    if (given > 1)
        return ingest_fail(
            failure, INGEST_REJECT_INVALID_FIELD,
            "conflicting timestamps: expected exactly one of 't0', 't0_ns', 't', 't_ns'");

    if (t0 != NULL || t0_ns != NULL) {
        json_t *rate = json_object_get(root, "rate_hz");
        if (rate == NULL)
            return ingest_fail(failure, INGEST_REJECT_MISSING_FIELD,
                               "missing 'rate_hz': required with '%s'",
                               t0 != NULL ? "t0" : "t0_ns");
        if (!json_is_number(rate))
            return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                               "'rate_hz': expected a number, found %s",
                               json_is_string(rate) ? "a string" : "another JSON type");
        double rate_hz = json_number_value(rate);
        if (!(rate_hz >= INGEST_MIN_RATE_HZ) || rate_hz > INGEST_MAX_RATE_HZ)
            return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                               "'rate_hz': invalid value %g; expected a number from %g to %g",
                               rate_hz, INGEST_MIN_RATE_HZ, INGEST_MAX_RATE_HZ);

        int64_t start;
        if (t0 != NULL) {
            double seconds = json_number_value(t0);
            if (!json_is_number(t0) || !isfinite(seconds) || fabs(seconds) > INGEST_MAX_ABS_TIME_S)
                return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                                   "'t0': expected a number of seconds within +-%g",
                                   INGEST_MAX_ABS_TIME_S);
            start = seconds_to_ns(seconds);
        } else {
            if (!json_is_integer(t0_ns))
                return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                                   "'t0_ns': expected an integer number of nanoseconds");
            start = json_integer_value(t0_ns);
        }

        /* The period is at most 1e12 ns and count at most INGEST_MAX_SAMPLES, so the offsets
         * stay below 2^56 and, with start checked, no sum can overflow. */
        double period_ns = 1e9 / rate_hz;
        const char *field = t0 != NULL ? "t0" : "t0_ns";
        if (check_time(start, field, 0, failure) != 0)
            return -1;
        for (size_t i = 0; i < count; i++) {
            t_ns[i] = start + llround((double)i * period_ns);
            if (check_time(t_ns[i], field, i, failure) != 0)
                return -1;
        }
        return 0;
    }

    json_t *array = t != NULL ? t : t_ns_array;
    const char *name = t != NULL ? "t" : "t_ns";
    if (!json_is_array(array) || json_array_size(array) != count)
        return ingest_fail(failure, INGEST_REJECT_LENGTH_MISMATCH,
                           "'%s': expected an array of %zu timestamps, one per sample, found %zu",
                           name, count, json_is_array(array) ? json_array_size(array) : (size_t)0);

    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get(array, i);
        if (t != NULL) {
            double seconds = json_number_value(item);
            if (!json_is_number(item) || !isfinite(seconds) ||
                fabs(seconds) > INGEST_MAX_ABS_TIME_S)
                return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                                   "'t[%zu]': expected a number of seconds within +-%g", i,
                                   INGEST_MAX_ABS_TIME_S);
            t_ns[i] = seconds_to_ns(seconds);
        } else {
            /* Integers only: a float cannot hold nanoseconds since 1970 exactly. */
            if (!json_is_integer(item))
                return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                                   "'t_ns[%zu]': expected an integer number of nanoseconds", i);
            t_ns[i] = json_integer_value(item);
            if (check_time(t_ns[i], "t_ns", i, failure) != 0)
                return -1;
        }
    }
    return 0;
}

static int decode_json(ingest_decoder *decoder, const void *payload, size_t size,
                       const ingest_expect *expect, ingest_batch *batch, ingest_failure *failure)
{
    json_error_t json_error;
    json_t *root = json_loadb(payload, size, JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL)
        return ingest_fail(failure, INGEST_REJECT_INVALID_JSON,
                           "invalid JSON at line %d column %d: %s", json_error.line,
                           json_error.column, json_error.text);

    int status = -1;
    if (!json_is_object(root)) {
        ingest_fail(failure, INGEST_REJECT_INVALID_JSON, "expected a JSON object at the top level");
        goto done;
    }

    json_t *seq = json_object_get(root, "seq");
    batch->has_seq = seq != NULL;
    batch->seq = 0;
    if (seq != NULL) {
        if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
            ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                        "'seq': expected a non-negative integer");
            goto done;
        }
        batch->seq = json_integer_value(seq);
    }

    double acc_scale;
    double gyro_scale;
    if (read_units(root, expect, &acc_scale, &gyro_scale, failure) != 0)
        goto done;

    json_t *acc = json_object_get(root, "acc");
    json_t *gyro = json_object_get(root, "gyro");
    json_t *channels = json_object_get(root, "channels");

    size_t count;
    size_t width;
    if (expect->kind == INGEST_KIND_IMU) {
        if (channels != NULL) {
            ingest_fail(failure, INGEST_REJECT_WRONG_CHANNELS,
                        "'channels': this model takes raw 'acc' and 'gyro' samples");
            goto done;
        }
        if (acc == NULL || gyro == NULL) {
            ingest_fail(failure, INGEST_REJECT_MISSING_FIELD,
                        "missing '%s': expected an array of [x,y,z]", acc == NULL ? "acc" : "gyro");
            goto done;
        }
        if (!json_is_array(acc) || !json_is_array(gyro)) {
            ingest_fail(failure, INGEST_REJECT_INVALID_FIELD, "'%s': expected an array of [x,y,z]",
                        !json_is_array(acc) ? "acc" : "gyro");
            goto done;
        }
        if (json_array_size(acc) != json_array_size(gyro)) {
            ingest_fail(failure, INGEST_REJECT_LENGTH_MISMATCH,
                        "'acc' has %zu samples but 'gyro' has %zu; expected the same count",
                        json_array_size(acc), json_array_size(gyro));
            goto done;
        }
        count = json_array_size(acc);
        width = 6;
    } else {
        if (acc != NULL || gyro != NULL) {
            ingest_fail(failure, INGEST_REJECT_WRONG_CHANNELS,
                        "'%s': this model takes 'channels' of %d values per sample",
                        acc != NULL ? "acc" : "gyro", expect->n_channels);
            goto done;
        }
        if (channels == NULL) {
            ingest_fail(failure, INGEST_REJECT_MISSING_FIELD,
                        "missing 'channels': expected an array of rows of %d values",
                        expect->n_channels);
            goto done;
        }
        if (!json_is_array(channels)) {
            ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                        "'channels': expected an array of rows");
            goto done;
        }
        count = json_array_size(channels);
        width = (size_t)expect->n_channels;
    }

    if (count == 0 || count > INGEST_MAX_SAMPLES) {
        ingest_fail(failure, INGEST_REJECT_LENGTH_MISMATCH,
                    "%zu samples in one message; expected 1 to %d", count, INGEST_MAX_SAMPLES);
        goto done;
    }
    if (reserve(decoder, count, width, failure) != 0)
        goto done;

    if (expect->kind == INGEST_KIND_IMU) {
        if (read_rows(acc, "acc", count, 3, decoder->values, 6, 0, acc_scale, failure) != 0 ||
            read_rows(gyro, "gyro", count, 3, decoder->values, 6, 3, gyro_scale, failure) != 0)
            goto done;
    } else if (read_rows(channels, "channels", count, width, decoder->values, width, 0, 1.0,
                         failure) != 0) {
        goto done;
    }

    if (read_times(root, count, decoder->t_ns, failure) != 0)
        goto done;

    batch->count = (int)count;
    batch->width = (int)width;
    batch->t_ns = decoder->t_ns;
    batch->values = decoder->values;
    status = 0;

done:
    json_decref(root);
    return status;
}

static uint32_t read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t read_u64(const unsigned char *p)
{
    return (uint64_t)read_u32(p) | (uint64_t)read_u32(p + 4) << 32;
}

static float read_f32(const unsigned char *p)
{
    uint32_t bits = read_u32(p);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static int decode_binary(ingest_decoder *decoder, const unsigned char *p, size_t size,
                         const ingest_expect *expect, ingest_batch *batch, ingest_failure *failure)
{
    if (size < INGEST_BINARY_HEADER_SIZE)
        return ingest_fail(failure, INGEST_REJECT_INVALID_BINARY,
                           "binary message of %zu bytes is shorter than the %d-byte header", size,
                           INGEST_BINARY_HEADER_SIZE);

    unsigned version = p[4];
    unsigned kind = p[5];
    unsigned flags = p[6];
    unsigned width = p[7];
    size_t count = (size_t)p[8] | (size_t)p[9] << 8;
    float rate_hz = read_f32(p + 12);
    int64_t t0_ns = (int64_t)read_u64(p + 16);
    uint64_t seq = read_u64(p + 24);

    if (version != INGEST_BINARY_VERSION)
        return ingest_fail(failure, INGEST_REJECT_INVALID_BINARY,
                           "binary version %u is not supported; expected %d", version,
                           INGEST_BINARY_VERSION);
    if (flags & ~0x0fu)
        return ingest_fail(failure, INGEST_REJECT_INVALID_BINARY,
                           "binary flags 0x%02x has unknown bits; expected only bits 0x0f", flags);

    unsigned expected_kind =
        expect->kind == INGEST_KIND_IMU ? INGEST_BINARY_KIND_IMU : INGEST_BINARY_KIND_CHANNELS;
    unsigned expected_width = expect->kind == INGEST_KIND_IMU ? 6u : (unsigned)expect->n_channels;
    if (kind != expected_kind || width != expected_width)
        return ingest_fail(
            failure, INGEST_REJECT_WRONG_CHANNELS,
            "binary kind %u with %u values per frame; this model expects kind %u with %u", kind,
            width, expected_kind, expected_width);
    if (expect->kind == INGEST_KIND_CHANNELS &&
        (flags & (INGEST_BINARY_ACC_MS2 | INGEST_BINARY_GYRO_DEG)))
        return ingest_fail(failure, INGEST_REJECT_INVALID_UNITS,
                           "binary unit flags apply to kind 1 (IMU) only");

    int timestamps = (flags & INGEST_BINARY_TIMESTAMPS) != 0;
    size_t frame_size = (size_t)width * 4 + (timestamps ? 4 : 0);
    if (count == 0 || size != INGEST_BINARY_HEADER_SIZE + count * frame_size)
        return ingest_fail(
            failure, INGEST_REJECT_LENGTH_MISMATCH,
            "binary message of %zu bytes with %zu frames of %zu bytes; expected %zu bytes "
            "and at least one frame",
            size, count, frame_size, INGEST_BINARY_HEADER_SIZE + count * frame_size);
    if (p[10] != 0 || p[11] != 0)
        return ingest_fail(failure, INGEST_REJECT_INVALID_BINARY,
                           "binary header bytes 10-11 are reserved and must be 0");
    if (!timestamps && (!(rate_hz >= INGEST_MIN_RATE_HZ) || rate_hz > INGEST_MAX_RATE_HZ))
        return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD,
                           "binary rate_hz %g; expected a number from %g to %g", (double)rate_hz,
                           INGEST_MIN_RATE_HZ, INGEST_MAX_RATE_HZ);
    /* Frame offsets add at most 2^32 us to t0, so a checked t0 keeps every sum in range. */
    if (check_time(t0_ns, "t0_ns", 0, failure) != 0)
        return -1;
    if ((flags & INGEST_BINARY_HAS_SEQ) && seq > INT64_MAX)
        return ingest_fail(failure, INGEST_REJECT_INVALID_FIELD, "binary seq is above 2^63-1");

    if (reserve(decoder, count, width, failure) != 0)
        return -1;

    double acc_scale = (flags & INGEST_BINARY_ACC_MS2) ? 1.0 / STANDARD_GRAVITY : 1.0;
    double gyro_scale = (flags & INGEST_BINARY_GYRO_DEG) ? DEGREES_TO_RADIANS : 1.0;
    double period_ns = timestamps ? 0.0 : 1e9 / rate_hz;

    const unsigned char *frame = p + INGEST_BINARY_HEADER_SIZE;
    for (size_t i = 0; i < count; i++, frame += frame_size) {
        const unsigned char *data = frame;
        if (timestamps) {
            decoder->t_ns[i] = t0_ns + (int64_t)read_u32(frame) * 1000;
            data += 4;
        } else {
            decoder->t_ns[i] = t0_ns + llround((double)i * period_ns);
        }

        for (unsigned c = 0; c < width; c++) {
            double value = read_f32(data + 4 * c);
            if (expect->kind == INGEST_KIND_IMU)
                value *= c < 3 ? acc_scale : gyro_scale;
            if (!isfinite(value))
                return ingest_fail(failure, INGEST_REJECT_NON_FINITE,
                                   "binary frame %zu value %u is not finite", i, c);
            if (fabs(value) > INGEST_MAX_ABS_VALUE)
                return ingest_fail(failure, INGEST_REJECT_OUT_OF_RANGE,
                                   "binary frame %zu value %u (%g) is outside +-%g", i, c, value,
                                   INGEST_MAX_ABS_VALUE);
            decoder->values[i * width + c] = (float)value;
        }
    }

    batch->count = (int)count;
    batch->width = (int)width;
    batch->t_ns = decoder->t_ns;
    batch->values = decoder->values;
    batch->has_seq = (flags & INGEST_BINARY_HAS_SEQ) != 0;
    batch->seq = (int64_t)seq;
    return 0;
}

int ingest_decode(ingest_decoder *decoder, const void *payload, size_t size,
                  const ingest_expect *expect, ingest_batch *batch, ingest_failure *failure)
{
    memset(batch, 0, sizeof *batch);

    if (size == 0)
        return ingest_fail(failure, INGEST_REJECT_INVALID_JSON,
                           "empty payload; expected a JSON object or a binary message");
    if (size >= 4 && memcmp(payload, INGEST_BINARY_MAGIC, 4) == 0)
        return decode_binary(decoder, payload, size, expect, batch, failure);
    return decode_json(decoder, payload, size, expect, batch, failure);
}
