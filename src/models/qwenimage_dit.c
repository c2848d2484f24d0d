/*
 * qwenimage_dit.c — Qwen-Image MMDiT forward written against the backend op
 * table (src/backend/ops.h); the CPU backend is the reference.
 *
 * Reference: diffusers transformer_qwenimage.py @ 58eb52c (spec section 4):
 * QwenImageTransformer2DModel.forward, QwenImageTransformerBlock.forward,
 * QwenDoubleStreamAttnProcessor2_0, QwenEmbedRope (scale_rope=True),
 * QwenTimestepProjEmbeddings, AdaLayerNormContinuous.
 *
 *   img  = img_in(X)                                   [B*N, D]
 *   txt  = txt_in(RMSNorm(E; txt_norm, 1e-6))          [B*L, D]
 *   temb = linear_2(silu(linear_1(sincos(1000 sigma)))); stemb = silu(temb)
 *   per block, per stream s, m_s = s_mod(stemb) = [shift1|scale1|gate1|shift2|scale2|gate2]:
 *     x_s  = LN(h_s)*(1+scale1)+shift1                 (LN: no affine, eps 1e-6)
 *     q,k  = RoPE(RMSNorm_head(W x_s)), v = W x_s       joint sequence [text, image]
 *     o    = softmax(q k^T / sqrt(hd) + key mask) v     one sample at a time
 *     h_s += gate1 * out_s(o_s)
 *     h_s += gate2 * fc2(gelu_tanh(fc1(LN(h_s)*(1+scale2)+shift2)))
 *   e = norm_out(stemb) = [scale | shift]  (scale FIRST, unlike the blocks)
 *   V = proj_out(LN(img)*(1+scale)+shift)
 *
 * Ownership: the mold_dit owns its weights (made by the backend), one
 * workspace allocation (backend) and one host scratch (malloc), both made by
 * mold_dit_reserve(). The forward never allocates.
 *
 * Workspace layout (each buffer 64-byte aligned; sizes for the reserved
 * batch B, image tokens N, text tokens L, S = N + L; a smaller forward uses
 * a prefix of each buffer):
 *   tsin [B,256]  t_hid [B,D]  stemb [B,D]  mod_img/mod_txt [B,6D]
 *   rope img cos/sin [N,hd/2]  rope txt cos/sin [L,hd/2]  key_valid [B,S]
 *   img_h [B,N,D]  txt_h [B,L,D]  xi [B,N,D]  xt [B,L,D]
 *   scratch: max( [B,L,Dj] (normed text), 4 x [S,D] (q,k,v,o of one sample),
 *                 [B,max(N,L),F] (MLP hidden) )
 * Attention runs sample by sample, so q/k/v/o need one sample's room only.
 *
 * Invariants: activations are f32 in backend memory and never dereferenced
 * here; RoPE tables are built on the host and uploaded when the token grid
 * changes (cached by tok_h, tok_w).
 */
#include "qwenimage_dit.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h" /* defines: MOLD_LOGD */

/* ------------------------------------------------------------------------ */
/* ---- model structures ---- */

typedef struct dit_linear {
    mold_weight w; /* [n_out, n_in], any weight dtype; data NULL until loaded */
    float *b;      /* [n_out] f32 backend memory; NULL until loaded */
} dit_linear;

typedef struct dit_block {
    dit_linear img_mod, txt_mod;    /* [6D, D]: shift1 scale1 gate1 shift2 scale2 gate2 */
    dit_linear to_q, to_k, to_v;    /* image stream [D, D] */
    dit_linear add_q, add_k, add_v; /* text stream [D, D] */
    dit_linear to_out, to_add_out;  /* image / text attention output [D, D] */
    dit_linear img_fc1, img_fc2;    /* [F, D], [D, F] */
    dit_linear txt_fc1, txt_fc2;
    float *norm_q, *norm_k;             /* [hd] per-head RMSNorm gammas, image */
    float *norm_added_q, *norm_added_k; /* [hd] text */
} dit_block;

/* Pointers into the workspace (backend memory), see the file header. */
typedef struct dit_bufs {
    float *tsin, *t_hid, *stemb, *mod_img, *mod_txt;
    float *img_cos, *img_sin, *txt_cos, *txt_sin, *key_valid;
    float *img_h, *txt_h, *xi, *xt, *scratch;
} dit_bufs;

/* Byte offsets of the same buffers; total = workspace bytes. */
typedef struct dit_layout {
    uint64_t tsin, t_hid, stemb, mod_img, mod_txt;
    uint64_t img_cos, img_sin, txt_cos, txt_sin, key_valid;
    uint64_t img_h, txt_h, xi, xt, scratch;
    uint64_t total;
} dit_layout;

/* Host scratch (malloc'd by reserve): sinusoids, key mask, RoPE staging. */
typedef struct dit_host {
    float *tsin;      /* [B, 256] */
    float *key_valid; /* [B, S] */
    float *img_tab;   /* [2, N, hd/2] cos then sin */
    float *txt_tab;   /* [2, L, hd/2] */
} dit_host;

struct mold_dit {
    mold_backend *be;     /* borrowed; outlives the model */
    mold_dit_config cfg;  /* validated copy */
    int64_t dim;          /* D = heads * head_dim */
    int64_t n_head, head_dim;
    int64_t ffn;          /* F = 4 D (diffusers FeedForward mult 4) */
    int64_t joint_dim;    /* Dj, text embedding width */
    int64_t in_ch;        /* packed latent width (64) */
    int64_t out_ch;       /* patch^2 * out_channels (64) */
    dit_linear img_in, txt_in, t_fc1, t_fc2, norm_out, proj_out;
    float *txt_norm;      /* [Dj] */
    dit_block *blocks;    /* [num_layers], malloc'd */
    uint64_t weight_bytes; /* as stored by the backend's weights */

    void *ws;             /* backend workspace (one alloc), NULL until reserved */
    uint64_t ws_bytes;
    int ws_batch;         /* reserved shape */
    int64_t ws_img, ws_txt;
    dit_bufs buf;
    void *host_mem;       /* one malloc for dit_host */
    dit_host host;
    int rope_h, rope_w;   /* grid whose tables are uploaded; 0 = none */
};

/* Where each weight lives in the model, so loading and byte counting share
 * one table. Dims are symbolic and resolved per config. */
typedef enum dim_sym { SYM_D, SYM_D2, SYM_D6, SYM_F, SYM_J, SYM_IN, SYM_OUT, SYM_T, SYM_HD } dim_sym;

