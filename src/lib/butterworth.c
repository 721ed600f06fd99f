/*
 * Design and evaluation of the 3rd-order Butterworth low-pass used for gravity.
 *
 * The analog prototype H(s) = 1 / ((s/wc + 1)((s/wc)^2 + s/wc + 1)) is mapped to the z-plane
 * with the bilinear transform s = 2 fs (1 - z^-1) / (1 + z^-1), where the analog cutoff is
 * prewarped to wc = 2 fs tan(pi fc / fs). With K = tan(pi fc / fs) the two factors become
 *
 *   first order:  K (1 + z^-1) / ((1 + K) + (K - 1) z^-1)
 *   second order: K^2 (1 + z^-1)^2 / ((1 + K + K^2) + 2 (K^2 - 1) z^-1 + (1 - K + K^2) z^-2)
 *
 * and each has a DC gain of exactly 1, which the steady-state start relies on.
 */
#include "butterworth.h"

#include <math.h>

int bm__butterworth3_design(bm__butterworth3 *filter, double cutoff_hz, double sample_rate_hz)
{
    if (!isfinite(cutoff_hz) || !isfinite(sample_rate_hz) || cutoff_hz <= 0.0 ||
        sample_rate_hz <= 0.0 || cutoff_hz >= sample_rate_hz / 2.0) {
        return -1;
    }

    const double k = tan(M_PI * cutoff_hz / sample_rate_hz);

    filter->b1[0] = k / (1.0 + k);
    filter->b1[1] = k / (1.0 + k);
    filter->a1[0] = (k - 1.0) / (k + 1.0);

    const double d = 1.0 + k + k * k;
    filter->b2[0] = k * k / d;
    filter->b2[1] = 2.0 * k * k / d;
    filter->b2[2] = k * k / d;
    filter->a2[0] = 2.0 * (k * k - 1.0) / d;
    filter->a2[1] = (1.0 - k + k * k) / d;

    bm__butterworth3_start(filter, 0.0);
    return 0;
}

void bm__butterworth3_start(bm__butterworth3 *filter, double x)
{
    /* In transposed direct form II a section with unit DC gain outputs x for the input x
     * exactly when its state contains these values, which follow from setting y = x and
     * s' = s in the update equations of bm__butterworth3_step. */
    filter->s1[0] = (filter->b1[1] - filter->a1[0]) * x;

    filter->s2[1] = (filter->b2[2] - filter->a2[1]) * x;
    filter->s2[0] = (filter->b2[1] - filter->a2[0]) * x + filter->s2[1];
}

double bm__butterworth3_step(bm__butterworth3 *filter, double x)
{
    const double y1 = filter->b1[0] * x + filter->s1[0];
    filter->s1[0] = filter->b1[1] * x - filter->a1[0] * y1;

    const double y2 = filter->b2[0] * y1 + filter->s2[0];
    filter->s2[0] = filter->b2[1] * y1 - filter->a2[0] * y2 + filter->s2[1];
    filter->s2[1] = filter->b2[2] * y1 - filter->a2[1] * y2;
    return y2;
}

void bm__butterworth3_polynomials(const bm__butterworth3 *filter, double b[4], double a[4])
{
    const double first_b[2] = {filter->b1[0], filter->b1[1]};
    const double first_a[2] = {1.0, filter->a1[0]};
    const double second_b[3] = {filter->b2[0], filter->b2[1], filter->b2[2]};
    const double second_a[3] = {1.0, filter->a2[0], filter->a2[1]};

    for (int i = 0; i < 4; i++) {
        b[i] = 0.0;
        a[i] = 0.0;
    }
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 3; j++) {
            b[i + j] += first_b[i] * second_b[j];
            a[i + j] += first_a[i] * second_a[j];
        }
    }
}
