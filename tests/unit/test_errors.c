/*
 * The error table: every code has a distinct name and a message, and out-of-range values are
 * handled.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/error.h"

START_TEST(every_code_has_name_and_message)
{
    for (int i = 0; i < BM_STATUS_COUNT; i++) {
        ck_assert_str_ne(bm_status_name((bm_status)i), "unknown");
        ck_assert(strlen(bm_status_message((bm_status)i)) > 0);
        for (int j = 0; j < i; j++) {
            ck_assert_str_ne(bm_status_name((bm_status)i), bm_status_name((bm_status)j));
        }
    }
}
END_TEST

START_TEST(out_of_range_code_is_unknown)
{
    ck_assert_str_eq(bm_status_name(BM_STATUS_COUNT), "unknown");
    ck_assert_str_eq(bm_status_name((bm_status)-1), "unknown");
    ck_assert_str_eq(bm_status_message((bm_status)1000), "unknown error");
}
END_TEST

START_TEST(clear_resets_error)
{
    bm_error error = {.status = BM_ERR_IO, .message = "old"};
    bm_error_clear(&error);
    ck_assert_int_eq(error.status, BM_OK);
    ck_assert_str_eq(error.message, "");
    bm_error_clear(NULL);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("errors");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, every_code_has_name_and_message);
    tcase_add_test(tc, out_of_range_code_is_unknown);
    tcase_add_test(tc, clear_resets_error);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
