/*
 * test_plan.c — the planner (src/engine/plan.c) on synthetic device
 * snapshots and the real Qwen-Image-2512 model facts.
 *
 * Facts are what the engine would gather for the published checkpoints: the
 * configs of spec sections 3.1, 4.1 and 7.1, and weight bytes from the
 * models' own *_weight_bytes() for the dtypes people run (transformer bf16
 * 40.9 GB, q4_0 / q4_K ~11.5 GB; text encoder bf16 15.2 GB, q8_0 8.1 GB;
 * VAE bf16). Snapshots: 80 GB (H100), 24 GB (4090), 16 GB cards, CPU only,
 * and tight headroom. Every scenario asserts the decisions, and every plan
 * produced is checked against the invariants (peak <= budget in each pool
 * and stage, peaks add up, a stage's own component is live in it, JSON
 * parses and agrees).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/dtype.h"
#include "engine/plan.h"
#include "models/qwen25_text.h"
#include "models/qwenimage_dit.h"
#include "models/qwenimage_vae.h"
#include "testutil.h"

#define GIB (1ull << 30)
#define GB 1000000000ull

/* ---- the real model ---- */

static mold_text_config real_text(void) {
    mold_text_config t = {.hidden_size = 3584, .num_hidden_layers = 28,
                          .num_attention_heads = 28, .num_key_value_heads = 4, .head_dim = 128,
                          .intermediate_size = 18944, .vocab_size = 152064,
                          .rms_norm_eps = 1e-6, .rope_theta = 1e6, .mrope_section = {16, 24, 24}};
    return t;
}

static mold_dit_config real_dit(void) {
    mold_dit_config d = {.patch_size = 2, .in_channels = 64, .out_channels = 16, .num_layers = 60,
                         .attention_head_dim = 128, .num_attention_heads = 24,
                         .joint_attention_dim = 3584, .axes_dims_rope = {16, 56, 56}};
    return d;
}

static mold_vae_config real_vae(void) {
    mold_vae_config v = {.base_dim = 96, .z_dim = 16, .num_res_blocks = 2, .n_dim_mult = 4,
                         .dim_mult = {1, 2, 4, 4}, .n_temperal_downsample = 3,
                         .temperal_downsample = {false, true, true}, .n_attn_scales = 0};
    for (int i = 0; i < 16; i++) {
        v.latents_mean[i] = 0.0f;
        v.latents_std[i] = 1.0f;
    }
    return v;
}

/* Facts of Qwen-Image-2512 with the transformer in `dit_dt` and the text
 * encoder in `te_dt` (VAE bf16), nothing resident. */
static mold_model_facts real_facts(mold_dtype dit_dt, mold_dtype te_dt) {
    mold_model_facts f;
    memset(&f, 0, sizeof f);
    f.text = real_text();
    f.dit = real_dit();
    f.vae = real_vae();
    f.w[MOLD_COMP_TEXT].bytes = mold_text_encoder_weight_bytes(&f.text, te_dt);
    f.w[MOLD_COMP_TEXT].matrix_dtype = te_dt;
    tu_ok(mold_dit_weight_bytes(&f.dit, dit_dt, &f.w[MOLD_COMP_DIT].bytes), "dit bytes");
    f.w[MOLD_COMP_DIT].matrix_dtype = dit_dt;
    tu_ok(mold_vae_weight_bytes(&f.vae, MOLD_BF16, &f.w[MOLD_COMP_VAE].bytes), "vae bytes");
    f.w[MOLD_COMP_VAE].matrix_dtype = MOLD_BF16;
    assert_true(f.w[MOLD_COMP_TEXT].bytes > 0);
    return f;
}

/* ---- requests and machines ---- */

/* A typical prompt: 77 conditioning tokens, the default negative " " (6),
 * neither cached (the encoder runs on 34 + 77 + 5 tokens). */
static mold_plan_request req(int w, int h, bool cfg) {
    mold_plan_request r = {.width = w, .height = h, .steps = 50, .cfg = cfg, .n_txt_pos = 77,
                           .n_txt_neg = cfg ? 6 : 0, .n_encode = 116};
    return r;
}

static mold_device_snapshot cuda_card(double total_gib, double free_gib) {
    mold_device_snapshot d = {.kind = MOLD_PLAN_DEV_CUDA,
                              .dev_total = (uint64_t)(total_gib * GIB),
                              .dev_free = (uint64_t)(free_gib * GIB),
                              .host_total = 64 * GIB, .host_free = 48 * GIB};
    return d;
}

static mold_device_snapshot cpu_only(double total_gib, double free_gib) {
    mold_device_snapshot d = {.kind = MOLD_PLAN_DEV_CPU, .host_total = (uint64_t)(total_gib * GIB),
                              .host_free = (uint64_t)(free_gib * GIB)};
    return d;
}

/* ---- invariants of every plan ---- */

