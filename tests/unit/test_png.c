/*
 * test_png.c — PNG encode/decode round trip with UTF-8 metadata, atomic write,
 * and rejection of corrupt input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "formats/image.h"
#include "testutil.h"

typedef struct { int n; char prompt[256]; } text_seen;
static void on_text(const char *key, const char *value, size_t len, void *ud) {
    text_seen *t = ud;
    t->n++;
    if (!strcmp(key, "mold:prompt")) snprintf(t->prompt, sizeof t->prompt, "%.*s", (int)len, value);
}

static void test_roundtrip(void **state) {
    (void)state;
    int w = 37, h = 19;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)(i * 7 + (i / 3) * 13);
    const char *prompt = "a fox in snow, 雪の中の狐, \"quoted\"";
    mold_png_text text[] = {{"mold:prompt", prompt}, {"mold:seed", "42"}};
    const char *path = tu_build_path("roundtrip.png");
    tu_ok(mold_png_write(path, rgb, w, h, text, 2), "write");
    char *data;
    size_t len;
    tu_ok(mold_file_read_all(path, &data, &len), "read");
    uint8_t *back;
    int bw, bh;
    text_seen seen = {0, {0}};
    tu_ok(mold_png_decode(data, len, path, &back, &bw, &bh, on_text, &seen), "decode");
    assert_int_equal(bw, w);
    assert_int_equal(bh, h);
    assert_memory_equal(back, rgb, (size_t)w * h * 3);
    printf("  %dx%d PNG, %zu bytes, %d text chunks, prompt '%s'\n", w, h, len, seen.n, seen.prompt);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.prompt, prompt);
    /* truncated file: clear error, no crash */
    free(back);
    tu_expect_error(mold_png_decode(data, len / 2, "half.png", &back, &bw, &bh, NULL, NULL),
                    MOLD_E_FORMAT, "half.png", "truncated");
    data[20] ^= 0x55; /* corrupt IHDR: CRC mismatch */
    tu_expect_error(mold_png_decode(data, len, "crc.png", &back, &bw, &bh, NULL, NULL),
                    MOLD_E_FORMAT, "crc.png", "corrupt");
    free(data);
    free(rgb);
}

static void test_bad_args(void **state) {
    (void)state;
    uint8_t px[3] = {0};
    uint8_t *png;
    size_t len;
    tu_expect_error(mold_png_encode(px, 0, 1, NULL, 0, &png, &len), MOLD_E_INVALID, "size", "zero width");
    mold_png_text bad[] = {{"", "x"}};
    tu_expect_error(mold_png_encode(px, 1, 1, bad, 1, &png, &len), MOLD_E_INVALID, "key", "empty key");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
