/*
 * Golden-vector parity: every model in tests/golden/manifest.json, written by
 * training/make_golden.py, is run by the C engine on the recorded inputs, and its logits are
 * compared with PyTorch's float32 and float64 logits of the same model. The parameter count the
 * loader reports is compared with PyTorch's too.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/infer.h"
#include "babymamba/model.h"
#include "safetensors.h"
#include "test_util.h"

/* The largest |logit difference| the engine may show against PyTorch, in float32 and float64. */
#define LOGIT_TOLERANCE 1e-4

static json_t *load_manifest(void)
{
    char path[1024];
    test_golden_path("manifest.json", path, sizeof path);
    json_error_t error;
    json_t *manifest = json_load_file(path, 0, &error);
    ck_assert_msg(manifest != NULL, "cannot read %s: %s", path, error.text);
    return manifest;
}

static double logit_at(const bm_st_tensor *tensor, long index)
{
    if (tensor->dtype == BM_ST_F64) {
        return ((const double *)tensor->data)[index];
    }
    return ((const float *)tensor->data)[index];
}

/* Runs one variant and returns the largest differences against both references. */
static void check_variant(json_t *variant)
{
    const char *name = json_string_value(json_object_get(variant, "name"));
    char model_path[1024], io_path[1024], file[512];
    snprintf(file, sizeof file, "%s.safetensors", name);
    test_golden_path(file, model_path, sizeof model_path);
    snprintf(file, sizeof file, "%s.io.safetensors", name);
    test_golden_path(file, io_path, sizeof io_path);

    bm_model *model = NULL;
    bm_error error;
    bm_error_clear(&error);
    ck_assert_msg(bm_model_load(model_path, &model, &error) == BM_OK, "%s: %s", name,
                  error.message);
    const bm_model_info *info = bm_model_get_info(model);

    json_int_t expected_parameters = json_integer_value(json_object_get(variant, "parameters"));
    ck_assert_msg((json_int_t)info->parameter_count == expected_parameters,
                  "%s: %llu parameters, PyTorch counts %lld", name,
                  (unsigned long long)info->parameter_count, (long long)expected_parameters);

    bm_st_file *io = NULL;
    ck_assert_msg(bm_st_open(io_path, &io, &error) == BM_OK, "%s: %s", io_path, error.message);
    const bm_st_tensor *input = bm_st_find(io, "input");
    const bm_st_tensor *ref32 = bm_st_find(io, "logits_f32");
    const bm_st_tensor *ref64 = bm_st_find(io, "logits_f64");
    ck_assert_ptr_nonnull(input);
    ck_assert_ptr_nonnull(ref32);
    ck_assert_ptr_nonnull(ref64);
    ck_assert_int_eq(input->dtype, BM_ST_F32);
    ck_assert_int_eq(input->n_dims, 3);
    ck_assert_int_eq(input->shape[1], info->window_length);
    ck_assert_int_eq(input->shape[2], info->n_channels);

    bm_ctx *ctx = NULL;
    ck_assert_int_eq(bm_ctx_create(model, &ctx, &error), BM_OK);
    float *logits = malloc((size_t)info->n_classes * sizeof *logits);
    float *probabilities = malloc((size_t)info->n_classes * sizeof *probabilities);
    long window_values = (long)info->window_length * info->n_channels;

    double worst32 = 0.0, worst64 = 0.0;
    for (long b = 0; b < input->shape[0]; b++) {
        const float *window = (const float *)input->data + b * window_values;
        ck_assert_msg(bm_ctx_run(ctx, window, logits, probabilities, &error) == BM_OK,
                      "%s window %ld: %s", name, b, error.message);
        double sum = 0.0;
        for (int k = 0; k < info->n_classes; k++) {
            double d32 = fabs(logits[k] - logit_at(ref32, b * info->n_classes + k));
            double d64 = fabs(logits[k] - logit_at(ref64, b * info->n_classes + k));
            worst32 = d32 > worst32 ? d32 : worst32;
            worst64 = d64 > worst64 ? d64 : worst64;
            sum += probabilities[k];
        }
        ck_assert_msg(fabs(sum - 1.0) < 1e-5, "%s: probabilities sum to %g", name, sum);
    }

    printf("golden %-28s params %6llu  max|diff| f32 %.3g  f64 %.3g\n", name,
           (unsigned long long)info->parameter_count, worst32, worst64);
    ck_assert_msg(worst32 <= LOGIT_TOLERANCE, "%s: max |logit diff| vs float32 is %g", name,
                  worst32);
    ck_assert_msg(worst64 <= LOGIT_TOLERANCE, "%s: max |logit diff| vs float64 is %g", name,
                  worst64);

    free(probabilities);
    free(logits);
    bm_ctx_destroy(ctx);
    bm_st_close(io);
    bm_model_destroy(model);
}

