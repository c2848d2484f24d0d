/*
 * conv.cuh — image ops of the CUDA backend on [C, H, W] f32: 2-D convolution
 * (stride 1, zero padding; bf16 tensor cores, fp32 accumulation) as an
 * implicit GEMM for 3x3 pad 1, else im2col into a bf16 scratch plus a
 * cuBLASLt GEMM, and nearest-neighbour x2 upsampling.
 */
#ifndef MOLD_BACKEND_CUDA_CONV_CUH
#define MOLD_BACKEND_CUDA_CONV_CUH

#include "cuda_common.cuh"

extern "C" {
/* col[k, p - p0] (bf16, row-major [c_in*kh*kw, n_p]) for output pixels
 * p0 .. p0+n_p of a stride-1 convolution with zero padding `pad`. */
cudaError_t mold_cuda_im2col_bf16(__nv_bfloat16 *col, const float *x, int64_t c_in, int64_t h,
                                  int64_t w, int64_t kh, int64_t kw, int64_t pad, int64_t p0,
                                  int64_t n_p, cudaStream_t stream);
cudaError_t mold_cuda_upsample2x(float *y, const float *x, int64_t c, int64_t h, int64_t w,
                                 cudaStream_t stream);

/* Benchmark hook: 0 = packed implicit GEMM for 3x3 pad 1, im2col [K, P] +
 * "NN" GEMM otherwise (default); 1 = [P, K] + "TN" for all; 2 = [K, P] +
 * "NN" for all; 3 = packed implicit GEMM with 96 couts per block; 4 = the
 * f32-staging implicit GEMM (the default before packing). Also set from the
 * environment (MOLD_CUDA_CONV_VARIANT) when a backend is created. */
void mold_cuda_conv_set_variant(int v);

mold_status mold_cuda_op_conv2d(mold_backend *be, float *y, const float *x, int64_t c_in,
                                int64_t h, int64_t w, const mold_weight *wt, int64_t kh,
                                int64_t kw, int64_t pad, const float *bias);
mold_status mold_cuda_op_upsample2x(mold_backend *be, float *y, const float *x, int64_t c,
                                    int64_t h, int64_t w);
/* ops.h conv3x3_fused: the implicit-GEMM kernel with the fusion applied. */
mold_status mold_cuda_op_conv3x3_fused(mold_backend *be, float *y, const float *x, int64_t c_in,
                                       int64_t h, int64_t w, const mold_weight *wt,
                                       const float *bias, const mold_conv_fusion *f);
}

#endif
