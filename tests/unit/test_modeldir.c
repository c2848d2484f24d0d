/*
 * test_modeldir.c — the four config parsers and mold_modeldir_open.
 *
 * The tiny model's configs must parse to their real values; the text encoder
 * config in the transformers 5.x layout (copied from the hd128 fixture) must
 * give the same struct as the 4.x one; every malformed variant (a field
 * removed, mistyped or out of range, made by editing the real configs) must
 * fail with a message naming the file and the field.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/json.h"
#include "formats/modeldir.h"
#include "testutil.h"

#define TINY "qwen-image-tiny/model/"

typedef mold_status (*parse_fn)(const char *, size_t, const char *, void *);
static mold_status p_dit(const char *j, size_t n, const char *w, void *o) {
    return mold_dit_config_parse(j, n, w, o);
}
static mold_status p_vae(const char *j, size_t n, const char *w, void *o) {
    return mold_vae_config_parse(j, n, w, o);
}
static mold_status p_text(const char *j, size_t n, const char *w, void *o) {
    return mold_text_config_parse(j, n, w, o);
}
static mold_status p_sched(const char *j, size_t n, const char *w, void *o) {
    return mold_scheduler_config_parse(j, n, w, o);
}

/* Loads fixture `rel`, sets `field` (a dotted path into nested objects) to
 * the JSON `value` (NULL deletes it), and runs `fn` on the result, expecting
 * `expect` and a message that contains `needle`. */
static void mutated(const char *rel, const char *field, const char *value, parse_fn fn,
                    mold_status expect, const char *needle) {
    json_t *root;
    tu_ok(mold_json_load_file(tu_fixture(rel), &root), rel);
    json_t *obj = root;
    char path[256];
    snprintf(path, sizeof(path), "%s", field);
    char *key = path, *dot;
    while ((dot = strchr(key, '.'))) {
        *dot = 0;
        obj = json_object_get(obj, key);
        assert_non_null(obj);
        key = dot + 1;
    }
    if (value) {
        json_error_t e;
        json_t *v = json_loads(value, JSON_DECODE_ANY, &e);
        assert_non_null(v);
        json_object_set_new(obj, key, v);
    } else {
        assert_int_equal(json_object_del(obj, key), 0);
    }
    char *text = json_dumps(root, 0);
    json_decref(root);
    union {
        mold_dit_config d;
        mold_vae_config v;
        mold_text_config t;
        mold_scheduler_config s;
    } out;
    char what[512];
    snprintf(what, sizeof(what), "%s [%s = %s]", rel, field, value ? value : "(deleted)");
    mold_status s = fn(text, strlen(text), rel, &out);
    tu_expect_error(s, expect, needle, what);
    /* every message names the file */
    if (expect != MOLD_OK)
        assert_non_null(strstr(mold_error_message(), rel));
    free(text);
}

/* ---- valid configs ---- */

static void test_dit_tiny(void **state) {
    (void)state;
    mold_dit_config c;
    tu_ok(mold_dit_config_load(tu_fixture(TINY "transformer/config.json"), &c), "dit");
    assert_int_equal(c.patch_size, 2);
    assert_int_equal(c.in_channels, 64);
    assert_int_equal(c.out_channels, 16);
    assert_int_equal(c.num_layers, 2);
    assert_int_equal(c.attention_head_dim, 32);
    assert_int_equal(c.num_attention_heads, 2);
    assert_int_equal(c.joint_attention_dim, 64);
    assert_int_equal(c.axes_dims_rope[0], 8);
    assert_int_equal(c.axes_dims_rope[1], 12);
    assert_int_equal(c.axes_dims_rope[2], 12);
    assert_false(c.guidance_embeds || c.zero_cond_t || c.use_additional_t_cond ||
                 c.use_layer3d_rope);
}

