/*
 * safetensors.c — reader and atomic writer for safetensors checkpoints.
 *
 * Purpose: turn one file, a `*.safetensors.index.json` shard set, or a
 * directory holding one of those into a flat, validated list of mold_tensor
 * views into read-only mappings, with O(1) lookup by name.
 *
 * File layout (reference: huggingface/safetensors, docs "Format"):
 *
 *   | offset | size | content                                              |
 *   |--------|------|------------------------------------------------------|
 *   | 0      | 8    | N, u64 little-endian                                 |
 *   | 8      | N    | JSON object (may be padded with trailing spaces)     |
 *   | 8 + N  | rest | data area; tensor offsets are relative to its start  |
 *
 * Every file is treated as hostile. Checks, in order, each failing with a
 * status and a message naming the file (and tensor / field):
 *   1. the file holds at least the 8-byte length;
 *   2. N <= file size - 8 and N <= MAX_HEADER_BYTES (no huge allocations);
 *   3. the header is valid JSON (duplicate keys rejected), and an object;
 *   4. every entry but "__metadata__" is an object with a known dtype string,
 *      a shape of at most MOLD_MAX_DIMS non-negative integers, and
 *      data_offsets [begin, end] of non-negative integers with begin <= end;
 *   5. product(shape) x element size computed with overflow checks equals
 *      end - begin (so huge dims cannot wrap around);
 *   6. end <= size of the data area;
 *   7. sorted by (begin, end), each tensor starts at or after the end of the
 *      previous one: no two tensors share a byte;
 *   8. "__metadata__", when present, is an object of strings;
 *   9. names are unique across all shards of a set;
 *  10. for index sets: shard names are plain file names (no '/', no ".."),
 *      every shard exists, and every tensor of the weight_map is present in the
 *      shard the index names.
 *
 * Ownership: a mold_safetensors owns its mappings, the parsed headers (tensor
 * names are borrowed from them) and the tensor array. Views returned by the
 * accessors stay valid until mold_safetensors_close(). Nothing here copies
 * tensor data; data pointers are as aligned as the file makes them (writers,
 * ours included, pad the header to 8 bytes).
 *
 * Deliberately absent: in-place modification, lazy header parsing, and
 * dtypes mold never computes with (U16/U32/U64, F8_*): those are refused with
 * MOLD_E_UNSUPPORTED naming the tensor.
 */
#include "safetensors.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"  // defines: mold_mmap, mold_atomic_*, mold_path_*
#include "../base/json.h" // defines: jansson json_t (headers are parsed with jansson)
#include "../base/log.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define MAX_HEADER_BYTES (100u * 1000u * 1000u)

/* ---- internal types ---- */

typedef struct shard {
    char *path;          /* owned; file path (or `what` for in-memory images) */
    mold_mmap map;       /* zeroed for in-memory images */
    const uint8_t *base; /* start of the file image */
    uint64_t size;       /* bytes of the file image */
    json_t *header;      /* owned reference; tensor names are borrowed keys */
    json_t *metadata;    /* borrowed from header; NULL when absent */
} shard;

struct mold_safetensors {
    char *path;             /* owned; what was opened */
    shard *shards;          /* n_shards entries */
    size_t n_shards;
    mold_tensor *tensors;   /* n entries, by shard then data offset */
    size_t *tensor_shard;   /* shard index of each tensor */
    size_t n, cap;
    size_t *table;          /* open addressing: tensor index + 1, 0 = empty */
    size_t table_cap;       /* power of two, >= 2 n */
};

/* ---- dtype names ---- */

static const struct {
    const char *name;
    mold_dtype dtype;
} DTYPES[] = {
    {"F64", MOLD_F64}, {"F32", MOLD_F32}, {"F16", MOLD_F16}, {"BF16", MOLD_BF16},
    {"I64", MOLD_I64}, {"I32", MOLD_I32}, {"I16", MOLD_I16}, {"I8", MOLD_I8},
    {"U8", MOLD_U8},   {"BOOL", MOLD_BOOL},
};
#define N_DTYPES (sizeof(DTYPES) / sizeof(DTYPES[0]))

