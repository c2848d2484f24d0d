/*
 * qwen25_text.c — Qwen2.5-VL language model forward (the Qwen-Image text
 * encoder), written against the backend op table only.
 *
 * Reference: transformers modeling_qwen2_5_vl.py (Qwen2_5_VLTextModel,
 * get_rope_index for text-only input), diffusers pipeline_qwenimage.py
 * (_get_qwen_prompt_embeds, encode_prompt); spec sections 2.7 and 3.
 *
 *   h = embed[ids]                                        (T, H)
 *   per layer:  a = rms(h) * ln1;  q,k,v = a W^T + b;  rope(q, k);
 *               h += attn(q, k, v) Wo^T;  a = rms(h) * ln2;
 *               h += (silu(a Wg^T) * (a Wu^T)) Wd^T
 *   out = rms(h) * norm
 *
 * Text-only mRoPE: the three position rows (t, h, w) are identical, so the
 * mrope sections select the same angles everywhere and the rotation is plain
 * 1-D rotate-half RoPE over all head_dim/2 frequencies (spec 3.3).
 *
 * Batches are processed together: every row-wise op (matmul, norm, SwiGLU,
 * RoPE with per-row tables) runs on all B*T rows at once; only attention runs
 * per sample. Padding follows transformers 5.17 exactly: token t of a row
 * sits at position t (cumsum(mask) - 1 for right-padded valid tokens),
 * padded keys are excluded, padded queries are still computed.
 *
 * Ownership: the encoder borrows the backend and the tensor source's
 * container (the CPU backend keeps views into the mmap). Weight matrices are
 * mold_weights (weight_upload), vectors are backend f32 buffers (upload_f32);
 * both freed in mold_text_encoder_free(). A forward allocates its workspace
 * once (exactly mold_text_encoder_workspace_bytes()) and frees it on return;
 * the layer loop never allocates.
 *
 * Deliberately absent: KV cache (encoding is a single pass), vision tower,
 * lm_head, sliding-window attention (disabled in Qwen2.5-VL-7B).
 */
#include "qwen25_text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/dtype.h" /* defines: mold_dtype_get, mold_dtype_row_bytes */
#include "../base/log.h"   /* defines: MOLD_LOGD */

/* ---- model state ---- */

typedef struct te_layer {
    float *ln1;         /* (H) f32, input_layernorm */
    mold_weight wq;     /* (Hq*D, H) q_proj */
    float *bq;          /* (Hq*D) f32 */
    mold_weight wk;     /* (Hkv*D, H) k_proj */
    float *bk;          /* (Hkv*D) f32 */
    mold_weight wv;     /* (Hkv*D, H) v_proj */
    float *bv;          /* (Hkv*D) f32 */
    mold_weight wo;     /* (H, Hq*D) o_proj, no bias */
    float *ln2;         /* (H) f32, post_attention_layernorm */
    mold_weight wg;     /* (I, H) gate_proj */
    mold_weight wu;     /* (I, H) up_proj */
    mold_weight wd;     /* (H, I) down_proj */
} te_layer;

struct mold_text_encoder {
    mold_backend *be;        /* borrowed */
    mold_text_config cfg;    /* copy, validated */
    mold_weight embed;       /* (vocab, H) embed_tokens */
    te_layer *layers;        /* [num_hidden_layers], host malloc */
    float *norm;             /* (H) f32, final norm */
};

/* ---- config and sizes ---- */

