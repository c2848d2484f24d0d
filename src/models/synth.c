/*
 * synth.c — `mold synth`: the model layout, configs and safetensors output
 * (see synth.h). Values come from synth_gen.c, GGUF files from synth_gguf.c.
 *
 * Owner: the synth helper. References: docs/qwen-image-spec.md 4.1-4.2 (DiT
 * config and tensors), 3.1/3.5 (text encoder), 7.1 and appendix A (VAE
 * decoder), 6.1 (scheduler); tests/fixtures/qwen-image-tiny/model for the
 * tiny preset, whose configs and tensor shapes this reproduces exactly
 * (minus the VAE encoder and lm_head, which text-to-image never reads).
 *
 * Invariants:
 *   - a tensor's index in its component list (module order) fixes its seed,
 *     so the bf16 and GGUF variants of one seed draw the same streams;
 *   - files are written through temp + rename; the output directory must be
 *     empty at the start, so a directory never mixes two runs.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "../base/fs.h"                   // defines: mold_atomic_*, mold_path_join
#include "../base/json.h"                 // defines: mold_json_load_file
#include "../base/log.h"                  // defines: MOLD_LOGI
#include "../formats/safetensors_stream.h" // defines: mold_safetensors_stream_*
#include "synth_impl.h"

/* ---- presets ---- */

typedef struct preset {
    const char *name;
    /* transformer (spec 4.1) */
    int dit_layers, dit_heads, dit_head_dim, dit_joint, dit_axes[3];
    bool dit_pooled_dim;        /* writes pooled_projection_dim (the published config has it) */
    /* text encoder (spec 3.1) */
    int te_layers, te_hidden, te_heads, te_kv_heads, te_ffn, te_vocab, te_context;
    int te_mrope[3];
    const char *te_rope_type;   /* rope_scaling.type */
    int te_first_added;         /* id of <|endoftext|>, first added token */
    int te_max_window_layers;
    /* vision_config of config.json (no visual.* tensor is ever written) */
    int vis_depth, vis_hidden, vis_ffn, vis_heads, vis_tps;
    /* VAE (spec 7.1) */
    int vae_base;
    uint64_t shard_bytes;       /* max shard size of transformer / text-encoder safetensors */
    const char *gguf_dit, *gguf_te; /* GGUF file name stems */
} preset;

static const preset PRESETS[] = {
    {"qwen-image-2512", 60, 24, 128, 3584, {16, 56, 56}, true,
     28, 3584, 28, 4, 18944, 152064, 128000, {16, 24, 24}, "default", 151643,
     28, 32, 1280, 3420, 16, 2, 96, 5000000000ull, "qwen-image-2512", "Qwen2.5-VL-7B-Instruct"},
    {"tiny", 2, 2, 32, 64, {8, 12, 12}, false,
     2, 64, 4, 2, 160, 662, 4096, {2, 3, 3}, "mrope", 640,
     80, 1, 16, 16, 2, 4, 32, 160 * 1024, "qwen-image-tiny", "qwen2.5-vl-tiny"},
};
#define N_PRESETS (sizeof(PRESETS) / sizeof(PRESETS[0]))

const char *const mold_synth_presets[] = {"qwen-image-2512", "tiny", NULL};

/* diffusers' FlowMatchEulerDiscreteScheduler config of Qwen-Image (spec 6.1;
 * the bytes of tests/fixtures/qwen-image-tiny/model/scheduler). */
static const char SCHEDULER_CONFIG[] =
    "{\n"
    "  \"_class_name\": \"FlowMatchEulerDiscreteScheduler\",\n"
    "  \"base_image_seq_len\": 256,\n"
    "  \"base_shift\": 0.5,\n"
    "  \"invert_sigmas\": false,\n"
    "  \"max_image_seq_len\": 8192,\n"
    "  \"max_shift\": 0.9,\n"
    "  \"num_train_timesteps\": 1000,\n"
    "  \"shift\": 1.0,\n"
    "  \"shift_terminal\": 0.02,\n"
    "  \"stochastic_sampling\": false,\n"
    "  \"time_shift_type\": \"exponential\",\n"
    "  \"use_beta_sigmas\": false,\n"
    "  \"use_dynamic_shifting\": true,\n"
    "  \"use_exponential_sigmas\": false,\n"
    "  \"use_karras_sigmas\": false\n"
    "}";

/* Wan-2.1 latent statistics (spec 5.5). */
static const double LATENTS_MEAN[16] = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653,
                                        -0.1517, 1.5508,  0.4134,  -0.0715, 0.5517, -0.3632,
                                        -0.1922, -0.9497, 0.2503,  -0.2921};