/* Safetensors dtype string -> mold dtype; MOLD_DTYPE_INVALID when unknown. */
static mold_dtype dtype_from_st(const char *s) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (!strcmp(s, DTYPES[i].name))
            return DTYPES[i].dtype;
    return MOLD_DTYPE_INVALID;
}

static const char *dtype_to_st(mold_dtype t) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dtype == t)
            return DTYPES[i].name;
    return NULL;
}

static uint64_t elem_bytes(mold_dtype t) {
    const mold_dtype_info *info = mold_dtype_get(t);
    MOLD_ASSERT(info && info->block_elems == 1);
    return info->block_bytes;
}

/* ---- hash table ---- */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Builds the lookup table over all tensors; fails on a duplicate name, naming
 * both files that hold it. */
static mold_status build_table(mold_safetensors *st) {
    size_t cap = 16;
    while (cap < 2 * st->n)
        cap *= 2;
    st->table = calloc(cap, sizeof(size_t));
    if (!st->table)
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory for %zu names", st->path, st->n);
    st->table_cap = cap;
    for (size_t i = 0; i < st->n; i++) {
        const char *name = st->tensors[i].name;
        size_t slot = (size_t)hash_name(name) & (cap - 1);
        while (st->table[slot]) {
            size_t j = st->table[slot] - 1;
            if (!strcmp(st->tensors[j].name, name))
                return MOLD_ERR(MOLD_E_FORMAT, "%s: duplicate tensor '%s' (in %s and %s)",
                                st->path, name, st->shards[st->tensor_shard[j]].path,
                                st->shards[st->tensor_shard[i]].path);
            slot = (slot + 1) & (cap - 1);
        }
        st->table[slot] = i + 1;
    }
    return MOLD_OK;
}

static size_t lookup(const mold_safetensors *st, const char *name) {
    if (!st->table || !name)
        return SIZE_MAX;
    size_t slot = (size_t)hash_name(name) & (st->table_cap - 1);
    while (st->table[slot]) {
        size_t j = st->table[slot] - 1;
        if (!strcmp(st->tensors[j].name, name))
            return j;
        slot = (slot + 1) & (st->table_cap - 1);
    }
    return SIZE_MAX;
}

/* ---- header parsing ---- */

static mold_status push_tensor(mold_safetensors *st, const mold_tensor *t, size_t shard_i) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        mold_tensor *nt = realloc(st->tensors, cap * sizeof(*nt));
        if (!nt)
            return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory for %zu tensors", st->path, cap);
        st->tensors = nt;
        size_t *ns = realloc(st->tensor_shard, cap * sizeof(*ns));
        if (!ns)
            return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory for %zu tensors", st->path, cap);
        st->tensor_shard = ns;
        st->cap = cap;
    }
    st->tensors[st->n] = *t;
    st->tensor_shard[st->n] = shard_i;
    st->n++;
    return MOLD_OK;
}

/* Reads a JSON integer >= 0 (shape dims, offsets). */
static mold_status get_u64(const json_t *v, const char *file, const char *name,
                           const char *field, uint64_t *out) {
    if (!json_is_integer(v))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': %s: expected integer, got %s", file,
                        name, field, v && json_is_real(v) ? "real" : "non-number");
    json_int_t x = json_integer_value(v);
    if (x < 0)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': %s: expected >= 0, got %lld", file,
                        name, field, (long long)x);
    *out = (uint64_t)x;
    return MOLD_OK;
}

/* Parses one tensor entry into *t (data offsets still relative) and checks
 * dtype, shape, and the byte span against product(shape) x element size. */
