/*
 * test_text_encoder.c — the Qwen2.5-VL text encoder (src/models/qwen25_text.c)
 * on the CPU backend against transformers / diffusers outputs.
 *
 * Fixtures (tests/fixtures/<model>/, see /work/shared/fixtures/README.md):
 *   cases/text_encoder.safetensors: input_ids, attention_mask [2, T] (right
 *     padded), hidden_last (after the final norm), hidden_layer1 (output of
 *     decoder layer 0) [2, T, H] from transformers 5.17 in f32.
 *   cases/encode_prompt_batch.safetensors: prompt_embeds [2, L, H] and
 *     prompt_embeds_mask [2, L] from QwenImagePipeline.encode_prompt.
 * Both run for qwen-image-tiny (config in the transformers 4.x layout) and
 * qwen-image-hd128 (5.x layout). Tolerance: per-sample relative error
 * ||out - ref|| / ||ref|| <= 1e-4 (reference ran in f32 from bf16 weights).
 *
 * Also: each sequence encoded alone equals its row of the padded batch; the
 * "model.language_model." prefix gives the same output; broken checkpoints
 * (missing tensor, wrong shape, wrong dtype) and bad inputs are errors that
 * name the tensor / position; the forward allocates exactly the workspace.
 *
 * MOLD_BENCH=1 additionally times the tiny model and one real-size 7B layer
 * with random bf16 weights (docs/perf/text_encoder.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#include "backend/ops.h"
#include "base/json.h"
#include "formats/gguf.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwen25_text.h"
#include "models/qwen2_tokenizer.h"

/* Tolerances: TOL against the references, TOL_SAME between two runs of
 * ours that differ only in batching / padding. The CPU backend computes in
 * f32; with MOLD_TEST_BACKEND=cuda matmul inputs are rounded to bf16
 * (ops.h), so both are looser there. */
static double TOL = 1e-4, TOL_SAME = 1e-6;
static bool g_cuda;

/* The backend under test: CPU (n_threads; 0 = all cores) or, with
 * MOLD_TEST_BACKEND=cuda, CUDA device 0. */
static void backend_create(int n_threads, mold_backend **be) {
    if (g_cuda)
        tu_ok(mold_backend_cuda_create(0, be), "cuda backend");
    else
        tu_ok(mold_backend_cpu_create(n_threads, be), "cpu backend");
}

/* ---- helpers ---- */

typedef struct model_fx {
    mold_safetensors *st;    /* text_encoder weights */
    mold_tensor_source src;
    mold_text_config cfg;
    mold_backend *be;
    mold_text_encoder *te;
} model_fx;

static void model_open(model_fx *m, const char *model, int n_threads) {
    char p[512];
    memset(m, 0, sizeof(*m));
    snprintf(p, sizeof(p), "%s/model/text_encoder/config.json", model);
    tu_ok(mold_text_config_load(tu_fixture(p), &m->cfg), "text config");
    snprintf(p, sizeof(p), "%s/model/text_encoder", model);
    tu_ok(mold_safetensors_open(tu_fixture(p), &m->st), "open text_encoder weights");
    m->src = mold_source_safetensors(m->st);
    backend_create(n_threads, &m->be);
    tu_ok(mold_text_encoder_load(m->be, &m->cfg, &m->src, &m->te), "load text encoder");
}

static void model_close(model_fx *m) {
    mold_text_encoder_free(m->te);
    mold_backend_free(m->be);
    mold_safetensors_close(m->st);
}

/* An I64 tensor as int32 (malloc'd). */
static int32_t *to_i32(const mold_tensor *t) {
    assert_int_equal(t->dtype, MOLD_I64);
    int64_t n = mold_tensor_nelems(t);
    int32_t *out = malloc((size_t)n * sizeof(int32_t));
    assert_non_null(out);
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + i * 8, 8);
        out[i] = (int32_t)v;
    }
    return out;
}

typedef struct te_case {
    mold_safetensors *st;
    int B, T, H;
    int32_t *ids, *mask;
    float *last, *layer1; /* [B, T, H] */
} te_case;

static void case_open(te_case *c, const char *model) {
    char p[512];
    snprintf(p, sizeof(p), "%s/cases/text_encoder.safetensors", model);
    tu_ok(mold_safetensors_open(tu_fixture(p), &c->st), "open text_encoder case");
    const mold_tensor *t;
    tu_ok(mold_safetensors_get(c->st, "input_ids", &t), "input_ids");
    c->B = (int)t->shape[0];
    c->T = (int)t->shape[1];
    c->ids = to_i32(t);
    tu_ok(mold_safetensors_get(c->st, "attention_mask", &t), "attention_mask");
    c->mask = to_i32(t);
    tu_ok(mold_safetensors_get(c->st, "hidden_last", &t), "hidden_last");
    c->H = (int)t->shape[2];
    c->last = tu_to_f32(t);
    tu_ok(mold_safetensors_get(c->st, "hidden_layer1", &t), "hidden_layer1");
    c->layer1 = tu_to_f32(t);
}

