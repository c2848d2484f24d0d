/*
 * trace.c — see trace.h.
 */
#include "trace.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fs.h"
#include "formats/safetensors.h"

struct mold_trace {
    mold_tensor *items; /* names and data owned */
    size_t n, cap;
};

mold_status mold_trace_create(mold_trace **out) {
    *out = calloc(1, sizeof **out);
    return *out ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "trace: out of memory");
}

void mold_trace_free(mold_trace *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        free((void *)t->items[i].name);
        free((void *)t->items[i].data);
    }
    free(t->items);
    free(t);
}

mold_status mold_trace_add(mold_trace *t, const char *name, mold_dtype dtype, int n_dims,
                           const int64_t *shape, const void *data) {
    if (!t) return MOLD_OK;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        mold_tensor *items = realloc(t->items, cap * sizeof *items);
        if (!items) return MOLD_ERR(MOLD_E_NOMEM, "trace: out of memory");
        t->items = items;
        t->cap = cap;
    }
    mold_tensor *x = &t->items[t->n];
    memset(x, 0, sizeof *x);
    x->dtype = dtype;
    x->n_dims = n_dims;
    memcpy(x->shape, shape, (size_t)n_dims * sizeof(int64_t));
    uint64_t bytes;
    MOLD_TRY(mold_dtype_row_bytes(dtype, (uint64_t)mold_tensor_nelems(x), &bytes));
    void *copy = malloc(bytes ? bytes : 1);
    char *nm = strdup(name);
    if (!copy || !nm) {
        free(copy);
        free(nm);
        return MOLD_ERR(MOLD_E_NOMEM, "trace: out of memory");
    }
    memcpy(copy, data, bytes);
    x->data = copy;
    x->name = nm;
    x->n_bytes = bytes;
    t->n++;
    return MOLD_OK;
}

mold_status mold_trace_write(const mold_trace *t, const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return MOLD_ERR(MOLD_E_IO, "--dump %s: cannot create directory: %s", dir, strerror(errno));
    char *path = mold_path_join(dir, "trace.safetensors");
    if (!path) return MOLD_ERR(MOLD_E_NOMEM, "trace: out of memory");
    mold_status st = mold_safetensors_write(path, t->items, t->n, NULL);
    free(path);
    return st;
}
