/*
 * gguf.h — GGUF v2/v3 files: a validating reader over mmap, and a writer.
 *
 * File layout (little-endian; ggml's gguf.h / docs/gguf.md):
 *   "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
 *   n_kv x  { string key | u32 type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (u32, power of two, default 32)
 *   data section: each tensor at data_start + offset (offset % alignment == 0)
 * A string is u64 length + bytes (no NUL); an array is u32 element type +
 * u64 count + elements (arrays of arrays are allowed).
 *
 * The reader treats the file as hostile: every count, length, dimension and
 * offset is checked with overflow-safe arithmetic against the file size and
 * the other entries (see gguf.c's header for the full list), duplicates are
 * rejected, and any failure releases everything and names the file, the
 * entry and "expected X, got Y". Tensor data stays mapped (never copied);
 * keys and strings are copied NUL-terminated. Views are valid until
 * mold_gguf_close().
 *
 * Dims: GGUF/ggml list ne[] innermost first (ne[0] = contiguous = Linear
 * in_features). mold_gguf_tensor_info keeps that order; the mold_tensor
 * views (mold_gguf_find, mold_gguf_tensor_at, the tensor source) are in
 * PyTorch order, i.e. reversed.
 */
#ifndef MOLD_FORMATS_GGUF_H
#define MOLD_FORMATS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/dtype.h"
#include "../base/status.h"
#include "../base/tensor.h"
#include "tensor_source.h"

#define MOLD_GGUF_DEFAULT_ALIGNMENT 32
#define MOLD_GGUF_MAX_DIMS 4       /* ggml's GGML_MAX_DIMS */
#define MOLD_GGUF_MAX_ARRAY_DEPTH 8 /* nesting limit for arrays of arrays */

typedef struct mold_gguf mold_gguf;

/* Metadata value types, numbered as in the file. */
typedef enum mold_gguf_type {
    MOLD_GGUF_U8 = 0, MOLD_GGUF_I8 = 1, MOLD_GGUF_U16 = 2, MOLD_GGUF_I16 = 3,
    MOLD_GGUF_U32 = 4, MOLD_GGUF_I32 = 5, MOLD_GGUF_F32 = 6, MOLD_GGUF_BOOL = 7,
    MOLD_GGUF_STR = 8, MOLD_GGUF_ARR = 9, MOLD_GGUF_U64 = 10, MOLD_GGUF_I64 = 11,
    MOLD_GGUF_F64 = 12,
    MOLD_GGUF_TYPE_COUNT
} mold_gguf_type;

typedef struct mold_gguf_str {
    const char *s; /* NUL-terminated copy (may contain inner NULs; len is authoritative) */
    uint64_t len;  /* bytes, without the terminating NUL */
} mold_gguf_str;

/* One metadata value. Scalars are widened: unsigned -> u, signed -> i,
 * float -> f (exact), bool -> b. Arrays keep their element type and count;
 * scalar elements stay in the mapped file (`raw`, little-endian, unaligned:
 * read them with mold_gguf_array_int/_float), strings and nested arrays are
 * decoded. */
typedef struct mold_gguf_value {
    mold_gguf_type type;
    mold_gguf_type elem_type; /* arrays only */
    uint64_t n;               /* arrays only: element count */
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
        mold_gguf_str str;
        const void *raw;                     /* array of scalars */
        const mold_gguf_str *strs;           /* array of strings */
        const struct mold_gguf_value *vals;  /* array of arrays */
    } v;
} mold_gguf_value;

typedef struct mold_gguf_tensor_info {
    const char *name;       /* NUL-terminated copy */
    uint32_t ggml_type;     /* as stored (0 = F32, 1 = F16, 2 = Q4_0, ... 30 = BF16) */
    mold_dtype dtype;       /* the same as a mold dtype */
    int n_dims;             /* 0..MOLD_GGUF_MAX_DIMS */
    int64_t ne[MOLD_GGUF_MAX_DIMS]; /* ggml order, unused dims = 1 */
    uint64_t offset;        /* from the start of the data section */
    uint64_t n_bytes;       /* exact data size (no padding) */
    const void *data;       /* in the mapping */
} mold_gguf_tensor_info;

