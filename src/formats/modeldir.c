/*
 * modeldir.c — config parsers for the four Qwen-Image components and the
 * diffusers model directory that holds them (see modeldir.h).
 *
 * Every field mold computes with is required; a missing, mistyped or
 * out-of-range one is an error naming the file and the field. Fields whose
 * only legal value in mold is the diffusers default (guidance_embeds,
 * zero_cond_t, use_karras_sigmas, ...) are optional and must hold that value
 * when present: a model that needs them is refused (MOLD_E_UNSUPPORTED)
 * rather than run wrong.
 *
 * Text encoder layouts (transformers Qwen2_5_VLConfig):
 *   | layout | text fields         | rope_theta                         | mrope_section                         |
 *   |--------|---------------------|------------------------------------|---------------------------------------|
 *   | 4.x    | top level           | top level                          | rope_scaling.mrope_section            |
 *   | 5.x    | text_config.*       | text_config.rope_parameters.*      | text_config.rope_parameters.*         |
 * Both are accepted, and mixes of them (some 4.5x releases write text_config
 * alongside top-level fields): each field is looked up under text_config
 * first, then at the top level.
 *
 * References: diffusers QwenImageTransformer2DModel, AutoencoderKLQwenImage,
 * FlowMatchEulerDiscreteScheduler constructors; transformers
 * Qwen2_5_VLTextConfig.
 */
#include "modeldir.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"   // defines: mold_path_join, mold_path_is_dir, mold_file_read_all
#include "../base/json.h" // defines: mold_json_* getters that name file and field

/* Upper bound for every size-like config integer: large enough for any real
 * model, small enough that products of two never overflow 64 bits. */
#define MAX_DIM (1 << 20)

/* ---- field helpers ---- */

static bool present(const json_t *o, const char *field) {
    const json_t *v = json_is_object(o) ? json_object_get(o, field) : NULL;
    return v && !json_is_null(v);
}

/* An integer field in [lo, hi]. Absent and !required leaves *out unchanged. */
static mold_status get_int(const json_t *o, const char *field, const char *what, bool required,
                           int64_t lo, int64_t hi, int *out) {
    int64_t v = *out;
    MOLD_TRY(mold_json_get_int(o, field, what, required, &v));
    if (!present(o, field))
        return MOLD_OK;
    if (v < lo || v > hi)
        return MOLD_ERR(MOLD_E_RANGE, "%s: field '%s': expected %lld..%lld, got %lld", what,
                        field, (long long)lo, (long long)hi, (long long)v);
    *out = (int)v;
    return MOLD_OK;
}

/* A finite number field in [lo, hi]. */
static mold_status get_num(const json_t *o, const char *field, const char *what, bool required,
                           double lo, double hi, double *out) {
    double v = *out;
    MOLD_TRY(mold_json_get_num(o, field, what, required, &v));
    if (!present(o, field))
        return MOLD_OK;
    if (!isfinite(v) || v < lo || v > hi)
        return MOLD_ERR(MOLD_E_RANGE, "%s: field '%s': expected %g..%g, got %g", what, field, lo,
                        hi, v);
    *out = v;
    return MOLD_OK;
}

/* An optional boolean that mold only supports at `want` (the diffusers default). */
static mold_status get_fixed_bool(const json_t *o, const char *field, const char *what,
                                  bool want, const char *why, bool *out) {
    bool v = want;
    MOLD_TRY(mold_json_get_bool(o, field, what, false, &v));
    if (v != want)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: field '%s': expected %s (%s), got %s", what,
                        field, want ? "true" : "false", why, v ? "true" : "false");
    *out = v;
    return MOLD_OK;
}

/* An integer array of exactly n values, each in [lo, hi]. */
static mold_status get_int_array(const json_t *o, const char *field, const char *what,
                                 size_t n, int64_t lo, int64_t hi, int *out) {
    int64_t v[8];
    size_t n_read = 0;
    MOLD_ASSERT(n <= 8);
    MOLD_TRY(mold_json_get_int_array(o, field, what, true, v, n, &n_read));
    if (n_read != n)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected %zu values, got %zu", what,
                        field, n, n_read);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < lo || v[i] > hi)
            return MOLD_ERR(MOLD_E_RANGE, "%s: field '%s'[%zu]: expected %lld..%lld, got %lld",
                            what, field, i, (long long)lo, (long long)hi, (long long)v[i]);
        out[i] = (int)v[i];
    }
    return MOLD_OK;
}