static const double LATENTS_STD[16] = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708,
                                       2.6052, 2.0743, 3.2687, 2.1526, 2.8652, 1.5579,
                                       1.6382, 1.1253, 2.8251, 1.9160};

#define BIAS_STD 0.02f
#define SLAB_ELEMS (32u * 1024 * 1024) /* safetensors slab: 64 MiB of bf16 */

/* ---- tensor lists ---- */

typedef struct list_ctx {
    synth_list *l;
    uint64_t seed;       /* run seed mixed with the component id */
    mold_status st;      /* sticky: first failure */
} list_ctx;

uint64_t mold_synth_nelems(const synth_tensor *t) {
    uint64_t n = 1;
    for (int d = 0; d < t->n_dims; d++) n *= (uint64_t)t->shape[d];
    return n;
}

mold_status mold_synth_bytes(const synth_tensor *t, uint64_t *out) {
    return mold_dtype_row_bytes(t->dtype, mold_synth_nelems(t), out);
}

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Appends one tensor; shape given outermost first, n_dims entries. */
static void add(list_ctx *c, int layer, synth_init init, float std, int n_dims,
                const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void add(list_ctx *c, int layer, synth_init init, float std, int n_dims,
                const int64_t *shape, const char *fmt, ...) {
    synth_list *l = c->l;
    if (c->st) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        synth_tensor *nt = realloc(l->t, cap * sizeof *nt);
        if (!nt) {
            c->st = MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory for the tensor list");
            return;
        }
        l->t = nt;
        l->cap = cap;
    }
    synth_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    MOLD_ASSERT(len > 0 && (size_t)len < sizeof t->name);
    t->n_dims = n_dims;
    memcpy(t->shape, shape, (size_t)n_dims * sizeof *shape);
    t->init = init;
    t->std = std;
    t->layer = layer;
    t->seed = mix64(c->seed ^ mix64(l->n + 1));
    t->dtype = MOLD_BF16;
    l->n++;
}

/* nn.Linear(in, out): weight [out, in] ~ N(0, 1/in), bias [out] small. */
static void linear(list_ctx *c, int layer, const char *prefix, int64_t out, int64_t in, bool bias) {
    const int64_t w[2] = {out, in}, b[1] = {out};
    add(c, layer, SYNTH_NORMAL, 1.0f / sqrtf((float)in), 2, w, "%s.weight", prefix);
    if (bias) add(c, layer, SYNTH_NORMAL, BIAS_STD, 1, b, "%s.bias", prefix);
}

static void gamma1(list_ctx *c, int layer, const char *name, int64_t dim) {
    const int64_t s[1] = {dim};
    add(c, layer, SYNTH_ONES, 0.0f, 1, s, "%s", name);
}

/* Transformer, spec 4.2 order: 13 top-level tensors + 32 per block. */
static void dit_list(list_ctx *c, const preset *p) {
    const int64_t D = (int64_t)p->dit_heads * p->dit_head_dim, J = p->dit_joint;
    char b[96];
    linear(c, -1, "img_in", D, 64, true);
    gamma1(c, -1, "txt_norm.weight", J);
    linear(c, -1, "txt_in", D, J, true);
    linear(c, -1, "time_text_embed.timestep_embedder.linear_1", D, 256, true);
    linear(c, -1, "time_text_embed.timestep_embedder.linear_2", D, D, true);
    static const char *const qkv[6] = {"to_q", "to_k", "to_v", "add_q_proj", "add_k_proj",
                                       "add_v_proj"};
    static const char *const qk_norms[4] = {"norm_q", "norm_k", "norm_added_q", "norm_added_k"};
    for (int i = 0; i < p->dit_layers; i++) {
#define BLK(suffix) (snprintf(b, sizeof b, "transformer_blocks.%d.%s", i, suffix), b)
        linear(c, i, BLK("img_mod.1"), 6 * D, D, true);
        linear(c, i, BLK("txt_mod.1"), 6 * D, D, true);
        for (int k = 0; k < 6; k++) {
            char s[32];
            snprintf(s, sizeof s, "attn.%s", qkv[k]);
            linear(c, i, BLK(s), D, D, true);
        }
        for (int k = 0; k < 4; k++) {
            char s[48];
            snprintf(s, sizeof s, "attn.%s.weight", qk_norms[k]);
            gamma1(c, i, BLK(s), p->dit_head_dim);
        }
        linear(c, i, BLK("attn.to_out.0"), D, D, true);
        linear(c, i, BLK("attn.to_add_out"), D, D, true);
        linear(c, i, BLK("img_mlp.net.0.proj"), 4 * D, D, true);
        linear(c, i, BLK("img_mlp.net.2"), D, 4 * D, true);
        linear(c, i, BLK("txt_mlp.net.0.proj"), 4 * D, D, true);
        linear(c, i, BLK("txt_mlp.net.2"), D, 4 * D, true);
#undef BLK
    }
    linear(c, -1, "norm_out.linear", 2 * D, D, true);
    linear(c, -1, "proj_out", 64, D, true);
}

