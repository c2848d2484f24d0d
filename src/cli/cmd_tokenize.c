/*
 * cmd_tokenize.c — `mold tokenize [--tokenizer PATH | --model DIR] [--template]
 *                                  [--json] TEXT|-`.
 *
 * Prints the token ids of TEXT (and, in the text form, each token's
 * vocabulary string). `-` reads the text from stdin as raw bytes: NUL, CR and
 * a trailing newline are part of the text, nothing is stripped. `--template`
 * wraps the text in the Qwen-Image prompt template first (spec 2.7) and prints
 * every template token (the text encoder later drops the first 34).
 * `--json` prints exactly {"ids":[...]}.
 *
 * Invalid UTF-8 is reported with its byte offset (exit 1); usage errors exit 2.
 */
#include <jansson.h>  // defines: json_dumps (escaping token strings)
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"                  // defines: mold_path_join
#include "base/status.h"
#include "models/qwen2_tokenizer.h"   // defines: mold_tokenizer_*, mold_qwenimage_*
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mold tokenize [--tokenizer PATH | --model DIR] [--template] [--json] "
               "TEXT|-\n"
               "  --tokenizer PATH  tokenizer.json, or a directory with tokenizer.json or\n"
               "                    vocab.json + merges.txt\n"
               "  --model DIR       a model directory (uses DIR/tokenizer)\n"
               "  --template        wrap TEXT in the Qwen-Image prompt template\n"
               "  --json            print {\"ids\":[...]}\n"
               "  TEXT              the text; '-' reads raw bytes from stdin; '--' ends options\n");
}

/* Reads all of stdin (binary-safe) into a malloc'd buffer. */
static int read_stdin(char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (n == cap) {
            char *nb = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(stdin)) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

static void print_text(const mold_tokenizer *tok, const int32_t *ids, size_t n, bool templ) {
    if (templ)
        printf("%zu tokens (template; the text encoder drops the first %d -> %zu remain)\n", n,
               MOLD_QWENIMAGE_DROP_TOKENS,
               n > MOLD_QWENIMAGE_DROP_TOKENS ? n - MOLD_QWENIMAGE_DROP_TOKENS : 0);
    else
        printf("%zu tokens\n", n);
    printf("ids:");
    for (size_t i = 0; i < n; i++)
        printf(" %d", ids[i]);
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(mold_tokenizer_token(tok, ids[i]));
        char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        printf("%8d  %s\n", ids[i], q ? q : "?");
        free(q);
        json_decref(s);
    }
}

static void print_json(const int32_t *ids, size_t n) {
    printf("{\"ids\":[");
    for (size_t i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", ids[i]);
    printf("]}\n");
}

int mold_cmd_tokenize(int argc, char **argv) {
    const char *tok_path = NULL, *model = NULL, *text = NULL;
    bool json = false, templ = false, opts = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (opts && !strcmp(a, "--")) {
            opts = false;
        } else if (opts && (!strcmp(a, "--tokenizer") || !strcmp(a, "--model"))) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mold tokenize: %s needs a path\n", a);
                return 2;
            }
            *(a[2] == 't' ? &tok_path : &model) = argv[++i];
        } else if (opts && !strcmp(a, "--json")) {
            json = true;
        } else if (opts && !strcmp(a, "--template")) {
            templ = true;
        } else if (opts && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            usage(stdout);
            return 0;
        } else if ((opts && a[0] == '-' && a[1]) || text) {
            fprintf(stderr, "mold tokenize: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            text = a;
        }
    }
    if (!text || (!tok_path == !model)) {
        fprintf(stderr, "mold tokenize: %s\n", !text ? "expected TEXT or '-'"
                                                     : "expected one of --tokenizer or --model");
        usage(stderr);
        return 2;
    }
    char *buf = NULL, *dir = NULL;
    size_t len = strlen(text);
    if (!strcmp(text, "-") && opts) {
        if (read_stdin(&buf, &len) != 0) {
            fprintf(stderr, "mold tokenize: cannot read stdin\n");
            return 1;
        }
        text = buf;
    }
    if (model && !(dir = mold_path_join(model, "tokenizer"))) {
        free(buf);
        return mold_cli_fail("tokenize");
    }
    mold_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    mold_status st = mold_tokenizer_load(model ? dir : tok_path, &tok);
    if (st == MOLD_OK)
        st = templ ? mold_qwenimage_tokenize_prompt(tok, text, len, &ids, &n)
                   : mold_tokenizer_encode(tok, text, len, &ids, &n);
    int rc = 0;
    if (st != MOLD_OK)
        rc = mold_cli_fail("tokenize");
    else if (json)
        print_json(ids, n);
    else
        print_text(tok, ids, n, templ);
    free(ids);
    mold_tokenizer_free(tok);
    free(dir);
    free(buf);
    return rc;
}
