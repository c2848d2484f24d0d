/*
 * generate.c — one text-to-image request: encode -> noise -> denoise -> decode.
 *
 * Mirrors diffusers' QwenImagePipeline.__call__ (spec section 1):
 *   1. prompt (and, when guidance > 1, negative prompt) -> conditioning
 *      embeddings (text encoder; prompt cache first);
 *   2. initial latents: Philox noise in the unpacked [16, h/8, w/8] order,
 *      packed to [N, 64] (or taken from --noise);
 *   3. sigmas from the flow-match schedule; per step the DiT predicts the
 *      velocity for the conditional and unconditional text (one batch of two,
 *      or two forwards of one when the plan says so), true CFG with per-token
 *      norm rescale, Euler update in f32; a NaN/Inf guard after every step;
 *   4. unpack, de-normalise with the VAE's latents_mean/std, decode (whole or
 *      tiled, as planned), and convert to uint8 as diffusers' image processor
 *      does.
 * Before any work the planner (plan.h) decides batching, VAE tiling and which
 * components are loaded in each stage; residency.c carries that out.
 * Every intermediate named in the reference fixture can be dumped (--dump).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/philox.h"
#include "base/clock.h"
#include "engine_impl.h"
#include "formats/safetensors.h"
#include "models/flowmatch.h"
#include "trace.h"

#define LATENT_CH 16
#define PACKED_DIM 64 /* 16 channels x 2 x 2 */

/* ---- requests ---- */

mold_request mold_request_default(void) {
    mold_request r;
    memset(&r, 0, sizeof r);
    r.width = 1328;
    r.height = 1328;
    r.steps = 50;
    r.guidance = 4.0f;
    return r;
}

mold_result_code mold_request_validate(const mold_request *r) {
    if (!r->prompt) return MOLD_ERR(MOLD_E_INVALID, "prompt: missing");
    size_t pl = strlen(r->prompt);
    if (pl > MOLD_MAX_PROMPT_BYTES)
        return MOLD_ERR(MOLD_E_INVALID, "prompt: expected at most %d bytes, got %zu",
                        MOLD_MAX_PROMPT_BYTES, pl);
    if (r->negative_prompt && strlen(r->negative_prompt) > MOLD_MAX_PROMPT_BYTES)
        return MOLD_ERR(MOLD_E_INVALID, "negative_prompt: expected at most %d bytes, got %zu",
                        MOLD_MAX_PROMPT_BYTES, strlen(r->negative_prompt));
    if (r->width < 16 || r->width % 16)
        return MOLD_ERR(MOLD_E_INVALID, "width: expected a positive multiple of 16, got %d",
                        r->width);
    if (r->height < 16 || r->height % 16)
        return MOLD_ERR(MOLD_E_INVALID, "height: expected a positive multiple of 16, got %d",
                        r->height);
    if ((int64_t)r->width * r->height > MOLD_MAX_PIXELS)
        return MOLD_ERR(MOLD_E_INVALID, "width x height: expected at most %d pixels (1.8 MP), "
                        "got %dx%d = %lld", MOLD_MAX_PIXELS, r->width, r->height,
                        (long long)r->width * r->height);
    if (r->steps < 1 || r->steps > 100)
        return MOLD_ERR(MOLD_E_INVALID, "steps: expected 1..100, got %d", r->steps);
    if (!(r->guidance >= 0.0f && r->guidance <= 100.0f))
        return MOLD_ERR(MOLD_E_INVALID, "guidance: expected 0..100, got %g", (double)r->guidance);
    if (r->vae_tile < 0) return MOLD_ERR(MOLD_E_INVALID, "vae_tile: expected >= 0, got %d", r->vae_tile);
    /* Seeds are written to the PNG metadata as JSON numbers: keep them exact. */
    if (r->seed > MOLD_MAX_SEED)
        return MOLD_ERR(MOLD_E_INVALID, "seed: expected 0..%llu (2^53 - 1), got %llu",
                        (unsigned long long)MOLD_MAX_SEED, (unsigned long long)r->seed);
    if (r->cfg_batch < 0 || r->cfg_batch > 2 || (r->cfg_batch == 2 && !(r->guidance > 1.0f)))
        return MOLD_ERR(MOLD_E_INVALID, "cfg_batch: expected 0, 1%s, got %d",
                        r->guidance > 1.0f ? " or 2" : " (guidance <= 1 runs one pass)",
                        r->cfg_batch);
    return MOLD_OK;
}

