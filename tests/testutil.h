/*
 * testutil.h — shared helpers for mold's cmocka tests.
 *
 * Fixture paths come from MOLD_TEST_FIXTURES (tests/fixtures in the source
 * tree, set by cmake/tests.cmake). Comparisons print the measured error so a
 * passing run still shows how close it was:
 *   "  <what>: rel 3.1e-07 (tol 1e-04), max abs 2.4e-06 over 3072 values"
 */
#ifndef MOLD_TESTUTIL_H
#define MOLD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/status.h"
#include "base/tensor.h"

/* "<fixtures>/<rel>" in a static rotating buffer (8 slots). */
const char *tu_fixture(const char *rel);
/* "<build dir>/<rel>" likewise. */
const char *tu_build_path(const char *rel);

/* ||a-b|| / ||b|| over n values (b == 0 everywhere: ||a-b||). */
double tu_rel_error(const float *a, const float *b, size_t n);
double tu_max_abs_error(const float *a, const float *b, size_t n);
/* Prints rel and max abs error, fails the test when rel > tol or any value is
 * NaN/Inf (in a). Returns the relative error. */
double tu_check_close(const char *what, const float *got, const float *ref, size_t n,
                      double rel_tol);
/* Fails unless the status is MOLD_OK, printing the error message. */
void tu_ok(mold_status st, const char *what);
/* Fails unless st == expect and the message contains `needle` (may be NULL);
 * prints the message. */
void tu_expect_error(mold_status st, mold_status expect, const char *needle, const char *what);

/* ---- backend under test ----
 * Golden tests run on the CPU backend by default; MOLD_TEST_BACKEND=cuda runs
 * them on CUDA device 0 (scripts/gpu-check.sh), where matmul, attention and
 * conv inputs are rounded to bf16 (ops.h): tolerances then follow
 * tu_tol(). */
struct mold_backend;
int tu_backend_is_cuda(void);
/* Creates the backend under test (n_threads for the CPU; 0 = all cores). */
void tu_backend_create(int n_threads, struct mold_backend **be);
/* cpu_tol on the CPU; max(cpu_tol, bf16_tol) on CUDA. */
double tu_tol(double cpu_tol, double bf16_tol);

/* Reads a tensor of any plain dtype into a malloc'd f32 array (test owns it). */
float *tu_to_f32(const mold_tensor *t);

/* Writes bytes to a fresh temp file under the build dir; returns its path
 * (static rotating buffer). */
const char *tu_write_temp(const char *name, const void *data, size_t len);

#endif
