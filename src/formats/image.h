/*
 * image.h — PNG encoding (libspng) with text metadata, written atomically.
 *
 * Pixels are 8-bit RGB, row-major [h][w][3]. Metadata goes into iTXt chunks
 * (UTF-8 safe, uncompressed) in the order given, so prompts in any language
 * survive. Files are written to a temporary name and renamed (DESIGN.md
 * principle 6); mold_png_encode() produces the bytes for stdout or HTTP.
 */
#ifndef MOLD_FORMATS_IMAGE_H
#define MOLD_FORMATS_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "../base/status.h"

typedef struct mold_png_text {
    const char *key;   /* 1..79 Latin-1 printable characters, e.g. "mold:prompt" */
    const char *value; /* UTF-8; an empty value writes no chunk (PNG readers see it absent) */
} mold_png_text;

/* Encodes to a malloc'd buffer (*png, *png_len; caller frees). */
mold_status mold_png_encode(const uint8_t *rgb, int w, int h, const mold_png_text *text,
                            size_t n_text, uint8_t **png, size_t *png_len);
/* Encodes and writes atomically to path. */
mold_status mold_png_write(const char *path, const uint8_t *rgb, int w, int h,
                           const mold_png_text *text, size_t n_text);

/* Decodes a PNG (any format libspng reads) to RGB8; *rgb malloc'd. Text
 * chunks are returned through the callback (nullable). `what` names the
 * input in errors. */
typedef void (*mold_png_text_fn)(const char *key, const char *value, size_t len, void *ud);
mold_status mold_png_decode(const void *data, size_t len, const char *what, uint8_t **rgb,
                            int *w, int *h, mold_png_text_fn on_text, void *ud);

#endif
