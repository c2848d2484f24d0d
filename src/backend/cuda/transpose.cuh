/*
 * transpose.cuh — the transpose op of the CUDA backend (ops.h transpose):
 * dst [cols, rows] = src [rows, cols]^T in f32, e.g. the VAE's images
 * [C, HW] <-> tokens [HW, C].
 */
#ifndef MOLD_BACKEND_CUDA_TRANSPOSE_CUH
#define MOLD_BACKEND_CUDA_TRANSPOSE_CUH

#include "cuda_common.cuh"

extern "C" {
mold_status mold_cuda_op_transpose(mold_backend *be, float *dst, const float *src, int64_t rows,
                                   int64_t cols);
}

#endif