/* Text encoder, transformers 4.x names (spec 3.5); no lm_head, no visual.*. */
static void text_list(list_ctx *c, const preset *p) {
    const int64_t H = p->te_hidden, hd = H / p->te_heads, KV = (int64_t)p->te_kv_heads * hd;
    const int64_t emb[2] = {p->te_vocab, H};
    add(c, -1, SYNTH_NORMAL, 1.0f, 2, emb, "model.embed_tokens.weight");
    char b[96];
    for (int i = 0; i < p->te_layers; i++) {
#define LYR(suffix) (snprintf(b, sizeof b, "model.layers.%d.%s", i, suffix), b)
        gamma1(c, i, LYR("input_layernorm.weight"), H);
        linear(c, i, LYR("self_attn.q_proj"), H, H, true);
        linear(c, i, LYR("self_attn.k_proj"), KV, H, true);
        linear(c, i, LYR("self_attn.v_proj"), KV, H, true);
        linear(c, i, LYR("self_attn.o_proj"), H, H, false);
        gamma1(c, i, LYR("post_attention_layernorm.weight"), H);
        linear(c, i, LYR("mlp.gate_proj"), p->te_ffn, H, false);
        linear(c, i, LYR("mlp.up_proj"), p->te_ffn, H, false);
        linear(c, i, LYR("mlp.down_proj"), H, p->te_ffn, false);
#undef LYR
    }
    gamma1(c, -1, "model.norm.weight", H);
}

/* CausalConv3d / Conv2d weight [out, in, k...] + bias. The std uses the
 * fan-in a single-frame decode sees (in * kh * kw: only the last temporal tap
 * of a 3x3x3 kernel touches the frame, spec 7.2). */
static void conv(list_ctx *c, const char *prefix, int64_t out, int64_t in, int kt, int kh, int kw,
                 bool three_d) {
    int64_t w[5] = {out, in, kt, kh, kw}, b[1] = {out};
    int64_t fan = in * (kh * kw > 1 ? kh * kw : kt);
    if (three_d)
        add(c, -1, SYNTH_NORMAL, 1.0f / sqrtf((float)fan), 5, w, "%s.weight", prefix);
    else {
        w[2] = kh;
        w[3] = kw;
        add(c, -1, SYNTH_NORMAL, 1.0f / sqrtf((float)fan), 4, w, "%s.weight", prefix);
    }
    add(c, -1, SYNTH_NORMAL, BIAS_STD, 1, b, "%s.bias", prefix);
}

/* RMS_norm gamma, [C,1,1,1] (images=False) or [C,1,1] (images=True). */
static void vae_gamma(list_ctx *c, const char *name, int64_t ch, int n_dims) {
    const int64_t s[4] = {ch, 1, 1, 1};
    add(c, -1, SYNTH_ONES, 0.0f, n_dims, s, "%s", name);
}

static void resnet(list_ctx *c, const char *prefix, int64_t in, int64_t out) {
    char b[128];
#define RN(suffix) (snprintf(b, sizeof b, "%s.%s", prefix, suffix), b)
    vae_gamma(c, RN("norm1.gamma"), in, 4);
    conv(c, RN("conv1"), out, in, 3, 3, 3, true);
    vae_gamma(c, RN("norm2.gamma"), out, 4);
    conv(c, RN("conv2"), out, out, 3, 3, 3, true);
    if (in != out) conv(c, RN("conv_shortcut"), out, in, 1, 1, 1, true);
#undef RN
}

/* VAE decoder + post_quant_conv (spec 7.3, appendix A); dims
 * [4b, 4b, 4b, 2b, b] for base b, dim_mult [1, 2, 4, 4], 2 + 1 resnets per
 * up block, upsample3d (with time_conv) for up blocks 0-1, upsample2d for 2. */
