/*
 * The 3rd-order Butterworth low-pass that separates gravity from body acceleration.
 *
 * The coefficients are designed at run time for any sample rate with the bilinear transform,
 * prewarped so that the digital filter's -3 dB point lies exactly at the cutoff. The filter
 * runs as a first-order section followed by a second-order section, both in transposed direct
 * form II with double-precision state. docs/preprocessing.md gives the formulas.
 */
#ifndef BM_BUTTERWORTH_H
#define BM_BUTTERWORTH_H

/* One first-order and one second-order section; b are feed-forward and a feedback
 * coefficients, with a[0] = 1 left implicit. */
typedef struct bm__butterworth3 {
    double b1[2], a1[1]; /* first-order section */
    double b2[3], a2[2]; /* second-order section */
    double s1[1];        /* state of the first-order section */
    double s2[2];        /* state of the second-order section */
} bm__butterworth3;

/* Designs the low-pass for cutoff_hz at sample_rate_hz and zeroes the state. Returns 0 on
 * success and -1 unless 0 < cutoff_hz < sample_rate_hz / 2 (both finite). */
int bm__butterworth3_design(bm__butterworth3 *filter, double cutoff_hz, double sample_rate_hz);

/* Sets the state to the steady state of a constant input x, so that feeding x gives x. */
void bm__butterworth3_start(bm__butterworth3 *filter, double x);

/* Filters one sample and returns the output. */
double bm__butterworth3_step(bm__butterworth3 *filter, double x);

/* Writes the transfer function of the cascade as one 3rd-order polynomial pair,
 * H(z) = (b[0] + b[1] z^-1 + b[2] z^-2 + b[3] z^-3) / (a[0] + a[1] z^-1 + ...), with a[0] = 1.
 * The filter itself runs as sections, and this form serves comparisons with textbook tables. */
void bm__butterworth3_polynomials(const bm__butterworth3 *filter, double b[4], double a[4]);

#endif
