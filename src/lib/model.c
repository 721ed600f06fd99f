/*
 * The model-file loader. It reads the safetensors container, parses the babymamba metadata
 * (docs/model-format.md), derives the list of tensors the architecture needs with their exact
 * shapes, binds each one after checking its dtype and shape, rejects tensors the architecture
 * does not use, and computes the derived tables the forward pass reads. Nothing of a file is
 * used before all of it has been validated.
 */
#include "model_internal.h"

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "babymamba/stream.h"
#include "error_internal.h"
#include "sha256.h"

/* Upper bounds on dimensions. They are far above any BabyMamba-HAR configuration and keep
 * workspace sizes and element counts from overflowing on a hostile file. */
enum {
    MAX_WIDTH = 4096,
    MAX_STATE = 1024,
    MAX_LAYERS = 256,
    MAX_CHANNELS = 1024,
    MAX_CLASSES = 4096,
    MAX_WINDOW = 1 << 20,
    MAX_KERNEL = 1024,
    MAX_NAME = 256,
};

/* ---- metadata -------------------------------------------------------------------------- */

static bm_status get_int(json_t *object, const char *path, const char *key, int min, int max,
                         int *out, bm_error *error)
{
    json_t *value = json_object_get(object, key);
    if (value == NULL) {
        return bm__fail(error, BM_ERR_METADATA, "metadata '%s.%s' is missing", path, key);
    }
    if (!json_is_integer(value) || json_integer_value(value) < min ||
        json_integer_value(value) > max) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata '%s.%s': expected an integer from %d to %d", path, key, min, max);
    }
    *out = (int)json_integer_value(value);
    return BM_OK;
}

static bm_status get_string(json_t *object, const char *path, const char *key, const char **out,
                            bm_error *error)
{
    json_t *value = json_object_get(object, key);
    if (!json_is_string(value) || json_string_length(value) > MAX_NAME) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata '%s%s%s': expected a string of at most %d bytes", path,
                        *path ? "." : "", key, MAX_NAME);
    }
    *out = json_string_value(value);
    return BM_OK;
}

static bm_status get_choice(json_t *object, const char *path, const char *key,
                            const char *const *choices, int n_choices, int *out, bm_error *error)
{
    const char *text;
    bm_status status = get_string(object, path, key, &text, error);
    if (status != BM_OK) {
        return status;
    }
    for (int i = 0; i < n_choices; i++) {
        if (strcmp(text, choices[i]) == 0) {
            *out = i;
            return BM_OK;
        }
    }
    if (n_choices == 2) {
        return bm__fail(error, BM_ERR_METADATA, "metadata '%s.%s': '%s' is not '%s' or '%s'", path,
                        key, text, choices[0], choices[1]);
    }
    return bm__fail(error, BM_ERR_METADATA, "metadata '%s.%s': '%s' is not a known value", path,
                    key, text);
}

static const char *const family_names[] = {"cx", "ci"};
static const char *const pooling_names[] = {"mean", "gated"};
static const char *const scan_names[] = {"exact", "chunked_clamped"};

const char *bm_family_name(bm_family family)
{
    return (unsigned)family < 2 ? family_names[family] : "?";
}

const char *bm_pooling_name(bm_pooling pooling)
{
    return (unsigned)pooling < 2 ? pooling_names[pooling] : "?";
}

const char *bm_scan_name(bm_scan scan)
{
    return (unsigned)scan < 2 ? scan_names[scan] : "?";
}

