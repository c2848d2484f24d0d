/*
 * cuda_common.cuh — shared state, error checking and helpers of the CUDA
 * backend (src/backend/cuda/). Included by every .cu file of the backend,
 * never by model code (models/ never include CUDA: style rule 2).
 *
 * Ownership: one cuda_backend per mold_backend_cuda_create(). It owns
 *   - one non-blocking stream: every op of this backend is queued on it, in
 *     call order, so results are visible to later ops without host syncs;
 *   - one cuBLASLt handle and its workspace (CUDA_LT_WORKSPACE_BYTES);
 *   - a scratch buffer for per-call temporaries (bf16 copies of activations,
 *     dequantized weights, im2col columns, attention scores). It grows only
 *     when a larger shape arrives (logged at info level); with a fixed plan it
 *     reaches its final size on the first forward and never changes again;
 *   - a pinned host staging area (two halves) for weight uploads.
 * Activations and weights are caller-owned (alloc()/weight_upload()).
 *
 * Errors: every CUDA / cuBLAS call goes through MOLD_CUDA_CHECK /
 * MOLD_CUBLAS_CHECK, which report the failing statement, the op being run and
 * its shape (set by CUDA_OP at the op's entry), the device and the error
 * string, and return MOLD_E_DEVICE. Each kernel launch is followed by
 * MOLD_CUDA_LAUNCH_CHECK (cudaGetLastError). With MOLD_CUDA_SYNC_DEBUG=1 in
 * the environment every op also synchronizes, so an asynchronous fault is
 * reported by the op that caused it.
 *
 * Numerics (DESIGN.md principle 4): activations are f32 in device memory;
 * matmul / attention / conv round their inputs to bf16 (never f16) and
 * accumulate in f32. Norm statistics, softmax and RoPE are f32.
 */
#ifndef MOLD_BACKEND_CUDA_COMMON_CUH
#define MOLD_BACKEND_CUDA_COMMON_CUH

#include <cublasLt.h>        /* defines: cublasLtHandle_t */
#include <cuda_bf16.h>       /* defines: __nv_bfloat16 */
#include <cuda_runtime.h>    /* defines: cudaStream_t, cudaError_t */
#include <stdint.h>

extern "C" {
#include "../../base/log.h"
#include "../../base/status.h"
#include "../ops.h"
}

/* cuBLASLt workspace: 32 MiB is what NVIDIA recommends for Hopper. */
#define CUDA_LT_WORKSPACE_BYTES ((size_t)32 << 20)
/* Pinned staging for uploads: two halves of this many bytes each. */
#define CUDA_STAGING_BYTES ((size_t)64 << 20)
/* Cached matmul plans (shape -> cuBLASLt algorithm), CUDA_PLAN_WAYS slots per key. */
#define CUDA_N_PLANS 256
#define CUDA_PLAN_WAYS 4
/* cuda_gemm_plan.valid */
#define PLAN_ALGO 1 /* algo holds cuBLASLt's choice */
#define PLAN_NONE 2 /* cuBLASLt has no algorithm for this key */

/* A cached cuBLASLt heuristic result for one GEMM shape and type set. */
typedef struct cuda_gemm_plan {
    int64_t m, n, k, lda, ldb, ldc; /* column-major cuBLAS shape and strides */
    int type_ab;                    /* cudaDataType of A and B */
    int type_d;                     /* cudaDataType of D (f32, or bf16 for fused MLPs) */
    int trans_a;                    /* A transposed (weights [n_out, n_in]) */
    int has_bias;                   /* bias epilogue */
    int64_t align;                  /* pointer alignments A, B, D (packed) */
    int valid;                      /* 0, PLAN_ALGO or PLAN_NONE */
    cublasLtMatmulAlgo_t algo;
} cuda_gemm_plan;

typedef struct cuda_profile cuda_profile;

