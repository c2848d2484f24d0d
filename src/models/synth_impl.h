/*
 * synth_impl.h — internals shared by synth.c (layout, configs, safetensors
 * output), synth_gen.c (random values) and synth_gguf.c (GGUF output).
 * Not a public header: only src/models/synth*.c include it.
 */
#ifndef MOLD_MODELS_SYNTH_IMPL_H
#define MOLD_MODELS_SYNTH_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/dtype.h"
#include "../base/status.h"
#include "../base/tensor.h"
#include "synth.h"

/* ---- tensor plans ---- */

typedef enum synth_init {
    SYNTH_NORMAL, /* N(0, std^2) */
    SYNTH_ONES,   /* norm gammas */
} synth_init;

typedef struct synth_tensor {
    char name[112];               /* diffusers / transformers name */
    int n_dims;
    int64_t shape[MOLD_MAX_DIMS]; /* PyTorch order (outermost first) */
    synth_init init;
    float std;                    /* SYNTH_NORMAL: standard deviation */
    uint64_t seed;                /* this tensor's stream: f(run seed, component, index) */
    int layer;                    /* block / layer index, -1 outside the stack (type rules) */
    mold_dtype dtype;             /* storage dtype in the output file */
} synth_tensor;

typedef struct synth_list {
    synth_tensor *t;              /* owned */
    size_t n, cap;
} synth_list;

/* Components; the id also separates their random streams. */
enum { SYNTH_COMP_DIT = 1, SYNTH_COMP_TEXT = 2, SYNTH_COMP_VAE = 3 };

/* The tensor list of one component of a preset (module order, every dtype
 * bf16 until a GGUF type rule picks others). Tests use it to check the type
 * rules at full size without writing anything. */
mold_status mold_synth_component_list(const char *preset, int comp, uint64_t seed, synth_list *out);
void mold_synth_list_free(synth_list *l);

uint64_t mold_synth_nelems(const synth_tensor *t);
mold_status mold_synth_bytes(const synth_tensor *t, uint64_t *out); /* in t->dtype */

/* ---- value generation (synth_gen.c) ---- */

typedef struct synth_gen synth_gen;

/* Pools drawn from `seed` plus a worker pool of n_threads (<= 0: all CPUs). */
mold_status mold_synth_gen_create(uint64_t seed, int n_threads, synth_gen **out);
void mold_synth_gen_free(synth_gen *g); /* NULL ok */

/* Writes elements [e0, e0 + n) of t, stored as t->dtype, to dst (the bytes of
 * that element range). e0 must be a multiple of SYNTH_SLAB_ALIGN; for block
 * dtypes n must be whole blocks. The result depends only on (seed, t->seed,
 * element index), never on the split into calls or threads. */
#define SYNTH_SLAB_ALIGN 65536
mold_status mold_synth_gen_fill(synth_gen *g, const synth_tensor *t, uint64_t e0, uint64_t n,
                                void *dst);

/* ---- GGUF outputs (synth_gguf.c) ---- */

/* Picks each tensor's GGUF type for a transformer of n_layers blocks
 * (city96 convert.py + lcpp.patch rules unless uniform). */
void mold_synth_dit_gguf_types(synth_list *l, mold_dtype ftype, int n_layers, bool uniform);
/* Same for the text encoder (llama.cpp llama-quantize rules unless uniform). */
void mold_synth_text_gguf_types(synth_list *l, mold_dtype ftype, int n_layers, bool uniform);

typedef struct synth_text_hparams {
    const char *name;          /* general.name */
    int n_layers, hidden, heads, kv_heads, ffn, vocab, context;
    double rms_eps, rope_theta;
    int mrope[3];
} synth_text_hparams;

/* Writes l (transformers names) as a llama.cpp qwen2vl GGUF at path, with the
 * tokenizer of tokenizer_json in tokenizer.ggml.* metadata. */
mold_status mold_synth_write_text_gguf(synth_gen *g, const synth_list *l,
                                       const synth_text_hparams *hp, mold_dtype ftype,
                                       const char *tokenizer_json, const char *path,
                                       uint64_t *n_bytes);
/* Writes l (diffusers names) as a city96 qwen_image GGUF at path. */
mold_status mold_synth_write_dit_gguf(synth_gen *g, const synth_list *l, mold_dtype ftype,
                                      const char *path, uint64_t *n_bytes);

#endif