static void vae_list(list_ctx *c, const preset *p) {
    const int64_t bd = p->vae_base, z = 16;
    const int64_t dims[5] = {4 * bd, 4 * bd, 4 * bd, 2 * bd, bd};
    char b[128];
    conv(c, "post_quant_conv", z, z, 1, 1, 1, true);
    conv(c, "decoder.conv_in", dims[0], z, 3, 3, 3, true);
    resnet(c, "decoder.mid_block.resnets.0", dims[0], dims[0]);
    vae_gamma(c, "decoder.mid_block.attentions.0.norm.gamma", dims[0], 3);
    conv(c, "decoder.mid_block.attentions.0.to_qkv", 3 * dims[0], dims[0], 1, 1, 1, false);
    conv(c, "decoder.mid_block.attentions.0.proj", dims[0], dims[0], 1, 1, 1, false);
    resnet(c, "decoder.mid_block.resnets.1", dims[0], dims[0]);
    for (int i = 0; i < 4; i++) {
        int64_t in = i > 0 ? dims[i] / 2 : dims[i], out = dims[i + 1];
        for (int r = 0; r < 3; r++) {
            snprintf(b, sizeof b, "decoder.up_blocks.%d.resnets.%d", i, r);
            resnet(c, b, r == 0 ? in : out, out);
        }
        if (i == 3) break;
        snprintf(b, sizeof b, "decoder.up_blocks.%d.upsamplers.0.resample.1", i);
        conv(c, b, out / 2, out, 1, 3, 3, false);
        if (i < 2) { /* upsample3d: temporal conv, unused for one frame */
            snprintf(b, sizeof b, "decoder.up_blocks.%d.upsamplers.0.time_conv", i);
            conv(c, b, 2 * out, out, 3, 1, 1, true);
        }
    }
    vae_gamma(c, "decoder.norm_out.gamma", dims[4], 4);
    conv(c, "decoder.conv_out", 3, dims[4], 3, 3, 3, true);
}

typedef void (*list_fn)(list_ctx *, const preset *);

/* Builds one component's list; comp_id separates the components' streams. */
static mold_status build_list(list_fn fn, const preset *p, uint64_t seed, uint64_t comp_id,
                              synth_list *out) {
    memset(out, 0, sizeof *out);
    list_ctx c = {.l = out, .seed = mix64(seed ^ mix64(comp_id << 56))};
    fn(&c, p);
    if (c.st) {
        free(out->t);
        memset(out, 0, sizeof *out);
    }
    return c.st;
}

mold_status mold_synth_component_list(const char *preset_name, int comp, uint64_t seed,
                                      synth_list *out) {
    static const list_fn fns[4] = {NULL, dit_list, text_list, vae_list};
    const preset *p = NULL;
    for (size_t i = 0; preset_name && i < N_PRESETS; i++)
        if (!strcmp(PRESETS[i].name, preset_name)) p = &PRESETS[i];
    if (!p || comp < SYNTH_COMP_DIT || comp > SYNTH_COMP_VAE)
        return MOLD_ERR(MOLD_E_INVALID, "synth: no component %d of preset '%s'", comp,
                        preset_name ? preset_name : "(none)");
    return build_list(fns[comp], p, seed, (uint64_t)comp, out);
}

void mold_synth_list_free(synth_list *l) {
    free(l->t);
    memset(l, 0, sizeof *l);
}

/* ---- small files ---- */

static mold_status write_json(const char *dir, const char *name, json_t *doc) {
    char *js = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(8));
    char *path = mold_path_join(dir, name);
    mold_status st = js && path ? mold_file_write_atomic(path, js, strlen(js))
                                : MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory writing %s", name);
    free(js);
    free(path);
    return st;
}

