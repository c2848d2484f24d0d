/*
 * test_engine_reuse.c — one engine serving several requests (the public API a
 * server or a --batch run uses) on the bundled tiny model.
 *
 * Invariant checked: a request's image depends only on the request, never on
 * what the engine served before it. Every image from a long-lived engine is
 * compared byte for byte with the same request on a fresh engine, across
 * different sizes, prompts, CFG on/off, prompt-cache eviction, and after a
 * request that failed midway (bad --noise file, invalid prompt).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mold/mold.h"
#include "testutil.h"

static mold_engine *open_tiny(bool keep_resident) {
    mold_engine_options o = mold_engine_options_default();
    o.model_dir = tu_fixture("qwen-image-tiny/model");
    o.n_threads = 2;
    o.keep_resident = keep_resident;
    mold_engine *e = NULL;
    tu_ok(mold_engine_open(&o, &e), "engine open");
    return e;
}

static mold_request req(const char *prompt, int w, int h, float guidance, uint64_t seed) {
    mold_request r = mold_request_default();
    r.prompt = prompt;
    r.width = w;
    r.height = h;
    r.steps = 2;
    r.guidance = guidance;
    r.seed = seed;
    return r;
}

/* The same request on a fresh engine. */
static mold_result fresh(const mold_request *r) {
    mold_engine *e = open_tiny(false);
    mold_result res;
    tu_ok(mold_generate(e, r, NULL, NULL, &res), "fresh generate");
    mold_engine_close(e);
    return res;
}

/* Counts differing bytes; fails when any differs. */
static void expect_same(const char *what, const mold_result *got, const mold_result *ref) {
    assert_int_equal(got->width, ref->width);
    assert_int_equal(got->height, ref->height);
    size_t n = (size_t)got->width * got->height * 3, diff = 0;
    for (size_t i = 0; i < n; i++) diff += got->rgb[i] != ref->rgb[i];
    printf("  %s: %zu of %zu bytes differ from a fresh engine (expected 0)\n", what, diff, n);
    assert_int_equal(diff, 0);
}

static void run_and_compare(mold_engine *e, const mold_request *r, const char *what) {
    mold_result got, ref;
    tu_ok(mold_generate(e, r, NULL, NULL, &got), what);
    ref = fresh(r);
    expect_same(what, &got, &ref);
    mold_result_free(&got);
    mold_result_free(&ref);
}

/* Different sizes, prompts and CFG modes through one engine. */
static void test_sizes_and_prompts(void **state) {
    (void)state;
    for (int keep = 0; keep < 2; keep++) {
        mold_engine *e = open_tiny(keep);
        mold_request a = req("a lighthouse", 64, 48, 4.0f, 1234);
        mold_request b = req("a red fox in snow", 96, 32, 1.0f, 7);
        mold_request c = req("a lighthouse", 32, 80, 2.5f, 99);
        c.negative_prompt = "blurry";
        run_and_compare(e, &a, keep ? "keep: 64x48 cfg" : "64x48 cfg");
        run_and_compare(e, &b, keep ? "keep: 96x32 no cfg" : "96x32 no cfg");
        run_and_compare(e, &c, keep ? "keep: 32x80 negative" : "32x80 negative");
        run_and_compare(e, &a, keep ? "keep: 64x48 again" : "64x48 again");
        mold_engine_close(e);
    }
}

/* More distinct prompts than the prompt cache holds (8 slots). */
static void test_cache_eviction(void **state) {
    (void)state;
    mold_engine *e = open_tiny(true);
    mold_request a = req("prompt zero", 32, 32, 3.0f, 5);
    mold_result first;
    tu_ok(mold_generate(e, &a, NULL, NULL, &first), "first");
    char prompts[12][32];
    for (int i = 0; i < 12; i++) snprintf(prompts[i], sizeof prompts[i], "prompt number %d", i + 1);
    for (int i = 0; i < 12; i++) {
        mold_request r = req(prompts[i], 32, 32, 3.0f, 5);
        r.negative_prompt = prompts[(i + 5) % 12];
        mold_result res;
        tu_ok(mold_generate(e, &r, NULL, NULL, &res), prompts[i]);
        mold_result_free(&res);
    }
    mold_result again;
    tu_ok(mold_generate(e, &a, NULL, NULL, &again), "after eviction");
    expect_same("after 12 other prompts", &again, &first);
    mold_result_free(&first);
    mold_result_free(&again);
    mold_engine_close(e);
}

/* A request that fails midway leaves the engine usable. */
static void test_after_errors(void **state) {
    (void)state;
    mold_engine *e = open_tiny(false);
    mold_request a = req("a lighthouse", 64, 48, 4.0f, 1234);
    mold_result res;
    /* noise of the 96x64 case: wrong shape for 64x48, fails after encoding */
    mold_request bad = a;
    bad.noise_path = tu_fixture("qwen-image-tiny/cases/pipeline.safetensors");
    tu_expect_error(mold_generate(e, &bad, NULL, NULL, &res), MOLD_E_FORMAT, "noise_packed",
                    "wrong noise shape");
    assert_null(res.rgb);
    bad = a;
    bad.noise_path = tu_fixture("qwen-image-tiny/cases/no-such-noise.safetensors");
    tu_expect_error(mold_generate(e, &bad, NULL, NULL, &res), MOLD_E_NOTFOUND, "no-such-noise",
                    "missing noise file");
    bad = a;
    bad.prompt = "bad \xff utf-8";
    tu_expect_error(mold_generate(e, &bad, NULL, NULL, &res), MOLD_E_INVALID, "UTF-8",
                    "invalid prompt");
    run_and_compare(e, &a, "after three failed requests");
    mold_engine_close(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_prompts),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_after_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