void mold_result_free(mold_result *r) {
    if (!r) return;
    free(r->rgb);
    memset(r, 0, sizeof *r);
}

/* ---- progress ---- */

typedef struct run_ctx {
    mold_engine *e;
    const mold_request *r;
    mold_progress_fn progress;
    void *ud;
    mold_trace *trace;     /* NULL unless --dump */
    int tok_h, tok_w, n_img;
    int hidden;            /* text hidden size == DiT joint_attention_dim */
    mold_plan plan;        /* this request's decisions */
} run_ctx;

static void emit(run_ctx *c, mold_event_kind kind, const char *stage, int step, double ms) {
    if (!c->progress) return;
    mold_event ev = {kind, stage, step, c->r->steps, ms};
    c->progress(&ev, c->ud);
}

/* ---- encode ---- */

/* Embeddings of one prompt: from the cache or the text encoder. *embeds is
 * borrowed from the cache (valid until the next cache insertion). */
static mold_status encode_one(run_ctx *c, const char *prompt, const prompt_cache_entry **out) {
    mold_engine *e = c->e;
    const prompt_cache_entry *hit = mold_prompt_cache_get(e, prompt);
    if (hit) {
        emit(c, MOLD_EV_CACHE_HIT, "encode", 0, 0);
        *out = hit;
        return MOLD_OK;
    }
    /* the plan loaded the encoder for every miss it saw; this only guards a
     * cache that lost an entry since */
    if (!e->te) MOLD_TRY(mold_engine_need_text(e));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    MOLD_TRY(mold_qwenimage_tokenize_prompt(e->tok, prompt, strlen(prompt), &ids, &n_ids));
    mold_text_embeds emb;
    memset(&emb, 0, sizeof emb);
    const int32_t *seqs[1] = {ids};
    mold_status st = mold_text_encode_tokens(e->te, seqs, &n_ids, 1, MOLD_QWENIMAGE_MAX_TOKENS,
                                             &emb);
    if (st == MOLD_OK && emb.lengths[0] < 1)
        st = MOLD_ERR(MOLD_E_INVALID, "prompt: encodes to no conditioning tokens");
    if (st == MOLD_OK)
        st = mold_prompt_cache_put(e, prompt, emb.data, emb.lengths[0], emb.hidden, ids, n_ids);
    mold_text_embeds_free(&emb);
    free(ids);
    if (st != MOLD_OK) return st;
    *out = mold_prompt_cache_get(e, prompt);
    return MOLD_OK;
}

static mold_status trace_prompt(run_ctx *c, const prompt_cache_entry *p, const char *ids_name,
                                const char *emb_name) {
    if (!c->trace) return MOLD_OK;
    int64_t *ids64 = malloc((p->n_ids ? p->n_ids : 1) * sizeof(int64_t));
    if (!ids64) return MOLD_ERR(MOLD_E_NOMEM, "trace: out of memory");
    for (size_t i = 0; i < p->n_ids; i++) ids64[i] = p->ids[i];
    int64_t s1[1] = {(int64_t)p->n_ids};
    mold_status st = mold_trace_add(c->trace, ids_name, MOLD_I64, 1, s1, ids64);
    free(ids64);
    int64_t s3[3] = {1, p->len, c->hidden};
    if (st == MOLD_OK) st = mold_trace_add(c->trace, emb_name, MOLD_F32, 3, s3, p->embeds);
    return st;
}

/* ---- noise and latent layout ---- */