static void case_close(te_case *c) {
    free(c->ids);
    free(c->mask);
    free(c->last);
    free(c->layer1);
    mold_safetensors_close(c->st);
}

static int valid_len(const te_case *c, int b) {
    int n = 0;
    for (int t = 0; t < c->T; t++)
        n += c->mask[(size_t)b * c->T + t];
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- a backend wrapper that counts allocations (swaps be->i) ---- */

static const mold_backend_i *g_real;
static int g_n_alloc;
static size_t g_alloc_bytes;

static void *counting_alloc(mold_backend *be, size_t bytes) {
    g_n_alloc++;
    g_alloc_bytes += bytes;
    return g_real->alloc(be, bytes);
}

/* ---- golden forward ---- */

static void check_forward(const char *model) {
    model_fx m;
    te_case c;
    model_open(&m, model, 2);
    case_open(&c, model);
    assert_int_equal(c.H, m.cfg.hidden_size);
    size_t n = (size_t)c.B * c.T * c.H;
    float *last = malloc(n * sizeof(float)), *layer1 = malloc(n * sizeof(float));
    assert_non_null(last);
    assert_non_null(layer1);

    /* count backend allocations during the forward */
    mold_backend_i counting = *m.be->i;
    g_real = m.be->i;
    counting.alloc = counting_alloc;
    g_n_alloc = 0;
    g_alloc_bytes = 0;
    m.be->i = &counting;
    mold_status st = mold_text_encoder_forward(m.te, c.ids, c.mask, c.B, c.T, last, layer1);
    m.be->i = g_real;
    tu_ok(st, "forward");
    size_t ws = mold_text_encoder_workspace_bytes(&m.cfg, c.B, c.T);
    printf("  %s: forward made %d backend allocation(s) of %zu bytes; workspace_bytes %zu\n",
           model, g_n_alloc, g_alloc_bytes, ws);
    assert_int_equal(g_n_alloc, 1);
    assert_int_equal(g_alloc_bytes, ws);

    size_t per = (size_t)c.T * c.H;
    for (int b = 0; b < c.B; b++) {
        char what[160];
        int len = valid_len(&c, b);
        snprintf(what, sizeof(what), "%s hidden_last[%d] (%d valid of %d)", model, b, len, c.T);
        tu_check_close(what, last + b * per, c.last + b * per, per, TOL);
        snprintf(what, sizeof(what), "%s hidden_layer1[%d]", model, b);
        tu_check_close(what, layer1 + b * per, c.layer1 + b * per, per, TOL);
        snprintf(what, sizeof(what), "%s hidden_last[%d] valid rows only", model, b);
        tu_check_close(what, last + b * per, c.last + b * per, (size_t)len * c.H, TOL);
    }
    free(last);
    free(layer1);
    case_close(&c);
    model_close(&m);
}

static void test_forward_tiny(void **state) {
    (void)state;
    check_forward("qwen-image-tiny");
}

static void test_forward_hd128(void **state) {
    (void)state;
    check_forward("qwen-image-hd128");
}

/* ---- encode_prompt from token ids ---- */

/* The case's token sequences (valid part of each row) as separate arrays. */
static void case_sequences(const te_case *c, const int32_t **seqs, size_t *lens) {
    for (int b = 0; b < c->B; b++) {
        seqs[b] = c->ids + (size_t)b * c->T;
        lens[b] = (size_t)valid_len(c, b);
    }
}

static void check_embeds(const char *what, const mold_text_embeds *e, const char *model) {
    char p[512];
    mold_safetensors *st;
    snprintf(p, sizeof(p), "%s/cases/encode_prompt_batch.safetensors", model);
    tu_ok(mold_safetensors_open(tu_fixture(p), &st), "open encode_prompt_batch");
    const mold_tensor *pe, *pm;
    tu_ok(mold_safetensors_get(st, "prompt_embeds", &pe), "prompt_embeds");
    tu_ok(mold_safetensors_get(st, "prompt_embeds_mask", &pm), "prompt_embeds_mask");
    printf("  %s: got [%d, %d, %d], reference [%lld, %lld, %lld]\n", what, e->n, e->l_max,
           e->hidden, (long long)pe->shape[0], (long long)pe->shape[1],
           (long long)pe->shape[2]);
    assert_int_equal(e->n, pe->shape[0]);
    assert_int_equal(e->l_max, pe->shape[1]);
    assert_int_equal(e->hidden, pe->shape[2]);
    int32_t *mask = to_i32(pm);
    float *ref = tu_to_f32(pe);
    for (int i = 0; i < e->n * e->l_max; i++)
        assert_int_equal(e->mask[i], mask[i]);
    size_t per = (size_t)e->l_max * e->hidden;
    for (int b = 0; b < e->n; b++) {
        char w[160];
        snprintf(w, sizeof(w), "%s prompt_embeds[%d] (length %d)", what, b, e->lengths[b]);
        tu_check_close(w, e->data + b * per, ref + b * per, per, TOL);
    }
    free(mask);
    free(ref);
    mold_safetensors_close(st);
}

static void check_encode_tokens(const char *model) {
    model_fx m;
    te_case c;
    model_open(&m, model, 2);
    case_open(&c, model);
    const int32_t *seqs[8];
    size_t lens[8];
    assert_true(c.B <= 8);
    case_sequences(&c, seqs, lens);
    mold_text_embeds e;
    tu_ok(mold_text_encode_tokens(m.te, seqs, lens, c.B, MOLD_QWENIMAGE_MAX_TOKENS, &e),
          "encode tokens");
    check_embeds(model, &e, model);

    /* each sequence alone equals its row of the padded batch */
    for (int b = 0; b < c.B; b++) {
        mold_text_embeds one;
        tu_ok(mold_text_encode_tokens(m.te, &seqs[b], &lens[b], 1, MOLD_QWENIMAGE_MAX_TOKENS,
                                      &one),
              "encode one");
        assert_int_equal(one.lengths[0], e.lengths[b]);
        assert_int_equal(one.l_max, e.lengths[b]);
        char w[160];
        snprintf(w, sizeof(w), "%s sequence %d alone vs batch row", model, b);
        tu_check_close(w, one.data, e.data + (size_t)b * e.l_max * e.hidden,
                       (size_t)one.l_max * one.hidden, TOL_SAME);
        /* the padding of the batch row is exactly zero */
        for (size_t i = (size_t)one.l_max * e.hidden; i < (size_t)e.l_max * e.hidden; i++)
            assert_true(e.data[(size_t)b * e.l_max * e.hidden + i] == 0.0f);
        mold_text_embeds_free(&one);
    }

    /* max_tokens truncates every row */
    mold_text_embeds tr;
    tu_ok(mold_text_encode_tokens(m.te, seqs, lens, c.B, 5, &tr), "encode truncated");
    assert_int_equal(tr.l_max, 5);
    for (int b = 0; b < c.B; b++) {
        char w[160];
        snprintf(w, sizeof(w), "%s row %d truncated to 5", model, b);
        tu_check_close(w, tr.data + (size_t)b * 5 * tr.hidden,
                       e.data + (size_t)b * e.l_max * e.hidden, (size_t)5 * tr.hidden, TOL_SAME);
    }
    mold_text_embeds_free(&tr);
    mold_text_embeds_free(&e);
    case_close(&c);
    model_close(&m);
}

static void test_encode_tokens_tiny(void **state) {
    (void)state;
    check_encode_tokens("qwen-image-tiny");
}

static void test_encode_tokens_hd128(void **state) {
    (void)state;
    check_encode_tokens("qwen-image-hd128");
}

/* ---- encode_prompt from text (tokenizer + template) ---- */

/* Template + tokenize + encode the case's batch prompts (cases/manifest.json
 * batch_prompts) and compare with the reference encode_prompt; then each
 * prompt alone against its row. */
static void check_encode_prompts(const char *model) {
    char p[512];
    json_t *man;
    snprintf(p, sizeof(p), "%s/cases/manifest.json", model);
    tu_ok(mold_json_load_file(tu_fixture(p), &man), "manifest");
    json_t *arr;
    tu_ok(mold_json_get_child(man, "batch_prompts", p, true, JSON_ARRAY, &arr), "batch_prompts");
    int n = (int)json_array_size(arr);
    assert_true(n >= 1 && n <= 8);
    const char *prompts[8];
    for (int i = 0; i < n; i++) {
        prompts[i] = json_string_value(json_array_get(arr, (size_t)i));
        assert_non_null(prompts[i]);
    }
    model_fx m;
    model_open(&m, model, 2);
    mold_tokenizer *tok;
    snprintf(p, sizeof(p), "%s/model/tokenizer", model);
    tu_ok(mold_tokenizer_load(tu_fixture(p), &tok), "tokenizer");
    mold_text_embeds e;
    tu_ok(mold_text_encode_prompts(m.te, tok, prompts, n, MOLD_QWENIMAGE_MAX_TOKENS, &e),
          "encode prompts");
    snprintf(p, sizeof(p), "%s prompts", model);
    check_embeds(p, &e, model);
    for (int i = 0; i < n; i++) {
        mold_text_embeds one;
        tu_ok(mold_text_encode_prompts(m.te, tok, &prompts[i], 1, MOLD_QWENIMAGE_MAX_TOKENS,
                                       &one),
              "encode one prompt");
        assert_int_equal(one.l_max, e.lengths[i]);
        char w[200];
        snprintf(w, sizeof(w), "%s prompt '%s' alone vs batch row", model, prompts[i]);
        tu_check_close(w, one.data, e.data + (size_t)i * e.l_max * e.hidden,
                       (size_t)one.l_max * one.hidden, TOL_SAME);
        mold_text_embeds_free(&one);
    }
    mold_text_embeds_free(&e);
    mold_tokenizer_free(tok);
    model_close(&m);
    json_decref(man);
}

static void test_encode_prompts_tiny(void **state) {
    (void)state;
    check_encode_prompts("qwen-image-tiny");
}

static void test_encode_prompts_hd128(void **state) {
    (void)state;
    check_encode_prompts("qwen-image-hd128");
}

/* ---- single prompts of the pipeline case: bf16 safetensors and GGUF ---- */

/* Encodes cases/pipeline.safetensors prompt_ids with the encoder loaded from
 * `src` and compares with `golden`'s prompt_embeds [1, L, H]. */
static void check_pipeline_prompt(const char *model, mold_backend *be,
                                  const mold_text_config *cfg, const mold_tensor_source *src,
                                  const char *golden, const char *what) {
    char p[512];
    mold_safetensors *pst, *gst;
    snprintf(p, sizeof(p), "%s/cases/pipeline.safetensors", model);
    tu_ok(mold_safetensors_open(tu_fixture(p), &pst), "open pipeline case");
    tu_ok(mold_safetensors_open(tu_fixture(golden), &gst), "open golden");
    const mold_tensor *ti, *te_ref;
    tu_ok(mold_safetensors_get(pst, "prompt_ids", &ti), "prompt_ids");
    tu_ok(mold_safetensors_get(gst, "prompt_embeds", &te_ref), "prompt_embeds");
    int32_t *ids = to_i32(ti);
    size_t n_ids = (size_t)ti->shape[0];
    float *ref = tu_to_f32(te_ref);
    mold_text_encoder *te;
    tu_ok(mold_text_encoder_load(be, cfg, src, &te), what);
    mold_text_embeds e;
    const int32_t *seqs[1] = {ids};
    tu_ok(mold_text_encode_tokens(te, seqs, &n_ids, 1, MOLD_QWENIMAGE_MAX_TOKENS, &e), what);
    assert_int_equal(e.l_max, te_ref->shape[1]);
    assert_int_equal(e.hidden, te_ref->shape[2]);
    char w[200];
    snprintf(w, sizeof(w), "%s: prompt of %zu tokens -> [%d, %d]", what, n_ids, e.l_max,
             e.hidden);
    tu_check_close(w, e.data, ref, (size_t)e.l_max * e.hidden, TOL);
    mold_text_embeds_free(&e);
    mold_text_encoder_free(te);
    free(ids);
    free(ref);
    mold_safetensors_close(pst);
    mold_safetensors_close(gst);
}

static void test_pipeline_prompt_bf16(void **state) {
    (void)state;
    const char *models[2] = {"qwen-image-tiny", "qwen-image-hd128"};
    for (int i = 0; i < 2; i++) {
        model_fx m;
        char g[256];
        model_open(&m, models[i], 2);
        snprintf(g, sizeof(g), "%s/cases/pipeline.safetensors", models[i]);
        check_pipeline_prompt(models[i], m.be, &m.cfg, &m.src, g, models[i]);
        model_close(&m);
    }
}

/* llama.cpp-style GGUF text encoders (token_embd, blk.N.attn_q, quantized
 * matrices) through the same loader; the golden ran diffusers with the same
 * weights dequantized, so the match is as tight as for bf16. */
static void test_pipeline_prompt_gguf(void **state) {
    (void)state;
    static const struct { const char *model, *gguf, *golden; } cases[] = {
        {"qwen-image-tiny", "gguf/text-encoder-q8_0.gguf", "gguf/pipeline-q8_0.golden.safetensors"},
        {"qwen-image-tiny", "gguf/text-encoder-mixed-legacy.gguf",
         "gguf/pipeline-mixed-legacy.golden.safetensors"},
        {"qwen-image-tiny", "gguf/text-encoder-mixed-k.gguf",
         "gguf/pipeline-mixed-k.golden.safetensors"},
        {"qwen-image-hd128", "gguf-hd128/text-encoder-mixed-k.gguf",
         "gguf-hd128/pipeline-mixed-k.golden.safetensors"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        model_fx m;
        model_open(&m, cases[i].model, 2);
        mold_gguf *g;
        tu_ok(mold_gguf_open(tu_fixture(cases[i].gguf), &g), cases[i].gguf);
        int counts[MOLD_DTYPE_COUNT] = {0};
        for (size_t t = 0; t < mold_gguf_tensor_count(g); t++)
            counts[mold_gguf_tensor_at(g, t)->dtype]++;
        printf("  %s:", cases[i].gguf);
        for (int d = 0; d < MOLD_DTYPE_COUNT; d++)
            if (counts[d])
                printf(" %d %s", counts[d], mold_dtype_name((mold_dtype)d));
        printf("\n");
        mold_tensor_source src = mold_source_gguf(g);
        check_pipeline_prompt(cases[i].model, m.be, &m.cfg, &src, cases[i].golden,
                              cases[i].gguf);
        mold_gguf_close(g);
        model_close(&m);
    }
}

/* ---- a tensor source with edits, over the real one ---- */

typedef struct edit_source {
    const mold_tensor_source *base;
    const char *hide;          /* name reported missing, or NULL */
    const char *edit;          /* name whose tensor is replaced by `replacement` */
    mold_tensor replacement;
    const char *rename_from;   /* serve base's "model.X" as "model.language_model.X" */
} edit_source;

static const mold_tensor *edit_find(void *ud, const char *name) {
    edit_source *e = ud;
    if (e->hide && strcmp(name, e->hide) == 0)
        return NULL;
    if (e->edit && strcmp(name, e->edit) == 0)
        return &e->replacement;
    if (e->rename_from) {
        const char *pre = "model.language_model.";
        if (strncmp(name, pre, strlen(pre)) != 0)
            return NULL; /* only the new layout is visible */
        char base_name[256];
        snprintf(base_name, sizeof(base_name), "model.%s", name + strlen(pre));
        return e->base->find(e->base->ud, base_name);
    }
    return e->base->find(e->base->ud, name);
}

static mold_tensor_source edit_source_make(edit_source *e) {
    mold_tensor_source s = {edit_find, e, "broken-checkpoint"};
    return s;
}

static void test_broken_checkpoint(void **state) {
    (void)state;
    model_fx m;
    model_open(&m, "qwen-image-tiny", 1);
    mold_text_encoder *te = NULL;

    /* missing tensor */
    edit_source e = {&m.src, "model.layers.1.mlp.up_proj.weight", NULL, {0}, NULL};
    mold_tensor_source s = edit_source_make(&e);
    tu_expect_error(mold_text_encoder_load(m.be, &m.cfg, &s, &te), MOLD_E_NOTFOUND,
                    "'model.layers.1.mlp.up_proj.weight' not found", "missing tensor");
    assert_null(te);

    /* wrong shape: k_proj.bias one element short */
    const char *kb = "model.layers.0.self_attn.k_proj.bias";
    e = (edit_source){&m.src, NULL, kb, *m.src.find(m.src.ud, kb), NULL};
    e.replacement.shape[0] -= 1;
    e.replacement.n_bytes -= 2;
    s = edit_source_make(&e);
    tu_expect_error(mold_text_encoder_load(m.be, &m.cfg, &s, &te), MOLD_E_FORMAT,
                    "tensor 'model.layers.0.self_attn.k_proj.bias': expected shape [32], got [31]",
                    "wrong shape");
    assert_null(te);

    /* wrong shape of a matrix (transposed down_proj) */
    const char *dp = "model.layers.0.mlp.down_proj.weight";
    e = (edit_source){&m.src, NULL, dp, *m.src.find(m.src.ud, dp), NULL};
    int64_t t0 = e.replacement.shape[0];
    e.replacement.shape[0] = e.replacement.shape[1];
    e.replacement.shape[1] = t0;
    s = edit_source_make(&e);
    tu_expect_error(mold_text_encoder_load(m.be, &m.cfg, &s, &te), MOLD_E_FORMAT,
                    "'model.layers.0.mlp.down_proj.weight': expected shape [64, 160], got [160, 64]",
                    "transposed matrix");

    /* wrong dtype: same bytes, declared int16 */
    const char *qw = "model.layers.1.self_attn.q_proj.weight";
    e = (edit_source){&m.src, NULL, qw, *m.src.find(m.src.ud, qw), NULL};
    e.replacement.dtype = MOLD_I16;
    s = edit_source_make(&e);
    tu_expect_error(mold_text_encoder_load(m.be, &m.cfg, &s, &te), MOLD_E_FORMAT,
                    "tensor 'model.layers.1.self_attn.q_proj.weight': expected dtype", "wrong dtype");
    assert_null(te);

    /* wrong dtype of a vector (final norm as u8) */
    const char *nw = "model.norm.weight";
    e = (edit_source){&m.src, NULL, nw, *m.src.find(m.src.ud, nw), NULL};
    e.replacement.dtype = MOLD_U8;
    s = edit_source_make(&e);
    tu_expect_error(mold_text_encoder_load(m.be, &m.cfg, &s, &te), MOLD_E_FORMAT,
                    "'model.norm.weight': expected dtype", "vector dtype");

    /* config that disagrees with the checkpoint names the first tensor */
    mold_text_config bad = m.cfg;
    bad.intermediate_size += 32;
    tu_expect_error(mold_text_encoder_load(m.be, &bad, &m.src, &te), MOLD_E_FORMAT,
                    "'model.layers.0.mlp.gate_proj.weight': expected shape [192, 64]",
                    "config mismatch");
    model_close(&m);
}

/* The transformers >= 4.52 layout (model.language_model.*) gives the same output. */
static void test_language_model_prefix(void **state) {
    (void)state;
    model_fx m;
    te_case c;
    model_open(&m, "qwen-image-tiny", 2);
    case_open(&c, "qwen-image-tiny");
    edit_source e = {&m.src, NULL, NULL, {0}, "model."};
    mold_tensor_source s = edit_source_make(&e);
    mold_text_encoder *te2;
    tu_ok(mold_text_encoder_load(m.be, &m.cfg, &s, &te2), "load with language_model prefix");
    size_t n = (size_t)c.B * c.T * c.H;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    tu_ok(mold_text_encoder_forward(m.te, c.ids, c.mask, c.B, c.T, a, NULL), "forward");
    tu_ok(mold_text_encoder_forward(te2, c.ids, c.mask, c.B, c.T, b, NULL), "forward 2");
    tu_check_close("language_model prefix vs model prefix", b, a, n, g_cuda ? TOL_SAME : 0.0);
    tu_check_close("language_model prefix vs reference", b, c.last, n, TOL);
    free(a);
    free(b);
    mold_text_encoder_free(te2);
    case_close(&c);
    model_close(&m);
}

static void test_bad_inputs(void **state) {
    (void)state;
    model_fx m;
    model_open(&m, "qwen-image-tiny", 1);
    float out[4 * 64];
    int32_t ids[4] = {1, 2, 3, 4};
    int32_t bad_ids[4] = {1, 2, 662, 4};
    int32_t left_pad[4] = {0, 1, 1, 1};
    int32_t holes[4] = {1, 0, 1, 0};
    int32_t twos[4] = {1, 2, 0, 0};
    tu_expect_error(mold_text_encoder_forward(m.te, bad_ids, NULL, 1, 4, out, NULL),
                    MOLD_E_RANGE, "ids[0][2]: expected a token id in [0, 662), got 662",
                    "id out of range");
    tu_expect_error(mold_text_encoder_forward(m.te, ids, left_pad, 1, 4, out, NULL),
                    MOLD_E_INVALID, "at least one valid token", "left padding");
    tu_expect_error(mold_text_encoder_forward(m.te, ids, holes, 1, 4, out, NULL),
                    MOLD_E_INVALID, "mask row 0: expected right padding", "hole in mask");
    tu_expect_error(mold_text_encoder_forward(m.te, ids, twos, 1, 4, out, NULL),
                    MOLD_E_INVALID, "mask[0][1]: expected 0 or 1, got 2", "mask value");
    tu_expect_error(mold_text_encoder_forward(m.te, ids, NULL, 0, 4, out, NULL),
                    MOLD_E_INVALID, "got B 0", "empty batch");
    const int32_t *seqs[1] = {ids};
    size_t lens[1] = {MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS + 1};
    mold_text_embeds e;
    tu_expect_error(mold_text_encode_tokens(m.te, seqs, lens, 1, 512, &e), MOLD_E_RANGE,
                    "sequence 0: expected 1..1058 tokens, got 1059", "too long");
    lens[0] = 4;
    tu_expect_error(mold_text_encode_tokens(m.te, seqs, lens, 1, 1025, &e), MOLD_E_INVALID,
                    "max_tokens 1025", "max_tokens");
    /* a sequence shorter than the template prefix gives an empty row */
    tu_ok(mold_text_encode_tokens(m.te, seqs, lens, 1, 512, &e), "short sequence");
    assert_int_equal(e.l_max, 0);
    assert_int_equal(e.lengths[0], 0);
    mold_text_embeds_free(&e);
    model_close(&m);
}

/* Byte counts: the real 7B config against the spec's parameter count (9.2). */
static void test_sizes(void **state) {
    (void)state;
    mold_text_config c = {3584, 28, 28, 4, 128, 18944, 152064, 1e-6, 1e6, {16, 24, 24}};
    const uint64_t params = 7070619136ull;           /* language model, spec 9.2 */
    const uint64_t vec = 28ull * (2 * 3584 + 3584 + 512 + 512) + 3584; /* f32 vectors */
    uint64_t bf16 = mold_text_encoder_weight_bytes(&c, MOLD_BF16);
    printf("  7B weights: bf16 %llu bytes, q8_0 %llu bytes\n", (unsigned long long)bf16,
           (unsigned long long)mold_text_encoder_weight_bytes(&c, MOLD_Q8_0));
    assert_true(bf16 == (params - vec) * 2 + vec * 4);
    assert_true(mold_text_encoder_weight_bytes(&c, MOLD_Q8_0) == (params - vec) / 32 * 34 + vec * 4);
    assert_true(mold_text_encoder_weight_bytes(&c, MOLD_I64) == 0);
    /* 100 tokens: h, a (2 x 3584), tables (2 x 64), mask, max(attn 2x3584+2x512, mlp 2x18944) */
    size_t ws = mold_text_encoder_workspace_bytes(&c, 1, 100);
    size_t expect = 100 * 4 * (2 * 3584 + 2 * 64 + 2 * 18944) + 448; /* mask 400 -> 448 */
    printf("  7B workspace for 100 tokens: %zu bytes\n", ws);
    assert_int_equal(ws, expect);
    assert_true(mold_text_encoder_workspace_bytes(&c, 0, 100) == SIZE_MAX);
    assert_true(mold_text_encoder_workspace_bytes(&c, 1 << 30, 1 << 30) == SIZE_MAX);
}

/* ---- optional benchmark (MOLD_BENCH=1) ---- */

static void test_bench_tiny(void **state) {
    (void)state;
    if (!getenv("MOLD_BENCH"))
        skip();
    model_fx m;
    te_case c;
    model_open(&m, "qwen-image-tiny", 0);
    case_open(&c, "qwen-image-tiny");
    float *out = malloc((size_t)c.B * c.T * c.H * sizeof(float));
    int reps = 200;
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
        tu_ok(mold_text_encoder_forward(m.te, c.ids, c.mask, c.B, c.T, out, NULL), "forward");
    double dt = (now_s() - t0) / reps;
    printf("  tiny model: %d x %d tokens in %.3f ms -> %.0f tokens/s\n", c.B, c.T, dt * 1e3,
           c.B * c.T / dt);
    free(out);
    case_close(&c);
    model_close(&m);
}

/* A source over in-memory tensors (the random 7B layer). */
typedef struct mem_source {
    int n;
    char names[16][96];
    mold_tensor t[16];
} mem_source;

static const mold_tensor *mem_find(void *ud, const char *name) {
    mem_source *s = ud;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0)
            return &s->t[i];
    return NULL;
}

static uint32_t rng_state = 12345;
static float rnd(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}

static void mem_add(mem_source *s, const char *name, int n_dims, int64_t d0, int64_t d1,
                    float scale, float offset) {
    mold_tensor *t = &s->t[s->n];
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
    int64_t n = n_dims == 1 ? d0 : d0 * d1;
    uint16_t *data = malloc((size_t)n * 2);
    assert_non_null(data);
    for (int64_t i = 0; i < n; i++)
        data[i] = mold_f32_to_bf16(offset + scale * rnd());
    *t = (mold_tensor){s->names[s->n], MOLD_BF16, n_dims, {d0, d1}, data, (uint64_t)n * 2};
    s->n++;
}

static void time_matmul(mold_backend *be, const mold_tensor *t, int64_t m, const char *what) {
    mold_weight w;
    tu_ok(be->i->weight_upload(be, t, t->shape[0], t->shape[1], &w), "upload");
    float *x = be->i->alloc(be, (size_t)(m * t->shape[1]) * sizeof(float));
    float *y = be->i->alloc(be, (size_t)(m * t->shape[0]) * sizeof(float));
    float *hx = malloc((size_t)(m * t->shape[1]) * sizeof(float));
    for (int64_t i = 0; i < m * t->shape[1]; i++)
        hx[i] = rnd();
    tu_ok(be->i->upload(be, x, hx, (size_t)(m * t->shape[1]) * sizeof(float)), "x");
    tu_ok(be->i->matmul(be, y, x, m, &w, NULL), "warm-up");
    int reps = 3;
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
        tu_ok(be->i->matmul(be, y, x, m, &w, NULL), "matmul");
    tu_ok(be->i->sync(be), "sync");
    double dt = (now_s() - t0) / reps;
    double flop = 2.0 * (double)m * (double)t->shape[0] * (double)t->shape[1];
    printf("  matmul %s m=%lld [%lld x %lld] bf16: %.1f ms, %.1f GFLOP/s\n", what,
           (long long)m, (long long)t->shape[0], (long long)t->shape[1], dt * 1e3,
           flop / dt * 1e-9);
    free(hx);
    be->i->free(be, x);
    be->i->free(be, y);
    be->i->weight_free(be, &w);
}

static void test_bench_7b_layer(void **state) {
    (void)state;
    if (!getenv("MOLD_BENCH"))
        skip();
    /* one real-size layer, a small vocabulary (the embedding is a gather) */
    mold_text_config c = {3584, 1, 28, 4, 128, 18944, 1024, 1e-6, 1e6, {16, 24, 24}};
    static mem_source s;
    memset(&s, 0, sizeof(s));
    int64_t H = 3584, I = 18944, KV = 512;
    mem_add(&s, "model.embed_tokens.weight", 2, 1024, H, 0.05f, 0);
    mem_add(&s, "model.layers.0.input_layernorm.weight", 1, H, 0, 0.1f, 1);
    mem_add(&s, "model.layers.0.self_attn.q_proj.weight", 2, H, H, 0.02f, 0);
    mem_add(&s, "model.layers.0.self_attn.q_proj.bias", 1, H, 0, 0.02f, 0);
    mem_add(&s, "model.layers.0.self_attn.k_proj.weight", 2, KV, H, 0.02f, 0);
    mem_add(&s, "model.layers.0.self_attn.k_proj.bias", 1, KV, 0, 0.02f, 0);
    mem_add(&s, "model.layers.0.self_attn.v_proj.weight", 2, KV, H, 0.02f, 0);
    mem_add(&s, "model.layers.0.self_attn.v_proj.bias", 1, KV, 0, 0.02f, 0);
    mem_add(&s, "model.layers.0.self_attn.o_proj.weight", 2, H, H, 0.02f, 0);
    mem_add(&s, "model.layers.0.post_attention_layernorm.weight", 1, H, 0, 0.1f, 1);
    mem_add(&s, "model.layers.0.mlp.gate_proj.weight", 2, I, H, 0.02f, 0);
    mem_add(&s, "model.layers.0.mlp.up_proj.weight", 2, I, H, 0.02f, 0);
    mem_add(&s, "model.layers.0.mlp.down_proj.weight", 2, H, I, 0.02f, 0);
    mem_add(&s, "model.norm.weight", 1, H, 0, 0.1f, 1);
    mold_tensor_source src = {mem_find, &s, "random-7b-layer"};
    mold_backend *be;
    backend_create(0, &be);
    mold_text_encoder *te;
    tu_ok(mold_text_encoder_load(be, &c, &src, &te), "load random layer");
    const int T = 100;
    int32_t ids[100];
    for (int i = 0; i < T; i++)
        ids[i] = (i * 37) % 1024;
    float *out = malloc((size_t)T * H * sizeof(float));
    tu_ok(mold_text_encoder_forward(te, ids, NULL, 1, T, out, NULL), "warm-up");
    int reps = 3;
    double t0 = now_s();
    for (int r = 0; r < reps; r++)
        tu_ok(mold_text_encoder_forward(te, ids, NULL, 1, T, out, NULL), "forward");
    double dt = (now_s() - t0) / reps;
    double flop = 2.0 * T * (double)(H * H * 2 + 2 * KV * H + 3 * H * I);
    printf("  7B layer, %d tokens: %.3f s (%.1f GFLOP/s in matmuls) -> 28 layers %.1f s, "
           "%.1f tokens/s\n",
           T, dt, flop / dt * 1e-9, 28 * dt, T / (28 * dt));
    for (int i = 2; i < s.n; i += 1)
        if (s.t[i].n_dims == 2)
            time_matmul(be, &s.t[i], T, s.names[i] + strlen("model.layers.0."));
    free(out);
    mold_text_encoder_free(te);
    mold_backend_free(be);
    for (int i = 0; i < s.n; i++)
        free((void *)s.t[i].data);
}

int main(void) {
    const char *backend = getenv("MOLD_TEST_BACKEND");
    g_cuda = backend && strcmp(backend, "cuda") == 0;
    if (g_cuda) {
        TOL = 1e-2;
        TOL_SAME = 1e-3;
    }
    printf("backend %s: tolerance %.0e vs reference, %.0e batch vs alone\n",
           g_cuda ? "cuda" : "cpu", TOL, TOL_SAME);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_tiny),
        cmocka_unit_test(test_forward_hd128),
        cmocka_unit_test(test_encode_tokens_tiny),
        cmocka_unit_test(test_encode_tokens_hd128),
        cmocka_unit_test(test_encode_prompts_tiny),
        cmocka_unit_test(test_encode_prompts_hd128),
        cmocka_unit_test(test_pipeline_prompt_bf16),
        cmocka_unit_test(test_pipeline_prompt_gguf),
        cmocka_unit_test(test_broken_checkpoint),
        cmocka_unit_test(test_language_model_prefix),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bench_tiny),
        cmocka_unit_test(test_bench_7b_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
