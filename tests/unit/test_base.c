/*
 * test_base.c — dtype conversions, Philox noise, thread pool, JSON getters,
 * atomic writes, error messages and the log sink.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"
#include "base/fs.h"
#include "base/json.h"
#include "base/log.h"
#include "base/philox.h"
#include "base/threadpool.h"
#include "testutil.h"

/* bf16: widening is exact; narrowing rounds to nearest even (as torch). */
static void test_bf16(void **state) {
    (void)state;
    assert_int_equal(mold_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even (1.0). */
    assert_int_equal(mold_f32_to_bf16(1.00390625f), 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1.0078125 (odd) and 1.015625 (even). */
    assert_int_equal(mold_f32_to_bf16(1.01171875f), 0x3f82);
    assert_int_equal(mold_f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(mold_f32_to_bf16(INFINITY), 0x7f80);
    uint16_t nan = mold_f32_to_bf16(NAN);
    assert_true((nan & 0x7f80) == 0x7f80 && (nan & 0x7f));
    /* round trip of every bf16 finite value is exact */
    size_t bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mold_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (mold_f32_to_bf16(f) != h) bad++;
    }
    printf("  bf16 round-trip mismatches: %zu of 65536\n", bad);
    assert_int_equal(bad, 0);
}

static void test_f16(void **state) {
    (void)state;
    assert_true(mold_f16_to_f32(0x3c00) == 1.0f);
    assert_true(mold_f16_to_f32(0xc000) == -2.0f);
    assert_true(mold_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(mold_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(isinf(mold_f16_to_f32(0x7c00)));
    assert_int_equal(mold_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(mold_f32_to_f16(65520.0f), 0x7c00); /* rounds up to inf */
    assert_int_equal(mold_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even -> 0 */
    assert_int_equal(mold_f32_to_f16(ldexpf(3.0f, -26)), 0x0001);
    /* 1 + 2^-11 is halfway between 1.0 and 1 + 2^-10: ties to even -> 1.0 */
    assert_int_equal(mold_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);
    size_t bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mold_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (mold_f32_to_f16(f) != h) bad++;
    }
    printf("  f16 round-trip mismatches: %zu of 65536\n", bad);
    assert_int_equal(bad, 0);
}

static void test_dtype_table(void **state) {
    (void)state;
    uint64_t b;
    tu_ok(mold_dtype_row_bytes(MOLD_Q4_K, 512, &b), "q4_K row");
    assert_int_equal(b, 288);
    tu_expect_error(mold_dtype_row_bytes(MOLD_Q4_0, 33, &b), MOLD_E_FORMAT, "blocks", "q4_0 33");
    tu_expect_error(mold_dtype_row_bytes(MOLD_F32, UINT64_MAX / 2, &b), MOLD_E_RANGE, "overflow",
                    "f32 overflow");
    assert_int_equal(mold_dtype_from_name("BF16"), MOLD_BF16);
    assert_int_equal(mold_dtype_from_name("q6_k"), MOLD_Q6_K);
    assert_int_equal(mold_dtype_from_name("F8_E4M3"), MOLD_DTYPE_INVALID);
}

/* Known-answer vectors of Philox4x32-10 from Random123's kat_vectors. */
static void test_philox_kat(void **state) {
    (void)state;
    uint32_t out[4];
    const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
    mold_philox4x32(c0, k0, out);
    printf("  philox(0,0) = %08x %08x %08x %08x\n", out[0], out[1], out[2], out[3]);
    assert_int_equal(out[0], 0x6627e8d5);
    assert_int_equal(out[1], 0xe169c58d);
    assert_int_equal(out[2], 0xbc57ac4c);
    assert_int_equal(out[3], 0x9b00dbd8);
    const uint32_t c1[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff};
    const uint32_t k1[2] = {0xffffffff, 0xffffffff};
    mold_philox4x32(c1, k1, out);
    printf("  philox(~0,~0) = %08x %08x %08x %08x\n", out[0], out[1], out[2], out[3]);
    assert_int_equal(out[0], 0x408f276d);
    assert_int_equal(out[1], 0x41c83b0e);
    assert_int_equal(out[2], 0xa20bc7c6);
    assert_int_equal(out[3], 0x6d5451fd);
}

/* Gaussian moments over 1M samples: mean within 5 sigma of 0, var near 1;
 * prefixes are stable (element i depends only on seed and i). */
static void test_philox_normal(void **state) {
    (void)state;
    size_t n = 1 << 20;
    float *a = malloc(n * sizeof(float)), *b = malloc(1001 * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    mold_philox_normal(42, a, n);
    mold_philox_normal(42, b, 1001);
    assert_memory_equal(a, b, 1001 * sizeof(float));
    double s = 0, s2 = 0, s4 = 0;
    for (size_t i = 0; i < n; i++) {
        s += a[i];
        s2 += (double)a[i] * a[i];
        s4 += (double)a[i] * a[i] * a[i] * a[i];
    }
    double mean = s / n, var = s2 / n - mean * mean, kurt = s4 / n;
    printf("  normal: mean %.5f var %.5f E[x^4] %.4f (expect 0, 1, 3)\n", mean, var, kurt);
    assert_true(fabs(mean) < 5.0 / sqrt((double)n));
    assert_true(fabs(var - 1.0) < 0.01);
    assert_true(fabs(kurt - 3.0) < 0.05);
    mold_philox_normal(43, b, 1001);
    assert_true(memcmp(a, b, 1001 * sizeof(float)) != 0);
    free(a);
    free(b);
}

typedef struct { int *hits; } pool_ud;
static void pool_fn(void *ud, int i, int n) {
    (void)n;
    ((pool_ud *)ud)->hits[i]++;
}

static void test_threadpool(void **state) {
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        mold_pool *p;
        tu_ok(mold_pool_create(threads, &p), "pool");
        assert_int_equal(mold_pool_size(p), threads);
        int hits[1000] = {0};
        pool_ud ud = {hits};
        for (int rep = 0; rep < 50; rep++) mold_pool_run(p, 1000, pool_fn, &ud);
        for (int i = 0; i < 1000; i++) assert_int_equal(hits[i], 50);
        mold_pool_free(p);
    }
    mold_pool_free(NULL);
}

static void test_json_errors(void **state) {
    (void)state;
    json_t *root;
    const char *doc = "{\"a\": 3, \"b\": \"x\", \"c\": [1, 2, 3], \"d\": 2.5, \"e\": null}";
    tu_ok(mold_json_load_buf(doc, strlen(doc), "doc.json", &root), "load");
    int64_t v = 0;
    tu_ok(mold_json_get_int(root, "a", "doc.json", true, &v), "get a");
    assert_int_equal(v, 3);
    tu_expect_error(mold_json_get_int(root, "b", "doc.json", true, &v), MOLD_E_FORMAT,
                    "doc.json: field 'b': expected integer, got string", "b as int");
    tu_expect_error(mold_json_get_int(root, "d", "doc.json", true, &v), MOLD_E_FORMAT,
                    "expected integer, got number", "2.5 as int");
    tu_expect_error(mold_json_get_int(root, "zz", "doc.json", true, &v), MOLD_E_NOTFOUND,
                    "missing field 'zz'", "missing");
    v = 7;
    tu_ok(mold_json_get_int(root, "e", "doc.json", false, &v), "optional null");
    assert_int_equal(v, 7);
    int64_t arr[2];
    size_t n;
    tu_expect_error(mold_json_get_int_array(root, "c", "doc.json", true, arr, 2, &n), MOLD_E_RANGE,
                    "at most 2", "array cap");
    json_decref(root);
    tu_expect_error(mold_json_load_buf("{\"a\": }", 7, "bad.json", &root), MOLD_E_FORMAT,
                    "bad.json: invalid JSON at line 1", "bad json");
    tu_expect_error(mold_json_load_buf("{\"a\":1,\"a\":2}", 13, "dup.json", &root), MOLD_E_FORMAT,
                    "dup.json", "duplicate keys");
}

static void test_atomic_write(void **state) {
    (void)state;
    const char *path = tu_build_path("atomic_test.bin");
    tu_ok(mold_file_write_atomic(path, "hello", 5), "write");
    char *buf;
    size_t len;
    tu_ok(mold_file_read_all(path, &buf, &len), "read");
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    free(buf);
    /* an aborted writer leaves the old content and no temp file */
    mold_atomic_file *a;
    tu_ok(mold_atomic_open(path, &a), "open");
    tu_ok(mold_atomic_write(a, "partial", 7), "write partial");
    mold_atomic_abort(a);
    tu_ok(mold_file_read_all(path, &buf, &len), "read again");
    assert_int_equal(len, 5);
    free(buf);
    tu_expect_error(mold_file_write_atomic("/nonexistent-dir/x.png", "x", 1), MOLD_E_IO,
                    "/nonexistent-dir/x.png", "unwritable");
    mold_mmap m;
    tu_expect_error(mold_mmap_open("/nonexistent-file", &m), MOLD_E_NOTFOUND, "/nonexistent-file",
                    "missing mmap");
    tu_ok(mold_mmap_open(path, &m), "mmap");
    assert_int_equal(m.size, 5);
    assert_memory_equal(m.data, "hello", 5);
    mold_mmap_close(&m);
}

typedef struct { char last[256]; int n; } log_capture;
static void capture(mold_log_level level, const char *src, const char *msg, void *ud) {
    (void)level;
    (void)src;
    log_capture *c = ud;
    snprintf(c->last, sizeof c->last, "%s", msg);
    c->n++;
}

static void test_log(void **state) {
    (void)state;
    log_capture c = {{0}, 0};
    mold_log_set(capture, &c);
    mold_log_set_level(MOLD_LOG_WARN);
    MOLD_LOGI("hidden %d", 1);
    MOLD_LOGW("shown %d", 2);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last, "shown 2");
    mold_log_set(NULL, NULL);
    mold_log_set_level(MOLD_LOG_INFO);
}

static void test_error_prefix(void **state) {
    (void)state;
    mold_status st = MOLD_ERR(MOLD_E_FORMAT, "field 'x': expected 1, got %d", 2);
    mold_error_prefix("config.json");
    assert_int_equal(st, MOLD_E_FORMAT);
    assert_string_equal(mold_error_message(), "config.json: field 'x': expected 1, got 2");
    assert_non_null(strstr(mold_error_where(), "test_base.c"));
    assert_string_equal(mold_status_str(MOLD_E_NOTFOUND), "not found");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16),         cmocka_unit_test(test_f16),
        cmocka_unit_test(test_dtype_table),  cmocka_unit_test(test_philox_kat),
        cmocka_unit_test(test_philox_normal), cmocka_unit_test(test_threadpool),
        cmocka_unit_test(test_json_errors),  cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_log),          cmocka_unit_test(test_error_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
