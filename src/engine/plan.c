/*
 * plan.c — the planner (contract in plan.h): enumerates the few ways the
 * three components can share memory, predicts every stage's peak for each,
 * and keeps the cheapest arrangement that fits.
 *
 * Pure: no I/O, no globals, no backend calls; the only callees are the
 * models' own memory functions (*_weight_bytes / *_workspace_bytes), which
 * are arithmetic on the configs.
 *
 * Search. A candidate is (text-encoder option, transformer option, VAE
 * option, CFG batch); the VAE mode of a candidate is the whole-image decode
 * when it fits, else the largest tile >= policy.min_vae_tile that fits (the
 * decode need grows with the tile, so a binary search finds it). Each
 * candidate has a cost, a sum of penalties for what it gives up:
 *
 *   | compromise                                  | penalty                       |
 *   |---------------------------------------------|-------------------------------|
 *   | cond/uncond as two forwards (cfg_batch 1)   | 3                             |
 *   | tiled decode                                | 2 + 64 / tile                 |
 *   | text encoder not kept after the request     | R(text)                       |
 *   | text encoder on the host CPU                | 6 (slow encode per new prompt)|
 *   | transformer not kept after the request      | R(dit)                        |
 *   | resident transformer evicted for the encode | 20 (reloaded in this request) |
 *   | resident VAE evicted before its stage       | 1                             |
 *   | transformer on the host CPU                 | 1000                          |
 *
 * R(c) is a reload on the next request: 10 (text), 20 (dit) with
 * policy.keep_resident (server, batches), else 0.1 (one-shot runs lose
 * nothing). Ties go to the first candidate in enumeration order (keep
 * everything, batch 2). So a one-shot run on a small card frees the text
 * encoder before the transformer loads, while a server prefers the text
 * encoder on the host to reloading it on every new prompt.
 *
 * bf16 holds (CUDA). Block-format matrices cost a dequantization into bf16
 * scratch on every matmul (at the text encoder's 66-162 rows it dominates).
 * The cheapest candidate found with matrices as stored is then re-evaluated
 * with bf16 holds (facts.w[c].bytes_bf16), in the order transformer + text
 * encoder, transformer, text encoder, against the budget less
 * policy.hold_margin_bytes; the first that fits at no higher cost (a holding
 * that forces a smaller VAE tile is refused) is taken. A resident component
 * keeps the hold it was loaded with.
 *
 * Backend scratch (CUDA). Besides the models' workspaces, the CUDA backend
 * grows one scratch buffer for per-op temporaries and never shrinks it
 * (src/backend/cuda/cuda_backend.cu mold_cuda_scratch: size + 1/8). The
 * estimate below mirrors its users: matmul (bf16 copy of the activations,
 * plus a bf16 copy of a block-quantized weight, or of an f32 one from 128
 * rows: below, f32 weights take the exact GEMM and no scratch), the fused MLP (the bf16
 * hidden and x live in the model's own scratch: only a bf16 copy of a
 * block-quantized weight), attention (bf16 q, k, v;
 * plus the score chunk when the head dim rules out the flash kernel) and
 * conv2d (im2col chunks of at most 256 MiB, plus a bf16 copy of non-bf16
 * kernels; the 3x3 pad-1 convs and conv3x3_fused instead pack their input
 * to bf16 and re-lay the kernel: conv_pack_scratch). Change them together.
 * Held weights skip the bf16 weight copy, so the matmul terms are upper
 * bounds.
 */
#include "plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "models/qwen25_text.h"   /* defines: mold_text_encoder_workspace_bytes */
#include "models/qwenimage_dit.h" /* defines: mold_dit_workspace_bytes */
#include "models/qwenimage_vae.h" /* defines: mold_vae_workspace_bytes */

#define MIB ((uint64_t)1 << 20)
#define LATENT_CH 16
#define PACKED_DIM 64

/* mirrors of the CUDA backend's constants (cuda_common.cuh, conv.cu, attention.cu,
 * matmul.cuh) */
#define CUDA_CONV_COL_BYTES (256 * MIB)
#define CUDA_ATTN_GEMM_SCRATCH (512 * MIB)
#define CUDA_F32_BF16_MIN_M 128

/* ------------------------------------------------------------------------ */
/* ---- names and defaults ---- */

const char *mold_plan_comp_name(mold_plan_comp c) {
    static const char *names[MOLD_COMP_COUNT] = {"text_encoder", "transformer", "vae"};
    return (unsigned)c < MOLD_COMP_COUNT ? names[c] : "?";
}

const char *mold_plan_stage_name(mold_plan_stage s) {
    static const char *names[MOLD_STAGE_COUNT] = {"encode", "denoise", "decode"};
    return (unsigned)s < MOLD_STAGE_COUNT ? names[s] : "?";
}

mold_plan_policy mold_plan_policy_default(void) {
    mold_plan_policy p;
    memset(&p, 0, sizeof p);
    p.headroom_bytes = 256 * MIB;
    p.headroom_frac = 0.02;
    p.host_headroom_bytes = 1024 * MIB;
    p.host_headroom_frac = 0.02;
    p.allow_host_text = true;
    p.min_vae_tile = 32;
    p.hold_margin_bytes = 4096 * MIB;
    return p;
}

