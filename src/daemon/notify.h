/*
 * The systemd adapter: the only module that talks to systemd (sd_notify).
 *
 * It reports readiness, reloads, stopping and a status line, and sends watchdog keep-alives
 * from a loop timer at half the interval systemd asks for, so a stuck loop thread stops the
 * keep-alives and systemd restarts the service. Outside systemd every call does nothing.
 * Loop thread only.
 */
#ifndef BABYMAMBAD_NOTIFY_H
#define BABYMAMBAD_NOTIFY_H

#include <uv.h>

typedef struct notify notify;

/* Creates the adapter and starts the watchdog timer when WATCHDOG_USEC is set for this process. */
notify *notify_create(uv_loop_t *loop);

/* Closes the timer; the adapter is freed in its close callback. Accepts NULL. */
void notify_destroy(notify *n);

void notify_ready(notify *n, const char *status);
void notify_reloading(notify *n);
void notify_stopping(notify *n);
void notify_status(notify *n, const char *status);

#endif