/* ---- reader ---- */

/* Maps and validates `path`. On failure *out is NULL and nothing leaks. */
mold_status mold_gguf_open(const char *path, mold_gguf **out);
/* Same over a caller-owned buffer that must outlive the handle (fuzzer,
 * tests). `what` names it in errors. */
mold_status mold_gguf_open_buf(const void *data, size_t size, const char *what, mold_gguf **out);
void mold_gguf_close(mold_gguf *g); /* NULL ok */

const char *mold_gguf_path(const mold_gguf *g);
uint32_t mold_gguf_version(const mold_gguf *g);
uint32_t mold_gguf_alignment(const mold_gguf *g);
uint64_t mold_gguf_data_offset(const mold_gguf *g); /* file offset of the data section */
/* general.architecture, or "" when absent. */
const char *mold_gguf_architecture(const mold_gguf *g);

size_t mold_gguf_kv_count(const mold_gguf *g);
const char *mold_gguf_kv_key(const mold_gguf *g, size_t i);
const mold_gguf_value *mold_gguf_kv_value(const mold_gguf *g, size_t i);
/* O(1) lookup; NULL when absent. */
const mold_gguf_value *mold_gguf_find_kv(const mold_gguf *g, const char *key);

/* Typed getters. Absent + !required -> MOLD_OK with *out unchanged; absent +
 * required -> MOLD_E_NOTFOUND; wrong type -> MOLD_E_FORMAT ("<file>: key
 * 'k': expected integer, got string"). get_int accepts every integer type
 * (and fails with MOLD_E_RANGE for a u64 above INT64_MAX); get_float accepts
 * f32 and f64; get_int_array accepts arrays of any integer type and fails
 * with MOLD_E_RANGE when the array has more than `cap` elements. */
mold_status mold_gguf_get_int(const mold_gguf *g, const char *key, bool required, int64_t *out);
mold_status mold_gguf_get_float(const mold_gguf *g, const char *key, bool required, double *out);
mold_status mold_gguf_get_bool(const mold_gguf *g, const char *key, bool required, bool *out);
mold_status mold_gguf_get_str(const mold_gguf *g, const char *key, bool required,
                              const char **out);
mold_status mold_gguf_get_int_array(const mold_gguf *g, const char *key, bool required,
                                    int64_t *out, size_t cap, size_t *n_read);
/* Array of strings: *out borrows the decoded strings. */
mold_status mold_gguf_get_str_array(const mold_gguf *g, const char *key, bool required,
                                    const mold_gguf_str **out, uint64_t *n);

/* Element i (< v->n) of an array of integers / numbers. Integer arrays only
 * for _int (u64 above INT64_MAX wraps: check the type), numeric for _float. */
int64_t mold_gguf_array_int(const mold_gguf_value *v, uint64_t i);
double mold_gguf_array_float(const mold_gguf_value *v, uint64_t i);

const char *mold_gguf_type_name(mold_gguf_type t); /* "u32", "string", "array", ... */

size_t mold_gguf_tensor_count(const mold_gguf *g);
/* Tensors in file order. */
const mold_gguf_tensor_info *mold_gguf_tensor_info_at(const mold_gguf *g, size_t i);
const mold_tensor *mold_gguf_tensor_at(const mold_gguf *g, size_t i); /* PyTorch order */
/* Exact-name O(1) lookup (PyTorch-order view); NULL when absent. */
const mold_tensor *mold_gguf_find(const mold_gguf *g, const char *name);

/* ggml type number <-> mold dtype (MOLD_DTYPE_INVALID / UINT32_MAX when
 * there is no counterpart). */
mold_dtype mold_gguf_dtype_from_ggml(uint32_t ggml_type);
uint32_t mold_gguf_ggml_from_dtype(mold_dtype t);