/* ------------------------------------------------------------------------ */
/* ---- backend scratch model (CUDA) ---- */

static uint64_t a256(uint64_t b) { return (b + 255) & ~(uint64_t)255; }
static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* What mold_cuda_scratch() allocates for a request of b bytes. */
static uint64_t scratch_grown(uint64_t b) { return b ? a256(b + b / 8) : 0; }

/* f32 weights below CUDA_F32_BF16_MIN_M rows: the exact f32 GEMM, no scratch. */
static bool f32_exact(mold_dtype w, uint64_t m) {
    return w == MOLD_F32 && m < CUDA_F32_BF16_MIN_M;
}

/* matmul y[m, n_out] = x[m, k] W^T: a bf16 x, and a bf16 W as well for block
 * formats and (large m) f32 (f16 weights are bf16 on CUDA). */
static uint64_t mm_scratch(mold_dtype w, uint64_t m, uint64_t k, uint64_t n_out) {
    if (f32_exact(w, m)) return 0;
    uint64_t s = a256(m * k * 2) + (w != MOLD_BF16 ? a256(n_out * k * 2) : 0);
    if (m >= 1 && m <= 64 && k % 32 == 0) { /* matmul_small.cu: + k-split partials */
        uint64_t splits = min_u64(32, k / 256);
        s += splits > 1 ? splits * m * n_out * 4 : 0;
    }
    return s;
}

/* mlp_gelu (src/backend/cuda/mlp.cu) on m rows, D -> F -> D: the bf16
 * hidden [m, F] and x [m, D] share the caller's f32 [m, F] buffer when they
 * fit (else x takes scratch), plus one bf16 copy of a non-bf16 weight (W1
 * and W2 have the same size). f32 weights at small m keep the exact
 * composition. */
static uint64_t mlp_scratch(mold_dtype w, uint64_t m, uint64_t d, uint64_t f) {
    if (f32_exact(w, m)) return 0;
    if (m <= 64 && d % 32 == 0 && f % 32 == 0) /* few rows: two plain matmuls */
        return max_u64(mm_scratch(w, m, d, f), mm_scratch(w, m, f, d));
    uint64_t x = a256(m * f * 2) + m * d * 2 <= m * f * 4 ? 0 : a256(m * d * 2);
    return x + (w != MOLD_BF16 ? a256(f * d * 2) : 0);
}

static uint64_t attn_scratch(uint64_t sq, uint64_t skv, uint64_t hq, uint64_t hkv, uint64_t d) {
    /* head dim 128 on Hopper: K and V^T rows padded to 64 keys (attention.cu) */
    const uint64_t skv_p = d == 128 ? (skv + 63) / 64 * 64 : skv;
    uint64_t s = a256(sq * hq * d * 2) + 2 * a256(skv_p * hkv * d * 2);
    if (!(d % 16 == 0 && d <= 128)) { /* GEMM path: a chunk of scores */
        uint64_t extra = max_u64(skv * 6 + 1024, CUDA_ATTN_GEMM_SCRATCH);
        s += min_u64(extra, sq * skv * 6 + 1024);
    }
    return s;
}

/* Bound over the decoder's 3x3 convs: the largest im2col chunk (K = 9 c_max
 * columns over P output pixels) and a bf16 copy of an f32 kernel. */
static uint64_t conv_scratch(mold_dtype w, uint64_t c_max, uint64_t p_max) {
    uint64_t K = 9 * c_max;
    uint64_t chunk = CUDA_CONV_COL_BYTES / (K * 2);
    chunk = chunk < 256 ? 256 : chunk / 256 * 256;
    chunk = min_u64(chunk, p_max);
    uint64_t wb = (w == MOLD_BF16 || w == MOLD_F16) ? 0 : a256(c_max * K * 2);
    return a256(K * chunk * 2) + wb;
}

/* The packed 3x3 path (conv.cu conv3x3_packed): the input packed to bf16
 * (in_max elements, mold_vae_conv3x3_input_max), the re-laid kernel
 * (chunks of 16 input channels x 9 taps x couts padded to the tile, at most
 * 96 more) and a bf16 copy of a block-format kernel. */
static uint64_t conv_pack_scratch(mold_dtype w, uint64_t c_max, uint64_t in_max) {
    uint64_t c16 = (c_max + 15) / 16 * 16;
    bool plain = w == MOLD_BF16 || w == MOLD_F16 || w == MOLD_F32;
    uint64_t wb = plain ? 0 : a256(c_max * 9 * c_max * 2);
    return a256(in_max * 2) + a256(c16 * 9 * (c_max + 96) * 2) + wb;
}

/* ------------------------------------------------------------------------ */
/* ---- stage demands (everything but the weights) ---- */

/* One stage's demand apart from weights. For the CPU pool everything adds
 * up; on CUDA dev_* is device memory and host is RAM. */
typedef struct demand {
    uint64_t ws;      /* model workspace */
    uint64_t scratch; /* backend scratch this stage asks for (before the running max) */
    uint64_t bufs;    /* engine buffers in backend memory */
    uint64_t host;    /* malloc'd host memory of the stage */
} demand;

