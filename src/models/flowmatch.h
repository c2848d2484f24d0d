/*
 * flowmatch.h — the flow-matching Euler schedule of Qwen-Image (spec 6.2-6.4).
 *
 * sigmas[0..n] with sigmas[n] = 0: linspace(1, 1/n, n) -> exponential time
 * shift with mu from the image token count -> stretch so the last evaluated
 * sigma is shift_terminal. For n == 1 the stretch is skipped (the reference
 * divides 0 by 0 there): sigmas = [1, 0]. The Euler update is
 * x += (sigmas[i+1] - sigmas[i]) * v, in f32.
 */
#ifndef MOLD_MODELS_FLOWMATCH_H
#define MOLD_MODELS_FLOWMATCH_H

#include "../base/status.h"
#include "../formats/modeldir.h"

/* mu of the dynamic shift for n_img image tokens (calculate_shift, no clamp). */
double mold_flowmatch_mu(const mold_scheduler_config *cfg, int64_t n_img);

/* Fills sigmas[0..n_steps] (n_steps + 1 values) and timesteps[0..n_steps-1]
 * (= 1000 * sigma; nullable). Fails for n_steps < 1 or a config using an
 * option mold does not implement (karras/beta/exponential sigmas, inversion,
 * stochastic sampling). */
mold_status mold_flowmatch_sigmas(const mold_scheduler_config *cfg, int n_steps, double mu,
                                  float *sigmas, float *timesteps);

#endif
