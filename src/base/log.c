/*
 * log.c — the process-wide log sink (see log.h).
 *
 * The default sink writes "[mold] LEVEL message" lines, or one JSON object per
 * line when MOLD_LOG=json. A mutex keeps lines from interleaving.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static mold_log_fn g_fn;
static void *g_ud;
static mold_log_level g_level = MOLD_LOG_INFO;
static int g_json;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(mold_log_level l) {
    switch (l) {
    case MOLD_LOG_DEBUG: return "debug";
    case MOLD_LOG_INFO: return "info";
    case MOLD_LOG_WARN: return "warn";
    case MOLD_LOG_ERROR: return "error";
    default: return "off";
    }
}

static void json_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

static void default_sink(mold_log_level level, const char *src, const char *msg, void *ud) {
    (void)ud;
    if (g_json) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fprintf(stderr, "{\"ts\":%lld.%03ld,\"level\":\"%s\",\"src\":\"", (long long)ts.tv_sec,
                ts.tv_nsec / 1000000, level_name(level));
        json_escape(stderr, src);
        fputs("\",\"msg\":\"", stderr);
        json_escape(stderr, msg);
        fputs("\"}\n", stderr);
    } else {
        fprintf(stderr, "[mold] %-5s %s\n", level_name(level), msg);
    }
}

void mold_log_set(mold_log_fn fn, void *ud) {
    pthread_mutex_lock(&g_lock);
    g_fn = fn;
    g_ud = ud;
    pthread_mutex_unlock(&g_lock);
}

void mold_log_set_level(mold_log_level level) { g_level = level; }
mold_log_level mold_log_get_level(void) { return g_level; }

void mold_log_init_from_env(void) {
    const char *fmt = getenv("MOLD_LOG");
    g_json = fmt && !strcasecmp(fmt, "json");
    const char *lvl = getenv("MOLD_LOG_LEVEL");
    if (!lvl) return;
    if (!strcasecmp(lvl, "debug")) g_level = MOLD_LOG_DEBUG;
    else if (!strcasecmp(lvl, "info")) g_level = MOLD_LOG_INFO;
    else if (!strcasecmp(lvl, "warn")) g_level = MOLD_LOG_WARN;
    else if (!strcasecmp(lvl, "error")) g_level = MOLD_LOG_ERROR;
    else if (!strcasecmp(lvl, "off")) g_level = MOLD_LOG_OFF;
}

void mold_log_write(mold_log_level level, const char *file, int line, const char *fmt, ...) {
    if (level < g_level) return;
    char msg[4096], src[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(src, sizeof src, "%s:%d", base ? base + 1 : file, line);
    pthread_mutex_lock(&g_lock);
    if (g_fn) g_fn(level, src, msg, g_ud);
    else default_sink(level, src, msg, NULL);
    pthread_mutex_unlock(&g_lock);
}
