/*
 * mold.h — the public API of the mold engine.
 *
 * Frontends (src/cli, src/server) build a mold_request, open an engine on a
 * model and call mold_generate(). Everything below this header (backends,
 * tensors, model code) is private to the library.
 *
 *   mold_engine_options opt = mold_engine_options_default();
 *   opt.model_dir = "path/to/Qwen-Image-2512";
 *   mold_engine *e; mold_engine_open(&opt, &e);
 *   mold_request req = mold_request_default(); req.prompt = "a fox";
 *   mold_result res; mold_generate(e, &req, NULL, NULL, &res);
 *   ... res.rgb (h x w x 3 bytes) ...
 *   mold_result_free(&res); mold_engine_close(e);
 */
#ifndef MOLD_MOLD_H
#define MOLD_MOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same numeric values as the internal mold_status (0 ok, negative errors). */
typedef int mold_result_code;

/* ---- engine ---- */
typedef enum mold_device { MOLD_DEVICE_CPU = 0, MOLD_DEVICE_CUDA = 1 } mold_device;

typedef struct mold_engine_options {
    const char *model_dir;        /* diffusers-layout directory (nullable with overrides) */
    const char *transformer_path; /* override: .safetensors, index .json, dir or .gguf */
    const char *text_encoder_path;
    const char *vae_path;
    const char *tokenizer_path;
    mold_device device;
    int n_threads;                /* CPU threads; <= 0: all cores */
    int cuda_device;
    uint64_t memory_budget;       /* 0: plan with the memory the device reports;
                                     else plan as if the compute device (RAM on
                                     CPU) had exactly this many bytes for mold,
                                     with no extra headroom */
    bool keep_resident;           /* servers, batches: prefer plans that keep the
                                     weights loaded for the next request */
} mold_engine_options;

typedef struct mold_engine mold_engine;

mold_engine_options mold_engine_options_default(void);
/* Opens the model: validates configs and maps the weight files. Each
 * request's plan loads the models it needs and frees those that do not fit
 * beside the next stage; the rest stay resident until mold_engine_close(). */
mold_result_code mold_engine_open(const mold_engine_options *opt, mold_engine **out);
void mold_engine_close(mold_engine *e); /* NULL ok */
/* The last error of the calling thread, human readable. */
const char *mold_last_error(void);
/* Short model name for file names and metadata ("qwen-image-tiny"). */
const char *mold_engine_model_name(const mold_engine *e);

/* ---- requests ---- */
#define MOLD_MAX_PROMPT_BYTES 77000
#define MOLD_MAX_PIXELS 1800000  /* 1.8 megapixels */
#define MOLD_MAX_SEED ((1ull << 53) - 1) /* exact as a JSON number */

typedef struct mold_request {
    const char *prompt;           /* UTF-8, required */
    const char *negative_prompt;  /* NULL -> " " (the reference default) */
    int width, height;            /* multiples of 16, width*height <= MOLD_MAX_PIXELS */
    int steps;                    /* 1..100 */
    float guidance;               /* true CFG scale 0..100; <= 1 runs one pass */
    uint64_t seed;
    const char *noise_path;       /* nullable: safetensors with noise_packed [1, N, 64] */
    const char *dump_dir;         /* nullable: writes DIR/trace.safetensors */
    int vae_tile;                 /* 0: decide from memory; else tile size in latent px */
    int cfg_batch;                /* 0: decide from memory; 1: cond and uncond as two
                                     transformer passes; 2: one pass of both */
} mold_request;

mold_request mold_request_default(void); /* 1328x1328, 50 steps, guidance 4, seed 0 */
/* Checks every field; the message names the parameter. */
mold_result_code mold_request_validate(const mold_request *r);

/* ---- progress ---- */
typedef enum mold_event_kind {
    MOLD_EV_STAGE_START = 0, /* stage = "load" | "encode" | "denoise" | "decode" | "save" */
    MOLD_EV_STAGE_DONE,      /* elapsed_ms set */
    MOLD_EV_STEP,            /* step / n_steps */
    MOLD_EV_CACHE_HIT,       /* stage = "encode" */
} mold_event_kind;

typedef struct mold_event {
    mold_event_kind kind;
    const char *stage;
    int step, n_steps;
    double elapsed_ms;
} mold_event;

typedef void (*mold_progress_fn)(const mold_event *ev, void *ud);

/* ---- results ---- */
typedef struct mold_stage_times {
    double load_ms, encode_ms, denoise_ms, decode_ms;
} mold_stage_times;

typedef struct mold_result {
    uint8_t *rgb;          /* height x width x 3, owned */
    int width, height;
    uint64_t seed;
    mold_stage_times times;
} mold_result;

mold_result_code mold_generate(mold_engine *e, const mold_request *r, mold_progress_fn progress,
                               void *ud, mold_result *out);
void mold_result_free(mold_result *r);

/* ---- PNG output with generation metadata ---- */
/* Writes res as PNG (atomically) to path, or to stdout when path is "-".
 * with_metadata adds the mold:* text chunks describing r. */
mold_result_code mold_save_png(const mold_engine *e, const mold_request *r,
                               const mold_result *res, const char *path, bool with_metadata);

#ifdef __cplusplus
}
#endif
#endif