static void test_vae_tiny(void **state) {
    (void)state;
    mold_vae_config c;
    tu_ok(mold_vae_config_load(tu_fixture(TINY "vae/config.json"), &c), "vae");
    assert_int_equal(c.base_dim, 32);
    assert_int_equal(c.z_dim, 16);
    assert_int_equal(c.num_res_blocks, 2);
    assert_int_equal(c.n_dim_mult, 4);
    const int dm[4] = {1, 2, 4, 4};
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.dim_mult[i], dm[i]);
    assert_int_equal(c.n_temperal_downsample, 3);
    assert_false(c.temperal_downsample[0]);
    assert_true(c.temperal_downsample[1] && c.temperal_downsample[2]);
    assert_int_equal(c.n_attn_scales, 0);
    /* the published Qwen-Image latent statistics (as float) */
    const float mean[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                            -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                            -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
    const float std[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                           2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                           1.6382f, 1.1253f, 2.8251f, 1.916f};
    tu_check_close("latents_mean", c.latents_mean, mean, 16, 0.0);
    tu_check_close("latents_std", c.latents_std, std, 16, 0.0);
}

static void check_text_tiny(const mold_text_config *c) {
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->num_hidden_layers, 2);
    assert_int_equal(c->num_attention_heads, 4);
    assert_int_equal(c->num_key_value_heads, 2);
    assert_int_equal(c->head_dim, 16);
    assert_int_equal(c->intermediate_size, 160);
    assert_int_equal(c->vocab_size, 662);
    assert_true(c->rms_norm_eps == 1e-6);
    assert_true(c->rope_theta == 1e6);
    assert_int_equal(c->mrope_section[0], 2);
    assert_int_equal(c->mrope_section[1], 3);
    assert_int_equal(c->mrope_section[2], 3);
}

static void test_text_both_layouts(void **state) {
    (void)state;
    mold_text_config a, b;
    tu_ok(mold_text_config_load(tu_fixture(TINY "text_encoder/config.json"), &a), "text 4.x");
    check_text_tiny(&a);
    tu_ok(mold_text_config_load(tu_fixture("configs/text_encoder_transformers5.json"), &b),
          "text 5.x");
    check_text_tiny(&b);
    assert_memory_equal(&a, &b, sizeof(a));
    /* an explicit head_dim wins over hidden_size / heads */
    const char *j = "{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                    "\"num_key_value_heads\":4,\"head_dim\":32,\"intermediate_size\":8,"
                    "\"vocab_size\":10,\"rms_norm_eps\":1e-5,\"rope_theta\":10000,"
                    "\"rope_scaling\":{\"type\":\"mrope\",\"mrope_section\":[4,6,6]}}";
    tu_ok(mold_text_config_parse(j, strlen(j), "inline", &a), "head_dim given");
    assert_int_equal(a.head_dim, 32);
    assert_true(a.rope_theta == 10000.0 && a.rms_norm_eps == 1e-5);
}

static void test_scheduler_tiny(void **state) {
    (void)state;
    mold_scheduler_config c;
    tu_ok(mold_scheduler_config_load(tu_fixture(TINY "scheduler/scheduler_config.json"), &c),
          "scheduler");
    assert_int_equal(c.num_train_timesteps, 1000);
    assert_true(c.shift == 1.0);
    assert_true(c.use_dynamic_shifting);
    assert_true(c.base_shift == 0.5);
    assert_true(c.max_shift == 0.9);
    assert_int_equal(c.base_image_seq_len, 256);
    assert_int_equal(c.max_image_seq_len, 8192);
    assert_true(c.shift_terminal == 0.02);
    assert_true(c.exponential_time_shift);
    assert_false(c.invert_sigmas || c.use_karras_sigmas || c.use_exponential_sigmas ||
                 c.use_beta_sigmas || c.stochastic_sampling);
    /* shift_terminal null means none */
    mutated(TINY "scheduler/scheduler_config.json", "shift_terminal", "null", p_sched, MOLD_OK,
            NULL);
}

