/*
 * cmd_bench.c — `mold bench MODEL [--width W] [--height H] [--text-tokens N]
 *   [--repeats R] [--device cpu|cuda] [--threads N] [--vae-tile T] [--no-vae]
 *   [--transformer P] [--text-encoder P] [--vae P] [--tokenizer P]`
 *
 * Prints a table of per-stage times and then one JSON object on stdout (the
 * last line), which scripts/gpu-bench.sh reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "mold/bench.h"

static int arg_int(const char *opt, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || end == v || x < lo || x > hi) {
        fprintf(stderr, "mold bench: %s: expected an integer in %d..%d, got '%s'\n", opt, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static double gbps(uint64_t bytes, double ms) { return ms > 0 ? bytes / ms / 1e6 : 0; }

int mold_cmd_bench(int argc, char **argv) {
    mold_engine_options eo = mold_engine_options_default();
    mold_bench_options o = mold_bench_options_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--width")) bad = arg_int(a, v, 16, 8192, &o.width), i++;
        else if (!strcmp(a, "--height")) bad = arg_int(a, v, 16, 8192, &o.height), i++;
        else if (!strcmp(a, "--text-tokens")) bad = arg_int(a, v, 1, 1000, &o.text_tokens), i++;
        else if (!strcmp(a, "--encode-words")) bad = arg_int(a, v, 1, 1000, &o.encode_words), i++;
        else if (!strcmp(a, "--repeats")) bad = arg_int(a, v, 1, 100, &o.repeats), i++;
        else if (!strcmp(a, "--threads")) bad = arg_int(a, v, 1, 256, &eo.n_threads), i++;
        else if (!strcmp(a, "--vae-tile")) bad = arg_int(a, v, 0, 4096, &o.vae_tile), i++;
        else if (!strcmp(a, "--no-vae")) o.skip_vae = true;
        else if (!strcmp(a, "--device") && v) {
            eo.device = !strcmp(v, "cuda") ? MOLD_DEVICE_CUDA : MOLD_DEVICE_CPU;
            if (strcmp(v, "cuda") && strcmp(v, "cpu")) bad = -1, fprintf(stderr, "mold bench: --device: expected cpu or cuda\n");
            i++;
        } else if (!strcmp(a, "--transformer") && v) eo.transformer_path = v, i++;
        else if (!strcmp(a, "--text-encoder") && v) eo.text_encoder_path = v, i++;
        else if (!strcmp(a, "--vae") && v) eo.vae_path = v, i++;
        else if (!strcmp(a, "--tokenizer") && v) eo.tokenizer_path = v, i++;
        else if (a[0] != '-' && !eo.model_dir) eo.model_dir = a;
        else {
            fprintf(stderr, "mold bench: unknown or incomplete option '%s'\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    if (!eo.model_dir) {
        fprintf(stderr, "usage: mold bench MODEL [--width W] [--height H] [--text-tokens N] "
                "[--encode-words N] [--repeats R] [--device cpu|cuda] [--threads N] [--vae-tile T] [--no-vae]\n");
        return 2;
    }
    mold_engine *e;
    if (mold_engine_open(&eo, &e) != 0) return mold_cli_fail("bench");
    mold_bench_report r;
    if (mold_bench_run(e, &o, &r) != 0) {
        mold_engine_close(e);
        return mold_cli_fail("bench");
    }
    const char *dev = eo.device == MOLD_DEVICE_CUDA ? "cuda" : "cpu";
    printf("mold bench: %s on %s, %dx%d (%d image tokens), %d text tokens, median of %d\n",
           mold_engine_model_name(e), dev, o.width, o.height, r.n_img_tokens, o.text_tokens,
           o.repeats);
    printf("  %-26s %10.1f ms  %8.2f GB/s (%.2f GB)\n", "load text encoder", r.load_text_ms,
           gbps(r.bytes_text, r.load_text_ms), r.bytes_text / 1e9);
    printf("  %-26s %10.1f ms  %8.2f GB/s (%.2f GB)\n", "load transformer", r.load_dit_ms,
           gbps(r.bytes_dit, r.load_dit_ms), r.bytes_dit / 1e9);
    printf("  %-26s %10.1f ms  %8.2f GB/s (%.2f GB)\n", "load vae", r.load_vae_ms,
           gbps(r.bytes_vae, r.load_vae_ms), r.bytes_vae / 1e9);
    printf("  %-26s %10.1f ms  (%d tokens)\n", "text encode", r.encode_ms, r.encode_tokens);
    printf("  %-26s %10.1f ms\n", "denoise step (no CFG)", r.dit_step_ms);
    printf("  %-26s %10.1f ms\n", "denoise step (CFG, batch 2)", r.dit_cfg_step_ms);
    printf("  %-26s %10.1f ms\n", "vae decode", r.vae_decode_ms);
    printf("  %-26s %10.1f ms\n", "png encode", r.png_encode_ms);
    printf("  %-26s %10.2f GB host, %.2f GB device\n", "peak memory", r.peak_host_bytes / 1e9,
           r.peak_device_bytes / 1e9);
    printf("{\"model\":\"%s\",\"device\":\"%s\",\"width\":%d,\"height\":%d,\"text_tokens\":%d,"
           "\"encode_tokens\":%d,\"repeats\":%d,\"load_text_ms\":%.3f,\"load_dit_ms\":%.3f,"
           "\"load_vae_ms\":%.3f,\"bytes_text\":%llu,\"bytes_dit\":%llu,\"bytes_vae\":%llu,"
           "\"encode_ms\":%.3f,\"dit_step_ms\":%.3f,\"dit_cfg_step_ms\":%.3f,"
           "\"vae_decode_ms\":%.3f,\"png_encode_ms\":%.3f,\"peak_host_bytes\":%llu,"
           "\"peak_device_bytes\":%llu}\n",
           mold_engine_model_name(e), dev, o.width, o.height, o.text_tokens, r.encode_tokens,
           o.repeats, r.load_text_ms, r.load_dit_ms, r.load_vae_ms,
           (unsigned long long)r.bytes_text, (unsigned long long)r.bytes_dit,
           (unsigned long long)r.bytes_vae, r.encode_ms, r.dit_step_ms, r.dit_cfg_step_ms,
           r.vae_decode_ms, r.png_encode_ms, (unsigned long long)r.peak_host_bytes,
           (unsigned long long)r.peak_device_bytes);
    mold_engine_close(e);
    return 0;
}
