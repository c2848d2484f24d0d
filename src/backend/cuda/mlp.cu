/*
 * mlp.cu — the fused MLP op (ops.h mlp_gelu, see mlp.cuh):
 *   y = gelu_tanh(x W1^T + b1) W2^T + b2.
 *
 * Why: composed from matmul + gelu_tanh + matmul, the hidden activation
 * [m, F] (F = 4 D, the largest tensor of a DiT block) crosses memory four
 * times as f32: GEMM1 writes it, GELU reads and writes it, matmul reads it
 * once more to round it to bf16 for GEMM2. Here GEMM1 writes it as bf16,
 * GELU adds b1 and runs in place on the bf16 values, and GEMM2 reads them
 * directly as its B operand: three passes of half the bytes. This is
 * diffusers' precision (bf16 Linear outputs, GELU on bf16), except that b1
 * is added in f32 after GEMM1's rounding rather than before it: cuBLASLt
 * has no bf16-output GEMM with an f32 bias epilogue (its heuristic finds
 * none, and asking costs tens of milliseconds), and a bf16 bias would round
 * b1 too.
 *
 * Memory: the caller's tmp (m * F floats) holds the bf16 hidden and, beside
 * it, the bf16 copy of x whenever it fits (n_in <= F: always in the DiT);
 * otherwise x goes to scratch. Scratch also holds one bf16 copy of a weight
 * that is not bf16 (block formats, f32), reused for W1 then W2 (stream order
 * keeps GEMM1 ahead of W2's conversion). src/engine/plan.c mlp_scratch
 * mirrors this; change them together.
 *
 * An f32 weight at small m keeps the exact f32 GEMM (as matmul does): the
 * op then composes matmul, f32 GELU and matmul through tmp as f32.
 */
#include "mlp.cuh"

#include "convert.cuh"
#include "elementwise.cuh"
#include "matmul.cuh"
#include "matmul_small.cuh"

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

/* 0.5 v (1 + tanh(u)) written as v / (1 + exp(-2u)): the same function
 * without the cancellation of 1 + tanh(u) for negative u; __expf's relative
 * error (~2^-21) is far below the bf16 rounding of the result (2^-9). */
__device__ __forceinline__ float gelu_tanh_sigmoid(float v) {
    const float k2 = 2.0f * 0.7978845608028654f; /* 2 sqrt(2/pi) */
    return v / (1.0f + __expf(-k2 * (v + 0.044715f * v * v * v)));
}

/* In place on h[rows, cols] bf16: h = bf16(gelu(h + bias[col])), bias
 * nullable (GEMM1's b1, f32). VEC: 8 values per 16-byte access, for
 * cols % 8 == 0 and a 16-byte aligned h. */
template <bool VEC>
__global__ void gelu_bf16_kernel(__nv_bfloat16 *h, const float *bias, int64_t rows,
                                 int64_t cols) {
    const int64_t n = rows * cols, per = VEC ? 8 : 1;
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g * per < n;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t col0 = (g * per) % cols;
        if constexpr (VEC) {
            uint4 raw = ((const uint4 *)h)[g];
            __nv_bfloat16 *v = (__nv_bfloat16 *)&raw;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float f = __bfloat162float(v[j]) + (bias ? bias[col0 + j] : 0.0f);
                v[j] = __float2bfloat16_rn(gelu_tanh_sigmoid(f));
            }
            ((uint4 *)h)[g] = raw;
        } else {
            float f = __bfloat162float(h[g]) + (bias ? bias[col0] : 0.0f);
            h[g] = __float2bfloat16_rn(gelu_tanh_sigmoid(f));
        }
    }
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

extern "C" cudaError_t mold_cuda_gelu_bf16(__nv_bfloat16 *h, const float *bias, int64_t rows,
                                           int64_t cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    if (cols % 8 == 0 && (uintptr_t)h % 16 == 0)
        gelu_bf16_kernel<true><<<cuda_blocks(rows * cols / 8, 256), 256, 0, stream>>>(h, bias,
                                                                                      rows, cols);
    else
        gelu_bf16_kernel<false><<<cuda_blocks(rows * cols, 256), 256, 0, stream>>>(h, bias, rows,
                                                                                   cols);
    return cudaGetLastError();
}

/* ==================================================================== */
/* ---- the op ---- */
/* ==================================================================== */