static json_t *int_array(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *num_array(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

static mold_status write_model_index(const char *out) {
    json_t *d = json_pack("{s:s, s:s, s:[s,s], s:[s,s], s:[s,s], s:[s,s], s:[s,s]}",
                          "_class_name", "QwenImagePipeline", "_diffusers_version", "0.36.0",
                          "scheduler", "diffusers", "FlowMatchEulerDiscreteScheduler",
                          "text_encoder", "transformers", "Qwen2_5_VLForConditionalGeneration",
                          "tokenizer", "transformers", "Qwen2Tokenizer",
                          "transformer", "diffusers", "QwenImageTransformer2DModel",
                          "vae", "diffusers", "AutoencoderKLQwenImage");
    if (!d) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    mold_status st = write_json(out, "model_index.json", d);
    json_decref(d);
    return st;
}

/* transformer/config.json (spec 4.1; the tiny preset's exact keys). */
static json_t *dit_config(const preset *p) {
    json_t *d = json_pack("{s:s, s:s, s:i, s:o, s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:b}",
                          "_class_name", "QwenImageTransformer2DModel",
                          "_diffusers_version", "0.36.0",
                          "attention_head_dim", p->dit_head_dim,
                          "axes_dims_rope", int_array(p->dit_axes, 3),
                          "guidance_embeds", 0, "in_channels", 64,
                          "joint_attention_dim", p->dit_joint,
                          "num_attention_heads", p->dit_heads, "num_layers", p->dit_layers,
                          "out_channels", 16, "patch_size", 2,
                          "use_additional_t_cond", 0, "use_layer3d_rope", 0, "zero_cond_t", 0);
    if (d && p->dit_pooled_dim) json_object_set_new(d, "pooled_projection_dim", json_integer(768));
    return d;
}

/* vae/config.json (spec 7.1). */
static json_t *vae_config(const preset *p) {
    static const int mult[4] = {1, 2, 4, 4};
    return json_pack("{s:s, s:s, s:[], s:i, s:o, s:f, s:i, s:o, s:o, s:i, s:[b,b,b], s:i}",
                     "_class_name", "AutoencoderKLQwenImage", "_diffusers_version", "0.36.0",
                     "attn_scales", "base_dim", p->vae_base, "dim_mult", int_array(mult, 4),
                     "dropout", 0.0, "input_channels", 3,
                     "latents_mean", num_array(LATENTS_MEAN, 16),
                     "latents_std", num_array(LATENTS_STD, 16), "num_res_blocks", 2,
                     "temperal_downsample", 0, 1, 1, "z_dim", 16);
}

/* text_encoder/config.json, transformers 4.x layout (spec 3.1). */
static json_t *text_config(const preset *p) {
    int a = p->te_first_added;
    json_t *vis = json_pack("{s:i, s:[i,i,i,i], s:s, s:i, s:i, s:f, s:i, s:s, s:i, s:i, s:i, s:i,"
                            " s:i, s:i, s:i}",
                            "depth", p->vis_depth, "fullatt_block_indexes", 7, 15, 23, 31,
                            "hidden_act", "silu", "hidden_size", p->vis_hidden, "in_channels", 3,
                            "initializer_range", 0.02, "intermediate_size", p->vis_ffn,
                            "model_type", "qwen2_5_vl_vision", "num_heads", p->vis_heads,
                            "out_hidden_size", p->te_hidden, "patch_size", 14,
                            "spatial_merge_size", 2, "temporal_patch_size", 2,
                            "tokens_per_second", p->vis_tps, "window_size", 112);
    json_t *rope = json_pack("{s:s, s:o}", "type", p->te_rope_type, "mrope_section",
                             int_array(p->te_mrope, 3));
    json_t *d = json_pack("{s:[s], s:f, s:i, s:i, s:s, s:i, s:f, s:i, s:i, s:i, s:s, s:i, s:i,"
                          " s:i, s:f, s:o, s:f, s:n, s:b, s:s, s:s, s:b, s:b, s:i, s:o, s:i,"
                          " s:i, s:i, s:i}",
                          "architectures", "Qwen2_5_VLForConditionalGeneration",
                          "attention_dropout", 0.0, "bos_token_id", 151643, "eos_token_id", 151645,
                          "hidden_act", "silu", "hidden_size", p->te_hidden,
                          "initializer_range", 0.02, "intermediate_size", p->te_ffn,
                          "max_position_embeddings", p->te_context,
                          "max_window_layers", p->te_max_window_layers, "model_type", "qwen2_5_vl",
                          "num_attention_heads", p->te_heads,
                          "num_hidden_layers", p->te_layers,
                          "num_key_value_heads", p->te_kv_heads, "rms_norm_eps", 1e-6,
                          "rope_scaling", rope, "rope_theta", 1000000.0, "sliding_window",
                          "tie_word_embeddings", 0, "torch_dtype", "bfloat16",
                          "transformers_version", "4.49.0", "use_cache", 1,
                          "use_sliding_window", 0, "vocab_size", p->te_vocab,
                          "vision_config", vis, "vision_start_token_id", a + 9,
                          "vision_end_token_id", a + 10, "vision_token_id", a + 11,
                          "image_token_id", a + 12);
    if (d) json_object_set_new(d, "video_token_id", json_integer(a + 13));
    return d;
}

static mold_status write_config(const char *dir, const char *name, json_t *doc) {
    if (!doc) return MOLD_ERR(MOLD_E_NOMEM, "synth: cannot build %s/%s", dir, name);
    mold_status st = write_json(dir, name, doc);
    json_decref(doc);
    return st;
}

/* ---- directories and the tokenizer ---- */

static mold_status make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return MOLD_ERR(MOLD_E_IO, "%s: cannot create directory: %s", path, strerror(errno));
    if (!mold_path_is_dir(path))
        return MOLD_ERR(MOLD_E_IO, "%s: expected a directory", path);
    return MOLD_OK;
}

/* Creates out (and missing parents); it must end up an empty directory. */
static mold_status prepare_out(const char *out) {
    char *p = strdup(out);
    if (!p) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        mold_status st = mold_path_is_dir(p) ? MOLD_OK : make_dir(p);
        *s = '/';
        if (st) {
            free(p);
            return st;
        }
    }
    free(p);
    MOLD_TRY(make_dir(out));
    DIR *d = opendir(out);
    if (!d) return MOLD_ERR(MOLD_E_IO, "%s: cannot list: %s", out, strerror(errno));
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    if (n)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected a new or empty output directory, got one "
                        "holding %d entries", out, n);
    return MOLD_OK;
}

