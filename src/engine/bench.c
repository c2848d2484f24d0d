/*
 * bench.c — per-stage timings for `mold bench` (see include/mold/bench.h).
 *
 * Each stage runs on the engine's resident models exactly as generate.c runs
 * it, but on synthetic inputs: the prompt is " a" repeated to the requested
 * token count, the text embeddings and latents are Philox noise (speed does
 * not depend on values). Every timed region ends with be->i->sync so device
 * work is inside it. Weights are held as a plan for the same request would
 * hold them (bf16 holds included) when that plan keeps every component
 * resident at once, as the bench does; else as stored.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/philox.h"
#include "base/clock.h"
#include "base/log.h"
#include "engine_impl.h"
#include "formats/gguf.h"
#include "formats/image.h"
#include "mold/bench.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

mold_bench_options mold_bench_options_default(void) {
    mold_bench_options o;
    memset(&o, 0, sizeof o);
    o.width = 1024;
    o.height = 1024;
    o.text_tokens = 32;
    o.repeats = 3;
    return o;
}

static uint64_t container_bytes(const mold_container *c) {
    uint64_t sum = 0;
    if (c->gguf) {
        for (size_t i = 0; i < mold_gguf_tensor_count(c->gguf); i++) {
            const mold_gguf_tensor_info *t = mold_gguf_tensor_info_at(c->gguf, i);
            if (strcmp(t->name, "output.weight")) sum += t->n_bytes; /* lm_head never read */
        }
        return sum;
    }
    if (!c->st) return 0;
    for (size_t i = 0; i < mold_safetensors_count(c->st); i++) {
        const mold_tensor *t = mold_safetensors_at(c->st, i);
        if (t->name && (!strncmp(t->name, "visual.", 7) || !strncmp(t->name, "lm_head.", 8)))
            continue; /* never read */
        sum += t->n_bytes;
    }
    return sum;
}

/* Holds (plan.h) from a plan of the bench's own request: CFG batch of two,
 * the encode of about the bench's token count. Only a plan that keeps the
 * three components live together matches what the bench loads. */
static void bench_holds(mold_engine *e, const mold_bench_options *o) {
    int words = o->encode_words > 0 ? o->encode_words : o->text_tokens;
    int n_enc = words + 64; /* the template's tokens and some slack */
    if (n_enc > MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS) n_enc = MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS;
    mold_plan_request r = {.width = o->width, .height = o->height, .steps = 1, .cfg = true,
                           .n_txt_pos = o->text_tokens, .n_txt_neg = o->text_tokens,
                           .n_encode = n_enc, .vae_tile = o->vae_tile > 0 ? o->vae_tile : 0,
                           .cfg_batch = 2};
    mold_plan p;
    if (mold_engine_plan(e, &r, &p) != MOLD_OK) {
        MOLD_LOGI("bench: no plan for the holds (%s): weights as stored", mold_error_message());
        mold_error_clear();
        return;
    }
    bool together = true;
    for (int c = 0; c < MOLD_COMP_COUNT; c++)
        for (int s = 0; s < MOLD_STAGE_COUNT; s++) together &= p.comp[c].live[s];
    for (int c = 0; c < MOLD_COMP_COUNT; c++)
        e->hold_want[c] = together ? p.comp[c].hold : MOLD_HOLD_STORED;
}

/* Loads one component and records its wall time. */
static mold_status timed_load(mold_engine *e, mold_status (*need)(mold_engine *), double *ms) {
    double t0 = mold_now_ms();
    MOLD_TRY(need(e));
    MOLD_TRY(e->be->i->sync(e->be));
    *ms = mold_now_ms() - t0;
    return MOLD_OK;
}

static mold_status bench_encode(mold_engine *e, const mold_bench_options *o,
                                mold_bench_report *r) {
    size_t plen = (size_t)(o->encode_words > 0 ? o->encode_words : o->text_tokens) * 2;
    char *prompt = malloc(plen + 1);
    if (!prompt) return MOLD_ERR(MOLD_E_NOMEM, "bench: out of memory");
    for (size_t i = 0; i < plen; i += 2) memcpy(prompt + i, " a", 2);
    prompt[plen] = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    mold_status st = mold_qwenimage_tokenize_prompt(e->tok, prompt, plen, &ids, &n_ids);
    free(prompt);
    if (st != MOLD_OK) return st;
    r->encode_tokens = (int)n_ids;
    double *t = calloc((size_t)o->repeats + 1, sizeof *t);
    const int32_t *seqs[1] = {ids};
    for (int i = 0; st == MOLD_OK && i <= o->repeats; i++) {
        mold_text_embeds emb;
        double t0 = mold_now_ms();
        st = mold_text_encode_tokens(e->te, seqs, &n_ids, 1, MOLD_QWENIMAGE_MAX_TOKENS, &emb);
        if (st == MOLD_OK) st = e->be->i->sync(e->be);
        t[i] = mold_now_ms() - t0; /* index 0 is the warm-up */
        if (st == MOLD_OK) mold_text_embeds_free(&emb);
    }
    if (st == MOLD_OK) r->encode_ms = median(t + 1, o->repeats);
    free(t);
    free(ids);
    return st;
}