static bm_status parse_architecture(json_t *arch, bm_model_info *info, bm_error *error)
{
    const char *path = "architecture";
    if (!json_is_object(arch)) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'architecture' is missing or not a JSON object");
    }

    int family, pooling, scan;
    bm_status status;
    if ((status = get_choice(arch, path, "family", family_names, 2, &family, error)) ||
        (status = get_choice(arch, path, "pooling", pooling_names, 2, &pooling, error)) ||
        (status = get_int(arch, path, "d_model", 1, MAX_WIDTH, &info->d_model, error)) ||
        (status = get_int(arch, path, "d_state", 1, MAX_STATE, &info->d_state, error)) ||
        (status = get_int(arch, path, "expand", 1, 16, &info->expand, error)) ||
        (status = get_int(arch, path, "dt_rank", 1, MAX_WIDTH, &info->dt_rank, error)) ||
        (status = get_int(arch, path, "d_conv", 1, MAX_KERNEL, &info->d_conv, error)) ||
        (status = get_int(arch, path, "n_layers", 1, MAX_LAYERS, &info->n_layers, error)) ||
        (status = get_int(arch, path, "stem_kernel", 1, MAX_KERNEL, &info->stem_kernel, error)) ||
        (status = get_int(arch, path, "patch_kernel", 1, MAX_KERNEL, &info->patch_kernel, error)) ||
        (status = get_int(arch, path, "patch_stride", 1, MAX_KERNEL, &info->patch_stride, error)) ||
        (status =
             get_int(arch, path, "patch_padding", 0, MAX_KERNEL, &info->patch_padding, error))) {
        return status;
    }
    info->family = (bm_family)family;
    info->pooling = (bm_pooling)pooling;
    info->d_inner = info->d_model * info->expand;

    if (info->stem_kernel % 2 == 0) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'architecture.stem_kernel': %d is even, expected an odd width "
                        "so that padding stem_kernel / 2 keeps the length",
                        info->stem_kernel);
    }

    json_t *bidirectional = json_object_get(arch, "bidirectional");
    if (!json_is_boolean(bidirectional)) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'architecture.bidirectional': expected true or false");
    }
    info->bidirectional = json_is_true(bidirectional);

    json_t *eps = json_object_get(arch, "norm_eps");
    /* The bound is checked after the conversion to float, where the engine uses it: a value
     * such as 1e-50 is positive as a double but 0 as a float. */
    if (!json_is_number(eps) || !((float)json_number_value(eps) >= FLT_MIN) ||
        json_number_value(eps) > 1) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'architecture.norm_eps': expected a number in [%g, 1]",
                        (double)FLT_MIN);
    }
    info->norm_eps = (float)json_number_value(eps);

    info->scan = BM_SCAN_EXACT;
    info->scan_chunk = 0;
    if (json_object_get(arch, "scan") != NULL) {
        if ((status = get_choice(arch, path, "scan", scan_names, 2, &scan, error))) {
            return status;
        }
        info->scan = (bm_scan)scan;
    }
    if (info->scan == BM_SCAN_CHUNKED_CLAMPED) {
        info->scan_chunk = 32;
        if (json_object_get(arch, "scan_chunk") != NULL &&
            (status = get_int(arch, path, "scan_chunk", 1, MAX_WINDOW, &info->scan_chunk, error))) {
            return status;
        }
    }
    return BM_OK;
}

static char *copy_string(const char *text)
{
    size_t size = strlen(text) + 1;
    char *copy = malloc(size);
    if (copy != NULL) {
        memcpy(copy, text, size);
    }
    return copy;
}

static bm_status parse_classes(bm_model *model, json_t *classes, bm_error *error)
{
    if (!json_is_array(classes) || json_array_size(classes) < 2 ||
        json_array_size(classes) > MAX_CLASSES) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'classes': expected an array of 2 to %d class names",
                        MAX_CLASSES);
    }

    int n = (int)json_array_size(classes);
    model->class_names = calloc((size_t)n, sizeof *model->class_names);
    if (model->class_names == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for %d class names", n);
    }
    model->info.n_classes = n;

    for (int i = 0; i < n; i++) {
        json_t *name = json_array_get(classes, (size_t)i);
        if (!json_is_string(name) || json_string_length(name) > MAX_NAME) {
            return bm__fail(error, BM_ERR_METADATA, "metadata 'classes[%d]': expected a string", i);
        }
        model->class_names[i] = copy_string(json_string_value(name));
        if (model->class_names[i] == NULL) {
            return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for class names");
        }
    }
    return BM_OK;
}

static bm_status parse_float_array(json_t *array, const char *path, int n, float *out, int positive,
                                   bm_error *error)
{
    if (!json_is_array(array) || (int)json_array_size(array) != n) {
        return bm__fail(error, BM_ERR_METADATA, "metadata '%s': expected an array of %d numbers",
                        path, n);
    }
    for (int i = 0; i < n; i++) {
        json_t *value = json_array_get(array, (size_t)i);

        /* The checks apply to the float the engine divides by: 1e-50 or 1e39 are fine doubles
         * but 0 and infinity as floats. */
        float number = (float)json_number_value(value);
        if (!json_is_number(value) || !isfinite(number) || (positive && !(number >= FLT_MIN))) {
            return bm__fail(error, BM_ERR_METADATA,
                            "metadata '%s[%d]': expected a %s number within float32 range", path,
                            i, positive ? "positive" : "finite");
        }
        out[i] = number;
    }
    return BM_OK;
}

