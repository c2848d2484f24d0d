/*
 * flowmatch.c — FlowMatchEulerDiscreteScheduler.set_timesteps as the
 * Qwen-Image pipeline calls it (diffusers scheduling_flow_match_euler_discrete.py
 * `set_timesteps`, `_time_shift_exponential`, `stretch_shift_to_terminal`;
 * pipeline_qwenimage.py `calculate_shift`).
 *
 * The reference computes the sigma grid in float64 (numpy linspace), casts it
 * to float32 and does the shift and stretch in float32; we do the same so the
 * sigmas agree to the last bit or two.
 */
#include "flowmatch.h"

#include <math.h>

double mold_flowmatch_mu(const mold_scheduler_config *cfg, int64_t n_img) {
    double m = (cfg->max_shift - cfg->base_shift) /
               (double)(cfg->max_image_seq_len - cfg->base_image_seq_len);
    double b = cfg->base_shift - m * (double)cfg->base_image_seq_len;
    return (double)n_img * m + b;
}

/* exponential: e^mu / (e^mu + (1/t - 1)); linear: mu / (mu + (1/t - 1)). */
static float time_shift(const mold_scheduler_config *cfg, double mu, float t) {
    float e = cfg->exponential_time_shift ? (float)exp(mu) : (float)mu;
    return e / (e + (1.0f / t - 1.0f));
}

mold_status mold_flowmatch_sigmas(const mold_scheduler_config *cfg, int n_steps, double mu,
                                  float *sigmas, float *timesteps) {
    if (n_steps < 1 || n_steps > 1000)
        return MOLD_ERR(MOLD_E_RANGE, "steps: expected 1..1000, got %d", n_steps);
    if (cfg->invert_sigmas || cfg->use_karras_sigmas || cfg->use_exponential_sigmas ||
        cfg->use_beta_sigmas || cfg->stochastic_sampling)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "scheduler_config.json: karras/exponential/beta "
                        "sigmas, inverted sigmas and stochastic sampling are not supported");
    for (int i = 0; i < n_steps; i++) {
        /* numpy linspace(1, 1/n, n) in float64, then cast to float32 */
        double s = n_steps == 1 ? 1.0
                                : 1.0 + (1.0 / n_steps - 1.0) * (double)i / (double)(n_steps - 1);
        float t = (float)s;
        if (cfg->use_dynamic_shifting)
            t = time_shift(cfg, mu, t);
        else if (cfg->shift != 1.0) /* static shift: s*t / (1 + (s-1) t) */
            t = (float)cfg->shift * t / (1.0f + ((float)cfg->shift - 1.0f) * t);
        sigmas[i] = t;
    }
    /* Stretch so the last evaluated sigma equals shift_terminal. Skipped for
     * one step, where 1 - sigma_last == 0 and the reference yields NaN. */
    if (cfg->shift_terminal > 0 && n_steps > 1) {
        float scale = (1.0f - sigmas[n_steps - 1]) / (1.0f - (float)cfg->shift_terminal);
        for (int i = 0; i < n_steps; i++) sigmas[i] = 1.0f - (1.0f - sigmas[i]) / scale;
    }
    sigmas[n_steps] = 0.0f;
    if (timesteps)
        for (int i = 0; i < n_steps; i++)
            timesteps[i] = sigmas[i] * (float)cfg->num_train_timesteps;
    return MOLD_OK;
}
