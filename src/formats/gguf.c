/*
 * gguf.c — validating GGUF v2/v3 reader over mmap, and the GGUF tensor source.
 *
 * Owner: the gguf helper. The writer lives in gguf_write.c.
 * Reference: ggml's docs/gguf.md and src/gguf.cpp (format facts and the list
 * of checks; written from scratch).
 *
 * Checks, in file order (any failure frees everything; message names the
 * file, the entry and "expected X, got Y"):
 *  - magic "GGUF"; version 2 or 3 (1 is the old 32-bit-count format; a
 *    byte-swapped version means a big-endian file);
 *  - every read is bounded by the bytes left (truncation is reported with the
 *    offset and the field being read);
 *  - keys: non-empty, unique; value types < 13; bool bytes 0 or 1; array
 *    element counts times element size fit in the file (checked by division,
 *    never by multiplication); arrays nest at most MOLD_GGUF_MAX_ARRAY_DEPTH;
 *  - general.alignment: u32, non-zero power of two;
 *  - tensors: non-empty unique names; n_dims <= 4; every ne >= 0 and the
 *    element count <= INT64_MAX (division-checked); ggml type known and
 *    supported; ne[0] a whole number of blocks; offset a multiple of the
 *    alignment; offset + bytes inside the data section; no two tensors
 *    overlap.
 * Memory grows with what was actually parsed (doubling arrays, a chunked
 * arena for strings), never with the counts the header claims.
 */
#include "gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"

/* ---- arena: stable storage for strings and decoded arrays ------------------ */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) uint8_t data[]; /* cap bytes */
} arena_chunk;

#define ARENA_CHUNK_BYTES (1u << 20)

/* 8-byte aligned allocation; NULL on OOM. Never fails for n == 0. */
static void *arena_alloc(arena_chunk **head, size_t n) {
    size_t need = (n + 7) & ~(size_t)7;
    if (need < n) return NULL;
    arena_chunk *c = *head;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK_BYTES ? need : ARENA_CHUNK_BYTES;
        if (cap > SIZE_MAX - sizeof(arena_chunk)) return NULL;
        arena_chunk *nc = malloc(sizeof(arena_chunk) + cap);
        if (!nc) return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        *head = nc;
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += need;
    return p;
}

static void arena_free(arena_chunk *c) {
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
}

/* ---- the handle --------------------------------------------------------------- */

typedef struct gguf_kv {
    const char *key;     /* arena */
    mold_gguf_value val; /* strings / arrays point into the arena or the file */
} gguf_kv;

struct mold_gguf {
    mold_mmap map;            /* owned mapping; zeroed for open_buf */
    const uint8_t *base;      /* file bytes (mapping or caller's buffer) */
    uint64_t size;
    char *what;               /* path or label for messages (owned) */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;     /* file offset of the data section */
    const char *arch;         /* general.architecture or "" */
    gguf_kv *kv;              /* n_kv entries, file order */
    size_t n_kv, cap_kv;
    mold_gguf_tensor_info *ti; /* n_tensors entries, file order */
    size_t n_tensors, cap_ti;
    mold_tensor *views;       /* PyTorch-order views, parallel to ti */
    uint32_t *kv_hash;        /* open addressing: index + 1, 0 = empty */
    uint32_t *t_hash;
    size_t kv_hash_cap, t_hash_cap; /* powers of two > 2 * count */
    arena_chunk *arena;
};

/* ---- ggml type table -------------------------------------------------------- */

typedef struct ggml_type_row {
    const char *name;
    mold_dtype dtype; /* MOLD_DTYPE_INVALID: known to ggml, not supported here */
} ggml_type_row;

static const ggml_type_row GGML_TYPES[] = {
    [0] = {"f32", MOLD_F32},      [1] = {"f16", MOLD_F16},      [2] = {"q4_0", MOLD_Q4_0},
    [3] = {"q4_1", MOLD_Q4_1},    [6] = {"q5_0", MOLD_Q5_0},    [7] = {"q5_1", MOLD_Q5_1},
    [8] = {"q8_0", MOLD_Q8_0},    [9] = {"q8_1", 0},            [10] = {"q2_K", MOLD_Q2_K},
    [11] = {"q3_K", MOLD_Q3_K},   [12] = {"q4_K", MOLD_Q4_K},   [13] = {"q5_K", MOLD_Q5_K},
    [14] = {"q6_K", MOLD_Q6_K},   [15] = {"q8_K", 0},           [16] = {"iq2_xxs", 0},
    [17] = {"iq2_xs", 0},         [18] = {"iq3_xxs", 0},        [19] = {"iq1_s", 0},
    [20] = {"iq4_nl", 0},         [21] = {"iq3_s", 0},          [22] = {"iq2_s", 0},
    [23] = {"iq4_xs", 0},         [24] = {"i8", MOLD_I8},       [25] = {"i16", MOLD_I16},
    [26] = {"i32", MOLD_I32},     [27] = {"i64", MOLD_I64},     [28] = {"f64", MOLD_F64},
    [29] = {"iq1_m", 0},          [30] = {"bf16", MOLD_BF16},   [34] = {"tq1_0", 0},
    [35] = {"tq2_0", 0},          [39] = {"mxfp4", 0},
};
#define N_GGML_TYPES (sizeof GGML_TYPES / sizeof GGML_TYPES[0])