static mold_status parse_entry(const char *file, const char *name, const json_t *e,
                               uint64_t data_size, mold_tensor *t, uint64_t *begin) {
    if (!json_is_object(e))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': expected object", file, name);
    const json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
                 *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': field 'dtype': expected string", file,
                        name);
    mold_dtype dt = dtype_from_st(json_string_value(jd));
    if (dt == MOLD_DTYPE_INVALID)
        return MOLD_ERR(MOLD_E_UNSUPPORTED,
                        "%s: tensor '%s': unknown dtype '%s' (expected one of F64 F32 F16 BF16 "
                        "I64 I32 I16 I8 U8 BOOL)", file, name, json_string_value(jd));
    if (!json_is_array(js))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': field 'shape': expected array", file,
                        name);
    size_t n_dims = json_array_size(js);
    if (n_dims > MOLD_MAX_DIMS)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: tensor '%s': expected at most %d dims, got %zu",
                        file, name, MOLD_MAX_DIMS, n_dims);
    memset(t, 0, sizeof(*t));
    t->name = name;
    t->dtype = dt;
    t->n_dims = (int)n_dims;
    uint64_t n_elems = 1;
    for (size_t d = 0; d < n_dims; d++) {
        uint64_t dim;
        MOLD_TRY(get_u64(json_array_get(js, d), file, name, "shape", &dim));
        if (dim > (uint64_t)INT64_MAX || __builtin_mul_overflow(n_elems, dim, &n_elems) ||
            n_elems > (uint64_t)INT64_MAX)
            return MOLD_ERR(MOLD_E_RANGE, "%s: tensor '%s': shape overflows 64 bits", file, name);
        t->shape[d] = (int64_t)dim;
    }
    uint64_t n_bytes;
    if (__builtin_mul_overflow(n_elems, elem_bytes(dt), &n_bytes))
        return MOLD_ERR(MOLD_E_RANGE, "%s: tensor '%s': byte size overflows 64 bits", file, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return MOLD_ERR(MOLD_E_FORMAT,
                        "%s: tensor '%s': field 'data_offsets': expected [begin, end]", file, name);
    uint64_t b, en;
    MOLD_TRY(get_u64(json_array_get(jo, 0), file, name, "data_offsets", &b));
    MOLD_TRY(get_u64(json_array_get(jo, 1), file, name, "data_offsets", &en));
    if (b > en)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': data_offsets: begin %llu > end %llu",
                        file, name, (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return MOLD_ERR(MOLD_E_RANGE,
                        "%s: tensor '%s': data_offsets end %llu past the data area (%llu bytes)",
                        file, name, (unsigned long long)en, (unsigned long long)data_size);
    if (en - b != n_bytes)
        return MOLD_ERR(MOLD_E_FORMAT,
                        "%s: tensor '%s': shape x dtype size: expected %llu bytes, got %llu "
                        "(data_offsets [%llu, %llu])", file, name, (unsigned long long)n_bytes,
                        (unsigned long long)(en - b), (unsigned long long)b,
                        (unsigned long long)en);
    t->n_bytes = n_bytes;
    *begin = b;
    return MOLD_OK;
}

static mold_status check_metadata(const char *file, const json_t *md) {
    if (!json_is_object(md))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '__metadata__': expected object", file);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)md, k, v) {
        if (!json_is_string(v))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: __metadata__ field '%s': expected string", file,
                            k);
    }
    return MOLD_OK;
}

/* Orders a shard's tensors by (begin, end) of their spans. The data pointer
 * still holds the relative begin offset while sorting. */
