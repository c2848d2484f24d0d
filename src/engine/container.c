/*
 * container.c — opens a component's weights (safetensors file, sharded index,
 * directory, or GGUF file) and exposes them as a mold_tensor_source.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"

#include "engine_impl.h"
#include "formats/gguf.h"

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* A component directory that holds no safetensors but exactly one .gguf
 * (e.g. transformer/ of a quantized model) stands for that file: *out is the
 * malloc'd file path, or NULL when the directory is not such a one. */
static mold_status lone_gguf_in(const char *dir, char **out) {
    *out = NULL;
    if (!mold_path_is_dir(dir)) return MOLD_OK;
    DIR *d = opendir(dir);
    if (!d) return MOLD_OK; /* the safetensors reader reports the error */
    int n_gguf = 0, n_st = 0;
    char *found = NULL;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (has_suffix(ent->d_name, ".safetensors") || has_suffix(ent->d_name, ".index.json")) n_st++;
        if (has_suffix(ent->d_name, ".gguf") && n_gguf++ == 0) found = mold_path_join(dir, ent->d_name);
    }
    closedir(d);
    if (n_st == 0 && n_gguf > 1) {
        free(found);
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %d .gguf files and no safetensors: pass the one to "
                        "use (--transformer / --text-encoder FILE.gguf)", dir, n_gguf);
    }
    if (n_st == 0 && n_gguf == 1) {
        if (!found) return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
        *out = found;
        return MOLD_OK;
    }
    free(found);
    return MOLD_OK;
}

mold_status mold_container_open(const char *path, mold_container *c) {
    memset(c, 0, sizeof *c);
    char *lone = NULL;
    MOLD_TRY(lone_gguf_in(path, &lone));
    if (lone) path = lone;
    c->path = strdup(path);
    free(lone);
    path = c->path;
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