/* The one latent layout map (spec 5.4), used in both directions:
 *   X[n = r*tok_w + col][ch*4 + dy*2 + dx] = z[ch][2r+dy][2col+dx]
 * to_packed: dst = X (packed [n_img, 64]) from src = z (unpacked
 * [16, 2 tok_h, 2 tok_w]); otherwise dst = z from src = X. */
static void relayout_latents(const float *src, float *dst, int tok_h, int tok_w, bool to_packed) {
    int lh = tok_h * 2, lw = tok_w * 2;
    for (int r = 0; r < tok_h; r++)
        for (int col = 0; col < tok_w; col++)
            for (int ch = 0; ch < LATENT_CH; ch++)
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++) {
                        size_t xi = ((size_t)r * tok_w + col) * PACKED_DIM + ch * 4 + dy * 2 + dx;
                        size_t zi = ((size_t)ch * lh + 2 * r + dy) * lw + 2 * col + dx;
                        if (to_packed) dst[xi] = src[zi];
                        else dst[zi] = src[xi];
                    }
}

/* Initial packed latents [n_img, 64]: from --noise, or seeded Philox noise
 * generated in the reference's unpacked order [16, h/8, w/8] and packed. */
static mold_status make_noise(run_ctx *c, float *x) {
    size_t n = (size_t)c->n_img * PACKED_DIM;
    if (c->r->noise_path) {
        mold_safetensors *st;
        MOLD_TRY(mold_safetensors_open(c->r->noise_path, &st));
        const mold_tensor *t;
        int64_t shape[3] = {1, c->n_img, PACKED_DIM};
        mold_status s = mold_safetensors_get_shaped(st, "noise_packed", 3, shape, &t);
        if (s == MOLD_OK && t->dtype != MOLD_F32)
            s = MOLD_ERR(MOLD_E_FORMAT, "%s: tensor 'noise_packed': expected f32, got %s",
                         c->r->noise_path, mold_dtype_name(t->dtype));
        if (s == MOLD_OK) s = mold_tensor_to_f32(t, x);
        mold_safetensors_close(st);
        return s;
    }
    float *z = malloc(n * sizeof(float));
    if (!z) return MOLD_ERR(MOLD_E_NOMEM, "noise: out of memory");
    mold_philox_normal(c->r->seed, z, n);
    relayout_latents(z, x, c->tok_h, c->tok_w, true);
    free(z);
    return MOLD_OK;
}

/* ---- denoise ---- */

typedef struct denoise_bufs {
    float *x;     /* backend [n_img, 64]: the latent state */
    float *img2;  /* backend [batch, n_img, 64]: DiT input (x repeated) */
    float *txt;   /* backend [n_pass, L, hidden]: cond (and uncond) text */
    float *v;     /* backend [n_pass, n_img, 64]: velocity predictions */
} denoise_bufs;

static void bufs_free(mold_backend *be, denoise_bufs *b) {
    be->i->free(be, b->x);
    be->i->free(be, b->img2);
    be->i->free(be, b->txt);
    be->i->free(be, b->v);
    memset(b, 0, sizeof *b);
}

/* Uploads the text of both passes into one right-padded [batch, L, hidden]. */
static mold_status upload_text(run_ctx *c, const prompt_cache_entry *pos,
                               const prompt_cache_entry *neg, int L, float *dst) {
    mold_backend *be = c->e->be;
    size_t row = (size_t)c->hidden;
    int batch = neg ? 2 : 1;
    float *host = calloc((size_t)batch * L * row, sizeof(float));
    if (!host) return MOLD_ERR(MOLD_E_NOMEM, "text: out of memory");
    memcpy(host, pos->embeds, (size_t)pos->len * row * sizeof(float));
    if (neg) memcpy(host + (size_t)L * row, neg->embeds, (size_t)neg->len * row * sizeof(float));
    mold_status st = be->i->upload(be, dst, host, (size_t)batch * L * row * sizeof(float));
    free(host);
    return st;
}