static void check_invariants(const mold_plan *p, const mold_plan_request *r) {
    for (int s = 0; s < MOLD_STAGE_COUNT; s++) {
        if (s == MOLD_STAGE_ENCODE && !p->encode) continue;
        assert_true(p->peak[s] <= p->budget);
        if (p->kind == MOLD_PLAN_DEV_CUDA) assert_true(p->host_peak[s] <= p->host_budget);
        /* the component a stage runs is live in it */
        const mold_plan_comp owner[3] = {MOLD_COMP_TEXT, MOLD_COMP_DIT, MOLD_COMP_VAE};
        assert_true(p->comp[owner[s]].live[s]);
        /* peaks add up from their parts (weights on the device pool) */
        uint64_t w = 0;
        for (int c = 0; c < MOLD_COMP_COUNT; c++)
            if (p->comp[c].live[s] && p->comp[c].place == MOLD_PLACE_DEVICE)
                w += p->comp[c].weight_bytes;
        if (p->comp[owner[s]].place == MOLD_PLACE_DEVICE)
            assert_true(p->peak[s] >= w + p->workspace[s] + p->buffers[s] + p->scratch[s]);
        else
            assert_true(p->peak[s] >= w);
    }
    /* a component's live stages are contiguous and end at keep */
    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
        int runs = 0;
        for (int s = 0; s < MOLD_STAGE_COUNT; s++)
            if (p->comp[c].live[s] && (s == 0 || !p->comp[c].live[s - 1])) runs++;
        assert_true(runs <= 1);
        assert_int_equal(p->comp[c].keep, p->comp[c].live[MOLD_STAGE_DECODE]);
        /* bf16 holds only for a device component whose matrices are blocks */
        if (p->comp[c].hold != MOLD_HOLD_STORED) {
            assert_int_equal(p->comp[c].hold, MOLD_HOLD_BF16);
            assert_int_equal(p->kind, MOLD_PLAN_DEV_CUDA);
            assert_int_equal(p->comp[c].place, MOLD_PLACE_DEVICE);
            assert_true(mold_dtype_get(p->comp[c].matrix_dtype)->is_quant);
        }
    }
    assert_int_equal(p->cfg, r->cfg);
    if (!r->cfg) assert_int_equal(p->cfg_batch, 1);
    if (p->vae_tile) {
        assert_true(p->vae_tile >= 32 || r->vae_tile);
        assert_int_equal(p->vae_overlap, p->vae_tile / 4);
    }
    assert_int_equal(p->n_img, (r->width / 16) * (r->height / 16));
    /* the JSON line parses and says the same */
    char buf[4096];
    size_t n = mold_plan_to_json(p, buf, sizeof buf);
    assert_true(n < sizeof buf);
    assert_null(strchr(buf, '\n'));
    json_error_t e;
    json_t *j = json_loads(buf, 0, &e);
    if (!j) fail_msg("plan JSON does not parse: %s: %s", e.text, buf);
    assert_int_equal(json_integer_value(json_object_get(j, "budget")), (json_int_t)p->budget);
    json_t *dec = json_object_get(json_object_get(j, "stages"), "decode");
    assert_int_equal(json_integer_value(json_object_get(dec, "peak")),
                     (json_int_t)p->peak[MOLD_STAGE_DECODE]);
    const char *mode = json_string_value(json_object_get(json_object_get(j, "vae"), "mode"));
    assert_string_equal(mode, p->vae_tile ? "tiled" : "full");
    json_decref(j);
}

/* Plans, checks the invariants and prints the plan. */
static mold_plan plan_ok(const char *what, const mold_plan_request *r, const mold_model_facts *f,
                         const mold_device_snapshot *d, const mold_plan_policy *pol) {
    mold_plan p;
    mold_status st = mold_plan_make(r, f, d, pol, &p);
    if (st != MOLD_OK) fail_msg("%s: %s", what, mold_error_message());
    char buf[4096];
    mold_plan_to_json(&p, buf, sizeof buf);
    printf("  %s:\n    %s\n", what, buf);
    check_invariants(&p, r);
    return p;
}

static void plan_fails(const char *what, const mold_plan_request *r, const mold_model_facts *f,
                       const mold_device_snapshot *d, const mold_plan_policy *pol,
                       const char *needle) {
    mold_plan p;
    mold_status st = mold_plan_make(r, f, d, pol, &p);
    printf("  %s:\n    -> %s\n", what, st == MOLD_OK ? "(ok)" : mold_error_message());
    tu_expect_error(st, MOLD_E_NOMEM, needle, what);
}

static bool live(const mold_plan *p, mold_plan_comp c, const char *pattern) {
    for (int s = 0; s < 3; s++)
        if (p->comp[c].live[s] != (pattern[s] != '-')) return false;
    return true;
}


static void expect_live(const mold_plan *p, mold_plan_comp c, const char *pattern) {
    if (!live(p, c, pattern))
        fail_msg("%s: expected live %s, got %c%c%c", mold_plan_comp_name(c), pattern,
                 p->comp[c].live[0] ? 'E' : '-', p->comp[c].live[1] ? 'D' : '-',
                 p->comp[c].live[2] ? 'V' : '-');
}

static const int SIZES[3][2] = {{1328, 1328}, {1024, 1024}, {1664, 928}};

/* ---- big card: everything resident ---- */

static void test_80g_everything_resident(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(79.1, 78.5);
    mold_dtype dits[] = {MOLD_BF16, MOLD_Q4_0, MOLD_Q4_K};
    mold_dtype tes[] = {MOLD_BF16, MOLD_Q8_0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++)
                for (int cfg = 0; cfg < 2; cfg++) {
                    mold_model_facts f = real_facts(dits[i], tes[j]);
                    mold_plan_request r = req(SIZES[k][0], SIZES[k][1], cfg);
                    char what[96];
                    snprintf(what, sizeof what, "80G dit %s te %s %dx%d cfg %d",
                             mold_dtype_name(dits[i]), mold_dtype_name(tes[j]), SIZES[k][0],
                             SIZES[k][1], cfg);
                    mold_plan p = plan_ok(what, &r, &f, &d, &pol);
                    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
                        expect_live(&p, (mold_plan_comp)c, "EDV");
                        assert_int_equal(p.comp[c].place, MOLD_PLACE_DEVICE);
                        assert_true(p.comp[c].keep);
                    }
                    assert_int_equal(p.cfg_batch, cfg ? 2 : 1);
                    assert_int_equal(p.vae_tile, 0);
                    assert_true(p.cost == 0.0);
                }
}

/* ---- 24 GB ---- */

