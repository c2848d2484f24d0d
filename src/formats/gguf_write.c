/*
 * gguf_write.c — GGUF v3 writer (see gguf.h).
 *
 * Owner: the gguf helper. Used by `mold quantize` and the tests.
 * Metadata is serialized as it is added (one growable byte buffer); tensor
 * infos are kept until the write, which emits header, padding and data in a
 * single pass through an atomic file (temp + rename), so a failed or
 * interrupted write never leaves a partial file under the final name.
 * Offsets: each tensor starts at a multiple of the alignment; padding bytes
 * are zero (also after the last tensor, as ggml writes it).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"
#include "gguf.h"

typedef struct wtensor {
    char *name;          /* owned */
    mold_dtype dtype;
    int n_dims;
    int64_t ne[MOLD_GGUF_MAX_DIMS]; /* ggml order */
    const void *data;    /* borrowed, or NULL: filled at write time */
    uint64_t n_bytes;
} wtensor;

struct mold_gguf_writer {
    uint8_t *kv;          /* serialized metadata entries */
    size_t kv_len, kv_cap;
    char **keys;          /* owned copies, for the duplicate check */
    size_t n_kv, cap_keys;
    wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

/* ---- byte buffer ----------------------------------------------------------------- */

static mold_status put(mold_gguf_writer *w, const void *p, size_t n) {
    if (w->kv_cap - w->kv_len < n) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap - w->kv_len < n) {
            if (cap > SIZE_MAX / 2) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: metadata too large");
            cap *= 2;
        }
        uint8_t *nb = realloc(w->kv, cap);
        if (!nb) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory");
        w->kv = nb;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return MOLD_OK;
}

static mold_status put_u32(mold_gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static mold_status put_u64(mold_gguf_writer *w, uint64_t v) { return put(w, &v, 8); }

static mold_status put_str(mold_gguf_writer *w, const char *s, uint64_t len) {
    MOLD_TRY(put_u64(w, len));
    return put(w, s, (size_t)len);
}

/* ---- metadata -------------------------------------------------------------------- */

mold_status mold_gguf_writer_create(mold_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory");
    (*out)->alignment = MOLD_GGUF_DEFAULT_ALIGNMENT;
    return MOLD_OK;
}

void mold_gguf_writer_free(mold_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

/* Starts an entry: checks the key, records it, writes key + type. */
static mold_status begin_kv(mold_gguf_writer *w, const char *key, mold_gguf_type type) {
    if (!key || !*key) return MOLD_ERR(MOLD_E_INVALID, "gguf writer: empty metadata key");
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return MOLD_ERR(MOLD_E_INVALID, "gguf writer: duplicate metadata key '%s'", key);
    if (w->n_kv == w->cap_keys) {
        size_t cap = w->cap_keys ? 2 * w->cap_keys : 32;
        char **nk = realloc(w->keys, cap * sizeof *nk);
        if (!nk) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory");
        w->keys = nk;
        w->cap_keys = cap;
    }
    if (!(w->keys[w->n_kv] = strdup(key))) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory");
    w->n_kv++;
    MOLD_TRY(put_str(w, key, strlen(key)));
    return put_u32(w, (uint32_t)type);
}

mold_status mold_gguf_writer_add_u32(mold_gguf_writer *w, const char *key, uint32_t v) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_U32));
    return put_u32(w, v);
}

mold_status mold_gguf_writer_add_i32(mold_gguf_writer *w, const char *key, int32_t v) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_I32));
    return put(w, &v, 4);
}

mold_status mold_gguf_writer_add_u64(mold_gguf_writer *w, const char *key, uint64_t v) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_U64));
    return put_u64(w, v);
}

mold_status mold_gguf_writer_add_f32(mold_gguf_writer *w, const char *key, float v) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_F32));
    return put(w, &v, 4);
}

mold_status mold_gguf_writer_add_bool(mold_gguf_writer *w, const char *key, bool v) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_BOOL));
    uint8_t b = v;
    return put(w, &b, 1);
}

mold_status mold_gguf_writer_add_str(mold_gguf_writer *w, const char *key, const char *v) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_STR));
    return put_str(w, v, strlen(v));
}