static bm_status parse_channels(bm_model *model, json_t *channels, bm_error *error)
{
    if (!json_is_array(channels) || json_array_size(channels) < 1 ||
        json_array_size(channels) > MAX_CHANNELS) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.channels': expected an array of 1 to %d channels",
                        MAX_CHANNELS);
    }

    int n = (int)json_array_size(channels);
    model->info.n_channels = n;
    model->channel_names = calloc((size_t)n, sizeof *model->channel_names);
    model->channel_units = calloc((size_t)n, sizeof *model->channel_units);
    if (model->channel_names == NULL || model->channel_units == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for %d channel names", n);
    }

    for (int i = 0; i < n; i++) {
        json_t *channel = json_array_get(channels, (size_t)i);
        const char *name, *unit;
        char path[64];
        snprintf(path, sizeof path, "input.channels[%d]", i);
        bm_status status;
        if (!json_is_object(channel)) {
            return bm__fail(error, BM_ERR_METADATA,
                            "metadata '%s': expected an object with 'name' and 'unit'", path);
        }
        if ((status = get_string(channel, path, "name", &name, error)) ||
            (status = get_string(channel, path, "unit", &unit, error))) {
            return status;
        }
        model->channel_names[i] = copy_string(name);
        model->channel_units[i] = copy_string(unit);
        if (model->channel_names[i] == NULL || model->channel_units[i] == NULL) {
            return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for channel names");
        }
    }
    return BM_OK;
}

static bm_status parse_input(bm_model *model, json_t *input, bm_error *error)
{
    const char *path = "input";
    if (!json_is_object(input)) {
        return bm__fail(error, BM_ERR_METADATA, "metadata 'input' is missing or not a JSON object");
    }

    bm_status status = parse_channels(model, json_object_get(input, "channels"), error);
    if (status != BM_OK) {
        return status;
    }

    bm_model_info *info = &model->info;
    if ((status =
             get_int(input, path, "window_length", 1, MAX_WINDOW, &info->window_length, error)) ||
        (status = get_int(input, path, "hop", 1, MAX_WINDOW, &info->hop, error))) {
        return status;
    }

    json_t *rate = json_object_get(input, "sample_rate_hz");
    if (!json_is_number(rate) || !(json_number_value(rate) > 0) ||
        !(json_number_value(rate) <= 1e6)) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.sample_rate_hz': expected a number in (0, 1e6]");
    }
    info->sample_rate_hz = json_number_value(rate);

    const char *preprocessing;
    if ((status = get_string(input, path, "preprocessing", &preprocessing, error))) {
        return status;
    }
    model->preprocessing = copy_string(preprocessing);

    /* The daemon must run exactly the preprocessing a model was trained with, so a name this
     * library does not implement is rejected here rather than at the first sample. */
    int produced = bm_preprocessing_channel_count(preprocessing);
    if (strcmp(preprocessing, BM_PREPROCESSING_NONE) != 0 && produced == 0) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.preprocessing': '%s' is not '%s' or '%s'", preprocessing,
                        BM_PREPROCESSING_NONE, BM_PREPROCESSING_HAPT);
    }
    if (produced != 0 && produced != info->n_channels) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.channels': preprocessing '%s' produces %d channels, the "
                        "model lists %d",
                        preprocessing, produced, info->n_channels);
    }

    int n = info->n_channels;
    model->norm_mean = malloc((size_t)n * sizeof *model->norm_mean);
    model->norm_std = malloc((size_t)n * sizeof *model->norm_std);
    if (model->preprocessing == NULL || model->norm_mean == NULL || model->norm_std == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for the input specification");
    }

    json_t *norm = json_object_get(input, "normalization");
    if (!json_is_object(norm)) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.normalization': expected an object with 'mean' and "
                        "'std'");
    }
    if ((status = parse_float_array(json_object_get(norm, "mean"), "input.normalization.mean", n,
                                    model->norm_mean, 0, error)) ||
        (status = parse_float_array(json_object_get(norm, "std"), "input.normalization.std", n,
                                    model->norm_std, 1, error))) {
        return status;
    }
    return BM_OK;
}