typedef struct lin_spec {
    const char *name; /* diffusers module name, ".weight"/".bias" appended */
    size_t off;       /* offsetof the dit_linear in mold_dit or dit_block */
    dim_sym rows, cols;
} lin_spec;

typedef struct vec_spec {
    const char *name; /* full tensor name (block prefix prepended) */
    size_t off;       /* offsetof the float* */
    dim_sym len;
} vec_spec;

static const lin_spec TOP_LINEARS[] = {
    {"img_in", offsetof(mold_dit, img_in), SYM_D, SYM_IN},
    {"txt_in", offsetof(mold_dit, txt_in), SYM_D, SYM_J},
    {"time_text_embed.timestep_embedder.linear_1", offsetof(mold_dit, t_fc1), SYM_D, SYM_T},
    {"time_text_embed.timestep_embedder.linear_2", offsetof(mold_dit, t_fc2), SYM_D, SYM_D},
    {"norm_out.linear", offsetof(mold_dit, norm_out), SYM_D2, SYM_D},
    {"proj_out", offsetof(mold_dit, proj_out), SYM_OUT, SYM_D},
};
static const vec_spec TOP_VECS[] = {
    {"txt_norm.weight", offsetof(mold_dit, txt_norm), SYM_J},
};
static const lin_spec BLOCK_LINEARS[] = {
    {"img_mod.1", offsetof(dit_block, img_mod), SYM_D6, SYM_D},
    {"txt_mod.1", offsetof(dit_block, txt_mod), SYM_D6, SYM_D},
    {"attn.to_q", offsetof(dit_block, to_q), SYM_D, SYM_D},
    {"attn.to_k", offsetof(dit_block, to_k), SYM_D, SYM_D},
    {"attn.to_v", offsetof(dit_block, to_v), SYM_D, SYM_D},
    {"attn.add_q_proj", offsetof(dit_block, add_q), SYM_D, SYM_D},
    {"attn.add_k_proj", offsetof(dit_block, add_k), SYM_D, SYM_D},
    {"attn.add_v_proj", offsetof(dit_block, add_v), SYM_D, SYM_D},
    {"attn.to_out.0", offsetof(dit_block, to_out), SYM_D, SYM_D},
    {"attn.to_add_out", offsetof(dit_block, to_add_out), SYM_D, SYM_D},
    {"img_mlp.net.0.proj", offsetof(dit_block, img_fc1), SYM_F, SYM_D},
    {"img_mlp.net.2", offsetof(dit_block, img_fc2), SYM_D, SYM_F},
    {"txt_mlp.net.0.proj", offsetof(dit_block, txt_fc1), SYM_F, SYM_D},
    {"txt_mlp.net.2", offsetof(dit_block, txt_fc2), SYM_D, SYM_F},
};
static const vec_spec BLOCK_VECS[] = {
    {"attn.norm_q.weight", offsetof(dit_block, norm_q), SYM_HD},
    {"attn.norm_k.weight", offsetof(dit_block, norm_k), SYM_HD},
    {"attn.norm_added_q.weight", offsetof(dit_block, norm_added_q), SYM_HD},
    {"attn.norm_added_k.weight", offsetof(dit_block, norm_added_k), SYM_HD},
};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Modulation chunk order inside each [6D] vector (TQI _modulate: chunk(2)
 * into norm1/norm2 halves, then chunk(3) into shift, scale, gate). */
enum { MOD_SHIFT1 = 0, MOD_SCALE1, MOD_GATE1, MOD_SHIFT2, MOD_SCALE2, MOD_GATE2 };
/* norm_out (AdaLayerNormContinuous): scale first, then shift. */
enum { OUT_SCALE = 0, OUT_SHIFT = 1 };

static const float LN_EPS = 1e-6f;   /* block and output LayerNorms */
static const float RMS_EPS = 1e-6f;  /* txt_norm and QK norms */
static const double ROPE_THETA = 10000.0;

/* ------------------------------------------------------------------------ */
/* ---- config ---- */

static int64_t sym_value(const mold_dit_config *c, dim_sym s) {
    int64_t d = (int64_t)c->num_attention_heads * c->attention_head_dim;
    switch (s) {
    case SYM_D: return d;
    case SYM_D2: return 2 * d;
    case SYM_D6: return 6 * d;
    case SYM_F: return 4 * d;
    case SYM_J: return c->joint_attention_dim;
    case SYM_IN: return c->in_channels;
    case SYM_OUT: return (int64_t)c->patch_size * c->patch_size * c->out_channels;
    case SYM_T: return MOLD_DIT_TIME_CHANNELS;
    case SYM_HD: return c->attention_head_dim;
    }
    return 0;
}

static mold_status check_range(const char *field, int v, int lo, int hi) {
    if (v < lo || v > hi)
        return MOLD_ERR(MOLD_E_INVALID, "transformer config: %s: expected %d..%d, got %d", field,
                        lo, hi, v);
    return MOLD_OK;
}

mold_status mold_dit_config_check(const mold_dit_config *c) {
    if (!c) return MOLD_ERR(MOLD_E_INVALID, "transformer config: NULL");
    /* Bounds keep every size product far from int64 overflow. */
    MOLD_TRY(check_range("patch_size", c->patch_size, 1, 16));
    MOLD_TRY(check_range("in_channels", c->in_channels, 1, 1 << 16));
    MOLD_TRY(check_range("out_channels", c->out_channels, 1, 1 << 12));
    MOLD_TRY(check_range("num_layers", c->num_layers, 0, 1024));
    MOLD_TRY(check_range("attention_head_dim", c->attention_head_dim, 2, 1024));
    MOLD_TRY(check_range("num_attention_heads", c->num_attention_heads, 1, 256));
    MOLD_TRY(check_range("joint_attention_dim", c->joint_attention_dim, 1, 1 << 16));
    if (c->attention_head_dim % 2)
        return MOLD_ERR(MOLD_E_INVALID, "transformer config: attention_head_dim: expected even, got %d",
                        c->attention_head_dim);
    int sum = 0;
    for (int a = 0; a < 3; a++) {
        MOLD_TRY(check_range("axes_dims_rope[i]", c->axes_dims_rope[a], 0, 1024));
        if (c->axes_dims_rope[a] % 2)
            return MOLD_ERR(MOLD_E_INVALID,
                            "transformer config: axes_dims_rope[%d]: expected even, got %d", a,
                            c->axes_dims_rope[a]);
        sum += c->axes_dims_rope[a];
    }
    if (sum != c->attention_head_dim)
        return MOLD_ERR(MOLD_E_INVALID,
                        "transformer config: axes_dims_rope sum: expected %d (attention_head_dim), got %d",
                        c->attention_head_dim, sum);
    if (c->guidance_embeds || c->zero_cond_t || c->use_additional_t_cond || c->use_layer3d_rope)
        return MOLD_ERR(MOLD_E_UNSUPPORTED,
                        "transformer config: guidance_embeds/zero_cond_t/use_additional_t_cond/"
                        "use_layer3d_rope: expected all false (text-to-image), got %d/%d/%d/%d",
                        c->guidance_embeds, c->zero_cond_t, c->use_additional_t_cond,
                        c->use_layer3d_rope);
    return MOLD_OK;
}

