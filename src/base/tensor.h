/*
 * tensor.h — a typed view of bytes with a shape (up to 5 dims).
 *
 * A mold_tensor never owns its data: it points into an mmap'd file, an arena
 * or a backend buffer whose owner is documented where the view is made.
 * Shapes are in PyTorch order (outermost first): a Linear weight is
 * [out, in]; ne[n_dims-1] is the contiguous (fastest) dimension.
 */
#ifndef MOLD_BASE_TENSOR_H
#define MOLD_BASE_TENSOR_H

#include <stdint.h>

#include "dtype.h"

#define MOLD_MAX_DIMS 5

typedef struct mold_tensor {
    const char *name;           /* borrowed; may be NULL */
    mold_dtype dtype;
    int n_dims;                 /* 0..MOLD_MAX_DIMS (0 = scalar) */
    int64_t shape[MOLD_MAX_DIMS]; /* outermost first */
    const void *data;           /* borrowed, contiguous */
    uint64_t n_bytes;           /* bytes of data */
} mold_tensor;

/* Product of the dims (1 for a scalar). Dims are validated non-negative. */
int64_t mold_tensor_nelems(const mold_tensor *t);

/* Formats "[2, 24, 64]" into buf; returns buf. */
const char *mold_shape_str(const int64_t *shape, int n_dims, char *buf, size_t cap);

/* True when t has exactly this shape. */
int mold_tensor_has_shape(const mold_tensor *t, int n_dims, const int64_t *shape);

/* Fails with a message naming `what` (e.g. the tensor's name) when t's shape
 * differs: "expected [64, 32], got [64, 16]". */
mold_status mold_tensor_check_shape(const mold_tensor *t, const char *what, int n_dims,
                                    const int64_t *shape);

/* Copies/converts a plain-typed tensor to a caller-provided f32 buffer of
 * mold_tensor_nelems(t) floats. Block formats: see quant.h. */
mold_status mold_tensor_to_f32(const mold_tensor *t, float *dst);

#endif