static mold_status check_config(const mold_text_config *c) {
    if (c->hidden_size <= 0 || c->num_hidden_layers <= 0 || c->num_attention_heads <= 0 ||
        c->num_key_value_heads <= 0 || c->head_dim <= 0 || c->intermediate_size <= 0 ||
        c->vocab_size <= 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "text encoder config: expected positive sizes, got hidden %d, layers "
                        "%d, heads %d, kv heads %d, head_dim %d, intermediate %d, vocab %d",
                        c->hidden_size, c->num_hidden_layers, c->num_attention_heads,
                        c->num_key_value_heads, c->head_dim, c->intermediate_size,
                        c->vocab_size);
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "text encoder config: expected num_attention_heads (%d) to be a "
                        "multiple of num_key_value_heads (%d)",
                        c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim % 2 != 0)
        return MOLD_ERR(MOLD_E_INVALID, "text encoder config: expected an even head_dim, got %d",
                        c->head_dim);
    if (!(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
        return MOLD_ERR(MOLD_E_INVALID,
                        "text encoder config: expected rms_norm_eps > 0 and rope_theta > 0, "
                        "got %g and %g",
                        c->rms_norm_eps, c->rope_theta);
    return MOLD_OK;
}

/* Workspace regions, in allocation order. Attention buffers and MLP buffers
 * are never live at the same time, so they share one region. */
typedef struct te_ws_layout {
    size_t h, a, cos, sin, valid, mix; /* byte offsets */
    size_t q, k, v, att;               /* offsets inside mix (attention phase) */
    size_t gate, up;                   /* offsets inside mix (MLP phase) */
    size_t total;
} te_ws_layout;

/* a += b, a 64-byte-aligned region of `floats` floats; false on overflow. */
static bool ws_take(size_t *cursor, uint64_t floats, size_t *offset) {
    if (floats > (SIZE_MAX - 64) / sizeof(float))
        return false;
    size_t bytes = ((size_t)floats * sizeof(float) + 63) & ~(size_t)63;
    if (*cursor > SIZE_MAX - bytes)
        return false;
    *offset = *cursor;
    *cursor += bytes;
    return true;
}

static bool ws_plan(const mold_text_config *c, int batch, int n_tok, te_ws_layout *l) {
    if (check_config(c) != MOLD_OK || batch <= 0 || n_tok <= 0) {
        mold_error_clear();
        return false;
    }
    uint64_t m = (uint64_t)batch * (uint64_t)n_tok;
    uint64_t hq = (uint64_t)c->num_attention_heads * (uint64_t)c->head_dim;
    uint64_t hkv = (uint64_t)c->num_key_value_heads * (uint64_t)c->head_dim;
    uint64_t H = (uint64_t)c->hidden_size, I = (uint64_t)c->intermediate_size;
    uint64_t half = (uint64_t)c->head_dim / 2;
    if (m > (1ull << 40) || hq > (1ull << 24) || I > (1ull << 24) || H > (1ull << 24))
        return false;
    size_t cur = 0, mix_cur = 0, mlp_cur = 0;
    bool ok = ws_take(&cur, m * H, &l->h) && ws_take(&cur, m * H, &l->a) &&
              ws_take(&cur, m * half, &l->cos) && ws_take(&cur, m * half, &l->sin) &&
              ws_take(&cur, m, &l->valid);
    ok = ok && ws_take(&mix_cur, m * hq, &l->q) && ws_take(&mix_cur, m * hkv, &l->k) &&
         ws_take(&mix_cur, m * hkv, &l->v) && ws_take(&mix_cur, m * hq, &l->att);
    ok = ok && ws_take(&mlp_cur, m * I, &l->gate) && ws_take(&mlp_cur, m * I, &l->up);
    size_t mix = mix_cur > mlp_cur ? mix_cur : mlp_cur;
    l->mix = cur;
    if (!ok || cur > SIZE_MAX - mix)
        return false;
    l->total = cur + mix;
    return true;
}

size_t mold_text_encoder_workspace_bytes(const mold_text_config *cfg, int batch, int n_tok) {
    te_ws_layout l;
    return ws_plan(cfg, batch, n_tok, &l) ? l.total : SIZE_MAX;
}

/* Bytes of an (n_out, n_in) matrix in dtype t; false when n_in is not whole blocks. */
static bool matrix_bytes(mold_dtype t, uint64_t n_out, uint64_t n_in, uint64_t *acc) {
    uint64_t row;
    if (mold_dtype_row_bytes(t, n_in, &row) != MOLD_OK) {
        mold_error_clear();
        return false;
    }
    if (row != 0 && n_out > (UINT64_MAX - *acc) / row)
        return false;
    *acc += n_out * row;
    return true;
}

uint64_t mold_text_encoder_weight_bytes(const mold_text_config *c, mold_dtype dtype) {
    const mold_dtype_info *info = mold_dtype_get(dtype);
    if (!info || !(info->is_float || info->is_quant) || check_config(c) != MOLD_OK) {
        mold_error_clear();
        return 0;
    }
    uint64_t H = (uint64_t)c->hidden_size, I = (uint64_t)c->intermediate_size;
    uint64_t hq = (uint64_t)c->num_attention_heads * (uint64_t)c->head_dim;
    uint64_t hkv = (uint64_t)c->num_key_value_heads * (uint64_t)c->head_dim;
    uint64_t layer = 0;
    bool ok = matrix_bytes(dtype, hq, H, &layer) && matrix_bytes(dtype, hkv, H, &layer) &&
              matrix_bytes(dtype, hkv, H, &layer) && matrix_bytes(dtype, H, hq, &layer) &&
              matrix_bytes(dtype, I, H, &layer) && matrix_bytes(dtype, I, H, &layer) &&
              matrix_bytes(dtype, H, I, &layer);
    layer += (2 * H + hq + 2 * hkv) * sizeof(float); /* norms and biases, f32 */
    uint64_t total = H * sizeof(float);               /* final norm */
    ok = ok && matrix_bytes(dtype, (uint64_t)c->vocab_size, H, &total);
    if (!ok || layer > (UINT64_MAX - total) / (uint64_t)c->num_hidden_layers)
        return 0;
    return total + layer * (uint64_t)c->num_hidden_layers;
}

/* ---- loading ---- */

typedef struct te_loader {
    mold_text_encoder *te;
    const mold_tensor_source *src;
    const char *prefix; /* "model." or "model.language_model." */
} te_loader;

/* Looks `<prefix><rest>` up with the expected shape and a dtype usable as a
 * weight (float or ggml block format). */
static mold_status get_tensor(const te_loader *ld, const char *rest, int n_dims,
                              const int64_t *shape, const mold_tensor **out) {
    char name[256];
    int len = snprintf(name, sizeof(name), "%s%s", ld->prefix, rest);
    MOLD_ASSERT(len > 0 && (size_t)len < sizeof(name));
    MOLD_TRY(mold_source_get_shaped(ld->src, name, n_dims, shape, out));
    const mold_dtype_info *info = mold_dtype_get((*out)->dtype);
    if (!info || !(info->is_float || info->is_quant))
        return MOLD_ERR(MOLD_E_FORMAT,
                        "%s: tensor '%s': expected dtype f32, f16, bf16 or a ggml block "
                        "format, got %s",
                        ld->src->what ? ld->src->what : "(source)", name,
                        mold_dtype_name((*out)->dtype));
    return MOLD_OK;
}

static mold_status load_matrix(const te_loader *ld, const char *rest, int64_t n_out,
                               int64_t n_in, mold_weight *w) {
    const mold_tensor *t;
    int64_t shape[2] = {n_out, n_in};
    MOLD_TRY(get_tensor(ld, rest, 2, shape, &t));
    mold_backend *be = ld->te->be;
    mold_status st = be->i->weight_upload(be, t, n_out, n_in, w);
    if (st != MOLD_OK)
        mold_error_prefix("%s: tensor '%s%s'", ld->src->what ? ld->src->what : "(source)",
                          ld->prefix, rest);
    return st;
}

static mold_status load_vector(const te_loader *ld, const char *rest, int64_t n, float **v) {
    const mold_tensor *t;
    MOLD_TRY(get_tensor(ld, rest, 1, &n, &t));
    mold_backend *be = ld->te->be;
    mold_status st = be->i->upload_f32(be, t, v);
    if (st != MOLD_OK)
        mold_error_prefix("%s: tensor '%s%s'", ld->src->what ? ld->src->what : "(source)",
                          ld->prefix, rest);
    return st;
}

static mold_status load_layer(const te_loader *ld, int i, te_layer *L) {
    const mold_text_config *c = &ld->te->cfg;
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int64_t hq = (int64_t)c->num_attention_heads * c->head_dim;
    int64_t hkv = (int64_t)c->num_key_value_heads * c->head_dim;
    char n[128];
#define NAME(s) (snprintf(n, sizeof(n), "layers.%d." s, i), n)
    MOLD_TRY(load_vector(ld, NAME("input_layernorm.weight"), H, &L->ln1));
    MOLD_TRY(load_matrix(ld, NAME("self_attn.q_proj.weight"), hq, H, &L->wq));
    MOLD_TRY(load_vector(ld, NAME("self_attn.q_proj.bias"), hq, &L->bq));
    MOLD_TRY(load_matrix(ld, NAME("self_attn.k_proj.weight"), hkv, H, &L->wk));
    MOLD_TRY(load_vector(ld, NAME("self_attn.k_proj.bias"), hkv, &L->bk));
    MOLD_TRY(load_matrix(ld, NAME("self_attn.v_proj.weight"), hkv, H, &L->wv));
    MOLD_TRY(load_vector(ld, NAME("self_attn.v_proj.bias"), hkv, &L->bv));
    MOLD_TRY(load_matrix(ld, NAME("self_attn.o_proj.weight"), H, hq, &L->wo));
    MOLD_TRY(load_vector(ld, NAME("post_attention_layernorm.weight"), H, &L->ln2));
    MOLD_TRY(load_matrix(ld, NAME("mlp.gate_proj.weight"), I, H, &L->wg));
    MOLD_TRY(load_matrix(ld, NAME("mlp.up_proj.weight"), I, H, &L->wu));
    MOLD_TRY(load_matrix(ld, NAME("mlp.down_proj.weight"), H, I, &L->wd));
#undef NAME
    return MOLD_OK;
}

static void free_weight(mold_backend *be, mold_weight *w) {
    if (w->data)
        be->i->weight_free(be, w);
    memset(w, 0, sizeof(*w));
}

static void free_vec(mold_backend *be, float **v) {
    be->i->free(be, *v);
    *v = NULL;
}

void mold_text_encoder_free(mold_text_encoder *te) {
    if (!te)
        return;
    mold_backend *be = te->be;
    for (int i = 0; te->layers && i < te->cfg.num_hidden_layers; i++) {
        te_layer *L = &te->layers[i];
        free_vec(be, &L->ln1);
        free_vec(be, &L->bq);
        free_vec(be, &L->bk);
        free_vec(be, &L->bv);
        free_vec(be, &L->ln2);
        mold_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wg, &L->wu, &L->wd};
        for (size_t j = 0; j < sizeof(ws) / sizeof(ws[0]); j++)
            free_weight(be, ws[j]);
    }
    free(te->layers);
    free_weight(be, &te->embed);
    free_vec(be, &te->norm);
    free(te);
}

