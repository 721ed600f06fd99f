/*
 * Unit tests of sensor message decoding: both timestamp forms, units, the channel form, the
 * binary form, topic parsing, and a rejection with a clear reason for each kind of bad input.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

static const ingest_expect imu = {INGEST_KIND_IMU, 9};
static const ingest_expect three_channels = {INGEST_KIND_CHANNELS, 3};

static ingest_decoder *decoder;

static void setup(void)
{
    decoder = ingest_decoder_create();
    ck_assert_ptr_nonnull(decoder);
}

static void teardown(void)
{
    ingest_decoder_destroy(decoder);
}

static int decode(const char *json, const ingest_expect *expect, ingest_batch *batch,
                  ingest_failure *failure)
{
    return ingest_decode(decoder, json, strlen(json), expect, batch, failure);
}

START_TEST(t0_with_rate_gives_regular_times)
{
    ingest_batch batch;
    ingest_failure failure;
    const char *json = "{\"t0\": 1700000000.25, \"rate_hz\": 50, \"seq\": 17,"
                       " \"acc\": [[0,0,1],[0.1,0.2,0.9]], \"gyro\": [[1,2,3],[4,5,6]]}";

    ck_assert_int_eq(decode(json, &imu, &batch, &failure), 0);
    ck_assert_int_eq(batch.count, 2);
    ck_assert_int_eq(batch.width, 6);
    ck_assert_int_eq(batch.t_ns[0], 1700000000250000000LL);
    ck_assert_int_eq(batch.t_ns[1], 1700000000270000000LL);
    ck_assert_int_eq(batch.has_seq, 1);
    ck_assert_int_eq(batch.seq, 17);
    ck_assert_float_eq(batch.values[2], 1.0f);
    ck_assert_float_eq(batch.values[6 + 3], 4.0f);
}
END_TEST

START_TEST(integer_nanoseconds_are_exact)
{
    ingest_batch batch;
    ingest_failure failure;
    const char *json = "{\"t_ns\": [1700000000250000001, 1700000000270000003],"
                       " \"acc\": [[0,0,1],[0,0,1]], \"gyro\": [[0,0,0],[0,0,0]]}";

    ck_assert_int_eq(decode(json, &imu, &batch, &failure), 0);
    ck_assert_int_eq(batch.t_ns[0], 1700000000250000001LL);
    ck_assert_int_eq(batch.t_ns[1], 1700000000270000003LL);
    ck_assert_int_eq(batch.has_seq, 0);
}
END_TEST

START_TEST(float_nanoseconds_are_rejected)
{
    ingest_batch batch;
    ingest_failure failure;
    const char *json = "{\"t_ns\": [1.7e18], \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}";

    ck_assert_int_eq(decode(json, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_FIELD);
    ck_assert_ptr_nonnull(strstr(failure.message, "'t_ns[0]'"));
    ck_assert_ptr_nonnull(strstr(failure.message, "integer"));
}
END_TEST

START_TEST(units_are_converted)
{
    ingest_batch batch;
    ingest_failure failure;
    const char *json = "{\"t0_ns\": 0, \"rate_hz\": 50, \"units\": {\"acc\": \"m/s2\", \"gyro\":"
                       " \"deg/s\"}, \"acc\": [[9.80665,0,0]], \"gyro\": [[180,0,0]]}";

    ck_assert_int_eq(decode(json, &imu, &batch, &failure), 0);
    ck_assert_float_eq_tol(batch.values[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(batch.values[3], (float)M_PI, 1e-6f);
}
END_TEST

START_TEST(unknown_unit_is_rejected)
{
    ingest_batch batch;
    ingest_failure failure;
    const char *json = "{\"t0_ns\": 0, \"rate_hz\": 50, \"units\": {\"acc\": \"mg\"},"
                       " \"acc\": [[1,0,0]], \"gyro\": [[0,0,0]]}";

    ck_assert_int_eq(decode(json, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_UNITS);
    ck_assert_ptr_nonnull(strstr(failure.message, "\"mg\""));
    ck_assert_ptr_nonnull(strstr(failure.message, "m/s2"));
}
END_TEST

START_TEST(channels_form_is_decoded)
{
    ingest_batch batch;
    ingest_failure failure;
    const char *json = "{\"t\": [10.0, 10.02], \"channels\": [[1,2,3],[4,5,6]]}";

    ck_assert_int_eq(decode(json, &three_channels, &batch, &failure), 0);
    ck_assert_int_eq(batch.count, 2);
    ck_assert_int_eq(batch.width, 3);
    ck_assert_int_eq(batch.t_ns[1], 10020000000LL);
    ck_assert_float_eq(batch.values[5], 6.0f);
}
END_TEST

START_TEST(bad_messages_name_the_problem)
{
    static const struct {
        const char *json;
        const ingest_expect *expect;
        ingest_reason reason;
        const char *needle;
    } cases[] = {
        {"{\"t0\": 1, ", &imu, INGEST_REJECT_INVALID_JSON, "invalid JSON"},
        {"[1,2]", &imu, INGEST_REJECT_INVALID_JSON, "object"},
        {"{\"rate_hz\": 50, \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_MISSING_FIELD, "timestamps"},
        {"{\"t0\": 1, \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}", &imu, INGEST_REJECT_MISSING_FIELD,
         "rate_hz"},
        {"{\"t0\": 1, \"rate_hz\": -5, \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_INVALID_FIELD, "-5"},
        {"{\"t0\": 1, \"t\": [1], \"rate_hz\": 5, \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_INVALID_FIELD, "exactly one"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"acc\": [[0,0,1],[0,0,1]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_LENGTH_MISMATCH, "'gyro' has 1"},
        {"{\"t\": [1, 2], \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_LENGTH_MISMATCH, "'t'"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"acc\": [[0,0]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_WRONG_CHANNELS, "'acc[0]'"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"acc\": [[0,\"x\",1]], \"gyro\": [[0,0,0]]}", &imu,
         INGEST_REJECT_INVALID_FIELD, "'acc[0][1]'"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"channels\": [[0,0,1]]}", &imu,
         INGEST_REJECT_WRONG_CHANNELS, "raw 'acc'"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"acc\": [[0,0,1]], \"gyro\": [[0,0,0]]}", &three_channels,
         INGEST_REJECT_WRONG_CHANNELS, "'channels' of 3"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"channels\": [[0,0,1,4]]}", &three_channels,
         INGEST_REJECT_WRONG_CHANNELS, "3 numbers"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"channels\": [[0,0,1e39]]}", &three_channels,
         INGEST_REJECT_OUT_OF_RANGE, "outside"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"channels\": [[0,-2e9,1]]}", &three_channels,
         INGEST_REJECT_OUT_OF_RANGE, "[0][1]"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"channels\": []}", &three_channels,
         INGEST_REJECT_LENGTH_MISMATCH, "0 samples"},
        {"{\"t0\": 1, \"rate_hz\": 50, \"seq\": -1, \"channels\": [[0,0,1]]}", &three_channels,
         INGEST_REJECT_INVALID_FIELD, "'seq'"},
        /* Times whose sums or differences would overflow int64 nanoseconds. */
        {"{\"t0_ns\": 9223372036854775807, \"rate_hz\": 50, \"channels\": [[0,0,1],[0,0,1]]}",
         &three_channels, INGEST_REJECT_INVALID_FIELD, "2^62"},
        {"{\"t0_ns\": 4611686018427387904, \"rate_hz\": 50, \"channels\": [[0,0,1],[0,0,1]]}",
         &three_channels, INGEST_REJECT_INVALID_FIELD, "sample 1"},
        {"{\"t_ns\": [-9223372036854775807], \"channels\": [[0,0,1]]}", &three_channels,
         INGEST_REJECT_INVALID_FIELD, "'t_ns' of sample 0"},
        {"{\"t0\": 9e9, \"rate_hz\": 50, \"channels\": [[0,0,1]]}", &three_channels,
         INGEST_REJECT_INVALID_FIELD, "'t0'"},
        {"{\"t0\": 1, \"rate_hz\": 1e-300, \"channels\": [[0,0,1],[0,0,1]]}", &three_channels,
         INGEST_REJECT_INVALID_FIELD, "'rate_hz'"},
        {"{\"t0\": 1, \"rate_hz\": \"50\", \"channels\": [[0,0,1]]}", &three_channels,
         INGEST_REJECT_INVALID_FIELD, "a string"},
        {"", &three_channels, INGEST_REJECT_INVALID_JSON, "empty payload"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ingest_batch batch;
        ingest_failure failure;
        ck_assert_msg(decode(cases[i].json, cases[i].expect, &batch, &failure) == -1,
                      "case %zu was accepted: %s", i, cases[i].json);
        ck_assert_msg(failure.reason == cases[i].reason, "case %zu: reason %s, expected %s", i,
                      ingest_reason_name(failure.reason), ingest_reason_name(cases[i].reason));
        ck_assert_msg(strstr(failure.message, cases[i].needle) != NULL,
                      "case %zu: message \"%s\" lacks \"%s\"", i, failure.message, cases[i].needle);
    }
}
END_TEST

