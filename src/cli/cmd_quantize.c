/*
 * cmd_quantize.c — `mold quantize IN OUT.gguf --type T [--rules city96]
 *                   [--tokenizer DIR] [--name S] [--threads N]`.
 *
 * IN is a diffusers transformer or a Qwen2.5-VL text_encoder (safetensors
 * file, sharded index or directory); the kind is detected from the tensor
 * names. Writes a city96-style transformer GGUF or a llama.cpp-style text
 * encoder GGUF (formats/gguf_convert.h has the conventions and rules) and
 * prints how many tensors went to each type. Exit 0 ok, 1 failure, 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "formats/gguf_convert.h"   // defines: mold_gguf_quantize
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mold quantize IN OUT.gguf --type TYPE [--rules city96] [--tokenizer DIR]\n"
               "                     [--name NAME] [--threads N]\n"
               "  IN                a diffusers transformer or text_encoder (dir, .safetensors\n"
               "                    or .safetensors.index.json)\n"
               "  --type TYPE       q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K or q6_K\n"
               "  --rules city96    bump sensitive tensors like the published _M files\n"
               "                    (to_v/add_v_proj, ffn down, first/last block)\n"
               "  --tokenizer DIR   text encoder: tokenizer dir (default IN/../tokenizer)\n"
               "  --name NAME       general.name (default: from IN)\n"
               "  --threads N       worker threads (default: all CPUs)\n");
}

int mold_cmd_quantize(int argc, char **argv) {
    mold_quantize_opts o = {.type = MOLD_DTYPE_INVALID};
    const char *pos[2] = {0};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--type") && next) {
            o.type = mold_quantize_parse_type(next);
            if (o.type == MOLD_DTYPE_INVALID) {
                fprintf(stderr, "mold: quantize: --type: expected q8_0, q4_0, q4_1, q5_0, q5_1, "
                                "q4_K, q5_K or q6_K, got '%s'\n", next);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--rules") && next) {
            if (strcmp(next, "city96")) {
                fprintf(stderr, "mold: quantize: --rules: expected city96, got '%s'\n", next);
                return 2;
            }
            o.city96_rules = true;
            i++;
        } else if (!strcmp(a, "--tokenizer") && next) {
            o.tokenizer_path = argv[++i];
        } else if (!strcmp(a, "--name") && next) {
            o.name = argv[++i];
        } else if (!strcmp(a, "--threads") && next) {
            char *end;
            long n = strtol(next, &end, 10);
            if (*end || n < 1 || n > 1024) {
                fprintf(stderr, "mold: quantize: --threads: expected 1..1024, got '%s'\n", next);
                return 2;
            }
            o.n_threads = (int)n;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "mold: quantize: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        } else if (n_pos < 2) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "mold: quantize: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (n_pos != 2 || o.type == MOLD_DTYPE_INVALID) {
        usage(stderr);
        return 2;
    }
    mold_quantize_stats s;
    if (mold_gguf_quantize(pos[0], pos[1], &o, &s) != MOLD_OK) return mold_cli_fail("quantize");
    printf("%s: %s GGUF, %zu tensors (%zu skipped), %.1f MB -> %.1f MB\n", pos[1],
           s.kind == MOLD_QUANT_TRANSFORMER ? "qwen_image transformer" : "qwen2vl text encoder",
           s.n_tensors, s.n_skipped, s.bytes_in / 1e6, s.bytes_out / 1e6);
    for (int t = 0; t < MOLD_DTYPE_COUNT; t++)
        if (s.n_by_type[t]) printf("  %-5s %zu tensors\n", mold_dtype_name((mold_dtype)t), s.n_by_type[t]);
    return 0;
}
