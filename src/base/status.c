/*
 * status.c — status names and the per-thread error message (see status.h).
 */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_CAP 2048

static _Thread_local char tl_msg[MSG_CAP];
static _Thread_local char tl_where[256];

const char *mold_status_str(mold_status st) {
    switch (st) {
    case MOLD_OK: return "ok";
    case MOLD_E_INVALID: return "invalid argument";
    case MOLD_E_IO: return "i/o error";
    case MOLD_E_FORMAT: return "format error";
    case MOLD_E_NOMEM: return "out of memory";
    case MOLD_E_NOTFOUND: return "not found";
    case MOLD_E_UNSUPPORTED: return "unsupported";
    case MOLD_E_RANGE: return "out of range";
    case MOLD_E_DEVICE: return "device error";
    case MOLD_E_NUMERIC: return "numeric error";
    }
    return "unknown status";
}

mold_status mold_error_set(mold_status st, const char *file, int line, const char *func,
                           const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(tl_where, sizeof tl_where, "%s:%d (%s)", base ? base + 1 : file, line, func);
    return st;
}

void mold_error_prefix(const char *fmt, ...) {
    char pre[512], old[MSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, tl_msg, sizeof old);
    /* Truncation of very long messages is acceptable here. */
    size_t lp = strnlen(pre, sizeof pre - 1);
    memcpy(tl_msg, pre, lp);
    memcpy(tl_msg + lp, ": ", 2);
    size_t lo = strnlen(old, sizeof old - 1);
    if (lo > MSG_CAP - lp - 3) lo = MSG_CAP - lp - 3;
    memcpy(tl_msg + lp + 2, old, lo);
    tl_msg[lp + 2 + lo] = 0;
}

const char *mold_error_message(void) { return tl_msg; }
const char *mold_error_where(void) { return tl_where; }

void mold_error_clear(void) {
    tl_msg[0] = 0;
    tl_where[0] = 0;
}

void mold_assert_fail(const char *expr, const char *file, int line, const char *func) {
    fprintf(stderr, "mold: internal error: assertion '%s' failed at %s:%d (%s)\n", expr, file,
            line, func);
    fflush(stderr);
    abort();
}