static void test_modeldir_tiny(void **state) {
    (void)state;
    mold_modeldir md;
    tu_ok(mold_modeldir_open(tu_fixture("qwen-image-tiny/model"), &md), "modeldir");
    assert_true(md.has_dit && md.has_vae && md.has_text && md.has_scheduler);
    assert_non_null(strstr(md.transformer_dir, "/transformer"));
    assert_non_null(strstr(md.text_encoder_dir, "/text_encoder"));
    assert_non_null(strstr(md.vae_dir, "/vae"));
    assert_non_null(strstr(md.tokenizer_dir, "/tokenizer"));
    assert_non_null(strstr(md.scheduler_dir, "/scheduler"));
    assert_int_equal(md.dit.num_layers, 2);
    assert_int_equal(md.vae.base_dim, 32);
    check_text_tiny(&md.text);
    assert_int_equal(md.scheduler.max_image_seq_len, 8192);
    mold_modeldir_close(&md);
    assert_null(md.root);
    mold_modeldir_close(&md); /* zeroed struct ok */
}

/* ---- malformed configs ---- */

static void test_dit_malformed(void **state) {
    (void)state;
    const char *f = TINY "transformer/config.json";
    mutated(f, "num_layers", NULL, p_dit, MOLD_E_NOTFOUND, "missing field 'num_layers'");
    mutated(f, "num_layers", "\"2\"", p_dit, MOLD_E_FORMAT, "field 'num_layers': expected integer");
    mutated(f, "num_layers", "0", p_dit, MOLD_E_RANGE, "field 'num_layers': expected 1..4096, got 0");
    mutated(f, "patch_size", "-2", p_dit, MOLD_E_RANGE, "field 'patch_size'");
    mutated(f, "attention_head_dim", "99999999999", p_dit, MOLD_E_RANGE, "attention_head_dim");
    mutated(f, "axes_dims_rope", "[8, 12]", p_dit, MOLD_E_FORMAT, "axes_dims_rope': expected 3 values, got 2");
    mutated(f, "axes_dims_rope", "[8, 12, 14]", p_dit, MOLD_E_FORMAT, "expected sum == attention_head_dim 32, got 34");
    mutated(f, "axes_dims_rope", "[8, 13, 11]", p_dit, MOLD_E_RANGE, "axes_dims_rope'[1]: expected even");
    mutated(f, "axes_dims_rope", "[8, 12, 1.5]", p_dit, MOLD_E_FORMAT, "axes_dims_rope'[2]: expected integer");
    mutated(f, "in_channels", "32", p_dit, MOLD_E_FORMAT, "field 'in_channels': expected out_channels x patch_size^2 = 64, got 32");
    mutated(f, "guidance_embeds", "true", p_dit, MOLD_E_UNSUPPORTED, "field 'guidance_embeds': expected false");
    mutated(f, "zero_cond_t", "1", p_dit, MOLD_E_FORMAT, "field 'zero_cond_t': expected boolean");
    mutated(f, "use_layer3d_rope", "true", p_dit, MOLD_E_UNSUPPORTED, "use_layer3d_rope");
    mutated(f, "guidance_embeds", NULL, p_dit, MOLD_OK, NULL); /* optional, default false */
    mold_dit_config c;
    tu_expect_error(mold_dit_config_parse("[1]", 3, "arr.json", &c), MOLD_E_FORMAT,
                    "arr.json: expected a JSON object", "array root");
    tu_expect_error(mold_dit_config_parse("{", 1, "cut.json", &c), MOLD_E_FORMAT,
                    "cut.json: invalid JSON", "cut JSON");
    tu_expect_error(mold_dit_config_parse("", 0, "empty.json", &c), MOLD_E_FORMAT,
                    "empty.json", "empty");
    tu_expect_error(mold_dit_config_load(tu_build_path("md_nonexistent.json"), &c),
                    MOLD_E_NOTFOUND, "md_nonexistent.json", "missing file");
}