mold_dtype mold_gguf_dtype_from_ggml(uint32_t ggml_type) {
    return ggml_type < N_GGML_TYPES ? GGML_TYPES[ggml_type].dtype : MOLD_DTYPE_INVALID;
}

uint32_t mold_gguf_ggml_from_dtype(mold_dtype t) {
    if (t == MOLD_DTYPE_INVALID) return UINT32_MAX;
    for (uint32_t i = 0; i < N_GGML_TYPES; i++)
        if (GGML_TYPES[i].dtype == t) return i;
    return UINT32_MAX;
}

static const char *ggml_type_name(uint32_t t) {
    return t < N_GGML_TYPES && GGML_TYPES[t].name ? GGML_TYPES[t].name : "unknown";
}

static const char *const TYPE_NAMES[MOLD_GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const uint8_t SCALAR_BYTES[MOLD_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *mold_gguf_type_name(mold_gguf_type t) {
    return (unsigned)t < MOLD_GGUF_TYPE_COUNT ? TYPE_NAMES[t] : "invalid";
}

static bool is_int_type(mold_gguf_type t) {
    return t <= MOLD_GGUF_I32 || t == MOLD_GGUF_U64 || t == MOLD_GGUF_I64;
}
static bool is_signed_type(mold_gguf_type t) {
    return t == MOLD_GGUF_I8 || t == MOLD_GGUF_I16 || t == MOLD_GGUF_I32 || t == MOLD_GGUF_I64;
}
static bool is_float_type(mold_gguf_type t) { return t == MOLD_GGUF_F32 || t == MOLD_GGUF_F64; }

/* Decodes one little-endian scalar of type t at p into v (u, i, f or b). */
static void decode_scalar(mold_gguf_type t, const uint8_t *p, mold_gguf_value *v) {
    uint64_t u = 0;
    memcpy(&u, p, SCALAR_BYTES[t]); /* little-endian host */
    v->type = t;
    switch (t) {
    case MOLD_GGUF_I8: v->v.i = (int8_t)u; break;
    case MOLD_GGUF_I16: v->v.i = (int16_t)u; break;
    case MOLD_GGUF_I32: v->v.i = (int32_t)u; break;
    case MOLD_GGUF_I64: v->v.i = (int64_t)u; break;
    case MOLD_GGUF_F32: {
        float f;
        memcpy(&f, p, 4);
        v->v.f = f;
        break;
    }
    case MOLD_GGUF_F64: memcpy(&v->v.f, p, 8); break;
    case MOLD_GGUF_BOOL: v->v.b = u != 0; break;
    default: v->v.u = u; break;
    }
}

/* ---- cursor over the header ---------------------------------------------------- */

typedef struct cursor {
    mold_gguf *g;
    uint64_t off;     /* next byte to read */
    char ctx[160];    /* what is being read, for messages ("tensor 'x'"); may be "" */
} cursor;

static uint64_t left(const cursor *c) { return c->g->size - c->off; }

static mold_status need(cursor *c, uint64_t n, const char *field) {
    if (n <= left(c)) return MOLD_OK;
    return MOLD_ERR(MOLD_E_FORMAT, "%s: truncated file: %s%s%s at offset %" PRIu64
                    " needs %" PRIu64 " bytes, only %" PRIu64 " left",
                    c->g->what, c->ctx, *c->ctx ? ": " : "", field, c->off, n, left(c));
}

static mold_status rd_bytes(cursor *c, void *dst, uint64_t n, const char *field) {
    MOLD_TRY(need(c, n, field));
    memcpy(dst, c->g->base + c->off, n);
    c->off += n;
    return MOLD_OK;
}

static mold_status rd_u32(cursor *c, uint32_t *v, const char *field) {
    return rd_bytes(c, v, 4, field);
}
static mold_status rd_u64(cursor *c, uint64_t *v, const char *field) {
    return rd_bytes(c, v, 8, field);
}

/* Reads a GGUF string into the arena, NUL-terminated. */
static mold_status rd_str(cursor *c, mold_gguf_str *out, const char *field) {
    uint64_t len;
    char what[64];
    snprintf(what, sizeof what, "%s length", field);
    MOLD_TRY(rd_u64(c, &len, what));
    snprintf(what, sizeof what, "%s bytes", field);
    MOLD_TRY(need(c, len, what));
    char *s = arena_alloc(&c->g->arena, (size_t)len + 1);
    if (!s) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory for a %" PRIu64 "-byte string",
                            c->g->what, len);
    memcpy(s, c->g->base + c->off, len);
    s[len] = 0;
    c->off += len;
    out->s = s;
    out->len = len;
    return MOLD_OK;
}

/* ---- metadata values ---------------------------------------------------------- */

static mold_status rd_value(cursor *c, mold_gguf_type t, int depth, mold_gguf_value *out);

/* Reads u32 element type + u64 count + elements. */
static mold_status rd_array(cursor *c, int depth, mold_gguf_value *out) {
    mold_gguf *g = c->g;
    uint32_t et;
    uint64_t n;
    if (depth >= MOLD_GGUF_MAX_ARRAY_DEPTH)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: arrays nested deeper than %d levels", g->what,
                        c->ctx, MOLD_GGUF_MAX_ARRAY_DEPTH);
    MOLD_TRY(rd_u32(c, &et, "array element type"));
    if (et >= MOLD_GGUF_TYPE_COUNT)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: array element type: expected 0..12, got %" PRIu32,
                        g->what, c->ctx, et);
    MOLD_TRY(rd_u64(c, &n, "array length"));
    out->type = MOLD_GGUF_ARR;
    out->elem_type = (mold_gguf_type)et;
    out->n = n;
    /* smallest encoding of one element: its scalar size, 8 (string), 12 (array) */
    uint64_t min_elem = et == MOLD_GGUF_STR ? 8 : et == MOLD_GGUF_ARR ? 12 : SCALAR_BYTES[et];
    if (n > left(c) / min_elem)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: truncated file: %s: array of %" PRIu64 " %s at offset %"
                        PRIu64 " needs at least %" PRIu64 " bytes per element, %" PRIu64 " left",
                        g->what, c->ctx, n, TYPE_NAMES[et], c->off, min_elem, left(c));
    if (et != MOLD_GGUF_STR && et != MOLD_GGUF_ARR) {
        out->v.raw = g->base + c->off;
        if (et == MOLD_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (g->base[c->off + i] > 1)
                    return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: bool element %" PRIu64
                                    ": expected 0 or 1, got %u", g->what, c->ctx, i,
                                    g->base[c->off + i]);
        c->off += n * min_elem;
        return MOLD_OK;
    }
    size_t esz = et == MOLD_GGUF_STR ? sizeof(mold_gguf_str) : sizeof(mold_gguf_value);
    void *items = arena_alloc(&g->arena, (size_t)n * esz); /* n <= file size / 8: no overflow */
    if (!items && n) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory for an array", g->what);
    for (uint64_t i = 0; i < n; i++) {
        if (et == MOLD_GGUF_STR) MOLD_TRY(rd_str(c, (mold_gguf_str *)items + i, "array string"));
        else MOLD_TRY(rd_array(c, depth + 1, (mold_gguf_value *)items + i));
    }
    if (et == MOLD_GGUF_STR) out->v.strs = items;
    else out->v.vals = items;
    return MOLD_OK;
}

