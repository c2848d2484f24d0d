/*
 * modeldir.h — a Qwen-Image model directory in diffusers layout, and the
 * validated configs of its components.
 *
 *   <root>/model_index.json
 *   <root>/transformer/config.json + diffusion_pytorch_model*.safetensors[.index.json]
 *   <root>/text_encoder/config.json + model*.safetensors[.index.json]
 *   <root>/vae/config.json + diffusion_pytorch_model.safetensors
 *   <root>/scheduler/scheduler_config.json
 *   <root>/tokenizer/ (tokenizer.json or vocab.json + merges.txt)
 *
 * The config parsers are usable on their own (GGUF files and tests build the
 * same structs). Every missing or invalid field is an error that names the
 * file and the field.
 */
#ifndef MOLD_FORMATS_MODELDIR_H
#define MOLD_FORMATS_MODELDIR_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/status.h"

/* transformer/config.json (QwenImageTransformer2DModel) */
typedef struct mold_dit_config {
    int patch_size;          /* 2 */
    int in_channels;         /* 64 = 16 latent ch x 2 x 2 */
    int out_channels;        /* 16 */
    int num_layers;          /* 60 */
    int attention_head_dim;  /* 128 */
    int num_attention_heads; /* 24 */
    int joint_attention_dim; /* 3584 = text hidden size */
    int axes_dims_rope[3];   /* {16, 56, 56}; sum == attention_head_dim */
    bool guidance_embeds;    /* must be false for T2I */
    bool zero_cond_t;        /* Edit-2511 only; must be false */
    bool use_additional_t_cond; /* Layered only; must be false */
    bool use_layer3d_rope;   /* Layered only; must be false */
} mold_dit_config;

/* vae/config.json (AutoencoderKLQwenImage) */
typedef struct mold_vae_config {
    int base_dim;            /* 96 */
    int z_dim;               /* 16 */
    int num_res_blocks;      /* 2 */
    int n_dim_mult;          /* 4 */
    int dim_mult[8];         /* {1, 2, 4, 4} */
    int n_temperal_downsample;
    bool temperal_downsample[8]; /* {false, true, true} */
    int n_attn_scales;       /* must be 0 (no attention outside the mid block) */
    float latents_mean[16];  /* per latent channel; length == z_dim */
    float latents_std[16];
} mold_vae_config;

/* text_encoder/config.json (Qwen2.5-VL text model). Both layouts accepted:
 * transformers 4.x (fields at top level, rope_theta, rope_scaling.mrope_section)
 * and 5.x (fields under text_config, rope under rope_parameters). */
typedef struct mold_text_config {
    int hidden_size;         /* 3584 */
    int num_hidden_layers;   /* 28 */
    int num_attention_heads; /* 28 */
    int num_key_value_heads; /* 4 */
    int head_dim;            /* hidden_size / num_attention_heads unless given */
    int intermediate_size;   /* 18944 */
    int vocab_size;          /* 152064 */
    double rms_norm_eps;     /* 1e-6 */
    double rope_theta;       /* 1e6 */
    int mrope_section[3];    /* {16, 24, 24}; sum == head_dim / 2 */
} mold_text_config;

/* scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler) */
typedef struct mold_scheduler_config {
    int num_train_timesteps;   /* 1000 */
    double shift;              /* 1.0 */
    bool use_dynamic_shifting; /* true */
    double base_shift;         /* 0.5 */
    double max_shift;          /* 0.9 */
    int base_image_seq_len;    /* 256 */
    int max_image_seq_len;     /* 8192 */
    double shift_terminal;     /* 0.02; 0 = none */
    bool exponential_time_shift; /* time_shift_type == "exponential" */
    bool invert_sigmas, use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas,
        stochastic_sampling;   /* all must be false */
} mold_scheduler_config;

mold_status mold_dit_config_load(const char *path, mold_dit_config *out);
mold_status mold_vae_config_load(const char *path, mold_vae_config *out);
mold_status mold_text_config_load(const char *path, mold_text_config *out);
mold_status mold_scheduler_config_load(const char *path, mold_scheduler_config *out);
/* Same from an in-memory JSON text; `what` names it in errors (fuzzers, tests). */
mold_status mold_dit_config_parse(const char *json, size_t len, const char *what,
                                  mold_dit_config *out);
mold_status mold_vae_config_parse(const char *json, size_t len, const char *what,
                                  mold_vae_config *out);
mold_status mold_text_config_parse(const char *json, size_t len, const char *what,
                                   mold_text_config *out);
mold_status mold_scheduler_config_parse(const char *json, size_t len, const char *what,
                                        mold_scheduler_config *out);

typedef struct mold_modeldir {
    char *root;              /* owned */
    char *transformer_dir;   /* owned; NULL when absent */
    char *text_encoder_dir;
    char *vae_dir;
    char *tokenizer_dir;
    char *scheduler_dir;
    bool has_dit, has_vae, has_text, has_scheduler;
    mold_dit_config dit;
    mold_vae_config vae;
    mold_text_config text;
    mold_scheduler_config scheduler;
} mold_modeldir;

/* Opens and validates a model directory: model_index.json must exist and
 * every component it lists must have a valid config. */
mold_status mold_modeldir_open(const char *path, mold_modeldir *out);
void mold_modeldir_close(mold_modeldir *md); /* frees strings; zeroed struct ok */

#endif