/* Parses `json` and checks the root is an object; caller json_decref()s. */
static mold_status load_root(const char *json, size_t len, const char *what, json_t **out) {
    MOLD_ASSERT(json || !len);
    MOLD_TRY(mold_json_load_buf(json ? json : "", len, what, out));
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return MOLD_ERR(MOLD_E_FORMAT, "%s: expected a JSON object", what);
    }
    return MOLD_OK;
}

/* ---- transformer ---- */

static mold_status dit_fields(const json_t *o, const char *w, mold_dit_config *c) {
    MOLD_TRY(get_int(o, "patch_size", w, true, 1, 16, &c->patch_size));
    MOLD_TRY(get_int(o, "in_channels", w, true, 1, MAX_DIM, &c->in_channels));
    MOLD_TRY(get_int(o, "out_channels", w, true, 1, MAX_DIM, &c->out_channels));
    MOLD_TRY(get_int(o, "num_layers", w, true, 1, 4096, &c->num_layers));
    MOLD_TRY(get_int(o, "attention_head_dim", w, true, 2, 4096, &c->attention_head_dim));
    MOLD_TRY(get_int(o, "num_attention_heads", w, true, 1, 4096, &c->num_attention_heads));
    MOLD_TRY(get_int(o, "joint_attention_dim", w, true, 1, MAX_DIM, &c->joint_attention_dim));
    MOLD_TRY(get_int_array(o, "axes_dims_rope", w, 3, 0, 4096, c->axes_dims_rope));
    MOLD_TRY(get_fixed_bool(o, "guidance_embeds", w, false, "guidance-distilled models are "
                            "not supported", &c->guidance_embeds));
    MOLD_TRY(get_fixed_bool(o, "zero_cond_t", w, false, "Edit-2511 only",
                            &c->zero_cond_t));
    MOLD_TRY(get_fixed_bool(o, "use_additional_t_cond", w, false, "Layered only",
                            &c->use_additional_t_cond));
    MOLD_TRY(get_fixed_bool(o, "use_layer3d_rope", w, false, "Layered only",
                            &c->use_layer3d_rope));
    return MOLD_OK;
}

/* Relations the forward pass relies on. */
static mold_status dit_check(const char *w, const mold_dit_config *c) {
    const int *ax = c->axes_dims_rope;
    if (c->attention_head_dim % 2)
        return MOLD_ERR(MOLD_E_RANGE, "%s: field 'attention_head_dim': expected even, got %d",
                        w, c->attention_head_dim);
    for (int i = 0; i < 3; i++)
        if (ax[i] % 2)
            return MOLD_ERR(MOLD_E_RANGE, "%s: field 'axes_dims_rope'[%d]: expected even "
                            "(rotary pairs), got %d", w, i, ax[i]);
    if (ax[0] + ax[1] + ax[2] != c->attention_head_dim)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'axes_dims_rope': expected sum == "
                        "attention_head_dim %d, got %d", w, c->attention_head_dim,
                        ax[0] + ax[1] + ax[2]);
    int packed = c->out_channels * c->patch_size * c->patch_size;
    if (c->in_channels != packed)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'in_channels': expected out_channels x "
                        "patch_size^2 = %d, got %d", w, packed, c->in_channels);
    return MOLD_OK;
}

mold_status mold_dit_config_parse(const char *json, size_t len, const char *what,
                                  mold_dit_config *out) {
    MOLD_ASSERT(out && what);
    memset(out, 0, sizeof(*out));
    json_t *root;
    MOLD_TRY(load_root(json, len, what, &root));
    mold_status s = dit_fields(root, what, out);
    json_decref(root);
    return s ? s : dit_check(what, out);
}

/* ---- VAE ---- */

