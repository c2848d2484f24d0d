/*
 * status.h — error kinds and the per-thread error message.
 *
 * Every fallible function in mold returns a mold_status (MOLD_OK == 0, errors
 * negative) and passes results through out-parameters. The human-readable
 * reason lives in a thread-local buffer set by MOLD_ERR at the place that found
 * the problem, so a caller can simply `return st;` and the CLI prints
 * mold_error_message() once. Messages name the file, field or value and say
 * "expected X, got Y".
 *
 * Three failure kinds (docs/style.md rule 7): bad input -> status; bugs ->
 * MOLD_ASSERT (on in release builds too); expensive checks -> assert().
 */
#ifndef MOLD_BASE_STATUS_H
#define MOLD_BASE_STATUS_H

#include <stddef.h>

typedef enum mold_status {
    MOLD_OK = 0,
    MOLD_E_INVALID = -1,   /* bad argument or request parameter */
    MOLD_E_IO = -2,        /* open/read/write/mmap failed */
    MOLD_E_FORMAT = -3,    /* malformed file content (header, JSON, GGUF) */
    MOLD_E_NOMEM = -4,     /* allocation failed */
    MOLD_E_NOTFOUND = -5,  /* missing file, tensor, field or token */
    MOLD_E_UNSUPPORTED = -6, /* valid but not implemented (dtype, op, arch) */
    MOLD_E_RANGE = -7,     /* value outside its allowed range, overflow */
    MOLD_E_DEVICE = -8,    /* backend (CUDA) failure */
    MOLD_E_NUMERIC = -9,   /* NaN/Inf detected */
} mold_status;

/* Short stable name of a status ("invalid", "io", ...). Never NULL. */
const char *mold_status_str(mold_status st);

/* Records `st` with a formatted message for the calling thread and returns st.
 * Use through MOLD_ERR so file, line and function are captured. */
mold_status mold_error_set(mold_status st, const char *file, int line,
                           const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Prepends "prefix: " to the current message (adds context on the way up). */
void mold_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The calling thread's last message ("" when none). Valid until the next set. */
const char *mold_error_message(void);
/* Where the last error was raised, "file:line (func)". */
const char *mold_error_where(void);
void mold_error_clear(void);

#define MOLD_ERR(st, ...) mold_error_set((st), __FILE__, __LINE__, __func__, __VA_ARGS__)

/* Propagate a failing status unchanged. */
#define MOLD_TRY(expr)                      \
    do {                                    \
        mold_status mold_try_st_ = (expr);  \
        if (mold_try_st_ != MOLD_OK)        \
            return mold_try_st_;            \
    } while (0)

/* Invariant checks that stay on in release builds. They report and abort:
 * only for programming errors, never for bad input. */
void mold_assert_fail(const char *expr, const char *file, int line, const char *func)
    __attribute__((noreturn));
#define MOLD_ASSERT(x) \
    ((x) ? (void)0 : mold_assert_fail(#x, __FILE__, __LINE__, __func__))

#endif