static bm_status parse_metadata(bm_model *model, bm_error *error)
{
    const char *text = bm_st_metadata(model->file, "babymamba");
    if (text == NULL) {
        return bm__fail(error, BM_ERR_METADATA,
                        "__metadata__ has no 'babymamba' entry: not a babymamba model file");
    }
    model->metadata_json = copy_string(text);
    if (model->metadata_json == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for the metadata");
    }

    json_error_t json_error;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return bm__fail(error, BM_ERR_METADATA, "metadata 'babymamba' is not a JSON object: %s",
                        root == NULL ? json_error.text : "another JSON type");
    }

    bm_status status = BM_OK;
    json_t *format = json_object_get(root, "format");
    json_t *version = json_object_get(root, "format_version");
    if (!json_is_string(format) || strcmp(json_string_value(format), "babymamba-model") != 0) {
        status =
            bm__fail(error, BM_ERR_METADATA, "metadata 'format': expected \"babymamba-model\"");
        goto done;
    }
    if (!json_is_integer(version) || json_integer_value(version) != BM_MODEL_FORMAT_VERSION) {
        status = bm__fail(error, BM_ERR_VERSION,
                          "metadata 'format_version': this library reads version %d",
                          BM_MODEL_FORMAT_VERSION);
        goto done;
    }

    const char *name = "", *model_version = "";
    if (json_object_get(root, "name") != NULL &&
        (status = get_string(root, "", "name", &name, error))) {
        goto done;
    }
    if (json_object_get(root, "version") != NULL &&
        (status = get_string(root, "", "version", &model_version, error))) {
        goto done;
    }
    model->name = copy_string(name);
    model->version = copy_string(model_version);
    if (model->name == NULL || model->version == NULL) {
        status = bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for the name");
        goto done;
    }

    if ((status = parse_architecture(json_object_get(root, "architecture"), &model->info, error)) ||
        (status = parse_classes(model, json_object_get(root, "classes"), error)) ||
        (status = parse_input(model, json_object_get(root, "input"), error))) {
        goto done;
    }

done:
    json_decref(root);
    return status;
}

/* ---- tensors --------------------------------------------------------------------------- */

/* Allocates a derived table of count floats that the model frees on destroy. */
static float *own(bm_model *model, size_t count)
{
    if (model->n_owned == model->owned_capacity) {
        int capacity = model->owned_capacity ? 2 * model->owned_capacity : 16;
        float **grown = realloc(model->owned, (size_t)capacity * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        model->owned = grown;
        model->owned_capacity = capacity;
    }

    float *table = malloc((count ? count : 1) * sizeof *table);
    if (table != NULL) {
        model->owned[model->n_owned++] = table;
    }
    return table;
}

/* Returns an owned copy of w[rows][cols] laid out as [cols][rows], or NULL without memory. */
static const float *own_transposed(bm_model *model, const float *w, int64_t rows, int64_t cols)
{
    float *table = own(model, (size_t)(rows * cols));
    if (table == NULL) {
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            table[c * rows + r] = w[r * cols + c];
        }
    }
    return table;
}

/* The tensor binder walks the architecture's tensor list once, binding each, counting
 * parameters and remembering how many tensors it accepted, so unused tensors can be found. */
typedef struct binder {
    const bm_model *model;
    bm_error *error;
    unsigned char *used; /* [tensor count], set for each bound tensor */
    int bound;
    uint64_t parameters;
} binder;

static void mark_used(binder *b, int index, uint64_t elements)
{
    if (!b->used[index]) {
        b->used[index] = 1;
        b->bound++;
    }
    b->parameters += elements;
}

