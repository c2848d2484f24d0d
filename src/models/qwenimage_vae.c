/*
 * qwenimage_vae.c — Qwen-Image VAE decoder for single images (see the header).
 *
 * Reference: diffusers models/autoencoders/autoencoder_kl_qwenimage.py
 * (QwenImageDecoder3d, AutoencoderKLQwenImage._decode), spec section 7 and
 * appendix A. What this file deliberately leaves out: the encoder, video
 * (frames after the first, the upsamplers' time_conv, the feature cache).
 *
 * Single frame = 2-D network. diffusers decodes frame 0 with an empty cache,
 * so every CausalConv3d pads the time axis with 2*p_t = kt-1 zero frames in
 * front: the input is [0, .., 0, x] and only tap kt-1 (the last) of each
 * kernel meets x. A 3x3x3 conv therefore equals a 3x3 conv with
 * W[:, :, kt-1], zero padding 1; 1x1x1 convs are 1x1 convs. The upsamplers'
 * time_conv is skipped for the first frame (cache slot "Rep").
 *
 * Layout: activations are [C, H, W] f32 in backend memory; the mid-block
 * attention works on tokens [HW, C], reached by the transpose op.
 *
 * Fused path: on a backend with conv3x3_fused (CUDA), norm -> SiLU -> conv
 * is one op reading the block input (after channel_rms_scale, one pass for
 * the per-pixel factors), the residual add happens in the second conv's
 * epilogue and nearest x2 + conv reads the small map: no normalised,
 * activated or upsampled map is written. The upsampler's conv then cannot
 * write over its input, so it writes T2 and the roles of X and T2 swap.
 * Elsewhere (CPU) the ops are composed; both compute the same function.
 *
 * Ownership: the mold_vae owns its backend weights/vectors and one host slab
 * holding the sliced 3x3 kernels (the CPU backend keeps views into it). A
 * decode owns one backend workspace, carved into four buffers (X, T1, T2,
 * SC) whose sizes plan_workspace() computes by walking the same network as
 * forward(), path for path; forward() asserts every use against those
 * capacities.
 *
 * Tiling: equal-size tiles on a grid (the last tile of a row/column is
 * aligned to the edge), each decoded independently, blended on the host
 * with separable linear ramps over the overlaps and normalised by the
 * summed weights. The mid-block attention then only sees its tile, which is
 * where most of the difference from a full decode comes from.
 */
#include "qwenimage_vae.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/dtype.h" /* defines: mold_dtype_get, mold_dtype_row_bytes */
#include "../base/log.h"   /* defines: MOLD_LOGD */

#define MAX_LEVELS 8 /* len(dim_mult) */
#define MAX_RES 8    /* residual blocks per up block (num_res_blocks + 1) */
#define OUT_CH 3     /* RGB */
#define ALIGN_FLOATS 16 /* 64-byte alignment of each carved buffer */

/* ---- model ---- */

typedef struct conv {
    mold_weight w; /* [c_out, c_in * k * k], checkpoint dtype */
    float *b;      /* [c_out] f32, backend */
    int c_in, c_out, k;
} conv;

typedef struct resblock {
    int c_in, c_out;
    float *g1;   /* [c_in] norm1 gamma */
    conv c1;     /* 3x3 c_in -> c_out */
    float *g2;   /* [c_out] norm2 gamma */
    conv c2;     /* 3x3 c_out -> c_out */
    bool has_sc; /* c_in != c_out */
    conv sc;     /* 1x1 shortcut c_in -> c_out */
} resblock;

typedef struct attnblock {
    int c;
    float *g;                 /* [c] norm gamma */
    mold_weight wq, wk, wv;   /* [c, c] each: row blocks of to_qkv [3c, c] */
    float *bq, *bk, *bv;      /* [c] each */
    mold_weight wp;           /* [c, c] proj */
    float *bp;                /* [c] */
} attnblock;

typedef struct upblock {
    int n_res;
    resblock res[MAX_RES];
    bool has_up; /* every block but the last */
    conv up;     /* after nearest x2: 3x3 c -> c/2 (resample.1) */
} upblock;

struct mold_vae {
    mold_backend *be;     /* borrowed */
    mold_vae_config cfg;  /* copy */
    int n_up;             /* len(dim_mult) */
    conv post_quant;      /* 1x1 z -> z */
    conv conv_in;         /* 3x3 z -> dims[0] */
    resblock mid0, mid1;  /* mid_block.resnets.0/1 */
    attnblock attn;       /* mid_block.attentions.0 */
    upblock up[MAX_LEVELS];
    float *g_out;         /* [dims[n]] norm_out gamma */
    conv conv_out;        /* 3x3 dims[n] -> 3 */
    uint8_t *slab;        /* host: sliced 3x3 kernels, referenced by weights */
    uint64_t weight_bytes;
};

/* ---- config ---- */

/* Checks what the decoder relies on; messages name the field. */
static mold_status check_config(const mold_vae_config *c) {
    if (c->z_dim < 1 || c->z_dim > 16)
        return MOLD_ERR(MOLD_E_INVALID, "vae config: z_dim: expected 1..16, got %d", c->z_dim);
    if (c->base_dim < 1 || c->base_dim > 4096)
        return MOLD_ERR(MOLD_E_INVALID, "vae config: base_dim: expected 1..4096, got %d",
                        c->base_dim);
    if (c->n_dim_mult < 1 || c->n_dim_mult > MAX_LEVELS)
        return MOLD_ERR(MOLD_E_INVALID, "vae config: dim_mult: expected 1..%d entries, got %d",
                        MAX_LEVELS, c->n_dim_mult);
    for (int i = 0; i < c->n_dim_mult; i++)
        if (c->dim_mult[i] < 1 || c->dim_mult[i] > 64)
            return MOLD_ERR(MOLD_E_INVALID, "vae config: dim_mult[%d]: expected 1..64, got %d",
                            i, c->dim_mult[i]);
    if (c->num_res_blocks < 0 || c->num_res_blocks + 1 > MAX_RES)
        return MOLD_ERR(MOLD_E_INVALID, "vae config: num_res_blocks: expected 0..%d, got %d",
                        MAX_RES - 1, c->num_res_blocks);
    if (c->n_attn_scales != 0)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "vae config: attn_scales: expected [], got %d entries",
                        c->n_attn_scales);
    return MOLD_OK;
}