/* Shape of a tensor that must exist, as int64 dims; fails naming it. */
static mold_status source_shape(const mold_tensor_source *src, const char *name, int want_dims,
                                int64_t *dims) {
    const mold_tensor *t;
    MOLD_TRY(mold_source_get(src, name, &t));
    if (t->n_dims != want_dims)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': expected %d dims, got %d", src->what,
                        name, want_dims, t->n_dims);
    for (int i = 0; i < want_dims; i++) dims[i] = t->shape[i];
    return MOLD_OK;
}

mold_status mold_dit_config_from_source(const mold_tensor_source *src, mold_dit_config *out) {
    if (!src || !out) return MOLD_ERR(MOLD_E_INVALID, "NULL argument");
    mold_dit_config c = {0};
    int64_t img_in[2] = {0}, txt_in[2] = {0}, nq[1] = {0}, proj[2] = {0};
    MOLD_TRY(source_shape(src, "img_in.weight", 2, img_in));
    MOLD_TRY(source_shape(src, "txt_in.weight", 2, txt_in));
    MOLD_TRY(source_shape(src, "transformer_blocks.0.attn.norm_q.weight", 1, nq));
    MOLD_TRY(source_shape(src, "proj_out.weight", 2, proj));
    int n = 0;
    char name[96];
    for (; n < 1024; n++) {
        snprintf(name, sizeof name, "transformer_blocks.%d.img_mod.1.weight", n);
        if (!src->find(src->ud, name)) break;
    }
    if (nq[0] <= 0 || img_in[0] % nq[0] || proj[0] % 4)
        return MOLD_ERR(MOLD_E_FORMAT,
                        "%s: transformer shapes: img_in rows %lld must be a multiple of head dim "
                        "%lld and proj_out rows %lld of 4 (patch 2x2)",
                        src->what, (long long)img_in[0], (long long)nq[0], (long long)proj[0]);
    c.patch_size = 2; /* not recoverable from shapes; every Qwen-Image uses 2 */
    c.in_channels = (int)img_in[1];
    c.out_channels = (int)(proj[0] / 4);
    c.num_layers = n;
    c.attention_head_dim = (int)nq[0];
    c.num_attention_heads = (int)(img_in[0] / nq[0]);
    c.joint_attention_dim = (int)txt_in[1];
    if (c.attention_head_dim != 128)
        return MOLD_ERR(MOLD_E_UNSUPPORTED,
                        "%s: cannot infer axes_dims_rope for head dim %d (known: 128 -> "
                        "[16, 56, 56]); provide transformer/config.json",
                        src->what, c.attention_head_dim);
    c.axes_dims_rope[0] = 16;
    c.axes_dims_rope[1] = 56;
    c.axes_dims_rope[2] = 56;
    MOLD_TRY(mold_dit_config_check(&c));
    *out = c;
    return MOLD_OK;
}

/* ------------------------------------------------------------------------ */
/* ---- loading ---- */

static mold_status load_linear(mold_dit *d, const mold_tensor_source *src, const char *prefix,
                               const lin_spec *ls, dit_linear *l) {
    char name[160];
    int64_t rows = sym_value(&d->cfg, ls->rows), cols = sym_value(&d->cfg, ls->cols);
    const mold_tensor *t;
    snprintf(name, sizeof name, "%s%s.weight", prefix, ls->name);
    int64_t wshape[2] = {rows, cols};
    MOLD_TRY(mold_source_get_shaped(src, name, 2, wshape, &t));
    MOLD_TRY(d->be->i->weight_upload(d->be, t, rows, cols, &l->w));
    d->weight_bytes += l->w.row_bytes * (uint64_t)rows;
    snprintf(name, sizeof name, "%s%s.bias", prefix, ls->name);
    MOLD_TRY(mold_source_get_shaped(src, name, 1, &rows, &t));
    MOLD_TRY(d->be->i->upload_f32(d->be, t, &l->b));
    d->weight_bytes += (uint64_t)rows * sizeof(float);
    return MOLD_OK;
}

static mold_status load_vec(mold_dit *d, const mold_tensor_source *src, const char *prefix,
                            const vec_spec *vs, float **v) {
    char name[160];
    int64_t len = sym_value(&d->cfg, vs->len);
    const mold_tensor *t;
    snprintf(name, sizeof name, "%s%s", prefix, vs->name);
    MOLD_TRY(mold_source_get_shaped(src, name, 1, &len, &t));
    MOLD_TRY(d->be->i->upload_f32(d->be, t, v));
    d->weight_bytes += (uint64_t)len * sizeof(float);
    return MOLD_OK;
}

static mold_status load_all(mold_dit *d, const mold_tensor_source *src) {
    for (size_t i = 0; i < N_OF(TOP_LINEARS); i++)
        MOLD_TRY(load_linear(d, src, "", &TOP_LINEARS[i],
                             (dit_linear *)((char *)d + TOP_LINEARS[i].off)));
    for (size_t i = 0; i < N_OF(TOP_VECS); i++)
        MOLD_TRY(load_vec(d, src, "", &TOP_VECS[i], (float **)((char *)d + TOP_VECS[i].off)));
    for (int n = 0; n < d->cfg.num_layers; n++) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "transformer_blocks.%d.", n);
        char *blk = (char *)&d->blocks[n];
        for (size_t i = 0; i < N_OF(BLOCK_LINEARS); i++)
            MOLD_TRY(load_linear(d, src, prefix, &BLOCK_LINEARS[i],
                                 (dit_linear *)(blk + BLOCK_LINEARS[i].off)));
        for (size_t i = 0; i < N_OF(BLOCK_VECS); i++)
            MOLD_TRY(load_vec(d, src, prefix, &BLOCK_VECS[i],
                              (float **)(blk + BLOCK_VECS[i].off)));
    }
    return MOLD_OK;
}

