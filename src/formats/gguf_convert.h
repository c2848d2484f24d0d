/*
 * gguf_convert.h — `mold quantize`: a diffusers Qwen-Image transformer or a
 * Qwen2.5-VL text encoder (safetensors) to a quantized GGUF file.
 *
 * Outputs match the published converters (spec 4.5, 3.5):
 *  - transformer -> city96 style: general.architecture "qwen_image",
 *    diffusers tensor names (a "model.diffusion_model." / "model." prefix is
 *    stripped), 1-D tensors and tensors of <= 1024 values in F32, the rest in
 *    the requested type; a row that is not a whole number of blocks falls
 *    back to F16 (city96's llama-quantize patch);
 *  - text encoder -> llama.cpp style: general.architecture "qwen2vl",
 *    llama.cpp tensor names (token_embd, blk.N.attn_q, ...), hyper-parameters
 *    and the tokenizer (tokenizer.ggml.*) in the metadata, 1-D tensors F32,
 *    output.weight in Q6_K (Q8_0 for q8_0), K-quant rows that are not a
 *    whole number of 256-blocks fall back to Q5_0/Q5_1/Q8_0 (then F16), as
 *    llama-quantize does; the vision tower is dropped.
 * Optional bump rules (--rules city96, the "_M" mixes of the published
 * files) are listed in mold_quantize_tensor_type()'s comment.
 * Quantization uses the reference algorithms (quant.h), so the output is
 * what llama-quantize writes without an importance matrix.
 *
 * The output is written in one streaming pass (atomic rename at the end):
 * memory holds one tensor's output at a time, never the whole model.
 */
#ifndef MOLD_FORMATS_GGUF_CONVERT_H
#define MOLD_FORMATS_GGUF_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/dtype.h"
#include "../base/status.h"

typedef enum mold_quant_kind {
    MOLD_QUANT_TRANSFORMER = 0, /* Qwen-Image DiT -> city96 GGUF */
    MOLD_QUANT_TEXT = 1,        /* Qwen2.5-VL text model -> llama.cpp GGUF */
} mold_quant_kind;

typedef struct mold_quantize_opts {
    mold_dtype type;            /* q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K or q6_K */
    bool city96_rules;          /* apply the bump rules (see mold_quantize_tensor_type) */
    const char *tokenizer_path; /* text encoder: tokenizer dir or tokenizer.json; NULL: look
                                   in <in>/../tokenizer and <in> */
    const char *name;           /* general.name; NULL: derived from the input path */
    int n_threads;              /* <= 0: all CPUs */
} mold_quantize_opts;

typedef struct mold_quantize_stats {
    mold_quant_kind kind;
    size_t n_tensors;                    /* written */
    size_t n_skipped;                    /* source tensors not written (vision tower, ...) */
    size_t n_by_type[MOLD_DTYPE_COUNT];  /* tensors per output dtype */
    uint64_t bytes_in, bytes_out;        /* tensor data bytes */
} mold_quantize_stats;

/* Quantizes the safetensors checkpoint at `in` (file, index or directory) to
 * `out`. stats may be NULL. Errors name the input, the tensor and the
 * problem; a failed run leaves no file at `out`. */
mold_status mold_gguf_quantize(const char *in, const char *out, const mold_quantize_opts *opts,
                               mold_quantize_stats *stats);

/* The output dtype of one tensor. `name` is the output (GGUF) name, shape in
 * PyTorch order, n_layers the transformer / text-model layer count, base the
 * requested type. Exposed for tests and `mold quantize --dry-run`. */
mold_dtype mold_quantize_tensor_type(mold_quant_kind kind, const char *name, int n_dims,
                                     const int64_t *shape, int n_layers, mold_dtype base,
                                     bool city96_rules);

/* Parses "q4_K", "Q4_K_M"-less base names accepted by --type; INVALID else. */
mold_dtype mold_quantize_parse_type(const char *s);

#endif
