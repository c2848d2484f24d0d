/*
 * cpu_internal.h — shared state and helpers of the CPU backend (src/backend/cpu/).
 *
 * The CPU backend is the reference implementation of ops.h: every op computes
 * in f32 (reductions in double where cheap), on host memory, over a fixed
 * thread pool. It is not the fast backend; it must be correct, deterministic
 * and bounded in memory.
 *
 * Determinism: each op splits its output into tasks whose boundaries depend
 * only on the op's shape (never on the thread count), and every task computes
 * its outputs with the same sequence of operations whichever thread runs it.
 * Results are therefore bit-identical for 1, 2 or N threads.
 *
 * Memory policy: the backend owns one scratch area per worker slot
 * (CPU_SCRATCH_FLOATS floats = 4 MiB, 64-byte aligned), allocated once in
 * mold_backend_cpu_create(). Ops pick their tile sizes so a task never needs
 * more than that; no op allocates memory. Total backend scratch is therefore
 * n_threads x 4 MiB, independent of model or image size. Activations and
 * weights are owned by the caller (alloc()/weight_upload()).
 *
 * Concurrency: like a CUDA stream, one backend instance is driven by one
 * thread at a time (the scratch areas are per instance, not per caller);
 * separate instances may run concurrently.
 *
 * Matrix products go through OpenBLAS cblas_sgemm, forced to one thread
 * (openblas_set_num_threads(1) at create) so that parallelism — and therefore
 * the summation order — is ours.
 */
#ifndef MOLD_BACKEND_CPU_INTERNAL_H
#define MOLD_BACKEND_CPU_INTERNAL_H

#include <stdint.h>

#include "../../base/threadpool.h" /* defines: mold_pool */
#include "../ops.h"                /* defines: mold_backend, mold_weight */

/* Floats of scratch per worker slot (4 MiB). Every op's tiling fits in it. */
#define CPU_SCRATCH_FLOATS ((int64_t)1 << 20)

typedef struct cpu_backend {
    mold_backend base; /* must be first: ops receive a mold_backend* */
    mold_pool *pool;   /* workers plus the caller; NULL when n_threads == 1 */
    int n_threads;     /* worker slots (== scratch buffers) */
    float **scratch;   /* [n_threads] x CPU_SCRATCH_FLOATS, 64-byte aligned */
} cpu_backend;

static inline cpu_backend *cpu_of(mold_backend *be) { return (cpu_backend *)be; }

/* A task of a parallel loop: computes task `task` of the op described by
 * `ctx`, using `scratch` (CPU_SCRATCH_FLOATS floats, private to the call). */
typedef void (*cpu_task_fn)(void *ctx, int64_t task, float *scratch);

/* Runs fn(ctx, t, scratch) for t in [0, n_tasks) over the pool (dynamic
 * scheduling; results never depend on which slot runs a task). Returns when
 * all tasks are done. */
void mold_cpu_parallel(cpu_backend *cb, int64_t n_tasks, cpu_task_fn fn, void *ctx);

/* Splits n elements into fixed chunks of `chunk` elements (shape-only, so
 * deterministic) and returns the chunk count. */
static inline int64_t cpu_n_chunks(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }

/* True when float ranges [a, a+na) and [b, b+nb) share memory: ops whose
 * output cannot alias an input (matmul, conv2d, attention k/v) refuse it. */
static inline bool cpu_overlap(const float *a, int64_t na, const float *b, int64_t nb) {
    return a && b && na > 0 && nb > 0 && a < b + nb && b < a + na;
}

/* ---- weights (cpu_matmul.c) ---- */
/* True when 2- or 4-byte elements of w can be read through typed pointers
 * (safetensors data may sit at any byte offset of the file). */
static inline bool mold_cpu_weight_aligned(const mold_weight *w) {
    size_t esz = w->dtype == MOLD_F32 ? 4 : 2;
    return (uintptr_t)w->data % esz == 0 && w->row_bytes % esz == 0;
}
/* True when w can be handed to sgemm in place (aligned f32). */
static inline bool mold_cpu_weight_is_f32(const mold_weight *w) {
    return w->dtype == MOLD_F32 && mold_cpu_weight_aligned(w);
}

/* Checks that w is a well-formed weight whose dtype the backend can convert
 * (by converting its first block). `what` names the caller for messages. */
mold_status mold_cpu_weight_check(const mold_weight *w, const char *what);
/* Converts w[row0 .. row0+n_rows, k0 .. k0+kc] to f32 at dst ([n_rows, kc],
 * row stride kc). k0 is a multiple of the dtype's block size and kc is too
 * unless k0 + kc == n_in. Requires mold_cpu_weight_check(w) == MOLD_OK. */
