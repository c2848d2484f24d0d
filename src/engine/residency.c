/*
 * residency.c — the planner's inputs gathered, and its plan carried out:
 * which components are loaded where, stage by stage.
 *
 *   mold_engine_plan()        facts (configs, weight bytes as held) + a device
 *                             snapshot (memory_stats, /proc/meminfo) + the
 *                             engine's policy -> mold_plan_make(), logged as
 *                             one JSON line ("plan {...}");
 *   mold_engine_enter_stage() before each stage: unload what the plan does not
 *                             keep live there, load what it needs;
 *   mold_engine_stage_done()  logs the device peak measured against the one
 *                             predicted (CUDA), the check of DESIGN.md
 *                             principle 2;
 *   mold_engine_leave()       unloads what the plan does not keep.
 *
 * Weight bytes. The transformer and the text encoder are summed over their
 * containers' tensors as the backends hold them: matrices in their stored
 * dtype (f16 becomes bf16 on CUDA: same size), vectors as f32; the text
 * encoder's unused lm_head and vision tower are skipped. The VAE comes from
 * mold_vae_weight_bytes() for its conv dtype (its loader slices the 3-D
 * kernels). On CUDA each weight is its own cudaMalloc, modelled as rounding
 * buffers of 1 MiB or more up to 2 MiB and smaller ones to 512 bytes; on an
 * H100 the full-size predictions came out 0.5-1.5 % above the measured peaks
 * (scripts/gpu-plan-check.sh). bytes_bf16 counts block-format matrices as
 * bf16 instead (offered when the backend has set_weight_hold); a component
 * loaded with a bf16 hold reports those bytes while resident.
 *
 * Ownership: nothing here owns memory beyond a call; the engine owns the
 * models (engine.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "engine_impl.h"
#include "formats/gguf.h"

#define MIB ((uint64_t)1 << 20)

/* ---- weight bytes ---- */

/* Device bytes one weight buffer of `bytes` takes (see the header). */
static uint64_t held(uint64_t bytes, bool cuda) {
    if (!cuda) return bytes;
    uint64_t g = bytes >= MIB ? 2 * MIB : 512;
    return (bytes + g - 1) / g * g;
}

/* Text-encoder tensors the loader never reads. */
static bool unused_text_tensor(const char *name) {
    return strstr(name, "visual") || strstr(name, "lm_head") || !strcmp(name, "output.weight");
}

typedef struct tally {
    uint64_t bytes;
    uint64_t bytes_bf16;                 /* block-format matrices as bf16 */
    uint64_t by_dtype[MOLD_DTYPE_COUNT]; /* matrix bytes per dtype */
} tally;

static void tally_add(tally *t, const mold_tensor *x, bool cuda) {
    if (x->n_dims >= 2) {
        const mold_dtype_info *info = mold_dtype_get(x->dtype);
        t->bytes += held(x->n_bytes, cuda);
        t->bytes_bf16 += info && info->is_quant ? held((uint64_t)mold_tensor_nelems(x) * 2, cuda)
                                                : held(x->n_bytes, cuda);
        if ((unsigned)x->dtype < MOLD_DTYPE_COUNT) t->by_dtype[x->dtype] += x->n_bytes;
    } else {
        t->bytes += held((uint64_t)mold_tensor_nelems(x) * sizeof(float), cuda);
        t->bytes_bf16 += held((uint64_t)mold_tensor_nelems(x) * sizeof(float), cuda);
    }
}

static mold_dtype dominant(const tally *t) {
    mold_dtype best = MOLD_BF16;
    for (int d = 0; d < MOLD_DTYPE_COUNT; d++)
        if (t->by_dtype[d] > t->by_dtype[best]) best = (mold_dtype)d;
    /* CUDA holds f16 matrices as bf16 (never f16 activations) */
    return best == MOLD_F16 ? MOLD_BF16 : best;
}

/* Sums every tensor of a container (skipping the text encoder's unused
 * ones when `text`). */
static void container_weights(const mold_container *c, bool text, bool cuda,
                              mold_plan_weights *w) {
    tally t;
    memset(&t, 0, sizeof t);
    if (c->gguf) {
        for (size_t i = 0; i < mold_gguf_tensor_count(c->gguf); i++) {
            const mold_tensor *x = mold_gguf_tensor_at(c->gguf, i);
            if (!(text && unused_text_tensor(x->name))) tally_add(&t, x, cuda);
        }
    } else if (c->st) {
        for (size_t i = 0; i < mold_safetensors_count(c->st); i++) {
            const mold_tensor *x = mold_safetensors_at(c->st, i);
            if (!(text && x->name && unused_text_tensor(x->name))) tally_add(&t, x, cuda);
        }
    }
    w->bytes = t.bytes;
    w->bytes_bf16 = t.bytes_bf16 > t.bytes ? t.bytes_bf16 : 0;
    w->matrix_dtype = dominant(&t);
}

