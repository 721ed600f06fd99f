/*
 * babymambad's lifecycle: load the config and the model, start the adapters, run the loop, and
 * handle SIGHUP (reload) and SIGTERM/SIGINT (drain and stop).
 */
#ifndef BABYMAMBAD_DAEMON_H
#define BABYMAMBAD_DAEMON_H

#include "daemon_internal.h"

/* Loads the effective config: defaults, then the file (when config_path is not NULL), then the
 * overrides. Returns 0, or -1 with one line per problem in errors. */
int daemon_load_config(cfg_config *config, const char *config_path,
                       const daemon_override *overrides, int override_count, char *errors,
                       size_t errors_size);

/* Runs the daemon until it is stopped. Returns the process exit code. */
int daemon_run(const char *config_path, const daemon_override *overrides, int override_count);

#endif