mold_status mold_dit_load(mold_backend *be, const mold_dit_config *cfg,
                          const mold_tensor_source *src, mold_dit **out) {
    if (!be || !cfg || !src || !out) return MOLD_ERR(MOLD_E_INVALID, "NULL argument");
    *out = NULL;
    MOLD_TRY(mold_dit_config_check(cfg));
    mold_dit *d = calloc(1, sizeof *d);
    if (!d) return MOLD_ERR(MOLD_E_NOMEM, "out of memory for the transformer");
    d->be = be;
    d->cfg = *cfg;
    d->n_head = cfg->num_attention_heads;
    d->head_dim = cfg->attention_head_dim;
    d->dim = d->n_head * d->head_dim;
    d->ffn = sym_value(cfg, SYM_F);
    d->joint_dim = cfg->joint_attention_dim;
    d->in_ch = cfg->in_channels;
    d->out_ch = sym_value(cfg, SYM_OUT);
    if (cfg->num_layers > 0) {
        d->blocks = calloc((size_t)cfg->num_layers, sizeof *d->blocks);
        if (!d->blocks) {
            free(d);
            return MOLD_ERR(MOLD_E_NOMEM, "out of memory for %d blocks", cfg->num_layers);
        }
    }
    mold_status st = load_all(d, src);
    if (st != MOLD_OK) {
        mold_dit_free(d);
        return st;
    }
    MOLD_LOGD("transformer: %d blocks, D %lld, %lld weight bytes", cfg->num_layers,
              (long long)d->dim, (long long)d->weight_bytes);
    *out = d;
    return MOLD_OK;
}

static void free_linear(mold_backend *be, dit_linear *l) {
    if (l->w.data) be->i->weight_free(be, &l->w);
    be->i->free(be, l->b);
    l->b = NULL;
}

static void free_workspace(mold_dit *d) {
    if (d->ws) d->be->i->free(d->be, d->ws);
    d->ws = NULL;
    d->ws_bytes = 0;
    free(d->host_mem);
    d->host_mem = NULL;
    memset(&d->buf, 0, sizeof d->buf);
    memset(&d->host, 0, sizeof d->host);
    d->rope_h = d->rope_w = 0;
}

void mold_dit_release(mold_dit *d) {
    if (d) free_workspace(d);
}

void mold_dit_free(mold_dit *d) {
    if (!d) return;
    mold_backend *be = d->be;
    free_workspace(d);
    for (size_t i = 0; i < N_OF(TOP_LINEARS); i++)
        free_linear(be, (dit_linear *)((char *)d + TOP_LINEARS[i].off));
    be->i->free(be, d->txt_norm);
    for (int n = 0; d->blocks && n < d->cfg.num_layers; n++) {
        char *blk = (char *)&d->blocks[n];
        for (size_t i = 0; i < N_OF(BLOCK_LINEARS); i++)
            free_linear(be, (dit_linear *)(blk + BLOCK_LINEARS[i].off));
        for (size_t i = 0; i < N_OF(BLOCK_VECS); i++)
            be->i->free(be, *(float **)(blk + BLOCK_VECS[i].off));
    }
    free(d->blocks);
    free(d);
}

/* Bytes of one [rows, cols] matrix in dtype t, falling back to f16 when a
 * row is not a whole number of blocks (city96 convert.py does the same). */
static mold_status matrix_bytes(mold_dtype t, int64_t rows, int64_t cols, uint64_t *acc) {
    uint64_t rb;
    if (mold_dtype_row_bytes(t, (uint64_t)cols, &rb) != MOLD_OK) {
        if (!mold_dtype_get(t)) return MOLD_ERR(MOLD_E_INVALID, "invalid matrix dtype %d", (int)t);
        mold_error_clear();
        MOLD_TRY(mold_dtype_row_bytes(MOLD_F16, (uint64_t)cols, &rb));
    }
    *acc += rb * (uint64_t)rows + (uint64_t)rows * sizeof(float); /* + f32 bias */
    return MOLD_OK;
}

mold_status mold_dit_weight_bytes(const mold_dit_config *cfg, mold_dtype matrix_dtype,
                                  uint64_t *out) {
    if (!out) return MOLD_ERR(MOLD_E_INVALID, "NULL argument");
    MOLD_TRY(mold_dit_config_check(cfg));
    uint64_t top = 0, blk = 0;
    for (size_t i = 0; i < N_OF(TOP_LINEARS); i++)
        MOLD_TRY(matrix_bytes(matrix_dtype, sym_value(cfg, TOP_LINEARS[i].rows),
                              sym_value(cfg, TOP_LINEARS[i].cols), &top));
    for (size_t i = 0; i < N_OF(TOP_VECS); i++)
        top += (uint64_t)sym_value(cfg, TOP_VECS[i].len) * sizeof(float);
    for (size_t i = 0; i < N_OF(BLOCK_LINEARS); i++)
        MOLD_TRY(matrix_bytes(matrix_dtype, sym_value(cfg, BLOCK_LINEARS[i].rows),
                              sym_value(cfg, BLOCK_LINEARS[i].cols), &blk));
    for (size_t i = 0; i < N_OF(BLOCK_VECS); i++)
        blk += (uint64_t)sym_value(cfg, BLOCK_VECS[i].len) * sizeof(float);
    *out = top + blk * (uint64_t)cfg->num_layers;
    return MOLD_OK;
}

uint64_t mold_dit_loaded_weight_bytes(const mold_dit *d) { return d ? d->weight_bytes : 0; }

/* ------------------------------------------------------------------------ */
/* ---- workspace ---- */

/* Adds a buffer of n floats at the next 64-byte boundary; *ok cleared on
 * overflow. Returns its offset. */
static uint64_t place(uint64_t *cursor, uint64_t n_floats, bool *ok) {
    uint64_t off = (*cursor + 63) & ~(uint64_t)63, bytes;
    if (__builtin_mul_overflow(n_floats, (uint64_t)sizeof(float), &bytes) ||
        __builtin_add_overflow(off, bytes, cursor))
        *ok = false;
    return off;
}

static uint64_t mul3(uint64_t a, uint64_t b, uint64_t c, bool *ok) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_mul_overflow(r, c, &r)) *ok = false;
    return r;
}

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t m = a > b ? a : b;
    return m > c ? m : c;
}