START_TEST(golden_variant)
{
    json_t *manifest = load_manifest();
    json_t *variants = json_object_get(manifest, "variants");
    ck_assert_msg((size_t)_i < json_array_size(variants), "variant %d is not in the manifest",
                  _i);
    check_variant(json_array_get(variants, (size_t)_i));
    json_decref(manifest);
}
END_TEST

START_TEST(golden_manifest_covers_variants)
{
    json_t *manifest = load_manifest();
    json_t *variants = json_object_get(manifest, "variants");
    int seen[2][2][2][2] = {{{{0}}}};
    int lengths64 = 0, lengths128 = 0;
    size_t index;
    json_t *variant;
    json_array_foreach(variants, index, variant)
    {
        int ci = strcmp(json_string_value(json_object_get(variant, "family")), "ci") == 0;
        int gated = strcmp(json_string_value(json_object_get(variant, "pooling")), "gated") == 0;
        int bidir = json_is_true(json_object_get(variant, "bidirectional"));
        int chunked = strcmp(json_string_value(json_object_get(variant, "scan")), "exact") != 0;
        seen[ci][gated][bidir][chunked] = 1;
        json_int_t length = json_integer_value(json_object_get(variant, "window_length"));
        lengths64 += length == 64;
        lengths128 += length == 128;
    }

    /* Both families, both poolings and both directions with the exact scan, and the chunked
     * scan for both families, and both window lengths. */
    for (int ci = 0; ci < 2; ci++) {
        int gated_any = seen[ci][1][0][0] || seen[ci][1][1][0];
        int mean_any = seen[ci][0][0][0] || seen[ci][0][1][0];
        int fwd_any = seen[ci][0][0][0] || seen[ci][1][0][0];
        int bidir_any = seen[ci][0][1][0] || seen[ci][1][1][0];
        int chunked_any = seen[ci][0][0][1] || seen[ci][0][1][1] || seen[ci][1][0][1] ||
                          seen[ci][1][1][1];
        ck_assert_msg(gated_any && mean_any && fwd_any && bidir_any && chunked_any,
                      "family %s lacks a variant (gated %d mean %d fwd %d bidir %d chunked %d)",
                      ci ? "ci" : "cx", gated_any, mean_any, fwd_any, bidir_any, chunked_any);
    }
    ck_assert_int_gt(lengths64, 0);
    ck_assert_int_gt(lengths128, 0);
    json_decref(manifest);
}
END_TEST

int main(void)
{
    /* The loop's size comes from the manifest; a missing manifest fails the coverage test. */
    char path[1024];
    test_golden_path("manifest.json", path, sizeof path);
    json_t *manifest = json_load_file(path, 0, NULL);
    int n_variants = (int)json_array_size(json_object_get(manifest, "variants"));
    json_decref(manifest);

    Suite *suite = suite_create("golden");
    TCase *tc = tcase_create("parity");
    tcase_add_loop_test(tc, golden_variant, 0, n_variants);
    tcase_add_test(tc, golden_manifest_covers_variants);
    suite_add_tcase(suite, tc);

    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
