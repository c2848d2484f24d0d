/*
 * image.c — PNG through libspng (see image.h).
 *
 * Why libspng: a small, fuzzed, Debian-packaged PNG library with a simple
 * in-memory API and iTXt support (tEXt is Latin-1 only, prompts are UTF-8).
 */
#include "image.h"

#include <spng.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"

#define MAX_SIDE 16384

mold_status mold_png_encode(const uint8_t *rgb, int w, int h, const mold_png_text *text,
                            size_t n_text, uint8_t **png, size_t *png_len) {
    *png = NULL;
    *png_len = 0;
    if (w <= 0 || h <= 0 || w > MAX_SIDE || h > MAX_SIDE)
        return MOLD_ERR(MOLD_E_INVALID, "png: size %dx%d outside 1..%d", w, h, MAX_SIDE);
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) return MOLD_ERR(MOLD_E_NOMEM, "png: cannot create encoder");
    struct spng_text *chunks = NULL;
    mold_status st = MOLD_OK;
    int err = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    /* Speed over the last bytes: zlib level 3 with the Paeth filter encodes a
     * 1328x1328 image 2.3x faster than level 6 with adaptive filters (149 vs
     * 344 ms here) for a file about 16% larger (docs/perf.md). */
    if (!err) err = spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, 3);
    if (!err) err = spng_set_option(ctx, SPNG_FILTER_CHOICE, SPNG_FILTER_CHOICE_PAETH);
    struct spng_ihdr ihdr = {.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    if (!err) err = spng_set_ihdr(ctx, &ihdr);
    if (!err && n_text) {
        chunks = calloc(n_text, sizeof *chunks);
        if (!chunks) {
            st = MOLD_ERR(MOLD_E_NOMEM, "png: out of memory");
            goto done;
        }
        uint32_t n_set = 0;
        for (size_t i = 0; i < n_text; i++) {
            size_t kl = strlen(text[i].key);
            if (kl == 0 || kl > 79) {
                st = MOLD_ERR(MOLD_E_INVALID, "png: text key '%s' must be 1..79 bytes", text[i].key);
                goto done;
            }
            /* libspng refuses zero-length text (EINVAL for the whole image):
             * an empty value (e.g. an empty prompt) is left out instead. */
            if (!text[i].value[0]) continue;
            struct spng_text *c = &chunks[n_set++];
            memcpy(c->keyword, text[i].key, kl);
            c->type = SPNG_ITXT;
            c->text = (char *)text[i].value;
            c->length = strlen(text[i].value);
            c->language_tag = "";
            c->translated_keyword = "";
        }
        if (n_set) err = spng_set_text(ctx, chunks, n_set);
    }
    if (!err)
        err = spng_encode_image(ctx, rgb, (size_t)w * (size_t)h * 3, SPNG_FMT_PNG,
                                SPNG_ENCODE_FINALIZE);
    if (!err) {
        size_t len = 0;
        void *buf = spng_get_png_buffer(ctx, &len, &err);
        if (!err) {
            *png = buf;
            *png_len = len;
        }
    }
    if (err) st = MOLD_ERR(MOLD_E_FORMAT, "png: encode %dx%d failed: %s", w, h, spng_strerror(err));
done:
    free(chunks);
    spng_ctx_free(ctx);
    return st;
}

mold_status mold_png_write(const char *path, const uint8_t *rgb, int w, int h,
                           const mold_png_text *text, size_t n_text) {
    uint8_t *png;
    size_t len;
    MOLD_TRY(mold_png_encode(rgb, w, h, text, n_text, &png, &len));
    mold_status st = mold_file_write_atomic(path, png, len);
    free(png);
    return st;
}

mold_status mold_png_decode(const void *data, size_t len, const char *what, uint8_t **rgb,
                            int *w, int *h, mold_png_text_fn on_text, void *ud) {
    *rgb = NULL;
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return MOLD_ERR(MOLD_E_NOMEM, "%s: cannot create decoder", what);
    /* Bound memory for hostile files: 64 MB of chunks, 16k x 16k pixels. */
    spng_set_chunk_limits(ctx, 64u << 20, 64u << 20);
    spng_set_image_limits(ctx, MAX_SIDE, MAX_SIDE);
    mold_status st = MOLD_OK;
    struct spng_text *chunks = NULL;
    size_t out_len = 0;
    struct spng_ihdr ihdr;
    int err = spng_set_png_buffer(ctx, data, len);
    if (!err) err = spng_get_ihdr(ctx, &ihdr);
    if (!err) err = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &out_len);
    if (!err) {
        *rgb = malloc(out_len ? out_len : 1);
        if (!*rgb) {
            st = MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory", what);
            goto done;
        }
        err = spng_decode_image(ctx, *rgb, out_len, SPNG_FMT_RGB8, SPNG_DECODE_TRNS);
    }
    if (!err && on_text) {
        uint32_t n = 0;
        int terr = spng_get_text(ctx, NULL, &n);
        if (!terr && n) {
            chunks = calloc(n, sizeof *chunks);
            if (chunks && !spng_get_text(ctx, chunks, &n))
                for (uint32_t i = 0; i < n; i++)
                    on_text(chunks[i].keyword, chunks[i].text, chunks[i].length, ud);
        }
    }
    if (err) {
        st = MOLD_ERR(MOLD_E_FORMAT, "%s: invalid PNG: %s", what, spng_strerror(err));
        free(*rgb);
        *rgb = NULL;
    } else {
        *w = (int)ihdr.width;
        *h = (int)ihdr.height;
    }
done:
    free(chunks);
    spng_ctx_free(ctx);
    return st;
}