/* Decoder channel ladder (diffusers: dims = [base*m for m in [dm[-1]] + dm[::-1]]). */
static int ladder(const mold_vae_config *c, int i) {
    int n = c->n_dim_mult;
    return c->base_dim * (i == 0 ? c->dim_mult[n - 1] : c->dim_mult[n - i]);
}

/* Input channels of up block i: halved after each upsampler (i > 0). */
static int up_in(const mold_vae_config *c, int i) {
    return i > 0 ? ladder(c, i) / 2 : ladder(c, i);
}

int mold_vae_scale(const mold_vae_config *cfg) {
    return 1 << (cfg->n_dim_mult - 1);
}

/* ---- loader ---- */

/* The loader walks the decoder twice: a checking pass (look up every tensor,
 * check its shape, count slab bytes) and a building pass (slice, upload). */
typedef struct loader {
    mold_backend *be;
    const mold_tensor_source *src;
    bool wan;             /* original Wan-2.1 names (Comfy / sd.cpp files) */
    bool build;           /* false: check and count; true: upload */
    uint8_t *slab;        /* host, slab_bytes (build pass) */
    uint64_t slab_bytes;  /* counted in the checking pass */
    uint64_t slab_used;
    uint64_t weight_bytes; /* backend bytes uploaded */
} loader;

static mold_status get_named(loader *ld, const char *prefix, const char *leaf,
                             const mold_tensor **t) {
    return mold_source_getf(ld->src, t, "%s%s%s", prefix, *leaf ? "." : "", leaf);
}

static mold_status shape_error(loader *ld, const char *prefix, const char *leaf,
                               const char *want, const mold_tensor *t) {
    char got[128];
    mold_shape_str(t->shape, t->n_dims, got, sizeof(got));
    return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s.%s': expected shape %s, got %s",
                    ld->src->what ? ld->src->what : "(source)", prefix, leaf, want, got);
}

/* Uploads a 1-D f32 view of n elements starting at element `first` of t. */
static mold_status upload_vec_part(loader *ld, const mold_tensor *t, int64_t first, int64_t n,
                                   float **out) {
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    if (!info || info->block_elems != 1 || !info->is_float)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "tensor '%s': expected a float dtype, got %s",
                        t->name ? t->name : "?", mold_dtype_name(t->dtype));
    mold_tensor v = *t;
    v.n_dims = 1;
    v.shape[0] = n;
    v.data = (const uint8_t *)t->data + (uint64_t)first * info->block_bytes;
    v.n_bytes = (uint64_t)n * info->block_bytes;
    MOLD_TRY(ld->be->i->upload_f32(ld->be, &v, out));
    ld->weight_bytes += (uint64_t)n * sizeof(float);
    return MOLD_OK;
}

/* A vector of n values ([n], [n,1,1] or [n,1,1,1] are all accepted). */
static mold_status load_vec(loader *ld, const char *prefix, const char *leaf, int64_t n,
                            float **out) {
    const mold_tensor *t;
    MOLD_TRY(get_named(ld, prefix, leaf, &t));
    if (t->n_dims < 1 || t->shape[0] != n || mold_tensor_nelems(t) != n) {
        char want[64];
        snprintf(want, sizeof(want), "[%" PRId64 "] (trailing 1s allowed)", n);
        return shape_error(ld, prefix, leaf, want, t);
    }
    if (!ld->build)
        return MOLD_OK;
    return upload_vec_part(ld, t, 0, n, out);
}

/* Copies tap `tap` of a [o, i, kt, k, k] kernel into the slab as [o, i*k*k]. */
static void slice_tap(const mold_tensor *t, int tap, uint8_t *dst, size_t es) {
    int64_t oi = t->shape[0] * t->shape[1], kt = t->shape[2];
    size_t plane = (size_t)(t->shape[3] * t->shape[4]) * es;
    const uint8_t *src = t->data;
    for (int64_t j = 0; j < oi; j++)
        memcpy(dst + (size_t)j * plane, src + ((size_t)j * (size_t)kt + (size_t)tap) * plane,
               plane);
}

/* A conv c_in -> c_out with a k x k kernel: `prefix`.weight is [o, i, k, k]
 * or [o, i, kt, k, k] (kt 1 or 3; the last tap is used), `prefix`.bias [o]. */
static mold_status load_conv(loader *ld, const char *prefix, int c_in, int c_out, int k,
                             conv *cv) {
    const mold_tensor *t;
    MOLD_TRY(get_named(ld, prefix, "weight", &t));
    bool ok4 = t->n_dims == 4, ok5 = t->n_dims == 5 && (t->shape[2] == 1 || t->shape[2] == 3);
    int sd = t->n_dims == 5 ? 3 : 2; /* first spatial dim */
    if (!(ok4 || ok5) || t->shape[0] != c_out || t->shape[1] != c_in || t->shape[sd] != k ||
        t->shape[sd + 1] != k) {
        char want[96];
        snprintf(want, sizeof(want), "[%d, %d, %d, %d] or [%d, %d, 3, %d, %d]", c_out, c_in, k,
                 k, c_out, c_in, k, k);
        return shape_error(ld, prefix, "weight", want, t);
    }
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    bool slice = ok5 && t->shape[2] > 1;
    if (slice && (!info || info->block_elems != 1 || !info->is_float))
        return MOLD_ERR(MOLD_E_UNSUPPORTED,
                        "tensor '%s.weight': 3-D kernels must be f32/f16/bf16, got %s", prefix,
                        mold_dtype_name(t->dtype));
    int64_t n_in = (int64_t)c_in * k * k;
    uint64_t bytes = slice ? (uint64_t)c_out * (uint64_t)n_in * info->block_bytes : 0;
    cv->c_in = c_in;
    cv->c_out = c_out;
    cv->k = k;
    if (!ld->build) {
        ld->slab_bytes += (bytes + 63) & ~(uint64_t)63;
        return load_vec(ld, prefix, "bias", c_out, NULL);
    }
    mold_tensor v = *t;
    if (slice) {
        uint8_t *dst = ld->slab + ld->slab_used;
        MOLD_ASSERT(ld->slab_used + bytes <= ld->slab_bytes);
        slice_tap(t, (int)t->shape[2] - 1, dst, info->block_bytes);
        ld->slab_used += (bytes + 63) & ~(uint64_t)63;
        v.data = dst;
        v.n_bytes = bytes;
    }
    v.n_dims = 2;
    v.shape[0] = c_out;
    v.shape[1] = n_in;
    MOLD_TRY(ld->be->i->weight_upload(ld->be, &v, c_out, n_in, &cv->w));
    ld->weight_bytes += cv->w.row_bytes * (uint64_t)c_out;
    return load_vec(ld, prefix, "bias", c_out, &cv->b);
}