/* temperal_downsample: an array of n booleans. */
static mold_status vae_downsample(const json_t *o, const char *w, mold_vae_config *c) {
    json_t *a = NULL;
    MOLD_TRY(mold_json_get_child(o, "temperal_downsample", w, true, JSON_ARRAY, &a));
    size_t n = json_array_size(a);
    if (n != (size_t)c->n_dim_mult - 1)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'temperal_downsample': expected %d values "
                        "(one per down stage), got %zu", w, c->n_dim_mult - 1, n);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_boolean(v))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'temperal_downsample'[%zu]: expected "
                            "boolean", w, i);
        c->temperal_downsample[i] = json_is_true(v);
    }
    c->n_temperal_downsample = (int)n;
    return MOLD_OK;
}

/* latents_mean / latents_std: z_dim finite numbers (std > 0). */
static mold_status vae_latent_stats(const json_t *o, const char *w, const char *field,
                                    int z_dim, bool positive, float *out) {
    double v[16];
    size_t n = 0;
    MOLD_TRY(mold_json_get_num_array(o, field, w, true, v, 16, &n));
    if (n != (size_t)z_dim)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected z_dim = %d values, got %zu", w,
                        field, z_dim, n);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]) || fabs(v[i]) > 1e6 || (positive && !(v[i] > 0)))
            return MOLD_ERR(MOLD_E_RANGE, "%s: field '%s'[%zu]: expected a finite %s, got %g",
                            w, field, i, positive ? "positive value" : "value", v[i]);
        out[i] = (float)v[i];
    }
    return MOLD_OK;
}

static mold_status vae_fields(const json_t *o, const char *w, mold_vae_config *c) {
    MOLD_TRY(get_int(o, "base_dim", w, true, 1, 65536, &c->base_dim));
    MOLD_TRY(get_int(o, "z_dim", w, true, 1, 16, &c->z_dim));
    MOLD_TRY(get_int(o, "num_res_blocks", w, true, 1, 64, &c->num_res_blocks));
    int64_t dm[8];
    size_t n = 0;
    MOLD_TRY(mold_json_get_int_array(o, "dim_mult", w, true, dm, 8, &n));
    if (n < 1)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'dim_mult': expected 1..8 values, got 0", w);
    for (size_t i = 0; i < n; i++) {
        if (dm[i] < 1 || dm[i] > 64)
            return MOLD_ERR(MOLD_E_RANGE, "%s: field 'dim_mult'[%zu]: expected 1..64, got %lld",
                            w, i, (long long)dm[i]);
        c->dim_mult[i] = (int)dm[i];
    }
    c->n_dim_mult = (int)n;
    MOLD_TRY(vae_downsample(o, w, c));
    /* diffusers default []; attention outside the mid block is not implemented */
    json_t *attn = NULL;
    MOLD_TRY(mold_json_get_child(o, "attn_scales", w, false, JSON_ARRAY, &attn));
    c->n_attn_scales = attn ? (int)json_array_size(attn) : 0;
    if (c->n_attn_scales)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: field 'attn_scales': expected [], got %d "
                        "values", w, c->n_attn_scales);
    MOLD_TRY(vae_latent_stats(o, w, "latents_mean", c->z_dim, false, c->latents_mean));
    MOLD_TRY(vae_latent_stats(o, w, "latents_std", c->z_dim, true, c->latents_std));
    return MOLD_OK;
}

mold_status mold_vae_config_parse(const char *json, size_t len, const char *what,
                                  mold_vae_config *out) {
    MOLD_ASSERT(out && what);
    memset(out, 0, sizeof(*out));
    json_t *root;
    MOLD_TRY(load_root(json, len, what, &root));
    mold_status s = vae_fields(root, what, out);
    json_decref(root);
    return s;
}

/* ---- text encoder ---- */

/* Where the text model's fields live: text_config (5.x) first, then the top
 * level (4.x). `what_tc` names text_config in messages. */
typedef struct text_src {
    const json_t *root, *tc;
    const char *what;
    char what_tc[600];
} text_src;

/* The object holding `field` and its name for messages; when absent in both,
 * the layout's primary object (so "missing field" names where it belongs). */
static const json_t *text_obj(const text_src *t, const char *field, const char **what) {
    if (t->tc && json_object_get(t->tc, field)) {
        *what = t->what_tc;
        return t->tc;
    }
    if (json_object_get(t->root, field) || !t->tc) {
        *what = t->what;
        return t->root;
    }
    *what = t->what_tc;
    return t->tc;
}

