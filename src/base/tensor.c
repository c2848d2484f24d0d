/*
 * tensor.c — shape helpers for mold_tensor views (see tensor.h).
 */
#include "tensor.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int64_t mold_tensor_nelems(const mold_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

const char *mold_shape_str(const int64_t *shape, int n_dims, char *buf, size_t cap) {
    size_t off = 0;
    if (cap == 0) return buf;
    buf[0] = 0;
    off += (size_t)snprintf(buf + off, cap - off, "[");
    for (int d = 0; d < n_dims && off < cap; d++)
        off += (size_t)snprintf(buf + off, cap - off, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (off < cap) snprintf(buf + off, cap - off, "]");
    return buf;
}

int mold_tensor_has_shape(const mold_tensor *t, int n_dims, const int64_t *shape) {
    if (t->n_dims != n_dims) return 0;
    for (int d = 0; d < n_dims; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

mold_status mold_tensor_check_shape(const mold_tensor *t, const char *what, int n_dims,
                                    const int64_t *shape) {
    if (mold_tensor_has_shape(t, n_dims, shape)) return MOLD_OK;
    char want[128], got[128];
    return MOLD_ERR(MOLD_E_FORMAT, "tensor '%s': expected shape %s, got %s",
                    what ? what : (t->name ? t->name : "?"),
                    mold_shape_str(shape, n_dims, want, sizeof want),
                    mold_shape_str(t->shape, t->n_dims, got, sizeof got));
}

mold_status mold_tensor_to_f32(const mold_tensor *t, float *dst) {
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    if (!info) return MOLD_ERR(MOLD_E_INVALID, "tensor '%s': invalid dtype", t->name ? t->name : "?");
    if (info->is_quant)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "tensor '%s' is %s: use mold_dequantize",
                        t->name ? t->name : "?", info->name);
    int64_t n = mold_tensor_nelems(t);
    if ((uint64_t)n * info->block_bytes != t->n_bytes)
        return MOLD_ERR(MOLD_E_FORMAT, "tensor '%s': %" PRId64 " %s values need %" PRIu64
                        " bytes, have %" PRIu64, t->name ? t->name : "?", n, info->name,
                        (uint64_t)n * info->block_bytes, t->n_bytes);
    return mold_convert_to_f32(t->dtype, t->data, dst, (size_t)n);
}
