/*
 * transpose.cu — f32 matrix transpose through shared memory (see
 * transpose.cuh).
 *
 * A block moves one 32 x 32 tile: 32 x 8 threads read 32 source rows
 * (consecutive threads, consecutive columns: coalesced), then write 32
 * destination rows the same way from the tile read column-wise. The tile row
 * is padded to 33 floats so the column-wise read hits 32 different banks.
 * Grid: x over column tiles, y (and z when there are more than 65535 row
 * tiles) over row tiles, so any shape below 2^31 x 2^31 tiles fits.
 */
#include "transpose.cuh"

#define TR_T 32 /* tile side */
#define TR_R 8  /* thread rows per block: each thread moves 4 values */

__global__ void transpose_kernel(float *dst, const float *src, int64_t rows, int64_t cols) {
    __shared__ float tile[TR_T][TR_T + 1];
    const int64_t r0 = ((int64_t)blockIdx.z * gridDim.y + blockIdx.y) * TR_T;
    const int64_t c0 = (int64_t)blockIdx.x * TR_T;
    if (r0 >= rows) return; /* the whole block leaves together */
    for (int i = threadIdx.y; i < TR_T; i += TR_R) {
        const int64_t r = r0 + i, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[i][threadIdx.x] = src[r * cols + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < TR_T; i += TR_R) {
        const int64_t c = c0 + i, r = r0 + threadIdx.x; /* dst row c, column r */
        if (c < cols && r < rows) dst[c * rows + r] = tile[threadIdx.x][i];
    }
}

extern "C" mold_status mold_cuda_op_transpose(mold_backend *be, float *dst, const float *src,
                                              int64_t rows, int64_t cols) {
    cuda_backend *cb = cuda_of(be);
    if (rows < 0 || cols < 0)
        return MOLD_ERR(MOLD_E_INVALID, "transpose: expected rows, cols >= 0, got %lld x %lld",
                        (long long)rows, (long long)cols);
    if (rows == 0 || cols == 0) return MOLD_OK;
    if (!dst || !src) return MOLD_ERR(MOLD_E_INVALID, "transpose: NULL src or dst");
    const char *d = (const char *)dst, *s = (const char *)src;
    const size_t bytes = (size_t)(rows * cols) * 4;
    if (d < s + bytes && s < d + bytes)
        return MOLD_ERR(MOLD_E_INVALID, "transpose: dst overlaps src (in place is not supported)");
    const int64_t tr = (rows + TR_T - 1) / TR_T, tc = (cols + TR_T - 1) / TR_T;
    const int64_t gy = tr < 65535 ? tr : 65535, gz = (tr + gy - 1) / gy;
    if (tc > INT32_MAX || gz > 65535)
        return MOLD_ERR(MOLD_E_RANGE, "transpose: %lld x %lld is too large", (long long)rows,
                        (long long)cols);
    CUDA_OP(cb, "transpose", rows, cols);
    transpose_kernel<<<dim3((unsigned)tc, (unsigned)gy, (unsigned)gz), dim3(TR_T, TR_R), 0,
                       cb->stream>>>(dst, src, rows, cols);
    MOLD_CUDA_LAUNCH_CHECK(cb);
    return mold_cuda_op_done(cb);
}