static mold_status text_int(const text_src *t, const char *field, bool required, int64_t lo,
                            int64_t hi, int *out) {
    const char *w;
    const json_t *o = text_obj(t, field, &w);
    return get_int(o, field, w, required, lo, hi, out);
}

/* The rope container holding `field`: text_config.rope_parameters (5.x),
 * text_config.rope_scaling, rope_parameters, rope_scaling (4.x). */
static mold_status rope_obj(const text_src *t, const char *field, const json_t **out,
                            char *what, size_t cap) {
    const json_t *objs[2] = {t->tc, t->root};
    const char *names[2] = {"rope_parameters", "rope_scaling"};
    *out = NULL;
    for (int i = 0; i < 2; i++) {
        for (int j = 0; objs[i] && j < 2; j++) {
            const json_t *r = json_object_get(objs[i], names[j]);
            if (r && !json_is_null(r) && !json_is_object(r))
                return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected object",
                                i ? t->what : t->what_tc, names[j]);
            if (r && json_object_get(r, field)) {
                snprintf(what, cap, "%s: %s%s", t->what, i ? "" : "text_config.", names[j]);
                *out = r;
                return MOLD_OK;
            }
        }
    }
    return MOLD_OK;
}

/* mrope_section and rope_theta, wherever the layout keeps them. */
static mold_status text_rope(const text_src *t, mold_text_config *c) {
    char w[700];
    const json_t *r;
    MOLD_TRY(rope_obj(t, "mrope_section", &r, w, sizeof(w)));
    if (!r)
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: missing field 'rope_scaling.mrope_section' "
                        "(transformers 4.x) or 'text_config.rope_parameters.mrope_section' "
                        "(5.x)", t->what);
    MOLD_TRY(get_int_array(r, "mrope_section", w, 3, 1, 4096, c->mrope_section));
    /* Only plain (M-)RoPE: scaled variants (yarn, linear, dynamic) change the angles. */
    const char *type = NULL;
    MOLD_TRY(mold_json_get_str(r, "rope_type", w, false, &type));
    if (!type)
        MOLD_TRY(mold_json_get_str(r, "type", w, false, &type));
    if (type && strcmp(type, "default") && strcmp(type, "mrope"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: field 'rope_type': expected default or mrope, "
                        "got '%s'", w, type);
    const char *tw;
    const json_t *o = text_obj(t, "rope_theta", &tw);
    if (!json_object_get(o, "rope_theta")) {
        MOLD_TRY(rope_obj(t, "rope_theta", &o, w, sizeof(w)));
        if (!o)
            return MOLD_ERR(MOLD_E_NOTFOUND, "%s: missing field 'rope_theta' (transformers "
                            "4.x) or 'text_config.rope_parameters.rope_theta' (5.x)", t->what);
        tw = w;
    }
    return get_num(o, "rope_theta", tw, true, 1.0, 1e12, &c->rope_theta);
}

static mold_status text_fields(const text_src *t, mold_text_config *c) {
    MOLD_TRY(text_int(t, "hidden_size", true, 1, MAX_DIM, &c->hidden_size));
    MOLD_TRY(text_int(t, "num_hidden_layers", true, 1, 4096, &c->num_hidden_layers));
    MOLD_TRY(text_int(t, "num_attention_heads", true, 1, 4096, &c->num_attention_heads));
    MOLD_TRY(text_int(t, "num_key_value_heads", true, 1, 4096, &c->num_key_value_heads));
    MOLD_TRY(text_int(t, "intermediate_size", true, 1, MAX_DIM, &c->intermediate_size));
    MOLD_TRY(text_int(t, "vocab_size", true, 1, 1 << 24, &c->vocab_size));
    c->head_dim = 0;
    MOLD_TRY(text_int(t, "head_dim", false, 2, 4096, &c->head_dim));
    const char *w;
    const json_t *o = text_obj(t, "rms_norm_eps", &w);
    MOLD_TRY(get_num(o, "rms_norm_eps", w, true, 1e-30, 0.1, &c->rms_norm_eps));
    bool sliding = false;
    o = text_obj(t, "use_sliding_window", &w);
    MOLD_TRY(get_fixed_bool(o, "use_sliding_window", w, false, "only full attention is "
                            "implemented", &sliding));
    return text_rope(t, c);
}