typedef struct ctx {
    const mold_plan_request *rq;
    const mold_model_facts *f;
    const mold_plan_policy *pol;
    bool cuda;
    bool encode;
    int n_img, n_txt, lh, lw, n_pass;
    demand enc;          /* text encoder (device or host alike) */
    demand den[3];       /* by cfg batch 1, 2 */
    uint64_t budget, host_budget;
    uint64_t dev_free, dev_resident, dev_headroom; /* for messages */
    uint64_t host_free, host_headroom;
    unsigned hold;       /* bit c: hold component c's matrices as bf16 */
} ctx;

static mold_status encode_demand(ctx *x) {
    const mold_text_config *t = &x->f->text;
    uint64_t n = (uint64_t)x->rq->n_encode, H = (uint64_t)t->hidden_size;
    size_t ws = mold_text_encoder_workspace_bytes(t, 1, x->rq->n_encode);
    if (ws == SIZE_MAX)
        return MOLD_ERR(MOLD_E_INVALID, "plan: text encoder workspace for %d tokens: invalid "
                        "config or size", x->rq->n_encode);
    x->enc.ws = ws;
    /* host: ids + mask, the [n, H] output, the conditioning copy */
    x->enc.host = n * 8 + 2 * n * H * 4;
    if (x->cuda) {
        mold_dtype w = x->f->w[MOLD_COMP_TEXT].matrix_dtype;
        uint64_t hd = (uint64_t)t->head_dim, hq = (uint64_t)t->num_attention_heads * hd;
        uint64_t I = (uint64_t)t->intermediate_size;
        uint64_t s = max_u64(mm_scratch(w, n, H, I), mm_scratch(w, n, I, H));
        s = max_u64(s, mm_scratch(w, n, H, hq));
        s = max_u64(s, attn_scratch(n, n, (uint64_t)t->num_attention_heads,
                                    (uint64_t)t->num_key_value_heads, hd));
        x->enc.scratch = scratch_grown(s);
    }
    return MOLD_OK;
}

/* Denoise buffers as generate.c allocates them: x [N, 64], the DiT input
 * [batch, N, 64], the velocities [n_pass, N, 64], the text [n_pass, L, J]. */
static mold_status denoise_demand(ctx *x, int batch, demand *d) {
    const mold_dit_config *c = &x->f->dit;
    uint64_t N = (uint64_t)x->n_img, L = (uint64_t)x->n_txt, J = (uint64_t)c->joint_attention_dim;
    uint64_t ws = 0, hs = 0;
    MOLD_TRY(mold_dit_workspace_bytes(c, x->n_img, x->n_txt, batch, &ws));
    MOLD_TRY(mold_dit_host_scratch_bytes(c, x->n_img, x->n_txt, batch, &hs));
    uint64_t np = (uint64_t)x->n_pass, B = (uint64_t)batch;
    d->ws = ws;
    d->bufs = a256(N * PACKED_DIM * 4) + a256(B * N * PACKED_DIM * 4) +
              a256(np * N * PACKED_DIM * 4) + a256(np * L * J * 4);
    /* host: the latents, the text staging of upload_text, the DiT's scratch */
    d->host = N * PACKED_DIM * 4 + np * L * J * 4 + hs;
    if (x->cuda) {
        mold_dtype w = x->f->w[MOLD_COMP_DIT].matrix_dtype;
        uint64_t hd = (uint64_t)c->attention_head_dim, H = (uint64_t)c->num_attention_heads;
        uint64_t D = H * hd, F = 4 * D, S = N + L;
        uint64_t in = (uint64_t)c->in_channels;
        uint64_t out = (uint64_t)c->patch_size * (uint64_t)c->patch_size * (uint64_t)c->out_channels;
        uint64_t s = max_u64(mlp_scratch(w, B * N, D, F), mlp_scratch(w, B * L, D, F));
        s = max_u64(s, mm_scratch(w, max_u64(N, L), D, D)); /* q k v out, one sample */
        s = max_u64(s, mm_scratch(w, B * N, in, D));        /* img_in */
        s = max_u64(s, mm_scratch(w, B * N, D, out));       /* proj_out */
        s = max_u64(s, mm_scratch(w, B * L, J, D));         /* txt_in */
        s = max_u64(s, mm_scratch(w, B, D, 6 * D));         /* modulation */
        s = max_u64(s, attn_scratch(S, S, H, H, hd));
        d->scratch = scratch_grown(s);
    }
    return MOLD_OK;
}