static void test_24g_bf16_transformer(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(24, 23.4);
    mold_model_facts f = real_facts(MOLD_BF16, MOLD_BF16);
    mold_plan_request r = req(1328, 1328, true);
    /* 38 GiB of weights: no arrangement fits; the message says by how much */
    plan_fails("24G bf16 dit, default policy", &r, &f, &d, &pol,
               "transformer does not fit: the denoise stage needs 38.");
    mold_plan p;
    assert_int_not_equal(mold_plan_make(&r, &f, &d, &pol, &p), MOLD_OK);
    assert_non_null(strstr(mold_error_message(), "short by 16."));
    /* a policy that allows the host: the transformer runs on the CPU, the
     * text encoder and VAE stay on the card */
    pol.allow_host_dit = true;
    p = plan_ok("24G bf16 dit, host allowed", &r, &f, &d, &pol);
    assert_int_equal(p.comp[MOLD_COMP_DIT].place, MOLD_PLACE_HOST);
    assert_int_equal(p.comp[MOLD_COMP_TEXT].place, MOLD_PLACE_DEVICE);
    assert_int_equal(p.comp[MOLD_COMP_VAE].place, MOLD_PLACE_DEVICE);
    assert_true(p.host_peak[MOLD_STAGE_DENOISE] >= f.w[MOLD_COMP_DIT].bytes);
    assert_true(p.cost >= 1000);
    /* ... unless the host has no room either */
    d.host_total = 32 * GIB;
    d.host_free = 30 * GIB;
    plan_fails("24G bf16 dit, host allowed, 30 GiB RAM free", &r, &f, &d, &pol, "host RAM");
}

static void test_24g_q4(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(24, 23.4);
    mold_dtype dits[] = {MOLD_Q4_0, MOLD_Q4_K};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            for (int cfg = 0; cfg < 2; cfg++) {
                char what[96];
                mold_plan_request r = req(SIZES[k][0], SIZES[k][1], cfg);
                /* q8_0 text encoder: everything fits at once */
                mold_model_facts f = real_facts(dits[i], MOLD_Q8_0);
                snprintf(what, sizeof what, "24G dit %s te q8_0 %dx%d cfg %d",
                         mold_dtype_name(dits[i]), SIZES[k][0], SIZES[k][1], cfg);
                mold_plan p = plan_ok(what, &r, &f, &d, &pol);
                for (int c = 0; c < MOLD_COMP_COUNT; c++) expect_live(&p, (mold_plan_comp)c, "EDV");
                assert_int_equal(p.cfg_batch, cfg ? 2 : 1);
                assert_int_equal(p.vae_tile, 0);
                /* bf16 text encoder (13.2 GiB): freed before the transformer loads */
                f = real_facts(dits[i], MOLD_BF16);
                snprintf(what, sizeof what, "24G dit %s te bf16 %dx%d cfg %d",
                         mold_dtype_name(dits[i]), SIZES[k][0], SIZES[k][1], cfg);
                p = plan_ok(what, &r, &f, &d, &pol);
                expect_live(&p, MOLD_COMP_TEXT, "E--");
                expect_live(&p, MOLD_COMP_DIT, "-DV");
                assert_false(p.comp[MOLD_COMP_TEXT].keep);
                assert_true(p.comp[MOLD_COMP_DIT].keep);
                assert_int_equal(p.comp[MOLD_COMP_TEXT].place, MOLD_PLACE_DEVICE);
                assert_int_equal(p.cfg_batch, cfg ? 2 : 1);
                assert_int_equal(p.vae_tile, 0);
                /* a server keeps the text encoder on the host instead of
                 * reloading it for every new prompt */
                mold_plan_policy srv = pol;
                srv.keep_resident = true;
                snprintf(what, sizeof what, "24G server dit %s te bf16 %dx%d cfg %d",
                         mold_dtype_name(dits[i]), SIZES[k][0], SIZES[k][1], cfg);
                p = plan_ok(what, &r, &f, &d, &srv);
                assert_int_equal(p.comp[MOLD_COMP_TEXT].place, MOLD_PLACE_HOST);
                assert_true(p.comp[MOLD_COMP_TEXT].keep);
                expect_live(&p, MOLD_COMP_DIT, "EDV");
                assert_true(p.host_peak[MOLD_STAGE_ENCODE] >= f.w[MOLD_COMP_TEXT].bytes);
                /* ... and reloads it when the host is not allowed */
                srv.allow_host_text = false;
                p = plan_ok(what, &r, &f, &d, &srv);
                expect_live(&p, MOLD_COMP_TEXT, "E--");
                assert_true(p.cost >= 10);
            }
}

/* ---- 16 GB ---- */

static void test_16g_q4(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(16, 15.5);
    mold_dtype tes[] = {MOLD_Q8_0, MOLD_BF16};
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < 3; k++)
            for (int cfg = 0; cfg < 2; cfg++) {
                char what[96];
                snprintf(what, sizeof what, "16G dit q4_K te %s %dx%d cfg %d",
                         mold_dtype_name(tes[j]), SIZES[k][0], SIZES[k][1], cfg);
                mold_model_facts f = real_facts(MOLD_Q4_K, tes[j]);
                mold_plan_request r = req(SIZES[k][0], SIZES[k][1], cfg);
                mold_plan p = plan_ok(what, &r, &f, &d, &pol);
                /* even q8_0 (7 GiB) + q4 (10.7 GiB) do not fit together */
                expect_live(&p, MOLD_COMP_TEXT, "E--");
                expect_live(&p, MOLD_COMP_DIT, "-DV");
                assert_int_equal(p.cfg_batch, cfg ? 2 : 1);
            }
    /* bf16 transformer: error, naming the stage and the shortfall */
    mold_model_facts f = real_facts(MOLD_BF16, MOLD_Q8_0);
    mold_plan_request r = req(1024, 1024, true);
    plan_fails("16G bf16 dit", &r, &f, &d, &pol, "the denoise stage needs");
}

