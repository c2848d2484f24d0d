/*
 * cuda_backend.cu — the CUDA backend's handle: creation, memory, transfers,
 * weights and the op table (ops.h). The ops themselves live in one .cu/.cuh
 * pair per family (matmul, mlp, norm, rope, attention, elementwise, conv,
 * transpose).
 *
 * Ownership: see cuda_common.cuh. alloc() is a plain cudaMalloc (no managed
 * memory: it can hang a shared GPU); model code reserves its activations once
 * per plan, so no allocation happens inside a forward pass. Weights are
 * copied host -> pinned staging -> device in 64 MiB pieces, alternating two
 * staging halves so the memcpy into one overlaps the DMA out of the other.
 * With set_weight_hold(MOLD_BF16), block-format weights are dequantized
 * once here into bf16 (matmul then skips its per-call dequantization; an
 * embed() of such a table reads bf16-rounded rows).
 *
 * Threading: a backend is used from one host thread at a time (the op table
 * is not re-entrant); cudaSetDevice is called at creation only, so a process
 * that uses two devices from one thread must create one backend per device
 * and not interleave them (not needed by mold today).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attention.cuh"
#include "conv.cuh"
#include "convert.cuh"
#include "cuda_common.cuh"
#include "elementwise.cuh"
#include "matmul.cuh"
#include "mlp.cuh"
#include "norm.cuh"
#include "profile.cuh"
#include "rope.cuh"
#include "transpose.cuh"

/* ==================================================================== */
/* ---- errors, scratch ---- */
/* ==================================================================== */

extern "C" mold_status mold_cuda_fail(const cuda_backend *cb, const char *stmt, const char *msg,
                                      const char *file, int line, const char *func) {
    char shape[160] = "";
    int at = 0;
    if (cb && cb->op) {
        for (int i = 0; i < cb->n_dims && at < (int)sizeof shape - 24; i++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, "%s%lld", i ? ", " : "[",
                           (long long)cb->dims[i]);
        if (cb->n_dims > 0) snprintf(shape + at, sizeof shape - (size_t)at, "]");
    }
    return mold_error_set(MOLD_E_DEVICE, file, line, func,
                          "cuda: %s failed in op %s %s on device %d: %s", stmt,
                          cb && cb->op ? cb->op : "(setup)", shape, cb ? cb->device : -1, msg);
}

extern "C" mold_status mold_cuda_op_done(cuda_backend *cb) {
    if (cb->sync_debug) MOLD_CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    if (cb->prof) mold_cuda_profile_end(cb);
    return MOLD_OK;
}

extern "C" mold_status mold_cuda_scratch(cuda_backend *cb, size_t bytes, void **out) {
    if (bytes > cb->scratch_bytes) {
        size_t grow = cuda_align256(bytes + bytes / 8); /* headroom for nearby shapes */
        if (cb->scratch) MOLD_CUDA_CHECK(cb, cudaFree(cb->scratch)); /* syncs first */
        cb->scratch = NULL;
        cb->scratch_bytes = 0;
        cudaError_t e = cudaMalloc(&cb->scratch, grow);
        if (e != cudaSuccess) {
            cb->scratch = NULL;
            cudaGetLastError(); /* clear the sticky-less allocation error */
            return MOLD_ERR(MOLD_E_NOMEM, "cuda: op %s needs %zu bytes of scratch: %s",
                            cb->op ? cb->op : "?", grow, cudaGetErrorString(e));
        }
        cb->scratch_bytes = grow;
        size_t free_b = 0, total_b = 0; /* the peak counts scratch too (memory_stats) */
        if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && total_b - free_b > cb->peak_used)
            cb->peak_used = total_b - free_b;
        MOLD_LOGI("cuda: scratch grown to %.1f MiB for op %s", grow / 1048576.0,
                  cb->op ? cb->op : "?");
    }
    *out = cb->scratch;
    return MOLD_OK;
}

