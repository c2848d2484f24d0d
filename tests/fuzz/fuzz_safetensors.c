/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors header parser.
 *
 * Feeds arbitrary bytes to mold_safetensors_open_buf as a whole file image.
 * On success every tensor view must lie inside the buffer and be findable by
 * its name; any crash, leak or sanitizer report is a finding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mold_log_set_level(MOLD_LOG_OFF);
    mold_safetensors *st = NULL;
    if (mold_safetensors_open_buf(data, size, "fuzz", &st) != MOLD_OK)
        return 0;
    const uint8_t *end = data + size;
    for (size_t i = 0; i < mold_safetensors_count(st); i++) {
        const mold_tensor *t = mold_safetensors_at(st, i);
        const uint8_t *p = t->data;
        /* the parser's promise: views stay inside the file image */
        if (p < data || p > end || t->n_bytes > (uint64_t)(end - p))
            abort();
        if (mold_safetensors_find(st, t->name) != t)
            abort();
        if (t->n_bytes) /* touch the first and last byte so ASan checks the span */
            (void)(*(volatile const uint8_t *)p + *(volatile const uint8_t *)(p + t->n_bytes - 1));
    }
    (void)mold_safetensors_metadata(st, "format");
    mold_safetensors_close(st);
    return 0;
}
