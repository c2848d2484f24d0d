/*
 * safetensors.h — validated, mmap'd safetensors checkpoints (single or sharded).
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {str: str}}, then the data area. Offsets are relative to the
 * data area. Every length and offset is validated before use (see the .c file
 * header for the full list of checks); tensors never alias each other.
 *
 * A mold_safetensors is a set of one or more files: a single `.safetensors`
 * file, a `*.safetensors.index.json` (weight_map name -> shard), or a
 * directory holding exactly one of those. Tensor data stays mapped; the
 * mold_tensor views returned are valid until mold_safetensors_close().
 */
#ifndef MOLD_FORMATS_SAFETENSORS_H
#define MOLD_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../base/status.h"
#include "../base/tensor.h"

typedef struct mold_safetensors mold_safetensors;

/* Opens a .safetensors file, an index .json, or a directory (see above). */
mold_status mold_safetensors_open(const char *path, mold_safetensors **out);
/* Parses an in-memory file image (used by the fuzzer and tests). `what` names
 * it in errors. The buffer must outlive the handle. */
mold_status mold_safetensors_open_buf(const void *data, size_t size, const char *what,
                                      mold_safetensors **out);
void mold_safetensors_close(mold_safetensors *st); /* NULL ok */

size_t mold_safetensors_count(const mold_safetensors *st);
/* Tensors in a stable order (by shard, then by data offset). */
const mold_tensor *mold_safetensors_at(const mold_safetensors *st, size_t i);
/* O(1) lookup; NULL when absent. */
const mold_tensor *mold_safetensors_find(const mold_safetensors *st, const char *name);
/* Lookup that fails with "<path>: tensor 'name' not found". */
mold_status mold_safetensors_get(const mold_safetensors *st, const char *name,
                                 const mold_tensor **out);
/* Lookup plus dtype-agnostic shape check, error names the tensor. */
mold_status mold_safetensors_get_shaped(const mold_safetensors *st, const char *name,
                                        int n_dims, const int64_t *shape,
                                        const mold_tensor **out);

size_t mold_safetensors_n_shards(const mold_safetensors *st);
const char *mold_safetensors_path(const mold_safetensors *st); /* what was opened */
/* The shard file holding tensor i. */
const char *mold_safetensors_tensor_file(const mold_safetensors *st, size_t i);
/* "__metadata__" value or NULL. */
const char *mold_safetensors_metadata(const mold_safetensors *st, const char *key);

/* ---- writer ---- */
/* Writes tensors (plain dtypes) to `path` atomically, in the given order.
 * metadata_kv is NULL or a NULL-terminated list of key, value, key, value ... */
mold_status mold_safetensors_write(const char *path, const mold_tensor *tensors, size_t n,
                                   const char *const *metadata_kv);

#endif