static mold_status check_shape_args(int batch, int64_t n_img, int64_t n_txt) {
    /* Limits far above any real use; they keep the arithmetic exact. */
    if (batch < 1 || batch > 4096 || n_img < 1 || n_img > (1 << 26) || n_txt < 1 ||
        n_txt > (1 << 20))
        return MOLD_ERR(MOLD_E_RANGE,
                        "transformer shape: expected batch 1..4096, n_img 1..2^26, n_txt 1..2^20, "
                        "got batch %d, n_img %lld, n_txt %lld",
                        batch, (long long)n_img, (long long)n_txt);
    return MOLD_OK;
}

static mold_status make_layout(const mold_dit_config *cfg, int batch, int64_t n_img,
                               int64_t n_txt, dit_layout *lay) {
    MOLD_TRY(check_shape_args(batch, n_img, n_txt));
    bool ok = true;
    const uint64_t B = (uint64_t)batch, N = (uint64_t)n_img, L = (uint64_t)n_txt, S = N + L;
    const uint64_t D = (uint64_t)sym_value(cfg, SYM_D), F = (uint64_t)sym_value(cfg, SYM_F);
    const uint64_t J = (uint64_t)cfg->joint_attention_dim;
    const uint64_t half = (uint64_t)cfg->attention_head_dim / 2;
    uint64_t c = 0;
    lay->tsin = place(&c, B * MOLD_DIT_TIME_CHANNELS, &ok);
    lay->t_hid = place(&c, B * D, &ok);
    lay->stemb = place(&c, B * D, &ok);
    lay->mod_img = place(&c, B * 6 * D, &ok);
    lay->mod_txt = place(&c, B * 6 * D, &ok);
    lay->img_cos = place(&c, N * half, &ok);
    lay->img_sin = place(&c, N * half, &ok);
    lay->txt_cos = place(&c, L * half, &ok);
    lay->txt_sin = place(&c, L * half, &ok);
    lay->key_valid = place(&c, B * S, &ok);
    lay->img_h = place(&c, mul3(B, N, D, &ok), &ok);
    lay->txt_h = place(&c, mul3(B, L, D, &ok), &ok);
    lay->xi = place(&c, mul3(B, N, D, &ok), &ok);
    lay->xt = place(&c, mul3(B, L, D, &ok), &ok);
    lay->scratch = place(&c, max3(mul3(B, L, J, &ok), mul3(4, S, D, &ok),
                                  mul3(B, N > L ? N : L, F, &ok)),
                         &ok);
    lay->total = c;
    if (!ok)
        return MOLD_ERR(MOLD_E_RANGE, "transformer workspace for batch %d, n_img %lld, n_txt %lld "
                        "overflows 64 bits", batch, (long long)n_img, (long long)n_txt);
    return MOLD_OK;
}

mold_status mold_dit_workspace_bytes(const mold_dit_config *cfg, int64_t n_img, int64_t n_txt,
                                     int batch, uint64_t *out) {
    if (!out) return MOLD_ERR(MOLD_E_INVALID, "NULL argument");
    MOLD_TRY(mold_dit_config_check(cfg));
    dit_layout lay;
    MOLD_TRY(make_layout(cfg, batch, n_img, n_txt, &lay));
    *out = lay.total;
    return MOLD_OK;
}

/* Host scratch sizes in floats (see dit_host). */
static void host_sizes(const mold_dit_config *cfg, int batch, int64_t n_img, int64_t n_txt,
                       uint64_t sz[4]) {
    const uint64_t half = (uint64_t)cfg->attention_head_dim / 2;
    sz[0] = (uint64_t)batch * MOLD_DIT_TIME_CHANNELS;
    sz[1] = (uint64_t)batch * (uint64_t)(n_img + n_txt);
    sz[2] = 2 * (uint64_t)n_img * half;
    sz[3] = 2 * (uint64_t)n_txt * half;
}

mold_status mold_dit_host_scratch_bytes(const mold_dit_config *cfg, int64_t n_img,
                                        int64_t n_txt, int batch, uint64_t *out) {
    if (!out) return MOLD_ERR(MOLD_E_INVALID, "NULL argument");
    MOLD_TRY(mold_dit_config_check(cfg));
    MOLD_TRY(check_shape_args(batch, n_img, n_txt));
    uint64_t sz[4];
    host_sizes(cfg, batch, n_img, n_txt, sz);
    *out = (sz[0] + sz[1] + sz[2] + sz[3]) * sizeof(float);
    return MOLD_OK;
}

mold_status mold_dit_reserve(mold_dit *d, int batch, int64_t n_img, int64_t n_txt) {
    if (!d) return MOLD_ERR(MOLD_E_INVALID, "NULL model");
    dit_layout lay;
    MOLD_TRY(make_layout(&d->cfg, batch, n_img, n_txt, &lay));
    uint64_t sz[4];
    host_sizes(&d->cfg, batch, n_img, n_txt, sz);
    free_workspace(d);
    if (lay.total > SIZE_MAX)
        return MOLD_ERR(MOLD_E_RANGE, "transformer workspace of %llu bytes exceeds size_t",
                        (unsigned long long)lay.total);
    char *ws = d->be->i->alloc(d->be, (size_t)lay.total);
    if (!ws) {
        mold_error_prefix("transformer workspace (%llu bytes)", (unsigned long long)lay.total);
        return MOLD_E_NOMEM;
    }
    float *h = malloc((sz[0] + sz[1] + sz[2] + sz[3]) * sizeof(float));
    if (!h) {
        d->be->i->free(d->be, ws);
        return MOLD_ERR(MOLD_E_NOMEM, "out of memory for the transformer host scratch");
    }
    d->ws = ws;
    d->ws_bytes = lay.total;
    d->ws_batch = batch;
    d->ws_img = n_img;
    d->ws_txt = n_txt;
    d->host_mem = h;
    d->host.tsin = h;
    d->host.key_valid = h + sz[0];
    d->host.img_tab = h + sz[0] + sz[1];
    d->host.txt_tab = h + sz[0] + sz[1] + sz[2];
    dit_bufs *b = &d->buf;
    b->tsin = (float *)(ws + lay.tsin);
    b->t_hid = (float *)(ws + lay.t_hid);
    b->stemb = (float *)(ws + lay.stemb);
    b->mod_img = (float *)(ws + lay.mod_img);
    b->mod_txt = (float *)(ws + lay.mod_txt);
    b->img_cos = (float *)(ws + lay.img_cos);
    b->img_sin = (float *)(ws + lay.img_sin);
    b->txt_cos = (float *)(ws + lay.txt_cos);
    b->txt_sin = (float *)(ws + lay.txt_sin);
    b->key_valid = (float *)(ws + lay.key_valid);
    b->img_h = (float *)(ws + lay.img_h);
    b->txt_h = (float *)(ws + lay.txt_h);
    b->xi = (float *)(ws + lay.xi);
    b->xt = (float *)(ws + lay.xt);
    b->scratch = (float *)(ws + lay.scratch);
    return MOLD_OK;
}