static void test_vae_malformed(void **state) {
    (void)state;
    const char *f = TINY "vae/config.json";
    mutated(f, "z_dim", NULL, p_vae, MOLD_E_NOTFOUND, "missing field 'z_dim'");
    mutated(f, "z_dim", "32", p_vae, MOLD_E_RANGE, "field 'z_dim': expected 1..16, got 32");
    mutated(f, "z_dim", "8", p_vae, MOLD_E_FORMAT, "field 'latents_mean': expected z_dim = 8 values, got 16");
    mutated(f, "base_dim", "true", p_vae, MOLD_E_FORMAT, "field 'base_dim': expected integer");
    mutated(f, "dim_mult", "[]", p_vae, MOLD_E_FORMAT, "field 'dim_mult'");
    mutated(f, "dim_mult", "[1,2,3,4,5,6,7,8,9]", p_vae, MOLD_E_RANGE, "field 'dim_mult': expected at most 8");
    mutated(f, "dim_mult", "[1,2,0,4]", p_vae, MOLD_E_RANGE, "field 'dim_mult'[2]");
    mutated(f, "temperal_downsample", "[true, true]", p_vae, MOLD_E_FORMAT, "field 'temperal_downsample': expected 3 values");
    mutated(f, "temperal_downsample", "[0, 1, 1]", p_vae, MOLD_E_FORMAT, "temperal_downsample'[0]: expected boolean");
    mutated(f, "temperal_downsample", NULL, p_vae, MOLD_E_NOTFOUND, "temperal_downsample");
    mutated(f, "attn_scales", "[1]", p_vae, MOLD_E_UNSUPPORTED, "field 'attn_scales'");
    mutated(f, "attn_scales", "{}", p_vae, MOLD_E_FORMAT, "field 'attn_scales'");
    mutated(f, "latents_std", NULL, p_vae, MOLD_E_NOTFOUND, "latents_std");
    mutated(f, "latents_std", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0]", p_vae, MOLD_E_RANGE, "latents_std'[15]: expected a finite positive");
    mutated(f, "latents_mean", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,\"x\"]", p_vae, MOLD_E_FORMAT, "latents_mean'[15]");
    mutated(f, "latents_mean", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1e300]", p_vae, MOLD_E_RANGE, "latents_mean'[15]");
}

static void test_text_malformed(void **state) {
    (void)state;
    const char *f4 = TINY "text_encoder/config.json";
    const char *f5 = "configs/text_encoder_transformers5.json";
    mutated(f4, "hidden_size", NULL, p_text, MOLD_E_NOTFOUND, "missing field 'hidden_size'");
    mutated(f5, "text_config.hidden_size", NULL, p_text, MOLD_E_NOTFOUND, "text_config: missing field 'hidden_size'");
    mutated(f5, "text_config.num_key_value_heads", "3", p_text, MOLD_E_FORMAT, "field 'num_key_value_heads': expected a divisor of num_attention_heads 4, got 3");
    mutated(f4, "num_attention_heads", "3", p_text, MOLD_E_FORMAT, "field 'hidden_size': expected a multiple of num_attention_heads 3");
    mutated(f4, "vocab_size", "-1", p_text, MOLD_E_RANGE, "field 'vocab_size'");
    mutated(f4, "rms_norm_eps", "\"small\"", p_text, MOLD_E_FORMAT, "field 'rms_norm_eps': expected number");
    mutated(f4, "rms_norm_eps", "0", p_text, MOLD_E_RANGE, "field 'rms_norm_eps'");
    mutated(f4, "rope_theta", NULL, p_text, MOLD_E_NOTFOUND, "missing field 'rope_theta'");
    mutated(f5, "text_config.rope_parameters.rope_theta", NULL, p_text, MOLD_E_NOTFOUND, "rope_theta");
    mutated(f5, "text_config.rope_parameters.rope_theta", "-5", p_text, MOLD_E_RANGE, "text_config.rope_parameters: field 'rope_theta'");
    mutated(f4, "rope_scaling", NULL, p_text, MOLD_E_NOTFOUND, "mrope_section");
    mutated(f4, "rope_scaling", "[2,3,3]", p_text, MOLD_E_FORMAT, "field 'rope_scaling': expected object");
    mutated(f4, "rope_scaling.mrope_section", "[2,3]", p_text, MOLD_E_FORMAT, "rope_scaling: field 'mrope_section': expected 3 values, got 2");
    mutated(f4, "rope_scaling.mrope_section", "[2,3,4]", p_text, MOLD_E_FORMAT, "field 'mrope_section': expected sum == head_dim / 2 = 8, got 9");
    mutated(f4, "rope_scaling.type", "\"yarn\"", p_text, MOLD_E_UNSUPPORTED, "expected default or mrope, got 'yarn'");
    mutated(f5, "text_config.rope_parameters.mrope_section", "[2,3,\"3\"]", p_text, MOLD_E_FORMAT, "text_config.rope_parameters: field 'mrope_section'[2]: expected integer");
    mutated(f5, "text_config", "[]", p_text, MOLD_E_FORMAT, "field 'text_config': expected object");
    mutated(f4, "use_sliding_window", "true", p_text, MOLD_E_UNSUPPORTED, "use_sliding_window");
    mutated(f4, "head_dim", "15", p_text, MOLD_E_RANGE, "field 'head_dim': expected even");
}

