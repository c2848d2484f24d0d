/*
 * test_safetensors.c — the safetensors reader, writer and tensor sources.
 *
 * Valid files are written by mold_safetensors_write and read back (values
 * compared exactly); the tiny model's sharded checkpoints are opened through
 * their index and directory; every malformed case of issue 2 (truncated file,
 * header length past the end, bad JSON, unknown dtype, shape/bytes mismatch,
 * overlapping or out-of-range offsets, overflowing dims, missing shard, ...)
 * must give the expected status and a message naming the problem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "base/json.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "testutil.h"

/* ---- helpers ---- */

/* A file image: u64 length, `header`, then `data_len` bytes of pattern. */
static uint8_t *image(const char *header, size_t data_len, size_t *size) {
    size_t n = strlen(header);
    uint8_t *b = malloc(8 + n + data_len + 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++)
        b[8 + n + i] = (uint8_t)(i * 7 + 1);
    *size = 8 + n + data_len;
    return b;
}

/* Parses an image that must fail with `expect` and a message holding `needle`. */
static void expect_bad(const char *header, size_t data_len, mold_status expect,
                       const char *needle) {
    size_t size;
    uint8_t *b = image(header, data_len, &size);
    mold_safetensors *st = (mold_safetensors *)1;
    mold_status s = mold_safetensors_open_buf(b, size, "bad.safetensors", &st);
    tu_expect_error(s, expect, needle, header);
    assert_null(st);
    free(b);
}

static const char *make_dir(const char *rel) {
    const char *p = tu_build_path(rel);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", p, p);
    assert_int_equal(system(cmd), 0);
    return p;
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = mold_path_join(dir, name);
    tu_ok(mold_file_write_atomic(p, text, strlen(text)), "write text");
    free(p);
}

/* Two small tensors for shard tests, written to dir/name. */
static void write_shard(const char *dir, const char *name, const char *t0, const char *t1) {
    static const float v[4] = {1, 2, 3, 4};
    mold_tensor ts[2] = {
        {.name = t0, .dtype = MOLD_F32, .n_dims = 1, .shape = {2}, .data = v, .n_bytes = 8},
        {.name = t1, .dtype = MOLD_F32, .n_dims = 1, .shape = {2}, .data = v + 2, .n_bytes = 8},
    };
    char *p = mold_path_join(dir, name);
    tu_ok(mold_safetensors_write(p, ts, t1 ? 2 : 1, NULL), "write shard");
    free(p);
}

/* ---- valid files ---- */