mold_status mold_text_encoder_load(mold_backend *be, const mold_text_config *cfg,
                                   const mold_tensor_source *src, mold_text_encoder **out) {
    MOLD_ASSERT(be && cfg && src && out);
    *out = NULL;
    MOLD_TRY(check_config(cfg));
    mold_text_encoder *te = calloc(1, sizeof(*te));
    if (!te)
        return MOLD_ERR(MOLD_E_NOMEM, "text encoder: out of memory");
    te->be = be;
    te->cfg = *cfg;
    te->layers = calloc((size_t)cfg->num_hidden_layers, sizeof(te_layer));
    if (!te->layers) {
        free(te);
        return MOLD_ERR(MOLD_E_NOMEM, "text encoder: out of memory for %d layers",
                        cfg->num_hidden_layers);
    }
    /* transformers >= 4.52 saves the language model under model.language_model. */
    te_loader ld = {te, src, "model."};
    if (src->find(src->ud, "model.language_model.embed_tokens.weight"))
        ld.prefix = "model.language_model.";
    int64_t H = cfg->hidden_size;
    mold_status st = load_matrix(&ld, "embed_tokens.weight", cfg->vocab_size, H, &te->embed);
    for (int i = 0; st == MOLD_OK && i < cfg->num_hidden_layers; i++)
        st = load_layer(&ld, i, &te->layers[i]);
    if (st == MOLD_OK)
        st = load_vector(&ld, "norm.weight", H, &te->norm);
    if (st != MOLD_OK) {
        mold_text_encoder_free(te);
        return st;
    }
    MOLD_LOGD("text encoder: %d layers, hidden %d, prefix %s, embed dtype %s",
              cfg->num_hidden_layers, cfg->hidden_size, ld.prefix,
              mold_dtype_name(te->embed.dtype));
    *out = te;
    return MOLD_OK;
}