static mold_status copy_file(const char *src, const char *dst, uint64_t *n_bytes) {
    char *buf = NULL;
    size_t len = 0;
    MOLD_TRY(mold_file_read_all(src, &buf, &len));
    mold_status st = mold_file_write_atomic(dst, buf, len);
    free(buf);
    *n_bytes += len;
    return st;
}

/* Copies the regular files of the tokenizer directory (not recursive). */
static mold_status copy_tokenizer(const char *src_dir, const char *dst_dir, uint64_t *n_bytes) {
    DIR *d = opendir(src_dir);
    if (!d) return MOLD_ERR(MOLD_E_IO, "--tokenizer %s: cannot list: %s", src_dir, strerror(errno));
    mold_status st = MOLD_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *s = mold_path_join(src_dir, e->d_name), *t = mold_path_join(dst_dir, e->d_name);
        struct stat sb;
        if (!s || !t)
            st = MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
        else if (stat(s, &sb) == 0 && S_ISREG(sb.st_mode))
            st = copy_file(s, t, n_bytes);
        free(s);
        free(t);
    }
    closedir(d);
    return st;
}

/* ---- safetensors components ---- */

typedef struct run_ctx {
    const mold_synth_options *opt;
    const preset *p;
    const char *out;
    synth_gen *gen;
    void *slab;          /* SLAB_ELEMS * 4 bytes, owned */
    uint64_t n_bytes;    /* bytes written so far */
    uint64_t n_tensors;
} run_ctx;

/* Streams tensors [a, b) of l into one safetensors file. */
static mold_status write_shard(run_ctx *r, const synth_list *l, size_t a, size_t b,
                               const char *path) {
    mold_tensor *ts = calloc(b - a, sizeof *ts);
    if (!ts) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    for (size_t i = a; i < b; i++) {
        mold_tensor *t = &ts[i - a];
        t->name = l->t[i].name;
        t->dtype = l->t[i].dtype;
        t->n_dims = l->t[i].n_dims;
        memcpy(t->shape, l->t[i].shape, sizeof t->shape);
    }
    static const char *const meta[] = {"format", "pt", NULL};
    mold_safetensors_stream *s;
    mold_status st = mold_safetensors_stream_open(path, ts, b - a, meta, &s);
    free(ts);
    if (st) return st;
    for (size_t i = a; i < b && !st; i++) {
        const synth_tensor *t = &l->t[i];
        MOLD_ASSERT(t->dtype == MOLD_BF16 || t->dtype == MOLD_F32);
        const uint64_t eb = mold_dtype_get(t->dtype)->block_bytes;
        uint64_t n = mold_synth_nelems(t);
        for (uint64_t e = 0; e < n && !st; e += SLAB_ELEMS) {
            uint64_t k = n - e < SLAB_ELEMS ? n - e : SLAB_ELEMS;
            st = mold_synth_gen_fill(r->gen, t, e, k, r->slab);
            if (!st) st = mold_safetensors_stream_write(s, r->slab, (size_t)(k * eb));
        }
    }
    if (st) {
        mold_safetensors_stream_abort(s);
        return st;
    }
    MOLD_TRY(mold_safetensors_stream_commit(s));
    struct stat sb;
    if (stat(path, &sb) == 0) r->n_bytes += (uint64_t)sb.st_size;
    r->n_tensors += b - a;
    return MOLD_OK;
}

/* Writes l as `<stem>.safetensors`, or as `<stem>-0000k-of-0000n.safetensors`
 * shards of at most max_shard data bytes plus `<stem>.safetensors.index.json`
 * (weight_map and metadata.total_size, as transformers / diffusers write). */
