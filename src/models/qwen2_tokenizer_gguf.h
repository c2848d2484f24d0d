/*
 * qwen2_tokenizer_gguf.h — the Qwen2 tokenizer from a llama.cpp-style GGUF
 * file's tokenizer.ggml.* metadata (used when no tokenizer files are given).
 */
#ifndef MOLD_MODELS_QWEN2_TOKENIZER_GGUF_H
#define MOLD_MODELS_QWEN2_TOKENIZER_GGUF_H

#include "../base/status.h"      /* defines: mold_status */
#include "../formats/gguf.h"     /* defines: mold_gguf */
#include "qwen2_tokenizer.h"     /* defines: mold_tokenizer */

/* Builds the tokenizer from tokenizer.ggml.model ("gpt2"), .pre ("qwen2"),
 * .tokens, .token_type (optional) and .merges: normal tokens (type 1) form
 * the BPE vocabulary, control (3) and user-defined (4) tokens become added
 * tokens (special for control), unused/unknown/byte entries (2, 5, 6: e.g.
 * the "[PAD151665]" fillers) are holes. Errors name the file and the key. */
mold_status mold_tokenizer_from_gguf(const mold_gguf *g, mold_tokenizer **out);

/* True when g carries tokenizer.ggml.tokens (a tokenizer can be built). */
int mold_gguf_has_tokenizer(const mold_gguf *g);

#endif