const mold_text_config *mold_text_encoder_config(const mold_text_encoder *te) {
    return &te->cfg;
}

/* ---- forward ---- */

/* Activation pointers carved from the workspace (backend memory, f32). M = B*T. */
typedef struct te_acts {
    float *h;     /* (M, H) residual stream */
    float *a;     /* (M, H) normed input / projection output */
    float *cos;   /* (M, D/2) RoPE tables per row */
    float *sin;   /* (M, D/2) */
    float *valid; /* (M) key mask 0/1, NULL when no mask */
    float *q;     /* (M, Hq, D)   attention phase */
    float *k;     /* (M, Hkv, D) */
    float *v;     /* (M, Hkv, D) */
    float *att;   /* (M, Hq, D) */
    float *gate;  /* (M, I)       MLP phase, aliases q..att */
    float *up;    /* (M, I) */
} te_acts;

/* Checks ids against the vocabulary and the mask for right padding. */
static mold_status check_inputs(const mold_text_config *c, const int32_t *ids,
                                const int32_t *mask, int B, int T) {
    for (int b = 0; b < B; b++) {
        bool padding = false;
        for (int t = 0; t < T; t++) {
            int32_t id = ids[(size_t)b * T + t];
            if (id < 0 || id >= c->vocab_size)
                return MOLD_ERR(MOLD_E_RANGE,
                                "text encoder: ids[%d][%d]: expected a token id in [0, %d), "
                                "got %d",
                                b, t, c->vocab_size, id);
            if (!mask)
                continue;
            int32_t m = mask[(size_t)b * T + t];
            if (m != 0 && m != 1)
                return MOLD_ERR(MOLD_E_INVALID,
                                "text encoder: mask[%d][%d]: expected 0 or 1, got %d", b, t, m);
            if (m == 1 && padding)
                return MOLD_ERR(MOLD_E_INVALID,
                                "text encoder: mask row %d: expected right padding (ones then "
                                "zeros), got a 1 at %d after a 0",
                                b, t);
            if (m == 0 && t == 0)
                return MOLD_ERR(MOLD_E_INVALID,
                                "text encoder: mask row %d: expected at least one valid token, "
                                "got mask[%d][0] = 0",
                                b, b);
            padding = padding || m == 0;
        }
    }
    return MOLD_OK;
}