static mold_status write_safetensors(run_ctx *r, const synth_list *l, const char *dir,
                                     const char *stem, uint64_t max_shard) {
    size_t *start = calloc(l->n + 1, sizeof *start), n_shards = 0;
    if (!start) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    uint64_t cur = 0, total = 0;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t b;
        MOLD_ASSERT(mold_synth_bytes(&l->t[i], &b) == MOLD_OK);
        if (i == 0 || (cur && cur + b > max_shard)) {
            start[n_shards++] = i;
            cur = 0;
        }
        cur += b;
        total += b;
    }
    start[n_shards] = l->n;
    mold_status st = MOLD_OK;
    json_t *wm = json_object();
    for (size_t s = 0; s < n_shards && !st; s++) {
        char name[256];
        if (n_shards == 1)
            snprintf(name, sizeof name, "%s.safetensors", stem);
        else
            snprintf(name, sizeof name, "%s-%05zu-of-%05zu.safetensors", stem, s + 1, n_shards);
        char *path = mold_path_join(dir, name);
        st = path ? write_shard(r, l, start[s], start[s + 1], path)
                  : MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
        free(path);
        for (size_t i = start[s]; i < start[s + 1] && wm; i++)
            json_object_set_new(wm, l->t[i].name, json_string(name));
    }
    if (!st && n_shards > 1) {
        json_t *idx = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total,
                                "weight_map", wm);
        char name[256];
        snprintf(name, sizeof name, "%s.safetensors.index.json", stem);
        st = write_config(dir, name, idx);
    }
    json_decref(wm);
    free(start);
    return st;
}

/* ---- components ---- */

static mold_status gguf_component(run_ctx *r, synth_list *l, bool dit, const char *dir) {
    const mold_synth_options *o = r->opt;
    const preset *p = r->p;
    mold_dtype ft = dit ? o->transformer : o->text_encoder;
    const char *tag = ft == MOLD_Q4_K ? "Q4_K_M" : ft == MOLD_Q4_0 ? "Q4_0" : "Q8_0";
    char name[128];
    snprintf(name, sizeof name, "%s-%s%s.gguf", dit ? p->gguf_dit : p->gguf_te, tag,
             o->uniform ? "-uniform" : "");
    char *path = mold_path_join(dir, name);
    if (!path) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    uint64_t bytes = 0;
    mold_status st;
    if (dit) {
        mold_synth_dit_gguf_types(l, ft, p->dit_layers, o->uniform);
        st = mold_synth_write_dit_gguf(r->gen, l, ft, path, &bytes);
    } else {
        mold_synth_text_gguf_types(l, ft, p->te_layers, o->uniform);
        synth_text_hparams hp = {p->gguf_te, p->te_layers, p->te_hidden, p->te_heads,
                                 p->te_kv_heads, p->te_ffn, p->te_vocab, p->te_context, 1e-6,
                                 1e6, {p->te_mrope[0], p->te_mrope[1], p->te_mrope[2]}};
        char *tok = mold_path_join(o->tokenizer_dir, "tokenizer.json");
        st = tok ? mold_synth_write_text_gguf(r->gen, l, &hp, ft, tok, path, &bytes)
                 : MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
        free(tok);
    }
    free(path);
    r->n_bytes += bytes;
    if (!st) r->n_tensors += l->n;
    return st;
}

/* Writes one component's weights: GGUF for a block dtype, else bf16 safetensors
 * (sharded for the transformer and text encoder, one file for the VAE). */
static mold_status weights(run_ctx *r, synth_list *l, int comp, const char *dir) {
    bool dit = comp == SYNTH_COMP_DIT, te = comp == SYNTH_COMP_TEXT;
    mold_dtype want = dit ? r->opt->transformer : te ? r->opt->text_encoder : MOLD_BF16;
    if (want != MOLD_BF16) return gguf_component(r, l, dit, dir);
    return write_safetensors(r, l, dir, te ? "model" : "diffusion_pytorch_model",
                             dit || te ? r->p->shard_bytes : UINT64_MAX);
}

/* One component directory: config + weights, timed for the log. */
static mold_status component(run_ctx *r, const char *sub, list_fn fn, int comp) {
    char *dir = mold_path_join(r->out, sub);
    if (!dir) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    const preset *p = r->p;
    json_t *cfg = comp == SYNTH_COMP_DIT ? dit_config(p) : comp == SYNTH_COMP_TEXT ? text_config(p)
                                                                                  : vae_config(p);
    mold_status st = make_dir(dir);
    if (!st) st = write_config(dir, "config.json", cfg);
    else json_decref(cfg);
    synth_list l = {0};
    if (!st) st = build_list(fn, p, r->opt->seed, (uint64_t)comp, &l);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t b0 = r->n_bytes;
    if (!st) st = weights(r, &l, comp, dir);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double gb = (double)(r->n_bytes - b0) / 1e9;
    if (!st)
        MOLD_LOGI("synth: %s: %zu tensors, %.3f GB in %.2f s (%.2f GB/s)", sub, l.n, gb, sec,
                  sec > 0 ? gb / sec : 0.0);
    else
        mold_error_prefix("synth %s", sub);
    mold_synth_list_free(&l);
    free(dir);
    return st;
}