/* ---- tight: budgets cut between the needs of neighbouring arrangements ---- */

/* A card whose budget (after the default headroom) is exactly `budget`. */
static mold_device_snapshot card_with_budget(uint64_t budget) {
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(24, 0);
    d.dev_free = budget + pol.headroom_bytes + (uint64_t)(pol.headroom_frac * (double)d.dev_total);
    return d;
}

static void test_tight(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_model_facts f = real_facts(MOLD_Q4_K, MOLD_Q8_0);
    mold_plan_request r = req(1328, 1328, true);
    /* the needs of each arrangement, from plans on a big card */
    mold_device_snapshot big = cuda_card(79.1, 78.5);
    mold_plan_request r1 = r;
    r1.cfg_batch = 1;
    mold_plan b2 = plan_ok("ref batch 2", &r, &f, &big, &pol);
    mold_plan b1 = plan_ok("ref batch 1", &r1, &f, &big, &pol);
    uint64_t dit_w = f.w[MOLD_COMP_DIT].bytes, vae_w = f.w[MOLD_COMP_VAE].bytes;
    /* denoise alone (DiT + VAE weights) at batch 2 and at batch 1 */
    uint64_t den2 = b2.peak[MOLD_STAGE_DENOISE] - f.w[MOLD_COMP_TEXT].bytes;
    uint64_t den1 = b1.peak[MOLD_STAGE_DENOISE] - f.w[MOLD_COMP_TEXT].bytes;
    assert_true(den1 < den2);

    /* exactly enough for batch 2 with the text encoder gone: a one-shot run
     * frees the text encoder before denoise and the transformer before the
     * decode (nothing is lost), so the decode is whole */
    mold_device_snapshot d = card_with_budget(den2);
    mold_plan p = plan_ok("budget = batch-2 denoise", &r, &f, &d, &pol);
    assert_int_equal(p.budget, den2);
    assert_int_equal(p.cfg_batch, 2);
    expect_live(&p, MOLD_COMP_TEXT, "E--");
    expect_live(&p, MOLD_COMP_DIT, "-D-");
    assert_int_equal(p.peak[MOLD_STAGE_DENOISE], den2);
    assert_int_equal(p.vae_tile, 0);
    /* a server keeps the transformer and tiles the decode instead */
    mold_plan_policy srv = pol;
    srv.keep_resident = true;
    p = plan_ok("budget = batch-2 denoise, server", &r, &f, &d, &srv);
    assert_int_equal(p.cfg_batch, 2);
    assert_true(p.comp[MOLD_COMP_DIT].keep);
    assert_int_equal(p.comp[MOLD_COMP_TEXT].place, MOLD_PLACE_HOST);
    assert_true(p.vae_tile >= 32);
    /* one byte less: the VAE loads only for the decode, still batch 2 */
    d = card_with_budget(den2 - 1);
    p = plan_ok("budget = batch-2 denoise - 1", &r, &f, &d, &pol);
    assert_int_equal(p.cfg_batch, 2);
    expect_live(&p, MOLD_COMP_VAE, "--V");
    /* without room for the VAE's 48 MiB either: two forwards of one. The
     * encode's scratch (the q8_0 text encoder's dequantized weight) is
     * larger than the denoise stage's own and stays allocated, so the least
     * batch 2 can need is with the text encoder on the host: den2 less the
     * difference (the denoise stage alone: prompts cached) */
    mold_plan_request rc = r;
    rc.n_encode = 0;
    mold_plan b2c = plan_ok("ref batch 2, prompts cached", &rc, &f, &big, &pol);
    assert_true(b2c.scratch[MOLD_STAGE_DENOISE] <= b2.scratch[MOLD_STAGE_DENOISE]);
    den2 -= b2.scratch[MOLD_STAGE_DENOISE] - b2c.scratch[MOLD_STAGE_DENOISE];
    d = card_with_budget(den2 - vae_w - 1);
    p = plan_ok("budget = batch-2 denoise - vae - 1", &r, &f, &d, &pol);
    assert_int_equal(p.cfg_batch, 1);
    assert_int_equal(p.comp[MOLD_COMP_DIT].place, MOLD_PLACE_DEVICE);
    p = plan_ok("budget = batch-2 denoise - vae - 1, server", &r, &f, &d, &srv);
    assert_int_equal(p.cfg_batch, 1);
    /* the batch-1 minimum still plans ... */
    d = card_with_budget(den1);
    p = plan_ok("budget = batch-1 denoise", &r, &f, &d, &pol);
    assert_int_equal(p.cfg_batch, 1);
    assert_int_equal(p.peak[MOLD_STAGE_DENOISE], den1);
    /* ... without the VAE weights during denoise (and, as above, without
     * the encode's larger scratch) it goes lower still */
    mold_plan_request r1c = r1;
    r1c.n_encode = 0;
    mold_plan b1c = plan_ok("ref batch 1, prompts cached", &r1c, &f, &big, &pol);
    den1 -= b1.scratch[MOLD_STAGE_DENOISE] - b1c.scratch[MOLD_STAGE_DENOISE];
    d = card_with_budget(den1 - vae_w);
    p = plan_ok("budget = batch-1 denoise - vae", &r, &f, &d, &pol);
    expect_live(&p, MOLD_COMP_VAE, "--V");
    /* and one byte below nothing fits: the transformer's error */
    d = card_with_budget(den1 - vae_w - 1);
    plan_fails("below the batch-1 minimum", &r, &f, &d, &pol, "transformer does not fit");
    (void)dit_w;

    /* a server's tiles shrink with the budget; whole when it fits */
    int last_tile = 1 << 30, n_tiled = 0;
    for (double extra = 4.0; extra >= 0.0; extra -= 0.125) {
        d = card_with_budget(den1 + (uint64_t)(extra * GIB));
        mold_plan q;
        assert_int_equal(mold_plan_make(&r, &f, &d, &srv, &q), MOLD_OK);
        check_invariants(&q, &r);
        assert_true(q.comp[MOLD_COMP_DIT].keep);
        int t = q.vae_tile ? q.vae_tile : 1 << 29;
        assert_true(t <= last_tile);
        last_tile = t;
        n_tiled += q.vae_tile != 0;
    }
    printf("  server sweep: %d of 33 budgets tiled, smallest tile %d\n", n_tiled, last_tile);
    assert_true(n_tiled > 0 && last_tile >= 32 && last_tile < 1 << 29);

    /* tight headroom on a big card has the same effect */
    mold_plan_policy hr = pol;
    hr.headroom_bytes = 64 * GIB;
    p = plan_ok("80G with 64 GiB headroom", &r, &f, &big, &hr);
    expect_live(&p, MOLD_COMP_TEXT, "E--");
    assert_true(p.budget < 13 * GIB);
    hr.headroom_frac = 0.5;
    plan_fails("80G with 64 GiB + 50% headroom", &r, &f, &big, &hr, "headroom");
}

