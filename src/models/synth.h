/*
 * synth.h — writes a complete Qwen-Image model directory with random weights
 * at the real shapes and tensor names (`mold synth`).
 *
 * Speed and memory do not depend on weight values, so benchmarks at full size
 * only need files that load like the published ones:
 *
 *   OUT/model_index.json
 *   OUT/scheduler/scheduler_config.json   the real Qwen-Image config
 *   OUT/transformer/config.json           + diffusers bf16 shards and index,
 *                                           or one city96-style GGUF
 *   OUT/text_encoder/config.json          transformers 4.x layout; + bf16
 *                                           shards and index, or one
 *                                           llama.cpp-style GGUF (qwen2vl)
 *   OUT/vae/config.json                   + diffusion_pytorch_model.safetensors
 *                                           (bf16): decoder and post_quant_conv
 *                                           only — the encoder is never used by
 *                                           text-to-image, so it is not written
 *   OUT/tokenizer/                        a copy of the given tokenizer files
 *
 * Values: deterministic for a seed and independent of the thread count (see
 * synth_gen.c for how they are drawn); matrices have std 1/sqrt(fan_in), norm
 * gammas are 1, biases N(0, 0.02^2), so a forward pass stays finite. The text
 * encoder has no lm_head and no visual.* tensors.
 *
 * Memory stays bounded: tensors are generated in slabs in parallel and
 * written sequentially; at most one tensor (GGUF) or one 64 MiB slab
 * (safetensors) is held at a time.
 */
#ifndef MOLD_MODELS_SYNTH_H
#define MOLD_MODELS_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/dtype.h"
#include "../base/status.h"

/* Components, for mold_synth_options.components (0 = all). model_index.json
 * and the scheduler config are always written. */
enum {
    MOLD_SYNTH_TRANSFORMER = 1,
    MOLD_SYNTH_TEXT_ENCODER = 2,
    MOLD_SYNTH_VAE = 4,
    MOLD_SYNTH_TOKENIZER = 8,
};

typedef struct mold_synth_options {
    const char *preset;        /* "qwen-image-2512", or "tiny": the shapes of
                                  tests/fixtures/qwen-image-tiny */
    mold_dtype transformer;    /* MOLD_BF16 (diffusers shards), or MOLD_Q4_0 / MOLD_Q4_K /
                                  MOLD_Q8_0 (GGUF) */
    mold_dtype text_encoder;   /* MOLD_BF16 (transformers shards) or MOLD_Q4_K / MOLD_Q8_0 (GGUF) */
    bool uniform;              /* GGUF: every quantizable matrix in the one type asked for,
                                  instead of the per-tensor mix of the published files */
    uint64_t seed;
    const char *tokenizer_dir; /* holds tokenizer.json (+ tokenizer_config.json, ...); required
                                  when the tokenizer or a GGUF text encoder is written */
    int n_threads;             /* <= 0: every online CPU */
    unsigned components;       /* MOLD_SYNTH_* mask; 0 = all */
} mold_synth_options;

typedef struct mold_synth_report {
    uint64_t n_tensors;        /* tensors written, all components */
    uint64_t n_bytes;          /* bytes of every file written */
    double seconds;            /* wall time of the whole write */
} mold_synth_report;

/* Writes the model into out_dir, which must not exist or be empty (so no
 * stale shard of an earlier run is ever mixed in). Fails with a message
 * naming the option or file at fault. rep may be NULL. */
mold_status mold_synth_write(const mold_synth_options *opt, const char *out_dir,
                             mold_synth_report *rep);

/* The preset names, NULL-terminated (for usage texts). */
extern const char *const mold_synth_presets[];

#endif
