/*
 * matmul.cu — cuBLASLt GEMMs, the matmul and embed ops (see matmul.cuh).
 *
 * Layout: ops.h matrices are row-major; cuBLAS is column-major. A row-major
 * y[m, n_out] is the column-major n_out x m matrix y^T, so
 *   y^T (n_out x m) = W (n_out x n_in, stored as column-major n_in x n_out,
 *                        hence op(A) = A^T) * x^T (n_in x m, column-major)
 * which is the classic "TN" GEMM, and the bias (one value per n_out) is one
 * value per row of D: cuBLASLt's BIAS epilogue, fused into the GEMM.
 *
 * Plans: cuBLASLt's heuristic query costs tens of microseconds to
 * milliseconds, so the chosen algorithm is cached per (shape, strides, types,
 * epilogue, alignment) in a small table on the backend (CUDA_N_PLANS entries,
 * CUDA_PLAN_WAYS per key); so is the answer "no algorithm" (a bias epilogue
 * cuBLASLt does not offer for a shape is then not asked for again).
 *
 * Alignment: activations may be offsets into larger buffers (ops.h allows
 * pointer arithmetic), so the heuristic is told each pointer's real alignment
 * rather than cuBLASLt's default assumption of 256 bytes.
 */
#include "matmul.cuh"

#include "convert.cuh"
#include "matmul_small.cuh"

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

/* Column-major D[m x n] (ldd) += bias[m] per row; used only when cuBLASLt
 * offers no algorithm with the bias epilogue for a shape. */
__global__ void bias_add_kernel(float *D, const float *bias, int64_t m, int64_t n, int64_t ldd) {
    int64_t total = m * n;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = t / m, i = t - j * m;
        D[i + j * ldd] += bias[i];
    }
}

/* ==================================================================== */
/* ---- GEMM through cuBLASLt ---- */
/* ==================================================================== */

static int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && a % (uintptr_t)al != 0) al >>= 1;
    return al;
}

static uint64_t plan_hash(const cuda_gemm_plan *p) {
    uint64_t h = 1469598103934665603ull;
    int64_t v[11] = {p->m, p->n, p->k, p->lda, p->ldb, p->ldc, p->type_ab, p->type_d,
                     p->trans_a, p->has_bias, p->align};
    for (int i = 0; i < 11; i++) h = (h ^ (uint64_t)v[i]) * 1099511628211ull;
    return h;
}

static bool plan_equal(const cuda_gemm_plan *a, const cuda_gemm_plan *b) {
    return a->m == b->m && a->n == b->n && a->k == b->k && a->lda == b->lda && a->ldb == b->ldb &&
           a->ldc == b->ldc && a->type_ab == b->type_ab && a->type_d == b->type_d &&
           a->trans_a == b->trans_a && a->has_bias == b->has_bias && a->align == b->align;
}

/* The cached plan for key, or NULL. Entries live in CUDA_PLAN_WAYS
 * consecutive slots from the key's hash (a forward uses a few dozen GEMM
 * shapes: direct mapping let two of them evict each other on every call). */
static cuda_gemm_plan *plan_find(cuda_backend *cb, const cuda_gemm_plan *key) {
    uint64_t h = plan_hash(key);
    for (int w = 0; w < CUDA_PLAN_WAYS; w++) {
        cuda_gemm_plan *p = &cb->plans[(h + (uint64_t)w) % CUDA_N_PLANS];
        if (p->valid && plan_equal(p, key)) return p;
    }
    return NULL;
}

/* Where a new plan for key goes: a free slot of its ways, else the first. */
static cuda_gemm_plan *plan_slot(cuda_backend *cb, const cuda_gemm_plan *key) {
    uint64_t h = plan_hash(key);
    for (int w = 0; w < CUDA_PLAN_WAYS; w++) {
        cuda_gemm_plan *p = &cb->plans[(h + (uint64_t)w) % CUDA_N_PLANS];
        if (!p->valid) return p;
    }
    return &cb->plans[h % CUDA_N_PLANS];
}

