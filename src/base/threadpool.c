/*
 * threadpool.c — fixed worker pool for data-parallel loops (see threadpool.h).
 *
 * One job at a time: mold_pool_run publishes (fn, ud, count), bumps a
 * generation counter and joins in; items are claimed with an atomic counter.
 * The caller waits until every claimed item has finished. Nested calls from
 * inside a worker run serially on that worker (no deadlock).
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct mold_pool {
    int n_threads;           /* workers + caller */
    pthread_t *threads;      /* n_threads - 1 workers */
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* workers wait for a new generation */
    pthread_cond_t done;     /* caller waits for n_done == count */
    pthread_mutex_t run_lock; /* one job at a time */
    unsigned generation;
    int stop;
    mold_pool_fn fn;
    void *ud;
    int count;
    atomic_int next;         /* next item to claim */
    int n_done;              /* items finished (under lock) */
};

static _Thread_local int tl_in_pool;

static void run_items(mold_pool *p) {
    int finished = 0;
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->count) break;
        p->fn(p->ud, i, p->count);
        finished++;
    }
    if (finished) {
        pthread_mutex_lock(&p->lock);
        p->n_done += finished;
        if (p->n_done == p->count) pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->lock);
    }
}

static void *worker(void *arg) {
    mold_pool *p = arg;
    tl_in_pool = 1;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->lock);
        run_items(p);
    }
}

mold_status mold_pool_create(int n_threads, mold_pool **out) {
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) return MOLD_ERR(MOLD_E_RANGE, "threads: expected 1..256, got %d", n_threads);
    mold_pool *p = calloc(1, sizeof *p);
    if (!p) return MOLD_ERR(MOLD_E_NOMEM, "thread pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!p->threads) {
            mold_pool_free(p);
            return MOLD_ERR(MOLD_E_NOMEM, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
                p->n_threads = i + 1; /* only i workers exist */
                mold_pool_free(p);
                return MOLD_ERR(MOLD_E_IO, "thread pool: cannot start thread %d", i);
            }
        }
    }
    *out = p;
    return MOLD_OK;
}

void mold_pool_free(mold_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; p->threads && i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->run_lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

int mold_pool_size(const mold_pool *p) { return p ? p->n_threads : 1; }

void mold_pool_run(mold_pool *p, int count, mold_pool_fn fn, void *ud) {
    if (count <= 0) return;
    if (!p || p->n_threads == 1 || count == 1 || tl_in_pool) {
        for (int i = 0; i < count; i++) fn(ud, i, count);
        return;
    }
    pthread_mutex_lock(&p->run_lock);
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ud = ud;
    p->count = count;
    p->n_done = 0;
    atomic_store(&p->next, 0);
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    tl_in_pool = 1;
    run_items(p);
    tl_in_pool = 0;

    pthread_mutex_lock(&p->lock);
    while (p->n_done < p->count) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->run_lock);
}