static mold_status rd_value(cursor *c, mold_gguf_type t, int depth, mold_gguf_value *out) {
    memset(out, 0, sizeof *out);
    if (t == MOLD_GGUF_ARR) return rd_array(c, depth, out);
    if (t == MOLD_GGUF_STR) {
        out->type = t;
        return rd_str(c, &out->v.str, "string value");
    }
    MOLD_TRY(need(c, SCALAR_BYTES[t], TYPE_NAMES[t]));
    const uint8_t *p = c->g->base + c->off;
    if (t == MOLD_GGUF_BOOL && *p > 1)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: bool value: expected 0 or 1, got %u", c->g->what,
                        c->ctx, *p);
    decode_scalar(t, p, out);
    c->off += SCALAR_BYTES[t];
    return MOLD_OK;
}

/* ---- hashing ---------------------------------------------------------------------- */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Builds an index over n names; fails on a duplicate (reports both indices). */
typedef const char *(*name_at_fn)(const mold_gguf *g, size_t i);

static const char *kv_name(const mold_gguf *g, size_t i) { return g->kv[i].key; }
static const char *ti_name(const mold_gguf *g, size_t i) { return g->ti[i].name; }

static mold_status build_index(mold_gguf *g, size_t n, name_at_fn name_at, const char *what,
                               uint32_t **out, size_t *out_cap) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2;
    uint32_t *tab = calloc(cap, sizeof *tab);
    if (!tab) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory for the %s index", g->what, what);
    for (size_t i = 0; i < n; i++) {
        const char *name = name_at(g, i);
        size_t h = (size_t)fnv1a(name) & (cap - 1);
        while (tab[h]) {
            if (!strcmp(name_at(g, tab[h] - 1), name)) {
                size_t first = tab[h] - 1;
                free(tab);
                return MOLD_ERR(MOLD_E_FORMAT, "%s: duplicate %s '%s' (entries %zu and %zu)",
                                g->what, what, name, first, i);
            }
            h = (h + 1) & (cap - 1);
        }
        tab[h] = (uint32_t)(i + 1);
    }
    *out = tab;
    *out_cap = cap;
    return MOLD_OK;
}