/* Binds a required F32 tensor after checking that its shape is exactly the expected one. */
static bm_status bind(const bm_model *model, const char *name, int n_dims, const int64_t *shape,
                      const float **out, int *index, bm_error *error)
{
    const bm_st_tensor *tensor = bm_st_find(model->file, name);
    char expected[128], found[128];
    bm_st_format_shape(shape, n_dims, expected, sizeof expected);

    if (tensor == NULL) {
        return bm__fail(error, BM_ERR_MISSING_TENSOR, "tensor '%s' is missing (expected F32 %s)",
                        name, expected);
    }
    if (tensor->dtype != BM_ST_F32) {
        return bm__fail(error, BM_ERR_DTYPE, "tensor '%s': expected dtype F32, found %s", name,
                        bm_st_dtype_name(tensor->dtype));
    }

    int same = tensor->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++) {
        same = tensor->shape[i] == shape[i];
    }
    if (!same) {
        bm_st_format_shape(tensor->shape, tensor->n_dims, found, sizeof found);
        return bm__fail(error, BM_ERR_SHAPE, "tensor '%s': expected shape %s, found %s", name,
                        expected, found);
    }

    /* A NaN or infinite weight would make every window fail with a message blaming the
     * input, so it is reported here, with the tensor's name. */
    const float *values = tensor->data;
    for (uint64_t i = 0; i < tensor->n_elements; i++) {
        if (!isfinite(values[i])) {
            return bm__fail(error, BM_ERR_RANGE, "tensor '%s': element %" PRIu64 " is %s", name,
                            i, isnan(values[i]) ? "NaN" : "infinite");
        }
    }

    *out = values;
    *index = (int)(tensor - bm_st_tensor_at(model->file, 0));
    return BM_OK;
}


static bm_status bind_vector(binder *b, const char *name, int64_t n, const float **out)
{
    int64_t shape[1] = {n};
    int index;
    bm_status status = bind(b->model, name, 1, shape, out, &index, b->error);
    if (status == BM_OK) {
        mark_used(b, index, (uint64_t)n);
    }
    return status;
}

static bm_status bind_tensor(binder *b, const char *name, int n_dims, int64_t d0, int64_t d1,
                             int64_t d2, const float **out)
{
    int64_t shape[3] = {d0, d1, d2};
    int index;
    bm_status status = bind(b->model, name, n_dims, shape, out, &index, b->error);
    if (status == BM_OK) {
        mark_used(b, index, (uint64_t)(d0 * d1 * (n_dims == 3 ? d2 : 1)));
    }
    return status;
}

/* Binds a BatchNorm's four tensors and folds them into scale and shift. The running statistics
 * are buffers, not parameters, so they do not count towards the parameter total. */
static bm_status bind_batch_norm(binder *b, const char *prefix, bm__batch_norm *bn)
{
    const bm_model_info *info = &b->model->info;
    int64_t d = info->d_model;
    const float *weight, *bias, *mean, *var;
    char name[96];
    bm_status status;

    snprintf(name, sizeof name, "%s.weight", prefix);
    if ((status = bind_vector(b, name, d, &weight))) {
        return status;
    }
    snprintf(name, sizeof name, "%s.bias", prefix);
    if ((status = bind_vector(b, name, d, &bias))) {
        return status;
    }
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    if ((status = bind_vector(b, name, d, &mean))) {
        return status;
    }
    snprintf(name, sizeof name, "%s.running_var", prefix);
    if ((status = bind_vector(b, name, d, &var))) {
        return status;
    }
    b->parameters -= 2 * (uint64_t)d;

    bm_model *model = (bm_model *)b->model;
    bn->scale = own(model, (size_t)d);
    bn->shift = own(model, (size_t)d);
    if (bn->scale == NULL || bn->shift == NULL) {
        return bm__fail(b->error, BM_ERR_NO_MEMORY, "model: no memory for BatchNorm tables");
    }
    for (int64_t i = 0; i < d; i++) {
        if (!(var[i] >= 0) || !isfinite(var[i]) || !isfinite(mean[i]) || !isfinite(weight[i]) ||
            !isfinite(bias[i])) {
            return bm__fail(b->error, BM_ERR_RANGE,
                            "tensor '%s.running_var' or its companions: channel %" PRId64
                            " is negative or not finite",
                            prefix, i);
        }
        double scale = weight[i] / sqrt((double)var[i] + info->norm_eps);
        bn->scale[i] = (float)scale;
        bn->shift[i] = (float)(bias[i] - mean[i] * scale);
    }
    return BM_OK;
}