static mold_status load_res(loader *ld, const char *prefix, int c_in, int c_out, resblock *r) {
    static const char *const dn[5] = {"norm1.gamma", "conv1", "norm2.gamma", "conv2",
                                      "conv_shortcut"};
    static const char *const wn[5] = {"residual.0.gamma", "residual.2", "residual.3.gamma",
                                      "residual.6", "shortcut"};
    const char *const *n = ld->wan ? wn : dn;
    char sub[256];
    r->c_in = c_in;
    r->c_out = c_out;
    r->has_sc = c_in != c_out;
    MOLD_TRY(load_vec(ld, prefix, n[0], c_in, &r->g1));
    snprintf(sub, sizeof(sub), "%s.%s", prefix, n[1]);
    MOLD_TRY(load_conv(ld, sub, c_in, c_out, 3, &r->c1));
    MOLD_TRY(load_vec(ld, prefix, n[2], c_out, &r->g2));
    snprintf(sub, sizeof(sub), "%s.%s", prefix, n[3]);
    MOLD_TRY(load_conv(ld, sub, c_out, c_out, 3, &r->c2));
    if (r->has_sc) {
        snprintf(sub, sizeof(sub), "%s.%s", prefix, n[4]);
        MOLD_TRY(load_conv(ld, sub, c_in, c_out, 1, &r->sc));
    }
    return MOLD_OK;
}

/* to_qkv [3c, c, 1, 1] is uploaded as three [c, c] row blocks (q, k, v:
 * diffusers chunks the 3c output channels in that order). */
static mold_status load_attn(loader *ld, const char *prefix, int c, attnblock *a) {
    a->c = c;
    MOLD_TRY(load_vec(ld, prefix, "norm.gamma", c, &a->g));
    const mold_tensor *w, *b, *pw;
    MOLD_TRY(get_named(ld, prefix, "to_qkv.weight", &w));
    MOLD_TRY(get_named(ld, prefix, "to_qkv.bias", &b));
    MOLD_TRY(get_named(ld, prefix, "proj.weight", &pw));
    int64_t qkv_shape[4] = {3 * (int64_t)c, c, 1, 1}, p_shape[4] = {c, c, 1, 1};
    char want[64];
    if (!mold_tensor_has_shape(w, 4, qkv_shape)) {
        snprintf(want, sizeof(want), "[%d, %d, 1, 1]", 3 * c, c);
        return shape_error(ld, prefix, "to_qkv.weight", want, w);
    }
    if (b->n_dims != 1 || b->shape[0] != 3 * (int64_t)c) {
        snprintf(want, sizeof(want), "[%d]", 3 * c);
        return shape_error(ld, prefix, "to_qkv.bias", want, b);
    }
    if (!mold_tensor_has_shape(pw, 4, p_shape)) {
        snprintf(want, sizeof(want), "[%d, %d, 1, 1]", c, c);
        return shape_error(ld, prefix, "proj.weight", want, pw);
    }
    if (!ld->build)
        return load_vec(ld, prefix, "proj.bias", c, NULL);
    uint64_t row_bytes;
    MOLD_TRY(mold_dtype_row_bytes(w->dtype, (uint64_t)c, &row_bytes));
    mold_weight *dst[3] = {&a->wq, &a->wk, &a->wv};
    float **bias[3] = {&a->bq, &a->bk, &a->bv};
    for (int j = 0; j < 3; j++) {
        mold_tensor v = *w;
        v.n_dims = 2;
        v.shape[0] = c;
        v.shape[1] = c;
        v.data = (const uint8_t *)w->data + (uint64_t)j * (uint64_t)c * row_bytes;
        v.n_bytes = (uint64_t)c * row_bytes;
        MOLD_TRY(ld->be->i->weight_upload(ld->be, &v, c, c, dst[j]));
        ld->weight_bytes += dst[j]->row_bytes * (uint64_t)c;
        MOLD_TRY(upload_vec_part(ld, b, (int64_t)j * c, c, bias[j]));
    }
    MOLD_TRY(ld->be->i->weight_upload(ld->be, pw, c, c, &a->wp));
    ld->weight_bytes += a->wp.row_bytes * (uint64_t)c;
    return load_vec(ld, prefix, "proj.bias", c, &a->bp);
}

/* Module prefixes in either naming (spec 7.5 / appendix A). */
static void name_mid_res(const loader *ld, int j, char *buf, size_t cap) {
    if (ld->wan)
        snprintf(buf, cap, "decoder.middle.%d", 2 * j);
    else
        snprintf(buf, cap, "decoder.mid_block.resnets.%d", j);
}

static void name_up(const loader *ld, const mold_vae_config *c, int b, int r, bool upsampler,
                    char *buf, size_t cap) {
    int per = c->num_res_blocks + 2; /* Wan's flat list: res..., resample */
    if (ld->wan)
        snprintf(buf, cap, "decoder.upsamples.%d", b * per + (upsampler ? per - 1 : r));
    else if (upsampler)
        snprintf(buf, cap, "decoder.up_blocks.%d.upsamplers.0", b);
    else
        snprintf(buf, cap, "decoder.up_blocks.%d.resnets.%d", b, r);
}