/* One GEMM attempt with or without the bias epilogue; *no_algo set when the
 * heuristic finds nothing (the caller then retries without the epilogue).
 * D is `dt` (f32, or bf16 for the fused MLP's hidden activation); a bias is
 * f32 (cuBLASLt's default bias type is D's: a bf16 D gets no bias here). */
static mold_status gemm_lt(cuda_backend *cb, int trans_a, int64_t m, int64_t n, int64_t k,
                           float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                           cudaDataType_t ab, void *D, cudaDataType_t dt, int64_t ldd,
                           const float *bias, int *no_algo) {
    *no_algo = 0;
    MOLD_ASSERT(!bias || dt == CUDA_R_32F);
    int al_a = align_of(A), al_b = align_of(B), al_d = align_of(D);
    int64_t al_key = (int64_t)al_a << 20 | (int64_t)al_b << 10 | al_d;
    cuda_gemm_plan key = {m,      n,       k,       lda,          ldb,    ldd,
                          (int)ab, (int)dt, trans_a, bias != NULL, al_key, 0, {}};
    cuda_gemm_plan *slot = plan_find(cb, &key);
    if (slot && slot->valid == PLAN_NONE) { /* known: no algorithm with this epilogue */
        *no_algo = 1;
        return MOLD_OK;
    }

    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    mold_status st = MOLD_OK;
    cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F; /* f32: exact, no TF32; bf16: fp32 accumulate */
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    float beta = 0.0f;
    uint64_t ws = CUDA_LT_WORKSPACE_BYTES;
    uint32_t ua = (uint32_t)al_a, ub = (uint32_t)al_b, ud = (uint32_t)al_d;

#define LT(stmt)                                                                          \
    do {                                                                                  \
        cublasStatus_t s_ = (stmt);                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
            st = mold_cuda_fail(cb, #stmt, cublasLtGetStatusString(s_), __FILE__, __LINE__, \
                                __func__);                                                \
            goto done;                                                                    \
        }                                                                                 \
    } while (0)

    LT(cublasLtMatmulDescCreate(&op, ct, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias)
        LT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                          sizeof bias));
    LT(cublasLtMatrixLayoutCreate(&la, ab, trans_a ? k : m, trans_a ? m : k, lda));
    LT(cublasLtMatrixLayoutCreate(&lb, ab, k, n, ldb));
    LT(cublasLtMatrixLayoutCreate(&ld, dt, m, n, ldd));

    if (!slot) {
        cublasLtMatmulHeuristicResult_t res;
        int n_res = 0;
        LT(cublasLtMatmulPreferenceCreate(&pref));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                &ws, sizeof ws));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                &ua, sizeof ua));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                &ub, sizeof ub));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                &ud, sizeof ud));
        LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                &ud, sizeof ud));
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(cb->lt, op, la, lb, ld, ld, pref, 1,
                                                           &res, &n_res);
        cb->n_heuristic++;
        slot = plan_slot(cb, &key);
        *slot = key;
        if (hs != CUBLAS_STATUS_SUCCESS || n_res == 0) {
            /* remembered: the query is slow (milliseconds) and its answer fixed */
            slot->valid = PLAN_NONE;
            cb->n_heuristic_none++;
            MOLD_LOGI("cuda: cuBLASLt has no algorithm for GEMM %lldx%lldx%lld (types %d/%d, "
                      "bias %d, alignments %d/%d/%d)%s", (long long)m, (long long)n, (long long)k,
                      (int)ab, (int)dt, bias != NULL, al_a, al_b, al_d,
                      bias ? ": the bias is added separately" : "");
            *no_algo = 1;
            goto done;
        }
        slot->valid = PLAN_ALGO;
        slot->algo = res.algo;
    }
    LT(cublasLtMatmul(cb->lt, op, &alpha, A, la, B, lb, &beta, D, ld, D, ld, &slot->algo,
                      cb->lt_ws, CUDA_LT_WORKSPACE_BYTES, cb->stream));
#undef LT
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}