static void test_roundtrip(void **state) {
    (void)state;
    float f[6] = {1.5f, -2.25f, 3.0f, 1e-7f, -0.0f, 65504.0f};
    uint16_t bf[4] = {0x3f80, 0xbf80, 0x4049, 0x0000};
    int64_t i64 = -1234567890123ll;
    mold_tensor in[4] = {
        {.name = "a.weight", .dtype = MOLD_F32, .n_dims = 2, .shape = {2, 3}, .data = f,
         .n_bytes = sizeof(f)},
        {.name = "b", .dtype = MOLD_BF16, .n_dims = 1, .shape = {4}, .data = bf,
         .n_bytes = sizeof(bf)},
        {.name = "empty", .dtype = MOLD_U8, .n_dims = 2, .shape = {0, 5}, .data = NULL,
         .n_bytes = 0},
        {.name = "scalar \"quoted\"", .dtype = MOLD_I64, .n_dims = 0, .data = &i64,
         .n_bytes = 8},
    };
    const char *md[] = {"format", "pt", "note", "mold test", NULL};
    const char *path = tu_build_path("st_roundtrip.safetensors");
    tu_ok(mold_safetensors_write(path, in, 4, md), "write");

    mold_safetensors *st = NULL;
    tu_ok(mold_safetensors_open(path, &st), "open");
    assert_int_equal(mold_safetensors_count(st), 4);
    assert_int_equal(mold_safetensors_n_shards(st), 1);
    assert_string_equal(mold_safetensors_path(st), path);
    assert_string_equal(mold_safetensors_metadata(st, "format"), "pt");
    assert_string_equal(mold_safetensors_metadata(st, "note"), "mold test");
    assert_null(mold_safetensors_metadata(st, "missing"));
    for (size_t i = 0; i < 4; i++) {
        const mold_tensor *t = mold_safetensors_find(st, in[i].name);
        assert_non_null(t);
        /* written in order, so read back in the same (offset) order */
        assert_ptr_equal(t, mold_safetensors_at(st, i));
        assert_string_equal(mold_safetensors_tensor_file(st, i), path);
        assert_int_equal(t->dtype, in[i].dtype);
        assert_int_equal(t->n_dims, in[i].n_dims);
        assert_true(mold_tensor_has_shape(t, in[i].n_dims, in[i].shape));
        assert_int_equal(t->n_bytes, in[i].n_bytes);
        if (t->n_bytes)
            assert_memory_equal(t->data, in[i].data, t->n_bytes);
    }
    /* values through the f32 path: exact (bf16 widening is exact) */
    float *got = tu_to_f32(mold_safetensors_find(st, "a.weight"));
    tu_check_close("f32 roundtrip", got, f, 6, 0.0);
    free(got);
    float bref[4] = {1.0f, -1.0f, 3.140625f, 0.0f};
    got = tu_to_f32(mold_safetensors_find(st, "b"));
    tu_check_close("bf16 roundtrip", got, bref, 4, 0.0);
    free(got);
    /* header padded to 8 so the data area is 8-aligned in the file */
    const mold_tensor *a = mold_safetensors_find(st, "a.weight");
    mold_mmap m;
    tu_ok(mold_mmap_open(path, &m), "mmap");
    uint64_t n_header = 0;
    for (int i = 7; i >= 0; i--)
        n_header = (n_header << 8) | m.data[i];
    assert_int_equal(n_header % 8, 0);
    assert_int_equal(m.size, 8 + n_header + sizeof(f) + sizeof(bf) + 8);
    assert_memory_equal(a->data, m.data + 8 + n_header, sizeof(f));
    mold_mmap_close(&m);
    assert_null(mold_safetensors_find(st, "nope"));
    assert_null(mold_safetensors_find(st, NULL));
    mold_safetensors_close(st);
}

static void test_lookup_errors(void **state) {
    (void)state;
    const float v[6] = {0};
    mold_tensor in = {.name = "w", .dtype = MOLD_F32, .n_dims = 2, .shape = {2, 3}, .data = v,
                      .n_bytes = sizeof(v)};
    const char *path = tu_build_path("st_lookup.safetensors");
    tu_ok(mold_safetensors_write(path, &in, 1, NULL), "write");
    mold_safetensors *st;
    tu_ok(mold_safetensors_open(path, &st), "open");
    const mold_tensor *t;
    tu_expect_error(mold_safetensors_get(st, "x", &t), MOLD_E_NOTFOUND, "tensor 'x' not found",
                    "get missing");
    tu_ok(mold_safetensors_get_shaped(st, "w", 2, (int64_t[]){2, 3}, &t), "get_shaped");
    tu_expect_error(mold_safetensors_get_shaped(st, "w", 2, (int64_t[]){3, 2}, &t),
                    MOLD_E_FORMAT, "expected shape [3, 2], got [2, 3]", "get_shaped mismatch");

    mold_tensor_source src = mold_source_safetensors(st);
    tu_ok(mold_source_get(&src, "w", &t), "source get");
    assert_ptr_equal(t, mold_safetensors_find(st, "w"));
    tu_ok(mold_source_getf(&src, &t, "%c", 'w'), "source getf");
    tu_expect_error(mold_source_getf(&src, &t, "blocks.%d.w", 7), MOLD_E_NOTFOUND,
                    "tensor 'blocks.7.w' not found", "source getf missing");
    assert_null(t);
    tu_expect_error(mold_source_get_shaped(&src, "w", 1, (int64_t[]){6}, &t), MOLD_E_FORMAT,
                    "st_lookup.safetensors: tensor 'w': expected shape [6], got [2, 3]",
                    "source shape mismatch");
    mold_safetensors_close(st);

    mold_tensor bad = in;
    bad.n_bytes = 4;
    tu_expect_error(mold_safetensors_write(path, &bad, 1, NULL), MOLD_E_INVALID,
                    "expected 24 bytes, got 4", "write size mismatch");
    mold_tensor dup[2] = {in, in};
    tu_expect_error(mold_safetensors_write(tu_build_path("st_dup.safetensors"), dup, 2, NULL),
                    MOLD_E_INVALID, "duplicate tensor 'w'", "write duplicate");
    assert_false(mold_path_exists(tu_build_path("st_dup.safetensors")));
}