static mold_status text_check(const char *w, mold_text_config *c) {
    if (!c->head_dim) {
        if (c->hidden_size % c->num_attention_heads)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'hidden_size': expected a multiple of "
                            "num_attention_heads %d, got %d", w, c->num_attention_heads,
                            c->hidden_size);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (c->head_dim % 2)
        return MOLD_ERR(MOLD_E_RANGE, "%s: field 'head_dim': expected even, got %d", w,
                        c->head_dim);
    if (c->num_attention_heads % c->num_key_value_heads)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'num_key_value_heads': expected a divisor of "
                        "num_attention_heads %d, got %d", w, c->num_attention_heads,
                        c->num_key_value_heads);
    int sum = c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2];
    if (sum * 2 != c->head_dim)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'mrope_section': expected sum == head_dim / "
                        "2 = %d, got %d", w, c->head_dim / 2, sum);
    return MOLD_OK;
}

mold_status mold_text_config_parse(const char *json, size_t len, const char *what,
                                   mold_text_config *out) {
    MOLD_ASSERT(out && what);
    memset(out, 0, sizeof(*out));
    json_t *root, *tc = NULL;
    MOLD_TRY(load_root(json, len, what, &root));
    text_src t = {.root = root, .what = what};
    mold_status s = mold_json_get_child(root, "text_config", what, false, JSON_OBJECT, &tc);
    t.tc = tc;
    snprintf(t.what_tc, sizeof(t.what_tc), "%s: text_config", what);
    if (!s)
        s = text_fields(&t, out);
    json_decref(root);
    return s ? s : text_check(what, out);
}

/* ---- scheduler ---- */