static long lookup(const mold_gguf *g, const uint32_t *tab, size_t cap, name_at_fn name_at,
                   const char *name) {
    if (!tab) return -1;
    size_t h = (size_t)fnv1a(name) & (cap - 1);
    while (tab[h]) {
        if (!strcmp(name_at(g, tab[h] - 1), name)) return (long)tab[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

/* ---- parsing ------------------------------------------------------------------------ */

static mold_status grow(void **arr, size_t *cap, size_t n, size_t elem, const char *what) {
    if (n < *cap) return MOLD_OK;
    size_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, nc * elem);
    if (!p) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", what);
    *arr = p;
    *cap = nc;
    return MOLD_OK;
}

static mold_status parse_header(cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    mold_gguf *g = c->g;
    char magic[4];
    MOLD_TRY(rd_bytes(c, magic, 4, "magic"));
    if (memcmp(magic, "GGUF", 4)) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = magic[i] >= 32 && magic[i] < 127 ? magic[i] : '?';
        shown[4] = 0;
        return MOLD_ERR(MOLD_E_FORMAT, "%s: not a GGUF file: expected magic 'GGUF', got '%s'",
                        g->what, shown);
    }
    MOLD_TRY(rd_u32(c, &g->version, "version"));
    if (g->version != 2 && g->version != 3) {
        if (g->version && !(g->version & 0xffffu))
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: GGUF version 0x%08" PRIx32 " looks "
                            "byte-swapped (big-endian file?); expected 2 or 3", g->what, g->version);
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: GGUF version: expected 2 or 3, got %" PRIu32,
                        g->what, g->version);
    }
    MOLD_TRY(rd_u64(c, n_tensors, "tensor count"));
    MOLD_TRY(rd_u64(c, n_kv, "metadata count"));
    /* each entry needs >= 12 (kv) / 24 (tensor) bytes: reject absurd counts now */
    if (*n_kv > left(c) / 12 || *n_tensors > left(c) / 24 || *n_tensors >= UINT32_MAX ||
        *n_kv >= UINT32_MAX)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: header claims %" PRIu64 " metadata entries and %"
                        PRIu64 " tensors, more than the %" PRIu64 " remaining bytes can hold",
                        g->what, *n_kv, *n_tensors, left(c));
    return MOLD_OK;
}

static mold_status parse_kvs(cursor *c, uint64_t n_kv) {
    mold_gguf *g = c->g;
    char *ctx = c->ctx;
    for (uint64_t i = 0; i < n_kv; i++) {
        snprintf(ctx, sizeof c->ctx, "metadata entry %" PRIu64, i);
        MOLD_TRY(grow((void **)&g->kv, &g->cap_kv, g->n_kv, sizeof *g->kv, g->what));
        gguf_kv *kv = &g->kv[g->n_kv];
        mold_gguf_str key;
        MOLD_TRY(rd_str(c, &key, "key"));
        if (!key.len || strlen(key.s) != key.len)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: key: expected a non-empty string without NUL "
                            "bytes, got %" PRIu64 " bytes", g->what, ctx, key.len);
        snprintf(ctx, sizeof c->ctx, "metadata '%.100s'", key.s);
        uint32_t t;
        MOLD_TRY(rd_u32(c, &t, "value type"));
        if (t >= MOLD_GGUF_TYPE_COUNT)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: value type: expected 0..12, got %" PRIu32,
                            g->what, ctx, t);
        kv->key = key.s;
        MOLD_TRY(rd_value(c, (mold_gguf_type)t, 0, &kv->val));
        g->n_kv++;
    }
    ctx[0] = 0;
    return build_index(g, g->n_kv, kv_name, "metadata key", &g->kv_hash, &g->kv_hash_cap);
}

static mold_status parse_alignment(mold_gguf *g) {
    g->alignment = MOLD_GGUF_DEFAULT_ALIGNMENT;
    const mold_gguf_value *v = mold_gguf_find_kv(g, "general.alignment");
    if (!v) return MOLD_OK;
    if (v->type != MOLD_GGUF_U32)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: general.alignment: expected u32, got %s", g->what,
                        mold_gguf_type_name(v->type));
    if (!v->v.u || (v->v.u & (v->v.u - 1)))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: general.alignment: expected a power of two, got %"
                        PRIu64, g->what, v->v.u);
    g->alignment = (uint32_t)v->v.u;
    return MOLD_OK;
}

