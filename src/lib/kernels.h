/*
 * The numeric kernels of the forward pass. They are plain loops over contiguous float arrays,
 * written to read like the equations and shaped so that the compiler vectorises their inner
 * loops. An int8 or hand-vectorised version can replace a kernel behind the same signature.
 * None of them allocates.
 */
#ifndef BM_KERNELS_H
#define BM_KERNELS_H

#include <stdint.h>

/* y[rows] = W x[cols], where wt is W transposed: wt[c * rows + r] = W[r][c]. Each output sums
 * over c in increasing order, as the row-major loop does, but the inner loop runs over outputs
 * and so vectorises without reordering any sum. */
void bm__matvec(const float *wt, const float *x, float *y, int rows, int cols);

/* y[rows] = W x[cols] + b[rows], with W transposed as in bm__matvec. */
void bm__matvec_bias(const float *wt, const float *b, const float *x, float *y, int rows,
                     int cols);

/* out[n] = LayerNorm(x[n]) * weight + bias, with the biased variance PyTorch uses. The
 * statistics are accumulated in double so that inputs of magnitude 1e4 keep their precision.
 * out may equal x. */
void bm__layer_norm(const float *x, const float *weight, const float *bias, int n, float eps,
                    float *out);

/* SiLU(x) = x * sigmoid(x). */
float bm__silu(float x);

/* softplus(x) = log(1 + exp(x)), and x itself above 20 as in PyTorch's default threshold. */
float bm__softplus(float x);

/* exp(x) for the scan's decays, inline so that loops calling it vectorise. Range reduction
 * x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts so n ln2 is exact), then a
 * degree-6 Taylor polynomial for e^r, whose relative error is below 2e-7 on that interval,
 * scaled by 2^n built in the exponent bits. Inputs below -87.3 give 0 and above 88 are
 * clamped, so the result is always finite; the scan only passes x = delta * A <= 0, or NaN when
 * an earlier step overflowed. */
static inline float bm__exp_inline(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_high = 0.693145751953125f;
    const float ln2_low = 1.42860682030941723e-06f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */

    /* NaN takes the lower bound, so the integer conversion below is always defined; the scan
     * still reports the NaN through its other terms and the final logit check. */
    float clamped = x > 88.0f ? 88.0f : (x >= -87.3f ? x : -87.3f);
    float n = (clamped * log2e + round_magic) - round_magic;
    float r = clamped - n * ln2_high - n * ln2_low;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6.0f + r * (1.0f / 24.0f +
                                         r * (1.0f / 120.0f + r * (1.0f / 720.0f))))));
    union {
        int32_t bits;
        float value;
    } scale = {.bits = ((int32_t)n + 127) * (1 << 23)};
    return x < -87.3f ? 0.0f : p * scale.value;
}

#endif
