/*
 * log.h — one log sink for the whole process.
 *
 * Human-readable lines on stderr by default; with MOLD_LOG=json each record is
 * one JSON object per line ({"ts":..., "level":..., "src":..., "msg":...}).
 * MOLD_LOG_LEVEL=debug|info|warn|error sets the threshold (default info).
 * The macros skip formatting entirely when the level is off.
 */
#ifndef MOLD_BASE_LOG_H
#define MOLD_BASE_LOG_H

typedef enum mold_log_level {
    MOLD_LOG_DEBUG = 0,
    MOLD_LOG_INFO = 1,
    MOLD_LOG_WARN = 2,
    MOLD_LOG_ERROR = 3,
    MOLD_LOG_OFF = 4,
} mold_log_level;

/* Sink callback: receives the level, the source "file:line" and the message. */
typedef void (*mold_log_fn)(mold_log_level level, const char *src, const char *msg, void *ud);

/* Replaces the sink (NULL restores the default stderr sink). */
void mold_log_set(mold_log_fn fn, void *ud);
void mold_log_set_level(mold_log_level level);
mold_log_level mold_log_get_level(void);
/* Re-reads MOLD_LOG and MOLD_LOG_LEVEL from the environment. */
void mold_log_init_from_env(void);

void mold_log_write(mold_log_level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define MOLD_LOG_AT(lvl, ...)                                           \
    do {                                                                \
        if ((lvl) >= mold_log_get_level())                              \
            mold_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);     \
    } while (0)
#define MOLD_LOGD(...) MOLD_LOG_AT(MOLD_LOG_DEBUG, __VA_ARGS__)
#define MOLD_LOGI(...) MOLD_LOG_AT(MOLD_LOG_INFO, __VA_ARGS__)
#define MOLD_LOGW(...) MOLD_LOG_AT(MOLD_LOG_WARN, __VA_ARGS__)
#define MOLD_LOGE(...) MOLD_LOG_AT(MOLD_LOG_ERROR, __VA_ARGS__)

#endif
