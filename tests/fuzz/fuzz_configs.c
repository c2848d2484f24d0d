/*
 * fuzz_configs.c — libFuzzer target for the four model config parsers.
 *
 * The same bytes go through the transformer, VAE, text encoder and scheduler
 * parsers (each rejects what is not its own quickly, so one target covers all
 * four). A successful parse must satisfy the invariants the models rely on.
 */
#include <stdint.h>
#include <stdlib.h>

#include "base/log.h"
#include "formats/modeldir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mold_log_set_level(MOLD_LOG_OFF);
    const char *j = (const char *)data;
    mold_dit_config d;
    if (mold_dit_config_parse(j, size, "fuzz", &d) == MOLD_OK &&
        d.axes_dims_rope[0] + d.axes_dims_rope[1] + d.axes_dims_rope[2] != d.attention_head_dim)
        abort();
    mold_vae_config v;
    if (mold_vae_config_parse(j, size, "fuzz", &v) == MOLD_OK &&
        (v.z_dim < 1 || v.z_dim > 16 || v.n_dim_mult < 1 || v.n_dim_mult > 8))
        abort();
    mold_text_config t;
    if (mold_text_config_parse(j, size, "fuzz", &t) == MOLD_OK &&
        (t.head_dim <= 0 || 2 * (t.mrope_section[0] + t.mrope_section[1] + t.mrope_section[2]) !=
                                t.head_dim))
        abort();
    mold_scheduler_config s;
    if (mold_scheduler_config_parse(j, size, "fuzz", &s) == MOLD_OK && s.num_train_timesteps < 1)
        abort();
    return 0;
}
