/*
 * norm.cuh — normalizations of the CUDA backend: RMSNorm (hidden and per
 * head), LayerNorm without affine followed by adaLN modulation, and the
 * channel RMS_norm of the Wan/Qwen-Image VAE. Statistics are f32.
 */
#ifndef MOLD_BACKEND_CUDA_NORM_CUH
#define MOLD_BACKEND_CUDA_NORM_CUH

#include "cuda_common.cuh"

extern "C" {
/* Launchers (rows of `dim` contiguous floats; y may alias x). */
cudaError_t mold_cuda_rms_norm(float *y, const float *x, const float *gamma, int64_t rows,
                               int64_t dim, float eps, cudaStream_t stream);
cudaError_t mold_cuda_layer_norm_modulate(float *y, const float *x, const float *shift,
                                          const float *scale, int64_t rows, int64_t dim,
                                          float eps, cudaStream_t stream);
cudaError_t mold_cuda_channel_rms_norm(float *y, const float *x, const float *gamma, int64_t c,
                                       int64_t hw, cudaStream_t stream);

/* Op-table entries (ops.h). */
mold_status mold_cuda_op_rms_norm(mold_backend *be, float *y, const float *x,
                                  const float *gamma, int64_t rows, int64_t dim, float eps);
mold_status mold_cuda_op_layer_norm_modulate(mold_backend *be, float *y, const float *x,
                                             const float *shift, const float *scale,
                                             int64_t rows, int64_t dim, float eps);
mold_status mold_cuda_op_channel_rms_norm(mold_backend *be, float *y, const float *x,
                                          const float *gamma, int64_t c, int64_t hw);
mold_status mold_cuda_op_channel_rms_scale(mold_backend *be, float *s, const float *x, int64_t c,
                                           int64_t hw);
}

#endif