/* Reads one tensor info and checks it on its own (dims, type, block size). */
static mold_status parse_tensor(cursor *c, mold_gguf_tensor_info *ti) {
    mold_gguf *g = c->g;
    mold_gguf_str name;
    MOLD_TRY(rd_str(c, &name, "name"));
    if (!name.len || strlen(name.s) != name.len)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: name: expected a non-empty string without NUL "
                        "bytes, got %" PRIu64 " bytes", g->what, c->ctx, name.len);
    ti->name = name.s;
    char *ctx = c->ctx;
    snprintf(ctx, sizeof c->ctx, "tensor '%.100s'", name.s);
    uint32_t n_dims;
    MOLD_TRY(rd_u32(c, &n_dims, "n_dims"));
    if (n_dims > MOLD_GGUF_MAX_DIMS)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: n_dims: expected at most %d, got %" PRIu32,
                        g->what, ctx, MOLD_GGUF_MAX_DIMS, n_dims);
    ti->n_dims = (int)n_dims;
    int64_t n_elems = 1;
    for (int d = 0; d < MOLD_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < (int)n_dims) MOLD_TRY(rd_u64(c, &ne, "dimension"));
        if (ne > INT64_MAX)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: ne[%d]: expected 0..INT64_MAX, got %" PRIu64,
                            g->what, ctx, d, ne);
        ti->ne[d] = (int64_t)ne;
        if (ne && n_elems > INT64_MAX / (int64_t)ne)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: element count overflows int64", g->what, ctx);
        n_elems *= (int64_t)ne;
    }
    MOLD_TRY(rd_u32(c, &ti->ggml_type, "type"));
    ti->dtype = mold_gguf_dtype_from_ggml(ti->ggml_type);
    if (ti->dtype == MOLD_DTYPE_INVALID)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: %s: ggml type %" PRIu32 " (%s) is not supported "
                        "(expected f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K..q6_K)",
                        g->what, ctx, ti->ggml_type, ggml_type_name(ti->ggml_type));
    const mold_dtype_info *info = mold_dtype_get(ti->dtype);
    if (ti->ne[0] % info->block_elems)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s: ne[0] = %" PRId64 " is not a multiple of the %s "
                        "block size %u", g->what, ctx, ti->ne[0], info->name, info->block_elems);
    mold_status st = mold_dtype_row_bytes(ti->dtype, (uint64_t)n_elems, &ti->n_bytes);
    if (st) {
        mold_error_prefix("%s: %s", g->what, ctx);
        return st;
    }
    MOLD_TRY(rd_u64(c, &ti->offset, "offset"));
    return MOLD_OK;
}

static int cmp_by_offset(const void *a, const void *b, void *ud) {
    const mold_gguf_tensor_info *ti = ud;
    uint64_t oa = ti[*(const uint32_t *)a].offset, ob = ti[*(const uint32_t *)b].offset;
    return oa < ob ? -1 : oa > ob;
}

/* Places every tensor in the data section: alignment, bounds, no overlap. */
static mold_status place_tensors(mold_gguf *g) {
    uint64_t avail = g->size - g->data_offset;
    for (size_t i = 0; i < g->n_tensors; i++) {
        mold_gguf_tensor_info *ti = &g->ti[i];
        if (ti->offset % g->alignment)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': offset %" PRIu64 " is not a multiple "
                            "of the alignment %" PRIu32, g->what, ti->name, ti->offset, g->alignment);
        if (ti->offset > avail || ti->n_bytes > avail - ti->offset)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") runs "
                            "past the end of the data section (%" PRIu64 " bytes; file truncated?)",
                            g->what, ti->name, ti->offset, ti->n_bytes, avail);
        ti->data = g->base + g->data_offset + ti->offset;
    }
    if (g->n_tensors < 2) return MOLD_OK;
    uint32_t *order = malloc(g->n_tensors * sizeof *order);
    if (!order) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", g->what);
    for (size_t i = 0; i < g->n_tensors; i++) order[i] = (uint32_t)i;
    qsort_r(order, g->n_tensors, sizeof *order, cmp_by_offset, g->ti);
    mold_status st = MOLD_OK;
    for (size_t k = 1; k < g->n_tensors && !st; k++) {
        const mold_gguf_tensor_info *a = &g->ti[order[k - 1]], *b = &g->ti[order[k]];
        if (a->offset + a->n_bytes > b->offset) /* no overflow: both inside the file */
            st = MOLD_ERR(MOLD_E_FORMAT, "%s: tensors '%s' [%" PRIu64 ", +%" PRIu64 ") and '%s' "
                          "[%" PRIu64 ", ...) overlap", g->what, a->name, a->offset, a->n_bytes,
                          b->name, b->offset);
    }
    free(order);
    return st;
}

