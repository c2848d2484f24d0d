/*
 * cmd_synth.c — `mold synth`: writes a loadable Qwen-Image model with random
 * weights at the real shapes (see src/models/synth.h), for full-size
 * benchmarks without the published weights and for tests (--preset tiny).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dtype.h"   // defines: mold_dtype_from_name
#include "models/synth.h" // defines: mold_synth_write
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mold synth --preset qwen-image-2512|tiny [options] OUTDIR\n"
            "\n"
            "Writes a diffusers-layout model directory with random weights at the real shapes\n"
            "and tensor names (deterministic for a seed). OUTDIR must be new or empty.\n"
            "\n"
            "  --transformer T    q4_0 | q4_K | q8_0 (city96-style GGUF) | bf16 (safetensors)\n"
            "                     (default bf16)\n"
            "  --text-encoder T   q4_K | q8_0 (llama.cpp-style GGUF) | bf16 (safetensors)\n"
            "                     (default bf16)\n"
            "  --uniform          GGUF: one type for every quantizable matrix instead of the\n"
            "                     published per-tensor mix\n"
            "  --tokenizer DIR    directory with tokenizer.json (+ tokenizer_config.json ...),\n"
            "                     copied to OUTDIR/tokenizer and used for GGUF text encoders;\n"
            "                     scripts/fetch-tokenizer.sh BUILD caches the Qwen2.5 one in\n"
            "                     BUILD/tokenizer-qwen2_5; for tiny use\n"
            "                     tests/fixtures/qwen-image-tiny/model/tokenizer\n"
            "  --seed S           (default 0)\n"
            "  --only LIST        comma-separated subset of transformer,text_encoder,vae,\n"
            "                     tokenizer (default: all)\n"
            "  --threads N        generator threads (default: all CPUs)\n");
}

static int parse_dtype(const char *opt, const char *v, mold_dtype *out) {
    mold_dtype t = mold_dtype_from_name(v);
    if (t == MOLD_DTYPE_INVALID) {
        fprintf(stderr, "mold synth: %s: unknown type '%s'\n", opt, v);
        return 2;
    }
    *out = t;
    return 0;
}

static int parse_only(const char *v, unsigned *out) {
    static const struct { const char *name; unsigned bit; } C[] = {
        {"transformer", MOLD_SYNTH_TRANSFORMER}, {"text_encoder", MOLD_SYNTH_TEXT_ENCODER},
        {"vae", MOLD_SYNTH_VAE}, {"tokenizer", MOLD_SYNTH_TOKENIZER}};
    char *copy = strdup(v), *save = NULL;
    if (!copy) return 1;
    *out = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t k = 0;
        while (k < 4 && strcmp(C[k].name, tok)) k++;
        if (k == 4) {
            fprintf(stderr, "mold synth: --only: unknown component '%s'\n", tok);
            free(copy);
            return 2;
        }
        *out |= C[k].bit;
    }
    free(copy);
    return 0;
}

int mold_cmd_synth(int argc, char **argv) {
    mold_synth_options o = {.transformer = MOLD_BF16, .text_encoder = MOLD_BF16};
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--uniform")) {
            o.uniform = true;
            continue;
        } else if (a[0] == '-' && a[1] == '-' && !v) {
            fprintf(stderr, "mold synth: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--preset")) {
            o.preset = v;
        } else if (!strcmp(a, "--transformer")) {
            rc = parse_dtype(a, v, &o.transformer);
        } else if (!strcmp(a, "--text-encoder")) {
            rc = parse_dtype(a, v, &o.text_encoder);
        } else if (!strcmp(a, "--tokenizer")) {
            o.tokenizer_dir = v;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(v, &end, 0);
            if (*end || !*v) {
                fprintf(stderr, "mold synth: --seed: expected an unsigned integer, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--threads")) {
            o.n_threads = atoi(v);
        } else if (!strcmp(a, "--only")) {
            rc = parse_only(v, &o.components);
        } else if (a[0] == '-') {
            fprintf(stderr, "mold synth: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!out) {
            out = a;
            continue;
        } else {
            fprintf(stderr, "mold synth: expected one OUTDIR, got '%s' and '%s'\n", out, a);
            return 2;
        }
        if (rc) return rc;
        i++; /* consumed the value */
    }
    if (!out || !o.preset) {
        usage(stderr);
        return 2;
    }
    mold_synth_report rep;
    if (mold_synth_write(&o, out, &rep) != MOLD_OK) return mold_cli_fail("synth");
    printf("synth: %s (%s, seed %" PRIu64 "): %" PRIu64 " tensors, %.3f GB in %.2f s (%.2f GB/s)\n",
           out, o.preset, o.seed, rep.n_tensors, (double)rep.n_bytes / 1e9, rep.seconds,
           rep.seconds > 0 ? (double)rep.n_bytes / 1e9 / rep.seconds : 0.0);
    return 0;
}
