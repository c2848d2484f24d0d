/*
 * qwen25_text.h — the Qwen2.5-VL language model as Qwen-Image uses it: the
 * text encoder that turns a templated prompt into conditioning vectors
 * (spec section 3; reference: transformers modeling_qwen2_5_vl.py,
 * diffusers QwenImagePipeline._get_qwen_prompt_embeds / encode_prompt).
 *
 * Written only against the backend op table (src/backend/ops.h), so every
 * backend runs the same code. Weights come from a mold_tensor_source under
 * their Hugging Face names ("model.layers.N.self_attn.q_proj.weight"; the
 * "model.language_model." prefix of newer checkpoints is accepted too);
 * the vision tower (visual.*) and lm_head are never looked up.
 *
 * Usage:
 *   mold_text_encoder *te;
 *   mold_text_encoder_load(be, &cfg, &src, &te);         // views, no copy on CPU
 *   mold_text_embeds e;
 *   mold_text_encode_prompts(te, tok, prompts, n, 512, &e); // [n, l_max, H] + mask
 *   ...
 *   mold_text_embeds_free(&e);
 *   mold_text_encoder_free(te);
 *
 * Memory (DESIGN.md principle 2): mold_text_encoder_weight_bytes() and
 * mold_text_encoder_workspace_bytes() give what load and forward hold in
 * backend memory. A forward makes exactly one backend allocation of the
 * workspace size, before the first layer, and frees it before returning.
 */
#ifndef MOLD_MODELS_QWEN25_TEXT_H
#define MOLD_MODELS_QWEN25_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "../backend/ops.h"         /* defines: mold_backend, mold_weight */
#include "../base/status.h"         /* defines: mold_status */
#include "../formats/modeldir.h"    /* defines: mold_text_config */
#include "../formats/tensor_source.h" /* defines: mold_tensor_source */
#include "qwen2_tokenizer.h"        /* defines: mold_tokenizer, MOLD_QWENIMAGE_* */

typedef struct mold_text_encoder mold_text_encoder;

/* Backend bytes of the weights when the matrices (embedding, projections,
 * MLP) are stored in `dtype` and the vectors (biases, norm gammas) in f32.
 * 0 when cfg is invalid or a row is not a whole number of `dtype` blocks. */
uint64_t mold_text_encoder_weight_bytes(const mold_text_config *cfg, mold_dtype dtype);

/* Backend bytes one forward of `batch` sequences of `n_tok` tokens
 * allocates (activations, RoPE tables, key mask). SIZE_MAX on overflow or
 * invalid arguments. */
size_t mold_text_encoder_workspace_bytes(const mold_text_config *cfg, int batch, int n_tok);

/* Looks up, checks (name, shape, dtype) and uploads every weight of the
 * language model. Errors name the tensor ("<source>: tensor 'x': expected
 * shape [..], got [..]"). `be` and `src`'s container are borrowed and must
 * outlive the encoder (the CPU backend keeps views into the mapping). On
 * failure nothing stays allocated. */
mold_status mold_text_encoder_load(mold_backend *be, const mold_text_config *cfg,
                                   const mold_tensor_source *src, mold_text_encoder **out);
void mold_text_encoder_free(mold_text_encoder *te); /* NULL ok */
const mold_text_config *mold_text_encoder_config(const mold_text_encoder *te);

/* Runs the model on ids [B, T] (host memory).
 *   mask: host [B, T] of 0/1 or NULL (all valid). Rows must be right-padded
 *         (ones then zeros) with at least one valid token. As in transformers
 *         5.17, token t of a row sits at position t, padded tokens are
 *         excluded from every query's keys, and padded rows are still
 *         computed (they attend to the valid tokens), so the whole [B, T, H]
 *         output matches the reference.
 *   hidden_last: host [B, T, hidden] f32, the output after the final norm
 *         (transformers hidden_states[-1]).
 *   hidden_layer1: host [B, T, hidden] f32 or NULL: the output of decoder
 *         layer 0 before any norm (transformers hidden_states[1]).
 * Fails without touching the outputs' contents on bad ids (out of the
 * vocabulary) or a bad mask, naming the row and column. */
mold_status mold_text_encoder_forward(mold_text_encoder *te, const int32_t *ids,
                                      const int32_t *mask, int B, int T, float *hidden_last,
                                      float *hidden_layer1);

/* Conditioning embeddings of a batch of prompts (spec 2.7, 3.4): right-padded
 * [n, l_max, hidden] f32 (zeros past each row's length) and a [n, l_max]
 * 0/1 mask. All arrays malloc'd; free with mold_text_embeds_free(). */
typedef struct mold_text_embeds {
    float *data;      /* [n, l_max, hidden] f32 */
    int32_t *mask;    /* [n, l_max]: 1 for t < lengths[i] */
    int32_t *lengths; /* [n]: conditioning tokens of each prompt */
    int n;            /* prompts */
    int l_max;        /* max of lengths (0 only when every prompt is empty of tokens) */
    int hidden;       /* hidden size */
} mold_text_embeds;
void mold_text_embeds_free(mold_text_embeds *e); /* zeroes *e; NULL ok */

/* Encodes already templated+tokenized sequences (ids[i] has n_ids[i] tokens,
 * the template included): one padded forward of the batch, then from each
 * sequence drops the first MOLD_QWENIMAGE_DROP_TOKENS positions and keeps at
 * most max_tokens (1..1024; the pipeline default is
 * MOLD_QWENIMAGE_MAX_TOKENS). A sequence of <= 34 tokens gives length 0. */
mold_status mold_text_encode_tokens(mold_text_encoder *te, const int32_t *const *ids,
                                    const size_t *n_ids, int n, int max_tokens,
                                    mold_text_embeds *out);

/* Template + tokenize (mold_qwenimage_tokenize_prompt) each prompt, then
 * mold_text_encode_tokens(). Prompts are NUL-terminated UTF-8. */
mold_status mold_text_encode_prompts(mold_text_encoder *te, const mold_tokenizer *tok,
                                     const char *const *prompts, int n, int max_tokens,
                                     mold_text_embeds *out);

#endif