static mold_status make_views(mold_gguf *g) {
    g->views = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->views);
    if (!g->views) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", g->what);
    for (size_t i = 0; i < g->n_tensors; i++) {
        const mold_gguf_tensor_info *ti = &g->ti[i];
        mold_tensor *t = &g->views[i];
        t->name = ti->name;
        t->dtype = ti->dtype;
        t->n_dims = ti->n_dims;
        for (int d = 0; d < ti->n_dims; d++) t->shape[d] = ti->ne[ti->n_dims - 1 - d];
        t->data = ti->data;
        t->n_bytes = ti->n_bytes;
    }
    return MOLD_OK;
}

static mold_status parse(mold_gguf *g) {
    cursor c = {g, 0, ""};
    uint64_t n_tensors, n_kv;
    MOLD_TRY(parse_header(&c, &n_tensors, &n_kv));
    MOLD_TRY(parse_kvs(&c, n_kv));
    MOLD_TRY(parse_alignment(g));
    const mold_gguf_value *arch = mold_gguf_find_kv(g, "general.architecture");
    g->arch = arch && arch->type == MOLD_GGUF_STR ? arch->v.str.s : "";
    for (uint64_t i = 0; i < n_tensors; i++) {
        snprintf(c.ctx, sizeof c.ctx, "tensor info %" PRIu64, i);
        MOLD_TRY(grow((void **)&g->ti, &g->cap_ti, g->n_tensors, sizeof *g->ti, g->what));
        memset(&g->ti[g->n_tensors], 0, sizeof *g->ti);
        MOLD_TRY(parse_tensor(&c, &g->ti[g->n_tensors]));
        g->n_tensors++;
    }
    c.ctx[0] = 0;
    MOLD_TRY(build_index(g, g->n_tensors, ti_name, "tensor name", &g->t_hash, &g->t_hash_cap));
    /* the data section starts at the next multiple of the alignment */
    uint64_t pad = (g->alignment - c.off % g->alignment) % g->alignment;
    if (g->n_tensors && pad > left(&c))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: truncated file: data section would start at %" PRIu64
                        ", file has %" PRIu64 " bytes", g->what, c.off + pad, g->size);
    g->data_offset = pad > left(&c) ? g->size : c.off + pad;
    MOLD_TRY(place_tensors(g));
    return make_views(g);
}

static mold_status open_common(mold_gguf *g, mold_gguf **out) {
    mold_status st = parse(g);
    if (st) {
        mold_gguf_close(g);
        return st;
    }
    *out = g;
    return MOLD_OK;
}

mold_status mold_gguf_open_buf(const void *data, size_t size, const char *what, mold_gguf **out) {
    *out = NULL;
    mold_gguf *g = calloc(1, sizeof *g);
    if (!g) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", what);
    g->what = strdup(what ? what : "<buffer>");
    if (!g->what) {
        free(g);
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", what);
    }
    g->base = data;
    g->size = size;
    return open_common(g, out);
}

mold_status mold_gguf_open(const char *path, mold_gguf **out) {
    *out = NULL;
    mold_gguf *g = calloc(1, sizeof *g);
    if (!g) return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    mold_status st = mold_mmap_open(path, &g->map);
    if (st) {
        free(g);
        return st;
    }
    g->what = strdup(path);
    if (!g->what) {
        mold_mmap_close(&g->map);
        free(g);
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    }
    g->base = g->map.data;
    g->size = g->map.size;
    return open_common(g, out);
}

void mold_gguf_close(mold_gguf *g) {
    if (!g) return;
    mold_mmap_close(&g->map);
    free(g->what);
    free(g->kv);
    free(g->ti);
    free(g->views);
    free(g->kv_hash);
    free(g->t_hash);
    arena_free(g->arena);
    free(g);
}

/* ---- accessors -------------------------------------------------------------------------- */

const char *mold_gguf_path(const mold_gguf *g) { return g->what; }
uint32_t mold_gguf_version(const mold_gguf *g) { return g->version; }
uint32_t mold_gguf_alignment(const mold_gguf *g) { return g->alignment; }
uint64_t mold_gguf_data_offset(const mold_gguf *g) { return g->data_offset; }
const char *mold_gguf_architecture(const mold_gguf *g) { return g->arch; }
size_t mold_gguf_kv_count(const mold_gguf *g) { return g->n_kv; }
size_t mold_gguf_tensor_count(const mold_gguf *g) { return g->n_tensors; }

const char *mold_gguf_kv_key(const mold_gguf *g, size_t i) {
    return i < g->n_kv ? g->kv[i].key : NULL;
}

const mold_gguf_value *mold_gguf_kv_value(const mold_gguf *g, size_t i) {
    return i < g->n_kv ? &g->kv[i].val : NULL;
}