/* Median time of one DiT forward of `batch` samples. */
static mold_status bench_dit(mold_engine *e, const mold_bench_options *o, int batch,
                             double *out_ms) {
    mold_backend *be = e->be;
    int tok_h = o->height / 16, tok_w = o->width / 16, L = o->text_tokens;
    int64_t n_img = (int64_t)tok_h * tok_w;
    size_t n_x = (size_t)batch * n_img * 64, n_t = (size_t)batch * L * e->md.dit.joint_attention_dim;
    float *host = malloc((n_x > n_t ? n_x : n_t) * sizeof(float));
    float *x = be->i->alloc(be, n_x * sizeof(float));
    float *v = be->i->alloc(be, n_x * sizeof(float));
    float *txt = be->i->alloc(be, n_t * sizeof(float));
    double *t = calloc((size_t)o->repeats + 1, sizeof *t);
    mold_status st = (host && x && v && txt && t) ? MOLD_OK
                                                  : MOLD_ERR(MOLD_E_NOMEM, "bench: out of memory");
    if (st == MOLD_OK) {
        mold_philox_normal(1, host, n_x);
        st = be->i->upload(be, x, host, n_x * sizeof(float));
    }
    if (st == MOLD_OK) {
        mold_philox_normal(2, host, n_t);
        st = be->i->upload(be, txt, host, n_t * sizeof(float));
    }
    if (st == MOLD_OK) st = mold_dit_reserve(e->dit, batch, n_img, L);
    int lens[2] = {L, L};
    float sig[2] = {0.75f, 0.75f};
    for (int i = 0; st == MOLD_OK && i <= o->repeats; i++) {
        double t0 = mold_now_ms();
        st = mold_dit_forward(e->dit, batch, x, tok_h, tok_w, txt, lens, L, sig, v);
        if (st == MOLD_OK) st = be->i->sync(be);
        t[i] = mold_now_ms() - t0;
    }
    if (st == MOLD_OK) *out_ms = median(t + 1, o->repeats);
    be->i->free(be, x);
    be->i->free(be, v);
    be->i->free(be, txt);
    free(host);
    free(t);
    return st;
}

static mold_status bench_vae(mold_engine *e, const mold_bench_options *o, mold_bench_report *r) {
    int lh = o->height / 8, lw = o->width / 8;
    size_t nz = (size_t)16 * lh * lw, npx = (size_t)o->width * o->height;
    float *z = malloc(nz * sizeof(float));
    float *img = malloc(3 * npx * sizeof(float));
    uint8_t *rgb = malloc(3 * npx);
    double *t = calloc((size_t)o->repeats + 1, sizeof *t);
    mold_status st = (z && img && rgb && t) ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "bench: out of memory");
    if (st == MOLD_OK) mold_philox_normal(3, z, nz);
    mold_vae_tiling tiling = {o->vae_tile, o->vae_tile / 4};
    for (int i = 0; st == MOLD_OK && i <= o->repeats; i++) {
        double t0 = mold_now_ms();
        st = mold_vae_decode(e->vae, z, lh, lw, o->vae_tile > 0 ? &tiling : NULL, img);
        t[i] = mold_now_ms() - t0;
    }
    if (st == MOLD_OK) r->vae_decode_ms = median(t + 1, o->repeats);
    /* PNG of the decoded image (content matters for zlib: use real pixels) */
    for (size_t p = 0; st == MOLD_OK && p < npx; p++)
        for (int c = 0; c < 3; c++) {
            float f = img[c * npx + p] * 127.5f + 127.5f;
            rgb[p * 3 + c] = (uint8_t)(f < 0 ? 0 : (f > 255 ? 255 : f));
        }
    for (int i = 0; st == MOLD_OK && i <= o->repeats; i++) {
        uint8_t *png;
        size_t len;
        double t0 = mold_now_ms();
        st = mold_png_encode(rgb, o->width, o->height, NULL, 0, &png, &len);
        t[i] = mold_now_ms() - t0;
        if (st == MOLD_OK) free(png);
    }
    if (st == MOLD_OK) r->png_encode_ms = median(t + 1, o->repeats);
    free(z);
    free(img);
    free(rgb);
    free(t);
    return st;
}

mold_result_code mold_bench_run(mold_engine *e, const mold_bench_options *o,
                                mold_bench_report *r) {
    memset(r, 0, sizeof *r);
    if (o->width < 16 || o->width % 16 || o->height < 16 || o->height % 16)
        return MOLD_ERR(MOLD_E_INVALID, "bench: width and height must be multiples of 16");
    if (o->repeats < 1 || o->repeats > 100 || o->text_tokens < 1 || o->text_tokens > 1000)
        return MOLD_ERR(MOLD_E_INVALID, "bench: repeats 1..100, text tokens 1..1000");
    r->n_img_tokens = (o->height / 16) * (o->width / 16);
    MOLD_TRY(mold_engine_need_tokenizer(e));
    if (e->opt.device == MOLD_DEVICE_CUDA) bench_holds(e, o);
    MOLD_TRY(timed_load(e, mold_engine_need_text, &r->load_text_ms));
    MOLD_TRY(timed_load(e, mold_engine_need_dit, &r->load_dit_ms));
    if (!o->skip_vae) MOLD_TRY(timed_load(e, mold_engine_need_vae, &r->load_vae_ms));
    r->bytes_text = container_bytes(&e->c_text);
    r->bytes_dit = container_bytes(&e->c_dit);
    r->bytes_vae = e->vae ? container_bytes(&e->c_vae) : 0;
    MOLD_TRY(bench_encode(e, o, r));
    MOLD_TRY(bench_dit(e, o, 1, &r->dit_step_ms));
    MOLD_TRY(bench_dit(e, o, 2, &r->dit_cfg_step_ms));
    if (!o->skip_vae) MOLD_TRY(bench_vae(e, o, r));
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) r->peak_host_bytes = (uint64_t)ru.ru_maxrss * 1024;
    if (e->be->i->memory_stats) {
        uint64_t in_use, peak, fr, tot;
        if (e->be->i->memory_stats(e->be, &in_use, &peak, &fr, &tot) == MOLD_OK)
            r->peak_device_bytes = peak;
    }
    return MOLD_OK;
}
