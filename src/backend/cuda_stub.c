/*
 * cuda_stub.c — mold_backend_cuda_create() for builds without CUDA.
 *
 * CMake compiles this file only when the CUDA backend is off (MOLD_CUDA=OFF
 * or no nvcc); with CUDA on, src/backend/cuda/ provides the real constructor.
 * Callers (the planner, `mold info`) see MOLD_E_UNSUPPORTED and fall back.
 */
#include "ops.h"

mold_status mold_backend_cuda_create(int device, mold_backend **out) {
    if (out)
        *out = NULL;
    return MOLD_ERR(MOLD_E_UNSUPPORTED, "cuda backend (device %d): built without CUDA", device);
}