const mold_gguf_value *mold_gguf_find_kv(const mold_gguf *g, const char *key) {
    long i = lookup(g, g->kv_hash, g->kv_hash_cap, kv_name, key);
    return i < 0 ? NULL : &g->kv[i].val;
}

const mold_gguf_tensor_info *mold_gguf_tensor_info_at(const mold_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->ti[i] : NULL;
}

const mold_tensor *mold_gguf_tensor_at(const mold_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->views[i] : NULL;
}

const mold_tensor *mold_gguf_find(const mold_gguf *g, const char *name) {
    long i = lookup(g, g->t_hash, g->t_hash_cap, ti_name, name);
    return i < 0 ? NULL : &g->views[i];
}

int64_t mold_gguf_array_int(const mold_gguf_value *v, uint64_t i) {
    MOLD_ASSERT(v->type == MOLD_GGUF_ARR && is_int_type(v->elem_type) && i < v->n);
    mold_gguf_value e;
    decode_scalar(v->elem_type, (const uint8_t *)v->v.raw + i * SCALAR_BYTES[v->elem_type], &e);
    return is_signed_type(v->elem_type) ? e.v.i : (int64_t)e.v.u;
}

double mold_gguf_array_float(const mold_gguf_value *v, uint64_t i) {
    MOLD_ASSERT(v->type == MOLD_GGUF_ARR && i < v->n &&
                (is_int_type(v->elem_type) || is_float_type(v->elem_type)));
    mold_gguf_value e;
    decode_scalar(v->elem_type, (const uint8_t *)v->v.raw + i * SCALAR_BYTES[v->elem_type], &e);
    if (is_float_type(v->elem_type)) return e.v.f;
    return is_signed_type(v->elem_type) ? (double)e.v.i : (double)e.v.u;
}

/* ---- typed getters ------------------------------------------------------------------------ */

/* Finds key; *v NULL (and MOLD_OK) when absent and not required. */
static mold_status find_req(const mold_gguf *g, const char *key, bool required,
                            const mold_gguf_value **v) {
    *v = mold_gguf_find_kv(g, key);
    if (!*v && required)
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: metadata key '%s' not found", g->what, key);
    return MOLD_OK;
}

static mold_status wrong_type(const mold_gguf *g, const char *key, const char *expected,
                              const mold_gguf_value *v) {
    if (v->type == MOLD_GGUF_ARR)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: metadata '%s': expected %s, got array of %s", g->what,
                        key, expected, mold_gguf_type_name(v->elem_type));
    return MOLD_ERR(MOLD_E_FORMAT, "%s: metadata '%s': expected %s, got %s", g->what, key,
                    expected, mold_gguf_type_name(v->type));
}

mold_status mold_gguf_get_int(const mold_gguf *g, const char *key, bool required, int64_t *out) {
    const mold_gguf_value *v;
    MOLD_TRY(find_req(g, key, required, &v));
    if (!v) return MOLD_OK;
    if (!is_int_type(v->type)) return wrong_type(g, key, "integer", v);
    if (is_signed_type(v->type)) {
        *out = v->v.i;
    } else {
        if (v->v.u > INT64_MAX)
            return MOLD_ERR(MOLD_E_RANGE, "%s: metadata '%s': value %" PRIu64 " exceeds INT64_MAX",
                            g->what, key, v->v.u);
        *out = (int64_t)v->v.u;
    }
    return MOLD_OK;
}

mold_status mold_gguf_get_float(const mold_gguf *g, const char *key, bool required, double *out) {
    const mold_gguf_value *v;
    MOLD_TRY(find_req(g, key, required, &v));
    if (!v) return MOLD_OK;
    if (!is_float_type(v->type)) return wrong_type(g, key, "f32 or f64", v);
    *out = v->v.f;
    return MOLD_OK;
}

mold_status mold_gguf_get_bool(const mold_gguf *g, const char *key, bool required, bool *out) {
    const mold_gguf_value *v;
    MOLD_TRY(find_req(g, key, required, &v));
    if (!v) return MOLD_OK;
    if (v->type != MOLD_GGUF_BOOL) return wrong_type(g, key, "bool", v);
    *out = v->v.b;
    return MOLD_OK;
}

mold_status mold_gguf_get_str(const mold_gguf *g, const char *key, bool required,
                              const char **out) {
    const mold_gguf_value *v;
    MOLD_TRY(find_req(g, key, required, &v));
    if (!v) return MOLD_OK;
    if (v->type != MOLD_GGUF_STR) return wrong_type(g, key, "string", v);
    *out = v->v.str.s;
    return MOLD_OK;
}