/* Decode of the whole latent (tile 0) or in tiles of `tile`. */
static mold_status decode_demand(const ctx *x, int tile, demand *d) {
    const mold_vae_config *v = &x->f->vae;
    memset(d, 0, sizeof *d);
    mold_vae_tiling t = {tile, tile / 4};
    uint64_t ws = 0;
    /* the CUDA backend has conv3x3_fused: the VAE's fused path (smaller) */
    MOLD_TRY(mold_vae_workspace_bytes(v, x->lh, x->lw, tile ? &t : NULL, x->cuda, &ws));
    uint64_t S = (uint64_t)mold_vae_scale(v), hw = (uint64_t)x->lh * x->lw * S * S;
    uint64_t th = tile && tile < x->lh ? (uint64_t)tile : (uint64_t)x->lh;
    uint64_t tw = tile && tile < x->lw ? (uint64_t)tile : (uint64_t)x->lw;
    d->ws = ws;
    /* host: z, the f32 image, image_float, rgb; tiled: the staging of the header */
    d->host = (uint64_t)LATENT_CH * x->lh * x->lw * 4 + 3 * hw * 4 * 2 + 3 * hw;
    if (tile)
        d->host += 4 * ((uint64_t)v->z_dim * th * tw + 3 * S * S * th * tw +
                        S * (uint64_t)(x->lh + x->lw));
    if (x->cuda) {
        uint64_t c_max = 0;
        for (int i = 0; i < v->n_dim_mult; i++)
            c_max = max_u64(c_max, (uint64_t)v->base_dim * (uint64_t)v->dim_mult[i]);
        uint64_t c0 = (uint64_t)v->base_dim * (uint64_t)v->dim_mult[v->n_dim_mult - 1];
        mold_dtype w = x->f->w[MOLD_COMP_VAE].matrix_dtype;
        uint64_t in_max = 0;
        MOLD_TRY(mold_vae_conv3x3_input_max(v, x->lh, x->lw, tile ? &t : NULL, &in_max));
        uint64_t s = max_u64(conv_scratch(w, c_max, th * tw * S * S),
                             conv_pack_scratch(w, c_max, in_max));
        s = max_u64(s, attn_scratch(th * tw, th * tw, 1, 1, c0));
        s = max_u64(s, mm_scratch(w, th * tw, c0, c0));
        d->scratch = scratch_grown(s);
    }
    return MOLD_OK;
}

/* ------------------------------------------------------------------------ */
/* ---- candidates ---- */

typedef enum te_opt { TE_KEEP, TE_DROP, TE_HOST, TE_N } te_opt;
typedef enum dit_opt { DIT_ALL, DIT_LATE, DIT_EARLY, DIT_ONLY, DIT_HOST, DIT_N } dit_opt;
typedef enum vae_opt { VAE_ALL, VAE_LATE, VAE_N } vae_opt;

/* Liveness by stage (encode, denoise, decode). */
static const bool TE_LIVE[TE_N][3] = {{1, 1, 1}, {1, 0, 0}, {1, 1, 1}};
static const bool DIT_LIVE[DIT_N][3] = {{1, 1, 1}, {0, 1, 1}, {1, 1, 0}, {0, 1, 0}, {1, 1, 1}};
static const bool VAE_LIVE[VAE_N][3] = {{1, 1, 1}, {0, 0, 1}};

typedef struct cand {
    te_opt te;
    dit_opt dit;
    vae_opt vae;
    int batch;
} cand;

/* How far a candidate misses (for the error of a plan that cannot fit). */
typedef struct miss {
    uint64_t short_by;   /* worst over stages and pools */
    int stage;
    bool host_pool;
    uint64_t need, budget, weights, ws, scratch, bufs;
} miss;

static bool resident_dev(const ctx *x, mold_plan_comp c) {
    return x->f->w[c].resident && !x->f->w[c].on_host;
}
static bool resident_host(const ctx *x, mold_plan_comp c) {
    return x->f->w[c].resident && x->f->w[c].on_host;
}

/* False for options that make no sense for this request and machine. */
static bool cand_valid(const ctx *x, const cand *c) {
    if (c->te == TE_HOST && !(x->cuda && (x->pol->allow_host_text || resident_host(x, MOLD_COMP_TEXT))))
        return false;
    if (c->dit == DIT_HOST && !(x->cuda && x->pol->allow_host_dit)) return false;
    if (!x->encode) {
        /* no encode: the text encoder is only kept where it is, or dropped */
        if (c->te == TE_KEEP && !resident_dev(x, MOLD_COMP_TEXT)) return false;
        if (c->te == TE_HOST && !resident_host(x, MOLD_COMP_TEXT)) return false;
        /* without an encode stage these differ from ALL / EARLY only in name */
        if (c->dit == DIT_LATE || c->dit == DIT_ONLY) return false;
    }
    if (x->rq->cfg_batch && c->batch != x->rq->cfg_batch) return false;
    return true;
}

static double reload_penalty(const ctx *x, double big) { return x->pol->keep_resident ? big : 0.1; }

static double cand_cost(const ctx *x, const cand *c) {
    double cost = 0;
    bool te_present = x->encode || x->f->w[MOLD_COMP_TEXT].resident;
    if (c->te == TE_DROP && te_present) cost += reload_penalty(x, 10);
    if (c->te == TE_HOST && x->encode) cost += 6;
    if (!DIT_LIVE[c->dit][MOLD_STAGE_DECODE]) cost += reload_penalty(x, 20);
    if (x->encode && !DIT_LIVE[c->dit][MOLD_STAGE_ENCODE] && resident_dev(x, MOLD_COMP_DIT))
        cost += 20;
    if (c->vae == VAE_LATE && resident_dev(x, MOLD_COMP_VAE)) cost += 1;
    if (c->dit == DIT_HOST) cost += 1000;
    if (x->rq->cfg && c->batch == 1) cost += 3;
    return cost;
}

