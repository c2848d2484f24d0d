/*
 * threadpool.h — a fixed pool of worker threads for data-parallel loops.
 *
 * mold_pool_run(pool, n, fn, ud) calls fn(ud, i, n) for i in [0, n) over the
 * workers plus the caller and returns when all are done. Work items must be
 * independent. With n_threads == 1 everything runs on the caller. The split
 * of work never changes results (each item computes the same values whatever
 * thread runs it), which keeps outputs identical across thread counts.
 */
#ifndef MOLD_BASE_THREADPOOL_H
#define MOLD_BASE_THREADPOOL_H

#include "status.h"

typedef struct mold_pool mold_pool;
typedef void (*mold_pool_fn)(void *ud, int index, int count);

/* n_threads <= 0 picks the number of online CPUs. */
mold_status mold_pool_create(int n_threads, mold_pool **out);
void mold_pool_free(mold_pool *pool); /* NULL ok */
int mold_pool_size(const mold_pool *pool);
/* Runs fn for index = 0..count-1. pool may be NULL (runs serially). */
void mold_pool_run(mold_pool *pool, int count, mold_pool_fn fn, void *ud);

#endif