mold_status mold_gguf_get_int_array(const mold_gguf *g, const char *key, bool required,
                                    int64_t *out, size_t cap, size_t *n_read) {
    const mold_gguf_value *v;
    MOLD_TRY(find_req(g, key, required, &v));
    if (!v) return MOLD_OK;
    if (v->type != MOLD_GGUF_ARR || !is_int_type(v->elem_type))
        return wrong_type(g, key, "array of integers", v);
    if (v->n > cap)
        return MOLD_ERR(MOLD_E_RANGE, "%s: metadata '%s': expected at most %zu elements, got %"
                        PRIu64, g->what, key, cap, v->n);
    for (uint64_t i = 0; i < v->n; i++) {
        if (v->elem_type == MOLD_GGUF_U64) {
            uint64_t u;
            memcpy(&u, (const uint8_t *)v->v.raw + 8 * i, 8);
            if (u > INT64_MAX)
                return MOLD_ERR(MOLD_E_RANGE, "%s: metadata '%s'[%" PRIu64 "]: %" PRIu64
                                " exceeds INT64_MAX", g->what, key, i, u);
        }
        out[i] = mold_gguf_array_int(v, i);
    }
    *n_read = (size_t)v->n;
    return MOLD_OK;
}

mold_status mold_gguf_get_str_array(const mold_gguf *g, const char *key, bool required,
                                    const mold_gguf_str **out, uint64_t *n) {
    const mold_gguf_value *v;
    MOLD_TRY(find_req(g, key, required, &v));
    if (!v) return MOLD_OK;
    if (v->type != MOLD_GGUF_ARR || v->elem_type != MOLD_GGUF_STR)
        return wrong_type(g, key, "array of strings", v);
    *out = v->v.strs;
    *n = v->n;
    return MOLD_OK;
}

/* ---- tensor source: diffusers / transformers names -> GGUF names ------------------------ */

/* transformers text-model suffixes (after "model.layers.N.") -> llama.cpp */
static const char *const LLM_LAYER_MAP[][2] = {
    {"self_attn.q_proj.", "attn_q."},          {"self_attn.k_proj.", "attn_k."},
    {"self_attn.v_proj.", "attn_v."},          {"self_attn.o_proj.", "attn_output."},
    {"input_layernorm.", "attn_norm."},        {"post_attention_layernorm.", "ffn_norm."},
    {"mlp.gate_proj.", "ffn_gate."},           {"mlp.up_proj.", "ffn_up."},
    {"mlp.down_proj.", "ffn_down."},
};
static const char *const LLM_TOP_MAP[][2] = {
    {"model.embed_tokens.", "token_embd."},
    {"model.norm.", "output_norm."},
    {"lm_head.", "output."},
};

static bool starts_with(const char *s, const char *prefix) {
    return !strncmp(s, prefix, strlen(prefix));
}

bool mold_gguf_llm_name(const char *hf_name, char *buf, size_t cap) {
    char norm[512];
    /* transformers >= 4.52 nests the text model under model.language_model. */
    if (starts_with(hf_name, "model.language_model.")) {
        if ((size_t)snprintf(norm, sizeof norm, "model.%s", hf_name + 21) >= sizeof norm)
            return false;
        hf_name = norm;
    }
    for (size_t i = 0; i < sizeof LLM_TOP_MAP / sizeof LLM_TOP_MAP[0]; i++) {
        if (starts_with(hf_name, LLM_TOP_MAP[i][0]))
            return (size_t)snprintf(buf, cap, "%s%s", LLM_TOP_MAP[i][1],
                                    hf_name + strlen(LLM_TOP_MAP[i][0])) < cap;
    }
    if (!starts_with(hf_name, "model.layers.")) return false;
    const char *p = hf_name + 13;
    char *end;
    unsigned long layer = strtoul(p, &end, 10);
    if (end == p || *end != '.' || layer > 100000) return false;
    for (size_t i = 0; i < sizeof LLM_LAYER_MAP / sizeof LLM_LAYER_MAP[0]; i++) {
        if (starts_with(end + 1, LLM_LAYER_MAP[i][0]))
            return (size_t)snprintf(buf, cap, "blk.%lu.%s%s", layer, LLM_LAYER_MAP[i][1],
                                    end + 1 + strlen(LLM_LAYER_MAP[i][0])) < cap;
    }
    return false;
}

static const mold_tensor *source_find(void *ud, const char *name) {
    const mold_gguf *g = ud;
    const mold_tensor *t = mold_gguf_find(g, name);
    if (t) return t;
    static const char *const prefixes[] = {"model.diffusion_model.", "model."};
    char buf[512];
    for (size_t i = 0; i < 2; i++) {
        if ((size_t)snprintf(buf, sizeof buf, "%s%s", prefixes[i], name) < sizeof buf &&
            (t = mold_gguf_find(g, buf)))
            return t;
    }
    if (mold_gguf_llm_name(name, buf, sizeof buf)) return mold_gguf_find(g, buf);
    return NULL;
}

mold_tensor_source mold_source_gguf(const mold_gguf *g) {
    mold_tensor_source s = {source_find, (void *)g, g->what};
    return s;
}
