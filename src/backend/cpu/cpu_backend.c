/*
 * cpu_backend.c — the CPU backend's lifetime, memory, weights and vtable.
 *
 * Owns: the backend struct, its thread pool and per-slot scratch (see the
 * memory policy in cpu_internal.h). Memory returned by alloc() is plain
 * 64-byte aligned host memory owned by the caller until free(). Weights made
 * by weight_upload() are views into the caller's tensor data (typically an
 * mmap'd checkpoint, which must outlive the weight) when the dtype is one the
 * matmul can read directly (f32, f16, bf16, ggml blocks); f64 is converted to
 * an owned f32 copy. The op families live in the sibling cpu_*.c files.
 */
#include <cblas.h> /* defines: openblas_set_num_threads */
#include <cpuid.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/quant.h" /* defines: mold_dequantize */
#include "cpu_internal.h"

/* ---- SIMD switch ---- */

static bool g_simd = true; /* tests turn it off to compare with the C paths */

void mold_cpu_set_simd(bool enabled) { g_simd = enabled; }

bool mold_cpu_use_avx2(void) { return g_simd && __builtin_cpu_supports("avx2"); }

/* F16C is CPUID.1:ECX bit 29, read directly: clang 14's
 * __builtin_cpu_supports() does not know the "f16c" feature string (the
 * fuzz build uses clang). */
static bool cpu_has_f16c(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned a, b, c, d;
        cached = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
    }
    return cached == 1;
}

bool mold_cpu_use_f16c(void) { return g_simd && __builtin_cpu_supports("avx") && cpu_has_f16c(); }

/* ---- parallel loop ---- */

typedef struct parallel_job {
    cpu_task_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_llong next; /* next task to hand out */
    float **scratch;   /* per slot */
} parallel_job;

/* One worker slot: pulls tasks until none are left. The slot index selects
 * the scratch buffer, and the pool runs each index exactly once. */
static void parallel_slot(void *ud, int index, int count) {
    (void)count;
    parallel_job *job = ud;
    float *scratch = job->scratch[index];
    for (;;) {
        int64_t t = atomic_fetch_add(&job->next, 1);
        if (t >= job->n_tasks)
            break;
        job->fn(job->ctx, t, scratch);
    }
}

void mold_cpu_parallel(cpu_backend *cb, int64_t n_tasks, cpu_task_fn fn, void *ctx) {
    if (n_tasks <= 0)
        return;
    if (cb->n_threads == 1 || n_tasks == 1 || !cb->pool) {
        for (int64_t t = 0; t < n_tasks; t++)
            fn(ctx, t, cb->scratch[0]);
        return;
    }
    parallel_job job = { .fn = fn, .ctx = ctx, .n_tasks = n_tasks, .scratch = cb->scratch };
    atomic_init(&job.next, 0);
    int slots = n_tasks < cb->n_threads ? (int)n_tasks : cb->n_threads;
    mold_pool_run(cb->pool, slots, parallel_slot, &job);
}

/* ---- memory ---- */

static void *aligned_alloc64(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes)
        return NULL;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_destroy(mold_backend *be) {
    cpu_backend *cb = cpu_of(be);
    if (!cb)
        return;
    mold_pool_free(cb->pool);
    if (cb->scratch) {
        for (int i = 0; i < cb->n_threads; i++)
            free(cb->scratch[i]);
        free(cb->scratch);
    }
    free(cb);
}

