/*
 * safetensors_stream.h — writes a safetensors file whose data is produced
 * piece by piece, so a multi-gigabyte checkpoint never sits in memory.
 *
 * The header (u64 length + JSON + space padding to 8 bytes) is computed from
 * the tensors' names, dtypes and shapes alone and written first; the data
 * area then follows in the order the tensors were given, fed by any number of
 * mold_safetensors_stream_write calls of any size. Commit checks that exactly
 * the declared number of bytes arrived and renames the temp file into place
 * (base/fs.h atomic writes), so a failed or interrupted run never leaves a
 * truncated file under the final name.
 *
 * Complements mold_safetensors_write (safetensors.h), which needs every
 * tensor's bytes in memory at once. Only plain dtypes: safetensors has no
 * names for ggml block formats.
 */
#ifndef MOLD_FORMATS_SAFETENSORS_STREAM_H
#define MOLD_FORMATS_SAFETENSORS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "../base/status.h"
#include "../base/tensor.h"

typedef struct mold_safetensors_stream mold_safetensors_stream;

/* Creates the temp file for `path` and writes the header for tensors[0..n)
 * (their `data` and `n_bytes` are ignored: sizes follow from dtype and shape).
 * metadata_kv is NULL or a NULL-terminated key, value, key, value ... list for
 * "__metadata__". Names must be non-empty and unique. */
mold_status mold_safetensors_stream_open(const char *path, const mold_tensor *tensors, size_t n,
                                         const char *const *metadata_kv,
                                         mold_safetensors_stream **out);

/* Appends the next len bytes of the data area. Fails (MOLD_E_RANGE) when
 * they would run past the end the header declared. */
mold_status mold_safetensors_stream_write(mold_safetensors_stream *s, const void *data,
                                          size_t len);

/* Bytes of the data area still expected. */
uint64_t mold_safetensors_stream_remaining(const mold_safetensors_stream *s);

/* Checks that the whole data area was written, syncs and renames the file
 * into place. Frees s in every case. */
mold_status mold_safetensors_stream_commit(mold_safetensors_stream *s);

/* Removes the temp file and frees s (NULL ok). */
void mold_safetensors_stream_abort(mold_safetensors_stream *s);

/* Data-area bytes of one tensor of this dtype and shape (plain dtypes only). */
mold_status mold_safetensors_tensor_bytes(const mold_tensor *t, uint64_t *out);

#endif
