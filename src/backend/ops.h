/*
 * ops.h — the backend op table every model forward is written against.
 *
 * Model code (src/models/) never touches activation memory directly: it holds
 * pointers into backend memory (host memory for the CPU backend, device memory
 * for CUDA), may do pointer arithmetic on them (offsets into a buffer), and
 * calls the ops below through the mold_backend handle. A new backend therefore
 * needs no change to model code (DESIGN.md principle 3).
 *
 * Numerics (DESIGN.md principle 4): activations passed between ops are f32.
 * A backend may round matmul/attention/conv inputs to bf16 internally (CUDA
 * does), never to f16. Norm statistics, softmax and RoPE are f32.
 *
 * Layout conventions:
 *   - matrices are row-major; a token sequence is [n_tok, dim];
 *   - multi-head tensors are [n_tok, n_head, head_dim];
 *   - images are [C, H, W] (one image at a time);
 *   - Linear weights are [n_out, n_in] like PyTorch (y = x W^T + b).
 *
 * Ownership: the backend owns what alloc() returns; model code frees it with
 * free(). Weights made with weight_upload() are freed with weight_free().
 */
#ifndef MOLD_BACKEND_OPS_H
#define MOLD_BACKEND_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/dtype.h"
#include "../base/status.h"
#include "../base/tensor.h"

#define MOLD_BACKEND_API_VERSION 1

/* A 2-D weight matrix [n_out, n_in] resident where the backend computes.
 * dtype may be f32, f16, bf16 or any ggml block format (rows of n_in values
 * packed in whole blocks). For the CPU backend `data` may point straight into
 * an mmap'd file (no copy); for CUDA it is device memory. */
typedef struct mold_weight {
    mold_dtype dtype;
    int64_t n_out;        /* rows */
    int64_t n_in;         /* columns (values per row) */
    uint64_t row_bytes;   /* bytes of one row in `dtype` */
    const void *data;     /* backend memory (or mmap for CPU); see owned */
    bool owned;           /* true when the backend allocated data */
} mold_weight;

typedef enum mold_rope_mode {
    MOLD_ROPE_INTERLEAVED = 0, /* pairs (2i, 2i+1): the DiT (diffusers use_real=False) */
    MOLD_ROPE_HALF = 1,        /* pairs (i, i + d/2): Qwen2.5 text encoder (NeoX) */
} mold_rope_mode;

typedef struct mold_backend mold_backend;

/* What conv3x3_fused does around the convolution (every member off when
 * NULL / false). The input transform T is, per channel c and input pixel p
 * of x [c_in, h, w]:
 *   v = x[c, p] * in_scale[p] * (in_gamma ? in_gamma[c] : 1)  (when in_scale)
 *   v = silu(v) = v / (1 + exp(-v))                          (when in_silu)
 * i.e. silu(channel_rms_norm(x, gamma)) when in_scale comes from
 * channel_rms_scale(x): the Wan VAE's norm -> SiLU -> conv. */
typedef struct mold_conv_fusion {
    const float *in_scale; /* [h * w] backend memory, nullable */
    const float *in_gamma; /* [c_in], nullable; used only with in_scale */
    bool in_silu;
    bool upsample2x;       /* the conv reads the nearest x2 upsample of T(x) */
    const float *residual; /* [c_out, H, W] added to the output, nullable */
} mold_conv_fusion;

/* The vtable. Every member is required unless marked (optional). All pointers
 * named x, y, q, k, v, out, ... are backend memory holding f32 unless noted.
 * Ops run in order on one stream; results are visible to later ops. */