/* Fills host tables for B*T rows: cos/sin (M, D/2) at each row's position
 * and valid (M). Every token sits at its column t: for the valid tokens of a
 * right-padded row this is transformers' cumsum(mask) - 1; for padded tokens
 * it is what transformers 5.17 (the fixtures' version) uses for text-only
 * input (4.x put them at 1; padded rows are discarded by every consumer).
 * Angles in f32 as transformers computes them: inv_freq[j] = 1 / theta^(2j/D)
 * (f32 pow), angle = f32(pos * inv_freq[j]). */
static void fill_rope_tables(const mold_text_config *c, const int32_t *mask, int B, int T,
                             float *cos_t, float *sin_t, float *valid) {
    int64_t half = c->head_dim / 2;
    for (int64_t r = 0; r < (int64_t)B * T; r++) {
        bool is_valid = !mask || mask[r] == 1;
        float pos = (float)(r % T);
        valid[r] = is_valid ? 1.0f : 0.0f;
        for (int64_t j = 0; j < half; j++) {
            float expo = (float)(2 * j) / (float)c->head_dim;
            float inv_freq = 1.0f / powf((float)c->rope_theta, expo);
            float ang = pos * inv_freq;
            cos_t[r * half + j] = (float)cos((double)ang);
            sin_t[r * half + j] = (float)sin((double)ang);
        }
    }
}

