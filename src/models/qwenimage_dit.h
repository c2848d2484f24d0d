/*
 * qwenimage_dit.h — the Qwen-Image diffusion transformer (MMDiT,
 * diffusers QwenImageTransformer2DModel; spec section 4, appendix C).
 *
 * Usage (one model, any number of forwards):
 *
 *   mold_dit *dit;
 *   mold_dit_load(be, &cfg, &src, &dit);            weights (views or copies)
 *   mold_dit_reserve(dit, batch, n_img, n_txt);     activations, once per plan
 *   for each step: mold_dit_forward(dit, ...);      no allocation inside
 *   mold_dit_free(dit);
 *
 * Weights are asked from a mold_tensor_source by their diffusers names
 * (transformer_blocks.N.attn.to_q.weight, ...), so diffusers shards, single
 * files and city96 GGUF files (any ggml block dtype) load through the same
 * code. 2-D weights go through be->i->weight_upload, 1-D tensors through
 * be->i->upload_f32.
 *
 * Memory (DESIGN.md principle 2): mold_dit_workspace_bytes() is the exact
 * number of backend bytes mold_dit_reserve() allocates (one be->i->alloc);
 * the forward allocates nothing else. A forward whose shape exceeds the
 * reservation is refused with MOLD_E_RANGE (buffers never grow silently).
 * mold_dit_reserve() also mallocs a small host scratch (sinusoids, RoPE
 * tables before upload, key masks): mold_dit_host_scratch_bytes().
 *
 * Conventions (see qwenimage_dit.c for the formulas):
 *   - odd token grids are centred as diffusers: rows r - ceil(tok_h/2);
 *   - text positions start at max(tok_h/2, tok_w/2) on all three axes;
 *   - padded text keys (j >= txt_len[b]) are excluded from attention, so a
 *     padded sample gives the same image output as the same sample alone.
 */
#ifndef MOLD_MODELS_QWENIMAGE_DIT_H
#define MOLD_MODELS_QWENIMAGE_DIT_H

#include <stdint.h>

#include "../backend/ops.h"          /* defines: mold_backend, mold_weight */
#include "../base/status.h"          /* defines: mold_status */
#include "../formats/modeldir.h"     /* defines: mold_dit_config */
#include "../formats/tensor_source.h" /* defines: mold_tensor_source */

/* Width of the timestep sinusoid (diffusers Timesteps(num_channels=256)). */
#define MOLD_DIT_TIME_CHANNELS 256

typedef struct mold_dit mold_dit;

/* ---- model ---- */

/* Checks a config against what this implementation supports (T2I flags off,
 * head_dim == sum(axes_dims_rope), all axes even, ...). The message names
 * the field: "transformer config: axes_dims_rope sum: expected 128, got 120". */
mold_status mold_dit_config_check(const mold_dit_config *cfg);

/* Derives a config from tensor shapes for sources without config.json
 * (GGUF): layers from the highest transformer_blocks.N present, widths from
 * img_in / txt_in / norm_q / proj_out. axes_dims_rope is only known for
 * head_dim 128 ({16, 56, 56}); other head dims fail with MOLD_E_UNSUPPORTED. */
mold_status mold_dit_config_from_source(const mold_tensor_source *src, mold_dit_config *out);

/* Loads every tensor (shapes checked against cfg) onto `be`. On failure
 * everything acquired so far is released and *out stays NULL. The source's
 * container must outlive the model when the backend keeps views (CPU). */
mold_status mold_dit_load(mold_backend *be, const mold_dit_config *cfg,
                          const mold_tensor_source *src, mold_dit **out);
void mold_dit_free(mold_dit *dit); /* NULL ok; releases weights and workspace */

/* Predicted weight bytes when every 2-D matrix is stored as `matrix_dtype`
 * (a matrix whose row is not a whole number of blocks counts as f16, as
 * city96's converter does) and 1-D tensors as f32. */
mold_status mold_dit_weight_bytes(const mold_dit_config *cfg, mold_dtype matrix_dtype,
                                  uint64_t *out);
/* Bytes of the weights this model actually holds (as stored). */
uint64_t mold_dit_loaded_weight_bytes(const mold_dit *dit);

/* ---- activations ---- */

/* Exact backend bytes of the workspace for `batch` samples of n_img image
 * tokens and n_txt (padded) text tokens. Pure: usable by the planner. Fails
 * on non-positive sizes or overflow. */
mold_status mold_dit_workspace_bytes(const mold_dit_config *cfg, int64_t n_img, int64_t n_txt,
                                     int batch, uint64_t *out);
/* Host bytes mold_dit_reserve() mallocs next to the workspace. */
mold_status mold_dit_host_scratch_bytes(const mold_dit_config *cfg, int64_t n_img,
                                        int64_t n_txt, int batch, uint64_t *out);

/* Allocates the workspace for forwards of up to (batch, n_img, n_txt),
 * replacing any previous reservation. Exactly one be->i->alloc of
 * mold_dit_workspace_bytes(). */
mold_status mold_dit_reserve(mold_dit *dit, int batch, int64_t n_img, int64_t n_txt);

/* Frees the workspace (and its host scratch) between requests, so the
 * weights alone stay resident; the next reserve or forward allocates anew.
 * NULL ok. */
void mold_dit_release(mold_dit *dit);

/* One transformer evaluation (velocity prediction) for `batch` samples.
 *   img     backend [batch, tok_h*tok_w, in_channels] packed latents
 *   txt     backend [batch, n_txt, joint_attention_dim] text embeddings,
 *           right-padded: sample b uses rows j < txt_len[b]
 *   txt_len host [batch], 0 <= txt_len[b] <= n_txt
 *   sigma   host [batch], the flow-matching sigma (the model embeds 1000*sigma)
 *   out     backend [batch, tok_h*tok_w, patch^2*out_channels]
 * Reserves the workspace on first use when mold_dit_reserve() was not
 * called; a shape larger than the reservation fails with MOLD_E_RANGE. */
mold_status mold_dit_forward(mold_dit *dit, int batch, const float *img, int tok_h, int tok_w,
                             const float *txt, const int *txt_len, int64_t n_txt,
                             const float *sigma, float *out);

/* ---- pure pieces (exposed for unit tests and other backends) ---- */

/* Timestep sinusoid of 1000*sigma: out[k] = cos(a_k), out[128+k] = sin(a_k),
 * a_k = 1000 * (sigma * exp(-ln(10000) * k / 128)) (spec 4.3.1, C.1). */
void mold_dit_timestep_sincos(float sigma, float out[MOLD_DIT_TIME_CHANNELS]);

/* RoPE positions (frame, row, col) per token (spec 4.4.3):
 * image token n = r*tok_w + c -> (0, r - ceil(tok_h/2), c - ceil(tok_w/2));
 * text token j -> S + j on all axes, S = max(tok_h/2, tok_w/2).
 * img_pos [tok_h*tok_w][3], txt_pos [n_txt][3] (either may be NULL). */
void mold_dit_rope_positions(int tok_h, int tok_w, int64_t n_txt, int32_t (*img_pos)[3],
                             int32_t (*txt_pos)[3]);

/* Rotation angles of one token, ang[head_dim/2]: for axis a with width d_a
 * and local pair k, ang = pos[a] / 10000^(2k/d_a) (fp32 as diffusers). */
void mold_dit_rope_angles(const int axes_dims[3], const int32_t pos[3], float *ang);

#endif
