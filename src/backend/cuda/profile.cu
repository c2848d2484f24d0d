/*
 * profile.cu — per-op device time table (see profile.cuh).
 *
 * An entry is one (op name, shape) pair: the same op at two shapes are two
 * rows, so a table shows e.g. the image-stream and text-stream matmuls
 * apart. Entries live in a fixed array searched linearly: a forward has a few
 * dozen distinct (op, shape) pairs, and the search costs nothing next to the
 * event wait every profiled op does anyway.
 */
#include "profile.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROF_MAX_ENTRIES 512

typedef struct prof_entry {
    const char *op; /* static string from CUDA_OP */
    int n_dims;
    int64_t dims[6];
    int64_t calls;
    double total_ms;
} prof_entry;

struct cuda_profile {
    cudaEvent_t start, end;
    int open;       /* a begin without its end yet */
    int n;
    int dropped;    /* ops not recorded because the table was full */
    prof_entry e[PROF_MAX_ENTRIES];
};

extern "C" mold_status mold_cuda_profile_init(cuda_backend *cb) {
    const char *v = getenv("MOLD_CUDA_PROFILE");
    if (!v || !*v || strcmp(v, "0") == 0) return MOLD_OK;
    cuda_profile *p = (cuda_profile *)calloc(1, sizeof *p);
    if (!p) return MOLD_ERR(MOLD_E_NOMEM, "cuda: profile table");
    cb->prof = p;
    MOLD_CUDA_CHECK(cb, cudaEventCreate(&p->start));
    MOLD_CUDA_CHECK(cb, cudaEventCreate(&p->end));
    MOLD_LOGI("cuda: MOLD_CUDA_PROFILE set: every op waits for its end event");
    return MOLD_OK;
}

extern "C" void mold_cuda_profile_begin(cuda_backend *cb) {
    cuda_profile *p = cb->prof;
    if (!p) return;
    p->open = cudaEventRecord(p->start, cb->stream) == cudaSuccess;
}

static prof_entry *find_entry(cuda_profile *p, const char *op, int n_dims, const int64_t *dims) {
    for (int i = 0; i < p->n; i++) {
        prof_entry *e = &p->e[i];
        if (e->n_dims != n_dims || strcmp(e->op, op) != 0) continue;
        if (memcmp(e->dims, dims, (size_t)n_dims * sizeof *dims) == 0) return e;
    }
    if (p->n == PROF_MAX_ENTRIES) return NULL;
    prof_entry *e = &p->e[p->n++];
    e->op = op;
    e->n_dims = n_dims;
    memcpy(e->dims, dims, (size_t)n_dims * sizeof *dims);
    return e;
}

extern "C" void mold_cuda_profile_end(cuda_backend *cb) {
    cuda_profile *p = cb->prof;
    if (!p || !p->open || !cb->op) return;
    p->open = 0;
    float ms = 0.0f;
    if (cudaEventRecord(p->end, cb->stream) != cudaSuccess ||
        cudaEventSynchronize(p->end) != cudaSuccess ||
        cudaEventElapsedTime(&ms, p->start, p->end) != cudaSuccess)
        return; /* the op's own checks report device errors */
    prof_entry *e = find_entry(p, cb->op, cb->n_dims, cb->dims);
    if (!e) {
        p->dropped++;
        return;
    }
    e->calls++;
    e->total_ms += ms;
}

static int by_total_desc(const void *a, const void *b) {
    double x = ((const prof_entry *)a)->total_ms, y = ((const prof_entry *)b)->total_ms;
    return (x < y) - (x > y);
}

extern "C" void mold_cuda_profile_finish(cuda_backend *cb) {
    cuda_profile *p = cb->prof;
    if (!p) return;
    double sum = 0.0;
    for (int i = 0; i < p->n; i++) sum += p->e[i].total_ms;
    qsort(p->e, (size_t)p->n, sizeof p->e[0], by_total_desc);
    fprintf(stderr, "cuda profile: %.3f ms of device time in %d (op, shape) rows%s\n", sum, p->n,
            p->dropped ? " (table full: some ops not counted)" : "");
    fprintf(stderr, "%10s %7s %10s %6s  %s\n", "total_ms", "calls", "mean_ms", "share", "op [dims]");
    for (int i = 0; i < p->n; i++) {
        const prof_entry *e = &p->e[i];
        char dims[128] = "";
        int at = 0;
        for (int d = 0; d < e->n_dims && at < (int)sizeof dims - 24; d++)
            at += snprintf(dims + at, sizeof dims - (size_t)at, "%s%lld", d ? "," : "",
                           (long long)e->dims[d]);
        fprintf(stderr, "%10.3f %7lld %10.4f %5.1f%%  %s [%s]\n", e->total_ms,
                (long long)e->calls, e->total_ms / (double)e->calls,
                sum > 0 ? 100.0 * e->total_ms / sum : 0.0, e->op, dims);
    }
    fprintf(stderr, "cuBLASLt heuristic queries: %llu (%llu found no algorithm)\n",
            (unsigned long long)cb->n_heuristic, (unsigned long long)cb->n_heuristic_none);
    cudaEventDestroy(p->start);
    cudaEventDestroy(p->end);
    free(p);
    cb->prof = NULL;
}