#define CK(expr)                    \
    do {                            \
        st = (expr);                \
        if (st != MOLD_OK)          \
            goto done;              \
    } while (0)

/* One decoder layer on all B*T rows, in place on acts->h. */
static mold_status layer_forward(mold_text_encoder *te, const te_layer *L, const te_acts *x,
                                 int B, int T) {
    mold_backend *be = te->be;
    const mold_backend_i *o = be->i;
    const mold_text_config *c = &te->cfg;
    int64_t M = (int64_t)B * T, H = c->hidden_size, I = c->intermediate_size;
    int64_t D = c->head_dim, nq = c->num_attention_heads, nkv = c->num_key_value_heads;
    float eps = (float)c->rms_norm_eps;

    /* attention block */
    MOLD_TRY(o->rms_norm(be, x->a, x->h, L->ln1, M, H, eps));
    MOLD_TRY(o->matmul(be, x->q, x->a, M, &L->wq, L->bq));
    MOLD_TRY(o->matmul(be, x->k, x->a, M, &L->wk, L->bk));
    MOLD_TRY(o->matmul(be, x->v, x->a, M, &L->wv, L->bv));
    MOLD_TRY(o->rope(be, x->q, M, nq, D, x->cos, x->sin, MOLD_ROPE_HALF));
    MOLD_TRY(o->rope(be, x->k, M, nkv, D, x->cos, x->sin, MOLD_ROPE_HALF));
    float scale = (float)(1.0 / sqrt((double)D));
    for (int b = 0; b < B; b++) {
        int64_t r0 = (int64_t)b * T;
        MOLD_TRY(o->attention(be, x->att + r0 * nq * D, x->q + r0 * nq * D,
                              x->k + r0 * nkv * D, x->v + r0 * nkv * D, T, T, nq, nkv, D,
                              scale, x->valid ? x->valid + r0 : NULL, true));
    }
    MOLD_TRY(o->matmul(be, x->a, x->att, M, &L->wo, NULL));
    MOLD_TRY(o->add(be, x->h, x->h, x->a, M * H));

    /* MLP block (gate/up alias the attention buffers, dead by now) */
    MOLD_TRY(o->rms_norm(be, x->a, x->h, L->ln2, M, H, eps));
    MOLD_TRY(o->matmul(be, x->gate, x->a, M, &L->wg, NULL));
    MOLD_TRY(o->matmul(be, x->up, x->a, M, &L->wu, NULL));
    MOLD_TRY(o->swiglu(be, x->gate, x->gate, x->up, M * I));
    MOLD_TRY(o->matmul(be, x->a, x->gate, M, &L->wd, NULL));
    MOLD_TRY(o->add(be, x->h, x->h, x->a, M * H));
    return MOLD_OK;
}

static te_acts carve(char *ws, const te_ws_layout *l, bool has_mask) {
    te_acts x;
    x.h = (float *)(ws + l->h);
    x.a = (float *)(ws + l->a);
    x.cos = (float *)(ws + l->cos);
    x.sin = (float *)(ws + l->sin);
    x.valid = has_mask ? (float *)(ws + l->valid) : NULL;
    char *mix = ws + l->mix;
    x.q = (float *)(mix + l->q);
    x.k = (float *)(mix + l->k);
    x.v = (float *)(mix + l->v);
    x.att = (float *)(mix + l->att);
    x.gate = (float *)(mix + l->gate);
    x.up = (float *)(mix + l->up);
    return x;
}