static size_t scalar_bytes(mold_gguf_type t) {
    static const uint8_t sz[MOLD_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < MOLD_GGUF_TYPE_COUNT ? sz[t] : 0;
}

mold_status mold_gguf_writer_add_array(mold_gguf_writer *w, const char *key,
                                       mold_gguf_type elem_type, const void *data, uint64_t n) {
    size_t es = scalar_bytes(elem_type);
    if (!es)
        return MOLD_ERR(MOLD_E_INVALID, "gguf writer: '%s': add_array takes scalar elements, got %s",
                        key, mold_gguf_type_name(elem_type));
    if (n > SIZE_MAX / es) return MOLD_ERR(MOLD_E_RANGE, "gguf writer: '%s': array too large", key);
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_ARR));
    MOLD_TRY(put_u32(w, (uint32_t)elem_type));
    MOLD_TRY(put_u64(w, n));
    return put(w, data, (size_t)n * es);
}

mold_status mold_gguf_writer_add_str_array(mold_gguf_writer *w, const char *key,
                                           const char *const *strs, uint64_t n) {
    MOLD_TRY(begin_kv(w, key, MOLD_GGUF_ARR));
    MOLD_TRY(put_u32(w, MOLD_GGUF_STR));
    MOLD_TRY(put_u64(w, n));
    for (uint64_t i = 0; i < n; i++) MOLD_TRY(put_str(w, strs[i], strlen(strs[i])));
    return MOLD_OK;
}

/* Serializes a value's payload (after its type), recursing into arrays. */
static mold_status put_value(mold_gguf_writer *w, const mold_gguf_value *v) {
    switch (v->type) {
    case MOLD_GGUF_STR: return put_str(w, v->v.str.s, v->v.str.len);
    case MOLD_GGUF_ARR:
        MOLD_TRY(put_u32(w, (uint32_t)v->elem_type));
        MOLD_TRY(put_u64(w, v->n));
        if (v->elem_type == MOLD_GGUF_STR) {
            for (uint64_t i = 0; i < v->n; i++)
                MOLD_TRY(put_str(w, v->v.strs[i].s, v->v.strs[i].len));
            return MOLD_OK;
        }
        if (v->elem_type == MOLD_GGUF_ARR) {
            for (uint64_t i = 0; i < v->n; i++) MOLD_TRY(put_value(w, &v->v.vals[i]));
            return MOLD_OK;
        }
        return put(w, v->v.raw, (size_t)(v->n * scalar_bytes(v->elem_type)));
    case MOLD_GGUF_F32: {
        float f = (float)v->v.f;
        return put(w, &f, 4);
    }
    case MOLD_GGUF_F64: return put(w, &v->v.f, 8);
    case MOLD_GGUF_BOOL: {
        uint8_t b = v->v.b;
        return put(w, &b, 1);
    }
    default: {
        size_t es = scalar_bytes(v->type);
        if (!es) return MOLD_ERR(MOLD_E_INVALID, "gguf writer: invalid value type %d", (int)v->type);
        uint64_t u = v->v.u; /* i shares the bits; little-endian truncation keeps the low bytes */
        return put(w, &u, es);
    }
    }
}

mold_status mold_gguf_writer_add_value(mold_gguf_writer *w, const char *key,
                                       const mold_gguf_value *v) {
    MOLD_TRY(begin_kv(w, key, v->type));
    return put_value(w, v);
}

mold_status mold_gguf_writer_set_alignment(mold_gguf_writer *w, uint32_t alignment) {
    if (!alignment || (alignment & (alignment - 1)))
        return MOLD_ERR(MOLD_E_INVALID, "gguf writer: alignment: expected a power of two, got %"
                        PRIu32, alignment);
    MOLD_TRY(mold_gguf_writer_add_u32(w, "general.alignment", alignment));
    w->alignment = alignment;
    return MOLD_OK;
}

/* ---- tensors ------------------------------------------------------------------------ */