static void *cpu_alloc(mold_backend *be, size_t bytes) {
    (void)be;
    void *p = aligned_alloc64(bytes);
    if (!p)
        MOLD_ERR(MOLD_E_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    return p;
}

static void cpu_free(mold_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

static mold_status cpu_memcpy(void *dst, const void *src, size_t bytes, const char *what) {
    if (bytes == 0)
        return MOLD_OK;
    if (!dst || !src)
        return MOLD_ERR(MOLD_E_INVALID, "cpu %s: expected non-NULL pointers for %zu bytes", what,
                        bytes);
    memmove(dst, src, bytes);
    return MOLD_OK;
}

static mold_status cpu_upload(mold_backend *be, void *dst, const void *src_host, size_t bytes) {
    (void)be;
    return cpu_memcpy(dst, src_host, bytes, "upload");
}

static mold_status cpu_download(mold_backend *be, void *dst_host, const void *src, size_t bytes) {
    (void)be;
    return cpu_memcpy(dst_host, src, bytes, "download");
}

static mold_status cpu_copy(mold_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    return cpu_memcpy(dst, src, bytes, "copy");
}

static mold_status cpu_sync(mold_backend *be) {
    (void)be; /* every op is synchronous */
    return MOLD_OK;
}

/* ---- weights ---- */

static const char *tname(const mold_tensor *t) { return t->name ? t->name : "(unnamed)"; }

/* Validates that t holds n_out x n_in values of its dtype and computes the
 * row size. */
static mold_status check_weight_tensor(const mold_tensor *t, int64_t n_out, int64_t n_in,
                                       uint64_t *row_bytes) {
    if (n_out <= 0 || n_in <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "weight %s: expected positive n_out x n_in, got %lld x %lld",
                        tname(t), (long long)n_out, (long long)n_in);
    int64_t ne = mold_tensor_nelems(t);
    if (ne / n_out != n_in || ne % n_out != 0)
        return MOLD_ERR(MOLD_E_INVALID, "weight %s: expected %lld x %lld = %lld elements, got %lld",
                        tname(t), (long long)n_out, (long long)n_in,
                        (long long)(n_out * n_in), (long long)ne);
    MOLD_TRY(mold_dtype_row_bytes(t->dtype, (uint64_t)n_in, row_bytes));
    if (*row_bytes > UINT64_MAX / (uint64_t)n_out || *row_bytes * (uint64_t)n_out > t->n_bytes)
        return MOLD_ERR(MOLD_E_FORMAT, "weight %s: expected %llu bytes of %s, got %llu", tname(t),
                        (unsigned long long)(*row_bytes * (uint64_t)n_out),
                        mold_dtype_name(t->dtype), (unsigned long long)t->n_bytes);
    if (!t->data)
        return MOLD_ERR(MOLD_E_INVALID, "weight %s: data is NULL", tname(t));
    return MOLD_OK;
}

static mold_status cpu_weight_upload(mold_backend *be, const mold_tensor *t, int64_t n_out,
                                     int64_t n_in, mold_weight *out) {
    (void)be;
    if (!t || !out)
        return MOLD_ERR(MOLD_E_INVALID, "weight_upload: NULL tensor or output");
    memset(out, 0, sizeof *out);
    uint64_t row_bytes = 0;
    MOLD_TRY(check_weight_tensor(t, n_out, n_in, &row_bytes));
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    mold_weight w = { .dtype = t->dtype, .n_out = n_out, .n_in = n_in, .row_bytes = row_bytes,
                      .data = t->data, .owned = false };
    bool direct = t->dtype == MOLD_F32 || t->dtype == MOLD_F16 || t->dtype == MOLD_BF16 ||
                  (info && info->is_quant);
    if (!direct) {
        if (t->dtype != MOLD_F64)
            return MOLD_ERR(MOLD_E_UNSUPPORTED,
                            "weight %s: expected a float or ggml block dtype, got %s", tname(t),
                            mold_dtype_name(t->dtype));
        /* f64 is not read by matmul: keep an owned f32 copy. */
        size_t n = (size_t)n_out * (size_t)n_in;
        float *copy = aligned_alloc64(n * sizeof(float));
        if (!copy)
            return MOLD_ERR(MOLD_E_NOMEM, "weight %s: cannot allocate %zu bytes", tname(t),
                            n * sizeof(float));
        mold_status st = mold_convert_to_f32(MOLD_F64, t->data, copy, n);
        if (st != MOLD_OK) {
            free(copy);
            return st;
        }
        w.dtype = MOLD_F32;
        w.row_bytes = (uint64_t)n_in * sizeof(float);
        w.data = copy;
        w.owned = true;
    }
    mold_status st = mold_cpu_weight_check(&w, tname(t));
    if (st != MOLD_OK) {
        if (w.owned)
            free((void *)w.data);
        return st;
    }
    *out = w;
    return MOLD_OK;
}

static void cpu_weight_free(mold_backend *be, mold_weight *w) {
    (void)be;
    if (!w)
        return;
    if (w->owned)
        free((void *)w->data);
    memset(w, 0, sizeof *w);
}

static mold_status cpu_upload_f32(mold_backend *be, const mold_tensor *t, float **out) {
    (void)be;
    if (!t || !out)
        return MOLD_ERR(MOLD_E_INVALID, "upload_f32: NULL tensor or output");
    *out = NULL;
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    if (!info)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "upload_f32 %s: invalid dtype %d", tname(t),
                        (int)t->dtype);
    int64_t n = mold_tensor_nelems(t);
    if (n < 0)
        return MOLD_ERR(MOLD_E_INVALID, "upload_f32 %s: negative element count", tname(t));
    float *buf = aligned_alloc64((size_t)n * sizeof(float));
    if (!buf)
        return MOLD_ERR(MOLD_E_NOMEM, "upload_f32 %s: cannot allocate %lld floats", tname(t),
                        (long long)n);
    mold_status st;
    if (info->is_quant) {
        uint64_t bytes = 0;
        st = mold_dtype_row_bytes(t->dtype, (uint64_t)n, &bytes);
        if (st == MOLD_OK && bytes > t->n_bytes)
            st = MOLD_ERR(MOLD_E_FORMAT, "upload_f32 %s: expected %llu bytes, got %llu", tname(t),
                          (unsigned long long)bytes, (unsigned long long)t->n_bytes);
        if (st == MOLD_OK)
            st = mold_dequantize(t->dtype, t->data, buf, n);
    } else {
        st = mold_tensor_to_f32(t, buf);
    }
    if (st != MOLD_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return MOLD_OK;
}

/* ---- vtable and constructors ---- */

static const mold_backend_i CPU_VTABLE = {
    .version = MOLD_BACKEND_API_VERSION,
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .copy = cpu_copy,
    .weight_upload = cpu_weight_upload,
    .weight_free = cpu_weight_free,
    .upload_f32 = cpu_upload_f32,
    .matmul = mold_cpu_matmul,
    .embed = mold_cpu_embed,
    .rms_norm = mold_cpu_rms_norm,
    .layer_norm_modulate = mold_cpu_layer_norm_modulate,
    .channel_rms_norm = mold_cpu_channel_rms_norm,
    .channel_rms_scale = mold_cpu_channel_rms_scale,
    .rope = mold_cpu_rope,
    .attention = mold_cpu_attention,
    .silu = mold_cpu_silu,
    .gelu_tanh = mold_cpu_gelu_tanh,
    .swiglu = mold_cpu_swiglu,
    .add = mold_cpu_add,
    .axpby = mold_cpu_axpby,
    .gated_add = mold_cpu_gated_add,
    .clamp = mold_cpu_clamp,
    .copy_rows = mold_cpu_copy_rows,
    .transpose = mold_cpu_transpose,
    .conv2d = mold_cpu_conv2d,
    .upsample2x = mold_cpu_upsample2x,
    .cfg_combine = mold_cpu_cfg_combine,
    .count_nonfinite = mold_cpu_count_nonfinite,
};

mold_status mold_backend_cpu_create(int n_threads, mold_backend **out) {
    if (!out)
        return MOLD_ERR(MOLD_E_INVALID, "mold_backend_cpu_create: out is NULL");
    *out = NULL;
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb)
        return MOLD_ERR(MOLD_E_NOMEM, "cpu backend: cannot allocate the backend");
    cb->base.i = &CPU_VTABLE;
    mold_status st = mold_pool_create(n_threads, &cb->pool);
    if (st != MOLD_OK) {
        free(cb);
        return st;
    }
    cb->n_threads = mold_pool_size(cb->pool);
    if (cb->n_threads < 1)
        cb->n_threads = 1;
    cb->scratch = calloc((size_t)cb->n_threads, sizeof *cb->scratch);
    if (!cb->scratch) {
        cpu_destroy(&cb->base);
        return MOLD_ERR(MOLD_E_NOMEM, "cpu backend: cannot allocate scratch table");
    }
    for (int i = 0; i < cb->n_threads; i++) {
        cb->scratch[i] = aligned_alloc64((size_t)CPU_SCRATCH_FLOATS * sizeof(float));
        if (!cb->scratch[i]) {
            cpu_destroy(&cb->base);
            return MOLD_ERR(MOLD_E_NOMEM, "cpu backend: cannot allocate %d x %lld bytes of scratch",
                            n_threads, (long long)(CPU_SCRATCH_FLOATS * 4));
        }
    }
    /* Our pool provides the parallelism; a multi-threaded BLAS would make
     * reduction order (and so results) depend on its own thread count. */
    openblas_set_num_threads(1);
    *out = &cb->base;
    return MOLD_OK;
}
