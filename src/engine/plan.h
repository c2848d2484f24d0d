/*
 * plan.h — the planner: every memory and policy decision of one request,
 * made up front by one pure function (DESIGN.md principles 1 and 2).
 *
 *   plan = mold_plan_make(request shape, model facts, device snapshot, policy)
 *
 * It decides, for the text encoder, the transformer and the VAE, where each
 * lives (the compute device or host memory), in which matrix dtype it is
 * held, during which stages its weights are resident (what to unload between
 * stages), whether cond/uncond go through the transformer as one batch of
 * two or as two forwards of one, and how the VAE decodes (whole, or tiled
 * with the largest tile that fits), and whether block-format matrices are
 * held as bf16 (only where that still fits with policy.hold_margin_bytes to
 * spare and gives nothing else up). It predicts the peak bytes of each stage
 * from the models' own *_weight_bytes() / *_workspace_bytes() functions, and
 * every plan it returns fits: peak <= budget for every stage and pool.
 *
 * Pure: no I/O, no globals, no backend calls. The engine gathers the inputs
 * (src/engine/residency.c) and carries the plan out (generate.c).
 *
 * Memory model (all bytes; "pool" = device memory on CUDA, host RAM on CPU):
 *   budget  = free + weights of our components already resident - headroom,
 *             headroom = headroom_bytes + headroom_frac * total;
 *   stage s = sum of weights live in s + the stage's workspace + its I/O
 *             buffers + the backend's per-op scratch (CUDA: see plan.c).
 * Stages: encode (text encoder; skipped when every prompt is cached),
 * denoise (transformer), decode (VAE). A component is live over a contiguous
 * range of stages: loaded before its first live stage (weights already
 * resident count from the start), unloaded after its last one; what is live
 * in the last stage stays resident after the request.
 */
#ifndef MOLD_ENGINE_PLAN_H
#define MOLD_ENGINE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"       /* defines: mold_dtype */
#include "base/status.h"      /* defines: mold_status */
#include "formats/modeldir.h" /* defines: mold_dit_config, mold_text_config, mold_vae_config */

/* Components and stages, used as array indices. */
typedef enum mold_plan_comp {
    MOLD_COMP_TEXT = 0, /* text encoder, used in the encode stage */
    MOLD_COMP_DIT = 1,  /* transformer, denoise */
    MOLD_COMP_VAE = 2,  /* VAE decoder, decode */
    MOLD_COMP_COUNT = 3,
} mold_plan_comp;

typedef enum mold_plan_stage {
    MOLD_STAGE_ENCODE = 0,
    MOLD_STAGE_DENOISE = 1,
    MOLD_STAGE_DECODE = 2,
    MOLD_STAGE_COUNT = 3,
} mold_plan_stage;

/* ---- inputs ---- */

/* The shape of the request (nothing about its content). */
typedef struct mold_plan_request {
    int width, height;  /* image pixels, multiples of 16 */
    int steps;          /* denoise steps (logged; memory does not depend on it) */
    bool cfg;           /* guidance > 1: a conditional and an unconditional pass */
    int n_txt_pos;      /* conditioning tokens of the prompt, 1..512 */
    int n_txt_neg;      /* of the negative prompt (cfg only), 1..512 */
    int n_encode;       /* templated tokens of the longest prompt the text encoder
                           must run on; 0 = every prompt is cached (no encode) */
    int vae_tile;       /* > 0: the caller's tile (latent px); 0: planner decides */
    int cfg_batch;      /* 1 or 2: the caller's choice; 0: planner decides */
} mold_plan_request;

/* How a component's matrices are held by the backend. */
typedef enum mold_plan_hold {
    MOLD_HOLD_STORED = 0, /* matrices kept in the checkpoint's dtype */
    MOLD_HOLD_BF16 = 1,   /* block formats dequantized to bf16 once at load
                             (backend set_weight_hold): no per-call dequant */
} mold_plan_hold;

/* One component's weights as they will be held by the backend. */
typedef struct mold_plan_weights {
    uint64_t bytes;          /* backend bytes of the weights (matrices as stored,
                                vectors f32; as held when resident) */
    mold_dtype matrix_dtype; /* dominant matrix dtype (for the log) */
    bool resident;           /* loaded now (by this engine) */
    bool on_host;            /* ... on the host CPU backend rather than the device.
                                Device-resident bytes are in use in the snapshot
                                and come back to the budget */
    uint64_t bytes_bf16;     /* bytes with block-format matrices held as bf16;
                                0 when that is not offered (no block formats,
                                or the backend cannot hold) */
    mold_plan_hold hold;     /* resident: how it is held now */
} mold_plan_weights;