/* ==================================================================== */
/* ---- memory and transfers ---- */
/* ==================================================================== */

static void be_destroy(mold_backend *be) {
    if (!be) return;
    cuda_backend *cb = cuda_of(be);
    if (cb->stream) cudaStreamSynchronize(cb->stream);
    mold_cuda_profile_finish(cb);
    for (int i = 0; i < 2; i++)
        if (cb->staged[i]) cudaEventDestroy(cb->staged[i]);
    if (cb->staging) cudaFreeHost(cb->staging);
    if (cb->scratch) cudaFree(cb->scratch);
    if (cb->lt_ws) cudaFree(cb->lt_ws);
    if (cb->d_count) cudaFree(cb->d_count);
    if (cb->lt) cublasLtDestroy(cb->lt);
    if (cb->stream) cudaStreamDestroy(cb->stream);
    free(cb);
}

static void *be_alloc(mold_backend *be, size_t bytes) {
    cuda_backend *cb = cuda_of(be);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1); /* 256-byte aligned */
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        MOLD_ERR(MOLD_E_NOMEM, "cuda: cudaMalloc of %zu bytes failed on device %d (%zu of %zu free): %s",
                 bytes, cb->device, free_b, total_b, cudaGetErrorString(e));
        return NULL;
    }
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && total_b - free_b > cb->peak_used)
        cb->peak_used = total_b - free_b;
    return p;
}

static void be_free(mold_backend *be, void *ptr) {
    (void)be;
    if (ptr) cudaFree(ptr);
}

/* The host buffer may be reused as soon as this returns, so it waits. */
static mold_status be_upload(mold_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *cb = cuda_of(be);
    CUDA_OP(cb, "upload", (int64_t)bytes);
    MOLD_CUDA_CHECK(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cb->stream));
    MOLD_CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    return MOLD_OK;
}

static mold_status be_download(mold_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *cb = cuda_of(be);
    CUDA_OP(cb, "download", (int64_t)bytes);
    MOLD_CUDA_CHECK(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cb->stream));
    MOLD_CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    return MOLD_OK;
}

static mold_status be_sync(mold_backend *be) {
    cuda_backend *cb = cuda_of(be);
    CUDA_OP(cb, "sync", 0);
    MOLD_CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream));
    return MOLD_OK;
}

static mold_status be_copy(mold_backend *be, void *dst, const void *src, size_t bytes) {
    cuda_backend *cb = cuda_of(be);
    if (bytes == 0) return MOLD_OK;
    CUDA_OP(cb, "copy", (int64_t)bytes);
    MOLD_CUDA_CHECK(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cb->stream));
    return mold_cuda_op_done(cb);
}

/* memcpy into pinned staging with up to STAGE_THREADS threads: one host
 * thread copies ~8 GB/s, well under the ~55 GB/s the DMA engine takes from
 * pinned memory (measured on the H100 machine, docs/perf/cuda.md). */
#define STAGE_THREADS 8
#define STAGE_PART_MIN ((size_t)8 << 20)

typedef struct copy_part {
    unsigned char *dst;
    const unsigned char *src;
    size_t n;
} copy_part;

static void *copy_part_run(void *arg) {
    copy_part *p = (copy_part *)arg;
    memcpy(p->dst, p->src, p->n);
    return NULL;
}

