/*
 * qwen2_tokenizer.h — Qwen2 byte-level BPE tokenizer (spec section 2) and the
 * Qwen-Image prompt template (spec 2.7).
 *
 * encode() reproduces Hugging Face `tokenizers` exactly: added/special tokens
 * split out first, NFC, the Qwen2 pre-tokenizer regex, byte-level symbols,
 * BPE by merge rank. No BOS/EOS is added.
 */
#ifndef MOLD_MODELS_QWEN2_TOKENIZER_H
#define MOLD_MODELS_QWEN2_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../base/status.h"

/* Number of template tokens dropped before the conditioning sequence. A fixed
 * constant of the reference pipeline, never computed from the template. */
#define MOLD_QWENIMAGE_DROP_TOKENS 34
/* Longest conditioning sequence (after the drop), as the reference. */
#define MOLD_QWENIMAGE_MAX_TOKENS 512
/* Tokenizer truncation: max_length 1024 + drop 34. */
#define MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS 1058

typedef struct mold_tokenizer mold_tokenizer;

/* Loads from a path that is a tokenizer.json file, or a directory holding
 * tokenizer.json or vocab.json + merges.txt (+ tokenizer_config.json /
 * added_tokens.json for the added tokens). */
mold_status mold_tokenizer_load(const char *path, mold_tokenizer **out);
/* Loads tokenizer.json content from memory (fuzzing, embedded copies); `what`
 * names it in errors. The buffer is not referenced after the call. */
mold_status mold_tokenizer_load_json_buf(const void *data, size_t size, const char *what,
                                         mold_tokenizer **out);
void mold_tokenizer_free(mold_tokenizer *tok); /* NULL ok */

/* Encodes len bytes of UTF-8 text (may contain NUL). *ids is malloc'd and
 * owned by the caller. Invalid UTF-8 fails naming the byte offset. */
mold_status mold_tokenizer_encode(const mold_tokenizer *tok, const char *text, size_t len,
                                  int32_t **ids, size_t *n_ids);
/* Decodes ids to UTF-8 (malloc'd, NUL-terminated, *len excludes the NUL). */
mold_status mold_tokenizer_decode(const mold_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                  char **text, size_t *len);
/* The token string (vocabulary form, e.g. "Ġcat") of id, or NULL. */
const char *mold_tokenizer_token(const mold_tokenizer *tok, int32_t id);
size_t mold_tokenizer_vocab_size(const mold_tokenizer *tok);

/* Wraps a prompt in the Qwen-Image template (exact bytes of spec 2.7).
 * *out is malloc'd and NUL-terminated; *out_len excludes the NUL. */
mold_status mold_qwenimage_template(const char *prompt, size_t len, char **out,
                                    size_t *out_len);
/* Template + encode + truncation to MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS. */
mold_status mold_qwenimage_tokenize_prompt(const mold_tokenizer *tok, const char *prompt,
                                           size_t len, int32_t **ids, size_t *n_ids);

#endif