/* More memory never makes the plan worse; every plan on the way fits. */
static void test_sweep_monotone(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_dtype dits[] = {MOLD_Q4_0, MOLD_Q4_K, MOLD_BF16};
    mold_dtype tes[] = {MOLD_Q8_0, MOLD_BF16};
    int n_plans = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++)
                for (int worst = 0; worst < 2; worst++) {
                    mold_model_facts f = real_facts(dits[i], tes[j]);
                    mold_plan_request r = req(SIZES[k][0], SIZES[k][1], true);
                    if (worst) { /* the longest prompts the pipeline allows */
                        r.n_txt_pos = r.n_txt_neg = 512;
                        r.n_encode = 1058;
                    }
                    double last = 1e30;
                    for (double g = 6; g <= 80; g += 0.5) {
                        mold_device_snapshot d = cuda_card(g, g - 0.6);
                        mold_plan p;
                        if (mold_plan_make(&r, &f, &d, &pol, &p) != MOLD_OK) {
                            assert_true(last == 1e30); /* fails only below the first fit */
                            continue;
                        }
                        check_invariants(&p, &r);
                        assert_true(p.cost <= last + 1e-9);
                        last = p.cost;
                        n_plans++;
                    }
                    assert_true(last == 0.0); /* 80 GB: the ideal plan */
                }
    printf("  %d plans checked\n", n_plans);
}

/* ---- CPU only ---- */

static void test_cpu_only(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cpu_only(64, 50);
    mold_model_facts f = real_facts(MOLD_Q4_K, MOLD_Q8_0);
    mold_plan_request r = req(1024, 1024, true);
    mold_plan p = plan_ok("cpu 64G q4_K + q8_0", &r, &f, &d, &pol);
    assert_int_equal(p.kind, MOLD_PLAN_DEV_CPU);
    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
        expect_live(&p, (mold_plan_comp)c, "EDV");
        assert_int_equal(p.comp[c].place, MOLD_PLACE_DEVICE);
        assert_int_equal(p.scratch[c], 0); /* the CPU backend's scratch is fixed */
    }
    assert_int_equal(p.cfg_batch, 2);
    char buf[4096];
    mold_plan_to_json(&p, buf, sizeof buf);
    assert_null(strstr(buf, "cuda"));
    assert_null(strstr(buf, "host_budget"));
    /* bf16 + bf16 (51 GiB) on 50 GiB free: the text encoder goes first */
    f = real_facts(MOLD_BF16, MOLD_BF16);
    p = plan_ok("cpu 64G bf16 + bf16", &r, &f, &d, &pol);
    expect_live(&p, MOLD_COMP_TEXT, "E--");
    expect_live(&p, MOLD_COMP_DIT, "-DV");
    /* no host placements on a CPU machine, whatever the policy */
    pol.allow_host_dit = true;
    d = cpu_only(32, 24);
    plan_fails("cpu 32G bf16 dit", &r, &f, &d, &pol, "of RAM");
}

/* ---- requests that force a choice ---- */

