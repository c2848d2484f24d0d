/*
 * container.c — opens a component's weights (safetensors file, sharded index,
 * directory, or GGUF file) and exposes them as a mold_tensor_source.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

mold_status mold_container_open(const char *path, mold_container *c) {
    memset(c, 0, sizeof *c);
    if (has_suffix(path, ".gguf"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: GGUF weights are not supported yet", path);
    c->path = strdup(path);
    if (!c->path) return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    mold_status st = mold_safetensors_open(path, &c->st);
    if (st != MOLD_OK) {
        free(c->path);
        c->path = NULL;
        return st;
    }
    c->src = mold_source_safetensors(c->st);
    return MOLD_OK;
}

void mold_container_close(mold_container *c) {
    mold_safetensors_close(c->st);
    free(c->path);
    memset(c, 0, sizeof *c);
}
