/*
 * backend.c — backend-independent helpers of ops.h.
 *
 * mold_backend_free() dispatches to the instance's destroy(); it is the one
 * way to release a backend made by any mold_backend_*_create().
 */
#include "ops.h"

void mold_backend_free(mold_backend *be) {
    if (be && be->i && be->i->destroy)
        be->i->destroy(be);
}
