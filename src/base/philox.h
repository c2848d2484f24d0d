/*
 * philox.h — seeded Gaussian noise that is identical on every machine.
 *
 * Algorithm (documented in docs/noise.md):
 *   key     = (seed & 0xffffffff, seed >> 32)
 *   counter = (j, 0, 0, 0) for the j-th block of four outputs
 *   (x0..x3) = Philox4x32-10(counter, key)   (Salmon et al. 2011 constants)
 *   u_k     = (x_k + 0.5) / 2^32              (never 0 or 1)
 *   r = sqrt(-2 ln u0), a = 2 pi u1:  n[4j] = r cos a,  n[4j+1] = r sin a
 *   r = sqrt(-2 ln u2), a = 2 pi u3:  n[4j+2] = r cos a, n[4j+3] = r sin a
 * computed in double and rounded to float. Element i of the output depends
 * only on (seed, i): any thread split or backend gives the same values.
 */
#ifndef MOLD_BASE_PHILOX_H
#define MOLD_BASE_PHILOX_H

#include <stddef.h>
#include <stdint.h>

/* One Philox4x32-10 block. */
void mold_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Fills out[0..n) with N(0, 1) samples for `seed` (see above). */
void mold_philox_normal(uint64_t seed, float *out, size_t n);

#endif
