/*
 * The HTTP side of `babymamba replay`: POSTs sample batches to babymambad's ingest endpoint
 * with libcurl, reusing one connection, and checks the status of every response.
 */
#ifndef BM_CLI_REPLAY_HTTP_H
#define BM_CLI_REPLAY_HTTP_H

#include <stddef.h>

typedef struct replay_http replay_http;

/* Prepares POSTs to base_url (http://HOST:PORT, optionally with a path prefix), each allowed
 * timeout_s seconds. Returns NULL after printing an error. */
replay_http *replay_http_open(const char *base_url, double timeout_s);

/* POSTs body as application/json to {base_url}/api/v1/devices/{device}/samples. On 503 or 429
 * it waits for the response's Retry-After (1 s without one, at most 10 s) and sends again, for
 * at most 60 s of waiting in total. Returns 0 after printing the error: the transfer's failure,
 * or the HTTP status with the daemon's response body for any other status outside 200-299 and
 * for a 503 or 429 that outlasted the waiting. Prints a warning and returns 1 when the daemon
 * accepted the message but reports windows_dropped above 0. */
int replay_http_post(replay_http *http, const char *device, const char *body, size_t size);

/* Frees the client. Accepts NULL. */
void replay_http_close(replay_http *http);

#endif
