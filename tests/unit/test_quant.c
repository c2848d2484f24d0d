/*
 * test_quant.c — ggml block formats: dequantization against an independent
 * dequantizer, reference quantization against ggml's bytes, error bounds.
 *
 * Fixture: tests/fixtures/gguf/blocks.gguf + blocks.golden.safetensors (see
 * its manifest): random.* are random blocks of every format, roundtrip.* are
 * ggml-quantized normal tensors with their f32 sources, plain.* are
 * F32/F16/BF16. Float formats must match bit for bit, block formats within
 * 1e-6 absolute; our quantizer must reproduce the roundtrip bytes exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "testutil.h"

/* ggml-common.h block sizes: {type, values per block, bytes per block} */
static void test_dtype_table(void **state) {
    (void)state;
    static const struct { mold_dtype t; uint32_t elems, bytes; } want[] = {
        {MOLD_Q4_0, 32, 18}, {MOLD_Q4_1, 32, 20}, {MOLD_Q5_0, 32, 22}, {MOLD_Q5_1, 32, 24},
        {MOLD_Q8_0, 32, 34}, {MOLD_Q2_K, 256, 84}, {MOLD_Q3_K, 256, 110}, {MOLD_Q4_K, 256, 144},
        {MOLD_Q5_K, 256, 176}, {MOLD_Q6_K, 256, 210},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const mold_dtype_info *info = mold_dtype_get(want[i].t);
        assert_non_null(info);
        assert_int_equal(info->block_elems, want[i].elems);
        assert_int_equal(info->block_bytes, want[i].bytes);
        assert_true(info->is_quant);
    }
}

typedef struct fixture {
    mold_gguf *g;
    mold_safetensors *st;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    tu_ok(mold_gguf_open(tu_fixture("gguf/blocks.gguf"), &f->g), "open blocks.gguf");
    tu_ok(mold_safetensors_open(tu_fixture("gguf/blocks.golden.safetensors"), &f->st),
          "open golden");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    mold_gguf_close(f->g);
    mold_safetensors_close(f->st);
    free(f);
    return 0;
}

/* Every tensor of blocks.gguf dequantizes to the golden values. */
static void test_dequantize_golden(void **state) {
    fixture *f = *state;
    size_t n_checked = 0;
    for (size_t i = 0; i < mold_gguf_tensor_count(f->g); i++) {
        const mold_tensor *t = mold_gguf_tensor_at(f->g, i);
        const mold_tensor *ref;
        tu_ok(mold_safetensors_get(f->st, t->name, &ref), t->name);
        assert_true(mold_tensor_has_shape(ref, t->n_dims, t->shape));
        int64_t n = mold_tensor_nelems(t);
        float *got = malloc((size_t)n * sizeof(float));
        float *want = tu_to_f32(ref);
        tu_ok(mold_dequantize(t->dtype, t->data, got, n), t->name);
        double max_abs = tu_max_abs_error(got, want, (size_t)n);
        bool is_float = !mold_dtype_get(t->dtype)->is_quant;
        printf("  %-16s %-5s max abs err %.3e over %lld values%s\n", t->name,
               mold_dtype_name(t->dtype), max_abs, (long long)n, is_float ? " (bitwise)" : "");
        if (is_float) assert_memory_equal(got, want, (size_t)n * sizeof(float));
        else assert_true(max_abs <= 1e-6);
        free(got);
        free(want);
        n_checked++;
    }
    assert_int_equal(n_checked, 21);
}

/* Our quantizers reproduce ggml's quantize_row_*_ref byte for byte
 * (fixtures/quant/ggml_ref.gguf, made by ggml itself; see its README). */
static void test_quantize_matches_ggml(void **state) {
    (void)state;
    mold_gguf *g;
    tu_ok(mold_gguf_open(tu_fixture("quant/ggml_ref.gguf"), &g), "open ggml_ref.gguf");
    const mold_tensor *src = mold_gguf_find(g, "source");
    assert_non_null(src);
    const float *x = src->data; /* f32, 32-byte aligned in the file */
    size_t n_types = 0;
    for (size_t i = 0; i < mold_gguf_tensor_count(g); i++) {
        const mold_tensor *q = mold_gguf_tensor_at(g, i);
        if (q == src) continue;
        uint8_t *mine = malloc(q->n_bytes);
        tu_ok(mold_quantize(q->dtype, x, mine, mold_tensor_nelems(q)), q->name);
        size_t diff = 0;
        for (uint64_t k = 0; k < q->n_bytes; k++) diff += mine[k] != ((const uint8_t *)q->data)[k];
        printf("  %-5s %5llu bytes, %zu differ from ggml's\n", q->name,
               (unsigned long long)q->n_bytes, diff);
        assert_int_equal(diff, 0);
        free(mine);
        n_types++;
    }
    assert_int_equal(n_types, 10);
    mold_gguf_close(g);
}

/* roundtrip.* in blocks.gguf were quantized by the fixture's own (simpler)
 * quantizer: the ggml reference algorithms must reconstruct the sources at
 * least about as well (their searches minimise a weighted error, so allow
 * 10% slack per type; measured: see the printout). */
