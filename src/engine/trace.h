/*
 * trace.h — collects named intermediate tensors of one generation and writes
 * them as DIR/trace.safetensors (`mold run --dump DIR`). Names match the
 * reference fixture pipeline.safetensors so the two can be compared directly.
 */
#ifndef MOLD_ENGINE_TRACE_H
#define MOLD_ENGINE_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "base/tensor.h"

typedef struct mold_trace mold_trace;

mold_status mold_trace_create(mold_trace **out);
void mold_trace_free(mold_trace *t); /* NULL ok */
/* Adds a copy of n_bytes at data with the given dtype and shape. t may be
 * NULL (tracing off): then it does nothing. */
mold_status mold_trace_add(mold_trace *t, const char *name, mold_dtype dtype, int n_dims,
                           const int64_t *shape, const void *data);
/* Writes DIR/trace.safetensors (creating DIR if needed). */
mold_status mold_trace_write(const mold_trace *t, const char *dir);

#endif