/* One pass over the whole decoder (structure of QwenImageDecoder3d.__init__). */
static mold_status load_all(mold_vae *v, loader *ld) {
    const mold_vae_config *c = &v->cfg;
    char p[256], q[300];
    int z = c->z_dim, c0 = ladder(c, 0);
    MOLD_TRY(load_conv(ld, ld->wan ? "conv2" : "post_quant_conv", z, z, 1, &v->post_quant));
    MOLD_TRY(load_conv(ld, ld->wan ? "decoder.conv1" : "decoder.conv_in", z, c0, 3, &v->conv_in));
    name_mid_res(ld, 0, p, sizeof(p));
    MOLD_TRY(load_res(ld, p, c0, c0, &v->mid0));
    MOLD_TRY(load_attn(ld, ld->wan ? "decoder.middle.1" : "decoder.mid_block.attentions.0", c0,
                       &v->attn));
    name_mid_res(ld, 1, p, sizeof(p));
    MOLD_TRY(load_res(ld, p, c0, c0, &v->mid1));
    for (int b = 0; b < v->n_up; b++) {
        upblock *u = &v->up[b];
        int cin = up_in(c, b), cout = ladder(c, b + 1);
        u->n_res = c->num_res_blocks + 1;
        for (int r = 0; r < u->n_res; r++) {
            name_up(ld, c, b, r, false, p, sizeof(p));
            MOLD_TRY(load_res(ld, p, r == 0 ? cin : cout, cout, &u->res[r]));
        }
        u->has_up = b != v->n_up - 1;
        if (u->has_up) {
            name_up(ld, c, b, 0, true, p, sizeof(p));
            snprintf(q, sizeof(q), "%s.resample.1", p);
            MOLD_TRY(load_conv(ld, q, cout, cout / 2, 3, &u->up));
        }
    }
    int cf = ladder(c, v->n_up);
    MOLD_TRY(load_vec(ld, ld->wan ? "decoder.head.0" : "decoder.norm_out", "gamma", cf, &v->g_out));
    return load_conv(ld, ld->wan ? "decoder.head.2" : "decoder.conv_out", cf, OUT_CH, 3,
                     &v->conv_out);
}

static mold_status detect_names(const mold_tensor_source *src, bool *wan) {
    if (src->find(src->ud, "post_quant_conv.weight")) {
        *wan = false;
        return MOLD_OK;
    }
    if (src->find(src->ud, "conv2.weight") && src->find(src->ud, "decoder.conv1.weight")) {
        *wan = true;
        return MOLD_OK;
    }
    return MOLD_ERR(MOLD_E_NOTFOUND,
                    "%s: not a Qwen-Image VAE: expected 'post_quant_conv.weight' (diffusers) or "
                    "'conv2.weight' + 'decoder.conv1.weight' (Wan names), found neither",
                    src->what ? src->what : "(source)");
}

mold_status mold_vae_load(mold_backend *be, const mold_vae_config *cfg,
                          const mold_tensor_source *src, mold_vae **out) {
    MOLD_ASSERT(be && cfg && src && out);
    *out = NULL;
    MOLD_TRY(check_config(cfg));
    loader ld = {.be = be, .src = src};
    MOLD_TRY(detect_names(src, &ld.wan));
    mold_vae *v = calloc(1, sizeof(*v));
    if (!v)
        return MOLD_ERR(MOLD_E_NOMEM, "vae: out of host memory");
    v->be = be;
    v->cfg = *cfg;
    v->n_up = cfg->n_dim_mult;
    mold_status st = load_all(v, &ld); /* checking pass: shapes, slab size */
    if (st == MOLD_OK && ld.slab_bytes) {
        v->slab = aligned_alloc(64, ld.slab_bytes);
        if (!v->slab)
            st = MOLD_ERR(MOLD_E_NOMEM, "vae: cannot allocate %" PRIu64 " bytes of kernels",
                          ld.slab_bytes);
    }
    if (st == MOLD_OK) {
        ld.build = true;
        ld.slab = v->slab;
        st = load_all(v, &ld);
    }
    v->weight_bytes = ld.weight_bytes;
    if (st != MOLD_OK) {
        mold_vae_free(v);
        return st;
    }
    MOLD_LOGD("vae: loaded %s (%s names), %" PRIu64 " weight bytes", src->what ? src->what : "?",
              ld.wan ? "Wan" : "diffusers", ld.weight_bytes);
    *out = v;
    return MOLD_OK;
}

/* ---- free ---- */

static void free_weight(mold_backend *be, mold_weight *w) {
    if (w->data)
        be->i->weight_free(be, w);
    memset(w, 0, sizeof(*w));
}

static void free_vec(mold_backend *be, float **p) {
    be->i->free(be, *p);
    *p = NULL;
}

static void free_conv(mold_backend *be, conv *c) {
    free_weight(be, &c->w);
    free_vec(be, &c->b);
}

static void free_res(mold_backend *be, resblock *r) {
    free_vec(be, &r->g1);
    free_vec(be, &r->g2);
    free_conv(be, &r->c1);
    free_conv(be, &r->c2);
    free_conv(be, &r->sc);
}

void mold_vae_free(mold_vae *v) {
    if (!v)
        return;
    mold_backend *be = v->be;
    free_conv(be, &v->post_quant);
    free_conv(be, &v->conv_in);
    free_res(be, &v->mid0);
    free_res(be, &v->mid1);
    attnblock *a = &v->attn;
    free_vec(be, &a->g);
    free_weight(be, &a->wq);
    free_weight(be, &a->wk);
    free_weight(be, &a->wv);
    free_weight(be, &a->wp);
    free_vec(be, &a->bq);
    free_vec(be, &a->bk);
    free_vec(be, &a->bv);
    free_vec(be, &a->bp);
    for (int b = 0; b < MAX_LEVELS; b++) {
        for (int r = 0; r < MAX_RES; r++)
            free_res(be, &v->up[b].res[r]);
        free_conv(be, &v->up[b].up);
    }
    free_vec(be, &v->g_out);
    free_conv(be, &v->conv_out);
    free(v->slab);
    free(v);
}

uint64_t mold_vae_loaded_bytes(const mold_vae *vae) {
    return vae->weight_bytes;
}

/* ---- memory prediction ---- */

static uint64_t conv_bytes(uint64_t es, uint64_t ci, uint64_t co, uint64_t k) {
    return co * ci * k * k * es + co * sizeof(float);
}

static uint64_t res_bytes(uint64_t es, uint64_t ci, uint64_t co) {
    uint64_t n = (ci + co) * sizeof(float) + conv_bytes(es, ci, co, 3) + conv_bytes(es, co, co, 3);
    return n + (ci != co ? conv_bytes(es, ci, co, 1) : 0);
}