/* ------------------------------------------------------------------------ */
/* ---- pure pieces: timestep sinusoid and RoPE ---- */

void mold_dit_timestep_sincos(float sigma, float out[MOLD_DIT_TIME_CHANNELS]) {
    const int half = MOLD_DIT_TIME_CHANNELS / 2;
    /* fp32 in the order of diffusers get_timestep_embedding: exponent =
     * -ln(max_period) * k / half; arg = scale * (t * exp(exponent)). */
    const float neg_log_period = -(float)log(10000.0);
    for (int k = 0; k < half; k++) {
        float f = expf(neg_log_period * (float)k / (float)half);
        float a = 1000.0f * (sigma * f);
        out[k] = (float)cos((double)a); /* flip_sin_to_cos: cos half first */
        out[half + k] = (float)sin((double)a);
    }
}

/* Diffusers centring (QwenEmbedRope._compute_video_freqs, scale_rope=True):
 * the first ceil(n/2) rows take negative positions -ceil(n/2).. -1. */
static int32_t centred(int i, int n) { return (int32_t)(i - (n - n / 2)); }
static int32_t txt_offset(int tok_h, int tok_w) {
    return (int32_t)(tok_h / 2 > tok_w / 2 ? tok_h / 2 : tok_w / 2);
}

void mold_dit_rope_positions(int tok_h, int tok_w, int64_t n_txt, int32_t (*img_pos)[3],
                             int32_t (*txt_pos)[3]) {
    if (img_pos)
        for (int r = 0; r < tok_h; r++)
            for (int c = 0; c < tok_w; c++) {
                int32_t *p = img_pos[(int64_t)r * tok_w + c];
                p[0] = 0;
                p[1] = centred(r, tok_h);
                p[2] = centred(c, tok_w);
            }
    if (txt_pos) {
        int32_t s = txt_offset(tok_h, tok_w);
        for (int64_t j = 0; j < n_txt; j++)
            txt_pos[j][0] = txt_pos[j][1] = txt_pos[j][2] = s + (int32_t)j;
    }
}

void mold_dit_rope_angles(const int axes_dims[3], const int32_t pos[3], float *ang) {
    int m = 0;
    for (int a = 0; a < 3; a++) {
        const int d = axes_dims[a];
        for (int k = 0; k < d / 2; k++) {
            /* fp32 like rope_params: 1 / theta^(arange(0,d,2)/d), then pos * omega */
            float e = (float)(2 * k) / (float)d;
            float omega = 1.0f / (float)pow(ROPE_THETA, (double)e);
            ang[m++] = (float)pos[a] * omega;
        }
    }
}

/* Fills tab = [cos rows | sin rows] ([2, n, half]) for n tokens whose
 * positions come from pos_of(i). */
typedef void (*pos_fn)(int64_t i, const void *ud, int32_t pos[3]);

static void fill_table(const mold_dit_config *cfg, int64_t n, pos_fn pos_of, const void *ud,
                       float *tab) {
    const int64_t half = cfg->attention_head_dim / 2;
    float ang[512];
    for (int64_t i = 0; i < n; i++) {
        int32_t pos[3];
        pos_of(i, ud, pos);
        mold_dit_rope_angles(cfg->axes_dims_rope, pos, ang);
        for (int64_t m = 0; m < half; m++) {
            tab[i * half + m] = (float)cos((double)ang[m]);
            tab[(n + i) * half + m] = (float)sin((double)ang[m]);
        }
    }
}

typedef struct grid { int h, w; } grid;
static void img_pos_of(int64_t i, const void *ud, int32_t pos[3]) {
    const grid *g = ud;
    pos[0] = 0;
    pos[1] = centred((int)(i / g->w), g->h);
    pos[2] = centred((int)(i % g->w), g->w);
}
static void txt_pos_of(int64_t i, const void *ud, int32_t pos[3]) {
    const grid *g = ud;
    pos[0] = pos[1] = pos[2] = txt_offset(g->h, g->w) + (int32_t)i;
}

/* Builds and uploads the RoPE tables for a token grid (image rows for the
 * grid, text rows for the whole reserved text length), unless cached. */
static mold_status upload_rope(mold_dit *d, int tok_h, int tok_w) {
    if (d->rope_h == tok_h && d->rope_w == tok_w) return MOLD_OK;
    const int64_t half = d->head_dim / 2, n = (int64_t)tok_h * tok_w, L = d->ws_txt;
    const size_t img_bytes = (size_t)(n * half) * sizeof(float);
    const size_t txt_bytes = (size_t)(L * half) * sizeof(float);
    grid g = {tok_h, tok_w};
    fill_table(&d->cfg, n, img_pos_of, &g, d->host.img_tab);
    fill_table(&d->cfg, L, txt_pos_of, &g, d->host.txt_tab);
    mold_backend *be = d->be;
    MOLD_TRY(be->i->upload(be, d->buf.img_cos, d->host.img_tab, img_bytes));
    MOLD_TRY(be->i->upload(be, d->buf.img_sin, d->host.img_tab + n * half, img_bytes));
    MOLD_TRY(be->i->upload(be, d->buf.txt_cos, d->host.txt_tab, txt_bytes));
    MOLD_TRY(be->i->upload(be, d->buf.txt_sin, d->host.txt_tab + L * half, txt_bytes));
    d->rope_h = tok_h;
    d->rope_w = tok_w;
    return MOLD_OK;
}

/* ------------------------------------------------------------------------ */
/* ---- forward ---- */

/* Shape of the current call. */
typedef struct dit_shape {
    int batch;
    int64_t n_img, n_txt, seq; /* N, L, S = L + N */
    const float *key_valid;    /* backend [B, S] or NULL when no text is padded */
} dit_shape;

static mold_status linear(mold_dit *d, float *y, const float *x, int64_t m, const dit_linear *l) {
    return d->be->i->matmul(d->be, y, x, m, &l->w, l->b);
}