extern "C" mold_status mold_cuda_gemm(cuda_backend *cb, int trans_a, int64_t m, int64_t n,
                                      int64_t k, float alpha, const void *A, int64_t lda,
                                      const void *B, int64_t ldb, cudaDataType_t ab, float *D,
                                      int64_t ldd, const float *bias) {
    if (m <= 0 || n <= 0) return MOLD_OK;
    MOLD_ASSERT(k > 0);
    int no_algo = 0;
    MOLD_TRY(gemm_lt(cb, trans_a, m, n, k, alpha, A, lda, B, ldb, ab, D, CUDA_R_32F, ldd, bias,
                     &no_algo));
    if (no_algo && bias) { /* retry without the epilogue, add the bias separately */
        MOLD_TRY(gemm_lt(cb, trans_a, m, n, k, alpha, A, lda, B, ldb, ab, D, CUDA_R_32F, ldd,
                         NULL, &no_algo));
        if (!no_algo) {
            bias_add_kernel<<<cuda_blocks(m * n, 256), 256, 0, cb->stream>>>(D, bias, m, n, ldd);
            MOLD_CUDA_LAUNCH_CHECK(cb);
        }
    }
    if (no_algo)
        return mold_cuda_fail(cb, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this GEMM",
                              __FILE__, __LINE__, __func__);
    return MOLD_OK;
}

extern "C" mold_status mold_cuda_gemm_bf16_out(cuda_backend *cb, int trans_a, int64_t m,
                                              int64_t n, int64_t k, const void *A, int64_t lda,
                                              const void *B, int64_t ldb, __nv_bfloat16 *D,
                                              int64_t ldd) {
    if (m <= 0 || n <= 0) return MOLD_OK;
    MOLD_ASSERT(k > 0);
    int no_algo = 0;
    MOLD_TRY(gemm_lt(cb, trans_a, m, n, k, 1.0f, A, lda, B, ldb, CUDA_R_16BF, D, CUDA_R_16BF, ldd,
                     NULL, &no_algo));
    if (no_algo)
        return mold_cuda_fail(cb, "cublasLtMatmulAlgoGetHeuristic",
                              "no algorithm for this bf16-output GEMM", __FILE__, __LINE__,
                              __func__);
    return MOLD_OK;
}

/* ==================================================================== */
/* ---- op entries ---- */
/* ==================================================================== */

/* Where a non-bf16 weight is made bf16 for the GEMM: block formats are
 * dequantized, f32 (the large-m path) is rounded; bf16 is used in place. */
extern "C" mold_status mold_cuda_weight_bf16(cuda_backend *cb, const mold_weight *w,
                                             __nv_bfloat16 *region, const void **out) {
    *out = w->data;
    if (w->dtype == MOLD_BF16) return MOLD_OK;
    MOLD_CUDA_CHECK(cb, mold_cuda_dequant_bf16(w->dtype, region, w->data, w->n_out, w->n_in,
                                               w->row_bytes, cb->stream));
    *out = region;
    return MOLD_OK;
}

/* Test hook: cuBLASLt heuristic queries so far, and how many found nothing. */
extern "C" void mold_cuda_gemm_plan_stats(mold_backend *be, uint64_t *queries, uint64_t *none) {
    *queries = cuda_of(be)->n_heuristic;
    *none = cuda_of(be)->n_heuristic_none;
}

static int64_t g_f32_bf16_min_m = CUDA_F32_BF16_MIN_M;

/* Test/benchmark hook: the m from which f32 weights take the bf16 path
 * (<= 0 restores CUDA_F32_BF16_MIN_M; INT64_MAX keeps every f32 GEMM exact). */
extern "C" void mold_cuda_matmul_set_f32_bf16_min_m(int64_t m) {
    g_f32_bf16_min_m = m > 0 ? m : CUDA_F32_BF16_MIN_M;
}

extern "C" bool mold_cuda_matmul_exact(const mold_weight *w, int64_t m) {
    return w->dtype == MOLD_F32 && m < g_f32_bf16_min_m;
}

