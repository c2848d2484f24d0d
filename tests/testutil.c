/*
 * testutil.c — see testutil.h.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "base/fs.h"

static char tu_bufs[8][4096];
static int tu_next;

static char *tu_slot(void) {
    char *b = tu_bufs[tu_next];
    tu_next = (tu_next + 1) % 8;
    return b;
}

/* The compile-time paths can be overridden at run time (MOLD_TEST_FIXTURES,
 * MOLD_TEST_BUILD_DIR) for test binaries carried to another machine. */
const char *tu_fixture(const char *rel) {
    char *b = tu_slot();
    const char *dir = getenv("MOLD_TEST_FIXTURES");
    snprintf(b, 4096, "%s/%s", dir ? dir : MOLD_TEST_FIXTURES, rel);
    return b;
}

const char *tu_build_path(const char *rel) {
    char *b = tu_slot();
    const char *dir = getenv("MOLD_TEST_BUILD_DIR");
    snprintf(b, 4096, "%s/%s", dir ? dir : MOLD_TEST_BUILD_DIR, rel);
    return b;
}

double tu_rel_error(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tu_max_abs_error(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

double tu_check_close(const char *what, const float *got, const float *ref, size_t n,
                      double rel_tol) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(got[i])) bad++;
    double rel = tu_rel_error(got, ref, n);
    double mx = tu_max_abs_error(got, ref, n);
    printf("  %s: rel %.3e (tol %.0e), max abs %.3e over %zu values%s\n", what, rel, rel_tol,
           mx, n, bad ? " [NON-FINITE VALUES]" : "");
    fflush(stdout);
    if (bad || !(rel <= rel_tol))
        fail_msg("%s: relative error %.3e exceeds %.0e (%zu non-finite)", what, rel, rel_tol, bad);
    return rel;
}

void tu_ok(mold_status st, const char *what) {
    if (st != MOLD_OK)
        fail_msg("%s failed: %s: %s", what, mold_status_str(st), mold_error_message());
}

void tu_expect_error(mold_status st, mold_status expect, const char *needle, const char *what) {
    printf("  %s -> %s: %s\n", what, mold_status_str(st), mold_error_message());
    fflush(stdout);
    if (st != expect)
        fail_msg("%s: expected status %s, got %s (%s)", what, mold_status_str(expect),
                 mold_status_str(st), mold_error_message());
    if (needle && !strstr(mold_error_message(), needle))
        fail_msg("%s: message '%s' does not mention '%s'", what, mold_error_message(), needle);
}

float *tu_to_f32(const mold_tensor *t) {
    int64_t n = mold_tensor_nelems(t);
    float *out = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(out);
    tu_ok(mold_tensor_to_f32(t, out), "tensor to f32");
    return out;
}

const char *tu_write_temp(const char *name, const void *data, size_t len) {
    const char *path = tu_build_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

int tu_backend_is_cuda(void) {
    const char *b = getenv("MOLD_TEST_BACKEND");
    return b && !strcmp(b, "cuda");
}

void tu_backend_create(int n_threads, struct mold_backend **be) {
    if (tu_backend_is_cuda())
        tu_ok(mold_backend_cuda_create(0, be), "cuda backend");
    else
        tu_ok(mold_backend_cpu_create(n_threads, be), "cpu backend");
}

double tu_tol(double cpu_tol, double bf16_tol) {
    if (!tu_backend_is_cuda()) return cpu_tol;
    return bf16_tol > cpu_tol ? bf16_tol : cpu_tol;
}
