/*
 * `babymamba inspect MODEL [--json]`: architecture, parameter count, multiply-accumulates per
 * window and the input specification of a model file.
 */
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/infer.h"
#include "babymamba/model.h"
#include "cli_common.h"
#include "commands.h"

static const char *const usage =
    "usage: babymamba inspect MODEL [--json]\n"
    "\n"
    "Prints the architecture, parameter count, multiply-accumulates per window and input\n"
    "specification of a model file, after validating the whole file.\n"
    "  --json  print one JSON object instead of a table\n";

static void print_table(const bm_model *model, size_t workspace_bytes)
{
    const bm_model_info *m = bm_model_get_info(model);

    printf("model          %s %s\n", bm_model_name(model), bm_model_version(model));
    printf("sha256         %s\n", bm_model_sha256(model));
    printf("family         %s (%s)\n", bm_family_name(m->family),
           m->family == BM_FAMILY_CX ? "Crossover-BiDir, early channel fusion"
                                     : "channel-independent stem");
    printf("direction      %s\n", m->bidirectional ? "bidirectional" : "forward-only");
    printf("pooling        %s\n", bm_pooling_name(m->pooling));
    printf("scan           %s", bm_scan_name(m->scan));
    if (m->scan == BM_SCAN_CHUNKED_CLAMPED) {
        printf(" (chunks of %d tokens)", m->scan_chunk);
    }
    printf("\n");
    printf("d_model        %d\n", m->d_model);
    printf("d_state        %d\n", m->d_state);
    printf("d_inner        %d (expand %d)\n", m->d_inner, m->expand);
    printf("dt_rank        %d\n", m->dt_rank);
    printf("d_conv         %d\n", m->d_conv);
    printf("layers         %d\n", m->n_layers);
    printf("tokens         %d (patch kernel %d, stride %d, padding %d)\n", m->n_tokens,
           m->patch_kernel, m->patch_stride, m->patch_padding);
    printf("parameters     %" PRIu64 "\n", m->parameter_count);
    printf("MACs/window    %" PRIu64 "\n", m->macs_per_window);
    if (workspace_bytes > 0) {
        printf("workspace      %zu bytes per inference context\n", workspace_bytes);
    } else {
        printf("workspace      unavailable: a context could not be allocated\n");
    }
    printf("classes        %d:", m->n_classes);
    for (int k = 0; k < m->n_classes; k++) {
        printf(" %s", bm_model_class_name(model, k));
    }
    printf("\n");
    printf("input          %d samples x %d channels at %g Hz, hop %d, preprocessing %s\n",
           m->window_length, m->n_channels, m->sample_rate_hz, m->hop,
           bm_model_preprocessing(model));
    for (int c = 0; c < m->n_channels; c++) {
        printf("  %-14s %-8s mean %-12.6g std %.6g\n", bm_model_channel_name(model, c),
               bm_model_channel_unit(model, c), bm_model_norm_mean(model)[c],
               bm_model_norm_std(model)[c]);
    }
}

static int print_json(const bm_model *model, size_t workspace_bytes)
{
    const bm_model_info *m = bm_model_get_info(model);
    json_t *classes = json_array();
    for (int k = 0; k < m->n_classes; k++) {
        json_array_append_new(classes, json_string(bm_model_class_name(model, k)));
    }
    json_t *channels = json_array();
    for (int c = 0; c < m->n_channels; c++) {
        json_array_append_new(channels,
                              json_pack("{s:s, s:s, s:f, s:f}", "name",
                                        bm_model_channel_name(model, c), "unit",
                                        bm_model_channel_unit(model, c), "mean",
                                        (double)bm_model_norm_mean(model)[c], "std",
                                        (double)bm_model_norm_std(model)[c]));
    }

    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, "
        "s:o, s:{s:i, s:i, s:f, s:i, s:s, s:o}}",
        "name", bm_model_name(model), "version", bm_model_version(model), "sha256",
        bm_model_sha256(model), "family", bm_family_name(m->family), "bidirectional",
        m->bidirectional, "pooling", bm_pooling_name(m->pooling), "scan", bm_scan_name(m->scan),
        "d_model", m->d_model, "d_state", m->d_state, "d_inner", m->d_inner, "dt_rank",
        m->dt_rank, "d_conv", m->d_conv, "n_layers", m->n_layers, "n_tokens", m->n_tokens,
        "parameters", (json_int_t)m->parameter_count, "macs_per_window",
        (json_int_t)m->macs_per_window, "workspace_bytes", (json_int_t)workspace_bytes,
        "classes", classes, "input", "window_length", m->window_length, "hop", m->hop,
        "sample_rate_hz", m->sample_rate_hz, "n_channels", m->n_channels, "preprocessing",
        bm_model_preprocessing(model), "channels", channels);
    if (root == NULL) {
        cli_error("inspect", "cannot build the JSON output");
        return CLI_EXIT_FAILURE;
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text == NULL) {
        cli_error("inspect", "cannot format the JSON output");
        return CLI_EXIT_FAILURE;
    }
    printf("%s\n", text);
    free(text);
    return CLI_EXIT_OK;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;

    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' || path != NULL) {
            cli_error("inspect", "unexpected argument '%s'", argv[i]);
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        } else {
            path = argv[i];
        }
    }
    if (path == NULL) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }

    bm_model *model = cli_load_model("inspect", path);
    if (model == NULL) {
        return CLI_EXIT_FAILURE;
    }

    bm_ctx *ctx = NULL;
    bm_error error;
    size_t workspace_bytes = 0;
    if (bm_ctx_create(model, &ctx, &error) == BM_OK) {
        workspace_bytes = bm_ctx_workspace_bytes(ctx);
    }
    bm_ctx_destroy(ctx);

    int status = CLI_EXIT_OK;
    if (json) {
        status = print_json(model, workspace_bytes);
    } else {
        print_table(model, workspace_bytes);
    }
    bm_model_destroy(model);
    return status;
}