static bm_status bind_layer(binder *b, int index, bm__layer *layer)
{
    const bm_model_info *info = &b->model->info;
    int64_t d = info->d_model, di = info->d_inner, n = info->d_state, r = info->dt_rank;
    char name[96];
    bm_status status;
    const float *a_log;

#define LAYER_NAME(suffix) (snprintf(name, sizeof name, "layers.%d.%s", index, suffix), name)
    if ((status = bind_vector(b, LAYER_NAME("pre_norm.weight"), d, &layer->pre_norm_weight)) ||
        (status = bind_vector(b, LAYER_NAME("pre_norm.bias"), d, &layer->pre_norm_bias)) ||
        (status = bind_vector(b, LAYER_NAME("post_norm.weight"), d, &layer->post_norm_weight)) ||
        (status = bind_vector(b, LAYER_NAME("post_norm.bias"), d, &layer->post_norm_bias)) ||
        (status = bind_tensor(b, LAYER_NAME("mixer.in_proj.weight"), 2, 2 * di, d, 0,
                              &layer->in_proj)) ||
        (status = bind_tensor(b, LAYER_NAME("mixer.conv1d.weight"), 3, di, 1, info->d_conv,
                              &layer->conv_weight)) ||
        (status = bind_vector(b, LAYER_NAME("mixer.conv1d.bias"), di, &layer->conv_bias)) ||
        (status = bind_tensor(b, LAYER_NAME("mixer.x_proj.weight"), 2, r + 2 * n, di, 0,
                              &layer->x_proj)) ||
        (status = bind_tensor(b, LAYER_NAME("mixer.dt_proj.weight"), 2, di, r, 0,
                              &layer->dt_proj_weight)) ||
        (status = bind_vector(b, LAYER_NAME("mixer.dt_proj.bias"), di, &layer->dt_proj_bias)) ||
        (status = bind_tensor(b, LAYER_NAME("mixer.A_log"), 2, di, n, 0, &a_log)) ||
        (status = bind_vector(b, LAYER_NAME("mixer.D"), di, &layer->D)) ||
        (status =
             bind_tensor(b, LAYER_NAME("mixer.out_proj.weight"), 2, d, di, 0, &layer->out_proj))) {
        return status;
    }
#undef LAYER_NAME

    bm_model *model = (bm_model *)b->model;
    layer->A = own(model, (size_t)(di * n));
    layer->in_proj = own_transposed(model, layer->in_proj, 2 * di, d);
    layer->x_proj = own_transposed(model, layer->x_proj, r + 2 * n, di);
    layer->dt_proj_weight = own_transposed(model, layer->dt_proj_weight, di, r);
    layer->out_proj = own_transposed(model, layer->out_proj, d, di);
    if (layer->A == NULL || layer->in_proj == NULL || layer->x_proj == NULL ||
        layer->dt_proj_weight == NULL || layer->out_proj == NULL) {
        return bm__fail(b->error, BM_ERR_NO_MEMORY, "model: no memory for the layer tables");
    }
    for (int64_t i = 0; i < di * n; i++) {
        layer->A[i] = -expf(a_log[i]);
        if (!isfinite(layer->A[i])) {
            return bm__fail(b->error, BM_ERR_RANGE,
                            "tensor 'layers.%d.mixer.A_log': element %" PRId64
                            " (%g) makes A = -exp(A_log) overflow float32",
                            index, i, (double)a_log[i]);
        }
    }
    return BM_OK;
}

