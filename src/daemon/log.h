/*
 * The daemon's one logging facility: leveled lines on stderr, where journald picks them up.
 *
 * Every module, and the diagnostics of Paho and libmicrohttpd, log through here. The LOG_*
 * macros test the level before the arguments are formatted, so a disabled debug line costs one
 * comparison. Lines carry a syslog priority prefix ("<3>") when stderr is the journal, which
 * lets journald store the level. Any thread may log: each line is written with one write().
 */
#ifndef BABYMAMBAD_LOG_H
#define BABYMAMBAD_LOG_H

#include <stdint.h>

typedef enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG
} log_level;

/* Sets up the prefix style from the environment (JOURNAL_STREAM) and the initial level. */
void log_init(log_level level);

void log_set_level(log_level level);
log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 on success, -1 for any other word. */
int log_level_parse(const char *text, log_level *out);
const char *log_level_name(log_level level);

/* Formats and writes one line "LEVEL module: message". Call it through the macros below. */
void log_write(log_level level, const char *module, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Nonzero when a line at level would be written. Safe to call from any thread. */
int log_enabled(log_level level);

#define LOG_AT(level, module, ...)                                                                 \
    do {                                                                                           \
        if (log_enabled(level))                                                                    \
            log_write(level, module, __VA_ARGS__);                                                 \
    } while (0)

#define LOG_ERROR(module, ...) LOG_AT(LOG_LEVEL_ERROR, module, __VA_ARGS__)
#define LOG_WARN(module, ...)  LOG_AT(LOG_LEVEL_WARN, module, __VA_ARGS__)
#define LOG_INFO(module, ...)  LOG_AT(LOG_LEVEL_INFO, module, __VA_ARGS__)
#define LOG_DEBUG(module, ...) LOG_AT(LOG_LEVEL_DEBUG, module, __VA_ARGS__)

/*
 * A token bucket that limits how often one kind of line is logged, for errors that a sender can
 * repeat at line rate. Callers keep one per kind (per reason, per device) and call
 * log_limit_allow with the loop's clock. Suppressed lines are counted, so the next line that
 * passes can report their number. Not thread-safe: use it on the loop thread.
 */
typedef struct log_limit {
    uint64_t window_start_ms;
    uint32_t passed_in_window;
    uint32_t suppressed;
} log_limit;

/* Lines allowed per window for every log_limit, and the window length. */
#define LOG_LIMIT_BURST     5
#define LOG_LIMIT_WINDOW_MS 10000

/* Returns nonzero when a line may be written now. *suppressed_out receives the number of lines
 * suppressed since the last allowed one, so the caller can append it. */
int log_limit_allow(log_limit *limit, uint64_t now_ms, uint32_t *suppressed_out);

#endif