static mold_status check_finite(run_ctx *c, const float *x, int64_t n, const char *what, int step) {
    mold_backend *be = c->e->be;
    if (!be->i->count_nonfinite) return MOLD_OK;
    int64_t bad = 0;
    MOLD_TRY(be->i->count_nonfinite(be, x, n, &bad));
    if (bad)
        return MOLD_ERR(MOLD_E_NUMERIC, "denoise step %d: %lld non-finite values in %s "
                        "(NaN/Inf guard)", step + 1, (long long)bad, what);
    return MOLD_OK;
}

static mold_status trace_backend(run_ctx *c, const char *name, const float *src, int64_t n_tok) {
    if (!c->trace) return MOLD_OK;
    mold_backend *be = c->e->be;
    size_t n = (size_t)n_tok * PACKED_DIM;
    float *host = malloc(n * sizeof(float));
    if (!host) return MOLD_ERR(MOLD_E_NOMEM, "trace: out of memory");
    mold_status st = be->i->download(be, host, src, n * sizeof(float));
    int64_t shape[3] = {1, n_tok, PACKED_DIM};
    if (st == MOLD_OK) st = mold_trace_add(c->trace, name, MOLD_F32, 3, shape, host);
    free(host);
    return st;
}

/* n_pass: 2 with CFG (cond, uncond), else 1; batch: the plan's cfg_batch,
 * 2 = both passes in one forward, 1 = one forward per pass over the same
 * padded text rows (the same result, less workspace). */
static mold_status denoise_step(run_ctx *c, denoise_bufs *b, int i, const float *sigmas,
                                const float *timesteps, const int *txt_len, int L, int batch,
                                int n_pass) {
    mold_backend *be = c->e->be;
    int64_t n = (int64_t)c->n_img * PACKED_DIM;
    for (int s = 0; s < batch; s++)
        MOLD_TRY(be->i->copy(be, b->img2 + s * n, b->x, (size_t)n * sizeof(float)));
    /* The reference feeds timestep / 1000 with timestep = 1000 * sigma in f32. */
    float sig[2] = {timesteps[i] / 1000.0f, timesteps[i] / 1000.0f};
    for (int s = 0; s < n_pass; s += batch)
        MOLD_TRY(mold_dit_forward(c->e->dit, batch, b->img2, c->tok_h, c->tok_w,
                                  b->txt + (size_t)s * L * c->hidden, txt_len + s, L, sig,
                                  b->v + s * n));
    MOLD_TRY(check_finite(c, b->v, n_pass * n, "the transformer output", i));
    char name[64];
    snprintf(name, sizeof name, "noise_pred_cond_step%d", i);
    MOLD_TRY(trace_backend(c, name, b->v, c->n_img));
    if (n_pass == 2) {
        snprintf(name, sizeof name, "noise_pred_uncond_step%d", i);
        MOLD_TRY(trace_backend(c, name, b->v + n, c->n_img));
        MOLD_TRY(be->i->cfg_combine(be, b->v, b->v, b->v + n, c->r->guidance, c->n_img,
                                    PACKED_DIM));
    }
    /* Euler: x += (sigma_{i+1} - sigma_i) * v */
    MOLD_TRY(be->i->axpby(be, b->x, b->x, 1.0f, b->v, sigmas[i + 1] - sigmas[i], n));
    MOLD_TRY(check_finite(c, b->x, n, "the latents", i));
    snprintf(name, sizeof name, "latents_step%d", i);
    return trace_backend(c, name, b->x, c->n_img);
}

