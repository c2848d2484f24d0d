/*
 * qwenimage_vae.h — the Qwen-Image VAE decoder (AutoencoderKLQwenImage, a
 * fine-tuned Wan-2.1 causal 3-D VAE) for single images, full or tiled.
 *
 * Decoding one latent frame makes every causal 3x3x3 conv an ordinary 3x3
 * conv with the checkpoint's last temporal tap (spec 7.2), so the decoder
 * is a 2-D network: post_quant_conv (1x1) -> conv_in -> mid block (res,
 * attention, res) -> up blocks (res x (num_res_blocks+1), nearest x2 + conv)
 * -> RMS_norm -> SiLU -> conv_out -> clamp [-1, 1].
 *
 * Usage:
 *   mold_vae *vae;
 *   MOLD_TRY(mold_vae_load(be, &cfg, &src, &vae));   // weights to `be`
 *   MOLD_TRY(mold_vae_decode(vae, z, h, w, NULL, img)); // z [16,h,w] -> img [3,8h,8w]
 *   mold_vae_free(vae);
 *
 * Memory (DESIGN.md principle 2): mold_vae_weight_bytes() and
 * mold_vae_workspace_bytes() predict exactly what load and decode reserve on
 * the backend. A tiled decode's workspace depends only on the tile size.
 */
#ifndef MOLD_MODELS_QWENIMAGE_VAE_H
#define MOLD_MODELS_QWENIMAGE_VAE_H

#include <stdint.h>

#include "../backend/ops.h"           /* defines: mold_backend */
#include "../formats/modeldir.h"      /* defines: mold_vae_config */
#include "../formats/tensor_source.h" /* defines: mold_tensor_source */

typedef struct mold_vae mold_vae;

/* Tiled decode: square tiles of `tile` latent pixels per side; neighbouring
 * tiles overlap by at least `overlap` latent pixels (the last tile of a row
 * or column is aligned to the latent's edge, so its overlap can be larger).
 * Overlaps are blended with linear ramps. Requires 1 <= tile and
 * 0 <= overlap < tile. A tile covering the whole latent gives exactly the
 * full decode. */
typedef struct mold_vae_tiling {
    int tile;    /* tile side, latent pixels */
    int overlap; /* minimum overlap between neighbours, latent pixels */
} mold_vae_tiling;

/* Loads the decoder half of a VAE checkpoint (diffusers names, or the
 * original Wan-2.1 names of single-file checkpoints; spec appendix A).
 * Conv weights stay in the checkpoint's dtype; 3x3x3 kernels are sliced to
 * their last temporal tap on the host (one buffer, owned by the vae).
 * Every tensor's shape is checked against cfg. `be` and the container behind
 * `src` must outlive the vae (the CPU backend keeps views of host memory). */
mold_status mold_vae_load(mold_backend *be, const mold_vae_config *cfg,
                          const mold_tensor_source *src, mold_vae **out);
void mold_vae_free(mold_vae *vae); /* NULL ok */

/* Upsampling factor from latent to image pixels (8 for Qwen-Image). */
int mold_vae_scale(const mold_vae_config *cfg);

/* Bytes the backend holds for the decoder's weights when its conv kernels
 * are stored in `conv_dtype` (f32, f16 or bf16) and vectors in f32. */
mold_status mold_vae_weight_bytes(const mold_vae_config *cfg, mold_dtype conv_dtype,
                                  uint64_t *out);
/* The weight bytes of a loaded vae (equals the prediction above for its dtype). */
uint64_t mold_vae_loaded_bytes(const mold_vae *vae);

/* Backend workspace bytes of one decode of an h x w latent (tiling NULL:
 * full decode). Tiled, it depends only on min(tile, h) x min(tile, w).
 * fused: the backend has the optional conv3x3_fused op (CUDA does, the CPU
 * backend does not); the decode then holds no normalised or upsampled maps.
 * mold_vae_decode allocates exactly this, once per call. */
mold_status mold_vae_workspace_bytes(const mold_vae_config *cfg, int h, int w,
                                     const mold_vae_tiling *tiling, bool fused, uint64_t *out);

/* Elements of the largest input of any 3x3 conv of the decoder for an h x w
 * latent (tiling as above): c_in rounded up to 16 times the input's pixels
 * (an upsampler's conv counted at its input, before the x2). The CUDA
 * backend packs each 3x3 conv's input into scratch as bf16 (2 bytes per
 * element); the planner sizes that from here. */
mold_status mold_vae_conv3x3_input_max(const mold_vae_config *cfg, int h, int w,
                                       const mold_vae_tiling *tiling, uint64_t *out);

/* Decodes z_host [z_dim, h, w] (host f32, already de-normalised:
 * z * latents_std + latents_mean) into img_host [3, S*h, S*w] (host f32 in
 * [-1, 1], S = mold_vae_scale). tiling NULL = one pass over the whole
 * latent. Tiled decodes also use host staging of
 * 4 * (z_dim * t^2 + 3 * S^2 * t^2 + S * (h + w)) bytes (t = tile side). */
mold_status mold_vae_decode(mold_vae *vae, const float *z_host, int h, int w,
                            const mold_vae_tiling *tiling, float *img_host);

#endif