static void test_forced(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(79.1, 78.5);
    mold_model_facts f = real_facts(MOLD_Q4_K, MOLD_Q8_0);
    mold_plan_request r = req(1328, 1328, true);
    r.vae_tile = 64;
    r.cfg_batch = 1;
    mold_plan p = plan_ok("forced tile 64, sequential", &r, &f, &d, &pol);
    assert_int_equal(p.vae_tile, 64);
    assert_int_equal(p.vae_overlap, 16);
    assert_int_equal(p.cfg_batch, 1);
    for (int c = 0; c < MOLD_COMP_COUNT; c++) expect_live(&p, (mold_plan_comp)c, "EDV");
    /* a forced batch of two that cannot fit is an error, not a silent change */
    r.vae_tile = 0;
    r.cfg_batch = 2;
    mold_plan b1;
    mold_plan_request r1 = req(1328, 1328, true);
    r1.cfg_batch = 1;
    b1 = plan_ok("ref", &r1, &f, &d, &pol);
    mold_device_snapshot tight = card_with_budget(b1.peak[MOLD_STAGE_DENOISE] -
                                                  f.w[MOLD_COMP_TEXT].bytes);
    plan_fails("forced batch 2 on a batch-1 budget", &r, &f, &tight, &pol, "denoise");
    /* a forced whole-image decode (tile >= latent) where only tiles fit: a
     * one-layer transformer makes the decode the biggest stage */
    mold_model_facts small = f;
    small.dit.num_layers = 1;
    tu_ok(mold_dit_weight_bytes(&small.dit, MOLD_Q4_K, &small.w[MOLD_COMP_DIT].bytes), "1 layer");
    mold_plan_request rs = req(1328, 1328, true);
    mold_plan whole = plan_ok("1-layer dit, 80G", &rs, &small, &d, &pol);
    assert_int_equal(whole.vae_tile, 0);
    tight = card_with_budget(whole.peak[MOLD_STAGE_DECODE] - f.w[MOLD_COMP_TEXT].bytes -
                             small.w[MOLD_COMP_DIT].bytes - 1);
    p = plan_ok("1-layer dit, budget below the whole decode", &rs, &small, &tight, &pol);
    assert_true(p.vae_tile >= 32);
    rs.vae_tile = 4096;
    plan_fails("forced tile 4096 on the same budget", &rs, &small, &tight, &pol,
               "vae does not fit: the decode stage");
    /* bad requests */
    mold_plan_request bad = req(1328, 1328, false);
    bad.cfg_batch = 2;
    tu_expect_error(mold_plan_make(&bad, &f, &d, &pol, &p), MOLD_E_INVALID, "cfg_batch",
                    "batch 2 without cfg");
    bad = req(1000, 1328, true);
    tu_expect_error(mold_plan_make(&bad, &f, &d, &pol, &p), MOLD_E_INVALID, "multiples of 16",
                    "width 1000");
    bad = req(1328, 1328, true);
    bad.n_txt_neg = 0;
    tu_expect_error(mold_plan_make(&bad, &f, &d, &pol, &p), MOLD_E_INVALID, "text tokens",
                    "no negative tokens");
    bad = req(1328, 1328, true);
    bad.n_encode = 5000;
    tu_expect_error(mold_plan_make(&bad, &f, &d, &pol, &p), MOLD_E_INVALID, "n_encode",
                    "n_encode 5000");
    mold_device_snapshot bk = d;
    bk.kind = (mold_plan_device_kind)7;
    tu_expect_error(mold_plan_make(&r1, &f, &bk, &pol, &p), MOLD_E_INVALID, "device kind",
                    "kind 7");
    mold_plan_policy bp = pol;
    bp.headroom_frac = 1.5;
    tu_expect_error(mold_plan_make(&r1, &f, &d, &bp, &p), MOLD_E_INVALID, "headroom_frac",
                    "frac 1.5");
    mold_model_facts bf = f;
    bf.w[MOLD_COMP_DIT].bytes = 0;
    tu_expect_error(mold_plan_make(&r1, &bf, &d, &pol, &p), MOLD_E_INVALID, "weight bytes",
                    "no dit bytes");
    bf = f;
    bf.dit.num_attention_heads = 0;
    assert_int_not_equal(mold_plan_make(&r1, &bf, &d, &pol, &p), MOLD_OK);
    printf("  bad dit config -> %s\n", mold_error_message());
}

/* ---- what is resident already ---- */

static void test_resident(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_model_facts f = real_facts(MOLD_Q4_K, MOLD_Q8_0);
    mold_plan_request r = req(1328, 1328, true);
    /* second request on a 24 GB card: everything loaded, little free; the
     * resident weights come back to the budget */
    mold_device_snapshot d = cuda_card(24, 23.4);
    mold_plan first = plan_ok("24G first", &r, &f, &d, &pol);
    uint64_t held = 0;
    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
        f.w[c].resident = true;
        held += f.w[c].bytes;
    }
    d.dev_free -= held;
    mold_plan p = plan_ok("24G all resident", &r, &f, &d, &pol);
    assert_int_equal(p.budget, first.budget);
    for (int c = 0; c < MOLD_COMP_COUNT; c++) expect_live(&p, (mold_plan_comp)c, "EDV");
    /* both prompts cached: no encode stage; the text encoder is kept as is */
    r.n_encode = 0;
    p = plan_ok("24G all resident, cached prompts", &r, &f, &d, &pol);
    assert_false(p.encode);
    assert_false(p.comp[MOLD_COMP_TEXT].used);
    assert_true(p.comp[MOLD_COMP_TEXT].keep);
    /* cached prompts, text encoder not loaded: it stays unloaded */
    f.w[MOLD_COMP_TEXT].resident = false;
    d.dev_free += f.w[MOLD_COMP_TEXT].bytes;
    p = plan_ok("24G cached prompts, no text encoder", &r, &f, &d, &pol);
    expect_live(&p, MOLD_COMP_TEXT, "---");
    assert_true(p.cost == 0.0);

    /* a 24 GB card after a first bf16-text-encoder request: the transformer is
     * resident, the text encoder was freed; a new prompt must be encoded */
    f = real_facts(MOLD_Q4_K, MOLD_BF16);
    f.w[MOLD_COMP_DIT].resident = f.w[MOLD_COMP_VAE].resident = true;
    d = cuda_card(24, 23.4);
    d.dev_free -= f.w[MOLD_COMP_DIT].bytes + f.w[MOLD_COMP_VAE].bytes;
    r = req(1328, 1328, true);
    p = plan_ok("24G dit resident, new prompt", &r, &f, &d, &pol);
    /* on the host, rather than evicting 10.7 GiB of transformer to encode */
    assert_int_equal(p.comp[MOLD_COMP_TEXT].place, MOLD_PLACE_HOST);
    expect_live(&p, MOLD_COMP_DIT, "EDV");
    pol.allow_host_text = false;
    p = plan_ok("24G dit resident, new prompt, no host", &r, &f, &d, &pol);
    expect_live(&p, MOLD_COMP_DIT, "-DV"); /* evicted for the encode, reloaded */
    expect_live(&p, MOLD_COMP_TEXT, "E--");
    assert_true(p.cost >= 20);
    /* a text encoder already on the host stays there with cached prompts */
    f.w[MOLD_COMP_TEXT].resident = f.w[MOLD_COMP_TEXT].on_host = true;
    r.n_encode = 0;
    p = plan_ok("24G text encoder on the host, cached prompts", &r, &f, &d, &pol);
    assert_int_equal(p.comp[MOLD_COMP_TEXT].place, MOLD_PLACE_HOST);
    assert_true(p.comp[MOLD_COMP_TEXT].keep);
}

