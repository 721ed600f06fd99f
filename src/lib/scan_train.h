/*
 * Selective scan with a hand-written backward pass, for training on the CPU.
 *
 * This is the internal C API of libbabymamba_scan, which training/scan_op.py loads through
 * ctypes. It is not part of the public API and is not installed. The library never prints and
 * never exits. Every function reports failure through its return value.
 *
 * For each sequence b and token t, with x, delta, z of shape [L, di], B and C of shape [L, N],
 * A of shape [di, N] and D of shape [di]:
 *
 *     h_t   = exp(delta_t * A) * h_{t-1} + (delta_t * x_t) outer B_t     h: [di, N], h_{-1} = 0
 *     y_t   = sum_n h_t[:, n] * C_t[n] + D * x_t
 *     out_t = y_t * SiLU(z_t)
 *
 * delta is the step size after softplus, and A is usually -exp(A_log).
 *
 * Layout: every array is a dense, row-major float32 array.
 *     x, delta, z, out and their gradients   [batch, length, d_inner]
 *     B, C and their gradients               [batch, length, d_state]
 *     A and its gradient                     [d_inner, d_state]
 *     D and its gradient                     [d_inner]
 *
 * Input arrays may alias each other. Output arrays must not alias any input or each other.
 */
#ifndef BM_SCAN_TRAIN_H
#define BM_SCAN_TRAIN_H

#include <stdint.h>

/* Bump this when a signature or a layout below changes, so that a stale build is detected. */
#define BM_SCAN_TRAIN_ABI_VERSION 1

typedef enum bm_scan_train_status {
    BM_SCAN_TRAIN_OK = 0,
    /* A dimension is below 1, a pointer is NULL, num_threads is below 1, or a size overflows. */
    BM_SCAN_TRAIN_INVALID_ARGUMENT = 1,
    BM_SCAN_TRAIN_OUT_OF_MEMORY = 2,
} bm_scan_train_status;

/* Returns BM_SCAN_TRAIN_ABI_VERSION of the compiled library. */
int bm_scan_train_abi_version(void);

/* Returns a static, human-readable description of a bm_scan_train_status value. */
const char *bm_scan_train_status_message(int status);

/*
 * Computes out for every sequence.
 *
 * Sequences are split into num_threads contiguous ranges, one per thread. The calling thread
 * runs one range and waits for the others. If a thread cannot be started, the calling thread
 * runs its range too, so the result never depends on thread creation. Each sequence's output
 * depends only on that sequence, so the result is the same for every num_threads.
 */
int bm_scan_train_forward(int64_t batch, int64_t length, int64_t d_inner, int64_t d_state,
                          const float *x, const float *delta, const float *A, const float *B,
                          const float *C, const float *D, const float *z, float *out,
                          int num_threads);

/*
 * Computes the gradients of a loss with respect to all seven inputs, given dout, its gradient
 * with respect to out.
 *
 * dA and dD are summed over the batch. The states are recomputed from the inputs, so no
 * forward-pass buffers are needed. The per-thread partial sums of dA and dD are added in thread
 * order, so the result is deterministic for a given num_threads but its rounding can change
 * with num_threads. Every output array is fully overwritten.
 */
int bm_scan_train_backward(int64_t batch, int64_t length, int64_t d_inner, int64_t d_state,
                           const float *x, const float *delta, const float *A, const float *B,
                           const float *C, const float *D, const float *z, const float *dout,
                           float *dx, float *ddelta, float *dA, float *dB, float *dC, float *dD,
                           float *dz, int num_threads);

#endif