/* Binds every tensor of the architecture in the order of docs/model-format.md. */
static bm_status bind_tensors(bm_model *model, binder *b)
{
    bm_model_info *info = &model->info;
    int64_t d = info->d_model;
    int64_t c_stem = info->family == BM_FAMILY_CX ? info->n_channels : 1;
    bm_status status;

    if ((status = bind_tensor(b, "stem.conv.weight", 3, d, c_stem, info->stem_kernel,
                              &model->stem_weight)) ||
        (status = bind_batch_norm(b, "stem.bn", &model->stem_bn)) ||
        (status =
             bind_tensor(b, "patch.dw.weight", 3, d, 1, info->patch_kernel, &model->patch_dw)) ||
        (status = bind_tensor(b, "patch.pw.weight", 3, d, d, 1, &model->patch_pw)) ||
        (status = bind_batch_norm(b, "patch.bn", &model->patch_bn)) ||
        (status = bind_tensor(b, "pos_embed", 2, info->n_tokens, d, 0, &model->pos_embed))) {
        return status;
    }

    model->layers = calloc((size_t)info->n_layers, sizeof *model->layers);
    if (model->layers == NULL) {
        return bm__fail(b->error, BM_ERR_NO_MEMORY, "model: no memory for %d layers",
                        info->n_layers);
    }
    for (int i = 0; i < info->n_layers; i++) {
        if ((status = bind_layer(b, i, &model->layers[i]))) {
            return status;
        }
    }

    if (info->pooling == BM_POOLING_GATED &&
        ((status = bind_tensor(b, "pool.proj.weight", 2, d, d, 0, &model->pool_weight)) ||
         (status = bind_vector(b, "pool.proj.bias", d, &model->pool_bias)) ||
         (status = bind_vector(b, "pool.context", d, &model->pool_context)))) {
        return status;
    }

    if ((status = bind_vector(b, "head.norm.weight", d, &model->head_norm_weight)) ||
        (status = bind_vector(b, "head.norm.bias", d, &model->head_norm_bias)) ||
        (status =
             bind_tensor(b, "head.linear.weight", 2, info->n_classes, d, 0, &model->head_weight)) ||
        (status = bind_vector(b, "head.linear.bias", info->n_classes, &model->head_bias))) {
        return status;
    }

    /* bind() finds each name once and mark_used counts a tensor once, so fewer bound than
     * present means the file has extras. */
    int n_tensors = bm_st_tensor_count(model->file);
    for (int i = 0; b->bound != n_tensors && i < n_tensors; i++) {
        if (!b->used[i]) {
            return bm__fail(b->error, BM_ERR_UNEXPECTED_TENSOR,
                            "tensor '%s' is not used by a %s model with %s pooling and %d layers",
                            bm_st_tensor_at(model->file, i)->name, bm_family_name(info->family),
                            bm_pooling_name(info->pooling), info->n_layers);
        }
    }

    /* The convolutions and the remaining matrices of bm__matvec, transposed so that their
     * inner loops run over output channels. */
    model->stem_weight = own_transposed(model, model->stem_weight, d, c_stem * info->stem_kernel);
    model->patch_dw = own_transposed(model, model->patch_dw, d, info->patch_kernel);
    model->patch_pw = own_transposed(model, model->patch_pw, d, d);
    model->head_weight = own_transposed(model, model->head_weight, info->n_classes, d);
    if (info->pooling == BM_POOLING_GATED) {
        model->pool_weight = own_transposed(model, model->pool_weight, d, d);
    }
    if (model->stem_weight == NULL || model->patch_dw == NULL || model->patch_pw == NULL ||
        model->head_weight == NULL ||
        (info->pooling == BM_POOLING_GATED && model->pool_weight == NULL)) {
        return bm__fail(b->error, BM_ERR_NO_MEMORY, "model: no memory for the projection tables");
    }

    info->parameter_count = b->parameters;
    return BM_OK;
}

static bm_status bind_all(bm_model *model, bm_error *error)
{
    binder b = {.model = model, .error = error};
    b.used = calloc((size_t)bm_st_tensor_count(model->file) + 1, 1);
    if (b.used == NULL) {
        return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for the tensor table");
    }
    bm_status status = bind_tensors(model, &b);
    free(b.used);
    return status;
}

/* ---- derived sizes --------------------------------------------------------------------- */

static bm_status derive_sizes(bm_model_info *info, bm_error *error)
{
    int64_t span = (int64_t)info->window_length + 2 * info->patch_padding - info->patch_kernel;
    if (span < 0) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.window_length' %d is shorter than the patch kernel %d "
                        "minus twice the padding %d",
                        info->window_length, info->patch_kernel, info->patch_padding);
    }
    info->n_tokens = (int)(span / info->patch_stride + 1);

    if (info->hop > info->window_length) {
        return bm__fail(error, BM_ERR_METADATA,
                        "metadata 'input.hop' %d exceeds 'input.window_length' %d", info->hop,
                        info->window_length);
    }
    return BM_OK;
}

/* Counts the multiply-accumulates of one window, matching the loops of forward.c. */
static uint64_t count_macs(const bm_model_info *info)
{
    uint64_t d = (uint64_t)info->d_model, di = (uint64_t)info->d_inner;
    uint64_t n = (uint64_t)info->d_state, r = (uint64_t)info->dt_rank;
    uint64_t l = (uint64_t)info->window_length, p = (uint64_t)info->n_tokens;
    uint64_t c = (uint64_t)info->n_channels, k = (uint64_t)info->n_classes;
    uint64_t directions = info->bidirectional ? 2 : 1;
    uint64_t sequences = info->family == BM_FAMILY_CI ? c : 1;
    uint64_t stem_inputs = info->family == BM_FAMILY_CX ? c : 1;

    uint64_t stem = l * d * stem_inputs * (uint64_t)info->stem_kernel;
    uint64_t patch = p * d * (uint64_t)info->patch_kernel + p * d * d;

    /* The input projection is shared by both directions; the scan, its projections and the
     * output projection of each direction are summed before one output projection. */
    uint64_t per_direction =
        p * di * (uint64_t)info->d_conv + p * (r + 2 * n) * di + p * di * r + p * di * n * 2;
    uint64_t layer = p * 2 * di * d + directions * per_direction + p * d * di;
    uint64_t pooling = info->pooling == BM_POOLING_GATED ? p * d * d + p * d : 0;

    uint64_t backbone = stem + patch + (uint64_t)info->n_layers * layer + pooling;
    return sequences * backbone + d * k;
}