static void par_memcpy(void *dst, const void *src, size_t n) {
    int nt = (int)(n / STAGE_PART_MIN);
    if (nt > STAGE_THREADS) nt = STAGE_THREADS;
    if (nt <= 1) {
        memcpy(dst, src, n);
        return;
    }
    copy_part parts[STAGE_THREADS];
    pthread_t th[STAGE_THREADS];
    int started[STAGE_THREADS] = {0};
    size_t per = (n / (size_t)nt + 4095) & ~(size_t)4095;
    for (int i = 0; i < nt; i++) {
        size_t off = (size_t)i * per;
        parts[i].dst = (unsigned char *)dst + off;
        parts[i].src = (const unsigned char *)src + off;
        parts[i].n = off >= n ? 0 : (n - off < per ? n - off : per);
        /* part 0 runs here; a thread that cannot start runs here too */
        if (i > 0 && parts[i].n > 0)
            started[i] = pthread_create(&th[i], NULL, copy_part_run, &parts[i]) == 0;
    }
    copy_part_run(&parts[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else if (parts[i].n > 0) copy_part_run(&parts[i]);
    }
}

/* Host -> device through the pinned staging halves; returns when the last
 * piece is queued (the caller's host buffer is no longer needed then: every
 * byte has been copied into staging). */
static mold_status staged_upload(cuda_backend *cb, void *dst, const void *src, size_t bytes) {
    size_t off = 0;
    for (int i = 0; off < bytes; i ^= 1) {
        size_t n = bytes - off < CUDA_STAGING_BYTES ? bytes - off : CUDA_STAGING_BYTES;
        unsigned char *half = cb->staging + (size_t)i * CUDA_STAGING_BYTES;
        MOLD_CUDA_CHECK(cb, cudaEventSynchronize(cb->staged[i])); /* its last DMA is done */
        par_memcpy(half, (const unsigned char *)src + off, n);
        MOLD_CUDA_CHECK(cb, cudaMemcpyAsync((unsigned char *)dst + off, half, n,
                                            cudaMemcpyHostToDevice, cb->stream));
        MOLD_CUDA_CHECK(cb, cudaEventRecord(cb->staged[i], cb->stream));
        off += n;
    }
    return MOLD_OK;
}

/* ==================================================================== */
/* ---- weights ---- */
/* ==================================================================== */

/* Hold as bf16 (set_weight_hold): the block-format rows go through scratch
 * in pieces of about HOLD_PIECE_BYTES and are dequantized into dev by the
 * kernel matmul uses per call (mold_cuda_dequant_bf16), so the held weight
 * is bit for bit what matmul would have made. Stream order keeps a piece's
 * kernel ahead of the next piece's copy into the same scratch. */
#define HOLD_PIECE_BYTES ((size_t)64 << 20)

static size_t g_hold_piece = HOLD_PIECE_BYTES;

/* Test hook: piece size of held uploads (0 restores the default), so small
 * weights exercise the piece loop. */
extern "C" void mold_cuda_set_hold_piece_bytes(size_t bytes) {
    g_hold_piece = bytes ? bytes : HOLD_PIECE_BYTES;
}

static mold_status hold_upload_bf16(cuda_backend *cb, __nv_bfloat16 *dev, const mold_tensor *t,
                                    int64_t n_out, int64_t n_in, uint64_t row_bytes) {
    int64_t rows = (int64_t)(g_hold_piece / row_bytes);
    if (rows < 1) rows = 1;
    if (rows > n_out) rows = n_out;
    void *raw;
    MOLD_TRY(mold_cuda_scratch(cb, (size_t)rows * row_bytes, &raw));
    for (int64_t r0 = 0; r0 < n_out; r0 += rows) {
        int64_t nr = n_out - r0 < rows ? n_out - r0 : rows;
        MOLD_TRY(staged_upload(cb, raw, (const unsigned char *)t->data + (uint64_t)r0 * row_bytes,
                               (size_t)nr * row_bytes));
        MOLD_CUDA_CHECK(cb, mold_cuda_dequant_bf16(t->dtype, dev + r0 * n_in, raw, nr, n_in,
                                                   row_bytes, cb->stream));
    }
    return MOLD_OK;
}

static bool is_block_format(mold_dtype t) {
    const mold_dtype_info *info = mold_dtype_get(t);
    return info && info->is_quant;
}

static mold_status be_set_weight_hold(mold_backend *be, mold_dtype hold) {
    if (hold != MOLD_BF16 && hold != MOLD_DTYPE_INVALID)
        return MOLD_ERR(MOLD_E_INVALID, "set_weight_hold: expected bf16 or invalid (as stored), "
                        "got %s", mold_dtype_name(hold));
    cuda_of(be)->hold = hold;
    return MOLD_OK;
}

static mold_status be_weight_upload(mold_backend *be, const mold_tensor *t, int64_t n_out,
                                    int64_t n_in, mold_weight *out) {
    cuda_backend *cb = cuda_of(be);
    memset(out, 0, sizeof *out);
    const char *name = t && t->name ? t->name : "(unnamed)";
    if (!t || !t->data || n_out <= 0 || n_in <= 0 || mold_tensor_nelems(t) != n_out * n_in)
        return MOLD_ERR(MOLD_E_INVALID, "weight_upload %s: expected %lld x %lld values, got %lld",
                        name, (long long)n_out, (long long)n_in,
                        t ? (long long)mold_tensor_nelems(t) : -1LL);
    if (!mold_cuda_dtype_supported(t->dtype))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "weight_upload %s: dtype %s is not a CUDA weight type",
                        name, mold_dtype_name(t->dtype));
    uint64_t row_bytes = 0;
    MOLD_TRY(mold_dtype_row_bytes(t->dtype, (uint64_t)n_in, &row_bytes));
    uint64_t bytes = row_bytes * (uint64_t)n_out;
    if (t->n_bytes != bytes)
        return MOLD_ERR(MOLD_E_FORMAT, "weight_upload %s: expected %llu bytes, got %llu", name,
                        (unsigned long long)bytes, (unsigned long long)t->n_bytes);
    CUDA_OP(cb, "weight_upload", n_out, n_in, (int64_t)t->dtype);
    const bool hold_bf16 = cb->hold == MOLD_BF16 && is_block_format(t->dtype);
    void *dev = be_alloc(be, hold_bf16 ? (size_t)n_out * n_in * 2 : bytes);
    if (!dev) return MOLD_E_NOMEM;
    mold_status st;
    if (hold_bf16) {
        st = hold_upload_bf16(cb, (__nv_bfloat16 *)dev, t, n_out, n_in, row_bytes);
        out->dtype = MOLD_BF16;
    } else if (t->dtype == MOLD_F16) {
        /* f16 weights become bf16: activations meet weights in bf16 GEMMs
         * (never f16, DESIGN.md principle 4). Raw f16 goes through scratch. */
        void *raw;
        st = mold_cuda_scratch(cb, bytes, &raw);
        if (st == MOLD_OK) st = staged_upload(cb, raw, t->data, bytes);
        if (st == MOLD_OK) {
            cudaError_t e = mold_cuda_f16_to_bf16((__nv_bfloat16 *)dev, (const uint16_t *)raw,
                                                  n_out * n_in, cb->stream);
            if (e != cudaSuccess)
                st = mold_cuda_fail(cb, "mold_cuda_f16_to_bf16", cudaGetErrorString(e), __FILE__,
                                    __LINE__, __func__);
        }
        out->dtype = MOLD_BF16;
    } else {
        st = staged_upload(cb, dev, t->data, bytes);
        out->dtype = t->dtype;
    }
    if (st == MOLD_OK) {
        cudaError_t e = cudaStreamSynchronize(cb->stream);
        if (e != cudaSuccess)
            st = mold_cuda_fail(cb, "cudaStreamSynchronize", cudaGetErrorString(e), __FILE__,
                                __LINE__, __func__);
    }
    if (st != MOLD_OK) {
        cudaFree(dev);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->n_out = n_out;
    out->n_in = n_in;
    out->row_bytes = out->dtype == MOLD_BF16 ? (uint64_t)n_in * 2 : row_bytes;
    out->data = dev;
    out->owned = true;
    return MOLD_OK;
}

static void be_weight_free(mold_backend *be, mold_weight *w) {
    (void)be;
    if (!w) return;
    if (w->owned && w->data) cudaFree((void *)w->data);
    memset(w, 0, sizeof *w);
}

static mold_status be_upload_f32(mold_backend *be, const mold_tensor *t, float **out) {
    cuda_backend *cb = cuda_of(be);
    *out = NULL;
    if (!t || !t->data)
        return MOLD_ERR(MOLD_E_INVALID, "upload_f32: tensor is NULL or has no data");
    int64_t n = mold_tensor_nelems(t);
    const char *name = t->name ? t->name : "(unnamed)";
    CUDA_OP(cb, "upload_f32", n, (int64_t)t->dtype);
    float *dev = (float *)be_alloc(be, (size_t)n * 4);
    if (!dev) return MOLD_E_NOMEM;
    mold_status st = MOLD_OK;
    if (t->dtype == MOLD_F32) {
        st = staged_upload(cb, dev, t->data, (size_t)n * 4);
    } else if (mold_cuda_dtype_supported(t->dtype)) { /* f16, bf16, blocks: convert on device */
        uint64_t bytes = 0;
        st = mold_dtype_row_bytes(t->dtype, (uint64_t)n, &bytes);
        if (st == MOLD_OK && bytes != t->n_bytes)
            st = MOLD_ERR(MOLD_E_FORMAT, "upload_f32 %s: expected %llu bytes, got %llu", name,
                          (unsigned long long)bytes, (unsigned long long)t->n_bytes);
        void *raw = NULL;
        if (st == MOLD_OK) st = mold_cuda_scratch(cb, bytes, &raw);
        if (st == MOLD_OK) st = staged_upload(cb, raw, t->data, bytes);
        if (st == MOLD_OK) {
            cudaError_t e = mold_cuda_rows_f32(t->dtype, dev, raw, bytes, n, NULL, 1, cb->stream);
            if (e != cudaSuccess)
                st = mold_cuda_fail(cb, "mold_cuda_rows_f32", cudaGetErrorString(e), __FILE__,
                                    __LINE__, __func__);
        }
    } else { /* integer / f64 vectors: convert on the host */
        float *tmp = (float *)malloc((size_t)(n > 0 ? n : 1) * 4);
        if (!tmp) st = MOLD_ERR(MOLD_E_NOMEM, "upload_f32 %s: %lld floats", name, (long long)n);
        if (st == MOLD_OK) st = mold_tensor_to_f32(t, tmp);
        if (st == MOLD_OK) st = staged_upload(cb, dev, tmp, (size_t)n * 4);
        if (st == MOLD_OK) {
            cudaError_t e = cudaStreamSynchronize(cb->stream); /* tmp is freed next */
            if (e != cudaSuccess)
                st = mold_cuda_fail(cb, "cudaStreamSynchronize", cudaGetErrorString(e), __FILE__,
                                    __LINE__, __func__);
        }
        free(tmp);
    }
    if (st == MOLD_OK) {
        cudaError_t e = cudaStreamSynchronize(cb->stream);
        if (e != cudaSuccess)
            st = mold_cuda_fail(cb, "cudaStreamSynchronize", cudaGetErrorString(e), __FILE__,
                                __LINE__, __func__);
    }
    if (st != MOLD_OK) {
        cudaFree(dev);
        return st;
    }
    *out = dev;
    return MOLD_OK;
}

/* Device-wide figures (cudaMemGetInfo): what the process and the context
 * hold, which is what limits a plan; the peak is sampled after each alloc. */
static mold_status be_memory_stats(mold_backend *be, uint64_t *in_use, uint64_t *peak,
                                   uint64_t *dev_free, uint64_t *dev_total) {
    cuda_backend *cb = cuda_of(be);
    size_t free_b = 0, total_b = 0;
    MOLD_CUDA_CHECK(cb, cudaMemGetInfo(&free_b, &total_b));
    if (total_b - free_b > cb->peak_used) cb->peak_used = total_b - free_b;
    *in_use = total_b - free_b;
    *peak = cb->peak_used;
    *dev_free = free_b;
    *dev_total = total_b;
    return MOLD_OK;
}

/* ==================================================================== */
/* ---- benchmark helper ---- */
/* ==================================================================== */

/* Host -> device copy rates (GB/s) of `bytes` (<= 2 x CUDA_STAGING_BYTES):
 * from the pinned staging buffer (the DMA ceiling) and from pageable memory
 * through the driver's own staging (what a plain cudaMemcpy gets). */
extern "C" mold_status mold_cuda_bench_h2d(mold_backend *be, size_t bytes, double *pinned_gbps,
                                           double *pageable_gbps) {
    cuda_backend *cb = cuda_of(be);
    CUDA_OP(cb, "bench_h2d", (int64_t)bytes);
    if (bytes > 2 * CUDA_STAGING_BYTES) bytes = 2 * CUDA_STAGING_BYTES;
    void *dev = be_alloc(be, bytes);
    unsigned char *page = (unsigned char *)malloc(bytes);
    if (!dev || !page) {
        cudaFree(dev);
        free(page);
        return MOLD_ERR(MOLD_E_NOMEM, "bench_h2d: %zu bytes", bytes);
    }
    memset(page, 0x5a, bytes);
    memset(cb->staging, 0x5a, bytes);
    double rates[2] = {0, 0};
    for (int kind = 0; kind < 2; kind++) {
        const void *src = kind == 0 ? (const void *)cb->staging : (const void *)page;
        double best = 1e30;
        for (int rep = 0; rep < 4; rep++) {
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            cudaError_t e = cudaMemcpyAsync(dev, src, bytes, cudaMemcpyHostToDevice, cb->stream);
            if (e == cudaSuccess) e = cudaStreamSynchronize(cb->stream);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (e != cudaSuccess) {
                cudaFree(dev);
                free(page);
                return mold_cuda_fail(cb, "cudaMemcpyAsync", cudaGetErrorString(e), __FILE__,
                                      __LINE__, __func__);
            }
            double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
            if (s < best) best = s;
        }
        rates[kind] = bytes / best / 1e9;
    }
    cudaFree(dev);
    free(page);
    *pinned_gbps = rates[0];
    *pageable_gbps = rates[1];
    return MOLD_OK;
}

/* ==================================================================== */
/* ---- the op table ---- */
/* ==================================================================== */

static const mold_backend_i CUDA_I = {
    MOLD_BACKEND_API_VERSION,
    "cuda",
    be_destroy,
    be_alloc,
    be_free,
    be_upload,
    be_download,
    be_sync,
    be_copy,
    be_weight_upload,
    be_weight_free,
    be_upload_f32,
    mold_cuda_op_matmul,
    mold_cuda_op_embed,
    mold_cuda_op_rms_norm,
    mold_cuda_op_layer_norm_modulate,
    mold_cuda_op_channel_rms_norm,
    mold_cuda_op_channel_rms_scale,
    mold_cuda_op_rope,
    mold_cuda_op_attention,
    mold_cuda_op_silu,
    mold_cuda_op_gelu_tanh,
    mold_cuda_op_swiglu,
    mold_cuda_op_add,
    mold_cuda_op_axpby,
    mold_cuda_op_gated_add,
    mold_cuda_op_clamp,
    mold_cuda_op_copy_rows,
    mold_cuda_op_transpose,
    mold_cuda_op_conv2d,
    mold_cuda_op_upsample2x,
    mold_cuda_op_cfg_combine,
    mold_cuda_op_count_nonfinite,
    be_memory_stats,
    be_set_weight_hold,
    mold_cuda_op_conv3x3_fused,
    mold_cuda_op_mlp_gelu,
    mold_cuda_op_rms_norm_rope,
};

/* ==================================================================== */
/* ---- creation ---- */
/* ==================================================================== */

/* "No CUDA device" is a normal condition on CPU-only machines (CI): the
 * runtime says NoDevice, or InsufficientDriver when no driver is installed at
 * all. InsufficientDriver with a driver present (/dev/nvidiactl) is a real
 * problem (driver too old) and reported as a device error. */
static mold_status check_devices(int *n) {
    cudaError_t e = cudaGetDeviceCount(n);
    if (e == cudaSuccess && *n > 0) return MOLD_OK;
    cudaGetLastError();
    int driver_present = access("/dev/nvidiactl", F_OK) == 0;
    if (e == cudaSuccess || e == cudaErrorNoDevice ||
        (e == cudaErrorInsufficientDriver && !driver_present))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "no CUDA device (%s)",
                        e == cudaSuccess ? "0 devices" : cudaGetErrorName(e));
    return MOLD_ERR(MOLD_E_DEVICE, "cuda: cudaGetDeviceCount failed: %s (%s)",
                    cudaGetErrorName(e), cudaGetErrorString(e));
}

