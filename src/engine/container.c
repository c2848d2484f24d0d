/*
 * container.c — opens a component's weights (safetensors file, sharded index,
 * directory, or GGUF file) and exposes them as a mold_tensor_source.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"
#include "formats/gguf.h"

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

mold_status mold_container_open(const char *path, mold_container *c) {
    memset(c, 0, sizeof *c);
    c->path = strdup(path);
    if (!c->path) return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    mold_status st;
    if (has_suffix(path, ".gguf")) {
        mold_gguf *g = NULL;
        st = mold_gguf_open(path, &g);
        c->gguf = g;
        if (st == MOLD_OK) c->src = mold_source_gguf(g);
    } else {
        st = mold_safetensors_open(path, &c->st);
        if (st == MOLD_OK) c->src = mold_source_safetensors(c->st);
    }
    if (st != MOLD_OK) {
        free(c->path);
        c->path = NULL;
        return st;
    }
    return MOLD_OK;
}

void mold_container_close(mold_container *c) {
    mold_safetensors_close(c->st);
    mold_gguf_close(c->gguf);
    free(c->path);
    memset(c, 0, sizeof *c);
}
