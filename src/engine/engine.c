/*
 * engine.c — opening a model and keeping its components resident.
 *
 * mold_engine_open() validates the model directory (configs) and creates the
 * backend but loads no weights: each component is mapped and uploaded the
 * first time a request needs it (mold_engine_need_*) and then stays resident
 * until mold_engine_close(), so a server or a --batch run never reloads.
 * Component paths default to the diffusers layout and can be overridden one
 * by one (--transformer FILE.gguf ...).
 */
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/clock.h"
#include "engine_impl.h"
#include "formats/gguf.h"
#include "models/qwen2_tokenizer_gguf.h"

mold_engine_options mold_engine_options_default(void) {
    mold_engine_options o;
    memset(&o, 0, sizeof o);
    o.device = MOLD_DEVICE_CPU;
    return o;
}

const char *mold_last_error(void) { return mold_error_message(); }

const char *mold_engine_model_name(const mold_engine *e) { return e->name; }

/* Model name: the last path component of the model directory (or of the
 * transformer file), without extension. */
static char *model_name_from(const char *path) {
    if (!path) return strdup("model");
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    char *name = strndup(path + b, n - b);
    if (!name) return NULL;
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
    /* the diffusers "model" folder of a bundled model: use its parent's name */
    if (!strcmp(name, "model") && b > 1) {
        size_t pe = b - 1, pb = pe;
        while (pb > 0 && path[pb - 1] != '/') pb--;
        if (pe > pb) {
            free(name);
            name = strndup(path + pb, pe - pb);
        }
    }
    return name;
}

/* The published Qwen-Image / Qwen-Image-2512 scheduler config (spec 6.1),
 * used when no model directory gives one (components passed on their own). */
static const char QWENIMAGE_SCHEDULER_JSON[] =
    "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"num_train_timesteps\": 1000, "
    "\"shift\": 1.0, \"use_dynamic_shifting\": true, \"base_shift\": 0.5, \"max_shift\": 0.9, "
    "\"base_image_seq_len\": 256, \"max_image_seq_len\": 8192, \"shift_terminal\": 0.02, "
    "\"time_shift_type\": \"exponential\", \"invert_sigmas\": false, "
    "\"stochastic_sampling\": false, \"use_karras_sigmas\": false, "
    "\"use_exponential_sigmas\": false, \"use_beta_sigmas\": false}";

mold_result_code mold_engine_open(const mold_engine_options *opt, mold_engine **out) {
    *out = NULL;
    if (!opt->model_dir && !(opt->transformer_path && opt->text_encoder_path && opt->vae_path))
        return MOLD_ERR(MOLD_E_INVALID, "model: give a model directory, or --transformer, "
                        "--text-encoder and --vae");
    mold_engine *e = calloc(1, sizeof *e);
    if (!e) return MOLD_ERR(MOLD_E_NOMEM, "engine: out of memory");
    e->opt = *opt;
    mold_status st = MOLD_OK;
    if (opt->model_dir) {
        st = mold_modeldir_open(opt->model_dir, &e->md);
        if (st != MOLD_OK) goto fail;
    }
    if (!e->md.has_scheduler) {
        st = mold_scheduler_config_parse(QWENIMAGE_SCHEDULER_JSON, sizeof QWENIMAGE_SCHEDULER_JSON - 1,
                                         "built-in Qwen-Image scheduler config", &e->md.scheduler);
        if (st != MOLD_OK) goto fail;
        e->md.has_scheduler = true;
    }
    e->name = model_name_from(opt->model_dir ? opt->model_dir : opt->transformer_path);
    if (!e->name) {
        st = MOLD_ERR(MOLD_E_NOMEM, "engine: out of memory");
        goto fail;
    }
    if (opt->device == MOLD_DEVICE_CUDA)
        st = mold_backend_cuda_create(opt->cuda_device, &e->be);
    else
        st = mold_backend_cpu_create(opt->n_threads, &e->be);
    if (st != MOLD_OK) goto fail;
    *out = e;
    return MOLD_OK;
fail:
    mold_engine_close(e);
    return st;
}

void mold_engine_close(mold_engine *e) {
    if (!e) return;
    mold_prompt_cache_clear(e);
    mold_vae_free(e->vae);
    mold_dit_free(e->dit);
    mold_text_encoder_free(e->te);
    mold_tokenizer_free(e->tok);
    mold_container_close(&e->c_vae);
    mold_container_close(&e->c_dit);
    mold_container_close(&e->c_text);
    mold_backend_free(e->be_host);
    mold_backend_free(e->be);
    mold_modeldir_close(&e->md);
    free(e->name);
    free(e);
}