static void test_scheduler_malformed(void **state) {
    (void)state;
    const char *f = TINY "scheduler/scheduler_config.json";
    mutated(f, "num_train_timesteps", NULL, p_sched, MOLD_E_NOTFOUND, "missing field 'num_train_timesteps'");
    mutated(f, "shift", "0", p_sched, MOLD_E_RANGE, "field 'shift'");
    mutated(f, "use_dynamic_shifting", "\"yes\"", p_sched, MOLD_E_FORMAT, "field 'use_dynamic_shifting': expected boolean");
    mutated(f, "base_shift", NULL, p_sched, MOLD_E_NOTFOUND, "missing field 'base_shift'");
    mutated(f, "max_image_seq_len", "256", p_sched, MOLD_E_RANGE, "field 'max_image_seq_len': expected > base_image_seq_len 256, got 256");
    mutated(f, "shift_terminal", "1.5", p_sched, MOLD_E_RANGE, "field 'shift_terminal'");
    mutated(f, "time_shift_type", "\"cosine\"", p_sched, MOLD_E_UNSUPPORTED, "field 'time_shift_type'");
    mutated(f, "time_shift_type", "3", p_sched, MOLD_E_FORMAT, "field 'time_shift_type': expected string");
    mutated(f, "use_karras_sigmas", "true", p_sched, MOLD_E_UNSUPPORTED, "field 'use_karras_sigmas': expected false");
    mutated(f, "stochastic_sampling", "true", p_sched, MOLD_E_UNSUPPORTED, "stochastic_sampling");
    mutated(f, "invert_sigmas", "true", p_sched, MOLD_E_UNSUPPORTED, "invert_sigmas");
}

/* ---- malformed model directories ---- */

/* A copy of the tiny model's configs and tokenizer (no weights) under the
 * build dir, for editing. */
static const char *copy_tiny(const char *rel) {
    const char *dst = tu_build_path(rel);
    const char *src = tu_fixture("qwen-image-tiny/model");
    char cmd[9000];
    snprintf(cmd, sizeof(cmd),
             "rm -rf '%s' && mkdir -p '%s' && cd '%s' && cp -r --parents model_index.json "
             "transformer/config.json vae/config.json text_encoder/config.json "
             "scheduler/scheduler_config.json tokenizer '%s'", dst, dst, src, dst);
    assert_int_equal(system(cmd), 0);
    return dst;
}

