/*
 * tensor_source.c — name lookups with uniform error messages over any tensor
 * container (see tensor_source.h).
 *
 * Ownership: a mold_tensor_source borrows its container; nothing here
 * allocates. Error messages always start with the container's `what`.
 */
#include "tensor_source.h"

#include <stdarg.h>
#include <stdio.h>

#include "safetensors.h"

mold_status mold_source_get(const mold_tensor_source *src, const char *name,
                            const mold_tensor **out) {
    MOLD_ASSERT(src && src->find && out);
    *out = name ? src->find(src->ud, name) : NULL;
    if (!*out)
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: tensor '%s' not found",
                        src->what ? src->what : "(source)", name ? name : "(null)");
    return MOLD_OK;
}

mold_status mold_source_get_shaped(const mold_tensor_source *src, const char *name, int n_dims,
                                   const int64_t *shape, const mold_tensor **out) {
    MOLD_TRY(mold_source_get(src, name, out));
    if (mold_tensor_has_shape(*out, n_dims, shape))
        return MOLD_OK;
    char want[128], got[128];
    mold_shape_str(shape, n_dims, want, sizeof(want));
    mold_shape_str((*out)->shape, (*out)->n_dims, got, sizeof(got));
    *out = NULL;
    return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': expected shape %s, got %s",
                    src->what ? src->what : "(source)", name, want, got);
}

mold_status mold_source_getf(const mold_tensor_source *src, const mold_tensor **out,
                             const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof(name)) {
        *out = NULL;
        return MOLD_ERR(MOLD_E_INVALID, "%s: tensor name longer than %zu bytes",
                        src->what ? src->what : "(source)", sizeof(name) - 1);
    }
    return mold_source_get(src, name, out);
}

/* ---- safetensors ---- */

static const mold_tensor *st_find(void *ud, const char *name) {
    return mold_safetensors_find((const mold_safetensors *)ud, name);
}

mold_tensor_source mold_source_safetensors(const struct mold_safetensors *st) {
    mold_tensor_source src = {st_find, (void *)st, mold_safetensors_path(st)};
    return src;
}