/* Fills the component part of the plan for candidate c. */
static void cand_components(const ctx *x, const cand *c, mold_plan *p) {
    const bool *live[3] = {TE_LIVE[c->te], DIT_LIVE[c->dit], VAE_LIVE[c->vae]};
    bool host[3] = {c->te == TE_HOST, c->dit == DIT_HOST, false};
    for (int i = 0; i < MOLD_COMP_COUNT; i++) {
        mold_plan_component *pc = &p->comp[i];
        memset(pc, 0, sizeof *pc);
        pc->used = i != MOLD_COMP_TEXT || x->encode;
        pc->place = host[i] ? MOLD_PLACE_HOST : MOLD_PLACE_DEVICE;
        pc->hold = x->f->w[i].resident ? x->f->w[i].hold : MOLD_HOLD_STORED;
        pc->matrix_dtype = x->f->w[i].matrix_dtype;
        pc->weight_bytes = x->f->w[i].bytes;
        if ((x->hold >> i & 1u) && !x->f->w[i].resident && !host[i] &&
            x->f->w[i].bytes_bf16 > 0) {
            pc->hold = MOLD_HOLD_BF16;
            pc->weight_bytes = x->f->w[i].bytes_bf16;
        }
        for (int s = 0; s < MOLD_STAGE_COUNT; s++) pc->live[s] = live[i][s];
        pc->keep = live[i][MOLD_STAGE_DECODE];
    }
    /* a text encoder that neither runs nor is resident holds nothing */
    if (!x->encode && !x->f->w[MOLD_COMP_TEXT].resident) {
        memset(p->comp[MOLD_COMP_TEXT].live, 0, sizeof p->comp[MOLD_COMP_TEXT].live);
        p->comp[MOLD_COMP_TEXT].keep = false;
    }
    if (!x->encode && c->te == TE_DROP) {
        memset(p->comp[MOLD_COMP_TEXT].live, 0, sizeof p->comp[MOLD_COMP_TEXT].live);
        p->comp[MOLD_COMP_TEXT].keep = false;
    }
}

/* Weight bytes live in stage s, on the device pool or on the host pool. */
static uint64_t live_weights(const mold_plan *p, int s, mold_plan_place where) {
    uint64_t n = 0;
    for (int i = 0; i < MOLD_COMP_COUNT; i++)
        if (p->comp[i].live[s] && p->comp[i].place == where) n += p->comp[i].weight_bytes;
    return n;
}

static void note_miss(miss *m, int stage, bool host_pool, uint64_t need, uint64_t budget,
                      uint64_t weights, const demand *d, uint64_t scratch) {
    if (need <= budget || need - budget <= m->short_by) return;
    m->short_by = need - budget;
    m->stage = stage;
    m->host_pool = host_pool;
    m->need = need;
    m->budget = budget;
    m->weights = weights;
    m->ws = d->ws;
    m->scratch = scratch;
    m->bufs = d->bufs;
}

/* Predicts stage s of plan p with demand d (stage comp placed at `where`).
 * *scratch_run is the backend scratch held so far (it only grows). Returns
 * whether both pools fit; records the miss otherwise. */
static bool stage_fit(const ctx *x, mold_plan *p, int s, const demand *d, mold_plan_place where,
                      uint64_t *scratch_run, miss *m) {
    uint64_t w_dev = live_weights(p, s, MOLD_PLACE_DEVICE);
    uint64_t w_host = live_weights(p, s, MOLD_PLACE_HOST);
    p->workspace[s] = d->ws;
    p->buffers[s] = d->bufs;
    if (!x->cuda) { /* one pool */
        p->scratch[s] = 0;
        p->peak[s] = w_dev + d->ws + d->bufs + d->host;
        p->host_peak[s] = p->peak[s];
        note_miss(m, s, false, p->peak[s], x->budget, w_dev, d, 0);
        return p->peak[s] <= x->budget;
    }
    if (where == MOLD_PLACE_DEVICE) {
        *scratch_run = max_u64(*scratch_run, d->scratch);
        p->scratch[s] = *scratch_run;
        p->peak[s] = w_dev + d->ws + d->bufs + *scratch_run;
        p->host_peak[s] = w_host + d->host;
    } else { /* the stage runs on the host CPU backend */
        p->scratch[s] = *scratch_run;
        p->peak[s] = w_dev + *scratch_run;
        p->host_peak[s] = w_host + d->ws + d->bufs + d->host;
    }
    note_miss(m, s, false, p->peak[s], x->budget, w_dev, d, p->scratch[s]);
    note_miss(m, s, true, p->host_peak[s], x->host_budget, w_host, d, 0);
    return p->peak[s] <= x->budget && p->host_peak[s] <= x->host_budget;
}

/* Largest tile in [lo, hi] whose decode fits (need is monotone in the tile);
 * 0 when none does. */
