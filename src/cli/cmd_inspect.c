/*
 * cmd_inspect.c — `mold inspect PATH [--json] [--tensors]`.
 *
 * Shows what a model directory (diffusers layout) or a single safetensors
 * file / index / directory holds: per component the tensor count, parameter
 * count, bytes, dtypes and shard files, plus the key config values.
 *
 * One report is built as a JSON document first; `--json` prints it as is and
 * the text form is rendered from the same document, so the two never
 * disagree. Only headers are read: tensor data is never touched (the files
 * are mapped, nothing is paged in beyond the headers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"          // defines: mold_path_join, mold_path_exists
#include "base/json.h"        // defines: jansson
#include "base/status.h"
#include "formats/modeldir.h" // defines: mold_modeldir_open and the config structs
#include "formats/safetensors.h"
#include "commands.h"

/* ---- building the report ---- */

/* Adds a checked child; jansson's *_set_new only fails on OOM, which the
 * final json_dumps would surface anyway, so the result is not propagated. */
static void put(json_t *o, const char *k, json_t *v) { json_object_set_new(o, k, v); }

static json_t *int_array(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Tensor statistics of an open set into component object `c`. */
static void add_tensor_stats(json_t *c, const mold_safetensors *st, bool list) {
    size_t n = mold_safetensors_count(st);
    long long params = 0, bytes = 0;
    long long per_dtype[MOLD_DTYPE_COUNT] = {0};
    json_t *shards = json_array(), *tensors = list ? json_array() : NULL;
    const char *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const mold_tensor *t = mold_safetensors_at(st, i);
        params += mold_tensor_nelems(t);
        bytes += (long long)t->n_bytes;
        per_dtype[t->dtype]++;
        const char *file = mold_safetensors_tensor_file(st, i);
        if (!last || strcmp(last, file)) /* tensors are grouped by shard */
            json_array_append_new(shards, json_string(base_name(file)));
        last = file;
        if (list) {
            json_t *e = json_object();
            put(e, "name", json_string(t->name));
            put(e, "dtype", json_string(mold_dtype_name(t->dtype)));
            put(e, "shape", json_array());
            for (int d = 0; d < t->n_dims; d++)
                json_array_append_new(json_object_get(e, "shape"), json_integer(t->shape[d]));
            put(e, "file", json_string(base_name(file)));
            json_array_append_new(tensors, e);
        }
    }
    json_t *dt = json_object();
    for (int d = 0; d < MOLD_DTYPE_COUNT; d++)
        if (per_dtype[d])
            put(dt, mold_dtype_name((mold_dtype)d), json_integer(per_dtype[d]));
    put(c, "tensors", json_integer((json_int_t)n));
    put(c, "parameters", json_integer(params));
    put(c, "bytes", json_integer(bytes));
    put(c, "dtypes", dt);
    put(c, "shards", shards);
    if (tensors)
        put(c, "tensor_list", tensors);
}

/* Opens the weights at `path` and adds their statistics to `c`. */
static mold_status add_weights(json_t *c, const char *path, bool list) {
    mold_safetensors *st;
    MOLD_TRY(mold_safetensors_open(path, &st));
    add_tensor_stats(c, st, list);
    mold_safetensors_close(st);
    return MOLD_OK;
}

static json_t *dit_json(const mold_dit_config *d) {
    json_t *o = json_object();
    put(o, "num_layers", json_integer(d->num_layers));
    put(o, "num_attention_heads", json_integer(d->num_attention_heads));
    put(o, "attention_head_dim", json_integer(d->attention_head_dim));
    put(o, "joint_attention_dim", json_integer(d->joint_attention_dim));
    put(o, "axes_dims_rope", int_array(d->axes_dims_rope, 3));
    put(o, "patch_size", json_integer(d->patch_size));
    put(o, "in_channels", json_integer(d->in_channels));
    put(o, "out_channels", json_integer(d->out_channels));
    return o;
}

static json_t *text_json(const mold_text_config *t) {
    json_t *o = json_object();
    put(o, "hidden_size", json_integer(t->hidden_size));
    put(o, "num_hidden_layers", json_integer(t->num_hidden_layers));
    put(o, "num_attention_heads", json_integer(t->num_attention_heads));
    put(o, "num_key_value_heads", json_integer(t->num_key_value_heads));
    put(o, "head_dim", json_integer(t->head_dim));
    put(o, "intermediate_size", json_integer(t->intermediate_size));
    put(o, "vocab_size", json_integer(t->vocab_size));
    put(o, "rms_norm_eps", json_real(t->rms_norm_eps));
    put(o, "rope_theta", json_real(t->rope_theta));
    put(o, "mrope_section", int_array(t->mrope_section, 3));
    return o;
}