static mold_status sched_fields(const json_t *o, const char *w, mold_scheduler_config *c) {
    MOLD_TRY(get_int(o, "num_train_timesteps", w, true, 1, 1000000, &c->num_train_timesteps));
    MOLD_TRY(get_num(o, "shift", w, true, 1e-6, 1e6, &c->shift));
    MOLD_TRY(mold_json_get_bool(o, "use_dynamic_shifting", w, true, &c->use_dynamic_shifting));
    /* The dynamic-shift line mu(seq_len) needs all four; with a static shift
     * they are unused and optional. */
    bool dyn = c->use_dynamic_shifting;
    MOLD_TRY(get_num(o, "base_shift", w, dyn, -100, 100, &c->base_shift));
    MOLD_TRY(get_num(o, "max_shift", w, dyn, -100, 100, &c->max_shift));
    MOLD_TRY(get_int(o, "base_image_seq_len", w, dyn, 1, 1 << 30, &c->base_image_seq_len));
    MOLD_TRY(get_int(o, "max_image_seq_len", w, dyn, 1, 1 << 30, &c->max_image_seq_len));
    if (dyn && c->max_image_seq_len <= c->base_image_seq_len)
        return MOLD_ERR(MOLD_E_RANGE, "%s: field 'max_image_seq_len': expected > "
                        "base_image_seq_len %d, got %d", w, c->base_image_seq_len,
                        c->max_image_seq_len);
    c->shift_terminal = 0; /* null or absent: no terminal stretch */
    MOLD_TRY(get_num(o, "shift_terminal", w, false, 0, 0.999999, &c->shift_terminal));
    const char *tst = "exponential"; /* diffusers default */
    MOLD_TRY(mold_json_get_str(o, "time_shift_type", w, false, &tst));
    if (strcmp(tst, "exponential") && strcmp(tst, "linear"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: field 'time_shift_type': expected "
                        "exponential or linear, got '%s'", w, tst);
    c->exponential_time_shift = !strcmp(tst, "exponential");
    static const char *const why = "not used by Qwen-Image";
    MOLD_TRY(get_fixed_bool(o, "invert_sigmas", w, false, why, &c->invert_sigmas));
    MOLD_TRY(get_fixed_bool(o, "use_karras_sigmas", w, false, why, &c->use_karras_sigmas));
    MOLD_TRY(get_fixed_bool(o, "use_exponential_sigmas", w, false, why,
                            &c->use_exponential_sigmas));
    MOLD_TRY(get_fixed_bool(o, "use_beta_sigmas", w, false, why, &c->use_beta_sigmas));
    MOLD_TRY(get_fixed_bool(o, "stochastic_sampling", w, false, why, &c->stochastic_sampling));
    return MOLD_OK;
}

mold_status mold_scheduler_config_parse(const char *json, size_t len, const char *what,
                                        mold_scheduler_config *out) {
    MOLD_ASSERT(out && what);
    memset(out, 0, sizeof(*out));
    json_t *root;
    MOLD_TRY(load_root(json, len, what, &root));
    mold_status s = sched_fields(root, what, out);
    json_decref(root);
    return s;
}

/* ---- loading from files ---- */

typedef mold_status (*parse_fn)(const char *, size_t, const char *, void *);

static mold_status load_with(const char *path, parse_fn fn, void *out) {
    char *buf;
    size_t len;
    MOLD_TRY(mold_file_read_all(path, &buf, &len));
    mold_status s = fn(buf, len, path, out);
    free(buf);
    return s;
}

/* The parse functions differ only in the type of `out`; adapt them to one
 * signature for load_with and the component table. */
static mold_status parse_dit(const char *j, size_t n, const char *w, void *o) {
    return mold_dit_config_parse(j, n, w, o);
}
static mold_status parse_vae(const char *j, size_t n, const char *w, void *o) {
    return mold_vae_config_parse(j, n, w, o);
}
static mold_status parse_text(const char *j, size_t n, const char *w, void *o) {
    return mold_text_config_parse(j, n, w, o);
}
static mold_status parse_sched(const char *j, size_t n, const char *w, void *o) {
    return mold_scheduler_config_parse(j, n, w, o);
}

mold_status mold_dit_config_load(const char *path, mold_dit_config *out) {
    return load_with(path, parse_dit, out);
}
mold_status mold_vae_config_load(const char *path, mold_vae_config *out) {
    return load_with(path, parse_vae, out);
}
mold_status mold_text_config_load(const char *path, mold_text_config *out) {
    return load_with(path, parse_text, out);
}
mold_status mold_scheduler_config_load(const char *path, mold_scheduler_config *out) {
    return load_with(path, parse_sched, out);
}

/* ---- model directory ---- */

typedef struct component {
    const char *key;            /* model_index.json key == subdirectory */
    const char *classes[3];     /* accepted class names, NULL-terminated */
    const char *config;         /* config file inside the subdirectory; NULL: none */
    parse_fn parse;
    size_t dir_off, has_off, cfg_off; /* offsets into mold_modeldir */
} component;

#define MD_OFF(f) offsetof(mold_modeldir, f)
static const component COMPONENTS[] = {
    {"transformer", {"QwenImageTransformer2DModel"}, "config.json", parse_dit,
     MD_OFF(transformer_dir), MD_OFF(has_dit), MD_OFF(dit)},
    {"text_encoder", {"Qwen2_5_VLForConditionalGeneration"}, "config.json", parse_text,
     MD_OFF(text_encoder_dir), MD_OFF(has_text), MD_OFF(text)},
    {"vae", {"AutoencoderKLQwenImage"}, "config.json", parse_vae, MD_OFF(vae_dir),
     MD_OFF(has_vae), MD_OFF(vae)},
    {"scheduler", {"FlowMatchEulerDiscreteScheduler"}, "scheduler_config.json", parse_sched,
     MD_OFF(scheduler_dir), MD_OFF(has_scheduler), MD_OFF(scheduler)},
    {"tokenizer", {"Qwen2Tokenizer", "Qwen2TokenizerFast"}, NULL, NULL, MD_OFF(tokenizer_dir),
     0, 0},
};
#define N_COMPONENTS (sizeof(COMPONENTS) / sizeof(COMPONENTS[0]))

/* model_index.json entry: absent / null / [null, null] means "not shipped";
 * otherwise ["library", "Class"] with an accepted class. Sets *listed. */
static mold_status index_entry(const json_t *idx, const char *what, const component *c,
                               bool *listed) {
    const json_t *v = json_object_get(idx, c->key);
    *listed = false;
    if (!v || json_is_null(v))
        return MOLD_OK;
    const json_t *cls = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 ||
        (!json_is_string(cls) && !json_is_null(cls)))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field '%s': expected [\"library\", \"Class\"]",
                        what, c->key);
    if (json_is_null(cls))
        return MOLD_OK;
    const char *name = json_string_value(cls);
    for (int i = 0; c->classes[i]; i++)
        if (!strcmp(name, c->classes[i])) {
            *listed = true;
            return MOLD_OK;
        }
    return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: field '%s': expected class %s, got '%s'", what,
                    c->key, c->classes[0], name);
}