/* The matmul without the op bookkeeping (CUDA_OP / op_done), for ops that
 * compose it. Scratch: bf16 x, then a bf16 copy of a non-bf16 weight (block
 * formats; f32 from CUDA_F32_BF16_MIN_M rows); nothing for the exact f32
 * path. */
extern "C" mold_status mold_cuda_matmul_run(cuda_backend *cb, float *y, const float *x, int64_t m,
                                            const mold_weight *w, const float *bias) {
    int64_t k = w->n_in, n_out = w->n_out;
    if (mold_cuda_matmul_exact(w, m)) /* f32, small m: exact f32 GEMM on f32 activations */
        return mold_cuda_gemm(cb, 1, n_out, m, k, 1.0f, w->data, k, x, k, CUDA_R_32F, y, n_out,
                              bias);
    size_t xb_bytes = cuda_align256((size_t)m * k * 2);
    size_t wb_bytes = w->dtype != MOLD_BF16 ? cuda_align256((size_t)n_out * k * 2) : 0;
    void *scr;
    if (mold_cuda_matmul_small_fits(m, k)) { /* few rows: stream W once over every SM */
        const size_t sb = mold_cuda_matmul_small_scratch(m, k, n_out, cb->n_sm);
        MOLD_TRY(mold_cuda_scratch(cb, wb_bytes + sb, &scr));
        const void *wdata;
        MOLD_TRY(mold_cuda_weight_bf16(cb, w, (__nv_bfloat16 *)scr, &wdata));
        const uint64_t row_bytes = wdata == w->data ? w->row_bytes : (uint64_t)k * 2;
        MOLD_CUDA_CHECK(cb, mold_cuda_matmul_small(y, x, m, wdata, n_out, k, row_bytes, bias,
                                                   (char *)scr + wb_bytes, cb->n_sm,
                                                   cb->stream));
        return MOLD_OK;
    }
    MOLD_TRY(mold_cuda_scratch(cb, xb_bytes + wb_bytes, &scr));
    __nv_bfloat16 *xb = (__nv_bfloat16 *)scr;                      /* (m, k) bf16 */
    __nv_bfloat16 *wb = (__nv_bfloat16 *)((char *)scr + xb_bytes); /* (n_out, k) bf16 */
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(xb, x, m * k, cb->stream));
    const void *wdata;
    MOLD_TRY(mold_cuda_weight_bf16(cb, w, wb, &wdata));
    return mold_cuda_gemm(cb, 1, n_out, m, k, 1.0f, wdata, k, xb, k, CUDA_R_16BF, y, n_out, bias);
}

extern "C" mold_status mold_cuda_check_weight(const mold_weight *w, const char *what) {
    if (!w || !w->data)
        return MOLD_ERR(MOLD_E_INVALID, "%s: weight is NULL or has no data", what);
    if (w->n_out <= 0 || w->n_in <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected a positive weight shape, got [%lld, %lld]",
                        what, (long long)w->n_out, (long long)w->n_in);
    if (!mold_cuda_dtype_supported(w->dtype))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: weight dtype %s is not supported on CUDA", what,
                        mold_dtype_name(w->dtype));
    return MOLD_OK;
}