static json_t *vae_json(const mold_vae_config *v) {
    json_t *o = json_object(), *td = json_array();
    put(o, "base_dim", json_integer(v->base_dim));
    put(o, "z_dim", json_integer(v->z_dim));
    put(o, "num_res_blocks", json_integer(v->num_res_blocks));
    put(o, "dim_mult", int_array(v->dim_mult, v->n_dim_mult));
    for (int i = 0; i < v->n_temperal_downsample; i++)
        json_array_append_new(td, json_boolean(v->temperal_downsample[i]));
    put(o, "temperal_downsample", td);
    return o;
}

static json_t *sched_json(const mold_scheduler_config *s) {
    json_t *o = json_object();
    put(o, "num_train_timesteps", json_integer(s->num_train_timesteps));
    put(o, "shift", json_real(s->shift));
    put(o, "use_dynamic_shifting", json_boolean(s->use_dynamic_shifting));
    if (s->use_dynamic_shifting) {
        put(o, "base_shift", json_real(s->base_shift));
        put(o, "max_shift", json_real(s->max_shift));
        put(o, "base_image_seq_len", json_integer(s->base_image_seq_len));
        put(o, "max_image_seq_len", json_integer(s->max_image_seq_len));
    }
    put(o, "shift_terminal", json_real(s->shift_terminal));
    put(o, "time_shift_type", json_string(s->exponential_time_shift ? "exponential" : "linear"));
    return o;
}

/* One component with weights: dir, config and tensor statistics. */
static mold_status add_component(json_t *comps, const char *name, const char *dir,
                                 json_t *config, bool weights, bool list) {
    json_t *c = json_object();
    put(comps, name, c);
    put(c, "dir", json_string(dir));
    if (config)
        put(c, "config", config);
    if (!weights)
        return MOLD_OK;
    mold_status s = add_weights(c, dir, list);
    if (s)
        mold_error_prefix("%s", name);
    return s;
}

static mold_status report_modeldir(const char *path, bool list, json_t *r) {
    mold_modeldir md;
    MOLD_TRY(mold_modeldir_open(path, &md));
    json_t *comps = json_object();
    put(r, "kind", json_string("model"));
    put(r, "components", comps);
    mold_status s = MOLD_OK;
    if (md.has_dit)
        s = add_component(comps, "transformer", md.transformer_dir, dit_json(&md.dit), true,
                          list);
    if (!s && md.has_text)
        s = add_component(comps, "text_encoder", md.text_encoder_dir, text_json(&md.text),
                          true, list);
    if (!s && md.has_vae)
        s = add_component(comps, "vae", md.vae_dir, vae_json(&md.vae), true, list);
    if (!s && md.has_scheduler)
        s = add_component(comps, "scheduler", md.scheduler_dir, sched_json(&md.scheduler),
                          false, list);
    if (!s && md.tokenizer_dir)
        s = add_component(comps, "tokenizer", md.tokenizer_dir, NULL, false, list);
    mold_modeldir_close(&md);
    return s;
}

/* Sums tensors, parameters and bytes over all components into r.totals. */
static void add_totals(json_t *r) {
    long long sum[3] = {0};
    static const char *const keys[3] = {"tensors", "parameters", "bytes"};
    const char *name;
    json_t *c;
    json_object_foreach(json_object_get(r, "components"), name, c)
        for (int k = 0; k < 3; k++)
            sum[k] += json_integer_value(json_object_get(c, keys[k]));
    json_t *t = json_object();
    for (int k = 0; k < 3; k++)
        put(t, keys[k], json_integer(sum[k]));
    put(r, "totals", t);
}

static mold_status build_report(const char *path, bool list, json_t *r) {
    put(r, "path", json_string(path));
    char *idx = mold_path_join(path, "model_index.json");
    bool is_model = idx && mold_path_is_dir(path) && mold_path_exists(idx);
    free(idx);
    mold_status s;
    if (is_model) {
        s = report_modeldir(path, list, r);
    } else { /* a bare checkpoint: one pseudo-component */
        json_t *comps = json_object();
        put(r, "kind", json_string("safetensors"));
        put(r, "components", comps);
        json_t *c = json_object();
        put(comps, "weights", c);
        put(c, "dir", json_string(path));
        s = add_weights(c, path, list);
    }
    if (!s)
        add_totals(r);
    return s;
}