/* ---- load and destroy ------------------------------------------------------------------ */

static bm_status load_from_file(bm_st_file *file, bm_model **out, bm_error *error)
{
    bm_model *model = calloc(1, sizeof *model);
    if (model == NULL) {
        bm_st_close(file);
        return bm__fail(error, BM_ERR_NO_MEMORY, "model: no memory for the model");
    }
    model->file = file;

    bm_status status;
    if ((status = parse_metadata(model, error)) || (status = derive_sizes(&model->info, error)) ||
        (status = bind_all(model, error))) {
        bm_model_destroy(model);
        return status;
    }

    model->info.macs_per_window = count_macs(&model->info);

    size_t size;
    const uint8_t *bytes = bm_st_bytes(file, &size);
    bm__sha256_hex(bytes, size, model->sha256);

    *out = model;
    return BM_OK;
}

bm_status bm_model_load(const char *path, bm_model **out, bm_error *error)
{
    if (out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "bm_model_load: out is NULL");
    }
    *out = NULL;

    bm_st_file *file;
    bm_status status = bm_st_open(path, &file, error);
    if (status != BM_OK) {
        return status;
    }
    return load_from_file(file, out, error);
}

bm_status bm_model_load_buffer(const void *data, size_t size, bm_model **out, bm_error *error)
{
    if (out == NULL) {
        return bm__fail(error, BM_ERR_INVALID_ARGUMENT, "bm_model_load_buffer: out is NULL");
    }
    *out = NULL;

    bm_st_file *file;
    bm_status status = bm_st_open_buffer(data, size, &file, error);
    if (status != BM_OK) {
        return status;
    }
    return load_from_file(file, out, error);
}

static void free_strings(char **strings, int n)
{
    if (strings == NULL) {
        return;
    }
    for (int i = 0; i < n; i++) {
        free(strings[i]);
    }
    free(strings);
}

void bm_model_destroy(bm_model *model)
{
    if (model == NULL) {
        return;
    }

    for (int i = 0; i < model->n_owned; i++) {
        free(model->owned[i]);
    }
    free(model->owned);
    free(model->layers);

    free_strings(model->class_names, model->info.n_classes);
    free_strings(model->channel_names, model->info.n_channels);
    free_strings(model->channel_units, model->info.n_channels);
    free(model->norm_mean);
    free(model->norm_std);
    free(model->preprocessing);
    free(model->name);
    free(model->version);
    free(model->metadata_json);
    bm_st_close(model->file);
    free(model);
}

/* ---- accessors ------------------------------------------------------------------------- */

const bm_model_info *bm_model_get_info(const bm_model *model)
{
    return &model->info;
}

const char *bm_model_name(const bm_model *model)
{
    return model->name;
}

const char *bm_model_version(const bm_model *model)
{
    return model->version;
}

const char *bm_model_class_name(const bm_model *model, int index)
{
    if (index < 0 || index >= model->info.n_classes) {
        return NULL;
    }
    return model->class_names[index];
}

const char *bm_model_channel_name(const bm_model *model, int index)
{
    if (index < 0 || index >= model->info.n_channels) {
        return NULL;
    }
    return model->channel_names[index];
}

const char *bm_model_channel_unit(const bm_model *model, int index)
{
    if (index < 0 || index >= model->info.n_channels) {
        return NULL;
    }
    return model->channel_units[index];
}

const float *bm_model_norm_mean(const bm_model *model)
{
    return model->norm_mean;
}

const float *bm_model_norm_std(const bm_model *model)
{
    return model->norm_std;
}

const char *bm_model_preprocessing(const bm_model *model)
{
    return model->preprocessing;
}

const char *bm_model_metadata_json(const bm_model *model)
{
    return model->metadata_json;
}

const char *bm_model_sha256(const bm_model *model)
{
    return model->sha256;
}