/* Builds a binary message of count IMU frames with the given flags. */
static size_t build_binary(unsigned char *out, int count, unsigned flags, float rate_hz)
{
    memset(out, 0, INGEST_BINARY_HEADER_SIZE);
    memcpy(out, INGEST_BINARY_MAGIC, 4);
    out[4] = INGEST_BINARY_VERSION;
    out[5] = INGEST_BINARY_KIND_IMU;
    out[6] = (unsigned char)flags;
    out[7] = 6;
    out[8] = (unsigned char)count;
    memcpy(out + 12, &rate_hz, 4);
    int64_t t0 = 1700000000000000000LL;
    memcpy(out + 16, &t0, 8);
    uint64_t seq = 42;
    memcpy(out + 24, &seq, 8);

    size_t used = INGEST_BINARY_HEADER_SIZE;
    for (int i = 0; i < count; i++) {
        if (flags & INGEST_BINARY_TIMESTAMPS) {
            uint32_t offset_us = (uint32_t)i * 20000u + 7u;
            memcpy(out + used, &offset_us, 4);
            used += 4;
        }
        for (int c = 0; c < 6; c++) {
            float value = (float)(i * 10 + c);
            memcpy(out + used, &value, 4);
            used += 4;
        }
    }
    return used;
}

START_TEST(binary_form_is_decoded)
{
    unsigned char message[1024];
    ingest_batch batch;
    ingest_failure failure;

    size_t size = build_binary(message, 3, INGEST_BINARY_HAS_SEQ, 50.0f);
    ck_assert_int_eq(ingest_decode(decoder, message, size, &imu, &batch, &failure), 0);
    ck_assert_int_eq(batch.count, 3);
    ck_assert_int_eq(batch.t_ns[2], 1700000000040000000LL);
    ck_assert_float_eq(batch.values[2 * 6 + 5], 25.0f);
    ck_assert_int_eq(batch.has_seq, 1);
    ck_assert_int_eq(batch.seq, 42);

    size = build_binary(message, 2, INGEST_BINARY_TIMESTAMPS | INGEST_BINARY_GYRO_DEG, 0.0f);
    ck_assert_int_eq(ingest_decode(decoder, message, size, &imu, &batch, &failure), 0);
    ck_assert_int_eq(batch.t_ns[1], 1700000000020007000LL);
    ck_assert_float_eq_tol(batch.values[6 + 3], 13.0f * (float)M_PI / 180.0f, 1e-6f);
    ck_assert_int_eq(batch.has_seq, 0);
}
END_TEST

