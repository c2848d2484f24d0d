/*
 * clock.h — monotonic wall time for stage timings and logs.
 */
#ifndef MOLD_BASE_CLOCK_H
#define MOLD_BASE_CLOCK_H

/* Milliseconds on CLOCK_MONOTONIC (arbitrary origin; differences only). */
double mold_now_ms(void);

#endif