/* ---- options and the driver ---- */

static mold_status check_options(const mold_synth_options *o, const preset **p) {
    *p = NULL;
    for (size_t i = 0; o->preset && i < N_PRESETS; i++)
        if (!strcmp(PRESETS[i].name, o->preset)) *p = &PRESETS[i];
    if (!*p)
        return MOLD_ERR(MOLD_E_INVALID, "--preset: expected qwen-image-2512 or tiny, got '%s'",
                        o->preset ? o->preset : "(none)");
    mold_dtype t = o->transformer, e = o->text_encoder;
    if (t != MOLD_BF16 && t != MOLD_Q4_0 && t != MOLD_Q4_K && t != MOLD_Q8_0)
        return MOLD_ERR(MOLD_E_INVALID, "--transformer: expected q4_0, q4_K, q8_0 or bf16, got %s",
                        mold_dtype_name(t));
    if (e != MOLD_BF16 && e != MOLD_Q4_K && e != MOLD_Q8_0)
        return MOLD_ERR(MOLD_E_INVALID, "--text-encoder: expected q4_K, q8_0 or bf16, got %s",
                        mold_dtype_name(e));
    unsigned c = o->components ? o->components : 15;
    bool need_tok = (c & MOLD_SYNTH_TOKENIZER) || ((c & MOLD_SYNTH_TEXT_ENCODER) && e != MOLD_BF16);
    if (need_tok) {
        char *tj = o->tokenizer_dir ? mold_path_join(o->tokenizer_dir, "tokenizer.json") : NULL;
        bool ok = tj && mold_path_exists(tj);
        free(tj);
        if (!ok)
            return MOLD_ERR(MOLD_E_NOTFOUND, "--tokenizer: expected a directory holding "
                            "tokenizer.json, got %s (scripts/fetch-tokenizer.sh BUILD_DIR caches "
                            "the published Qwen2.5 one in BUILD_DIR/tokenizer-qwen2_5)",
                            o->tokenizer_dir ? o->tokenizer_dir : "none");
    }
    return MOLD_OK;
}

mold_status mold_synth_write(const mold_synth_options *opt, const char *out_dir,
                             mold_synth_report *rep) {
    MOLD_ASSERT(opt && out_dir);
    const preset *p;
    MOLD_TRY(check_options(opt, &p));
    MOLD_TRY(prepare_out(out_dir));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_ctx r = {.opt = opt, .p = p, .out = out_dir};
    mold_status st = mold_synth_gen_create(opt->seed, opt->n_threads, &r.gen);
    if (!st && !(r.slab = malloc((size_t)SLAB_ELEMS * 4)))
        st = MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory for a %u-element slab", SLAB_ELEMS);
    unsigned c = opt->components ? opt->components : 15;
    char *sched = mold_path_join(out_dir, "scheduler");
    if (!st) st = write_model_index(out_dir);
    if (!st) st = sched ? make_dir(sched) : MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    if (!st) {
        char *f = mold_path_join(sched, "scheduler_config.json");
        st = f ? mold_file_write_atomic(f, SCHEDULER_CONFIG, sizeof SCHEDULER_CONFIG - 1)
               : MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
        free(f);
    }
    free(sched);
    if (!st && (c & MOLD_SYNTH_TOKENIZER)) {
        char *dir = mold_path_join(out_dir, "tokenizer");
        st = dir ? make_dir(dir) : MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
        if (!st) st = copy_tokenizer(opt->tokenizer_dir, dir, &r.n_bytes);
        free(dir);
    }
    if (!st && (c & MOLD_SYNTH_TRANSFORMER))
        st = component(&r, "transformer", dit_list, SYNTH_COMP_DIT);
    if (!st && (c & MOLD_SYNTH_TEXT_ENCODER))
        st = component(&r, "text_encoder", text_list, SYNTH_COMP_TEXT);
    if (!st && (c & MOLD_SYNTH_VAE)) st = component(&r, "vae", vae_list, SYNTH_COMP_VAE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(r.slab);
    mold_synth_gen_free(r.gen);
    if (st) return st;
    if (rep) {
        rep->n_tensors = r.n_tensors;
        rep->n_bytes = r.n_bytes;
        rep->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    return MOLD_OK;
}
