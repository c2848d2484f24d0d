/*
 * device_util.cuh — device helpers shared by the CUDA kernels: the bf16
 * tensor-core MMA (mma.sync m16n8k16) and ldmatrix, bf16 pair packing, the
 * fast exp2 of the flash kernels and the attention's key mask. Each was
 * written in several kernels before; one definition keeps their operand
 * layouts (documented here) identical everywhere.
 */
#ifndef MOLD_BACKEND_CUDA_DEVICE_UTIL_CUH
#define MOLD_BACKEND_CUDA_DEVICE_UTIL_CUH

#include <cuda_bf16.h>
#include <stdint.h>

/* D[16 x 8] += A[16 x 16] B[16 x 8], bf16 in, f32 accumulate. Fragments
 * (PTX ISA, g = lane / 4, t = lane % 4): A a0 (g, 2t..2t+1) a1 (g+8, 2t..)
 * a2 (g, 2t+8..) a3 (g+8, 2t+8..); B b0 (k = 2t..2t+1, n = g) b1 (k =
 * 2t+8.., n = g); C c0,c1 (g, 2t..2t+1) c2,c3 (g+8, 2t..2t+1). */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
 * Without .trans lane l receives (row l/4, cols 2(l%4), 2(l%4)+1) of each. */
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem_row) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* Two floats as one bf16x2 register, lo in the low half (round to nearest). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return *(uint32_t *)&v;
}

/* 2^x by the special-function unit (flush-to-zero; exp2(-inf) = 0). */
__device__ __forceinline__ float ex2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Attention keys: j is visible when it exists and key_valid (nullable) is
 * not 0 there. */
__device__ __forceinline__ bool key_ok(const float *key_valid, int j, int skv) {
    return j < skv && (!key_valid || __ldg(key_valid + j) != 0.0f);
}

#endif