mold_status mold_vae_weight_bytes(const mold_vae_config *c, mold_dtype conv_dtype,
                                  uint64_t *out) {
    MOLD_TRY(check_config(c));
    const mold_dtype_info *info = mold_dtype_get(conv_dtype);
    if (!info || info->block_elems != 1 || !info->is_float)
        return MOLD_ERR(MOLD_E_INVALID, "vae weight bytes: expected f32/f16/bf16, got %s",
                        mold_dtype_name(conv_dtype));
    uint64_t es = info->block_bytes, z = (uint64_t)c->z_dim, c0 = (uint64_t)ladder(c, 0);
    uint64_t n = conv_bytes(es, z, z, 1) + conv_bytes(es, z, c0, 3);
    n += 2 * res_bytes(es, c0, c0);
    n += c0 * sizeof(float) + conv_bytes(es, c0, 3 * c0, 1) + conv_bytes(es, c0, c0, 1);
    for (int b = 0; b < c->n_dim_mult; b++) {
        uint64_t cin = (uint64_t)up_in(c, b), cout = (uint64_t)ladder(c, b + 1);
        for (int r = 0; r <= c->num_res_blocks; r++)
            n += res_bytes(es, r == 0 ? cin : cout, cout);
        if (b != c->n_dim_mult - 1)
            n += conv_bytes(es, cout, cout / 2, 3);
    }
    uint64_t cf = (uint64_t)ladder(c, c->n_dim_mult);
    *out = n + cf * sizeof(float) + conv_bytes(es, cf, OUT_CH, 3);
    return MOLD_OK;
}

/* Floats each workspace buffer must hold for an h x w latent (tile). */
typedef struct ws_plan {
    int64_t x, t1, t2, sc;
} ws_plan;

static void need(int64_t *cap, int64_t n) {
    if (n > *cap)
        *cap = n;
}

/* The buffers a step uses, by role: X and T2 are pointers because the fused
 * path swaps which physical buffer plays which role at each upsampler. */
typedef struct ws_roles {
    ws_plan *p;
    int64_t *x, *t2;
    bool fused;
} ws_roles;

static void plan_res(const ws_roles *r, int64_t ci, int64_t co, int64_t hw) {
    int64_t m = ci > co ? ci : co;
    need(r->x, m * hw);   /* input, then output (c_out) */
    need(r->t2, co * hw); /* conv outputs */
    if (!r->fused) {
        need(&r->p->t1, m * hw); /* norm1 (c_in), norm2 (c_out), shortcut (c_out) */
        return;
    }
    need(&r->p->sc, hw); /* per-pixel norm factors */
    if (ci != co)
        need(&r->p->t1, co * hw); /* shortcut */
}

/* Mirrors forward(): every buffer use there asserts against these sizes. */
static void plan_workspace(const mold_vae_config *c, int64_t h, int64_t w, bool fused,
                           ws_plan *p) {
    int64_t hw = h * w, z = c->z_dim, c0 = ladder(c, 0);
    memset(p, 0, sizeof(*p));
    ws_roles r = {p, &p->x, &p->t2, fused};
    need(&p->t1, z * hw); /* latent upload */
    need(r.t2, z * hw);   /* post_quant_conv */
    need(r.x, c0 * hw);   /* conv_in */
    plan_res(&r, c0, c0, hw);
    need(&p->t1, 3 * c0 * hw); /* q, k, v tokens */
    need(r.t2, c0 * hw);       /* transposes, attention output */
    plan_res(&r, c0, c0, hw);
    for (int b = 0; b < c->n_dim_mult; b++) {
        int64_t cin = up_in(c, b), cout = ladder(c, b + 1);
        for (int k = 0; k <= c->num_res_blocks; k++)
            plan_res(&r, k == 0 ? cin : cout, cout, hw);
        if (b == c->n_dim_mult - 1)
            continue;
        if (fused) {
            need(r.t2, (cout / 2) * 4 * hw); /* x2 + conv, then the roles swap */
            int64_t *t = r.x;
            r.x = r.t2;
            r.t2 = t;
        } else {
            need(&p->t1, cout * 4 * hw);      /* nearest x2 */
            need(r.x, (cout / 2) * 4 * hw); /* resample conv */
        }
        hw *= 4;
    }
    if (fused)
        need(&p->sc, hw); /* norm_out factors */
    else
        need(&p->t1, ladder(c, c->n_dim_mult) * hw); /* norm_out */
    need(r.t2, OUT_CH * hw);                         /* conv_out */
}