/* ---- tensor source ----
 * Finds tensors by their diffusers / transformers names in a GGUF file:
 *  1. the name as given;
 *  2. with a "model.diffusion_model." or "model." prefix (city96 files that
 *     kept the single-file checkpoint prefix);
 *  3. llama.cpp names for transformers ones (spec 3.5): model.embed_tokens ->
 *     token_embd, model.layers.N.self_attn.q_proj -> blk.N.attn_q, ... ,
 *     model.norm -> output_norm, lm_head -> output; "model.language_model."
 *     is accepted for "model.".
 * The source borrows g (valid until mold_gguf_close). */
mold_tensor_source mold_source_gguf(const mold_gguf *g);
/* The llama.cpp name for a transformers text-model tensor name, written to
 * buf; false when the name has no mapping. */
bool mold_gguf_llm_name(const char *hf_name, char *buf, size_t cap);

/* ---- model configs from metadata (gguf_model.c) ----
 * The Qwen2.5-VL text config of a llama.cpp-style text-encoder GGUF
 * (general.architecture qwen2vl; see gguf_model.c for the keys), validated
 * like a config.json. */
struct mold_text_config;
mold_status mold_gguf_text_config(const mold_gguf *g, struct mold_text_config *out);

/* ---- writer ----
 * Collects metadata and tensor infos, then writes the file atomically in one
 * pass (header, padding, tensor data in the order added). Version 3; the
 * alignment is 32 unless set (which also writes general.alignment). Keys and
 * tensor names must be unique and non-empty. */
typedef struct mold_gguf_writer mold_gguf_writer;

mold_status mold_gguf_writer_create(mold_gguf_writer **out);
void mold_gguf_writer_free(mold_gguf_writer *w); /* NULL ok */
mold_status mold_gguf_writer_set_alignment(mold_gguf_writer *w, uint32_t alignment);

mold_status mold_gguf_writer_add_u32(mold_gguf_writer *w, const char *key, uint32_t v);
mold_status mold_gguf_writer_add_i32(mold_gguf_writer *w, const char *key, int32_t v);
mold_status mold_gguf_writer_add_u64(mold_gguf_writer *w, const char *key, uint64_t v);
mold_status mold_gguf_writer_add_f32(mold_gguf_writer *w, const char *key, float v);
mold_status mold_gguf_writer_add_bool(mold_gguf_writer *w, const char *key, bool v);
mold_status mold_gguf_writer_add_str(mold_gguf_writer *w, const char *key, const char *v);
/* Array of scalars: n elements of elem_type, little-endian, packed. */
mold_status mold_gguf_writer_add_array(mold_gguf_writer *w, const char *key,
                                       mold_gguf_type elem_type, const void *data, uint64_t n);
mold_status mold_gguf_writer_add_str_array(mold_gguf_writer *w, const char *key,
                                           const char *const *strs, uint64_t n);
/* Any value, including nested arrays (copies metadata from a reader). */
mold_status mold_gguf_writer_add_value(mold_gguf_writer *w, const char *key,
                                       const mold_gguf_value *v);

/* Adds a tensor with ggml-order dims ne[0..n_dims). `data` (borrowed until
 * the write) holds the exact bytes, or is NULL: then the bytes come from the
 * fill callback at write time, which lets `mold quantize` stream a model
 * that does not fit in memory. */
mold_status mold_gguf_writer_add_tensor(mold_gguf_writer *w, const char *name, mold_dtype dtype,
                                        int n_dims, const int64_t *ne, const void *data);
/* Produces tensor `index`'s n_bytes bytes into dst (a writer-owned buffer). */
typedef mold_status (*mold_gguf_fill_fn)(void *ud, size_t index, void *dst, uint64_t n_bytes);
/* Writes the file (temp + rename). fill may be NULL when every tensor has data. */
mold_status mold_gguf_writer_write(mold_gguf_writer *w, const char *path, mold_gguf_fill_fn fill,
                                   void *ud);

#endif