/* Path of a component: the override when given, else <model>/<sub>. */
static mold_status component_path(mold_engine *e, const char *override, const char *dir,
                                  const char *what, char **out) {
    *out = NULL;
    if (override) {
        *out = strdup(override);
    } else if (dir) {
        *out = strdup(dir);
    } else {
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: no %s in %s and no override given", what, what,
                        e->opt.model_dir ? e->opt.model_dir : "(no model directory)");
    }
    return *out ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "out of memory");
}

/* Opens the text encoder's container if it is not open yet (the tokenizer
 * of a GGUF text encoder lives in its metadata). */
static mold_status open_text_container(mold_engine *e) {
    if (e->c_text.path) return MOLD_OK;
    char *path;
    MOLD_TRY(component_path(e, e->opt.text_encoder_path, e->md.text_encoder_dir, "text_encoder",
                            &path));
    mold_status st = mold_container_open(path, &e->c_text);
    free(path);
    return st;
}

static int has_gguf_suffix(const char *p) {
    size_t n = p ? strlen(p) : 0;
    return n >= 5 && !strcmp(p + n - 5, ".gguf");
}

/* Tokenizer files (--tokenizer, <model>/tokenizer) win; without them a GGUF
 * text encoder's tokenizer.ggml.* metadata is used (issue 8). */
mold_status mold_engine_need_tokenizer(mold_engine *e) {
    if (e->tok) return MOLD_OK;
    if (!e->opt.tokenizer_path && !e->md.tokenizer_dir &&
        has_gguf_suffix(e->opt.text_encoder_path)) {
        MOLD_TRY(open_text_container(e));
        if (e->c_text.gguf) return mold_tokenizer_from_gguf(e->c_text.gguf, &e->tok);
    }
    char *path;
    MOLD_TRY(component_path(e, e->opt.tokenizer_path, e->md.tokenizer_dir, "tokenizer", &path));
    mold_status st = mold_tokenizer_load(path, &e->tok);
    free(path);
    return st;
}

mold_status mold_engine_open_text(mold_engine *e) {
    if (e->text_open) return MOLD_OK;
    mold_status st = open_text_container(e);
    /* A GGUF text encoder carries its own hyper-parameters; they become the
     * engine's effective text config (md.text is what generate.c reads). */
    if (st == MOLD_OK && e->c_text.gguf) {
        st = mold_gguf_text_config(e->c_text.gguf, &e->md.text);
        if (st == MOLD_OK) e->md.has_text = true;
    } else if (st == MOLD_OK && !e->md.has_text) {
        st = MOLD_ERR(MOLD_E_NOTFOUND, "text_encoder: no config.json (give a model directory)");
    }
    if (st != MOLD_OK) {
        mold_container_close(&e->c_text);
        return st;
    }
    e->text_open = true;
    return MOLD_OK;
}

/* The plan's bf16 hold (residency.c sets hold_want) is set on the device
 * backend for one load and reset after; true when it was set. */
static bool hold_begin(mold_engine *e, mold_plan_comp c, bool host) {
    if (host || e->hold_want[c] != MOLD_HOLD_BF16 || !e->be->i->set_weight_hold) return false;
    return e->be->i->set_weight_hold(e->be, MOLD_BF16) == MOLD_OK;
}

static void hold_end(mold_engine *e, mold_plan_comp c, bool held, mold_status st) {
    if (held) e->be->i->set_weight_hold(e->be, MOLD_DTYPE_INVALID);
    e->hold_loaded[c] = held && st == MOLD_OK ? MOLD_HOLD_BF16 : MOLD_HOLD_STORED;
}

mold_status mold_engine_need_text_at(mold_engine *e, bool host) {
    if (e->te && e->te_on_host == host) return MOLD_OK;
    mold_engine_unload_text(e);
    double t0 = mold_now_ms();
    MOLD_TRY(mold_engine_open_text(e));
    if (host && !e->be_host) MOLD_TRY(mold_backend_cpu_create(e->opt.n_threads, &e->be_host));
    bool held = hold_begin(e, MOLD_COMP_TEXT, host);
    mold_status st = mold_text_encoder_load(host ? e->be_host : e->be, &e->md.text,
                                            &e->c_text.src, &e->te);
    hold_end(e, MOLD_COMP_TEXT, held, st);
    MOLD_TRY(st);
    e->te_on_host = host;
    e->n_loads_text++;
    MOLD_LOGI("loaded text encoder%s%s in %.0f ms", host ? " on the host CPU" : "",
              held ? " (matrices held as bf16)" : "", mold_now_ms() - t0);
    return MOLD_OK;
}

mold_status mold_engine_need_text(mold_engine *e) {
    return mold_engine_need_text_at(e, e->te ? e->te_on_host : false);
}