/* ---- bf16 holds ---- */

/* Facts with bytes_bf16 offered (as the engine does on CUDA): the bf16
 * figure of each quantized component. */
static mold_model_facts hold_facts(mold_dtype dit_dt, mold_dtype te_dt) {
    mold_model_facts f = real_facts(dit_dt, te_dt);
    if (mold_dtype_get(te_dt)->is_quant)
        f.w[MOLD_COMP_TEXT].bytes_bf16 = mold_text_encoder_weight_bytes(&f.text, MOLD_BF16);
    if (mold_dtype_get(dit_dt)->is_quant)
        tu_ok(mold_dit_weight_bytes(&f.dit, MOLD_BF16, &f.w[MOLD_COMP_DIT].bytes_bf16), "bytes");
    return f;
}

static void test_hold_bf16(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_plan_request r = req(1328, 1328, true);
    /* 80 GB: both quantized components held as bf16, nothing else changes */
    mold_model_facts f = hold_facts(MOLD_Q4_0, MOLD_Q8_0);
    mold_device_snapshot d = cuda_card(79.1, 78.5);
    mold_plan p = plan_ok("80G q4_0 + q8_0, holds offered", &r, &f, &d, &pol);
    assert_int_equal(p.comp[MOLD_COMP_DIT].hold, MOLD_HOLD_BF16);
    assert_int_equal(p.comp[MOLD_COMP_TEXT].hold, MOLD_HOLD_BF16);
    assert_int_equal(p.comp[MOLD_COMP_VAE].hold, MOLD_HOLD_STORED);
    assert_int_equal(p.comp[MOLD_COMP_DIT].weight_bytes, f.w[MOLD_COMP_DIT].bytes_bf16);
    for (int c = 0; c < MOLD_COMP_COUNT; c++) expect_live(&p, (mold_plan_comp)c, "EDV");
    assert_true(p.cost == 0.0);
    /* the margin is kept in every stage */
    for (int s = 0; s < MOLD_STAGE_COUNT; s++)
        assert_true(p.peak[s] + pol.hold_margin_bytes <= p.budget);
    /* 24 GB: nothing fits as bf16; the plan is the stored one */
    d = cuda_card(24, 23.4);
    mold_plan ps = plan_ok("24G q4_0 + q8_0, holds offered", &r, &f, &d, &pol);
    mold_model_facts f0 = real_facts(MOLD_Q4_0, MOLD_Q8_0);
    mold_plan p0 = plan_ok("24G q4_0 + q8_0, no holds", &r, &f0, &d, &pol);
    for (int c = 0; c < MOLD_COMP_COUNT; c++) assert_int_equal(ps.comp[c].hold, MOLD_HOLD_STORED);
    assert_memory_equal(ps.peak, p0.peak, sizeof ps.peak);
    /* 40 GB: only the text encoder fits as bf16 beside the q4 transformer */
    d = cuda_card(40, 39.4);
    p = plan_ok("40G q4_0 + q8_0, holds offered", &r, &f, &d, &pol);
    assert_int_equal(p.comp[MOLD_COMP_DIT].hold, MOLD_HOLD_STORED);
    assert_int_equal(p.comp[MOLD_COMP_TEXT].hold, MOLD_HOLD_BF16);
    /* a resident component keeps its hold, and its bytes as held */
    f.w[MOLD_COMP_DIT].resident = true;
    f.w[MOLD_COMP_DIT].bytes = f.w[MOLD_COMP_DIT].bytes_bf16;
    f.w[MOLD_COMP_DIT].hold = MOLD_HOLD_BF16;
    d = cuda_card(79.1, 78.5 - f.w[MOLD_COMP_DIT].bytes / (double)GIB);
    p = plan_ok("80G transformer resident as bf16", &r, &f, &d, &pol);
    assert_int_equal(p.comp[MOLD_COMP_DIT].hold, MOLD_HOLD_BF16);
    /* CPU plans never hold */
    mold_device_snapshot c = cpu_only(128, 120);
    p = plan_ok("cpu 128G q4_0 + q8_0, holds offered", &r, &f0, &c, &pol);
    for (int i = 0; i < MOLD_COMP_COUNT; i++) assert_int_equal(p.comp[i].hold, MOLD_HOLD_STORED);
}

/* ---- the CUDA backend's scratch in the denoise stage ----
 * Prompts cached (no encode), so the denoise stage's scratch is its own
 * largest request plus the backend's 1/8 growth. The requests, as the CUDA
 * backend makes them for the real config (D 3072, F 12288, 24 heads of 128,
 * 64 packed channels in and out, CFG batch 2):
 *   fused MLP (mlp.cu): bf16 hidden and x in the model's f32 [rows, F]
 *     buffer; scratch only for a bf16 copy of a block weight, F*D*2;
 *   matmul (matmul.cu): bf16 x, m*k*2, plus the weight for blocks;
 *   attention: bf16 q, k, v of one sample, S*D*2 + 2 * S'*D*2 (S' = S up to
 *     a multiple of 64: the Hopper kernel's padded K and V^T).
 * Before the fused MLP, fc2's bf16 input [2N, F] made the largest request
 * (2N*F*2 = 339 MB at 1328^2: 381 MB grown). */
