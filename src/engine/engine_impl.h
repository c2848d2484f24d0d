/*
 * engine_impl.h — the engine's private state, shared by engine.c (open,
 * residency of the models), generate.c (the request pipeline) and
 * prompt_cache.c.
 *
 * Ownership: the engine owns the backends, the mapped weight containers and
 * every loaded model. Models are loaded when a request's plan needs them and
 * stay resident until the plan unloads them (residency.c) or
 * mold_engine_close(); load and unload counts are kept so tests and logs can
 * show that nothing was reloaded needlessly.
 */
#ifndef MOLD_ENGINE_IMPL_H
#define MOLD_ENGINE_IMPL_H

#include "backend/ops.h"
#include "engine/plan.h"
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
    mold_backend *be_host;      /* CPU backend for host placements (plan.h); NULL
                                   until a component is placed on the host */

    mold_container c_dit, c_text, c_vae;
    mold_tokenizer *tok;
    mold_text_encoder *te;
    bool te_on_host;            /* te lives on be_host */
    mold_dit *dit;
    mold_vae *vae;
    bool text_open, dit_open, vae_open; /* container open and config settled */
    int n_loads_dit, n_loads_text, n_loads_vae; /* residency counters */
    int n_unloads_dit, n_unloads_text, n_unloads_vae;
    uint64_t plan_peak0;        /* the backend's device peak at the last plan */
    uint64_t plan_base_in_use;  /* device bytes in use at the last plan that were
                                   not ours (for the measured-vs-predicted log) */
    mold_plan_hold hold_want[MOLD_COMP_COUNT];   /* hold for the next load (plan) */
    mold_plan_hold hold_loaded[MOLD_COMP_COUNT]; /* hold of what is loaded now */

    prompt_cache_entry cache[PROMPT_CACHE_SLOTS];
    uint64_t cache_clock;
};

/* engine.c: loads a component if not resident (idempotent). */
mold_status mold_engine_need_tokenizer(mold_engine *e);
mold_status mold_engine_need_text(mold_engine *e);
mold_status mold_engine_need_dit(mold_engine *e);
mold_status mold_engine_need_vae(mold_engine *e);
/* The text encoder on the host CPU backend (host) or the engine's backend;
 * one loaded elsewhere is unloaded first. */
mold_status mold_engine_need_text_at(mold_engine *e, bool host);
/* Open a component's container and settle its config (GGUF configs come from
 * the file) without loading weights. Idempotent. */
mold_status mold_engine_open_text(mold_engine *e);
mold_status mold_engine_open_dit(mold_engine *e);
mold_status mold_engine_open_vae(mold_engine *e);
/* Free a component's weights (counted); the container stays open. No-op
 * when not loaded. */
void mold_engine_unload_text(mold_engine *e);
void mold_engine_unload_dit(mold_engine *e);
void mold_engine_unload_vae(mold_engine *e);

/* residency.c: the planner's inputs and the plan carried out. */
/* What the model holds: configs and weight bytes as the backend will hold
 * them (opens the containers; loads nothing). */
mold_status mold_engine_facts(mold_engine *e, mold_model_facts *out);
/* Device and host memory now (memory_stats, /proc/meminfo), with the
 * engine's memory_budget applied. */
mold_status mold_engine_snapshot(mold_engine *e, const mold_model_facts *f,
                                 mold_device_snapshot *out);
/* Facts + snapshot + the engine's policy -> plan, logged as one JSON line. */
mold_status mold_engine_plan(mold_engine *e, const mold_plan_request *r, mold_plan *out);
/* Before stage s: unloads what is not live in s (or sits on the wrong
 * side), then loads what is live in s and not loaded yet. */
mold_status mold_engine_enter_stage(mold_engine *e, const mold_plan *p, mold_plan_stage s);
/* After stage s: logs the measured device peak against the prediction. */
void mold_engine_stage_done(mold_engine *e, const mold_plan *p, mold_plan_stage s);
/* After the request: unloads what the plan does not keep. */
void mold_engine_leave(mold_engine *e, const mold_plan *p);

/* prompt_cache.c */
/* Returns the cached entry for prompt or NULL. */
const prompt_cache_entry *mold_prompt_cache_get(mold_engine *e, const char *prompt);
/* Stores a copy (evicting the least recently used slot). */
mold_status mold_prompt_cache_put(mold_engine *e, const char *prompt, const float *embeds,
                                  int len, int hidden, const int32_t *ids, size_t n_ids);
void mold_prompt_cache_clear(mold_engine *e);

#endif