/* Small m with an f32 weight: exactly the composed ops, through tmp as f32. */
static mold_status mlp_composed(cuda_backend *cb, float *y, const float *x, int64_t m,
                                const mold_weight *w1, const float *b1, const mold_weight *w2,
                                const float *b2, float *tmp) {
    MOLD_TRY(mold_cuda_matmul_run(cb, tmp, x, m, w1, b1));
    MOLD_CUDA_CHECK(cb, mold_cuda_gelu_tanh(tmp, tmp, m * w1->n_out, cb->stream));
    return mold_cuda_matmul_run(cb, y, tmp, m, w2, b2);
}

static mold_status mlp_fused(cuda_backend *cb, float *y, const float *x, int64_t m,
                             const mold_weight *w1, const float *b1, const mold_weight *w2,
                             const float *b2, float *tmp) {
    const int64_t k = w1->n_in, F = w1->n_out, n_out = w2->n_out;
    const size_t hid_bytes = cuda_align256((size_t)m * F * 2), xb_bytes = (size_t)m * k * 2;
    const bool x_in_tmp = hid_bytes + xb_bytes <= (size_t)m * F * 4;
    size_t wq = 0; /* the larger bf16 copy a non-bf16 weight needs */
    if (w1->dtype != MOLD_BF16) wq = (size_t)F * k * 2;
    if (w2->dtype != MOLD_BF16 && (size_t)n_out * F * 2 > wq) wq = (size_t)n_out * F * 2;
    const size_t x_scr = x_in_tmp ? 0 : cuda_align256(xb_bytes);
    void *scr = NULL;
    if (x_scr + wq > 0) MOLD_TRY(mold_cuda_scratch(cb, x_scr + cuda_align256(wq), &scr));
    __nv_bfloat16 *hid = (__nv_bfloat16 *)tmp;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)(x_in_tmp ? (char *)tmp + hid_bytes : (char *)scr);
    __nv_bfloat16 *wreg = (__nv_bfloat16 *)((char *)scr + x_scr);

    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(xb, x, m * k, cb->stream));
    const void *a1, *a2;
    MOLD_TRY(mold_cuda_weight_bf16(cb, w1, wreg, &a1));
    MOLD_TRY(mold_cuda_gemm_bf16_out(cb, 1, F, m, k, a1, k, xb, k, hid, F));
    MOLD_CUDA_CHECK(cb, mold_cuda_gelu_bf16(hid, b1, m, F, cb->stream));
    MOLD_TRY(mold_cuda_weight_bf16(cb, w2, wreg, &a2));
    return mold_cuda_gemm(cb, 1, n_out, m, F, 1.0f, a2, F, hid, F, CUDA_R_16BF, y, n_out, b2);
}

extern "C" mold_status mold_cuda_op_mlp_gelu(mold_backend *be, float *y, const float *x,
                                             int64_t m, const mold_weight *w1, const float *b1,
                                             const mold_weight *w2, const float *b2,
                                             float *tmp) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(mold_cuda_check_weight(w1, "mlp_gelu w1"));
    MOLD_TRY(mold_cuda_check_weight(w2, "mlp_gelu w2"));
    if (w2->n_in != w1->n_out)
        return MOLD_ERR(MOLD_E_INVALID, "mlp_gelu: expected w2 n_in == w1 n_out, got %lld and %lld",
                        (long long)w2->n_in, (long long)w1->n_out);
    if (m < 0 || (m > 0 && !tmp))
        return MOLD_ERR(MOLD_E_INVALID, "mlp_gelu: expected m >= 0 and a tmp buffer, got m %lld",
                        (long long)m);
    if (m == 0) return MOLD_OK;
    CUDA_OP(cb, "mlp_gelu", m, w1->n_in, w1->n_out, w2->n_out);
    /* exact f32 weights, and few rows: the composition (at m <= 64 both
     * matmuls take the k-split few-row path; cuBLASLt's bf16-output GEMMs ran
     * the DiT's 26-row text MLP in 0.56 ms vs ~0.1 ms composed, H100) */
    const bool few = mold_cuda_matmul_small_fits(m, w1->n_in) &&
                     mold_cuda_matmul_small_fits(m, w2->n_in);
    if (few || mold_cuda_matmul_exact(w1, m) || mold_cuda_matmul_exact(w2, m))
        MOLD_TRY(mlp_composed(cb, y, x, m, w1, b1, w2, b2, tmp));
    else
        MOLD_TRY(mlp_fused(cb, y, x, m, w1, b1, w2, b2, tmp));
    return mold_cuda_op_done(cb);
}