mold_status mold_engine_open_dit(mold_engine *e) {
    if (e->dit_open) return MOLD_OK;
    char *path;
    MOLD_TRY(component_path(e, e->opt.transformer_path, e->md.transformer_dir, "transformer",
                            &path));
    mold_status st = mold_container_open(path, &e->c_dit);
    free(path);
    /* GGUF transformers store no config: without config.json derive it from
     * the tensor shapes (it becomes the effective md.dit) */
    if (st == MOLD_OK && !e->md.has_dit && e->c_dit.gguf) {
        st = mold_dit_config_from_source(&e->c_dit.src, &e->md.dit);
        if (st == MOLD_OK) e->md.has_dit = true;
    } else if (st == MOLD_OK && !e->md.has_dit) {
        st = MOLD_ERR(MOLD_E_NOTFOUND, "transformer: no config.json (give a model directory)");
    }
    if (st != MOLD_OK) {
        mold_container_close(&e->c_dit);
        return st;
    }
    e->dit_open = true;
    return MOLD_OK;
}

mold_status mold_engine_need_dit(mold_engine *e) {
    if (e->dit) return MOLD_OK;
    double t0 = mold_now_ms();
    MOLD_TRY(mold_engine_open_dit(e));
    bool held = hold_begin(e, MOLD_COMP_DIT, false);
    mold_status st = mold_dit_load(e->be, &e->md.dit, &e->c_dit.src, &e->dit);
    hold_end(e, MOLD_COMP_DIT, held, st);
    MOLD_TRY(st);
    e->n_loads_dit++;
    MOLD_LOGI("loaded transformer%s in %.0f ms", held ? " (matrices held as bf16)" : "",
              mold_now_ms() - t0);
    return MOLD_OK;
}

/* "<dir>/config.json" for a directory, else the file's directory's one. */
static char *config_next_to(const char *path) {
    if (mold_path_is_dir(path)) return mold_path_join(path, "config.json");
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup("config.json");
    char *dir = strndup(path, (size_t)(slash - path));
    char *cfg = dir ? mold_path_join(*dir ? dir : "/", "config.json") : NULL;
    free(dir);
    return cfg;
}

mold_status mold_engine_open_vae(mold_engine *e) {
    if (e->vae_open) return MOLD_OK;
    char *path;
    MOLD_TRY(component_path(e, e->opt.vae_path, e->md.vae_dir, "vae", &path));
    mold_status st = mold_container_open(path, &e->c_vae);
    /* --vae on its own: its config.json sits in the directory given (or the
     * file's directory), as in a diffusers vae/ folder */
    if (st == MOLD_OK && !e->md.has_vae) {
        char *cfg = config_next_to(path);
        if (!cfg) {
            st = MOLD_ERR(MOLD_E_NOMEM, "out of memory");
        } else if (mold_path_exists(cfg)) {
            st = mold_vae_config_load(cfg, &e->md.vae);
            if (st == MOLD_OK) e->md.has_vae = true;
        } else {
            st = MOLD_ERR(MOLD_E_NOTFOUND, "vae: no config.json next to %s (give a model "
                          "directory or a diffusers vae/ folder)", path);
        }
        free(cfg);
    }
    free(path);
    if (st != MOLD_OK) {
        mold_container_close(&e->c_vae);
        return st;
    }
    e->vae_open = true;
    return MOLD_OK;
}

mold_status mold_engine_need_vae(mold_engine *e) {
    if (e->vae) return MOLD_OK;
    double t0 = mold_now_ms();
    MOLD_TRY(mold_engine_open_vae(e));
    MOLD_TRY(mold_vae_load(e->be, &e->md.vae, &e->c_vae.src, &e->vae));
    e->n_loads_vae++;
    MOLD_LOGI("loaded VAE in %.0f ms", mold_now_ms() - t0);
    return MOLD_OK;
}

/* ---- unloading (the plan frees weights between stages) ---- */

void mold_engine_unload_text(mold_engine *e) {
    if (!e->te) return;
    mold_text_encoder_free(e->te);
    e->te = NULL;
    e->n_unloads_text++;
    MOLD_LOGI("unloaded text encoder%s", e->te_on_host ? " (host)" : "");
}

void mold_engine_unload_dit(mold_engine *e) {
    if (!e->dit) return;
    mold_dit_free(e->dit);
    e->dit = NULL;
    e->n_unloads_dit++;
    MOLD_LOGI("unloaded transformer");
}

void mold_engine_unload_vae(mold_engine *e) {
    if (!e->vae) return;
    mold_vae_free(e->vae);
    e->vae = NULL;
    e->n_unloads_vae++;
    MOLD_LOGI("unloaded VAE");
}