static mold_status denoise(run_ctx *c, const prompt_cache_entry *pos,
                           const prompt_cache_entry *neg, float *x_host) {
    mold_engine *e = c->e;
    mold_backend *be = e->be;
    const mold_request *r = c->r;
    int n_pass = neg ? 2 : 1, batch = c->plan.cfg_batch;
    int L = pos->len;
    if (neg && neg->len > L) L = neg->len;
    int txt_len[2] = {pos->len, neg ? neg->len : 0};
    float *sigmas = malloc(sizeof(float) * (size_t)(r->steps + 1));
    float *timesteps = malloc(sizeof(float) * (size_t)r->steps);
    denoise_bufs b;
    memset(&b, 0, sizeof b);
    size_t n = (size_t)c->n_img * PACKED_DIM;
    mold_status st = (sigmas && timesteps) ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    if (st == MOLD_OK) {
        double mu = mold_flowmatch_mu(&e->md.scheduler, c->n_img);
        st = mold_flowmatch_sigmas(&e->md.scheduler, r->steps, mu, sigmas, timesteps);
    }
    if (st == MOLD_OK) {
        b.x = be->i->alloc(be, n * sizeof(float));
        b.img2 = be->i->alloc(be, (size_t)batch * n * sizeof(float));
        b.v = be->i->alloc(be, (size_t)n_pass * n * sizeof(float));
        b.txt = be->i->alloc(be, (size_t)n_pass * L * c->hidden * sizeof(float));
        if (!b.x || !b.img2 || !b.v || !b.txt) st = MOLD_ERR(MOLD_E_NOMEM, "denoise: out of memory");
    }
    if (st == MOLD_OK) st = mold_dit_reserve(e->dit, batch, c->n_img, L);
    if (st == MOLD_OK) st = be->i->upload(be, b.x, x_host, n * sizeof(float));
    if (st == MOLD_OK) st = upload_text(c, pos, neg, L, b.txt);
    for (int i = 0; st == MOLD_OK && i < r->steps; i++) {
        st = denoise_step(c, &b, i, sigmas, timesteps, txt_len, L, batch, n_pass);
        emit(c, MOLD_EV_STEP, "denoise", i + 1, 0);
    }
    if (st == MOLD_OK) st = be->i->download(be, x_host, b.x, n * sizeof(float));
    if (st == MOLD_OK) st = be->i->sync(be);
    bufs_free(be, &b);
    mold_dit_release(e->dit); /* the weights stay; the workspace goes */
    free(sigmas);
    free(timesteps);
    return st;
}

/* ---- decode ---- */

/* z (unpacked, [16, h/8, w/8]) de-normalised in place: z * std + mean. */
static void denormalise(const mold_vae_config *vc, float *z, size_t hw) {
    for (int ch = 0; ch < LATENT_CH; ch++)
        for (size_t p = 0; p < hw; p++)
            z[ch * hw + p] = z[ch * hw + p] * vc->latents_std[ch] + vc->latents_mean[ch];
}

/* diffusers VaeImageProcessor.postprocess: (x / 2 + 0.5).clamp(0, 1), HWC,
 * then numpy_to_pil: (x * 255).round() (round half to even). */
static void to_u8(const float *img, int w, int h, float *img_float, uint8_t *rgb) {
    size_t hw = (size_t)w * h;
    for (size_t p = 0; p < hw; p++)
        for (int ch = 0; ch < 3; ch++) {
            float v = img[ch * hw + p] / 2.0f + 0.5f;
            v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
            img_float[p * 3 + ch] = v;
            rgb[p * 3 + ch] = (uint8_t)nearbyintf(v * 255.0f);
        }
}

static mold_status decode(run_ctx *c, const float *x, mold_result *out) {
    const mold_request *r = c->r;
    int lh = c->tok_h * 2, lw = c->tok_w * 2;
    size_t hw = (size_t)r->width * r->height;
    float *z = malloc((size_t)LATENT_CH * lh * lw * sizeof(float));
    float *img = malloc(3 * hw * sizeof(float));
    float *img_float = malloc(3 * hw * sizeof(float));
    uint8_t *rgb = malloc(3 * hw);
    mold_status st = (z && img && img_float && rgb) ? MOLD_OK
                                                    : MOLD_ERR(MOLD_E_NOMEM, "decode: out of memory");
    if (st == MOLD_OK) {
        relayout_latents(x, z, c->tok_h, c->tok_w, false);
        denormalise(&c->e->md.vae, z, (size_t)lh * lw);
        mold_vae_tiling tiling = {c->plan.vae_tile, c->plan.vae_overlap};
        st = mold_vae_decode(c->e->vae, z, lh, lw, tiling.tile > 0 ? &tiling : NULL, img);
    }
    if (st == MOLD_OK) {
        to_u8(img, r->width, r->height, img_float, rgb);
        int64_t s4[4] = {1, 3, r->height, r->width}, s3[3] = {r->height, r->width, 3};
        st = mold_trace_add(c->trace, "decoded_raw", MOLD_F32, 4, s4, img);
        if (st == MOLD_OK) st = mold_trace_add(c->trace, "image_float", MOLD_F32, 3, s3, img_float);
        if (st == MOLD_OK) st = mold_trace_add(c->trace, "image_u8", MOLD_U8, 3, s3, rgb);
    }
    if (st == MOLD_OK) {
        out->rgb = rgb;
        rgb = NULL;
        out->width = r->width;
        out->height = r->height;
    }
    free(z);
    free(img);
    free(img_float);
    free(rgb);
    return st;
}

