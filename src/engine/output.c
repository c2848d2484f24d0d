/*
 * output.c — the PNG of a result with its generation metadata.
 *
 * Text chunks (iTXt, UTF-8): mold:prompt, mold:negative_prompt, mold:model,
 * mold:seed, mold:steps, mold:guidance, mold:width, mold:height,
 * mold:version, and mold:parameters holding all of them as one JSON object
 * (for tools that read a single chunk).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "engine_impl.h"
#include "formats/image.h"

static mold_status write_stdout(const uint8_t *png, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDOUT_FILENO, png + off, len - off);
        if (w <= 0) return MOLD_ERR(MOLD_E_IO, "stdout: write failed");
        off += (size_t)w;
    }
    return MOLD_OK;
}

mold_result_code mold_save_png(const mold_engine *e, const mold_request *r,
                               const mold_result *res, const char *path, bool with_metadata) {
    char seed[32], steps[16], guidance[32], width[16], height[16];
    const char *negative = r->negative_prompt ? r->negative_prompt : " ";
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)res->seed);
    snprintf(steps, sizeof steps, "%d", r->steps);
    snprintf(guidance, sizeof guidance, "%g", (double)r->guidance);
    snprintf(width, sizeof width, "%d", res->width);
    snprintf(height, sizeof height, "%d", res->height);
    json_t *params = json_pack("{s:s, s:s, s:s, s:I, s:i, s:f, s:i, s:i, s:s}", "prompt",
                               r->prompt, "negative_prompt", negative, "model", e->name, "seed",
                               (json_int_t)res->seed, "steps", r->steps, "guidance",
                               (double)r->guidance, "width", res->width, "height", res->height,
                               "version", MOLD_VERSION);
    char *params_json = params ? json_dumps(params, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(params);
    if (!params_json) return MOLD_ERR(MOLD_E_INVALID, "metadata: prompt is not valid UTF-8");
    mold_png_text text[] = {
        {"mold:prompt", r->prompt}, {"mold:negative_prompt", negative},
        {"mold:model", e->name},    {"mold:seed", seed},
        {"mold:steps", steps},      {"mold:guidance", guidance},
        {"mold:width", width},      {"mold:height", height},
        {"mold:version", MOLD_VERSION}, {"mold:parameters", params_json},
    };
    size_t n_text = with_metadata ? sizeof text / sizeof text[0] : 0;
    mold_status st;
    if (!strcmp(path, "-")) {
        uint8_t *png;
        size_t len;
        st = mold_png_encode(res->rgb, res->width, res->height, text, n_text, &png, &len);
        if (st == MOLD_OK) {
            st = write_stdout(png, len);
            free(png);
        }
    } else {
        st = mold_png_write(path, res->rgb, res->width, res->height, text, n_text);
    }
    free(params_json);
    return st;
}
