/*
 * test_flowmatch.c — sigma schedule against diffusers (cases/scheduler.json):
 * every timestep and sigma within 1e-5, mu within 1e-9.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/json.h"
#include "formats/modeldir.h"
#include "models/flowmatch.h"
#include "testutil.h"

static void check_cases(const char *model, const char *cases_path) {
    mold_scheduler_config cfg;
    char cfg_path[512];
    snprintf(cfg_path, sizeof cfg_path, "%s/scheduler/scheduler_config.json", model);
    tu_ok(mold_scheduler_config_load(cfg_path, &cfg), "scheduler config");
    json_t *root;
    tu_ok(mold_json_load_file(cases_path, &root), "scheduler.json");
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_is_array(cases) && json_array_size(cases) >= 8);
    double worst_sigma = 0, worst_t = 0, worst_mu = 0;
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        int steps = (int)json_integer_value(json_object_get(cs, "steps"));
        int64_t seq = json_integer_value(json_object_get(cs, "image_seq_len"));
        double mu_ref = json_number_value(json_object_get(cs, "mu"));
        double mu = mold_flowmatch_mu(&cfg, seq);
        worst_mu = fmax(worst_mu, fabs(mu - mu_ref));
        float *sig = malloc(sizeof(float) * (size_t)(steps + 1));
        float *ts = malloc(sizeof(float) * (size_t)steps);
        tu_ok(mold_flowmatch_sigmas(&cfg, steps, mu, sig, ts), "sigmas");
        json_t *rs = json_object_get(cs, "sigmas"), *rt = json_object_get(cs, "timesteps");
        assert_int_equal(json_array_size(rs), steps + 1);
        assert_int_equal(json_array_size(rt), steps);
        for (int i = 0; i <= steps; i++) {
            double d = fabs(sig[i] - json_number_value(json_array_get(rs, (size_t)i)));
            worst_sigma = fmax(worst_sigma, d);
            if (d > 1e-5) fail_msg("case %zu (steps %d, seq %lld): sigma[%d] off by %.3g", c, steps, (long long)seq, i, d);
        }
        for (int i = 0; i < steps; i++) {
            /* timesteps are 1000 * sigma: compare relative to that scale */
            double d = fabs(ts[i] - json_number_value(json_array_get(rt, (size_t)i))) / 1000.0;
            worst_t = fmax(worst_t, d);
            if (d > 1e-5) fail_msg("case %zu: timestep[%d] off by %.3g (/1000)", c, i, d);
        }
        free(sig);
        free(ts);
    }
    printf("  %s: %zu cases, max |sigma err| %.3g, max |t err|/1000 %.3g, max |mu err| %.3g (tol 1e-5)\n",
           cases_path, json_array_size(cases), worst_sigma, worst_t, worst_mu);
    assert_true(worst_mu < 1e-9);
    json_decref(root);
}

static void test_scheduler_golden(void **state) {
    (void)state;
    check_cases(tu_fixture("qwen-image-tiny/model"), tu_fixture("qwen-image-tiny/cases/scheduler.json"));
}

static void test_invalid_steps(void **state) {
    (void)state;
    mold_scheduler_config cfg;
    tu_ok(mold_scheduler_config_load(tu_fixture("qwen-image-tiny/model/scheduler/scheduler_config.json"), &cfg), "cfg");
    float sig[2];
    tu_expect_error(mold_flowmatch_sigmas(&cfg, 0, 0.5, sig, NULL), MOLD_E_RANGE, "steps", "0 steps");
    cfg.use_karras_sigmas = true;
    tu_expect_error(mold_flowmatch_sigmas(&cfg, 1, 0.5, sig, NULL), MOLD_E_UNSUPPORTED, "karras", "karras");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scheduler_golden),
        cmocka_unit_test(test_invalid_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
