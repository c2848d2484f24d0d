/*
 * philox.c — Philox4x32-10 and Box-Muller (see philox.h for the algorithm).
 * Constants from Salmon, Moraes, Dror, Shaw: "Parallel Random Numbers: As Easy
 * as 1, 2, 3" (SC 2011), the same as Random123 and cuRAND's Philox.
 */
#include "philox.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void mold_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

static double unit_open(uint32_t x) { return ((double)x + 0.5) * (1.0 / 4294967296.0); }

void mold_philox_normal(uint64_t seed, float *out, size_t n) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const double two_pi = 6.283185307179586476925286766559;
    for (size_t j = 0; j * 4 < n; j++) {
        uint32_t ctr[4] = {(uint32_t)j, (uint32_t)((uint64_t)j >> 32), 0, 0}, x[4];
        mold_philox4x32(ctr, key, x);
        double v[4];
        for (int p = 0; p < 2; p++) {
            double r = sqrt(-2.0 * log(unit_open(x[2 * p])));
            double a = two_pi * unit_open(x[2 * p + 1]);
            v[2 * p] = r * cos(a);
            v[2 * p + 1] = r * sin(a);
        }
        for (int k = 0; k < 4 && j * 4 + (size_t)k < n; k++) out[j * 4 + (size_t)k] = (float)v[k];
    }
}