/* The tiny model: sharded (index with 3 and 2 shards) and single-file parts. */
static void test_fixture_shards(void **state) {
    (void)state;
    const char *idx = tu_fixture("qwen-image-tiny/model/transformer/"
                                 "diffusion_pytorch_model.safetensors.index.json");
    json_t *doc;
    tu_ok(mold_json_load_file(idx, &doc), "load index");
    json_t *wm = json_object_get(doc, "weight_map");
    assert_non_null(wm);

    mold_safetensors *st, *st_dir;
    tu_ok(mold_safetensors_open(idx, &st), "open index");
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-tiny/model/transformer"), &st_dir),
          "open dir");
    printf("  transformer: %zu tensors in %zu shards (index lists %zu)\n",
           mold_safetensors_count(st), mold_safetensors_n_shards(st), json_object_size(wm));
    assert_int_equal(mold_safetensors_n_shards(st), 3);
    assert_int_equal(mold_safetensors_count(st), json_object_size(wm));
    assert_int_equal(mold_safetensors_count(st_dir), json_object_size(wm));
    const char *name;
    json_t *f;
    json_object_foreach(wm, name, f) {
        const mold_tensor *t = mold_safetensors_find(st, name);
        assert_non_null(t);
        size_t i = (size_t)(t - mold_safetensors_at(st, 0));
        const char *file = mold_safetensors_tensor_file(st, i);
        assert_string_equal(strrchr(file, '/') + 1, json_string_value(f));
        assert_int_equal(t->n_bytes, (uint64_t)mold_tensor_nelems(t) *
                                         mold_dtype_get(t->dtype)->block_bytes);
    }
    /* stable order: by shard, then by offset */
    for (size_t i = 1; i < mold_safetensors_count(st); i++) {
        const mold_tensor *p = mold_safetensors_at(st, i - 1), *c = mold_safetensors_at(st, i);
        int same = !strcmp(mold_safetensors_tensor_file(st, i - 1),
                           mold_safetensors_tensor_file(st, i));
        if (same)
            assert_true((const uint8_t *)p->data + p->n_bytes <= (const uint8_t *)c->data);
    }
    json_decref(doc);
    mold_safetensors_close(st);
    mold_safetensors_close(st_dir);

    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-tiny/model/text_encoder"), &st),
          "open text_encoder dir");
    assert_int_equal(mold_safetensors_n_shards(st), 2);
    assert_int_equal(mold_safetensors_count(st), 27);
    const mold_tensor *emb;
    tu_ok(mold_safetensors_get_shaped(st, "model.embed_tokens.weight", 2,
                                      (int64_t[]){662, 64}, &emb), "embed shape");
    mold_safetensors_close(st);
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-tiny/model/vae"), &st), "open vae dir");
    assert_int_equal(mold_safetensors_n_shards(st), 1);
    assert_true(mold_safetensors_count(st) > 0);
    mold_safetensors_close(st);
}

/* ---- malformed single files ---- */