extern "C" mold_status mold_cuda_op_matmul(mold_backend *be, float *y, const float *x,
                                           int64_t m, const mold_weight *w, const float *bias) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(mold_cuda_check_weight(w, "matmul"));
    if (m < 0) return MOLD_ERR(MOLD_E_INVALID, "matmul: expected m >= 0, got %lld", (long long)m);
    if (m == 0) return MOLD_OK;
    CUDA_OP(cb, "matmul", m, w->n_in, w->n_out);
    MOLD_TRY(mold_cuda_matmul_run(cb, y, x, m, w, bias));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_embed(mold_backend *be, float *y, const mold_weight *table,
                                          const int32_t *ids_host, int64_t n) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(mold_cuda_check_weight(table, "embed"));
    if (n < 0 || (n > 0 && !ids_host))
        return MOLD_ERR(MOLD_E_INVALID, "embed: expected n >= 0 ids, got %lld", (long long)n);
    if (n == 0) return MOLD_OK;
    for (int64_t i = 0; i < n; i++)
        if (ids_host[i] < 0 || ids_host[i] >= table->n_out)
            return MOLD_ERR(MOLD_E_RANGE, "embed: id %lld at position %lld outside [0, %lld)",
                            (long long)ids_host[i], (long long)i, (long long)table->n_out);
    CUDA_OP(cb, "embed", n, table->n_out, table->n_in);
    void *scr;
    MOLD_TRY(mold_cuda_scratch(cb, (size_t)n * sizeof(int32_t), &scr));
    /* From pageable memory: returns once the ids are staged, so the caller
     * may reuse ids_host at once. */
    MOLD_CUDA_CHECK(cb, cudaMemcpyAsync(scr, ids_host, (size_t)n * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, cb->stream));
    MOLD_CUDA_CHECK(cb, mold_cuda_rows_f32(table->dtype, y, table->data, table->row_bytes,
                                           table->n_in, (const int32_t *)scr, n, cb->stream));
    return mold_cuda_op_done(cb);
}

/* ==================================================================== */
/* ---- benchmark helper ---- */
/* ==================================================================== */

/* Random bf16 in [-1, 1) from a hash of the index (never zeros: a GEMM on
 * zeros runs measurably faster than on real data). */
__global__ void fill_random_bf16(__nv_bfloat16 *p, int64_t n, uint32_t seed) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)t * 2654435761u ^ seed;
        h ^= h >> 16;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        p[t] = __float2bfloat16_rn((float)(h & 0xffffff) / 8388608.0f - 1.0f);
    }
}

extern "C" mold_status mold_cuda_bench_gemm(mold_backend *be, int64_t m, int64_t n, int64_t k,
                                            int iters, double *median_ms) {
    cuda_backend *cb = cuda_of(be);
    CUDA_OP(cb, "bench_gemm", m, n, k);
    void *a = NULL, *b = NULL;
    float *d = NULL;
    cudaEvent_t ev[2] = {NULL, NULL};
    double times[64];
    if (iters > 64) iters = 64;
    mold_status st = MOLD_OK;
#define BCHK(stmt)                                                                             \
    do {                                                                                       \
        cudaError_t e_ = (stmt);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            st = mold_cuda_fail(cb, #stmt, cudaGetErrorString(e_), __FILE__, __LINE__, __func__); \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)
    BCHK(cudaMalloc(&a, (size_t)m * k * 2));
    BCHK(cudaMalloc(&b, (size_t)n * k * 2));
    BCHK(cudaMalloc((void **)&d, (size_t)m * n * 4));
    BCHK(cudaEventCreate(&ev[0]));
    BCHK(cudaEventCreate(&ev[1]));
    fill_random_bf16<<<cuda_blocks(m * k, 256), 256, 0, cb->stream>>>((__nv_bfloat16 *)a, m * k, 1);
    fill_random_bf16<<<cuda_blocks(n * k, 256), 256, 0, cb->stream>>>((__nv_bfloat16 *)b, n * k, 2);
    BCHK(cudaGetLastError());
    for (int i = -3; i < iters; i++) {
        BCHK(cudaEventRecord(ev[0], cb->stream));
        st = mold_cuda_gemm(cb, 1, m, n, k, 1.0f, a, k, b, k, CUDA_R_16BF, d, m, NULL);
        if (st != MOLD_OK) goto done;
        BCHK(cudaEventRecord(ev[1], cb->stream));
        BCHK(cudaEventSynchronize(ev[1]));
        float ms = 0;
        BCHK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
        if (i >= 0) times[i] = ms;
    }
    for (int i = 1; i < iters; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double t = times[j];
            times[j] = times[j - 1];
            times[j - 1] = t;
        }
    *median_ms = times[iters / 2];
#undef BCHK
done:
    for (int i = 0; i < 2; i++)
        if (ev[i]) cudaEventDestroy(ev[i]);
    cudaFree(a);
    cudaFree(b);
    cudaFree(d);
    return st;
}