static int largest_tile(const ctx *x, mold_plan *p, uint64_t scratch_run, int lo, int hi) {
    int best = 0;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        demand d;
        uint64_t sr = scratch_run;
        miss m = {0};
        if (decode_demand(x, mid, &d) == MOLD_OK &&
            stage_fit(x, p, MOLD_STAGE_DECODE, &d, MOLD_PLACE_DEVICE, &sr, &m)) {
            best = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return best;
}

/* Evaluates candidate c into p. Returns true when every stage fits. */
static bool cand_eval(const ctx *x, const cand *c, mold_plan *p, miss *m) {
    memset(p, 0, sizeof *p);
    p->kind = x->cuda ? MOLD_PLAN_DEV_CUDA : MOLD_PLAN_DEV_CPU;
    p->encode = x->encode;
    p->cfg = x->rq->cfg;
    p->cfg_batch = c->batch;
    p->n_img = x->n_img;
    p->n_txt = x->n_txt;
    p->budget = x->budget;
    p->host_budget = x->host_budget;
    cand_components(x, c, p);
    bool ok = true;
    uint64_t scratch_run = 0;
    if (x->encode)
        ok &= stage_fit(x, p, MOLD_STAGE_ENCODE, &x->enc, p->comp[MOLD_COMP_TEXT].place,
                        &scratch_run, m);
    ok &= stage_fit(x, p, MOLD_STAGE_DENOISE, &x->den[c->batch], p->comp[MOLD_COMP_DIT].place,
                    &scratch_run, m);
    /* decode: the forced tile, else whole, else the largest tile that fits */
    int side = x->lh > x->lw ? x->lh : x->lw, tile = x->rq->vae_tile;
    demand d;
    if (!tile) {
        if (decode_demand(x, 0, &d) != MOLD_OK) return false;
        uint64_t sr = scratch_run;
        miss mm = {0};
        if (!stage_fit(x, p, MOLD_STAGE_DECODE, &d, MOLD_PLACE_DEVICE, &sr, &mm)) {
            int lo = x->pol->min_vae_tile < 1 ? 1 : x->pol->min_vae_tile;
            tile = largest_tile(x, p, scratch_run, lo, side - 1);
            if (!tile) tile = lo; /* the smallest tile, to report what it misses by */
        }
    }
    if (decode_demand(x, tile, &d) != MOLD_OK) return false;
    ok &= stage_fit(x, p, MOLD_STAGE_DECODE, &d, MOLD_PLACE_DEVICE, &scratch_run, m);
    p->vae_tile = tile;
    p->vae_overlap = tile / 4;
    p->cost = cand_cost(x, c) + (tile ? 2.0 + 64.0 / tile : 0.0);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* ---- inputs ---- */

static uint64_t headroom(uint64_t bytes, double frac, uint64_t total) {
    return bytes + (uint64_t)(frac * (double)total);
}

static uint64_t sat_sub(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

static mold_status check_inputs(const mold_plan_request *r, const mold_model_facts *f,
                                const mold_device_snapshot *dev, const mold_plan_policy *pol) {
    if (!r || !f || !dev || !pol) return MOLD_ERR(MOLD_E_INVALID, "plan: NULL argument");
    if (r->width < 16 || r->width % 16 || r->height < 16 || r->height % 16)
        return MOLD_ERR(MOLD_E_INVALID, "plan: size: expected positive multiples of 16, got %dx%d",
                        r->width, r->height);
    if (r->n_txt_pos < 1 || r->n_txt_pos > 1024 || (r->cfg && (r->n_txt_neg < 1 ||
                                                                r->n_txt_neg > 1024)))
        return MOLD_ERR(MOLD_E_INVALID, "plan: text tokens: expected 1..1024, got %d and %d",
                        r->n_txt_pos, r->n_txt_neg);
    if (r->n_encode < 0 || r->n_encode > MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS)
        return MOLD_ERR(MOLD_E_INVALID, "plan: n_encode: expected 0..%d, got %d",
                        MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS, r->n_encode);
    if (r->vae_tile < 0) return MOLD_ERR(MOLD_E_INVALID, "plan: vae_tile: expected >= 0, got %d",
                                         r->vae_tile);
    if (!(r->cfg_batch == 0 || r->cfg_batch == 1 || (r->cfg_batch == 2 && r->cfg)))
        return MOLD_ERR(MOLD_E_INVALID, "plan: cfg_batch: expected 0, 1%s, got %d",
                        r->cfg ? " or 2" : " (no guidance)", r->cfg_batch);
    if (dev->kind != MOLD_PLAN_DEV_CPU && dev->kind != MOLD_PLAN_DEV_CUDA)
        return MOLD_ERR(MOLD_E_INVALID, "plan: device kind: expected cpu or cuda, got %d",
                        (int)dev->kind);
    if (!(pol->headroom_frac >= 0.0 && pol->headroom_frac < 1.0) ||
        !(pol->host_headroom_frac >= 0.0 && pol->host_headroom_frac < 1.0))
        return MOLD_ERR(MOLD_E_INVALID, "plan: headroom_frac: expected 0..1, got %g (host %g)",
                        pol->headroom_frac, pol->host_headroom_frac);
    if (f->w[MOLD_COMP_DIT].bytes == 0 || f->w[MOLD_COMP_VAE].bytes == 0 ||
        (r->n_encode > 0 && f->w[MOLD_COMP_TEXT].bytes == 0))
        return MOLD_ERR(MOLD_E_INVALID, "plan: weight bytes: expected > 0, got text %llu, "
                        "transformer %llu, vae %llu",
                        (unsigned long long)f->w[MOLD_COMP_TEXT].bytes,
                        (unsigned long long)f->w[MOLD_COMP_DIT].bytes,
                        (unsigned long long)f->w[MOLD_COMP_VAE].bytes);
    return MOLD_OK;
}

static mold_status ctx_init(ctx *x, const mold_plan_request *r, const mold_model_facts *f,
                            const mold_device_snapshot *dev, const mold_plan_policy *pol) {
    memset(x, 0, sizeof *x);
    x->rq = r;
    x->f = f;
    x->pol = pol;
    x->cuda = dev->kind == MOLD_PLAN_DEV_CUDA;
    x->encode = r->n_encode > 0;
    x->n_img = (r->height / 16) * (r->width / 16);
    x->lh = r->height / 8;
    x->lw = r->width / 8;
    x->n_txt = r->cfg && r->n_txt_neg > r->n_txt_pos ? r->n_txt_neg : r->n_txt_pos;
    x->n_pass = r->cfg ? 2 : 1;
    x->host_free = dev->host_free;
    x->host_headroom = x->cuda ? headroom(pol->host_headroom_bytes, pol->host_headroom_frac,
                                          dev->host_total)
                               : headroom(pol->headroom_bytes, pol->headroom_frac,
                                          dev->host_total);
    x->host_budget = sat_sub(dev->host_free, x->host_headroom);
    if (x->cuda) {
        for (int i = 0; i < MOLD_COMP_COUNT; i++)
            if (resident_dev(x, (mold_plan_comp)i)) x->dev_resident += f->w[i].bytes;
        x->dev_free = dev->dev_free;
        x->dev_headroom = headroom(pol->headroom_bytes, pol->headroom_frac, dev->dev_total);
        x->budget = sat_sub(dev->dev_free + x->dev_resident, x->dev_headroom);
    } else {
        /* CPU: weights are views of mapped files, which MemAvailable already
         * counts as reclaimable cache: nothing to add back */
        x->dev_free = dev->host_free;
        x->dev_headroom = x->host_headroom;
        x->budget = x->host_budget;
    }
    if (x->encode) MOLD_TRY(encode_demand(x));
    MOLD_TRY(denoise_demand(x, 1, &x->den[1]));
    if (r->cfg) MOLD_TRY(denoise_demand(x, 2, &x->den[2]));
    demand d;
    return decode_demand(x, r->vae_tile, &d); /* validates the latent size and tile */
}

/* ------------------------------------------------------------------------ */
/* ---- the search ---- */

static double gib(uint64_t b) { return (double)b / (double)(1ull << 30); }

static mold_status no_fit(const ctx *x, const miss *m) {
    static const mold_plan_comp owner[3] = {MOLD_COMP_TEXT, MOLD_COMP_DIT, MOLD_COMP_VAE};
    const char *pool = m->host_pool ? "host RAM" : (x->cuda ? "the CUDA device" : "RAM");
    uint64_t free_b = m->host_pool ? x->host_free : x->dev_free;
    uint64_t back = m->host_pool ? 0 : x->dev_resident;
    uint64_t hr = m->host_pool ? x->host_headroom : x->dev_headroom;
    return MOLD_ERR(MOLD_E_NOMEM,
                    "plan: %s does not fit: the %s stage needs %.2f GiB of %s (weights %.2f, "
                    "workspace %.2f, scratch %.2f, buffers %.2f GiB) even in the least demanding "
                    "arrangement, but %.2f GiB are available (free %.2f + own resident %.2f - "
                    "headroom %.2f): short by %.2f GiB (%llu bytes)",
                    mold_plan_comp_name(owner[m->stage]), mold_plan_stage_name(m->stage),
                    gib(m->need), pool, gib(m->weights), gib(m->ws), gib(m->scratch),
                    gib(m->bufs), gib(m->budget), gib(free_b), gib(back),
                    gib(hr), gib(m->short_by), (unsigned long long)m->short_by);
}

/* Upgrades the chosen plan to bf16 holds where they fit (see the header). */
static void choose_holds(const ctx *x, const cand *c, mold_plan *out) {
    static const unsigned tries[] = {1u << MOLD_COMP_TEXT | 1u << MOLD_COMP_DIT,
                                     1u << MOLD_COMP_DIT, 1u << MOLD_COMP_TEXT};
    if (!x->cuda) return;
    ctx xh = *x;
    xh.budget = sat_sub(x->budget, x->pol->hold_margin_bytes);
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        bool any = false;
        for (int comp = 0; comp < MOLD_COMP_COUNT; comp++)
            if ((tries[i] >> comp & 1u) && !x->f->w[comp].resident &&
                x->f->w[comp].bytes_bf16 > 0 && out->comp[comp].used)
                any = true;
        if (!any) continue;
        xh.hold = tries[i];
        mold_plan p;
        miss m = {0};
        if (cand_eval(&xh, c, &p, &m) && p.cost <= out->cost) {
            p.budget = x->budget;
            *out = p;
            return;
        }
    }
}

mold_status mold_plan_make(const mold_plan_request *req, const mold_model_facts *facts,
                           const mold_device_snapshot *dev, const mold_plan_policy *policy,
                           mold_plan *out) {
    MOLD_TRY(check_inputs(req, facts, dev, policy));
    ctx x;
    MOLD_TRY(ctx_init(&x, req, facts, dev, policy));
    bool found = false;
    miss best_miss = {.short_by = UINT64_MAX};
    mold_plan p;
    cand best = {TE_KEEP, DIT_ALL, VAE_ALL, 1};
    for (int b = req->cfg ? 2 : 1; b >= 1; b--)
        for (int te = 0; te < TE_N; te++)
            for (int dt = 0; dt < DIT_N; dt++)
                for (int va = 0; va < VAE_N; va++) {
                    cand c = {(te_opt)te, (dit_opt)dt, (vae_opt)va, b};
                    if (!cand_valid(&x, &c)) continue;
                    miss m = {0};
                    if (cand_eval(&x, &c, &p, &m)) {
                        if (!found || p.cost < out->cost) *out = p, best = c;
                        found = true;
                    } else if (m.short_by < best_miss.short_by) {
                        best_miss = m;
                    }
                }
    if (found) {
        choose_holds(&x, &best, out);
        return MOLD_OK;
    }
    if (best_miss.short_by == UINT64_MAX)
        return MOLD_ERR(MOLD_E_INVALID, "plan: no arrangement is allowed for this request "
                        "(cfg_batch %d)", req->cfg_batch);
    return no_fit(&x, &best_miss);
}

/* ------------------------------------------------------------------------ */
/* ---- JSON ---- */

typedef struct jbuf {
    char *buf;
    size_t cap, len;
} jbuf;

static void jput(jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jput(jbuf *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = j->len < j->cap ? j->cap - j->len : 0;
    int n = vsnprintf(room ? j->buf + j->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) j->len += (size_t)n;
}

static const char *place_name(const mold_plan *p, mold_plan_place pl) {
    return pl == MOLD_PLACE_HOST || p->kind == MOLD_PLAN_DEV_CPU ? "cpu" : "cuda";
}

size_t mold_plan_to_json(const mold_plan *p, char *buf, size_t cap) {
    jbuf j = {buf, cap, 0};
    if (cap) buf[0] = 0;
    jput(&j, "{\"device\":\"%s\",\"budget\":%llu,", p->kind == MOLD_PLAN_DEV_CUDA ? "cuda" : "cpu",
         (unsigned long long)p->budget);
    if (p->kind == MOLD_PLAN_DEV_CUDA)
        jput(&j, "\"host_budget\":%llu,", (unsigned long long)p->host_budget);
    jput(&j, "\"cfg\":\"%s\",\"n_img\":%d,\"n_txt\":%d,",
         !p->cfg ? "off" : (p->cfg_batch == 2 ? "batch2" : "sequential"), p->n_img, p->n_txt);
    if (p->vae_tile)
        jput(&j, "\"vae\":{\"mode\":\"tiled\",\"tile\":%d,\"overlap\":%d},", p->vae_tile,
             p->vae_overlap);
    else
        jput(&j, "\"vae\":{\"mode\":\"full\"},");
    jput(&j, "\"components\":{");
    for (int i = 0; i < MOLD_COMP_COUNT; i++) {
        const mold_plan_component *c = &p->comp[i];
        char live[4];
        for (int s = 0; s < MOLD_STAGE_COUNT; s++) live[s] = c->live[s] ? "EDV"[s] : '-';
        live[3] = 0;
        jput(&j, "%s\"%s\":{\"on\":\"%s\",\"dtype\":\"%s\",\"hold\":\"%s\",\"bytes\":%llu,"
             "\"used\":%s,\"live\":\"%s\",\"keep\":%s}",
             i ? "," : "", mold_plan_comp_name((mold_plan_comp)i), place_name(p, c->place),
             mold_dtype_name(c->matrix_dtype), c->hold == MOLD_HOLD_BF16 ? "bf16" : "stored",
             (unsigned long long)c->weight_bytes, c->used ? "true" : "false", live,
             c->keep ? "true" : "false");
    }
    jput(&j, "},\"stages\":{");
    bool first = true;
    for (int s = 0; s < MOLD_STAGE_COUNT; s++) {
        if (s == MOLD_STAGE_ENCODE && !p->encode) continue;
        jput(&j, "%s\"%s\":{\"peak\":%llu,\"ws\":%llu,\"scratch\":%llu,\"bufs\":%llu", first ? "" : ",",
             mold_plan_stage_name((mold_plan_stage)s), (unsigned long long)p->peak[s],
             (unsigned long long)p->workspace[s], (unsigned long long)p->scratch[s],
             (unsigned long long)p->buffers[s]);
        if (p->kind == MOLD_PLAN_DEV_CUDA)
            jput(&j, ",\"host\":%llu", (unsigned long long)p->host_peak[s]);
        jput(&j, "}");
        first = false;
    }
    jput(&j, "},\"cost\":%.2f}", p->cost);
    return j.len;
}
