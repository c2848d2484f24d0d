/*
 * safetensors_stream.c — streaming safetensors writer (see safetensors_stream.h).
 *
 * Owner: the synth helper (`mold synth`); usable by any writer of large
 * checkpoints. Deliberately separate from safetensors.c, which keeps the
 * validated reader and the all-in-memory writer.
 *
 * Invariants:
 *   - the header is final before the first data byte: offsets are the running
 *     sum of the tensor sizes in the given order, each checked for overflow;
 *   - `written` never exceeds `total`; commit refuses a short data area, so a
 *     file under the final name always matches its header.
 */
#include "safetensors_stream.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h" /* defines: mold_atomic_* */

struct mold_safetensors_stream {
    mold_atomic_file *f; /* owned until commit/abort */
    char *path;          /* owned copy, for messages */
    uint64_t total;      /* data-area bytes the header declares */
    uint64_t written;    /* data-area bytes written so far (<= total) */
};

/* ---- header ---- */

static const char *st_dtype_name(mold_dtype t) {
    switch (t) {
    case MOLD_F64: return "F64";
    case MOLD_F32: return "F32";
    case MOLD_F16: return "F16";
    case MOLD_BF16: return "BF16";
    case MOLD_I64: return "I64";
    case MOLD_I32: return "I32";
    case MOLD_I16: return "I16";
    case MOLD_I8: return "I8";
    case MOLD_U8: return "U8";
    case MOLD_BOOL: return "BOOL";
    default: return NULL;
    }
}

mold_status mold_safetensors_tensor_bytes(const mold_tensor *t, uint64_t *out) {
    const char *nm = t->name ? t->name : "(unnamed)";
    if (!st_dtype_name(t->dtype))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "tensor '%s': dtype %s has no safetensors name", nm,
                        mold_dtype_name(t->dtype));
    if (t->n_dims < 0 || t->n_dims > MOLD_MAX_DIMS)
        return MOLD_ERR(MOLD_E_INVALID, "tensor '%s': n_dims: expected 0..%d, got %d", nm,
                        MOLD_MAX_DIMS, t->n_dims);
    uint64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) {
        int64_t v = t->shape[d];
        if (v < 0)
            return MOLD_ERR(MOLD_E_RANGE, "tensor '%s': shape[%d]: expected >= 0, got %" PRId64,
                            nm, d, v);
        if (v && n > UINT64_MAX / (uint64_t)v)
            return MOLD_ERR(MOLD_E_RANGE, "tensor '%s': element count overflows at shape[%d]",
                            nm, d);
        n *= (uint64_t)v;
    }
    return mold_dtype_row_bytes(t->dtype, n, out);
}

/* Builds the header object; *total receives the data-area size. */
static mold_status build_header(const char *path, const mold_tensor *ts, size_t n,
                                const char *const *kv, json_t *h, uint64_t *total) {
    if (kv) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(h, "__metadata__", meta))
            return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
        for (size_t i = 0; kv[i]; i += 2) {
            if (!kv[i + 1])
                return MOLD_ERR(MOLD_E_INVALID, "%s: metadata key '%s' has no value", path, kv[i]);
            json_object_set_new(meta, kv[i], json_string(kv[i + 1]));
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const mold_tensor *t = &ts[i];
        if (!t->name || !*t->name)
            return MOLD_ERR(MOLD_E_INVALID, "%s: tensor %zu: expected a name, got none", path, i);
        if (!strcmp(t->name, "__metadata__") || json_object_get(h, t->name))
            return MOLD_ERR(MOLD_E_INVALID, "%s: duplicate tensor name '%s'", path, t->name);
        uint64_t bytes;
        mold_status st = mold_safetensors_tensor_bytes(t, &bytes);
        if (st) {
            mold_error_prefix("%s", path);
            return st;
        }
        if (bytes > UINT64_MAX - off)
            return MOLD_ERR(MOLD_E_RANGE, "%s: data area overflows at tensor '%s'", path, t->name);
        json_t *e = json_object(), *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *offs = json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes));
        json_object_set_new(e, "dtype", json_string(st_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (!offs || json_object_set_new(h, t->name, e))
            return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
        off += bytes;
    }
    *total = off;
    return MOLD_OK;
}

/* Writes u64 length + JSON + spaces so the data area starts 8-byte aligned. */
static mold_status write_header(mold_atomic_file *f, const char *path, const json_t *h) {
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!js) return MOLD_ERR(MOLD_E_NOMEM, "%s: cannot serialize header", path);
    size_t len = strlen(js), padded = (len + 7) & ~(size_t)7;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    mold_status st = mold_atomic_write(f, prefix, 8);
    if (!st) st = mold_atomic_write(f, js, len);
    if (!st) st = mold_atomic_write(f, spaces, padded - len);
    free(js);
    return st;
}

/* ---- stream ---- */

mold_status mold_safetensors_stream_open(const char *path, const mold_tensor *tensors, size_t n,
                                         const char *const *metadata_kv,
                                         mold_safetensors_stream **out) {
    MOLD_ASSERT(path && out && (tensors || !n));
    *out = NULL;
    json_t *h = json_object();
    if (!h) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    mold_safetensors_stream *s = calloc(1, sizeof *s);
    mold_status st = MOLD_OK;
    if (!s || !(s->path = strdup(path))) st = MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    if (!st) st = build_header(path, tensors, n, metadata_kv, h, &s->total);
    if (!st) st = mold_atomic_open(path, &s->f);
    if (!st) st = write_header(s->f, path, h);
    json_decref(h);
    if (st) {
        mold_safetensors_stream_abort(s);
        return st;
    }
    *out = s;
    return MOLD_OK;
}

mold_status mold_safetensors_stream_write(mold_safetensors_stream *s, const void *data,
                                          size_t len) {
    if (len > s->total - s->written)
        return MOLD_ERR(MOLD_E_RANGE, "%s: data area: expected %" PRIu64 " more bytes, got %zu",
                        s->path, s->total - s->written, len);
    MOLD_TRY(mold_atomic_write(s->f, data, len));
    s->written += len;
    return MOLD_OK;
}

uint64_t mold_safetensors_stream_remaining(const mold_safetensors_stream *s) {
    return s->total - s->written;
}

mold_status mold_safetensors_stream_commit(mold_safetensors_stream *s) {
    if (s->written != s->total) {
        mold_status st = MOLD_ERR(MOLD_E_INVALID, "%s: data area: expected %" PRIu64
                                  " bytes, got %" PRIu64, s->path, s->total, s->written);
        mold_safetensors_stream_abort(s);
        return st;
    }
    mold_status st = mold_atomic_commit(s->f);
    free(s->path);
    free(s);
    return st;
}

void mold_safetensors_stream_abort(mold_safetensors_stream *s) {
    if (!s) return;
    mold_atomic_abort(s->f);
    free(s->path);
    free(s);
}