/* The VAE from the model's count for its conv dtype (the first decoder
 * kernel's). */
static mold_status vae_weights(const mold_container *c, const mold_vae_config *cfg, bool cuda,
                               mold_plan_weights *w) {
    mold_dtype dt = MOLD_DTYPE_INVALID;
    uint64_t rounding = 0; /* what each kernel's own allocation adds */
    size_t n = c->st ? mold_safetensors_count(c->st) : 0;
    for (size_t i = 0; i < n; i++) {
        const mold_tensor *x = mold_safetensors_at(c->st, i);
        if (x->n_dims < 4 || !x->name || strncmp(x->name, "decoder.", 8)) continue;
        if (dt == MOLD_DTYPE_INVALID) dt = x->dtype;
        /* 3-D kernels keep their last temporal tap: a third of the bytes */
        uint64_t b = x->n_dims == 5 && x->shape[2] > 0 ? x->n_bytes / (uint64_t)x->shape[2]
                                                       : x->n_bytes;
        rounding += held(b, cuda) - b;
    }
    if (dt == MOLD_DTYPE_INVALID) { /* not a diffusers/Wan safetensors: the whole file */
        container_weights(c, false, cuda, w);
        return MOLD_OK;
    }
    MOLD_TRY(mold_vae_weight_bytes(cfg, dt == MOLD_F16 ? MOLD_BF16 : dt, &w->bytes));
    w->bytes += rounding; /* vectors are small: their rounding is left out */
    w->matrix_dtype = dt == MOLD_F16 ? MOLD_BF16 : dt;
    return MOLD_OK;
}

static bool engine_cuda(const mold_engine *e) { return e->opt.device == MOLD_DEVICE_CUDA; }

mold_status mold_engine_facts(mold_engine *e, mold_model_facts *out) {
    memset(out, 0, sizeof *out);
    bool cuda = engine_cuda(e);
    MOLD_TRY(mold_engine_open_text(e));
    MOLD_TRY(mold_engine_open_dit(e));
    MOLD_TRY(mold_engine_open_vae(e));
    out->text = e->md.text;
    out->dit = e->md.dit;
    out->vae = e->md.vae;
    container_weights(&e->c_text, true, cuda, &out->w[MOLD_COMP_TEXT]);
    container_weights(&e->c_dit, false, cuda, &out->w[MOLD_COMP_DIT]);
    MOLD_TRY(vae_weights(&e->c_vae, &e->md.vae, cuda, &out->w[MOLD_COMP_VAE]));
    out->w[MOLD_COMP_TEXT].resident = e->te != NULL;
    out->w[MOLD_COMP_TEXT].on_host = e->te && e->te_on_host;
    out->w[MOLD_COMP_DIT].resident = e->dit != NULL;
    out->w[MOLD_COMP_VAE].resident = e->vae != NULL;
    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
        mold_plan_weights *w = &out->w[c];
        if (!cuda || !e->be->i->set_weight_hold) w->bytes_bf16 = 0; /* not offered */
        w->hold = w->resident ? e->hold_loaded[c] : MOLD_HOLD_STORED;
        if (w->hold == MOLD_HOLD_BF16 && w->bytes_bf16) w->bytes = w->bytes_bf16;
    }
    return MOLD_OK;
}

/* ---- the device snapshot ---- */

/* MemTotal and MemAvailable from /proc/meminfo, else sysconf. */
static void host_memory(uint64_t *total, uint64_t *avail) {
    *total = *avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) *total = kb * 1024;
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) *avail = kb * 1024;
        }
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    if (!*total && page > 0) *total = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)page;
    if (!*avail && page > 0) *avail = (uint64_t)sysconf(_SC_AVPHYS_PAGES) * (uint64_t)page;
}

static uint64_t resident_device_bytes(const mold_model_facts *f) {
    uint64_t n = 0;
    for (int c = 0; c < MOLD_COMP_COUNT; c++)
        if (f->w[c].resident && !f->w[c].on_host) n += f->w[c].bytes;
    return n;
}

mold_status mold_engine_snapshot(mold_engine *e, const mold_model_facts *f,
                                 mold_device_snapshot *out) {
    memset(out, 0, sizeof *out);
    host_memory(&out->host_total, &out->host_free);
    uint64_t ours = resident_device_bytes(f);
    e->plan_base_in_use = 0;
    if (engine_cuda(e)) {
        out->kind = MOLD_PLAN_DEV_CUDA;
        if (!e->be->i->memory_stats)
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "plan: backend %s reports no memory_stats",
                            e->be->i->name);
        uint64_t in_use = 0, peak = 0;
        MOLD_TRY(e->be->i->memory_stats(e->be, &in_use, &peak, &out->dev_free, &out->dev_total));
        e->plan_base_in_use = in_use > ours ? in_use - ours : 0;
        e->plan_peak0 = peak;
    } else {
        out->kind = MOLD_PLAN_DEV_CPU;
    }
    uint64_t budget = e->opt.memory_budget;
    if (budget) { /* a pool of exactly `budget` bytes, of which we hold `ours` */
        if (out->kind == MOLD_PLAN_DEV_CUDA) {
            out->dev_total = budget;
            out->dev_free = budget > ours ? budget - ours : 0;
        } else {
            out->host_total = out->host_free = budget;
        }
    }
    return MOLD_OK;
}