static void test_malformed_headers(void **state) {
    (void)state;
    mold_safetensors *st = (mold_safetensors *)1;
    tu_expect_error(mold_safetensors_open_buf("\x10\0\0\0", 4, "tiny", &st), MOLD_E_FORMAT,
                    "file too small", "4-byte file");
    assert_null(st);
    tu_expect_error(mold_safetensors_open_buf(NULL, 0, "empty", &st), MOLD_E_FORMAT,
                    "file too small", "empty buffer");
    const uint8_t huge[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    tu_expect_error(mold_safetensors_open_buf(huge, sizeof(huge), "huge", &st), MOLD_E_FORMAT,
                    "past the end of the file", "header length 2^64-1");
    const uint8_t past[12] = {5, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    tu_expect_error(mold_safetensors_open_buf(past, sizeof(past), "past", &st), MOLD_E_FORMAT,
                    "header length 5 past the end", "header length past end");

    expect_bad("{\"a\": {", 0, MOLD_E_FORMAT, "invalid JSON");
    expect_bad("not json", 0, MOLD_E_FORMAT, "invalid JSON");
    expect_bad("[1, 2]", 0, MOLD_E_FORMAT, "expected a JSON object");
    expect_bad("{\"a\": 3}", 0, MOLD_E_FORMAT, "tensor 'a': expected object");
    expect_bad("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
               MOLD_E_UNSUPPORTED, "unknown dtype 'F8_E4M3'");
    expect_bad("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,2]}}", 2, MOLD_E_FORMAT,
               "field 'dtype'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 24,
               MOLD_E_FORMAT, "expected 24 bytes, got 20");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
               MOLD_E_FORMAT, "expected >= 0, got -2");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
               MOLD_E_FORMAT, "shape: expected integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
               MOLD_E_FORMAT, "field 'shape'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
               MOLD_E_UNSUPPORTED, "at most 5 dims, got 6");
    /* dims whose product wraps 64 bits, and dims whose byte size does */
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904,4],"
               "\"data_offsets\":[0,0]}}", 0, MOLD_E_RANGE, "shape overflows");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
               "\"data_offsets\":[0,0]}}", 0, MOLD_E_RANGE, "byte size overflows");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
               MOLD_E_FORMAT, "expected [begin, end]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, MOLD_E_FORMAT,
               "expected [begin, end]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
               MOLD_E_FORMAT, "begin 8 > end 0");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
               MOLD_E_FORMAT, "expected >= 0, got -8");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12,
               MOLD_E_RANGE, "end 16 past the data area (12 bytes)");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
               MOLD_E_FORMAT, "overlap");
    expect_bad("{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[2,6]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
               MOLD_E_FORMAT, "tensors 'a' and 'b' overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
               MOLD_E_FORMAT, "duplicate");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, MOLD_E_FORMAT, "__metadata__ field 'k'");
    expect_bad("{\"__metadata__\":[]}", 0, MOLD_E_FORMAT, "'__metadata__': expected object");
}

/* Zero-element tensors with a huge dim are legal and take no bytes. */
static void test_zero_sized_huge_dim(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,0],"
                       "\"data_offsets\":[0,0]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],"
                       "\"data_offsets\":[0,2]}}   ", 2, &size);
    mold_safetensors *st;
    tu_ok(mold_safetensors_open_buf(b, size, "zero", &st), "open zero-sized");
    assert_int_equal(mold_safetensors_count(st), 2);
    /* the empty tensor sorts first at the same offset */
    assert_string_equal(mold_safetensors_at(st, 0)->name, "a");
    assert_int_equal(mold_safetensors_at(st, 0)->n_bytes, 0);
    assert_int_equal(mold_safetensors_find(st, "b")->n_bytes, 2);
    mold_safetensors_close(st);
    free(b);
}

/* A real file cut short, and an empty file, through the mmap path. */
static void test_truncated_files(void **state) {
    (void)state;
    const char *src = tu_build_path("st_full.safetensors");
    float v[64];
    for (int i = 0; i < 64; i++)
        v[i] = (float)i;
    mold_tensor t[2] = {
        {.name = "x", .dtype = MOLD_F32, .n_dims = 1, .shape = {32}, .data = v, .n_bytes = 128},
        {.name = "y", .dtype = MOLD_F32, .n_dims = 1, .shape = {32}, .data = v + 32,
         .n_bytes = 128},
    };
    tu_ok(mold_safetensors_write(src, t, 2, NULL), "write");
    char *buf;
    size_t len;
    tu_ok(mold_file_read_all(src, &buf, &len), "read");
    mold_safetensors *st = (mold_safetensors *)1;
    const char *p = tu_write_temp("st_trunc_data.safetensors", buf, len - 100);
    tu_expect_error(mold_safetensors_open(p, &st), MOLD_E_RANGE, "tensor 'y'", "data cut");
    assert_null(st);
    p = tu_write_temp("st_trunc_header.safetensors", buf, 20);
    tu_expect_error(mold_safetensors_open(p, &st), MOLD_E_FORMAT, "past the end of the file",
                    "header cut");
    p = tu_write_temp("st_trunc_len.safetensors", buf, 5);
    tu_expect_error(mold_safetensors_open(p, &st), MOLD_E_FORMAT, "file too small",
                    "length cut");
    p = tu_write_temp("st_empty.safetensors", buf, 0);
    tu_expect_error(mold_safetensors_open(p, &st), MOLD_E_FORMAT, "file too small",
                    "empty file");
    tu_expect_error(mold_safetensors_open(tu_build_path("st_no_such.safetensors"), &st),
                    MOLD_E_NOTFOUND, "st_no_such.safetensors", "missing file");
    free(buf);
}

