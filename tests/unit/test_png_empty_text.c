/*
 * test_png_empty_text.c — a text entry with an empty value (an empty prompt
 * or negative prompt: both legal requests) must not make the whole PNG
 * encode fail. libspng refuses zero-length text chunks, so such entries are
 * left out; the other entries are written and read back unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/image.h"
#include "testutil.h"

typedef struct { int n; char seed[32]; bool saw_prompt; } seen_t;

static void on_text(const char *key, const char *value, size_t len, void *ud) {
    seen_t *s = ud;
    s->n++;
    if (!strcmp(key, "mold:seed")) snprintf(s->seed, sizeof s->seed, "%.*s", (int)len, value);
    if (!strcmp(key, "mold:prompt")) s->saw_prompt = true;
}

static void test_empty_value(void **state) {
    (void)state;
    uint8_t rgb[4 * 3 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 11);
    mold_png_text text[] = {{"mold:prompt", ""}, {"mold:seed", "42"},
                            {"mold:negative_prompt", ""}};
    uint8_t *png = NULL;
    size_t len = 0;
    tu_ok(mold_png_encode(rgb, 4, 3, text, 3, &png, &len), "encode with empty values");
    uint8_t *back = NULL;
    int w = 0, h = 0;
    seen_t seen = {0, {0}, false};
    tu_ok(mold_png_decode(png, len, "empty-text.png", &back, &w, &h, on_text, &seen), "decode");
    printf("  %dx%d PNG, %zu bytes, %d text chunks read back, seed '%s'\n", w, h, len, seen.n,
           seen.seed);
    assert_int_equal(w, 4);
    assert_int_equal(h, 3);
    assert_memory_equal(back, rgb, sizeof rgb);
    assert_int_equal(seen.n, 1);
    assert_false(seen.saw_prompt);
    assert_string_equal(seen.seed, "42");
    free(back);
    free(png);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_empty_value)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