typedef struct mold_backend_i {
    int version;          /* MOLD_BACKEND_API_VERSION */
    const char *name;     /* "cpu", "cuda" */

    /* ---- memory ---- */
    void (*destroy)(mold_backend *be);
    /* Allocates `bytes` of backend memory (64-byte aligned); NULL on failure
     * with the error set. */
    void *(*alloc)(mold_backend *be, size_t bytes);
    void (*free)(mold_backend *be, void *ptr); /* NULL ok */
    mold_status (*upload)(mold_backend *be, void *dst, const void *src_host, size_t bytes);
    mold_status (*download)(mold_backend *be, void *dst_host, const void *src, size_t bytes);
    /* Waits for all queued work; reports asynchronous errors. */
    mold_status (*sync)(mold_backend *be);
    /* Copies `bytes` between two backend buffers. */
    mold_status (*copy)(mold_backend *be, void *dst, const void *src, size_t bytes);

    /* ---- weights ---- */
    /* Makes a weight from a host tensor of shape [n_out, n_in] (any dims are
     * accepted when `n_out x n_in` equals the element count; the caller states
     * the 2-D view). The CPU backend keeps a view; others copy. */
    mold_status (*weight_upload)(mold_backend *be, const mold_tensor *t, int64_t n_out,
                                 int64_t n_in, mold_weight *out);
    void (*weight_free)(mold_backend *be, mold_weight *w);
    /* Converts any plain-typed host tensor (or block format) to f32 in backend
     * memory: for biases, norm gammas and other small vectors. */
    mold_status (*upload_f32)(mold_backend *be, const mold_tensor *t, float **out);

    /* ---- linear algebra ---- */
    /* y[m, n_out] = x[m, n_in] · W^T (+ bias[n_out] when bias != NULL). */
    mold_status (*matmul)(mold_backend *be, float *y, const float *x, int64_t m,
                          const mold_weight *w, const float *bias);
    /* y[i, :] = row ids[i] of table (any weight dtype). ids are host memory. */
    mold_status (*embed)(mold_backend *be, float *y, const mold_weight *table,
                         const int32_t *ids_host, int64_t n);

    /* ---- norms ---- */
    /* Per row of `dim`: y = x / sqrt(mean(x^2) + eps) * (gamma ? gamma : 1).
     * Used for RMSNorm over hidden (text encoder, txt_norm) and per head (QK). */
    mold_status (*rms_norm)(mold_backend *be, float *y, const float *x, const float *gamma,
                            int64_t rows, int64_t dim, float eps);
    /* Per row: y = LayerNorm(x; no affine, eps) * (1 + scale) + shift, with
     * shift/scale vectors of `dim` shared by all rows (one sample). */
    mold_status (*layer_norm_modulate)(mold_backend *be, float *y, const float *x,
                                       const float *shift, const float *scale,
                                       int64_t rows, int64_t dim, float eps);
    /* Image layout [C, HW]: y[c, p] = x[c, p] / max(||x[:, p]||_2, 1e-12)
     * * sqrt(C) * gamma[c] (Wan "RMS_norm" over channels). */
    mold_status (*channel_rms_norm)(mold_backend *be, float *y, const float *x,
                                    const float *gamma, int64_t c, int64_t hw);
    /* The per-pixel factor of channel_rms_norm alone: s[p] = sqrt(C) /
     * max(||x[:, p]||_2, 1e-12) for x [C, HW], s [HW] (so channel_rms_norm
     * is y[c, p] = x[c, p] * s[p] * gamma[c]). Feeds conv3x3_fused. */
    mold_status (*channel_rms_scale)(mold_backend *be, float *s, const float *x, int64_t c,
                                     int64_t hw);

    /* ---- position and attention ---- */
    /* In place on x[n_tok, n_head, head_dim]: rotate pairs by angle
     * cos/sin tables [n_tok, head_dim/2] (backend memory, f32). */
    mold_status (*rope)(mold_backend *be, float *x, int64_t n_tok, int64_t n_head,
                        int64_t head_dim, const float *cos_t, const float *sin_t,
                        mold_rope_mode mode);
    /* out[sq, hq, d] = softmax(q k^T * scale + mask) v for one sample.
     * q [sq, hq, d]; k, v [skv, hkv, d] with hq % hkv == 0 (query head h uses
     * kv head h / (hq / hkv)). key_valid (backend memory, nullable) is [skv]
     * of 0/1 floats: keys with 0 are excluded. causal: query i sees keys
     * j <= i + (skv - sq). A query row with no visible key outputs zeros.
     * Never materialises all heads' score matrices at once. */
    mold_status (*attention)(mold_backend *be, float *out, const float *q, const float *k,
                             const float *v, int64_t sq, int64_t skv, int64_t hq,
                             int64_t hkv, int64_t d, float scale, const float *key_valid,
                             bool causal);

    /* ---- elementwise (n elements, y may alias inputs) ---- */
    mold_status (*silu)(mold_backend *be, float *y, const float *x, int64_t n);
    mold_status (*gelu_tanh)(mold_backend *be, float *y, const float *x, int64_t n);
    /* y = silu(gate) * up */
    mold_status (*swiglu)(mold_backend *be, float *y, const float *gate, const float *up,
                          int64_t n);
    /* y = a + b */
    mold_status (*add)(mold_backend *be, float *y, const float *a, const float *b, int64_t n);
    /* y = a * alpha + b * beta (axpby; Euler steps, CFG) */
    mold_status (*axpby)(mold_backend *be, float *y, const float *a, float alpha,
                         const float *b, float beta, int64_t n);
    /* x[r, :] += gate[:] * y[r, :] for r < rows (gate nullable = 1). */
    mold_status (*gated_add)(mold_backend *be, float *x, const float *gate, const float *y,
                             int64_t rows, int64_t dim);
    /* y = min(max(x, lo), hi) */
    mold_status (*clamp)(mold_backend *be, float *y, const float *x, float lo, float hi,
                         int64_t n);
    /* Strided 2-D copy of `rows` rows of `cols` floats (concat, split). */
    mold_status (*copy_rows)(mold_backend *be, float *dst, int64_t dst_stride,
                             const float *src, int64_t src_stride, int64_t rows,
                             int64_t cols);
    /* dst[c, r] = src[r, c] for src [rows, cols] (dst is [cols, rows]; the
     * two must not overlap). Images [C, HW] <-> tokens [HW, C]. */
    mold_status (*transpose)(mold_backend *be, float *dst, const float *src, int64_t rows,
                             int64_t cols);

    /* ---- image ops, [C, H, W] f32 ---- */
    /* 2-D convolution, stride 1, zero padding `pad` on each side, weight
     * [c_out, c_in * kh * kw] (made from the checkpoint's last temporal tap
     * by the model loader), bias nullable. */
    mold_status (*conv2d)(mold_backend *be, float *y, const float *x, int64_t c_in,
                          int64_t h, int64_t w, const mold_weight *wt, int64_t kh,
                          int64_t kw, int64_t pad, const float *bias);
    /* y[C, 2H, 2W] = nearest-neighbour x2 upsample of x[C, H, W]. */
    mold_status (*upsample2x)(mold_backend *be, float *y, const float *x, int64_t c,
                              int64_t h, int64_t w);

    /* ---- guidance ---- */
    /* Per token (n_tok rows of dim): comb = u + s (c - u);
     * out = comb * ||c|| / ||comb|| (||comb|| == 0 -> factor 1). out may alias. */
    mold_status (*cfg_combine)(mold_backend *be, float *out, const float *cond,
                               const float *uncond, float scale, int64_t n_tok, int64_t dim);

    /* (optional) checks n floats for NaN/Inf; *bad set to the count found. */
    mold_status (*count_nonfinite)(mold_backend *be, const float *x, int64_t n,
                                   int64_t *bad);
    /* (optional) backend memory: bytes allocated now, the peak since create
     * (or the last reset), and the device's free/total (0 when unknown). */
    mold_status (*memory_stats)(mold_backend *be, uint64_t *in_use, uint64_t *peak,
                                uint64_t *dev_free, uint64_t *dev_total);
    /* (optional) How later weight_upload() calls hold matrices. MOLD_BF16:
     * block-format (and f16) weights are dequantized once, on the backend,
     * into a bf16 weight (out->dtype == MOLD_BF16) with the same kernels
     * matmul would use per call, so results do not change while the
     * per-call dequantization disappears (costs the bf16 bytes: the planner
     * decides). MOLD_DTYPE_INVALID: as stored (the default). f32 and bf16
     * weights are unaffected. Other values: MOLD_E_INVALID. */
    mold_status (*set_weight_hold)(mold_backend *be, mold_dtype hold);
    /* (optional) conv2d with kh = kw = 3, pad 1 and the work around it
     * fused in (see mold_conv_fusion): y [c_out, H, W] = conv(U(T(x))) +
     * bias + residual, where x is [c_in, h, w], T the pointwise input
     * transform, U the nearest x2 upsample when f->upsample2x (H, W = 2h,
     * 2w; else h, w). Zero padding is applied to U(T(x)), i.e. after the
     * transform. y must not overlap x; it may be the same buffer as
     * f->residual (each element is read before it is written). NULL f:
     * plain conv2d. Backends without it: compose channel_rms_norm, silu,
     * upsample2x, conv2d and add (what the model code does). */
    mold_status (*conv3x3_fused)(mold_backend *be, float *y, const float *x, int64_t c_in,
                                 int64_t h, int64_t w, const mold_weight *wt, const float *bias,
                                 const struct mold_conv_fusion *f);

    /* ---- fused ops (optional: NULL means "compose the plain ops") ---- */
    /* Two-layer MLP with tanh GELU, w2->n_in == w1->n_out == F:
     *   y[m, w2->n_out] = gelu_tanh(x[m, w1->n_in] W1^T + b1) W2^T + b2
     * (biases nullable). tmp is backend memory of m * F floats the op may
     * overwrite: the composition keeps the hidden activation there, CUDA
     * keeps it as bf16 (diffusers' bf16 Linear output, GELU on bf16) with
     * the bf16 x beside it. y may alias x (x is consumed first), not tmp.
     * Absent (the CPU backend): matmul into tmp, gelu_tanh, matmul. */
    mold_status (*mlp_gelu)(mold_backend *be, float *y, const float *x, int64_t m,
                            const mold_weight *w1, const float *b1, const mold_weight *w2,
                            const float *b2, float *tmp);
    /* Per-head RMSNorm then RoPE in one pass over x[n_tok, n_head, head_dim]:
     *   y = rope(x / sqrt(mean over head_dim of x^2 + eps) * gamma)
     * gamma [head_dim] nullable; cos_t, sin_t and mode as for rope(). y may
     * alias x. Absent (the CPU backend): rms_norm over n_tok * n_head rows,
     * then rope in place. */
    mold_status (*rms_norm_rope)(mold_backend *be, float *y, const float *x, const float *gamma,
                                 int64_t n_tok, int64_t n_head, int64_t head_dim, float eps,
                                 const float *cos_t, const float *sin_t, mold_rope_mode mode);
} mold_backend_i;

/* Every backend instance starts with this header. */
struct mold_backend {
    const mold_backend_i *i;
};

/* ---- constructors ---- */
/* CPU backend over a thread pool of n_threads (<= 0: all cores). */
mold_status mold_backend_cpu_create(int n_threads, mold_backend **out);
/* CUDA backend on device `device` (MOLD_E_UNSUPPORTED when built without CUDA). */
mold_status mold_backend_cuda_create(int device, mold_backend **out);
void mold_backend_free(mold_backend *be); /* NULL ok */

#endif
