/*
 * gguf_model.c — model hyper-parameters from GGUF metadata.
 *
 * Owner: the gguf helper. A llama.cpp-style text-encoder GGUF
 * (general.architecture "qwen2vl", spec 3.5) stores the Qwen2.5-VL text
 * config under "<arch>.*" keys. They are rendered as the equivalent
 * transformers 4.x config.json and parsed by mold_text_config_parse, so a
 * GGUF config passes exactly the same validation as a model directory's.
 * Keys (llama.cpp gguf-py constants): block_count, embedding_length,
 * feed_forward_length, attention.head_count, attention.head_count_kv,
 * attention.key_length (optional head dim), attention.layer_norm_rms_epsilon,
 * rope.freq_base, rope.dimension_sections (4 ints, the first 3 are
 * mrope_section; absent for plain qwen2 files: all pairs on one section).
 * vocab_size is the row count of token_embd.weight.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "gguf.h"
#include "modeldir.h"

/* Architectures whose GGUF text model is a Qwen2 decoder. */
static const char *const TEXT_ARCHS[] = {"qwen2vl", "qwen25vl", "qwen2"};

static mold_status get_int_key(const mold_gguf *g, const char *arch, const char *key,
                               bool required, int64_t *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return mold_gguf_get_int(g, full, required, out);
}

static mold_status get_float_key(const mold_gguf *g, const char *arch, const char *key,
                                 double *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return mold_gguf_get_float(g, full, true, out);
}

mold_status mold_gguf_text_config(const mold_gguf *g, mold_text_config *out) {
    const char *what = mold_gguf_path(g), *arch = mold_gguf_architecture(g);
    size_t k = 0;
    while (k < sizeof TEXT_ARCHS / sizeof TEXT_ARCHS[0] && strcmp(arch, TEXT_ARCHS[k])) k++;
    if (k == sizeof TEXT_ARCHS / sizeof TEXT_ARCHS[0])
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: general.architecture: expected qwen2vl (a "
                        "llama.cpp Qwen2.5-VL text encoder), got '%s'", what, arch);
    int64_t layers = 0, hidden = 0, ffn = 0, heads = 0, kv_heads = -1, head_dim = 0;
    double eps = 0, theta = 0;
    MOLD_TRY(get_int_key(g, arch, "block_count", true, &layers));
    MOLD_TRY(get_int_key(g, arch, "embedding_length", true, &hidden));
    MOLD_TRY(get_int_key(g, arch, "feed_forward_length", true, &ffn));
    MOLD_TRY(get_int_key(g, arch, "attention.head_count", true, &heads));
    MOLD_TRY(get_int_key(g, arch, "attention.head_count_kv", false, &kv_heads));
    MOLD_TRY(get_int_key(g, arch, "attention.key_length", false, &head_dim));
    MOLD_TRY(get_float_key(g, arch, "attention.layer_norm_rms_epsilon", &eps));
    MOLD_TRY(get_float_key(g, arch, "rope.freq_base", &theta));
    if (kv_heads < 0) kv_heads = heads;
    if (heads <= 0 || (!head_dim && hidden % heads))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %s.attention.head_count: expected a divisor of the "
                        "embedding length %" PRId64 ", got %" PRId64, what, arch, hidden, heads);
    if (!head_dim) head_dim = hidden / heads;
    int64_t sec[4] = {head_dim / 2, 0, 0, 0};
    size_t n_sec = 0;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.dimension_sections", arch);
    MOLD_TRY(mold_gguf_get_int_array(g, key, false, sec, 4, &n_sec));
    const mold_tensor *emb = mold_gguf_find(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: tensor 'token_embd.weight' (2-D) not found: cannot "
                        "tell the vocabulary size", what);
    char json[1024];
    int len = snprintf(json, sizeof json,
                       "{\"hidden_size\": %" PRId64 ", \"num_hidden_layers\": %" PRId64
                       ", \"num_attention_heads\": %" PRId64 ", \"num_key_value_heads\": %" PRId64
                       ", \"head_dim\": %" PRId64 ", \"intermediate_size\": %" PRId64
                       ", \"vocab_size\": %" PRId64 ", \"rms_norm_eps\": %.17g"
                       ", \"rope_theta\": %.17g, \"rope_scaling\": {\"type\": \"default\", "
                       "\"mrope_section\": [%" PRId64 ", %" PRId64 ", %" PRId64 "]}}",
                       hidden, layers, heads, kv_heads, head_dim, ffn, emb->shape[0], eps, theta,
                       sec[0], sec[1], sec[2]);
    char label[512];
    snprintf(label, sizeof label, "%s (GGUF %s.* metadata)", what, arch);
    return mold_text_config_parse(json, (size_t)len, label, out);
}