typedef struct cuda_backend {
    mold_backend base;        /* must be first: ops receive a mold_backend* */
    int device;               /* CUDA ordinal */
    int n_sm;                 /* multiprocessors, for persistent grids */
    cudaStream_t stream;      /* every op runs here, in call order */
    cublasLtHandle_t lt;      /* matmul / conv / fallback attention GEMMs */
    void *lt_ws;              /* CUDA_LT_WORKSPACE_BYTES of device memory */
    void *scratch;            /* per-call temporaries; see cuda_scratch() */
    size_t scratch_bytes;     /* current scratch size */
    unsigned char *staging;   /* pinned host memory, 2 x CUDA_STAGING_BYTES */
    cudaEvent_t staged[2];    /* staging half i may be refilled once this fires */
    int64_t *d_count;         /* one device int64 for count_nonfinite */
    int sync_debug;           /* MOLD_CUDA_SYNC_DEBUG: sync after every op */
    /* The op being run, for error messages (set by CUDA_OP). */
    const char *op;
    int n_dims;
    int64_t dims[6];
    cuda_gemm_plan plans[CUDA_N_PLANS]; /* small plan cache (matmul.cu) */
    uint64_t n_heuristic;      /* cuBLASLt heuristic queries so far (profile prints them) */
    uint64_t n_heuristic_none; /* ... that found no algorithm */
    size_t peak_used;         /* max device bytes in use seen after an alloc */
    mold_dtype hold;          /* set_weight_hold: MOLD_BF16 or MOLD_DTYPE_INVALID */
    struct cuda_profile *prof; /* MOLD_CUDA_PROFILE: per-op device times (profile.cu) */
} cuda_backend;

static inline cuda_backend *cuda_of(mold_backend *be) { return (cuda_backend *)be; }

/* ---- error checking ---- */

extern "C" {
/* Formats "cuda: <stmt> failed in op <op> [dims] on device <d>: <msg>" and
 * records it with the caller's location. Returns MOLD_E_DEVICE. */
mold_status mold_cuda_fail(const cuda_backend *cb, const char *stmt, const char *msg,
                           const char *file, int line, const char *func);
/* Ends an op: with sync_debug, waits for it and reports asynchronous faults. */
mold_status mold_cuda_op_done(cuda_backend *cb);
/* Returns scratch of at least `bytes` (256-byte aligned) in *out, growing the
 * buffer when needed (cudaFree synchronizes, so queued users of the old
 * buffer finish first). The contents are undefined; one op's regions are
 * carved from one call. */
mold_status mold_cuda_scratch(cuda_backend *cb, size_t bytes, void **out);
}

#define MOLD_CUDA_CHECK(cb, stmt)                                                          \
    do {                                                                                   \
        cudaError_t mold_ce_ = (stmt);                                                     \
        if (mold_ce_ != cudaSuccess)                                                       \
            return mold_cuda_fail((cb), #stmt, cudaGetErrorString(mold_ce_), __FILE__,     \
                                  __LINE__, __func__);                                     \
    } while (0)

#define MOLD_CUBLAS_CHECK(cb, stmt)                                                        \
    do {                                                                                   \
        cublasStatus_t mold_bs_ = (stmt);                                                  \
        if (mold_bs_ != CUBLAS_STATUS_SUCCESS)                                             \
            return mold_cuda_fail((cb), #stmt, cublasLtGetStatusString(mold_bs_), __FILE__, \
                                  __LINE__, __func__);                                     \
    } while (0)

/* After every kernel launch: reports launch-configuration errors at once. */
#define MOLD_CUDA_LAUNCH_CHECK(cb) MOLD_CUDA_CHECK((cb), cudaGetLastError())

extern "C" void mold_cuda_profile_begin(cuda_backend *cb); /* profile.cu */

/* Records the op name and up to 6 dims for error messages. Cheap (no
 * formatting): the message is built only when something fails. */
static inline void cuda_op_set(cuda_backend *cb, const char *op, int n, const int64_t *d) {
    cb->op = op;
    cb->n_dims = n > 6 ? 6 : n;
    for (int i = 0; i < cb->n_dims; i++) cb->dims[i] = d[i];
    if (cb->prof) mold_cuda_profile_begin(cb);
}
#define CUDA_OP(cb, name, ...)                                                 \
    do {                                                                       \
        const int64_t cuda_op_d_[] = {__VA_ARGS__};                            \
        cuda_op_set((cb), (name), (int)(sizeof cuda_op_d_ / sizeof cuda_op_d_[0]), cuda_op_d_); \
    } while (0)

/* ---- scratch ---- */

/* Rounds up to a multiple of 256 bytes (sub-regions of scratch stay aligned
 * for vector loads and cuBLASLt). */
static inline size_t cuda_align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Grid size for n items at `per_block` items per block, capped to a
 * grid-stride-friendly maximum. */
static inline unsigned cuda_blocks(int64_t n, int per_block) {
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    if (b > (int64_t)1 << 20) b = (int64_t)1 << 20; /* kernels loop over the rest */
    return (unsigned)b;
}

#endif