mold_status mold_text_encoder_forward(mold_text_encoder *te, const int32_t *ids,
                                      const int32_t *mask, int B, int T, float *hidden_last,
                                      float *hidden_layer1) {
    MOLD_ASSERT(te && ids && hidden_last);
    const mold_text_config *c = &te->cfg;
    mold_backend *be = te->be;
    te_ws_layout l;
    if (B <= 0 || T <= 0 || !ws_plan(c, B, T, &l))
        return MOLD_ERR(MOLD_E_INVALID,
                        "text encoder: expected a batch B >= 1 of T >= 1 tokens of bounded "
                        "size, got B %d, T %d",
                        B, T);
    MOLD_TRY(check_inputs(c, ids, mask, B, T));
    int64_t M = (int64_t)B * T, H = c->hidden_size, half = c->head_dim / 2;

    /* host staging for the RoPE tables and key mask (outside the layer loop) */
    float *host = malloc(((size_t)M * (size_t)(2 * half) + (size_t)M) * sizeof(float));
    if (!host)
        return MOLD_ERR(MOLD_E_NOMEM, "text encoder: out of host memory for %lld rows",
                        (long long)M);
    float *h_cos = host, *h_sin = host + M * half, *h_valid = host + 2 * M * half;
    fill_rope_tables(c, mask, B, T, h_cos, h_sin, h_valid);

    mold_status st = MOLD_OK;
    char *ws = be->i->alloc(be, l.total); /* the forward's only backend allocation */
    if (!ws) {
        free(host);
        mold_error_prefix("text encoder workspace (%zu bytes)", l.total);
        return MOLD_E_NOMEM;
    }
    te_acts x = carve(ws, &l, mask != NULL);
    size_t table_bytes = (size_t)M * (size_t)half * sizeof(float);
    CK(be->i->upload(be, x.cos, h_cos, table_bytes));
    CK(be->i->upload(be, x.sin, h_sin, table_bytes));
    if (x.valid)
        CK(be->i->upload(be, x.valid, h_valid, (size_t)M * sizeof(float)));

    CK(be->i->embed(be, x.h, &te->embed, ids, M));
    for (int i = 0; i < c->num_hidden_layers; i++) {
        CK(layer_forward(te, &te->layers[i], &x, B, T));
        if (i == 0 && hidden_layer1)
            CK(be->i->download(be, hidden_layer1, x.h, (size_t)M * H * sizeof(float)));
    }
    CK(be->i->rms_norm(be, x.a, x.h, te->norm, M, H, (float)c->rms_norm_eps));
    CK(be->i->download(be, hidden_last, x.a, (size_t)M * H * sizeof(float)));
    CK(be->i->sync(be));
done:
    be->i->free(be, ws);
    free(host);
    return st;
}

/* ---- prompt encoding ---- */

void mold_text_embeds_free(mold_text_embeds *e) {
    if (!e)
        return;
    free(e->data);
    free(e->mask);
    free(e->lengths);
    memset(e, 0, sizeof(*e));
}

/* Allocates out's arrays for n rows of l_max tokens (zeroed). */
static mold_status embeds_alloc(mold_text_embeds *out, int n, int l_max, int hidden) {
    memset(out, 0, sizeof(*out));
    size_t rows = (size_t)n * (size_t)l_max;
    out->data = calloc(rows * (size_t)hidden + 1, sizeof(float));
    out->mask = calloc(rows + 1, sizeof(int32_t));
    out->lengths = calloc((size_t)n, sizeof(int32_t));
    if (!out->data || !out->mask || !out->lengths) {
        mold_text_embeds_free(out);
        return MOLD_ERR(MOLD_E_NOMEM, "text embeddings: out of memory for [%d, %d, %d]", n,
                        l_max, hidden);
    }
    out->n = n;
    out->l_max = l_max;
    out->hidden = hidden;
    return MOLD_OK;
}

