/*
 * test_safetensors_stream.c — the streaming safetensors writer.
 *
 * A file streamed in odd-sized pieces must read back through the validating
 * reader (safetensors.c) with every value exact and the same bytes as the
 * all-in-memory writer produces; writing past the declared data, committing
 * a short data area, bad dtypes and duplicate names must fail with a message
 * and never leave a file under the final name.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "formats/safetensors.h"
#include "formats/safetensors_stream.h"

static const char *tmp_path(const char *name) {
    const char *p = tu_build_path(name);
    remove(p);
    return p;
}

/* Three tensors (f32 [3, 5], bf16 [7], u8 [2, 2, 3]) with known bytes. */
typedef struct sample {
    float a[15];
    uint16_t b[7];
    uint8_t c[12];
    mold_tensor t[3];
} sample;

static void make_sample(sample *s) {
    for (int i = 0; i < 15; i++) s->a[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 7; i++) s->b[i] = mold_f32_to_bf16((float)i * 1.5f);
    for (int i = 0; i < 12; i++) s->c[i] = (uint8_t)(3 * i + 1);
    mold_tensor t0 = {"weight.a", MOLD_F32, 2, {3, 5}, s->a, sizeof s->a};
    mold_tensor t1 = {"bias.b", MOLD_BF16, 1, {7}, s->b, sizeof s->b};
    mold_tensor t2 = {"mask.c", MOLD_U8, 3, {2, 2, 3}, s->c, sizeof s->c};
    s->t[0] = t0;
    s->t[1] = t1;
    s->t[2] = t2;
}

static void test_roundtrip(void **state) {
    (void)state;
    sample s;
    make_sample(&s);
    const char *meta[] = {"format", "pt", NULL};
    const char *path = tmp_path("stream_roundtrip.safetensors");
    mold_safetensors_stream *w;
    tu_ok(mold_safetensors_stream_open(path, s.t, 3, meta, &w), "open");
    assert_false(mold_path_exists(path)); /* nothing under the final name yet */
    /* the data area in pieces that straddle tensor boundaries */
    uint8_t all[sizeof s.a + sizeof s.b + sizeof s.c];
    memcpy(all, s.a, sizeof s.a);
    memcpy(all + sizeof s.a, s.b, sizeof s.b);
    memcpy(all + sizeof s.a + sizeof s.b, s.c, sizeof s.c);
    size_t cuts[] = {0, 7, 61, 62, 70, sizeof all};
    for (int i = 0; i + 1 < 6; i++)
        tu_ok(mold_safetensors_stream_write(w, all + cuts[i], cuts[i + 1] - cuts[i]), "write");
    assert_int_equal(mold_safetensors_stream_remaining(w), 0);
    tu_ok(mold_safetensors_stream_commit(w), "commit");

    mold_safetensors *st;
    tu_ok(mold_safetensors_open(path, &st), "read back");
    assert_int_equal(mold_safetensors_count(st), 3);
    assert_string_equal(mold_safetensors_metadata(st, "format"), "pt");
    for (int i = 0; i < 3; i++) {
        const mold_tensor *t;
        tu_ok(mold_safetensors_get_shaped(st, s.t[i].name, s.t[i].n_dims, s.t[i].shape, &t),
              s.t[i].name);
        assert_int_equal(t->dtype, s.t[i].dtype);
        assert_int_equal(t->n_bytes, s.t[i].n_bytes);
        assert_memory_equal(t->data, s.t[i].data, s.t[i].n_bytes);
    }
    printf("  3 tensors streamed in 5 pieces read back exactly\n");
    mold_safetensors_close(st);

    /* byte-identical to the in-memory writer's file */
    const char *ref = tmp_path("stream_reference.safetensors");
    tu_ok(mold_safetensors_write(ref, s.t, 3, meta), "reference writer");
    char *x, *y;
    size_t nx, ny;
    tu_ok(mold_file_read_all(path, &x, &nx), "read stream file");
    tu_ok(mold_file_read_all(ref, &y, &ny), "read reference file");
    printf("  streamed file %zu bytes, reference %zu bytes\n", nx, ny);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
}

static void test_errors(void **state) {
    (void)state;
    sample s;
    make_sample(&s);
    mold_safetensors_stream *w;
    const char *path = tmp_path("stream_bad.safetensors");

    /* more bytes than declared */
    tu_ok(mold_safetensors_stream_open(path, s.t, 1, NULL, &w), "open");
    tu_expect_error(mold_safetensors_stream_write(w, s.a, sizeof s.a + 1), MOLD_E_RANGE,
                    "expected 60 more bytes, got 61", "overlong write");
    /* a short data area is refused at commit and leaves no file */
    tu_ok(mold_safetensors_stream_write(w, s.a, 8), "short write");
    tu_expect_error(mold_safetensors_stream_commit(w), MOLD_E_INVALID,
                    "expected 60 bytes, got 8", "short commit");
    assert_false(mold_path_exists(path));

    /* abort removes the temp file too */
    tu_ok(mold_safetensors_stream_open(path, s.t, 3, NULL, &w), "open");
    mold_safetensors_stream_abort(w);
    assert_false(mold_path_exists(path));

    /* block dtypes have no safetensors name; duplicates; empty names */
    mold_tensor q = {"q", MOLD_Q4_0, 2, {2, 32}, NULL, 0};
    w = (mold_safetensors_stream *)1;
    tu_expect_error(mold_safetensors_stream_open(path, &q, 1, NULL, &w), MOLD_E_UNSUPPORTED,
                    "tensor 'q': dtype q4_0 has no safetensors name", "q4_0");
    assert_null(w);
    mold_tensor dup[2] = {s.t[0], s.t[0]};
    tu_expect_error(mold_safetensors_stream_open(path, dup, 2, NULL, &w), MOLD_E_INVALID,
                    "duplicate tensor name 'weight.a'", "duplicate");
    mold_tensor anon = s.t[1];
    anon.name = "";
    tu_expect_error(mold_safetensors_stream_open(path, &anon, 1, NULL, &w), MOLD_E_INVALID,
                    "expected a name", "empty name");
    mold_tensor neg = s.t[0];
    neg.shape[1] = -5;
    tu_expect_error(mold_safetensors_stream_open(path, &neg, 1, NULL, &w), MOLD_E_RANGE,
                    "shape[1]: expected >= 0, got -5", "negative dim");
    assert_false(mold_path_exists(path));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