static int cmp_span(const void *a, const void *b) {
    const mold_tensor *x = a, *y = b;
    uintptr_t bx = (uintptr_t)x->data, by = (uintptr_t)y->data;
    if (bx != by)
        return bx < by ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

/* Parses shard `si` (already mapped) and appends its tensors to st. */
static mold_status parse_shard(mold_safetensors *st, size_t si) {
    shard *sh = &st->shards[si];
    const char *file = sh->path;
    if (sh->size < 8)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: file too small: expected at least 8 bytes, got %llu",
                        file, (unsigned long long)sh->size);
    uint64_t n_header = 0;
    for (int i = 7; i >= 0; i--)
        n_header = (n_header << 8) | sh->base[i];
    if (n_header > sh->size - 8)
        return MOLD_ERR(MOLD_E_FORMAT,
                        "%s: header length %llu past the end of the file (%llu bytes) - "
                        "truncated or not a safetensors file", file,
                        (unsigned long long)n_header, (unsigned long long)sh->size);
    if (n_header > MAX_HEADER_BYTES)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                        file, (unsigned long long)n_header, MAX_HEADER_BYTES);
    /* The wrapper parses with JSON_REJECT_DUPLICATES: two entries with one
     * name are an error, not "last one wins". */
    MOLD_TRY(mold_json_load_buf((const char *)sh->base + 8, (size_t)n_header, file,
                                &sh->header));
    if (!json_is_object(sh->header))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: header: expected a JSON object", file);

    uint64_t data_size = sh->size - 8 - n_header;
    const uint8_t *data = sh->base + 8 + n_header;
    size_t first = st->n;
    const char *name;
    json_t *e;
    json_object_foreach(sh->header, name, e) {
        if (!strcmp(name, "__metadata__")) {
            MOLD_TRY(check_metadata(file, e));
            sh->metadata = e;
            continue;
        }
        mold_tensor t;
        uint64_t begin = 0;
        MOLD_TRY(parse_entry(file, name, e, data_size, &t, &begin));
        t.data = (const void *)(uintptr_t)begin; /* made absolute below */
        MOLD_TRY(push_tensor(st, &t, si));
    }

    mold_tensor *ts = st->tensors + first;
    size_t n = st->n - first;
    qsort(ts, n, sizeof(*ts), cmp_span);
    for (size_t i = 0; i < n; i++) {
        uint64_t b = (uint64_t)(uintptr_t)ts[i].data;
        if (i > 0) {
            uint64_t prev_end = (uint64_t)(uintptr_t)ts[i - 1].data + ts[i - 1].n_bytes;
            if (b < prev_end)
                return MOLD_ERR(MOLD_E_FORMAT,
                                "%s: tensors '%s' and '%s' overlap (byte %llu < previous end "
                                "%llu)", file, ts[i - 1].name, ts[i].name,
                                (unsigned long long)b, (unsigned long long)prev_end);
        }
    }
    /* Second pass: the overlap check needs every begin still relative. */
    for (size_t i = 0; i < n; i++)
        ts[i].data = data + (uintptr_t)ts[i].data;
    return MOLD_OK;
}

/* ---- opening ---- */

static mold_status alloc_set(const char *path, size_t n_shards, mold_safetensors **out) {
    mold_safetensors *st = calloc(1, sizeof(*st));
    if (st)
        st->path = strdup(path);
    if (st && st->path)
        st->shards = calloc(n_shards ? n_shards : 1, sizeof(shard));
    if (!st || !st->path || !st->shards) {
        mold_safetensors_close(st);
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    }
    st->n_shards = n_shards;
    *out = st;
    return MOLD_OK;
}