/* LN(x)*(1+scale)+shift with one sample's modulation vector. */
static mold_status modulate(mold_dit *d, float *y, const float *x, const float *mod, int i_shift,
                            int i_scale, int64_t rows) {
    const int64_t D = d->dim;
    return d->be->i->layer_norm_modulate(d->be, y, x, mod + i_shift * D, mod + i_scale * D, rows,
                                         D, LN_EPS);
}

/* q or k of one stream: y = RoPE(RMSNorm_head(W x)) (per head over head_dim,
 * with gamma; RoPE after the QK norm, TQI processor order) with the stream's
 * tables, through tmp so the norm never runs in place. One fused pass when
 * the backend has rms_norm_rope. */
static mold_status qk_proj(mold_dit *d, float *y, float *tmp, const float *x, int64_t rows,
                           const dit_linear *l, const float *gamma, const float *cos_t,
                           const float *sin_t) {
    mold_backend *be = d->be;
    const int64_t H = d->n_head, hd = d->head_dim;
    MOLD_TRY(linear(d, tmp, x, rows, l));
    if (be->i->rms_norm_rope)
        return be->i->rms_norm_rope(be, y, tmp, gamma, rows, H, hd, RMS_EPS, cos_t, sin_t,
                                    MOLD_ROPE_INTERLEAVED);
    MOLD_TRY(be->i->rms_norm(be, y, tmp, gamma, rows * H, hd, RMS_EPS));
    return be->i->rope(be, y, rows, H, hd, cos_t, sin_t, MOLD_ROPE_INTERLEAVED);
}

/* Joint attention of sample b: modulated inputs xi/xt -> gated residual
 * update of img_h/txt_h. Uses scratch as q, k, v, o of [S, D] each. */
static mold_status attention_sample(mold_dit *d, const dit_block *bk, const dit_shape *s, int b) {
    mold_backend *be = d->be;
    const int64_t D = d->dim, H = d->n_head, hd = d->head_dim;
    const int64_t N = s->n_img, L = s->n_txt, S = s->seq;
    const dit_bufs *w = &d->buf;
    float *hi = w->img_h + b * N * D, *ht = w->txt_h + b * L * D;
    float *xi = w->xi + b * N * D, *xt = w->xt + b * L * D;
    const float *mi = w->mod_img + b * 6 * D, *mt = w->mod_txt + b * 6 * D;
    float *q = w->scratch, *k = q + S * D, *v = k + S * D, *o = v + S * D;

    MOLD_TRY(modulate(d, xi, hi, mi, MOD_SHIFT1, MOD_SCALE1, N));
    MOLD_TRY(modulate(d, xt, ht, mt, MOD_SHIFT1, MOD_SCALE1, L));
    /* joint order [text, image]: text rows 0..L-1, image rows L..S-1 */
    const float *tc = w->txt_cos, *ts = w->txt_sin, *ic = w->img_cos, *is = w->img_sin;
    MOLD_TRY(qk_proj(d, q, o, xt, L, &bk->add_q, bk->norm_added_q, tc, ts));
    MOLD_TRY(qk_proj(d, q + L * D, o, xi, N, &bk->to_q, bk->norm_q, ic, is));
    MOLD_TRY(qk_proj(d, k, o, xt, L, &bk->add_k, bk->norm_added_k, tc, ts));
    MOLD_TRY(qk_proj(d, k + L * D, o, xi, N, &bk->to_k, bk->norm_k, ic, is));
    MOLD_TRY(linear(d, v, xt, L, &bk->add_v));
    MOLD_TRY(linear(d, v + L * D, xi, N, &bk->to_v));
    const float *kv = s->key_valid ? s->key_valid + b * S : NULL;
    MOLD_TRY(be->i->attention(be, o, q, k, v, S, S, H, H, hd, 1.0f / sqrtf((float)hd), kv,
                              false));
    /* xi/xt are dead after the projections: they take the output projections */
    MOLD_TRY(linear(d, xt, o, L, &bk->to_add_out));
    MOLD_TRY(linear(d, xi, o + L * D, N, &bk->to_out));
    MOLD_TRY(be->i->gated_add(be, ht, mt + MOD_GATE1 * D, xt, L, D));
    return be->i->gated_add(be, hi, mi + MOD_GATE1 * D, xi, N, D);
}

/* x = fc2(gelu_tanh(fc1(x))) over `rows` rows, the hidden [rows, F] in
 * hid: the backend's fused op when it has one, else the three plain ops. */
static mold_status mlp(mold_dit *d, float *x, int64_t rows, const dit_linear *fc1,
                       const dit_linear *fc2, float *hid) {
    mold_backend *be = d->be;
    if (be->i->mlp_gelu)
        return be->i->mlp_gelu(be, x, x, rows, &fc1->w, fc1->b, &fc2->w, fc2->b, hid);
    MOLD_TRY(linear(d, hid, x, rows, fc1));
    MOLD_TRY(be->i->gelu_tanh(be, hid, hid, rows * d->ffn));
    return linear(d, x, hid, rows, fc2);
}

/* MLP half of one stream for all samples: h += gate2 * fc2(gelu(fc1(mod2(h)))).
 * x [B, n, D] holds the modulated input then the MLP output. */
static mold_status mlp_stream(mold_dit *d, float *h, float *x, const float *mod, int64_t n,
                              int batch, const dit_linear *fc1, const dit_linear *fc2) {
    const int64_t D = d->dim, rows = (int64_t)batch * n;
    for (int b = 0; b < batch; b++)
        MOLD_TRY(modulate(d, x + b * n * D, h + b * n * D, mod + b * 6 * D, MOD_SHIFT2, MOD_SCALE2,
                          n));
    MOLD_TRY(mlp(d, x, rows, fc1, fc2, d->buf.scratch)); /* scratch: [B, n, F] */
    for (int b = 0; b < batch; b++)
        MOLD_TRY(d->be->i->gated_add(d->be, h + b * n * D, mod + b * 6 * D + MOD_GATE2 * D,
                                     x + b * n * D, n, D));
    return MOLD_OK;
}