static void set_file(const char *dir, const char *rel, const char *text) {
    char *p = mold_path_join(dir, rel);
    tu_ok(mold_file_write_atomic(p, text, strlen(text)), "write");
    free(p);
}

static void test_modeldir_malformed(void **state) {
    (void)state;
    mold_modeldir md;
    tu_expect_error(mold_modeldir_open(tu_build_path("md_none"), &md), MOLD_E_NOTFOUND,
                    "md_none: not a directory", "no dir");
    assert_null(md.root);
    const char *d = copy_tiny("md_copy");
    tu_ok(mold_modeldir_open(d, &md), "copy opens");
    mold_modeldir_close(&md);

    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/vae'", d);
    assert_int_equal(system(cmd), 0);
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_NOTFOUND,
                    "component 'vae' is listed in model_index.json", "vae dir missing");

    /* not listed: not required, not loaded */
    set_file(d, "model_index.json",
             "{\"_class_name\":\"QwenImagePipeline\",\"vae\":[null,null],"
             "\"transformer\":[\"diffusers\",\"QwenImageTransformer2DModel\"]}");
    tu_ok(mold_modeldir_open(d, &md), "partial index");
    assert_true(md.has_dit && !md.has_vae && !md.has_text && !md.has_scheduler);
    assert_null(md.vae_dir);
    assert_null(md.tokenizer_dir);
    mold_modeldir_close(&md);

    set_file(d, "model_index.json", "{\"transformer\":[\"diffusers\",\"FluxTransformer2DModel\"]}");
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_UNSUPPORTED,
                    "field 'transformer': expected class QwenImageTransformer2DModel, got "
                    "'FluxTransformer2DModel'", "wrong class");
    set_file(d, "model_index.json", "{\"transformer\":\"diffusers\"}");
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_FORMAT,
                    "model_index.json: field 'transformer'", "bad entry");
    set_file(d, "model_index.json", "[]");
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_FORMAT, "model_index.json", "array index");
    snprintf(cmd, sizeof(cmd), "rm -f '%s/model_index.json'", d);
    assert_int_equal(system(cmd), 0);
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_NOTFOUND, "model_index.json",
                    "no index");

    /* a bad component config: the error names that file and field */
    d = copy_tiny("md_copy2");
    set_file(d, "scheduler/scheduler_config.json", "{\"num_train_timesteps\":1000}");
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_NOTFOUND,
                    "scheduler/scheduler_config.json: missing field 'shift'", "bad scheduler");
    d = copy_tiny("md_copy3");
    snprintf(cmd, sizeof(cmd), "rm -f '%s/tokenizer/tokenizer.json' '%s/tokenizer/merges.txt'", d,
             d);
    assert_int_equal(system(cmd), 0);
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_NOTFOUND, "expected tokenizer.json",
                    "no tokenizer files");
    /* the components must agree */
    d = copy_tiny("md_copy4");
    set_file(d, "transformer/config.json",
             "{\"attention_head_dim\":32,\"axes_dims_rope\":[8,12,12],\"in_channels\":64,"
             "\"joint_attention_dim\":128,\"num_attention_heads\":2,\"num_layers\":2,"
             "\"out_channels\":16,\"patch_size\":2}");
    tu_expect_error(mold_modeldir_open(d, &md), MOLD_E_FORMAT,
                    "field 'joint_attention_dim' 128: expected text_encoder hidden_size 64",
                    "cross check");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dit_tiny),
        cmocka_unit_test(test_vae_tiny),
        cmocka_unit_test(test_text_both_layouts),
        cmocka_unit_test(test_scheduler_tiny),
        cmocka_unit_test(test_modeldir_tiny),
        cmocka_unit_test(test_dit_malformed),
        cmocka_unit_test(test_vae_malformed),
        cmocka_unit_test(test_text_malformed),
        cmocka_unit_test(test_scheduler_malformed),
        cmocka_unit_test(test_modeldir_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
