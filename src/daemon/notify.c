/*
 * sd_notify calls and the watchdog timer (see notify.h).
 */
#include "notify.h"

#include <stdint.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#include "log.h"

struct notify {
    uv_timer_t watchdog;
    int watchdog_active;
};

static void on_watchdog(uv_timer_t *timer)
{
    (void)timer;
    sd_notify(0, "WATCHDOG=1");
}

notify *notify_create(uv_loop_t *loop)
{
    notify *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;

    uv_timer_init(loop, &n->watchdog);
    n->watchdog.data = n;

    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        uint64_t interval_ms = usec / 2000;
        if (interval_ms == 0)
            interval_ms = 1;
        uv_timer_start(&n->watchdog, on_watchdog, interval_ms, interval_ms);
        n->watchdog_active = 1;
        LOG_INFO("notify", "systemd watchdog enabled: keep-alive every %llu ms",
                 (unsigned long long)interval_ms);
    }
    return n;
}

static void on_closed(uv_handle_t *handle)
{
    free(handle->data);
}

void notify_destroy(notify *n)
{
    if (n == NULL)
        return;
    uv_close((uv_handle_t *)&n->watchdog, on_closed);
}

void notify_ready(notify *n, const char *status)
{
    (void)n;
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_reloading(notify *n)
{
    (void)n;
    sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
}

void notify_stopping(notify *n)
{
    (void)n;
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void notify_status(notify *n, const char *status)
{
    (void)n;
    sd_notifyf(0, "STATUS=%s", status);
}