static mold_status block_forward(mold_dit *d, const dit_block *bk, const dit_shape *s) {
    const dit_bufs *w = &d->buf;
    /* per-sample modulation vectors [B, 6D] of both streams */
    MOLD_TRY(linear(d, w->mod_img, w->stemb, s->batch, &bk->img_mod));
    MOLD_TRY(linear(d, w->mod_txt, w->stemb, s->batch, &bk->txt_mod));
    for (int b = 0; b < s->batch; b++) MOLD_TRY(attention_sample(d, bk, s, b));
    MOLD_TRY(mlp_stream(d, w->img_h, w->xi, w->mod_img, s->n_img, s->batch, &bk->img_fc1,
                        &bk->img_fc2));
    return mlp_stream(d, w->txt_h, w->xt, w->mod_txt, s->n_txt, s->batch, &bk->txt_fc1,
                      &bk->txt_fc2);
}

/* temb for every sample: stemb = silu(linear_2(silu(linear_1(sincos)))).
 * Only silu(temb) is ever consumed (block mods and norm_out). */
static mold_status timestep_embed(mold_dit *d, const float *sigma, int batch) {
    mold_backend *be = d->be;
    const dit_bufs *w = &d->buf;
    for (int b = 0; b < batch; b++)
        mold_dit_timestep_sincos(sigma[b], d->host.tsin + b * MOLD_DIT_TIME_CHANNELS);
    MOLD_TRY(be->i->upload(be, w->tsin, d->host.tsin,
                           (size_t)batch * MOLD_DIT_TIME_CHANNELS * sizeof(float)));
    MOLD_TRY(linear(d, w->t_hid, w->tsin, batch, &d->t_fc1));
    MOLD_TRY(be->i->silu(be, w->t_hid, w->t_hid, batch * d->dim));
    MOLD_TRY(linear(d, w->stemb, w->t_hid, batch, &d->t_fc2));
    return be->i->silu(be, w->stemb, w->stemb, batch * d->dim);
}

/* Uploads the key mask [B, S] (text keys j >= txt_len[b] off, image keys
 * on); returns NULL through *kv when nothing is padded. */
static mold_status key_mask(mold_dit *d, const int *txt_len, const dit_shape *s,
                            const float **kv) {
    bool padded = false;
    for (int b = 0; b < s->batch; b++) padded |= txt_len[b] < s->n_txt;
    *kv = NULL;
    if (!padded) return MOLD_OK;
    float *h = d->host.key_valid;
    for (int b = 0; b < s->batch; b++)
        for (int64_t j = 0; j < s->seq; j++)
            h[b * s->seq + j] = (j >= txt_len[b] && j < s->n_txt) ? 0.0f : 1.0f;
    MOLD_TRY(d->be->i->upload(d->be, d->buf.key_valid, h,
                              (size_t)(s->batch * s->seq) * sizeof(float)));
    *kv = d->buf.key_valid;
    return MOLD_OK;
}

static mold_status check_forward_args(int batch, const float *img, int tok_h,
                                      int tok_w, const float *txt, const int *txt_len,
                                      int64_t n_txt, const float *sigma, const float *out) {
    if (!img || !txt || !txt_len || !sigma || !out)
        return MOLD_ERR(MOLD_E_INVALID, "transformer forward: NULL buffer");
    if (tok_h < 1 || tok_w < 1 || tok_h > 8192 || tok_w > 8192)
        return MOLD_ERR(MOLD_E_RANGE, "transformer forward: token grid: expected 1..8192 per side, "
                        "got %dx%d", tok_h, tok_w);
    MOLD_TRY(check_shape_args(batch, (int64_t)tok_h * tok_w, n_txt));
    for (int b = 0; b < batch; b++) {
        if (txt_len[b] < 0 || txt_len[b] > n_txt)
            return MOLD_ERR(MOLD_E_RANGE, "transformer forward: txt_len[%d]: expected 0..%lld, got %d",
                            b, (long long)n_txt, txt_len[b]);
        if (!isfinite(sigma[b]))
            return MOLD_ERR(MOLD_E_INVALID, "transformer forward: sigma[%d] is not finite", b);
    }
    return MOLD_OK;
}

mold_status mold_dit_forward(mold_dit *d, int batch, const float *img, int tok_h, int tok_w,
                             const float *txt, const int *txt_len, int64_t n_txt,
                             const float *sigma, float *out) {
    if (!d) return MOLD_ERR(MOLD_E_INVALID, "NULL model");
    MOLD_TRY(check_forward_args(batch, img, tok_h, tok_w, txt, txt_len, n_txt, sigma, out));
    const int64_t N = (int64_t)tok_h * tok_w, D = d->dim;
    if (!d->ws) MOLD_TRY(mold_dit_reserve(d, batch, N, n_txt));
    if (batch > d->ws_batch || N > d->ws_img || n_txt > d->ws_txt)
        return MOLD_ERR(MOLD_E_RANGE,
                        "transformer forward: shape (batch %d, n_img %lld, n_txt %lld) exceeds the "
                        "reservation (batch %d, n_img %lld, n_txt %lld)",
                        batch, (long long)N, (long long)n_txt, d->ws_batch, (long long)d->ws_img,
                        (long long)d->ws_txt);
    mold_backend *be = d->be;
    const dit_bufs *w = &d->buf;
    dit_shape s = {batch, N, n_txt, N + n_txt, NULL};
    MOLD_TRY(key_mask(d, txt_len, &s, &s.key_valid));
    MOLD_TRY(upload_rope(d, tok_h, tok_w));
    MOLD_TRY(timestep_embed(d, sigma, batch));

    /* input projections; the normed text lives in scratch until txt_in */
    MOLD_TRY(linear(d, w->img_h, img, batch * N, &d->img_in));
    MOLD_TRY(be->i->rms_norm(be, w->scratch, txt, d->txt_norm, batch * n_txt, d->joint_dim,
                             RMS_EPS));
    MOLD_TRY(linear(d, w->txt_h, w->scratch, batch * n_txt, &d->txt_in));

    for (int n = 0; n < d->cfg.num_layers; n++) MOLD_TRY(block_forward(d, &d->blocks[n], &s));

    /* norm_out: e = [scale | shift] (AdaLayerNormContinuous), mod_img reused */
    MOLD_TRY(linear(d, w->mod_img, w->stemb, batch, &d->norm_out));
    for (int b = 0; b < batch; b++)
        MOLD_TRY(be->i->layer_norm_modulate(be, w->xi + b * N * D, w->img_h + b * N * D,
                                            w->mod_img + b * 2 * D + OUT_SHIFT * D,
                                            w->mod_img + b * 2 * D + OUT_SCALE * D, N, D, LN_EPS));
    return linear(d, out, w->xi, batch * N, &d->proj_out);
}