typedef struct mold_model_facts {
    mold_text_config text;              /* effective configs (GGUF ones included) */
    mold_dit_config dit;
    mold_vae_config vae;
    mold_plan_weights w[MOLD_COMP_COUNT]; /* indexed by mold_plan_comp */
} mold_model_facts;

typedef enum mold_plan_device_kind {
    MOLD_PLAN_DEV_CPU = 0,  /* one pool: host RAM; every component "on cpu" */
    MOLD_PLAN_DEV_CUDA = 1, /* device memory, plus host RAM for host placements */
} mold_plan_device_kind;

typedef struct mold_device_snapshot {
    mold_plan_device_kind kind;
    uint64_t dev_total, dev_free;   /* device memory (CUDA; ignored for CPU) */
    uint64_t host_total, host_free; /* RAM (MemTotal, MemAvailable) */
} mold_device_snapshot;

typedef struct mold_plan_policy {
    uint64_t headroom_bytes; /* left free in the compute pool (CUDA device memory;
                                RAM on CPU machines) ... */
    double headroom_frac;    /* ... plus this fraction of the pool's total */
    uint64_t host_headroom_bytes; /* CUDA machines: left free in host RAM ... */
    double host_headroom_frac;    /* ... plus this fraction of MemTotal */
    bool keep_resident;      /* hot path (server, batches): avoid plans that
                                reload weights on the next request */
    bool allow_host_text;    /* CUDA: the text encoder may run on the host CPU */
    bool allow_host_dit;     /* CUDA: the transformer may run on the host CPU
                                (orders of magnitude slower; off by default) */
    int min_vae_tile;        /* smallest tile considered, latent px (32) */
    uint64_t hold_margin_bytes; /* bf16 holds (CUDA) only when every stage
                                   still fits with this much more headroom */
} mold_plan_policy;

/* headroom 256 MiB + 2 % (host RAM beside a GPU: 1 GiB + 2 %), keep_resident
 * off, host text encoder allowed, host transformer not, tiles >= 32, bf16
 * holds with 4 GiB to spare. */
mold_plan_policy mold_plan_policy_default(void);

/* ---- output ---- */

typedef enum mold_plan_place {
    MOLD_PLACE_DEVICE = 0, /* the compute device (on CPU machines: the CPU) */
    MOLD_PLACE_HOST = 1,   /* host RAM, run by a CPU backend next to the device */
} mold_plan_place;

typedef struct mold_plan_component {
    bool used;                      /* this request runs it (the text encoder
                                       only when a prompt misses the cache) */
    mold_plan_place place;
    mold_plan_hold hold;
    mold_dtype matrix_dtype;        /* from the facts, for the log */
    uint64_t weight_bytes;
    bool live[MOLD_STAGE_COUNT];    /* weights resident during that stage */
    bool keep;                      /* stays resident after the request */
} mold_plan_component;

typedef struct mold_plan {
    mold_plan_device_kind kind;
    mold_plan_component comp[MOLD_COMP_COUNT];
    bool encode;                    /* the encode stage runs */
    bool cfg;
    int cfg_batch;                  /* 2: one forward of [cond, uncond]; 1: two
                                       forwards (or one pass without cfg) */
    int n_img, n_txt;               /* transformer tokens: image, padded text */
    int vae_tile, vae_overlap;      /* 0, 0: whole-image decode */
    uint64_t workspace[MOLD_STAGE_COUNT]; /* model workspace of each stage */
    uint64_t scratch[MOLD_STAGE_COUNT];   /* backend per-op scratch estimate */
    uint64_t buffers[MOLD_STAGE_COUNT];   /* I/O buffers the engine allocates */
    uint64_t peak[MOLD_STAGE_COUNT];      /* predicted device-pool peak */
    uint64_t host_peak[MOLD_STAGE_COUNT]; /* CUDA: predicted host RAM use */
    uint64_t budget, host_budget;         /* what the peaks must stay under */
    double cost;                    /* the chosen candidate's penalty (0 = ideal) */
} mold_plan;

/* Makes the plan. Returns MOLD_OK with *out filled, or an error naming the
 * stage and component that does not fit and by how many bytes (for the
 * least demanding arrangement), or MOLD_E_INVALID for bad inputs. */
mold_status mold_plan_make(const mold_plan_request *req, const mold_model_facts *facts,
                           const mold_device_snapshot *dev, const mold_plan_policy *policy,
                           mold_plan *out);

/* One-line JSON of the plan into buf (always NUL-terminated when cap > 0).
 * Returns the length it needed (as snprintf); >= cap means truncated. */
size_t mold_plan_to_json(const mold_plan *p, char *buf, size_t cap);

/* Names for logs and JSON. */
const char *mold_plan_comp_name(mold_plan_comp c);   /* "text_encoder", "transformer", "vae" */
const char *mold_plan_stage_name(mold_plan_stage s); /* "encode", "denoise", "decode" */

#endif
