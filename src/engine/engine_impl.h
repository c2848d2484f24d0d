/*
 * engine_impl.h — the engine's private state, shared by engine.c (open,
 * residency of the models), generate.c (the request pipeline) and
 * prompt_cache.c.
 *
 * Ownership: the engine owns the backend, the mapped weight containers and
 * every loaded model. Models are loaded on first use and kept resident until
 * mold_engine_close(); load counts are kept so tests and logs can show that
 * nothing was reloaded needlessly.
 */
#ifndef MOLD_ENGINE_IMPL_H
#define MOLD_ENGINE_IMPL_H

#include "backend/ops.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwen25_text.h"
#include "models/qwen2_tokenizer.h"
#include "models/qwenimage_dit.h"
#include "models/qwenimage_vae.h"
#include "mold/mold.h"

/* One weight container (safetensors set or GGUF file) and its tensor source. */
typedef struct mold_container {
    char *path;                 /* owned */
    mold_safetensors *st;       /* when safetensors */
    void *gguf;                 /* when GGUF (mold_gguf *) */
    mold_tensor_source src;     /* names -> tensors, borrows st/gguf */
} mold_container;

/* container.c: opens path (safetensors file/index/dir or .gguf). */
mold_status mold_container_open(const char *path, mold_container *c);
void mold_container_close(mold_container *c); /* zeroed struct ok */

#define PROMPT_CACHE_SLOTS 8

typedef struct prompt_cache_entry {
    char *prompt;               /* owned; NULL = empty slot */
    float *embeds;              /* [len, hidden] f32, owned */
    int32_t *ids;               /* templated ids, owned (for --dump) */
    size_t n_ids;
    int len;
    uint64_t last_used;         /* LRU clock */
} prompt_cache_entry;

struct mold_engine {
    mold_engine_options opt;
    char *name;                 /* model name for file names/metadata */
    mold_modeldir md;           /* configs (md.root NULL without a model dir) */
    mold_backend *be;

    mold_container c_dit, c_text, c_vae;
    mold_tokenizer *tok;
    mold_text_encoder *te;
    mold_dit *dit;
    mold_vae *vae;
    int n_loads_dit, n_loads_text, n_loads_vae; /* residency counters */

    prompt_cache_entry cache[PROMPT_CACHE_SLOTS];
    uint64_t cache_clock;
};

/* engine.c: loads a component if not resident (idempotent). */
mold_status mold_engine_need_tokenizer(mold_engine *e);
mold_status mold_engine_need_text(mold_engine *e);
mold_status mold_engine_need_dit(mold_engine *e);
mold_status mold_engine_need_vae(mold_engine *e);

/* prompt_cache.c */
/* Returns the cached entry for prompt or NULL. */
const prompt_cache_entry *mold_prompt_cache_get(mold_engine *e, const char *prompt);
/* Stores a copy (evicting the least recently used slot). */
mold_status mold_prompt_cache_put(mold_engine *e, const char *prompt, const float *embeds,
                                  int len, int hidden, const int32_t *ids, size_t n_ids);
void mold_prompt_cache_clear(mold_engine *e);

#endif