static mold_status create(cuda_backend *cb) {
    MOLD_CUDA_CHECK(cb, cudaSetDevice(cb->device));
    MOLD_CUDA_CHECK(cb, cudaDeviceGetAttribute(&cb->n_sm, cudaDevAttrMultiProcessorCount,
                                               cb->device));
    MOLD_CUDA_CHECK(cb, cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking));
    MOLD_CUBLAS_CHECK(cb, cublasLtCreate(&cb->lt));
    MOLD_CUDA_CHECK(cb, cudaMalloc(&cb->lt_ws, CUDA_LT_WORKSPACE_BYTES));
    MOLD_CUDA_CHECK(cb, cudaMalloc((void **)&cb->d_count, sizeof(int64_t)));
    MOLD_CUDA_CHECK(cb, cudaMallocHost((void **)&cb->staging, 2 * CUDA_STAGING_BYTES));
    for (int i = 0; i < 2; i++)
        MOLD_CUDA_CHECK(cb, cudaEventCreateWithFlags(&cb->staged[i], cudaEventDisableTiming));
    return MOLD_OK;
}

extern "C" mold_status mold_backend_cuda_create(int device, mold_backend **out) {
    *out = NULL;
    int n = 0;
    MOLD_TRY(check_devices(&n));
    if (device < 0 || device >= n)
        return MOLD_ERR(MOLD_E_INVALID, "cuda: expected a device in [0, %d), got %d", n, device);
    cuda_backend *cb = (cuda_backend *)calloc(1, sizeof *cb);
    if (!cb) return MOLD_ERR(MOLD_E_NOMEM, "cuda: backend state");
    cb->base.i = &CUDA_I;
    cb->device = device;
    cb->hold = MOLD_DTYPE_INVALID;
    const char *dbg = getenv("MOLD_CUDA_SYNC_DEBUG");
    cb->sync_debug = dbg && *dbg && strcmp(dbg, "0") != 0;
    /* kernel variants (benchmarks, and a way back to the previous kernels):
     * MOLD_CUDA_ATTN_VARIANT (attention.cu), MOLD_CUDA_CONV_VARIANT (conv.cu) */
    const char *av = getenv("MOLD_CUDA_ATTN_VARIANT"), *cv = getenv("MOLD_CUDA_CONV_VARIANT");
    if (av && *av) mold_cuda_attention_set_variant(atoi(av));
    if (cv && *cv) mold_cuda_conv_set_variant(atoi(cv));
    mold_status st = create(cb);
    if (st == MOLD_OK) st = mold_cuda_profile_init(cb);
    if (st != MOLD_OK) {
        be_destroy(&cb->base);
        return st;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) == cudaSuccess)
        MOLD_LOGI("cuda: device %d %s, %d SMs, %.1f GiB, sm_%d%d", device, prop.name, cb->n_sm,
                  prop.totalGlobalMem / 1073741824.0, prop.major, prop.minor);
    *out = &cb->base;
    return MOLD_OK;
}