static int64_t align_floats(int64_t n) {
    return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

static uint64_t plan_bytes(const ws_plan *p) {
    return (uint64_t)(align_floats(p->x) + align_floats(p->t1) + align_floats(p->t2) +
                      align_floats(p->sc)) *
           sizeof(float);
}

/* Tile extent along one axis: the whole axis, or the tile when smaller. */
static int tile_extent(int n, const mold_vae_tiling *t) {
    return t && t->tile < n ? t->tile : n;
}

static mold_status check_dims(const mold_vae_config *c, int h, int w, const mold_vae_tiling *t) {
    int s = mold_vae_scale(c);
    if (h < 1 || w < 1 || h > 65536 / s || w > 65536 / s)
        return MOLD_ERR(MOLD_E_INVALID, "vae decode: latent size: expected 1..%d per side, got %dx%d",
                        65536 / s, h, w);
    if (t && (t->tile < 1 || t->overlap < 0 || t->overlap >= t->tile))
        return MOLD_ERR(MOLD_E_INVALID,
                        "vae tiling: expected tile >= 1 and 0 <= overlap < tile, got tile %d, "
                        "overlap %d", t->tile, t->overlap);
    return MOLD_OK;
}

mold_status mold_vae_workspace_bytes(const mold_vae_config *cfg, int h, int w,
                                     const mold_vae_tiling *tiling, bool fused, uint64_t *out) {
    MOLD_TRY(check_config(cfg));
    MOLD_TRY(check_dims(cfg, h, w, tiling));
    ws_plan p;
    plan_workspace(cfg, tile_extent(h, tiling), tile_extent(w, tiling), fused, &p);
    *out = plan_bytes(&p);
    return MOLD_OK;
}

static int64_t round16(int64_t c) {
    return (c + 15) / 16 * 16;
}

/* The walk of forward() over the 3x3 convs only: their inputs' sizes. */
mold_status mold_vae_conv3x3_input_max(const mold_vae_config *cfg, int h, int w,
                                       const mold_vae_tiling *tiling, uint64_t *out) {
    MOLD_TRY(check_config(cfg));
    MOLD_TRY(check_dims(cfg, h, w, tiling));
    int64_t hw = (int64_t)tile_extent(h, tiling) * tile_extent(w, tiling), c0 = ladder(cfg, 0);
    int64_t m = round16(cfg->z_dim) * hw; /* conv_in */
    int64_t mid = round16(c0) * hw;        /* the mid block's resnets */
    if (mid > m)
        m = mid;
    for (int b = 0; b < cfg->n_dim_mult; b++) {
        int64_t c = round16(up_in(cfg, b)), cout = round16(ladder(cfg, b + 1));
        int64_t r = (c > cout ? c : cout) * hw; /* conv1 of the first resnet, conv2s, upsampler */
        if (r > m)
            m = r;
        if (b != cfg->n_dim_mult - 1)
            hw *= 4;
    }
    int64_t last = round16(ladder(cfg, cfg->n_dim_mult)) * hw; /* conv_out */
    *out = (uint64_t)(last > m ? last : m);
    return MOLD_OK;
}

/* ---- forward ---- */

/* The carved workspace: four f32 buffers in backend memory. */
typedef struct ws {
    float *x;  /* block input/output [C, H, W] */
    float *t1; /* norm/activation temporaries, upsampled maps, q|k|v, shortcut */
    float *t2; /* conv outputs, transposes, attention output */
    float *sc; /* per-pixel norm factors [H, W] (fused path) */
    ws_plan cap; /* capacities in floats */
    bool fused;  /* the backend has conv3x3_fused */
} ws;

/* After an upsampler of the fused path: X and T2 trade places. */
static void swap_roles(ws *s) {
    float *p = s->x;
    s->x = s->t2;
    s->t2 = p;
    int64_t c = s->cap.x;
    s->cap.x = s->cap.t2;
    s->cap.t2 = c;
}

#define USE(buf, n) MOLD_ASSERT((int64_t)(n) <= s->cap.buf)

static mold_status conv_run(mold_backend *be, float *y, const float *x, const conv *c,
                            int64_t h, int64_t w) {
    return be->i->conv2d(be, y, x, c->c_in, h, w, &c->w, c->k, c->k, c->k / 2, c->b);
}

/* norm -> SiLU -> 3x3 conv (+ residual) as one fused op; sc holds the
 * per-pixel factors of x. */
static mold_status conv_nsilu(mold_backend *be, float *y, const float *x, const float *sc,
                              const float *gamma, const conv *c, int64_t h, int64_t w,
                              const float *residual) {
    mold_conv_fusion f = {.in_scale = sc, .in_gamma = gamma, .in_silu = true,
                          .residual = residual};
    return be->i->conv3x3_fused(be, y, x, c->c_in, h, w, &c->w, c->b, &f);
}

/* The fused twin of res_fwd below (same function, no norm/SiLU maps). */
static mold_status res_fwd_fused(mold_backend *be, const ws *s, const resblock *r, int64_t h,
                                 int64_t w) {
    int64_t hw = h * w, ci = r->c_in, co = r->c_out;
    USE(x, (ci > co ? ci : co) * hw);
    USE(t2, co * hw);
    USE(sc, hw);
    MOLD_TRY(be->i->channel_rms_scale(be, s->sc, s->x, ci, hw));
    MOLD_TRY(conv_nsilu(be, s->t2, s->x, s->sc, r->g1, &r->c1, h, w, NULL));
    MOLD_TRY(be->i->channel_rms_scale(be, s->sc, s->t2, co, hw));
    if (!r->has_sc)
        return conv_nsilu(be, s->x, s->t2, s->sc, r->g2, &r->c2, h, w, s->x);
    USE(t1, co * hw);
    MOLD_TRY(conv_run(be, s->t1, s->x, &r->sc, h, w));
    return conv_nsilu(be, s->x, s->t2, s->sc, r->g2, &r->c2, h, w, s->t1);
}

/* x = conv2(silu(norm2(conv1(silu(norm1(x)))))) + shortcut(x), in s->x. */
static mold_status res_fwd(mold_backend *be, const ws *s, const resblock *r, int64_t h,
                           int64_t w) {
    if (s->fused)
        return res_fwd_fused(be, s, r, h, w);
    int64_t hw = h * w, ci = r->c_in, co = r->c_out;
    USE(x, (ci > co ? ci : co) * hw);
    USE(t1, (ci > co ? ci : co) * hw);
    USE(t2, co * hw);
    MOLD_TRY(be->i->channel_rms_norm(be, s->t1, s->x, r->g1, ci, hw));
    MOLD_TRY(be->i->silu(be, s->t1, s->t1, ci * hw));
    MOLD_TRY(conv_run(be, s->t2, s->t1, &r->c1, h, w));
    MOLD_TRY(be->i->channel_rms_norm(be, s->t1, s->t2, r->g2, co, hw));
    MOLD_TRY(be->i->silu(be, s->t1, s->t1, co * hw));
    MOLD_TRY(conv_run(be, s->t2, s->t1, &r->c2, h, w));
    if (!r->has_sc)
        return be->i->add(be, s->x, s->x, s->t2, co * hw);
    MOLD_TRY(conv_run(be, s->t1, s->x, &r->sc, h, w));
    return be->i->add(be, s->x, s->t2, s->t1, co * hw);
}

/* x += proj(attention(to_qkv(norm(x)))): one head of dim C over the H*W
 * pixels as tokens, scale 1/sqrt(C), no mask (QwenImageAttentionBlock). */
static mold_status attn_fwd(mold_backend *be, const ws *s, const attnblock *a, int64_t hw) {
    int64_t c = a->c;
    float *q = s->t1, *k = s->t1 + c * hw, *v = s->t1 + 2 * c * hw; /* [HW, C] each */
    USE(x, c * hw);
    USE(t1, 3 * c * hw);
    USE(t2, c * hw);
    MOLD_TRY(be->i->channel_rms_norm(be, s->t1, s->x, a->g, c, hw));
    MOLD_TRY(be->i->transpose(be, s->t2, s->t1, c, hw)); /* t2 [HW, C] */
    MOLD_TRY(be->i->matmul(be, q, s->t2, hw, &a->wq, a->bq));
    MOLD_TRY(be->i->matmul(be, k, s->t2, hw, &a->wk, a->bk));
    MOLD_TRY(be->i->matmul(be, v, s->t2, hw, &a->wv, a->bv));
    MOLD_TRY(be->i->attention(be, s->t2, q, k, v, hw, hw, 1, 1, c, 1.0f / sqrtf((float)c), NULL,
                              false));
    MOLD_TRY(be->i->matmul(be, s->t1, s->t2, hw, &a->wp, a->bp)); /* t1 [HW, C] */
    MOLD_TRY(be->i->transpose(be, s->t2, s->t1, hw, c));          /* t2 [C, HW] */
    return be->i->add(be, s->x, s->x, s->t2, c * hw);
}

/* Up block b's upsampler: nearest x2 then a 3x3 conv c -> c/2, fused
 * (into T2, then the roles swap) or composed (through T1, into X). */
static mold_status upsample_fwd(mold_backend *be, ws *s, const conv *up, int64_t h, int64_t w) {
    int64_t ch = up->c_in, hw4 = 4 * h * w;
    if (s->fused) {
        USE(t2, up->c_out * hw4);
        mold_conv_fusion f = {.upsample2x = true};
        MOLD_TRY(be->i->conv3x3_fused(be, s->t2, s->x, ch, h, w, &up->w, up->b, &f));
        swap_roles(s);
        return MOLD_OK;
    }
    USE(t1, ch * hw4);
    USE(x, up->c_out * hw4);
    MOLD_TRY(be->i->upsample2x(be, s->t1, s->x, ch, h, w));
    return conv_run(be, s->x, s->t1, up, 2 * h, 2 * w);
}

/* norm_out -> SiLU -> conv_out -> clamp, from X into T2. */
static mold_status out_fwd(const mold_vae *v, const ws *s, int64_t h, int64_t w) {
    mold_backend *be = v->be;
    int64_t hw = h * w, cf = v->conv_out.c_in;
    USE(t2, OUT_CH * hw);
    if (s->fused) {
        USE(sc, hw);
        MOLD_TRY(be->i->channel_rms_scale(be, s->sc, s->x, cf, hw));
        MOLD_TRY(conv_nsilu(be, s->t2, s->x, s->sc, v->g_out, &v->conv_out, h, w, NULL));
    } else {
        USE(t1, cf * hw);
        MOLD_TRY(be->i->channel_rms_norm(be, s->t1, s->x, v->g_out, cf, hw));
        MOLD_TRY(be->i->silu(be, s->t1, s->t1, cf * hw));
        MOLD_TRY(conv_run(be, s->t2, s->t1, &v->conv_out, h, w));
    }
    return be->i->clamp(be, s->t2, s->t2, -1.0f, 1.0f, OUT_CH * hw);
}

/* Decodes the latent already uploaded to s0->t1 ([z, h, w]); leaves the
 * clamped image [3, S*h, S*w] in *img (one of the workspace buffers: the
 * fused path moves X and T2 around). */
static mold_status forward(const mold_vae *v, const ws *s0, int64_t h, int64_t w, float **img) {
    mold_backend *be = v->be;
    const mold_vae_config *c = &v->cfg;
    ws roles = *s0, *s = &roles;
    int64_t hw = h * w;
    USE(t2, c->z_dim * hw);
    USE(x, ladder(c, 0) * hw);
    MOLD_TRY(conv_run(be, s->t2, s->t1, &v->post_quant, h, w));
    MOLD_TRY(conv_run(be, s->x, s->t2, &v->conv_in, h, w));
    MOLD_TRY(res_fwd(be, s, &v->mid0, h, w));
    MOLD_TRY(attn_fwd(be, s, &v->attn, hw));
    MOLD_TRY(res_fwd(be, s, &v->mid1, h, w));
    for (int b = 0; b < v->n_up; b++) {
        const upblock *u = &v->up[b];
        for (int r = 0; r < u->n_res; r++)
            MOLD_TRY(res_fwd(be, s, &u->res[r], h, w));
        if (!u->has_up)
            continue;
        MOLD_TRY(upsample_fwd(be, s, &u->up, h, w));
        h *= 2;
        w *= 2;
    }
    MOLD_TRY(out_fwd(v, s, h, w));
    *img = s->t2;
    return MOLD_OK;
}

/* ---- tiling (host side) ---- */

/* Start of tile i along an axis of n latent pixels (tiles of len, stride). */
static int tile_start(int i, int n, int len, int stride) {
    int s = i * stride;
    return s + len > n ? n - len : s;
}

static int tile_count(int n, int len, int stride) {
    return n <= len ? 1 : (n - len + stride - 1) / stride + 1;
}

/* Blend weights of tile i (of count) along an axis, in image pixels:
 * linear ramps (k + 0.5) / overlap across each overlap with a neighbour,
 * 1 elsewhere and at the image border. */
static void ramp(float *wt, int i, int count, int n, int len, int stride, int scale) {
    int m = len * scale, st = tile_start(i, n, len, stride);
    for (int u = 0; u < m; u++)
        wt[u] = 1.0f;
    if (i > 0) {
        int ov = (tile_start(i - 1, n, len, stride) + len - st) * scale;
        for (int u = 0; u < ov && u < m; u++)
            wt[u] *= ((float)u + 0.5f) / (float)ov;
    }
    if (i < count - 1) {
        int ov = (st + len - tile_start(i + 1, n, len, stride)) * scale;
        for (int u = 0; u < ov && u < m; u++)
            wt[m - 1 - u] *= ((float)u + 0.5f) / (float)ov;
    }
}

typedef struct host_stage {
    float *z;      /* [z_dim, th, tw] tile latent */
    float *img;    /* [3, S*th, S*tw] tile output */
    float *wy, *wx; /* [S*th], [S*tw] ramps of the current tile */
    float *sy, *sx; /* [S*h], [S*w] summed ramps */
} host_stage;

/* Decodes tile (ty, tx) and accumulates its weighted output into img_host. */
static mold_status tile_run(mold_vae *v, const ws *s, const host_stage *hs, const float *z_host,
                            int h, int w, int y0, int x0, int th, int tw, float *img_host) {
    mold_backend *be = v->be;
    int sc = mold_vae_scale(&v->cfg), zc = v->cfg.z_dim;
    for (int c = 0; c < zc; c++)
        for (int y = 0; y < th; y++)
            memcpy(hs->z + ((size_t)c * th + y) * tw,
                   z_host + ((size_t)c * h + y0 + y) * w + x0, (size_t)tw * sizeof(float));
    MOLD_TRY(be->i->upload(be, s->t1, hs->z, (size_t)zc * th * tw * sizeof(float)));
    float *out;
    MOLD_TRY(forward(v, s, th, tw, &out));
    int oh = th * sc, ow = tw * sc, W = w * sc, H = h * sc;
    MOLD_TRY(be->i->download(be, hs->img, out, (size_t)OUT_CH * oh * ow * sizeof(float)));
    for (int c = 0; c < OUT_CH; c++)
        for (int y = 0; y < oh; y++) {
            float *dst = img_host + ((size_t)c * H + (size_t)y0 * sc + y) * W + (size_t)x0 * sc;
            const float *src = hs->img + ((size_t)c * oh + y) * ow;
            for (int x = 0; x < ow; x++)
                dst[x] += hs->wy[y] * hs->wx[x] * src[x];
        }
    return MOLD_OK;
}

static mold_status decode_tiled(mold_vae *v, const ws *s, const float *z_host, int h, int w,
                                const mold_vae_tiling *t, float *img_host) {
    int sc = mold_vae_scale(&v->cfg), th = tile_extent(h, t), tw = tile_extent(w, t);
    int stride = t->tile - t->overlap;
    int ny = tile_count(h, th, stride), nx = tile_count(w, tw, stride);
    size_t H = (size_t)h * sc, W = (size_t)w * sc;
    size_t n_z = (size_t)v->cfg.z_dim * th * tw, n_img = (size_t)OUT_CH * th * tw * sc * sc;
    size_t n_all = n_z + n_img + (size_t)(th + tw) * sc + H + W;
    float *buf = malloc(n_all * sizeof(float));
    if (!buf)
        return MOLD_ERR(MOLD_E_NOMEM, "vae tiled decode: cannot allocate %zu bytes of staging",
                        n_all * sizeof(float));
    host_stage hs = {.z = buf, .img = buf + n_z};
    hs.wy = hs.img + n_img;
    hs.wx = hs.wy + (size_t)th * sc;
    hs.sy = hs.wx + (size_t)tw * sc;
    hs.sx = hs.sy + H;
    memset(img_host, 0, (size_t)OUT_CH * H * W * sizeof(float));
    memset(hs.sy, 0, (H + W) * sizeof(float));
    mold_status st = MOLD_OK;
    for (int i = 0; i < ny && st == MOLD_OK; i++) {
        int y0 = tile_start(i, h, th, stride);
        ramp(hs.wy, i, ny, h, th, stride, sc);
        for (int u = 0; u < th * sc; u++)
            hs.sy[(size_t)y0 * sc + u] += hs.wy[u];
        for (int j = 0; j < nx && st == MOLD_OK; j++) {
            int x0 = tile_start(j, w, tw, stride);
            ramp(hs.wx, j, nx, w, tw, stride, sc);
            if (i == 0)
                for (int u = 0; u < tw * sc; u++)
                    hs.sx[(size_t)x0 * sc + u] += hs.wx[u];
            st = tile_run(v, s, &hs, z_host, h, w, y0, x0, th, tw, img_host);
        }
    }
    /* Normalise: the weights are separable, so a pixel's total is sy * sx.
     * The result is a convex combination of clamped tiles; clamping again
     * only removes rounding (1 + 1 ulp). */
    for (size_t c = 0; st == MOLD_OK && c < OUT_CH; c++)
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                float *p = &img_host[(c * H + y) * W + x];
                float q = *p / (hs.sy[y] * hs.sx[x]);
                *p = q < -1.0f ? -1.0f : q > 1.0f ? 1.0f : q;
            }
    free(buf);
    MOLD_LOGD("vae: tiled decode %dx%d in %dx%d tiles of %dx%d", h, w, ny, nx, th, tw);
    return st;
}