static void test_roundtrip_vs_fixture(void **state) {
    fixture *f = *state;
    static const char *const names[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
                                        "q4_k", "q5_k", "q6_k"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char name[64], src_name[64];
        snprintf(name, sizeof name, "roundtrip.%s", names[k]);
        snprintf(src_name, sizeof src_name, "roundtrip.%s.source", names[k]);
        const mold_tensor *q = mold_gguf_find(f->g, name), *src;
        assert_non_null(q);
        tu_ok(mold_safetensors_get(f->st, src_name, &src), src_name);
        int64_t n = mold_tensor_nelems(q);
        float *x = tu_to_f32(src), *theirs = malloc((size_t)n * 4), *ours = malloc((size_t)n * 4);
        uint8_t *mine = malloc(q->n_bytes);
        tu_ok(mold_dequantize(q->dtype, q->data, theirs, n), name);
        tu_ok(mold_quantize(q->dtype, x, mine, n), name);
        tu_ok(mold_dequantize(q->dtype, mine, ours, n), name);
        double e_theirs = tu_rel_error(theirs, x, (size_t)n), e_ours = tu_rel_error(ours, x, (size_t)n);
        printf("  %-16s fixture's quantizer rel err %.4e, ggml reference %.4e\n", name, e_theirs,
               e_ours);
        assert_true(e_ours <= 1.10 * e_theirs);
        free(x);
        free(theirs);
        free(ours);
        free(mine);
    }
}

/* Deterministic N(0, 1) values (xorshift64 + Box-Muller). */
static void normal_fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        double u = (double)(seed >> 11) / 9007199254740992.0 + 1e-12;
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        double v = (double)(seed >> 11) / 9007199254740992.0;
        x[i] = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
    }
}

/* Quantize -> dequantize of 64K N(0,1) values: relative RMS error per type
 * stays under the bound the reference algorithm achieves (measured values
 * below and in docs/perf/quant.md; bounds have ~10% headroom). */
static void test_error_bounds(void **state) {
    (void)state;
    static const struct { mold_dtype t; double bound; } cases[] = {
        /* measured: f16 2.07e-4, bf16 1.67e-3, q8_0 5.36e-3, q6_K 1.77e-2, q5_1 3.78e-2,
         * q5_0 4.27e-2, q5_K 3.61e-2, q4_1 7.81e-2, q4_0 8.60e-2, q4_K 7.12e-2,
         * q3_K 1.51e-1, q2_K 2.95e-1 */
        {MOLD_F16, 2.3e-4},  {MOLD_BF16, 1.85e-3}, {MOLD_Q8_0, 5.9e-3}, {MOLD_Q6_K, 1.95e-2},
        {MOLD_Q5_1, 4.2e-2}, {MOLD_Q5_0, 4.7e-2},  {MOLD_Q5_K, 4.0e-2}, {MOLD_Q4_1, 8.6e-2},
        {MOLD_Q4_0, 9.5e-2}, {MOLD_Q4_K, 7.9e-2},  {MOLD_Q3_K, 1.66e-1}, {MOLD_Q2_K, 3.25e-1},
    };

    const int64_t n = 65536;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc(n * 4);
    normal_fill(x, (size_t)n, 12345);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tu_ok(mold_quantize(cases[k].t, x, q, n), "quantize");
        tu_ok(mold_dequantize(cases[k].t, q, y, n), "dequantize");
        char what[64];
        snprintf(what, sizeof what, "%s round trip", mold_dtype_name(cases[k].t));
        tu_check_close(what, y, x, (size_t)n, cases[k].bound);
    }
    free(x);
    free(y);
    free(q);
}

/* Zero and constant blocks, and bad arguments. */
static void test_edge_cases(void **state) {
    (void)state;
    float x[512] = {0}, y[512];
    uint8_t q[512 * 4];
    static const mold_dtype all[] = {MOLD_Q4_0, MOLD_Q4_1, MOLD_Q5_0, MOLD_Q5_1, MOLD_Q8_0,
                                     MOLD_Q2_K, MOLD_Q3_K, MOLD_Q4_K, MOLD_Q5_K, MOLD_Q6_K};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        memset(x, 0, sizeof x);
        tu_ok(mold_quantize(all[k], x, q, 512), "zeros");
        tu_ok(mold_dequantize(all[k], q, y, 512), "zeros");
        for (int i = 0; i < 512; i++) assert_true(y[i] == 0.0f); /* exact (possibly -0) */
        for (int i = 0; i < 512; i++) x[i] = 0.75f;
        tu_ok(mold_quantize(all[k], x, q, 512), "constant");
        tu_ok(mold_dequantize(all[k], q, y, 512), "constant");
        char what[64];
        snprintf(what, sizeof what, "%s constant 0.75", mold_dtype_name(all[k]));
        tu_check_close(what, y, x, 512, 5e-3);
    }
    x[3] = NAN;
    tu_expect_error(mold_quantize(MOLD_Q8_0, x, q, 32), MOLD_E_NUMERIC, "value 3", "NaN input");
    x[3] = INFINITY;
    tu_expect_error(mold_quantize(MOLD_Q4_K, x, q, 256), MOLD_E_NUMERIC, "finite", "inf input");
    tu_expect_error(mold_quantize(MOLD_Q4_K, x, q, 100), MOLD_E_FORMAT, "256-value blocks",
                    "partial block");
    tu_expect_error(mold_dequantize(MOLD_Q4_0, q, y, 33), MOLD_E_FORMAT, "32-value blocks",
                    "partial block");
    tu_expect_error(mold_dequantize(MOLD_I32, q, y, 4), MOLD_E_UNSUPPORTED, "i32", "int dtype");
    tu_expect_error(mold_quantize(MOLD_DTYPE_INVALID, x, q, 4), MOLD_E_UNSUPPORTED, NULL,
                    "invalid dtype");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test_setup_teardown(test_dequantize_golden, setup, teardown),
        cmocka_unit_test(test_quantize_matches_ggml),
        cmocka_unit_test_setup_teardown(test_roundtrip_vs_fixture, setup, teardown),
        cmocka_unit_test(test_error_bounds),
        cmocka_unit_test(test_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