/* ---- the request ---- */

/* Conditioning tokens of a prompt for the plan: a cache hit knows them;
 * otherwise the prompt is tokenized (again in encode_one: cheap next to the
 * encoder). *n_ids is the templated length to encode, 0 on a hit. */
static mold_status prompt_tokens(run_ctx *c, const char *prompt, int *n_cond, int *n_ids) {
    const prompt_cache_entry *hit = mold_prompt_cache_get(c->e, prompt);
    if (hit) {
        *n_cond = hit->len;
        *n_ids = 0;
        return MOLD_OK;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    MOLD_TRY(mold_qwenimage_tokenize_prompt(c->e->tok, prompt, strlen(prompt), &ids, &n));
    free(ids);
    int len = (int)n - MOLD_QWENIMAGE_DROP_TOKENS;
    *n_cond = len < 1 ? 1 : (len > MOLD_QWENIMAGE_MAX_TOKENS ? MOLD_QWENIMAGE_MAX_TOKENS : len);
    *n_ids = (int)n;
    return MOLD_OK;
}

/* Makes this request's plan (plan.h) from its shape and token counts. */
static mold_status plan_request(run_ctx *c) {
    const mold_request *r = c->r;
    bool cfg = r->guidance > 1.0f;
    mold_plan_request pr = {.width = r->width, .height = r->height, .steps = r->steps,
                            .cfg = cfg, .vae_tile = r->vae_tile, .cfg_batch = r->cfg_batch};
    int ids_neg = 0;
    if (cfg) MOLD_TRY(prompt_tokens(c, r->negative_prompt ? r->negative_prompt : " ",
                                    &pr.n_txt_neg, &ids_neg));
    MOLD_TRY(prompt_tokens(c, r->prompt, &pr.n_txt_pos, &pr.n_encode));
    if (ids_neg > pr.n_encode) pr.n_encode = ids_neg;
    return mold_engine_plan(c->e, &pr, &c->plan);
}

/* Tokenizer, plan, then what the plan loads before the first stage. */
static mold_status stage_load(run_ctx *c) {
    mold_engine *e = c->e;
    MOLD_TRY(mold_engine_need_tokenizer(e));
    MOLD_TRY(plan_request(c));
    c->hidden = e->md.text.hidden_size;
    if (e->md.dit.joint_attention_dim != c->hidden)
        return MOLD_ERR(MOLD_E_FORMAT, "transformer joint_attention_dim %d does not match the "
                        "text encoder hidden_size %d", e->md.dit.joint_attention_dim, c->hidden);
    return mold_engine_enter_stage(e, &c->plan,
                                   c->plan.encode ? MOLD_STAGE_ENCODE : MOLD_STAGE_DENOISE);
}

static mold_status run(run_ctx *c, mold_result *out) {
    const mold_request *r = c->r;
    double t0 = mold_now_ms();
    emit(c, MOLD_EV_STAGE_START, "load", 0, 0);
    MOLD_TRY(stage_load(c));
    out->times.load_ms = mold_now_ms() - t0;
    emit(c, MOLD_EV_STAGE_DONE, "load", 0, out->times.load_ms);

    t0 = mold_now_ms();
    emit(c, MOLD_EV_STAGE_START, "encode", 0, 0);
    bool cfg = r->guidance > 1.0f;
    const char *negative = r->negative_prompt ? r->negative_prompt : " ";
    const prompt_cache_entry *pos = NULL, *neg = NULL;
    /* Encode the negative first: its cache slot must not evict the prompt's. */
    if (cfg) MOLD_TRY(encode_one(c, negative, &neg));
    MOLD_TRY(encode_one(c, r->prompt, &pos));
    if (cfg) neg = mold_prompt_cache_get(c->e, negative); /* re-fetch after insertion */
    MOLD_TRY(trace_prompt(c, pos, "prompt_ids", "prompt_embeds"));
    if (cfg) MOLD_TRY(trace_prompt(c, neg, "negative_ids", "negative_embeds"));
    if (c->plan.encode) mold_engine_stage_done(c->e, &c->plan, MOLD_STAGE_ENCODE);
    out->times.encode_ms = mold_now_ms() - t0;
    emit(c, MOLD_EV_STAGE_DONE, "encode", 0, out->times.encode_ms);

    t0 = mold_now_ms();
    emit(c, MOLD_EV_STAGE_START, "denoise", 0, 0);
    size_t n = (size_t)c->n_img * PACKED_DIM;
    float *x = malloc(n * sizeof(float));
    if (!x) return MOLD_ERR(MOLD_E_NOMEM, "latents: out of memory");
    mold_status st = mold_engine_enter_stage(c->e, &c->plan, MOLD_STAGE_DENOISE);
    if (st == MOLD_OK) st = make_noise(c, x);
    int64_t shape[3] = {1, c->n_img, PACKED_DIM};
    if (st == MOLD_OK) st = mold_trace_add(c->trace, "noise_packed", MOLD_F32, 3, shape, x);
    if (st == MOLD_OK) st = denoise(c, pos, neg, x);
    if (st == MOLD_OK) mold_engine_stage_done(c->e, &c->plan, MOLD_STAGE_DENOISE);
    out->times.denoise_ms = mold_now_ms() - t0;
    if (st == MOLD_OK) emit(c, MOLD_EV_STAGE_DONE, "denoise", 0, out->times.denoise_ms);

    if (st == MOLD_OK) {
        t0 = mold_now_ms();
        emit(c, MOLD_EV_STAGE_START, "decode", 0, 0);
        st = mold_engine_enter_stage(c->e, &c->plan, MOLD_STAGE_DECODE);
        if (st == MOLD_OK) st = decode(c, x, out);
        if (st == MOLD_OK) mold_engine_stage_done(c->e, &c->plan, MOLD_STAGE_DECODE);
        out->times.decode_ms = mold_now_ms() - t0;
        if (st == MOLD_OK) emit(c, MOLD_EV_STAGE_DONE, "decode", 0, out->times.decode_ms);
    }
    free(x);
    if (st == MOLD_OK) mold_engine_leave(c->e, &c->plan);
    return st;
}

mold_result_code mold_generate(mold_engine *e, const mold_request *r, mold_progress_fn progress,
                               void *ud, mold_result *out) {
    memset(out, 0, sizeof *out);
    MOLD_TRY(mold_request_validate(r));
    run_ctx c = {.e = e, .r = r, .progress = progress, .ud = ud, .tok_h = r->height / 16,
                 .tok_w = r->width / 16};
    c.n_img = c.tok_h * c.tok_w;
    out->seed = r->seed;
    mold_status st = MOLD_OK;
    if (r->dump_dir) st = mold_trace_create(&c.trace);
    if (st == MOLD_OK) st = run(&c, out);
    if (st == MOLD_OK && c.trace) st = mold_trace_write(c.trace, r->dump_dir);
    mold_trace_free(c.trace);
    if (st != MOLD_OK) mold_result_free(out);
    else out->seed = r->seed;
    return st;
}
