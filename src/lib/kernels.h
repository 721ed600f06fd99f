/*
 * The numeric kernels of the forward pass. They are plain loops over row-major float arrays,
 * written to read like the equations; a later vectorised version can replace a kernel behind the
 * same signature. None of them allocates.
 */
#ifndef BM_KERNELS_H
#define BM_KERNELS_H

/* y[rows] = W[rows][cols] x[cols]. */
void bm__matvec(const float *w, const float *x, float *y, int rows, int cols);

/* y[rows] = W[rows][cols] x[cols] + b[rows]. */
void bm__matvec_bias(const float *w, const float *b, const float *x, float *y, int rows,
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

#endif
