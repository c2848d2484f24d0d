/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader and the dequantizers.
 *
 * Parses the input as a GGUF image; when it is accepted, touches everything
 * a loader would: every metadata value (arrays element by element, nested
 * arrays recursively), lookups by key and by tensor name (exact and through
 * the tensor source's name mapping), the text config and tokenizer built
 * from the metadata, and dequantizes every tensor of up to 64K values. Any crash, overread, leak or UB report is a bug.
 * Seeds: tests/fuzz/corpus/fuzz_gguf/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/quant.h"
#include "formats/gguf.h"
#include "formats/modeldir.h"
#include "models/qwen2_tokenizer_gguf.h"

static uint64_t walk_value(const mold_gguf_value *v) {
    uint64_t h = (uint64_t)v->type;
    if (v->type == MOLD_GGUF_STR) return h + v->v.str.len + (uint8_t)v->v.str.s[0];
    if (v->type != MOLD_GGUF_ARR) return h + v->v.u;
    for (uint64_t i = 0; i < v->n; i++) {
        if (v->elem_type == MOLD_GGUF_ARR) h += walk_value(&v->v.vals[i]);
        else if (v->elem_type == MOLD_GGUF_STR) h += v->v.strs[i].len;
        else if (v->elem_type == MOLD_GGUF_F32 || v->elem_type == MOLD_GGUF_F64)
            h += (uint64_t)(mold_gguf_array_float(v, i) != 0);
        else h += (uint64_t)mold_gguf_array_int(v, i);
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mold_gguf *g = NULL;
    if (mold_gguf_open_buf(data, size, "fuzz.gguf", &g) != MOLD_OK) return 0;
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < mold_gguf_kv_count(g); i++) {
        const char *key = mold_gguf_kv_key(g, i);
        sink += walk_value(mold_gguf_kv_value(g, i));
        sink += mold_gguf_find_kv(g, key) == mold_gguf_kv_value(g, i);
        int64_t iv;
        double fv;
        const char *sv;
        (void)mold_gguf_get_int(g, key, true, &iv);
        (void)mold_gguf_get_float(g, key, true, &fv);
        (void)mold_gguf_get_str(g, key, true, &sv);
    }
    mold_tensor_source src = mold_source_gguf(g);
    for (size_t i = 0; i < mold_gguf_tensor_count(g); i++) {
        const mold_tensor *t = mold_gguf_tensor_at(g, i);
        sink += mold_gguf_find(g, t->name) == t;
        sink += src.find(src.ud, t->name) != NULL;
        int64_t n = mold_tensor_nelems(t);
        if (n <= 0 || n > 65536) continue;
        float *y = malloc((size_t)n * sizeof(float));
        if (y && mold_dequantize(t->dtype, t->data, y, n) == MOLD_OK) sink += (uint64_t)(y[0] != 0);
        free(y);
    }
    mold_text_config cfg;
    (void)mold_gguf_text_config(g, &cfg);
    mold_tokenizer *tok = NULL;
    if (mold_gguf_has_tokenizer(g) && mold_tokenizer_from_gguf(g, &tok) == MOLD_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (mold_tokenizer_encode(tok, "a cat <|im_end|>", 16, &ids, &n) == MOLD_OK) free(ids);
        mold_tokenizer_free(tok);
    }
    (void)sink;
    mold_gguf_close(g);
    return 0;
}