/* ---- planning ---- */

mold_status mold_engine_plan(mold_engine *e, const mold_plan_request *r, mold_plan *out) {
    mold_model_facts f;
    mold_device_snapshot d;
    MOLD_TRY(mold_engine_facts(e, &f));
    MOLD_TRY(mold_engine_snapshot(e, &f, &d));
    mold_plan_policy pol = mold_plan_policy_default();
    pol.keep_resident = e->opt.keep_resident;
    pol.allow_host_dit = false; /* not carried out: the denoise loop runs on e->be */
    if (e->opt.memory_budget) pol.headroom_bytes = 0, pol.headroom_frac = 0;
    mold_status st = mold_plan_make(r, &f, &d, &pol, out);
    if (st != MOLD_OK) return st;
    char line[2048];
    mold_plan_to_json(out, line, sizeof line);
    MOLD_LOGI("plan %s", line);
    return MOLD_OK;
}

/* ---- carrying it out ---- */

static bool loaded(const mold_engine *e, mold_plan_comp c) {
    return c == MOLD_COMP_TEXT ? e->te != NULL : c == MOLD_COMP_DIT ? e->dit != NULL
                                                                     : e->vae != NULL;
}

static void unload(mold_engine *e, mold_plan_comp c) {
    if (c == MOLD_COMP_TEXT) mold_engine_unload_text(e);
    else if (c == MOLD_COMP_DIT) mold_engine_unload_dit(e);
    else mold_engine_unload_vae(e);
}

static mold_status load(mold_engine *e, const mold_plan *p, mold_plan_comp c) {
    e->hold_want[c] = p->comp[c].hold; /* engine.c applies it around the load */
    if (c == MOLD_COMP_TEXT)
        return mold_engine_need_text_at(e, p->comp[c].place == MOLD_PLACE_HOST);
    if (p->comp[c].place != MOLD_PLACE_DEVICE)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "plan: the %s on the host is not supported",
                        mold_plan_comp_name(c));
    return c == MOLD_COMP_DIT ? mold_engine_need_dit(e) : mold_engine_need_vae(e);
}

mold_status mold_engine_enter_stage(mold_engine *e, const mold_plan *p, mold_plan_stage s) {
    /* free first, so what loads next has the room the plan counted on */
    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
        bool wrong_side = c == MOLD_COMP_TEXT && e->te &&
                          e->te_on_host != (p->comp[c].place == MOLD_PLACE_HOST);
        if (loaded(e, (mold_plan_comp)c) && (!p->comp[c].live[s] || wrong_side))
            unload(e, (mold_plan_comp)c);
    }
    for (int c = 0; c < MOLD_COMP_COUNT; c++) {
        if (!p->comp[c].live[s] || loaded(e, (mold_plan_comp)c)) continue;
        if (c == MOLD_COMP_TEXT && !p->encode) continue; /* nothing to encode */
        MOLD_TRY(load(e, p, (mold_plan_comp)c));
    }
    return MOLD_OK;
}

void mold_engine_stage_done(mold_engine *e, const mold_plan *p, mold_plan_stage s) {
    if (!engine_cuda(e) || !e->be->i->memory_stats) return;
    uint64_t in_use = 0, peak = 0, dfree = 0, total = 0;
    if (e->be->i->memory_stats(e->be, &in_use, &peak, &dfree, &total) != MOLD_OK) {
        mold_error_clear();
        return;
    }
    uint64_t predicted = 0;
    for (int i = 0; i <= (int)s; i++)
        if (p->peak[i] > predicted) predicted = p->peak[i];
    /* the backend's peak spans the engine's life: below an earlier request's
     * peak, what is in use now is the best measure of this request */
    bool new_peak = peak > e->plan_peak0;
    uint64_t now = new_peak ? peak : in_use;
    uint64_t measured = now > e->plan_base_in_use ? now - e->plan_base_in_use : 0;
    MOLD_LOGI("plan check after %s: device %s %.3f GiB measured, peak %.3f GiB predicted "
              "(%+.1f%%)", mold_plan_stage_name(s), new_peak ? "peak so far" : "in use",
              measured / 1073741824.0, predicted / 1073741824.0,
              predicted ? 100.0 * ((double)measured - (double)predicted) / (double)predicted : 0.0);
}

void mold_engine_leave(mold_engine *e, const mold_plan *p) {
    for (int c = 0; c < MOLD_COMP_COUNT; c++)
        if (loaded(e, (mold_plan_comp)c) && !p->comp[c].keep) unload(e, (mold_plan_comp)c);
}
