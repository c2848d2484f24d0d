/*
 * profile.cuh — per-op device time of the CUDA backend (MOLD_CUDA_PROFILE=1).
 *
 * Why: "which op holds a stage back, and by how much" must be measured, not
 * guessed. With the variable set, every op's device time is taken between two
 * CUDA events (start at CUDA_OP, end at mold_cuda_op_done, which then waits
 * for the end event) and summed per op name and shape; the table is printed
 * to stderr when the backend is destroyed, largest total first. The waits
 * slow the run down but not the event times: profile to find shares, time
 * end to end without it.
 */
#ifndef MOLD_BACKEND_CUDA_PROFILE_CUH
#define MOLD_BACKEND_CUDA_PROFILE_CUH

#include "cuda_common.cuh"

extern "C" {
/* Creates the profiler state when MOLD_CUDA_PROFILE is set and not "0". */
mold_status mold_cuda_profile_init(cuda_backend *cb);
/* Start / end of the op named by cb->op (no-ops unless profiling). */
void mold_cuda_profile_begin(cuda_backend *cb);
void mold_cuda_profile_end(cuda_backend *cb);
/* Prints the table (if any) and frees the state. */
void mold_cuda_profile_finish(cuda_backend *cb);
}

#endif
