/*
 * Selective scan for training: forward pass, hand-written backward pass, threads over sequences.
 *
 * Internal layout: inside a sequence, every [di, N] quantity (the state h, the decays, the
 * gradient of h and the partial sums of dA) is stored transposed as [N][di]. The inner loops
 * then run over d, which is contiguous in x, delta, z and their gradients. The d loops of the
 * hot paths have no reductions and no function calls, so the compiler can vectorize them
 * without -ffast-math. This is why exp is computed by vector_expf below and not by expf.
 *
 * Precision: all arithmetic is float32 except these sums, which are kept in double.
 *   - dA and dD, which add up one term per token of every sequence (batch * length terms).
 *     Their terms often cancel, so float sums lose digits as the batch grows.
 *   - The cross-thread reductions of those sums.
 *   - The final add of the dot products behind dB and dC (see dot_product).
 * The state h and its gradient are carried in float32, as the PyTorch reference does.
 */
#include "scan_train.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The two per-thread workers are compiled twice on x86-64 with GCC: for AVX2 and for the
 * baseline, and the dynamic loader picks one by the CPU it runs on (an ifunc). AVX2 doubles the
 * vector width of the d loops. The hot helpers are inlined into the workers, so they are
 * compiled for both targets too.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define BM_SCAN_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#define BM_SCAN_INLINE        inline __attribute__((always_inline))
#else
#define BM_SCAN_TARGET_CLONES
#define BM_SCAN_INLINE inline
#endif

/* Shapes and arrays of one call. A_t is A transposed to [N][di]. */
struct scan_problem {
    size_t batch;
    size_t length;
    size_t d_inner;
    size_t d_state;

    const float *x;
    const float *delta;
    const float *A_t;
    const float *B;
    const float *C;
    const float *D;
    const float *z;

    /* Forward only. */
    float *out;

    /* Backward only. */
    const float *dout;
    float *dx;
    float *ddelta;
    float *dB;
    float *dC;
    float *dz;
};

struct scan_job;
typedef void (*scan_worker)(struct scan_job *job);

/* One thread's share of a call: the sequences [first, end). */
struct scan_job {
    const struct scan_problem *problem;
    scan_worker worker;
    size_t first;
    size_t end;

    /* Backward only: this job's partial sums of dA, as [N][di], and of dD, as [di]. */
    double *dA_sum;
    double *dD_sum;

    int status;
    pthread_t thread;
    bool thread_started;
};

int bm_scan_train_abi_version(void)
{
    return BM_SCAN_TRAIN_ABI_VERSION;
}

