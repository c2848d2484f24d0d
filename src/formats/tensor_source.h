/*
 * tensor_source.h — where a model loader finds its tensors by name.
 *
 * Model loaders ask a mold_tensor_source for tensors by their diffusers /
 * transformers names; the source hides the container (safetensors shards,
 * GGUF) and any renaming (llama.cpp names, "model.diffusion_model." prefixes).
 * A returned tensor is a view valid as long as the container is open; its
 * shape is in PyTorch order (GGUF sources reverse ggml's ne[]).
 */
#ifndef MOLD_FORMATS_TENSOR_SOURCE_H
#define MOLD_FORMATS_TENSOR_SOURCE_H

#include "../base/status.h"
#include "../base/tensor.h"

typedef struct mold_tensor_source {
    /* Returns the tensor called `name` or NULL when absent. */
    const mold_tensor *(*find)(void *ud, const char *name);
    void *ud;           /* the container (borrowed) */
    const char *what;   /* container path for error messages */
} mold_tensor_source;

/* Looks `name` up; fails with "<what>: tensor 'name' not found". */
mold_status mold_source_get(const mold_tensor_source *src, const char *name,
                            const mold_tensor **out);
/* Looks up and checks the shape (dtype-agnostic): "<what>: tensor 'name':
 * expected shape [..], got [..]". */
mold_status mold_source_get_shaped(const mold_tensor_source *src, const char *name, int n_dims,
                                   const int64_t *shape, const mold_tensor **out);
/* Like mold_source_get but formats the name (printf-style) first. */
mold_status mold_source_getf(const mold_tensor_source *src, const mold_tensor **out,
                             const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct mold_safetensors;
/* A source over an open safetensors set. Names are tried as given, then with
 * each of the `prefixes` (NULL-terminated list, may be NULL), e.g.
 * "model.diffusion_model." for single-file checkpoints. */
mold_tensor_source mold_source_safetensors(const struct mold_safetensors *st);

#endif