START_TEST(bad_binary_is_rejected)
{
    unsigned char message[1024];
    ingest_batch batch;
    ingest_failure failure;

    size_t size = build_binary(message, 3, 0, 50.0f);
    ck_assert_int_eq(ingest_decode(decoder, message, size - 1, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_LENGTH_MISMATCH);

    message[4] = 2;
    ck_assert_int_eq(ingest_decode(decoder, message, size, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_BINARY);
    ck_assert_ptr_nonnull(strstr(failure.message, "version 2"));

    size = build_binary(message, 3, 0, 50.0f);
    ck_assert_int_eq(ingest_decode(decoder, message, size, &three_channels, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_WRONG_CHANNELS);

    ck_assert_int_eq(ingest_decode(decoder, message, 20, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_BINARY);

    /* Reserved header bytes must be 0, so a later version can give them a meaning. */
    size = build_binary(message, 3, 0, 50.0f);
    message[10] = 1;
    ck_assert_int_eq(ingest_decode(decoder, message, size, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_BINARY);
    ck_assert_ptr_nonnull(strstr(failure.message, "reserved"));

    /* A tiny rate would make the period infinite; a far t0 would overflow the sample times. */
    size = build_binary(message, 3, 0, 1e-30f);
    ck_assert_int_eq(ingest_decode(decoder, message, size, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_FIELD);
    ck_assert_ptr_nonnull(strstr(failure.message, "rate_hz"));

    size = build_binary(message, 3, INGEST_BINARY_TIMESTAMPS, 50.0f);
    int64_t far = INT64_MAX - 5;
    memcpy(message + 16, &far, 8);
    ck_assert_int_eq(ingest_decode(decoder, message, size, &imu, &batch, &failure), -1);
    ck_assert_int_eq(failure.reason, INGEST_REJECT_INVALID_FIELD);
    ck_assert_ptr_nonnull(strstr(failure.message, "t0_ns"));
}
END_TEST

START_TEST(device_ids_are_validated)
{
    ck_assert(ingest_device_id_valid("wrist-01.left_A", 15));
    ck_assert(!ingest_device_id_valid("", 0));
    ck_assert(!ingest_device_id_valid("a b", 3));
    ck_assert(!ingest_device_id_valid("a/b", 3));
    ck_assert(!ingest_device_id_valid(".", 1));
    ck_assert(!ingest_device_id_valid("..", 2));
    ck_assert(ingest_device_id_valid("...", 3));
    char long_id[66];
    memset(long_id, 'x', 65);
    long_id[65] = '\0';
    ck_assert(ingest_device_id_valid(long_id, 64));
    ck_assert(!ingest_device_id_valid(long_id, 65));
}
END_TEST

START_TEST(device_id_comes_from_topic)
{
    char id[65];

    ck_assert_int_eq(ingest_device_from_topic("babymamba/+/imu", "babymamba/w1/imu", id, sizeof id),
                     0);
    ck_assert_str_eq(id, "w1");
    ck_assert_int_eq(
        ingest_device_from_topic("$share/g/babymamba/+/imu", "babymamba/w2/imu", id, sizeof id), 0);
    ck_assert_str_eq(id, "w2");
    ck_assert_int_eq(ingest_device_from_topic("site/+/+/raw", "site/d3/x/raw", id, sizeof id), 0);
    ck_assert_str_eq(id, "d3");
    ck_assert_int_eq(ingest_device_from_topic("babymamba/+/#", "babymamba/d4/a/b", id, sizeof id),
                     0);
    ck_assert_str_eq(id, "d4");
    ck_assert_int_eq(
        ingest_device_from_topic("babymamba/+/imu", "babymamba/w1/imu/x", id, sizeof id), -1);
    ck_assert_int_eq(ingest_device_from_topic("babymamba/+/imu", "babymamba/w1", id, sizeof id),
                     -1);
    ck_assert_int_eq(
        ingest_device_from_topic("babymamba/+/imu", "babymamba/bad id/imu", id, sizeof id), -1);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("ingest");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, t0_with_rate_gives_regular_times);
    tcase_add_test(tc, integer_nanoseconds_are_exact);
    tcase_add_test(tc, float_nanoseconds_are_rejected);
    tcase_add_test(tc, units_are_converted);
    tcase_add_test(tc, unknown_unit_is_rejected);
    tcase_add_test(tc, channels_form_is_decoded);
    tcase_add_test(tc, bad_messages_name_the_problem);
    tcase_add_test(tc, binary_form_is_decoded);
    tcase_add_test(tc, bad_binary_is_rejected);
    tcase_add_test(tc, device_ids_are_validated);
    tcase_add_test(tc, device_id_comes_from_topic);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