const char *bm_scan_train_status_message(int status)
{
    switch (status) {
    case BM_SCAN_TRAIN_OK:
        return "success";
    case BM_SCAN_TRAIN_INVALID_ARGUMENT:
        return "invalid argument: a dimension is below 1, a pointer is NULL, num_threads is "
               "below 1, or a size overflows";
    case BM_SCAN_TRAIN_OUT_OF_MEMORY:
        return "out of memory";
    default:
        return "unknown status";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Elementwise functions                                                                       */
/* ------------------------------------------------------------------------------------------ */

/*
 * Computes exp(x) in float with plain arithmetic, so that loops calling it can be vectorized.
 *
 * Range reduction: x = k ln2 + r with k = round(x / ln2), so |r| <= ln2 / 2 (up to rounding in
 * k) and exp(x) = 2^k exp(r). ln2 is split into ln2_head, whose 15 significant bits make
 * k * ln2_head exact for |k| <= 256, and the small ln2_tail, so r keeps its low bits.
 *
 * exp(r) is the degree-7 Taylor polynomial, evaluated by Horner's rule. Its truncation error is
 * below r^8 / 8! < 5.3e-9 relative for |r| <= 0.347, which is under half an ulp of float
 * (6.0e-8), so the remaining error comes from float rounding. Checked against double exp on
 * every float in [-87.5, 88.8] (GCC 12, x86-64): at most 1.22 ulp.
 *
 * 2^k is built from exponent bits. The code forms (2 exp(r)) * 2^(k-1) so that k = 128 still
 * has a valid exponent field (k + 126 = 254); the true value decides whether the product
 * overflows.
 *
 * Limits: x is clamped to [-87.5, 88.8] first. Where round(x / ln2) <= -126, that is for
 * x < -86.99 where exp(x) < 1.7e-38, the exponent field is 0 and the result is +0, so tiny
 * normal and subnormal results are flushed to zero. Where x > 88.72 the product overflows
 * to +inf, as expf does. NaN reaches the polynomial unchanged and the result is NaN.
 */
static BM_SCAN_INLINE float vector_expf(float x)
{
    const float min_argument = -87.5f;
    const float max_argument = 88.8f;
    const float log2_e = 1.44269504088896341f;
    const float ln2_head = 0.693145751953125f;         /* 0x3F317200 */
    const float ln2_tail = 1.42860682030941723212e-6f; /* ln2 - ln2_head */
    /* Adding 1.5 * 2^23 rounds any |v| < 2^22 to an integer, which lands in the low mantissa
     * bits: the float's bits are then 0x4B400000 + k. */
    const float round_shifter = 12582912.0f;
    const uint32_t round_shifter_bits = 0x4B400000u;

    float clamped = x < min_argument ? min_argument : x;
    clamped = clamped > max_argument ? max_argument : clamped;

    float shifted = clamped * log2_e + round_shifter;
    float k = shifted - round_shifter;
    float r = (clamped - k * ln2_head) - k * ln2_tail;

    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;

    /* Exponent field of 2^(k-1) is k - 1 + 127. Unsigned arithmetic keeps the NaN path
     * defined; its scale is garbage but p is NaN. */
    uint32_t shifted_bits;
    memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
    uint32_t scale_bits = (shifted_bits - round_shifter_bits + 126u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);

    return (2.0f * p) * scale;
}

static BM_SCAN_INLINE float sigmoid(float v)
{
    return 1.0f / (1.0f + vector_expf(-v));
}

/*
 * Returns sum_i a[i] b[i]. Eight float partial sums run over the array, in an order fixed by
 * the code, so the compiler can vectorize the loop without reassociating. The partial sums and
 * the tail are added in double.
 */
static BM_SCAN_INLINE float dot_product(const float *restrict a, const float *restrict b,
                                        size_t count)
{
    enum { LANES = 8 };
    float partial[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= count; i += LANES) {
        for (size_t lane = 0; lane < LANES; lane++) {
            partial[lane] += a[i + lane] * b[i + lane];
        }
    }

    double sum = 0.0;
    for (; i < count; i++) {
        sum += (double)a[i] * (double)b[i];
    }
    for (size_t lane = 0; lane < LANES; lane++) {
        sum += partial[lane];
    }
    return (float)sum;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward recurrence                                                                          */
/* ------------------------------------------------------------------------------------------ */

/*
 * Advances one sequence by one token. Writes h_t to h_next, exp(delta_t A) as [N][di] to decay,
 * y_t without the gate to y, and delta_t * x_t to drive.
 */
static BM_SCAN_INLINE void advance_token(const struct scan_problem *problem,
                                         const float *restrict x_t, const float *restrict delta_t,
                                         const float *restrict B_t, const float *restrict C_t,
                                         const float *restrict h_prev, float *restrict h_next,
                                         float *restrict decay, float *restrict y,
                                         float *restrict drive)
{
    const size_t di = problem->d_inner;
    const size_t N = problem->d_state;
    const float *restrict D = problem->D;

    /* y_t = D * x_t + ...  (the state term is added per n below) */
    for (size_t d = 0; d < di; d++) {
        drive[d] = delta_t[d] * x_t[d];
        y[d] = D[d] * x_t[d];
    }

    for (size_t n = 0; n < N; n++) {
        const float *restrict A_n = problem->A_t + n * di;
        const float *restrict h_prev_n = h_prev + n * di;
        float *restrict h_next_n = h_next + n * di;
        float *restrict decay_n = decay + n * di;
        const float B_n = B_t[n];
        const float C_n = C_t[n];

        for (size_t d = 0; d < di; d++) {
            /* h_t[d,n] = exp(delta_t[d] A[d,n]) h_{t-1}[d,n] + (delta_t[d] x_t[d]) B_t[n] */
            decay_n[d] = vector_expf(delta_t[d] * A_n[d]);
            h_next_n[d] = decay_n[d] * h_prev_n[d] + drive[d] * B_n;
            /* y_t[d] += h_t[d,n] C_t[n] */
            y[d] += h_next_n[d] * C_n;
        }
    }
}

/* out_t = y_t * SiLU(z_t), with SiLU(v) = v * sigmoid(v). */
static BM_SCAN_INLINE void gate_forward(const float *restrict y, const float *restrict z_t,
                                        float *restrict out_t, size_t di)
{
    for (size_t d = 0; d < di; d++) {
        out_t[d] = y[d] * (z_t[d] * sigmoid(z_t[d]));
    }
}

BM_SCAN_TARGET_CLONES static void forward_range(struct scan_job *job)
{
    const struct scan_problem *problem = job->problem;
    const size_t L = problem->length;
    const size_t di = problem->d_inner;
    const size_t N = problem->d_state;
    const size_t state_size = N * di;

    /* Two state buffers that alternate as h_{t-1} and h_t, the decays, y and drive. */
    float *scratch = malloc((3 * state_size + 2 * di) * sizeof *scratch);
    if (scratch == NULL) {
        job->status = BM_SCAN_TRAIN_OUT_OF_MEMORY;
        return;
    }
    float *states[2] = {scratch, scratch + state_size};
    float *decay = scratch + 2 * state_size;
    float *y = decay + state_size;
    float *drive = y + di;

    for (size_t b = job->first; b < job->end; b++) {
        const size_t token_offset = b * L;
        memset(states[0], 0, state_size * sizeof *states[0]);

        for (size_t t = 0; t < L; t++) {
            const size_t row = token_offset + t;
            advance_token(problem, problem->x + row * di, problem->delta + row * di,
                          problem->B + row * N, problem->C + row * N, states[t % 2],
                          states[(t + 1) % 2], decay, y, drive);
            gate_forward(y, problem->z + row * di, problem->out + row * di, di);
        }
    }

    free(scratch);
    job->status = BM_SCAN_TRAIN_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Backward pass                                                                               */
/* ------------------------------------------------------------------------------------------ */

/*
 * Derivation. Write e_t[d,n] = exp(delta_t[d] A[d,n]) and u_t[d] = delta_t[d] x_t[d], so
 *
 *     h_t[d,n] = e_t[d,n] h_{t-1}[d,n] + u_t[d] B_t[n]
 *     y_t[d]   = sum_n h_t[d,n] C_t[n] + D[d] x_t[d]
 *     out_t[d] = y_t[d] SiLU(z_t[d])
 *
 * Given g_t = dLoss/dout_t, and writing G_t[d,n] for the total gradient dLoss/dh_t[d,n],
 * which collects the path through y_t and the path through h_{t+1}:
 *
 *     dy_t[d]   = g_t[d] SiLU(z_t[d])
 *     dz_t[d]   = g_t[d] y_t[d] SiLU'(z_t[d]),  SiLU'(v) = s (1 + v (1 - s)),  s = sigmoid(v)
 *     dD[d]    += dy_t[d] x_t[d]
 *     dx_t[d]   = dy_t[d] D[d] + ...
 *     dC_t[n]   = sum_d dy_t[d] h_t[d,n]
 *     G_t[d,n]  = dy_t[d] C_t[n] + e_{t+1}[d,n] G_{t+1}[d,n],   G_L = 0
 *
 * Through h_t = e_t h_{t-1} + u_t B_t, with de/ddelta = A e and de/dA = delta e:
 *
 *     w_t[d,n]     = G_t[d,n] h_{t-1}[d,n] e_t[d,n]        (dLoss/de_t times e_t)
 *     ddelta_t[d]  = sum_n w_t[d,n] A[d,n] + x_t[d] sum_n G_t[d,n] B_t[n]
 *     dA[d,n]     += w_t[d,n] delta_t[d]
 *     dx_t[d]     += delta_t[d] sum_n G_t[d,n] B_t[n]
 *     dB_t[n]      = sum_d G_t[d,n] u_t[d]
 *
 * The pass runs t = L-1 down to 0 and carries e_t G_t, the term that G_{t-1} needs. The
 * states h_t and decays e_t come from rerunning the forward recurrence of the sequence into
 * scratch memory first, so h is never reconstructed backwards (dividing by e_t is unstable once
 * decays underflow).
 */

/* Per-thread scratch of the backward pass, for one sequence at a time. */
struct backward_scratch {
    float *states;     /* h_{t-1} for t = 0..L, as L + 1 blocks of [N][di]; block 0 is zero */
    float *decays;     /* e_t for t = 0..L-1, as L blocks of [N][di] */
    float *ys;         /* y_t without the gate, [L][di] */
    float *carry;      /* e_{t+1} G_{t+1} before token t, e_t G_t after it, as [N][di] */
    float *grad_state; /* G_t[:, n] for the current n, [di] */
    float *dy;         /* [di] */
    float *drive;      /* u_t, [di] */
    float *sum_wA;     /* sum_n w_t[d,n] A[d,n], [di] */
    float *sum_GB;     /* sum_n G_t[d,n] B_t[n], [di] */
};

static bool multiply_sizes(size_t a, size_t b, size_t *product)
{
    if (a != 0 && b > SIZE_MAX / a) {
        return false;
    }
    *product = a * b;
    return true;
}

static bool add_sizes(size_t a, size_t b, size_t *sum)
{
    if (b > SIZE_MAX - a) {
        return false;
    }
    *sum = a + b;
    return true;
}

/*
 * Returns the number of floats that a backward_scratch needs: 2L + 2 blocks of [N][di] (states,
 * decays and carry) and L + 5 vectors of di. Returns 0 if the size in bytes overflows size_t.
 */
static size_t backward_scratch_floats(size_t L, size_t di, size_t N)
{
    size_t state_size, twice_L, blocks, block_floats, vectors, vector_floats, total, bytes;
    if (!multiply_sizes(N, di, &state_size) || !add_sizes(L, L, &twice_L) ||
        !add_sizes(twice_L, 2, &blocks) || !multiply_sizes(blocks, state_size, &block_floats) ||
        !add_sizes(L, 5, &vectors) || !multiply_sizes(vectors, di, &vector_floats) ||
        !add_sizes(block_floats, vector_floats, &total) ||
        !multiply_sizes(total, sizeof(float), &bytes)) {
        return 0;
    }
    return total;
}

static void backward_scratch_split(struct backward_scratch *scratch, float *memory, size_t L,
                                   size_t di, size_t N)
{
    const size_t state_size = N * di;
    scratch->states = memory;
    scratch->decays = scratch->states + (L + 1) * state_size;
    scratch->ys = scratch->decays + L * state_size;
    scratch->carry = scratch->ys + L * di;
    scratch->grad_state = scratch->carry + state_size;
    scratch->dy = scratch->grad_state + di;
    scratch->drive = scratch->dy + di;
    scratch->sum_wA = scratch->drive + di;
    scratch->sum_GB = scratch->sum_wA + di;
}

/*
 * Runs the gate's backward step for one token: writes dz_t, dy_t and the first term of dx_t,
 * adds dy_t x_t to dD and sets drive to u_t. The arrays are parameters so that restrict lets
 * the compiler vectorize without alias checks.
 */
static BM_SCAN_INLINE void gate_backward(size_t di, const float *restrict x_t,
                                         const float *restrict delta_t, const float *restrict z_t,
                                         const float *restrict g_t, const float *restrict D,
                                         const float *restrict y, float *restrict dz_t,
                                         float *restrict dx_t, float *restrict dy,
                                         float *restrict drive, double *restrict dD_sum)
{
    for (size_t d = 0; d < di; d++) {
        const float s = sigmoid(z_t[d]);
        /* dy_t = g_t SiLU(z_t) */
        dy[d] = g_t[d] * (z_t[d] * s);
        /* dz_t = g_t y_t s (1 + z_t (1 - s)) */
        dz_t[d] = g_t[d] * y[d] * (s * (1.0f + z_t[d] * (1.0f - s)));
        /* dD += dy_t x_t, in double */
        dD_sum[d] += (double)(dy[d] * x_t[d]);
        /* dx_t = dy_t D + ...  (the state term is added in state_backward) */
        dx_t[d] = dy[d] * D[d];
        drive[d] = delta_t[d] * x_t[d];
    }
}

/*
 * Runs the state's backward step for one token and one state index n, over all d. carry_n
 * contains e_{t+1} G_{t+1} at n on entry and e_t G_t on return. Writes G_t[:, n] to
 * grad_state, and adds this n's terms to sum_GB, sum_wA and dA_n.
 */
static BM_SCAN_INLINE void
state_backward_column(size_t di, const float *restrict A_n, const float *restrict h_prev_n,
                      const float *restrict decay_n, const float *restrict dy,
                      const float *restrict delta_t, float B_n, float C_n, float *restrict carry_n,
                      float *restrict grad_state, float *restrict sum_GB, float *restrict sum_wA,
                      double *restrict dA_n)
{
    for (size_t d = 0; d < di; d++) {
        /* G_t[d,n] = dy_t[d] C_t[n] + e_{t+1}[d,n] G_{t+1}[d,n] */
        const float G = dy[d] * C_n + carry_n[d];
        grad_state[d] = G;
        /* sum_n G_t[d,n] B_t[n], for ddelta_t and dx_t */
        sum_GB[d] += G * B_n;
        /* w_t[d,n] = G_t[d,n] h_{t-1}[d,n] e_t[d,n] */
        const float w = G * h_prev_n[d] * decay_n[d];
        /* sum_n w_t[d,n] A[d,n], for ddelta_t */
        sum_wA[d] += w * A_n[d];
        /* dA[d,n] += w_t[d,n] delta_t[d], in double */
        dA_n[d] += (double)(w * delta_t[d]);
        /* carry e_t G_t to token t-1 */
        carry_n[d] = G * decay_n[d];
    }
}

/*
 * Runs the state's backward step for token t. scratch->carry contains e_{t+1} G_{t+1} on entry
 * (zero at t = L-1) and e_t G_t on return. scratch->dy and scratch->drive must contain dy_t and
 * u_t from gate_backward. Writes dB_t, dC_t and ddelta_t, finishes dx_t and adds this
 * token's terms to dA.
 */
static BM_SCAN_INLINE void state_backward(const struct scan_problem *problem, size_t row,
                                          const float *restrict h_prev, const float *restrict h_t,
                                          const float *restrict decay,
                                          struct backward_scratch *scratch, double *restrict dA_sum)
{
    const size_t di = problem->d_inner;
    const size_t N = problem->d_state;
    const float *x_t = problem->x + row * di;
    const float *delta_t = problem->delta + row * di;
    const float *B_t = problem->B + row * N;
    const float *C_t = problem->C + row * N;
    float *dB_t = problem->dB + row * N;
    float *dC_t = problem->dC + row * N;
    float *dx_t = problem->dx + row * di;
    float *ddelta_t = problem->ddelta + row * di;
    float *sum_wA = scratch->sum_wA;
    float *sum_GB = scratch->sum_GB;

    memset(sum_wA, 0, di * sizeof *sum_wA);
    memset(sum_GB, 0, di * sizeof *sum_GB);

    for (size_t n = 0; n < N; n++) {
        const size_t offset = n * di;
        state_backward_column(di, problem->A_t + offset, h_prev + offset, decay + offset,
                              scratch->dy, delta_t, B_t[n], C_t[n], scratch->carry + offset,
                              scratch->grad_state, sum_GB, sum_wA, dA_sum + offset);

        /* dC_t[n] = sum_d dy_t[d] h_t[d,n] */
        dC_t[n] = dot_product(scratch->dy, h_t + offset, di);
        /* dB_t[n] = sum_d G_t[d,n] u_t[d] */
        dB_t[n] = dot_product(scratch->grad_state, scratch->drive, di);
    }

    for (size_t d = 0; d < di; d++) {
        /* ddelta_t = sum_n w_t A + x_t sum_n G_t B_t */
        ddelta_t[d] = sum_wA[d] + x_t[d] * sum_GB[d];
        /* dx_t += delta_t sum_n G_t B_t */
        dx_t[d] += delta_t[d] * sum_GB[d];
    }
}

BM_SCAN_TARGET_CLONES static void backward_range(struct scan_job *job)
{
    const struct scan_problem *problem = job->problem;
    const size_t L = problem->length;
    const size_t di = problem->d_inner;
    const size_t N = problem->d_state;
    const size_t state_size = N * di;

    /* NOTE: the scratch keeps every token's state of one sequence, 2L+2 blocks of di*N floats
     * per thread (about 200 KiB at L 31, di 48, N 16). Sequences of many thousands of tokens
     * would need recomputing the states chunk by chunk instead. */
    float *memory = malloc(backward_scratch_floats(L, di, N) * sizeof *memory);
    if (memory == NULL) {
        job->status = BM_SCAN_TRAIN_OUT_OF_MEMORY;
        return;
    }
    struct backward_scratch scratch;
    backward_scratch_split(&scratch, memory, L, di, N);

    for (size_t b = job->first; b < job->end; b++) {
        const size_t token_offset = b * L;

        /* Rerun the forward recurrence, keeping h_t, e_t and y_t of every token. */
        memset(scratch.states, 0, state_size * sizeof *scratch.states);
        for (size_t t = 0; t < L; t++) {
            const size_t row = token_offset + t;
            advance_token(problem, problem->x + row * di, problem->delta + row * di,
                          problem->B + row * N, problem->C + row * N,
                          scratch.states + t * state_size, scratch.states + (t + 1) * state_size,
                          scratch.decays + t * state_size, scratch.ys + t * di, scratch.drive);
        }

        /* Reverse pass; G_L = 0. */
        memset(scratch.carry, 0, state_size * sizeof *scratch.carry);
        for (size_t t = L; t-- > 0;) {
            const size_t row = token_offset + t;
            gate_backward(di, problem->x + row * di, problem->delta + row * di,
                          problem->z + row * di, problem->dout + row * di, problem->D,
                          scratch.ys + t * di, problem->dz + row * di, problem->dx + row * di,
                          scratch.dy, scratch.drive, job->dD_sum);
            state_backward(problem, row, scratch.states + t * state_size,
                           scratch.states + (t + 1) * state_size, scratch.decays + t * state_size,
                           &scratch, job->dA_sum);
        }
    }

    free(memory);
    job->status = BM_SCAN_TRAIN_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Threads and entry points                                                                    */
/* ------------------------------------------------------------------------------------------ */

static void *run_job_thread(void *argument)
{
    struct scan_job *job = argument;
    job->worker(job);
    return NULL;
}

/*
 * Runs every job and returns the first non-OK status. Job 0 runs on the calling thread. A job
 * whose thread cannot be created runs on the calling thread after job 0.
 */
static int run_jobs(struct scan_job *jobs, size_t count)
{
    for (size_t i = 1; i < count; i++) {
        jobs[i].thread_started =
            pthread_create(&jobs[i].thread, NULL, run_job_thread, &jobs[i]) == 0;
    }
    jobs[0].worker(&jobs[0]);
    for (size_t i = 1; i < count; i++) {
        if (jobs[i].thread_started) {
            pthread_join(jobs[i].thread, NULL);
        } else {
            jobs[i].worker(&jobs[i]);
        }
    }

    for (size_t i = 0; i < count; i++) {
        if (jobs[i].status != BM_SCAN_TRAIN_OK) {
            return jobs[i].status;
        }
    }
    return BM_SCAN_TRAIN_OK;
}

/* Converts the dimensions to size_t and checks that every array size fits in size_t bytes. */
static bool set_dimensions(struct scan_problem *problem, int64_t batch, int64_t length,
                           int64_t d_inner, int64_t d_state)
{
    if (batch < 1 || length < 1 || d_inner < 1 || d_state < 1) {
        return false;
    }
    const uint64_t limit = SIZE_MAX / sizeof(double);
    if ((uint64_t)batch > limit || (uint64_t)length > limit || (uint64_t)d_inner > limit ||
        (uint64_t)d_state > limit) {
        return false;
    }
    const size_t rows_limit = (size_t)limit / (size_t)length;
    if ((size_t)batch > rows_limit) {
        return false;
    }
    const size_t rows = (size_t)batch * (size_t)length;
    if ((size_t)d_inner > limit / rows || (size_t)d_state > limit / rows ||
        (size_t)d_state > limit / (size_t)d_inner) {
        return false;
    }

    problem->batch = (size_t)batch;
    problem->length = (size_t)length;
    problem->d_inner = (size_t)d_inner;
    problem->d_state = (size_t)d_state;
    return true;
}

/* Returns A [di][N] transposed to [N][di] in a new allocation, or NULL when out of memory. */
static float *transpose_A(const float *A, size_t di, size_t N)
{
    float *A_t = malloc(di * N * sizeof *A_t);
    if (A_t == NULL) {
        return NULL;
    }
    for (size_t d = 0; d < di; d++) {
        for (size_t n = 0; n < N; n++) {
            A_t[n * di + d] = A[d * N + n];
        }
    }
    return A_t;
}

/* Splits the sequences into near-equal contiguous ranges, one job each. */
static void plan_jobs(struct scan_job *jobs, size_t job_count, const struct scan_problem *problem,
                      scan_worker worker)
{
    for (size_t i = 0; i < job_count; i++) {
        jobs[i] = (struct scan_job){
            .problem = problem,
            .worker = worker,
            .first = problem->batch * i / job_count,
            .end = problem->batch * (i + 1) / job_count,
            .status = BM_SCAN_TRAIN_OK,
        };
    }
}

static size_t job_count_for(size_t batch, int num_threads)
{
    return (size_t)num_threads < batch ? (size_t)num_threads : batch;
}

int bm_scan_train_forward(int64_t batch, int64_t length, int64_t d_inner, int64_t d_state,
                          const float *x, const float *delta, const float *A, const float *B,
                          const float *C, const float *D, const float *z, float *out,
                          int num_threads)
{
    struct scan_problem problem = {0};
    if (!set_dimensions(&problem, batch, length, d_inner, d_state) || num_threads < 1) {
        return BM_SCAN_TRAIN_INVALID_ARGUMENT;
    }
    if (x == NULL || delta == NULL || A == NULL || B == NULL || C == NULL || D == NULL ||
        z == NULL || out == NULL) {
        return BM_SCAN_TRAIN_INVALID_ARGUMENT;
    }

    float *A_t = transpose_A(A, problem.d_inner, problem.d_state);
    const size_t job_count = job_count_for(problem.batch, num_threads);
    struct scan_job *jobs = malloc(job_count * sizeof *jobs);
    if (A_t == NULL || jobs == NULL) {
        free(A_t);
        free(jobs);
        return BM_SCAN_TRAIN_OUT_OF_MEMORY;
    }

    problem.x = x;
    problem.delta = delta;
    problem.A_t = A_t;
    problem.B = B;
    problem.C = C;
    problem.D = D;
    problem.z = z;
    problem.out = out;

    plan_jobs(jobs, job_count, &problem, forward_range);
    const int status = run_jobs(jobs, job_count);

    free(jobs);
    free(A_t);
    return status;
}

int bm_scan_train_backward(int64_t batch, int64_t length, int64_t d_inner, int64_t d_state,
                           const float *x, const float *delta, const float *A, const float *B,
                           const float *C, const float *D, const float *z, const float *dout,
                           float *dx, float *ddelta, float *dA, float *dB, float *dC, float *dD,
                           float *dz, int num_threads)
{
    struct scan_problem problem = {0};
    if (!set_dimensions(&problem, batch, length, d_inner, d_state) || num_threads < 1) {
        return BM_SCAN_TRAIN_INVALID_ARGUMENT;
    }
    if (x == NULL || delta == NULL || A == NULL || B == NULL || C == NULL || D == NULL ||
        z == NULL || dout == NULL || dx == NULL || ddelta == NULL || dA == NULL || dB == NULL ||
        dC == NULL || dD == NULL || dz == NULL) {
        return BM_SCAN_TRAIN_INVALID_ARGUMENT;
    }
    const size_t di = problem.d_inner;
    const size_t N = problem.d_state;
    if (backward_scratch_floats(problem.length, di, N) == 0) {
        return BM_SCAN_TRAIN_INVALID_ARGUMENT;
    }

    /* Each job's partial sums: N*di doubles of dA, then di doubles of dD. */
    const size_t job_count = job_count_for(problem.batch, num_threads);
    const size_t sums_per_job = N * di + di;
    float *A_t = transpose_A(A, di, N);
    struct scan_job *jobs = malloc(job_count * sizeof *jobs);
    double *sums = calloc(job_count * sums_per_job, sizeof *sums);
    if (A_t == NULL || jobs == NULL || sums == NULL) {
        free(A_t);
        free(jobs);
        free(sums);
        return BM_SCAN_TRAIN_OUT_OF_MEMORY;
    }

    problem.x = x;
    problem.delta = delta;
    problem.A_t = A_t;
    problem.B = B;
    problem.C = C;
    problem.D = D;
    problem.z = z;
    problem.dout = dout;
    problem.dx = dx;
    problem.ddelta = ddelta;
    problem.dB = dB;
    problem.dC = dC;
    problem.dz = dz;

    plan_jobs(jobs, job_count, &problem, backward_range);
    for (size_t i = 0; i < job_count; i++) {
        jobs[i].dA_sum = sums + i * sums_per_job;
        jobs[i].dD_sum = jobs[i].dA_sum + N * di;
    }
    const int status = run_jobs(jobs, job_count);

    if (status == BM_SCAN_TRAIN_OK) {
        /* Add the jobs' partial sums in job order, and transpose dA back to [di][N]. */
        for (size_t d = 0; d < di; d++) {
            for (size_t n = 0; n < N; n++) {
                double total = 0.0;
                for (size_t i = 0; i < job_count; i++) {
                    total += jobs[i].dA_sum[n * di + d];
                }
                dA[d * N + n] = (float)total;
            }
            double total = 0.0;
            for (size_t i = 0; i < job_count; i++) {
                total += jobs[i].dD_sum[d];
            }
            dD[d] = (float)total;
        }
    }

    free(sums);
    free(jobs);
    free(A_t);
    return status;
}
