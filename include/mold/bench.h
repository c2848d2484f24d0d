/*
 * bench.h — `mold bench`: per-stage timings of one scenario on one engine.
 *
 * Stages are timed separately so each figure can be compared with a peer's:
 * component loads (with bytes and GB/s), text encoding, one DiT forward
 * without CFG (batch 1) and with CFG (batch 2: cond + uncond), VAE decode,
 * PNG encode. Device work is synchronised before every clock read. Times are
 * medians over `repeats` runs after one warm-up.
 */
#ifndef MOLD_BENCH_H
#define MOLD_BENCH_H

#include <stdint.h>

#include "mold.h"

typedef struct mold_bench_options {
    int width, height;   /* image size (default 1024x1024) */
    int text_tokens;     /* text tokens fed to the DiT (default 32) */
    int encode_words;    /* " a" words in the prompt the text encoder runs on
                          * (default text_tokens); with the Qwen2.5 tokenizer the
                          * templated sequence is encode_words + 39 tokens */
    int repeats;         /* timed repeats per stage (default 3) */
    int vae_tile;        /* as mold_request.vae_tile */
    bool skip_vae;
} mold_bench_options;

typedef struct mold_bench_report {
    double load_text_ms, load_dit_ms, load_vae_ms;
    uint64_t bytes_text, bytes_dit, bytes_vae; /* weight bytes read */
    double encode_ms;          /* one prompt of text_tokens + template */
    int encode_tokens;         /* templated tokens encoded */
    double dit_step_ms;        /* one forward, batch 1 */
    double dit_cfg_step_ms;    /* one forward, batch 2 (true CFG step) */
    double vae_decode_ms;
    double png_encode_ms;
    uint64_t peak_host_bytes;  /* max RSS of the process */
    uint64_t peak_device_bytes; /* backend peak (0 when unknown) */
    int n_img_tokens;
} mold_bench_report;

mold_bench_options mold_bench_options_default(void);
mold_result_code mold_bench_run(mold_engine *e, const mold_bench_options *o,
                                mold_bench_report *out);

#endif
