/*
 * Plain-loop numeric kernels; see kernels.h.
 */
#include "kernels.h"

#include <math.h>

void bm__matvec(const float *restrict wt, const float *restrict x, float *restrict y, int rows,
                int cols)
{
    for (int r = 0; r < rows; r++) {
        y[r] = 0.0f;
    }
    for (int c = 0; c < cols; c++) {
        const float *column = wt + (long)c * rows;
        float xc = x[c];
        for (int r = 0; r < rows; r++) {
            y[r] += column[r] * xc;
        }
    }
}

void bm__matvec_bias(const float *wt, const float *b, const float *x, float *y, int rows, int cols)
{
    bm__matvec(wt, x, y, rows, cols);
    for (int r = 0; r < rows; r++) {
        y[r] += b[r];
    }
}

void bm__layer_norm(const float *x, const float *weight, const float *bias, int n, float eps,
                    float *out)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        sum += x[i];
    }
    double mean = sum / n;

    double squares = 0.0;
    for (int i = 0; i < n; i++) {
        double centered = x[i] - mean;
        squares += centered * centered;
    }
    double inv_std = 1.0 / sqrt(squares / n + eps);

    for (int i = 0; i < n; i++) {
        out[i] = (float)((x[i] - mean) * inv_std) * weight[i] + bias[i];
    }
}

float bm__silu(float x)
{
    return x / (1.0f + expf(-x));
}

float bm__softplus(float x)
{
    if (x > 20.0f) {
        return x;
    }
    return log1pf(expf(x));
}
