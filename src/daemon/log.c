/*
 * Leveled logging to stderr for the daemon and for the libraries it wraps (see log.h).
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int current_level = LOG_LEVEL_INFO;

/* When stderr is connected to journald, the journal timestamps each line itself and reads the
 * level from a "<N>" syslog prefix. Elsewhere a timestamp helps a person reading a terminal. */
static int journal_prefix;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int level_syslog[] = {3, 4, 6, 7};

void log_init(log_level level)
{
    journal_prefix = getenv("JOURNAL_STREAM") != NULL;
    log_set_level(level);
}

void log_set_level(log_level level)
{
    atomic_store(&current_level, (int)level);
}

log_level log_get_level(void)
{
    return (log_level)atomic_load(&current_level);
}

int log_enabled(log_level level)
{
    return (int)level <= atomic_load_explicit(&current_level, memory_order_relaxed);
}

int log_level_parse(const char *text, log_level *out)
{
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *log_level_name(log_level level)
{
    if ((int)level < 0 || level > LOG_LEVEL_DEBUG)
        return "unknown";
    return level_names[level];
}

void log_write(log_level level, const char *module, const char *format, ...)
{
    char line[2048];
    size_t used = 0;

    if (journal_prefix) {
        used = (size_t)snprintf(line, sizeof line, "<%d>%s: ", level_syslog[level], module);
    } else {
        struct timespec now;
        struct tm local;
        clock_gettime(CLOCK_REALTIME, &now);
        localtime_r(&now.tv_sec, &local);
        used = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &local);
        used += (size_t)snprintf(line + used, sizeof line - used,
                                 ".%03ld %-5s %s: ", now.tv_nsec / 1000000L, level_names[level],
                                 module);
    }

    va_list args;
    va_start(args, format);
    int written = vsnprintf(line + used, sizeof line - used, format, args);
    va_end(args);

    /* A line longer than the buffer is cut and marked rather than split over several lines,
     * so that one event stays one journal entry. */
    if (written < 0)
        written = 0;
    used += (size_t)written;
    if (used >= sizeof line - 1) {
        used = sizeof line - 5;
        memcpy(line + used, "...", 3);
        used += 3;
    }
    line[used++] = '\n';

    /* One write() per line keeps lines from different threads whole. */
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
}

int log_limit_allow(log_limit *limit, uint64_t now_ms, uint32_t *suppressed_out)
{
    if (now_ms - limit->window_start_ms >= LOG_LIMIT_WINDOW_MS) {
        limit->window_start_ms = now_ms;
        limit->passed_in_window = 0;
    }

    if (limit->passed_in_window >= LOG_LIMIT_BURST) {
        limit->suppressed++;
        *suppressed_out = 0;
        return 0;
    }

    limit->passed_in_window++;
    *suppressed_out = limit->suppressed;
    limit->suppressed = 0;
    return 1;
}