mold_status mold_text_encode_tokens(mold_text_encoder *te, const int32_t *const *ids,
                                    const size_t *n_ids, int n, int max_tokens,
                                    mold_text_embeds *out) {
    MOLD_ASSERT(te && ids && n_ids && out);
    memset(out, 0, sizeof(*out));
    if (n <= 0 || max_tokens <= 0 || max_tokens > 1024)
        return MOLD_ERR(MOLD_E_INVALID,
                        "text encoder: expected n >= 1 prompts and 1 <= max_tokens <= 1024, "
                        "got n %d, max_tokens %d",
                        n, max_tokens);
    const int drop = MOLD_QWENIMAGE_DROP_TOKENS;
    int t_max = 0, l_max = 0;
    for (int i = 0; i < n; i++) {
        if (n_ids[i] < 1 || n_ids[i] > MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS)
            return MOLD_ERR(MOLD_E_RANGE,
                            "text encoder: sequence %d: expected 1..%d tokens, got %zu", i,
                            MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS, n_ids[i]);
        int len = (int)n_ids[i];
        t_max = len > t_max ? len : t_max;
        int l = len > drop ? len - drop : 0;
        l = l < max_tokens ? l : max_tokens;
        l_max = l > l_max ? l : l_max;
    }
    int H = te->cfg.hidden_size;
    size_t m = (size_t)n * (size_t)t_max;
    int32_t *pid = malloc(m * sizeof(int32_t));
    int32_t *pmask = malloc(m * sizeof(int32_t));
    float *hidden = malloc(m * (size_t)H * sizeof(float));
    mold_status st = MOLD_OK;
    if (!pid || !pmask || !hidden) {
        st = MOLD_ERR(MOLD_E_NOMEM, "text encoder: out of memory for %zu tokens", m);
        goto done;
    }
    /* Right padding; the pad id is irrelevant (padded keys are excluded and
     * padded rows are discarded), token 0 is simply always in range. */
    for (int i = 0; i < n; i++)
        for (int t = 0; t < t_max; t++) {
            bool v = (size_t)t < n_ids[i];
            pid[(size_t)i * t_max + t] = v ? ids[i][t] : 0;
            pmask[(size_t)i * t_max + t] = v ? 1 : 0;
        }
    CK(mold_text_encoder_forward(te, pid, pmask, n, t_max, hidden, NULL));
    CK(embeds_alloc(out, n, l_max, H));
    for (int i = 0; i < n; i++) {
        int len = (int)n_ids[i];
        int l = len > drop ? len - drop : 0;
        l = l < max_tokens ? l : max_tokens;
        out->lengths[i] = l;
        for (int t = 0; t < l; t++)
            out->mask[(size_t)i * l_max + t] = 1;
        if (l > 0)
            memcpy(out->data + (size_t)i * l_max * H,
                   hidden + ((size_t)i * t_max + (size_t)drop) * H,
                   (size_t)l * H * sizeof(float));
    }
done:
    free(pid);
    free(pmask);
    free(hidden);
    return st;
}

mold_status mold_text_encode_prompts(mold_text_encoder *te, const mold_tokenizer *tok,
                                     const char *const *prompts, int n, int max_tokens,
                                     mold_text_embeds *out) {
    MOLD_ASSERT(te && tok && prompts && out);
    memset(out, 0, sizeof(*out));
    if (n <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "text encoder: expected n >= 1 prompts, got %d", n);
    int32_t **ids = calloc((size_t)n, sizeof(*ids));
    size_t *n_ids = calloc((size_t)n, sizeof(*n_ids));
    mold_status st = MOLD_OK;
    if (!ids || !n_ids) {
        st = MOLD_ERR(MOLD_E_NOMEM, "text encoder: out of memory for %d prompts", n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        st = mold_qwenimage_tokenize_prompt(tok, prompts[i], strlen(prompts[i]), &ids[i],
                                            &n_ids[i]);
        if (st != MOLD_OK) {
            mold_error_prefix("prompt %d", i);
            goto done;
        }
    }
    st = mold_text_encode_tokens(te, (const int32_t *const *)ids, n_ids, n, max_tokens, out);
done:
    for (int i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    free(n_ids);
    return st;
}