mold_status mold_gguf_writer_add_tensor(mold_gguf_writer *w, const char *name, mold_dtype dtype,
                                        int n_dims, const int64_t *ne, const void *data) {
    if (!name || !*name) return MOLD_ERR(MOLD_E_INVALID, "gguf writer: empty tensor name");
    if (mold_gguf_ggml_from_dtype(dtype) == UINT32_MAX)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "gguf writer: tensor '%s': dtype %s has no ggml type",
                        name, mold_dtype_name(dtype));
    if (n_dims < 0 || n_dims > MOLD_GGUF_MAX_DIMS)
        return MOLD_ERR(MOLD_E_INVALID, "gguf writer: tensor '%s': n_dims: expected 0..%d, got %d",
                        name, MOLD_GGUF_MAX_DIMS, n_dims);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return MOLD_ERR(MOLD_E_INVALID, "gguf writer: duplicate tensor name '%s'", name);
    wtensor t = {.dtype = dtype, .n_dims = n_dims, .data = data};
    uint64_t n = 1;
    for (int d = 0; d < MOLD_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0 || (t.ne[d] && n > (uint64_t)INT64_MAX / (uint64_t)t.ne[d]))
            return MOLD_ERR(MOLD_E_INVALID, "gguf writer: tensor '%s': bad dimension ne[%d] = %"
                            PRId64, name, d, t.ne[d]);
        n *= (uint64_t)t.ne[d];
    }
    const mold_dtype_info *info = mold_dtype_get(dtype);
    if (t.ne[0] % info->block_elems)
        return MOLD_ERR(MOLD_E_INVALID, "gguf writer: tensor '%s': ne[0] = %" PRId64 " is not a "
                        "multiple of the %s block size %u", name, t.ne[0], info->name,
                        info->block_elems);
    MOLD_TRY(mold_dtype_row_bytes(dtype, n, &t.n_bytes));
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory");
    w->t[w->n_t++] = t;
    return MOLD_OK;
}

/* ---- the file ------------------------------------------------------------------------- */

static uint64_t pad_to(uint64_t off, uint32_t a) { return (a - off % a) % a; }

static mold_status write_padding(mold_atomic_file *f, uint64_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        MOLD_TRY(mold_atomic_write(f, zeros, k));
        n -= k;
    }
    return MOLD_OK;
}

/* Header: magic, version, counts, metadata, tensor infos with offsets. */
static mold_status write_header(mold_gguf_writer *w, mold_atomic_file *f, uint64_t *written) {
    mold_gguf_writer h = {0}; /* reuse the byte buffer helpers for the header */
    mold_status st = put(&h, "GGUF", 4);
    uint32_t version = 3;
    uint64_t counts[2] = {w->n_t, w->n_kv};
    if (!st) st = put(&h, &version, 4);
    if (!st) st = put(&h, counts, 16);
    if (!st && w->kv_len) st = put(&h, w->kv, w->kv_len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t && !st; i++) {
        const wtensor *t = &w->t[i];
        st = put_str(&h, t->name, strlen(t->name));
        if (!st) st = put_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims && !st; d++) st = put_u64(&h, (uint64_t)t->ne[d]);
        if (!st) st = put_u32(&h, mold_gguf_ggml_from_dtype(t->dtype));
        if (!st) st = put_u64(&h, off);
        off += t->n_bytes + pad_to(t->n_bytes, w->alignment);
    }
    if (!st) st = mold_atomic_write(f, h.kv, h.kv_len);
    if (!st) st = write_padding(f, pad_to(h.kv_len, w->alignment));
    *written = h.kv_len + pad_to(h.kv_len, w->alignment);
    free(h.kv);
    return st;
}

static mold_status write_data(mold_gguf_writer *w, mold_atomic_file *f, mold_gguf_fill_fn fill,
                              void *ud) {
    uint64_t max_fill = 0;
    for (size_t i = 0; i < w->n_t; i++)
        if (!w->t[i].data && w->t[i].n_bytes > max_fill) max_fill = w->t[i].n_bytes;
    if (max_fill && !fill)
        return MOLD_ERR(MOLD_E_INVALID, "gguf writer: tensors without data need a fill callback");
    void *buf = NULL;
    if (max_fill && !(buf = malloc((size_t)max_fill)))
        return MOLD_ERR(MOLD_E_NOMEM, "gguf writer: out of memory for a %" PRIu64 "-byte tensor",
                        max_fill);
    mold_status st = MOLD_OK;
    for (size_t i = 0; i < w->n_t && !st; i++) {
        const wtensor *t = &w->t[i];
        const void *src = t->data;
        if (!src) {
            st = fill(ud, i, buf, t->n_bytes);
            src = buf;
        }
        if (!st && t->n_bytes) st = mold_atomic_write(f, src, (size_t)t->n_bytes);
        if (!st) st = write_padding(f, pad_to(t->n_bytes, w->alignment));
    }
    free(buf);
    return st;
}

mold_status mold_gguf_writer_write(mold_gguf_writer *w, const char *path, mold_gguf_fill_fn fill,
                                   void *ud) {
    mold_atomic_file *f;
    MOLD_TRY(mold_atomic_open(path, &f));
    uint64_t header_bytes;
    mold_status st = write_header(w, f, &header_bytes);
    if (!st) st = write_data(w, f, fill, ud);
    if (st) {
        mold_error_prefix("%s", path);
        mold_atomic_abort(f);
        return st;
    }
    return mold_atomic_commit(f);
}