/* ---- decode ---- */

mold_status mold_vae_decode(mold_vae *v, const float *z_host, int h, int w,
                            const mold_vae_tiling *tiling, float *img_host) {
    MOLD_ASSERT(v && z_host && img_host);
    mold_backend *be = v->be;
    MOLD_TRY(check_dims(&v->cfg, h, w, tiling));
    int th = tile_extent(h, tiling), tw = tile_extent(w, tiling), sc = mold_vae_scale(&v->cfg);
    ws s;
    s.fused = be->i->conv3x3_fused != NULL;
    plan_workspace(&v->cfg, th, tw, s.fused, &s.cap);
    uint64_t bytes = plan_bytes(&s.cap);
    float *base = be->i->alloc(be, (size_t)bytes);
    if (!base)
        return MOLD_ERR(MOLD_E_NOMEM, "vae decode: cannot allocate %" PRIu64
                        " bytes of workspace (%s)", bytes, mold_error_message());
    s.x = base;
    s.t1 = s.x + align_floats(s.cap.x);
    s.t2 = s.t1 + align_floats(s.cap.t1);
    s.sc = s.t2 + align_floats(s.cap.t2);
    mold_status st;
    if (th == h && tw == w) { /* one tile: exactly the full decode */
        st = be->i->upload(be, s.t1, z_host, (size_t)v->cfg.z_dim * h * w * sizeof(float));
        float *out = NULL;
        if (st == MOLD_OK)
            st = forward(v, &s, h, w, &out);
        if (st == MOLD_OK)
            st = be->i->download(be, img_host, out,
                                 (size_t)OUT_CH * h * w * sc * sc * sizeof(float));
    } else {
        st = decode_tiled(v, &s, z_host, h, w, tiling, img_host);
    }
    if (st == MOLD_OK)
        st = be->i->sync(be);
    be->i->free(be, base);
    return st;
}