/* ---- shard sets ---- */

static void test_shard_sets(void **state) {
    (void)state;
    const char *dir = make_dir("st_shards_ok");
    write_shard(dir, "s1.safetensors", "a", "b");
    write_shard(dir, "s2.safetensors", "c", NULL);
    write_text(dir, "m.safetensors.index.json",
               "{\"metadata\":{\"total_size\":24},\"weight_map\":{\"a\":\"s1.safetensors\","
               "\"b\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    mold_safetensors *st = (mold_safetensors *)1;
    tu_ok(mold_safetensors_open(dir, &st), "open shard dir");
    assert_int_equal(mold_safetensors_n_shards(st), 2);
    assert_int_equal(mold_safetensors_count(st), 3);
    const float want[2] = {3, 4};
    float *got = tu_to_f32(mold_safetensors_find(st, "b"));
    tu_check_close("shard tensor b", got, want, 2, 0.0);
    free(got);
    assert_non_null(strstr(mold_safetensors_tensor_file(st, 2), "s2.safetensors"));
    mold_safetensors_close(st);

    /* missing shard: the error names it */
    dir = make_dir("st_shards_missing");
    write_shard(dir, "s1.safetensors", "a", "b");
    write_text(dir, "m.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s9.safetensors\"}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_NOTFOUND,
                    "shard 's9.safetensors' not found", "missing shard");
    assert_null(st);

    /* listed in the index, absent from its shard */
    dir = make_dir("st_shards_absent");
    write_shard(dir, "s1.safetensors", "a", "b");
    write_text(dir, "m.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"s1.safetensors\",\"zz\":\"s1.safetensors\"}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_NOTFOUND,
                    "tensor 'zz' is listed in shard 's1.safetensors' but absent", "absent");

    /* listed in one shard, present in another */
    dir = make_dir("st_shards_moved");
    write_shard(dir, "s1.safetensors", "a", "x");
    write_shard(dir, "s2.safetensors", "b", NULL);
    write_text(dir, "m.safetensors.index.json",
               "{\"weight_map\":{\"x\":\"s1.safetensors\",\"a\":\"s2.safetensors\","
               "\"b\":\"s2.safetensors\"}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_NOTFOUND, "another shard",
                    "moved");

    /* the same name in two shards */
    dir = make_dir("st_shards_dup");
    write_shard(dir, "s1.safetensors", "a", NULL);
    write_shard(dir, "s2.safetensors", "a", NULL);
    write_text(dir, "m.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_FORMAT, "duplicate tensor 'a'",
                    "duplicate across shards");

    /* shard names must stay next to the index */
    dir = make_dir("st_shards_escape");
    write_text(dir, "m.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"../st_shards_ok/s1.safetensors\"}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_FORMAT,
                    "expected a file name next to the index", "path escape");
    write_text(dir, "m.safetensors.index.json", "{\"weight_map\":{\"a\":3}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_FORMAT, "weight_map['a']",
                    "non-string shard");
    write_text(dir, "m.safetensors.index.json", "{\"metadata\":{}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_NOTFOUND, "weight_map",
                    "no weight_map");
    write_text(dir, "m.safetensors.index.json", "{\"weight_map\":{\"a\":");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_FORMAT, "invalid JSON",
                    "index bad JSON");

    /* a corrupt shard: the error names the shard file */
    dir = make_dir("st_shards_corrupt");
    write_text(dir, "s1.safetensors", "garbage!garbage!");
    write_text(dir, "m.safetensors.index.json", "{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_FORMAT, "s1.safetensors",
                    "corrupt shard");

    /* directories: none, or two candidates without an index */
    dir = make_dir("st_dir_none");
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_NOTFOUND, "found 0 files",
                    "empty dir");
    write_shard(dir, "x.safetensors", "a", NULL);
    write_shard(dir, "y.safetensors", "b", NULL);
    tu_expect_error(mold_safetensors_open(dir, &st), MOLD_E_FORMAT, "found 2 files",
                    "ambiguous dir");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_lookup_errors),
        cmocka_unit_test(test_fixture_shards),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_zero_sized_huge_dim),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_shard_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
