/*
 * The HTTP adapter: the only module that includes libmicrohttpd.
 *
 * The server runs without threads of its own. libmicrohttpd's epoll descriptor is watched by
 * the libuv loop, which calls MHD_run when it is readable or when libmicrohttpd's timeout
 * expires, so every request handler runs on the loop thread and may read daemon state
 * directly. The adapter collects a request body up to a size limit and passes complete
 * requests to one handler as babymamba's own types.
 */
#ifndef BABYMAMBAD_HTTP_H
#define BABYMAMBAD_HTTP_H

#include <stddef.h>

#include <uv.h>

typedef struct http_request {
    const char *method;
    const char *path;          /* without the query string */
    const char *content_type;  /* NULL when absent */
    const char *authorization; /* NULL when absent; for bearer tokens */
    const void *body;
    size_t body_size;
    size_t body_limit;
    int body_too_large; /* the body exceeded body_limit and was discarded */
} http_request;

typedef struct http_response {
    int status;
    const char *content_type; /* a string literal */
    char *body;               /* malloc'd; the adapter frees it */
    size_t body_size;
    const char *allow; /* the Allow header of a 405 response, or NULL */
    int retry_after_s; /* the Retry-After header in seconds when above 0 */
} http_response;

/* Fills response for request. Runs on the loop thread. */
typedef void (*http_handler)(void *user, const http_request *request, http_response *response);

typedef struct http_server http_server;

/* Starts listening on listen ("ADDR:PORT" or "[ADDR]:PORT"; numeric addresses only). On
 * failure returns NULL with the reason in error.
 * TODO: TLS (MHD_USE_TLS with a key and certificate from the config) plugs in here, and a
 * Server-Sent Events stream would use MHD_create_response_from_callback with suspended
 * connections resumed by the loop when an event is published. */
http_server *http_create(uv_loop_t *loop, const char *listen, size_t max_body, http_handler handler,
                         void *user, char *error, size_t error_size);

/* Changes the body size limit for requests that start from now on. */
void http_set_max_body(http_server *server, size_t max_body);

/* Returns the port the server listens on. */
int http_port(const http_server *server);

/* Stops listening and frees the server once its handles have closed. Accepts NULL. */
void http_destroy(http_server *server);

/* Splits "ADDR:PORT" or "[ADDR]:PORT" into a numeric socket address. Returns 0, or -1 with the
 * reason in error. */
struct sockaddr_storage;
int http_parse_listen(const char *listen, struct sockaddr_storage *address, char *error,
                      size_t error_size);

#endif