/* Maps `path` into shard slot si and parses it. */
static mold_status open_shard_file(mold_safetensors *st, size_t si, const char *path) {
    shard *sh = &st->shards[si];
    sh->path = strdup(path);
    if (!sh->path)
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    MOLD_TRY(mold_mmap_open(path, &sh->map));
    sh->base = sh->map.data;
    sh->size = sh->map.size;
    return parse_shard(st, si);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Directory part of `path` (malloc'd; "." when there is none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Collects the distinct shard names of a weight_map, in first-seen order
 * (borrowed from the index document). */
static mold_status index_shard_names(const char *path, json_t *wm, const char ***names,
                                     size_t *n_names) {
    size_t cap = json_object_size(wm) + 1, n = 0;
    const char **v = calloc(cap, sizeof(*v));
    if (!v)
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    const char *tname;
    json_t *f;
    json_object_foreach(wm, tname, f) {
        if (!json_is_string(f)) {
            free(v);
            return MOLD_ERR(MOLD_E_FORMAT, "%s: weight_map['%s']: expected string", path, tname);
        }
        const char *s = json_string_value(f);
        if (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
            free(v);
            return MOLD_ERR(MOLD_E_FORMAT,
                            "%s: weight_map['%s']: expected a file name next to the index, got "
                            "'%s'", path, tname, s);
        }
        size_t k = 0;
        while (k < n && strcmp(v[k], s))
            k++;
        if (k == n)
            v[n++] = s;
    }
    *names = v;
    *n_names = n;
    return MOLD_OK;
}

/* Every tensor the index lists must be in the shard it names. */
static mold_status check_index_coverage(const mold_safetensors *st, const char *path,
                                        json_t *wm) {
    const char *tname;
    json_t *f;
    json_object_foreach(wm, tname, f) {
        size_t j = lookup(st, tname);
        const char *want = json_string_value(f);
        const char *have = j == SIZE_MAX ? NULL : st->shards[st->tensor_shard[j]].path;
        const char *base = have && strrchr(have, '/') ? strrchr(have, '/') + 1 : have;
        if (!base || strcmp(base, want))
            return MOLD_ERR(MOLD_E_NOTFOUND,
                            "%s: tensor '%s' is listed in shard '%s' but %s", path, tname, want,
                            have ? "found in another shard" : "absent from it");
    }
    return MOLD_OK;
}

static mold_status open_index(const char *path, mold_safetensors **out) {
    json_t *doc = NULL;
    MOLD_TRY(mold_json_load_file(path, &doc));
    mold_status s = MOLD_OK;
    json_t *wm = NULL;
    const char **names = NULL;
    size_t n_names = 0;
    char *dir = NULL;
    mold_safetensors *st = NULL;
    if (!json_is_object(doc)) {
        s = MOLD_ERR(MOLD_E_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    if ((s = mold_json_get_child(doc, "weight_map", path, true, JSON_OBJECT, &wm)))
        goto done;
    if ((s = index_shard_names(path, wm, &names, &n_names)))
        goto done;
    if (!(dir = dir_of(path))) {
        s = MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((s = alloc_set(path, n_names, &st)))
        goto done;
    for (size_t i = 0; i < n_names && !s; i++) {
        char *p = mold_path_join(dir, names[i]);
        if (!p)
            s = MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
        else if (!mold_path_exists(p))
            s = MOLD_ERR(MOLD_E_NOTFOUND, "%s: shard '%s' not found (expected at %s)", path,
                         names[i], p);
        else
            s = open_shard_file(st, i, p);
        free(p);
    }
    if (!s)
        s = build_table(st);
    if (!s)
        s = check_index_coverage(st, path, wm);
done:
    if (s) {
        mold_safetensors_close(st);
        st = NULL;
    }
    free(names);
    free(dir);
    json_decref(doc);
    *out = st;
    return s;
}

static mold_status open_single(const char *path, mold_safetensors **out) {
    mold_safetensors *st = NULL;
    MOLD_TRY(alloc_set(path, 1, &st));
    mold_status s = open_shard_file(st, 0, path);
    if (!s)
        s = build_table(st);
    if (s) {
        mold_safetensors_close(st);
        return s;
    }
    *out = st;
    return MOLD_OK;
}

/* A directory must hold exactly one index, or else exactly one .safetensors. */
static mold_status open_dir(const char *path, mold_safetensors **out) {
    DIR *d = opendir(path);
    if (!d)
        return MOLD_ERR(MOLD_E_IO, "%s: cannot open directory", path);
    char *index = NULL, *single = NULL;
    int n_index = 0, n_single = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (ends_with(de->d_name, ".safetensors.index.json")) {
            if (!n_index++)
                index = strdup(de->d_name);
        } else if (ends_with(de->d_name, ".safetensors")) {
            if (!n_single++)
                single = strdup(de->d_name);
        }
    }
    closedir(d);
    mold_status s;
    if (n_index > 1)
        s = MOLD_ERR(MOLD_E_FORMAT, "%s: expected one *.safetensors.index.json, found %d", path,
                     n_index);
    else if (n_index == 0 && n_single != 1)
        s = MOLD_ERR(n_single ? MOLD_E_FORMAT : MOLD_E_NOTFOUND,
                     "%s: expected one .safetensors file or an index, found %d files", path,
                     n_single);
    else {
        char *p = mold_path_join(path, n_index ? index : single);
        if (!p || (n_index && !index) || (!n_index && !single))
            s = MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
        else
            s = n_index ? open_index(p, out) : open_single(p, out);
        free(p);
    }
    free(index);
    free(single);
    return s;
}

mold_status mold_safetensors_open(const char *path, mold_safetensors **out) {
    MOLD_ASSERT(path && out);
    *out = NULL;
    if (mold_path_is_dir(path))
        return open_dir(path, out);
    if (!mold_path_exists(path))
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: no such file or directory", path);
    if (ends_with(path, ".json"))
        return open_index(path, out);
    return open_single(path, out);
}

mold_status mold_safetensors_open_buf(const void *data, size_t size, const char *what,
                                      mold_safetensors **out) {
    MOLD_ASSERT(out && (data || !size));
    *out = NULL;
    if (!what)
        what = "<buffer>";
    mold_safetensors *st = NULL;
    MOLD_TRY(alloc_set(what, 1, &st));
    shard *sh = &st->shards[0];
    sh->path = strdup(what);
    sh->base = data;
    sh->size = size;
    mold_status s = sh->path ? parse_shard(st, 0) : MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    if (!s)
        s = build_table(st);
    if (s) {
        mold_safetensors_close(st);
        return s;
    }
    *out = st;
    return MOLD_OK;
}

void mold_safetensors_close(mold_safetensors *st) {
    if (!st)
        return;
    for (size_t i = 0; st->shards && i < st->n_shards; i++) {
        mold_mmap_close(&st->shards[i].map);
        json_decref(st->shards[i].header);
        free(st->shards[i].path);
    }
    free(st->shards);
    free(st->tensors);
    free(st->tensor_shard);
    free(st->table);
    free(st->path);
    free(st);
}

/* ---- accessors ---- */

size_t mold_safetensors_count(const mold_safetensors *st) { return st ? st->n : 0; }

const mold_tensor *mold_safetensors_at(const mold_safetensors *st, size_t i) {
    MOLD_ASSERT(st && i < st->n);
    return &st->tensors[i];
}

const mold_tensor *mold_safetensors_find(const mold_safetensors *st, const char *name) {
    size_t j = st ? lookup(st, name) : SIZE_MAX;
    return j == SIZE_MAX ? NULL : &st->tensors[j];
}

mold_status mold_safetensors_get(const mold_safetensors *st, const char *name,
                                 const mold_tensor **out) {
    MOLD_ASSERT(st && out);
    *out = mold_safetensors_find(st, name);
    if (!*out)
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: tensor '%s' not found", st->path,
                        name ? name : "(null)");
    return MOLD_OK;
}

mold_status mold_safetensors_get_shaped(const mold_safetensors *st, const char *name,
                                        int n_dims, const int64_t *shape,
                                        const mold_tensor **out) {
    MOLD_TRY(mold_safetensors_get(st, name, out));
    if (!mold_tensor_has_shape(*out, n_dims, shape)) {
        char want[128], got[128];
        mold_shape_str(shape, n_dims, want, sizeof(want));
        mold_shape_str((*out)->shape, (*out)->n_dims, got, sizeof(got));
        *out = NULL;
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tensor '%s': expected shape %s, got %s", st->path,
                        name, want, got);
    }
    return MOLD_OK;
}

size_t mold_safetensors_n_shards(const mold_safetensors *st) { return st ? st->n_shards : 0; }

const char *mold_safetensors_path(const mold_safetensors *st) { return st ? st->path : NULL; }

const char *mold_safetensors_tensor_file(const mold_safetensors *st, size_t i) {
    MOLD_ASSERT(st && i < st->n);
    return st->shards[st->tensor_shard[i]].path;
}

/* Searches the shards' __metadata__ in order; the first hit wins. */
const char *mold_safetensors_metadata(const mold_safetensors *st, const char *key) {
    for (size_t i = 0; st && key && i < st->n_shards; i++) {
        const json_t *v = st->shards[i].metadata ? json_object_get(st->shards[i].metadata, key)
                                                 : NULL;
        if (v)
            return json_string_value(v);
    }
    return NULL;
}

/* ---- writer ---- */

/* Builds the header object for `tensors` laid out back to back in order. */
static mold_status build_header(const char *path, const mold_tensor *tensors, size_t n,
                                const char *const *metadata_kv, json_t *h) {
    if (metadata_kv && metadata_kv[0]) {
        json_t *md = json_object();
        if (!md || json_object_set_new(h, "__metadata__", md))
            return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
        for (size_t i = 0; metadata_kv[i]; i += 2) {
            if (!metadata_kv[i + 1])
                return MOLD_ERR(MOLD_E_INVALID, "%s: metadata key '%s' has no value", path,
                                metadata_kv[i]);
            if (json_object_set_new(md, metadata_kv[i], json_string(metadata_kv[i + 1])))
                return MOLD_ERR(MOLD_E_INVALID, "%s: metadata '%s': invalid UTF-8", path,
                                metadata_kv[i]);
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const mold_tensor *t = &tensors[i];
        const char *dt = dtype_to_st(t->dtype);
        if (!t->name || !*t->name || !strcmp(t->name, "__metadata__"))
            return MOLD_ERR(MOLD_E_INVALID, "%s: tensor %zu: expected a name", path, i);
        if (!dt)
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: tensor '%s': dtype %s has no safetensors "
                            "name", path, t->name, mold_dtype_name(t->dtype));
        if (t->n_dims < 0 || t->n_dims > MOLD_MAX_DIMS)
            return MOLD_ERR(MOLD_E_INVALID, "%s: tensor '%s': bad n_dims %d", path, t->name,
                            t->n_dims);
        if (json_object_get(h, t->name))
            return MOLD_ERR(MOLD_E_INVALID, "%s: duplicate tensor '%s'", path, t->name);
        uint64_t want = (uint64_t)mold_tensor_nelems(t) * elem_bytes(t->dtype);
        if (t->n_bytes != want || (want && !t->data))
            return MOLD_ERR(MOLD_E_INVALID, "%s: tensor '%s': expected %llu bytes, got %llu",
                            path, t->name, (unsigned long long)want,
                            (unsigned long long)t->n_bytes);
        json_t *shape = json_array(), *e = json_object();
        for (int d = 0; shape && d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *offs = json_pack("[II]", (json_int_t)off, (json_int_t)(off + t->n_bytes));
        if (!e || !shape || !offs || json_object_set_new(e, "dtype", json_string(dt)) ||
            json_object_set_new(e, "shape", shape) ||
            json_object_set_new(e, "data_offsets", offs) || json_object_set_new(h, t->name, e))
            return MOLD_ERR(MOLD_E_NOMEM, "%s: cannot build header for '%s'", path, t->name);
        off += t->n_bytes;
    }
    return MOLD_OK;
}

mold_status mold_safetensors_write(const char *path, const mold_tensor *tensors, size_t n,
                                   const char *const *metadata_kv) {
    MOLD_ASSERT(path && (tensors || !n));
    json_t *h = json_object();
    if (!h)
        return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", path);
    mold_status s = build_header(path, tensors, n, metadata_kv, h);
    char *js = s ? NULL : json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (s)
        return s;
    if (!js)
        return MOLD_ERR(MOLD_E_NOMEM, "%s: cannot serialize header", path);
    /* Pad with spaces so the data area starts 8-byte aligned. */
    size_t len = strlen(js), padded = (len + 7) & ~(size_t)7;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    char spaces[8];
    memset(spaces, ' ', sizeof(spaces));
    mold_atomic_file *f = NULL;
    s = mold_atomic_open(path, &f);
    if (!s)
        s = mold_atomic_write(f, prefix, 8);
    if (!s)
        s = mold_atomic_write(f, js, len);
    if (!s)
        s = mold_atomic_write(f, spaces, padded - len);
    for (size_t i = 0; i < n && !s; i++)
        if (tensors[i].n_bytes)
            s = mold_atomic_write(f, tensors[i].data, tensors[i].n_bytes);
    free(js);
    if (!s)
        return mold_atomic_commit(f);
    mold_atomic_abort(f);
    return s;
}