static uint64_t a256(uint64_t b) { return (b + 255) & ~(uint64_t)255; }
static uint64_t grown(uint64_t b) { return a256(b + b / 8); }

static uint64_t denoise_scratch(mold_dtype dit, int side) {
    mold_plan_policy pol = mold_plan_policy_default();
    /* an f32 transformer (81.8 GB) needs a bigger card than 80 GB */
    mold_device_snapshot d = dit == MOLD_F32 ? cuda_card(190, 189) : cuda_card(79.1, 78.5);
    mold_model_facts f = real_facts(dit, MOLD_BF16);
    mold_plan_request r = req(side, side, true);
    r.n_encode = 0;
    char what[80];
    snprintf(what, sizeof what, "80G dit %s %dx%d, prompts cached", mold_dtype_name(dit), side,
             side);
    mold_plan p = plan_ok(what, &r, &f, &d, &pol);
    assert_int_equal(p.cfg_batch, 2);
    assert_int_equal(p.scratch[MOLD_STAGE_ENCODE], 0);
    return p.scratch[MOLD_STAGE_DENOISE];
}

static void test_cuda_scratch(void **state) {
    (void)state;
    const uint64_t D = 3072, F = 4 * D, L = 77;
    for (int i = 0; i < 2; i++) {
        const int side = i ? 512 : 1328;
        const uint64_t N = (uint64_t)(side / 16) * (side / 16), S = N + L;
        const uint64_t Sp = (S + 63) / 64 * 64; /* K, V^T padded to 64 keys */
        const uint64_t attn = a256(S * D * 2) + 2 * a256(Sp * D * 2);
        /* [2, D] x [6D, D] on the few-row path: + its k-split partials
         * (min(32, D / 256) = 12 splits of [2, 6D] f32) */
        const uint64_t mod_q = a256(2 * D * 2) + a256(6 * D * D * 2) + 12 * 2 * 6 * D * 4;
        const uint64_t mlp_q = a256(F * D * 2), proj_out = a256(2 * N * D * 2);
        const uint64_t old_mlp = a256(2 * N * F * 2); /* fc2's bf16 input before fusing */
        uint64_t bf16 = denoise_scratch(MOLD_BF16, side), q4 = denoise_scratch(MOLD_Q4_0, side);
        printf("  %d^2: bf16 %.1f MB (attention %.1f, proj_out %.1f), q4_0 %.1f MB "
               "(modulation %.1f, mlp %.1f); unfused MLP %.1f MB\n", side, bf16 / 1e6, attn / 1e6,
               proj_out / 1e6, q4 / 1e6, mod_q / 1e6, mlp_q / 1e6, grown(old_mlp) / 1e6);
        assert_int_equal(bf16, grown(attn > proj_out ? attn : proj_out));
        uint64_t want_q = attn > mod_q ? attn : mod_q;
        assert_int_equal(q4, grown(want_q > mlp_q ? want_q : mlp_q));
    }
    /* f32 weights: exact f32 GEMMs (no scratch) below 128 rows, the bf16 path
     * from there. At 512^2 the image MLP (2048 rows) rounds its f32 weights
     * into one bf16 copy, F*D*2, larger than everything else (the attention's
     * 21 MB, proj_out's bf16 x + W 13 MB, the text stream's 154-row MLP the
     * same copy; modulation at 2 rows stays exact) */
    uint64_t f32 = denoise_scratch(MOLD_F32, 512);
    printf("  512^2 f32: %.1f MB (fused MLP's bf16 weight copy %.1f MB)\n", f32 / 1e6,
           a256(F * D * 2) / 1e6);
    assert_int_equal(f32, grown(a256(F * D * 2)));
}

/* ---- the JSON line ---- */

static void test_json(void **state) {
    (void)state;
    mold_plan_policy pol = mold_plan_policy_default();
    mold_device_snapshot d = cuda_card(24, 23.4);
    mold_model_facts f = real_facts(MOLD_Q4_K, MOLD_BF16);
    mold_plan_request r = req(1024, 1024, true);
    mold_plan p = plan_ok("json", &r, &f, &d, &pol);
    char buf[4096];
    size_t n = mold_plan_to_json(&p, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    json_error_t e;
    json_t *j = json_loads(buf, 0, &e);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "device")), "cuda");
    assert_string_equal(json_string_value(json_object_get(j, "cfg")), "batch2");
    json_t *te = json_object_get(json_object_get(j, "components"), "text_encoder");
    assert_string_equal(json_string_value(json_object_get(te, "live")), "E--");
    assert_string_equal(json_string_value(json_object_get(te, "dtype")), "bf16");
    assert_string_equal(json_string_value(json_object_get(te, "hold")), "stored");
    assert_true(json_is_false(json_object_get(te, "keep")));
    json_t *dit = json_object_get(json_object_get(j, "components"), "transformer");
    assert_string_equal(json_string_value(json_object_get(dit, "dtype")), "q4_K");
    assert_int_equal(json_integer_value(json_object_get(dit, "bytes")),
                     (json_int_t)f.w[MOLD_COMP_DIT].bytes);
    json_decref(j);
    /* truncation: reports the needed length, stays terminated */
    char small[32];
    size_t need = mold_plan_to_json(&p, small, sizeof small);
    assert_int_equal(need, n);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(mold_plan_to_json(&p, NULL, 0), n);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_80g_everything_resident),
        cmocka_unit_test(test_24g_bf16_transformer),
        cmocka_unit_test(test_24g_q4),
        cmocka_unit_test(test_16g_q4),
        cmocka_unit_test(test_tight),
        cmocka_unit_test(test_sweep_monotone),
        cmocka_unit_test(test_cpu_only),
        cmocka_unit_test(test_forced),
        cmocka_unit_test(test_resident),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_cuda_scratch),
        cmocka_unit_test(test_hold_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