static bool file_in(const char *dir, const char *name) {
    char *p = mold_path_join(dir, name);
    bool ok = p && mold_path_exists(p);
    free(p);
    return ok;
}

/* Opens one listed component: its directory and (if any) its config. */
static mold_status open_component(mold_modeldir *md, const component *c) {
    char **dir = (char **)((char *)md + c->dir_off);
    *dir = mold_path_join(md->root, c->key);
    if (!*dir)
        return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    if (!mold_path_is_dir(*dir))
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: component '%s' is listed in model_index.json but "
                        "the directory is missing", *dir, c->key);
    if (!c->config) { /* tokenizer: either file set will do */
        if (!file_in(*dir, "tokenizer.json") &&
            !(file_in(*dir, "vocab.json") && file_in(*dir, "merges.txt")))
            return MOLD_ERR(MOLD_E_NOTFOUND, "%s: expected tokenizer.json or vocab.json + "
                            "merges.txt", *dir);
        return MOLD_OK;
    }
    char *cfg = mold_path_join(*dir, c->config);
    if (!cfg)
        return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    mold_status s = load_with(cfg, c->parse, (char *)md + c->cfg_off);
    free(cfg);
    if (!s)
        *(bool *)((char *)md + c->has_off) = true;
    return s;
}

/* The components must agree with each other where their shapes meet. */
static mold_status cross_check(const mold_modeldir *md) {
    if (md->has_dit && md->has_text && md->dit.joint_attention_dim != md->text.hidden_size)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: transformer/config.json field 'joint_attention_dim' "
                        "%d: expected text_encoder hidden_size %d", md->root,
                        md->dit.joint_attention_dim, md->text.hidden_size);
    if (md->has_dit && md->has_vae && md->dit.out_channels != md->vae.z_dim)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: transformer/config.json field 'out_channels' %d: "
                        "expected vae z_dim %d", md->root, md->dit.out_channels, md->vae.z_dim);
    return MOLD_OK;
}

static mold_status modeldir_fill(const char *path, mold_modeldir *md) {
    md->root = strdup(path);
    if (!md->root)
        return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    if (!mold_path_is_dir(path))
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: not a directory", path);
    char *ipath = mold_path_join(path, "model_index.json");
    if (!ipath)
        return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    json_t *idx = NULL;
    mold_status s = mold_json_load_file(ipath, &idx);
    if (!s && !json_is_object(idx))
        s = MOLD_ERR(MOLD_E_FORMAT, "%s: expected a JSON object", ipath);
    for (size_t i = 0; i < N_COMPONENTS && !s; i++) {
        bool listed;
        s = index_entry(idx, ipath, &COMPONENTS[i], &listed);
        if (!s && listed)
            s = open_component(md, &COMPONENTS[i]);
    }
    json_decref(idx);
    free(ipath);
    return s ? s : cross_check(md);
}

mold_status mold_modeldir_open(const char *path, mold_modeldir *out) {
    MOLD_ASSERT(path && out);
    memset(out, 0, sizeof(*out));
    mold_status s = modeldir_fill(path, out);
    if (s)
        mold_modeldir_close(out);
    return s;
}

void mold_modeldir_close(mold_modeldir *md) {
    if (!md)
        return;
    free(md->root);
    free(md->transformer_dir);
    free(md->text_encoder_dir);
    free(md->vae_dir);
    free(md->tokenizer_dir);
    free(md->scheduler_dir);
    memset(md, 0, sizeof(*md));
}