void mold_cpu_weight_rows_f32(const mold_weight *w, int64_t row0, int64_t n_rows, int64_t k0,
                              int64_t kc, float *dst);
/* The K-chunk used for converting rows of w: a multiple of its block size,
 * at most `cap` (and at least one block). */
int64_t mold_cpu_weight_kc(const mold_weight *w, int64_t cap);

/* ---- SIMD paths ---- */
/* The AVX2 / F16C code paths (weight conversion, softmax exp, max and sum)
 * are taken when the CPU has them and SIMD is enabled (default). Each gives
 * bit-identical results to its portable C twin; tests switch SIMD off to
 * prove it. Not thread-safe: call only while no op runs. */
void mold_cpu_set_simd(bool enabled);
bool mold_cpu_use_avx2(void); /* enabled && CPU has AVX2 */
bool mold_cpu_use_f16c(void); /* enabled && CPU has AVX + F16C */

/* s[j] = exp(s[j] - shift) for s[j] - shift <= 0 (-inf -> 0), ~2 ulp
 * (cpu_attention.c). */
void mold_cpu_exp_neg(float *s, int64_t n, float shift);

/* ---- ops (one file per family) ---- */
mold_status mold_cpu_matmul(mold_backend *be, float *y, const float *x, int64_t m,
                            const mold_weight *w, const float *bias);
mold_status mold_cpu_embed(mold_backend *be, float *y, const mold_weight *table,
                           const int32_t *ids_host, int64_t n);

mold_status mold_cpu_rms_norm(mold_backend *be, float *y, const float *x, const float *gamma,
                              int64_t rows, int64_t dim, float eps);
mold_status mold_cpu_layer_norm_modulate(mold_backend *be, float *y, const float *x,
                                         const float *shift, const float *scale, int64_t rows,
                                         int64_t dim, float eps);
mold_status mold_cpu_channel_rms_norm(mold_backend *be, float *y, const float *x,
                                      const float *gamma, int64_t c, int64_t hw);
mold_status mold_cpu_channel_rms_scale(mold_backend *be, float *s, const float *x, int64_t c,
                                       int64_t hw);

mold_status mold_cpu_rope(mold_backend *be, float *x, int64_t n_tok, int64_t n_head,
                          int64_t head_dim, const float *cos_t, const float *sin_t,
                          mold_rope_mode mode);
mold_status mold_cpu_attention(mold_backend *be, float *out, const float *q, const float *k,
                               const float *v, int64_t sq, int64_t skv, int64_t hq, int64_t hkv,
                               int64_t d, float scale, const float *key_valid, bool causal);

mold_status mold_cpu_silu(mold_backend *be, float *y, const float *x, int64_t n);
mold_status mold_cpu_gelu_tanh(mold_backend *be, float *y, const float *x, int64_t n);
mold_status mold_cpu_swiglu(mold_backend *be, float *y, const float *gate, const float *up,
                            int64_t n);
mold_status mold_cpu_add(mold_backend *be, float *y, const float *a, const float *b, int64_t n);
mold_status mold_cpu_axpby(mold_backend *be, float *y, const float *a, float alpha,
                           const float *b, float beta, int64_t n);
mold_status mold_cpu_gated_add(mold_backend *be, float *x, const float *gate, const float *y,
                               int64_t rows, int64_t dim);
mold_status mold_cpu_clamp(mold_backend *be, float *y, const float *x, float lo, float hi,
                           int64_t n);
mold_status mold_cpu_copy_rows(mold_backend *be, float *dst, int64_t dst_stride,
                               const float *src, int64_t src_stride, int64_t rows, int64_t cols);
mold_status mold_cpu_transpose(mold_backend *be, float *dst, const float *src, int64_t rows,
                               int64_t cols);
mold_status mold_cpu_cfg_combine(mold_backend *be, float *out, const float *cond,
                                 const float *uncond, float scale, int64_t n_tok, int64_t dim);
mold_status mold_cpu_count_nonfinite(mold_backend *be, const float *x, int64_t n, int64_t *bad);

mold_status mold_cpu_conv2d(mold_backend *be, float *y, const float *x, int64_t c_in, int64_t h,
                            int64_t w, const mold_weight *wt, int64_t kh, int64_t kw, int64_t pad,
                            const float *bias);
mold_status mold_cpu_upsample2x(mold_backend *be, float *y, const float *x, int64_t c, int64_t h,
                                int64_t w);

#endif