/* ---- text rendering ---- */

static void print_value(const json_t *v) {
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
    /* arrays read better with spaces: [8,12,12] -> [8, 12, 12] */
    for (char *p = s; p && *p; p++) {
        putchar(*p);
        if (*p == ',' && json_is_array(v))
            putchar(' ');
    }
    free(s);
}

static void print_count(const char *label, long long n, const char *unit) {
    printf("  %-11s %lld", label, n);
    if (n >= 1000000000LL)
        printf(" (%.2f G%s)", (double)n / 1e9, unit);
    else if (n >= 1000000LL)
        printf(" (%.2f M%s)", (double)n / 1e6, unit);
    else if (n >= 1000LL)
        printf(" (%.2f k%s)", (double)n / 1e3, unit);
    putchar('\n');
}

static void print_component(const char *name, const json_t *c) {
    printf("%s  (%s)\n", name, json_string_value(json_object_get(c, "dir")));
    const json_t *v;
    if ((v = json_object_get(c, "tensors"))) {
        printf("  %-11s %lld\n", "tensors", (long long)json_integer_value(v));
        print_count("parameters", json_integer_value(json_object_get(c, "parameters")), "");
        print_count("bytes", json_integer_value(json_object_get(c, "bytes")), "B");
        printf("  %-11s", "dtypes");
        const char *k;
        json_t *x;
        const char *sep = " ";
        json_object_foreach(json_object_get(c, "dtypes"), k, x) {
            printf("%s%s x %lld", sep, k, (long long)json_integer_value(x));
            sep = ", ";
        }
        const json_t *sh = json_object_get(c, "shards");
        printf("\n  %-11s %zu:", "shards", json_array_size(sh));
        for (size_t i = 0; i < json_array_size(sh); i++)
            printf(" %s", json_string_value(json_array_get(sh, i)));
        putchar('\n');
    }
    if ((v = json_object_get(c, "config"))) {
        printf("  config     ");
        const char *k;
        json_t *x;
        int first = 1;
        json_object_foreach((json_t *)v, k, x) {
            printf("%s%s ", first ? "" : ", ", k);
            print_value(x);
            first = 0;
        }
        putchar('\n');
    }
    const json_t *tl = json_object_get(c, "tensor_list");
    for (size_t i = 0; i < json_array_size(tl); i++) {
        const json_t *t = json_array_get(tl, i);
        printf("    %-60s %-5s ", json_string_value(json_object_get(t, "name")),
               json_string_value(json_object_get(t, "dtype")));
        print_value(json_object_get(t, "shape"));
        printf("  %s\n", json_string_value(json_object_get(t, "file")));
    }
}

static void print_report(const json_t *r) {
    printf("%s: %s\n\n", json_string_value(json_object_get(r, "kind")),
           json_string_value(json_object_get(r, "path")));
    const char *name;
    json_t *c;
    json_object_foreach(json_object_get(r, "components"), name, c) {
        print_component(name, c);
        putchar('\n');
    }
    const json_t *t = json_object_get(r, "totals");
    printf("total\n  %-11s %lld\n", "tensors",
           (long long)json_integer_value(json_object_get(t, "tensors")));
    print_count("parameters", json_integer_value(json_object_get(t, "parameters")), "");
    print_count("bytes", json_integer_value(json_object_get(t, "bytes")), "B");
}

/* ---- command ---- */

static void usage(FILE *f) {
    fprintf(f, "usage: mold inspect PATH [--json] [--tensors]\n"
               "  PATH       a model directory (with model_index.json), or a .safetensors file,\n"
               "             *.safetensors.index.json, or a directory holding one of those\n"
               "  --json     print one JSON object instead of text\n"
               "  --tensors  also list every tensor (name, dtype, shape, file)\n");
}

int mold_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool as_json = false, list = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            as_json = true;
        } else if (!strcmp(argv[i], "--tensors")) {
            list = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "mold inspect: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    json_t *r = json_object();
    if (!r)
        return mold_cli_fail("inspect");
    mold_status s = build_report(path, list, r);
    if (s) {
        json_decref(r);
        return mold_cli_fail("inspect");
    }
    if (as_json) {
        char *text = json_dumps(r, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        if (!text) {
            json_decref(r);
            fprintf(stderr, "mold: inspect: out of memory\n");
            return 1;
        }
        printf("%s\n", text);
        free(text);
    } else {
        print_report(r);
    }
    json_decref(r);
    return fflush(stdout) == 0 ? 0 : 1;
}
