/*
 * The libmicrohttpd adapter, driven by the libuv loop (see http.h).
 *
 * libmicrohttpd calls the access handler once with no body to set up a request, then once per
 * body chunk, which the handler consumes by setting *upload_data_size to 0. A last call with no
 * body queues the response. Responses use
 * MHD_RESPMEM_MUST_FREE, so libmicrohttpd frees the body that the handler malloc'd.
 */
#include "http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"

/* Connections served at once; more wait in the listen backlog. */
#define HTTP_CONNECTION_LIMIT 256

/* Connections one client address may hold at once. Half of the limit leaves the other half to
 * everyone else when one client opens connections without finishing its requests. A reverse
 * proxy in front of the daemon counts as one client. */
#define HTTP_PER_IP_CONNECTION_LIMIT (HTTP_CONNECTION_LIMIT / 2)

/* Seconds of inactivity after which a connection is closed. */
#define HTTP_CONNECTION_TIMEOUT_S 30

/* Seconds a request's headers may take to arrive, counted from the connection's start or from
 * the end of its previous request. The inactivity timeout alone restarts with every byte, so a
 * client sending one header line every few seconds could hold a connection forever. */
#define HTTP_HEADER_DEADLINE_S 5

/* Seconds a whole request, body included, may take to arrive from the same start. A body of
 * http.max_body_bytes (1 MiB by default) then needs about 35 KB/s. */
#define HTTP_REQUEST_DEADLINE_S 30

/* One open connection, tracked from libmicrohttpd's connection notifications so that the loop
 * can enforce the deadlines above. */
typedef struct tracked_connection {
    struct MHD_Connection *connection;
    uint64_t request_start_ms; /* connection start, or end of the previous request */
    int headers_received;
    int request_received; /* the handler ran; the response is being sent */
    int cut;              /* the socket was shut down for a missed deadline */
    struct tracked_connection *prev;
    struct tracked_connection *next;
} tracked_connection;

struct http_server {
    struct MHD_Daemon *daemon;
    uv_loop_t *loop;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    size_t max_body;
    http_handler handler;
    void *user;
    int port;
    tracked_connection *connections;
    int closed_in_run; /* connections closed during the current MHD_run */
    log_limit cut_log_limit;
    log_limit mhd_log_limit;
};

/* Per-request state between the calls of the access handler. */
typedef struct request_state {
    char *body;
    size_t size;
    size_t capacity;
    size_t limit;
    int too_large;
} request_state;

static void drive(http_server *server);

/* Routes libmicrohttpd's diagnostics into the daemon's logger. Clients can cause one line per
 * connection ("Server reached connection limit", "closed by remote side"), so the lines share
 * one rate limit. */
static void on_mhd_log(void *cls, const char *format, va_list args)
{
    http_server *server = cls;
    if (!log_enabled(LOG_LEVEL_WARN))
        return;

    uint32_t suppressed = 0;
    if (server->loop != NULL &&
        !log_limit_allow(&server->mhd_log_limit, uv_now(server->loop), &suppressed))
        return;

    char message[512];
    vsnprintf(message, sizeof message, format, args);
    size_t length = strlen(message);
    while (length > 0 && message[length - 1] == '\n')
        message[--length] = '\0';
    if (suppressed > 0)
        log_write(LOG_LEVEL_WARN, "microhttpd", "%s (%u similar lines suppressed)", message,
                  suppressed);
    else
        log_write(LOG_LEVEL_WARN, "microhttpd", "%s", message);
}

/* Returns the tracking record of connection, or NULL when it has none (out of memory at its
 * start). */
static tracked_connection *find_tracked(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

/* Keeps the list of open connections that deadline checks walk. */
static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *server = cls;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        tracked_connection *tracked = calloc(1, sizeof *tracked);
        if (tracked == NULL) {
            LOG_WARN("http",
                     "out of memory for a connection record; its deadlines are not enforced");
            return;
        }
        tracked->connection = connection;
        tracked->request_start_ms = uv_now(server->loop);
        tracked->next = server->connections;
        if (server->connections != NULL)
            server->connections->prev = tracked;
        server->connections = tracked;
        *socket_context = tracked;
        return;
    }

    server->closed_in_run++;
    tracked_connection *tracked = *socket_context;
    if (tracked == NULL)
        return;
    if (tracked->prev != NULL)
        tracked->prev->next = tracked->next;
    else
        server->connections = tracked->next;
    if (tracked->next != NULL)
        tracked->next->prev = tracked->prev;
    free(tracked);
    *socket_context = NULL;
}

static void describe_peer(struct MHD_Connection *connection, char *text, size_t size)
{
    snprintf(text, size, "?");
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL)
        return;

    const struct sockaddr *address = info->client_addr;
    if (address->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)address)->sin_addr, text,
                  (socklen_t)size);
    else if (address->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)address)->sin6_addr, text,
                  (socklen_t)size);
}

/* Shuts down the sockets of requests that missed a deadline and returns the time in ms until the
 * next deadline, or UINT64_MAX when no request is waiting. libmicrohttpd has no call that closes
 * a connection from outside a handler, but it treats the shut-down socket as closed by the peer at
 * its next run and frees the connection then. */
static uint64_t enforce_deadlines(http_server *server)
{
    uint64_t now = uv_now(server->loop);
    uint64_t next = UINT64_MAX;

    for (tracked_connection *t = server->connections; t != NULL; t = t->next) {
        if (t->cut || t->request_received)
            continue;
        uint64_t limit_s = t->headers_received ? HTTP_REQUEST_DEADLINE_S : HTTP_HEADER_DEADLINE_S;
        uint64_t deadline = t->request_start_ms + limit_s * 1000;
        if (now < deadline) {
            if (deadline - now < next)
                next = deadline - now;
            continue;
        }

        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(t->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info == NULL)
            continue;
        shutdown(info->connect_fd, SHUT_RDWR);
        t->cut = 1;

        uint32_t suppressed = 0;
        if (log_limit_allow(&server->cut_log_limit, now, &suppressed)) {
            char peer[INET6_ADDRSTRLEN];
            describe_peer(t->connection, peer, sizeof peer);
            LOG_WARN("http",
                     "closed a connection from %s: its request %s did not arrive within %d s "
                     "(%u similar lines suppressed)",
                     peer, t->headers_received ? "body" : "headers", (int)limit_s, suppressed);
        }
    }
    return next;
}

static int append_body(request_state *state, const char *data, size_t size)
{
    if (state->too_large || state->size + size > state->limit) {
        state->too_large = 1;
        return 0;
    }
    if (state->size + size > state->capacity) {
        size_t capacity = state->capacity != 0 ? state->capacity : 4096;
        while (capacity < state->size + size)
            capacity *= 2;
        if (capacity > state->limit)
            capacity = state->limit;
        char *grown = realloc(state->body, capacity);
        if (grown == NULL)
            return -1;
        state->body = grown;
        state->capacity = capacity;
    }
    memcpy(state->body + state->size, data, size);
    state->size += size;
    return 0;
}

static enum MHD_Result queue(struct MHD_Connection *connection, http_response *response)
{
    struct MHD_Response *mhd =
        MHD_create_response_from_buffer(response->body_size, response->body, MHD_RESPMEM_MUST_FREE);
    if (mhd == NULL) {
        free(response->body);
        return MHD_NO;
    }

    MHD_add_response_header(mhd, MHD_HTTP_HEADER_CONTENT_TYPE, response->content_type);
    MHD_add_response_header(mhd, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (response->allow != NULL)
        MHD_add_response_header(mhd, MHD_HTTP_HEADER_ALLOW, response->allow);
    if (response->retry_after_s > 0) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%d", response->retry_after_s);
        MHD_add_response_header(mhd, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }

    enum MHD_Result result = MHD_queue_response(connection, (unsigned)response->status, mhd);
    MHD_destroy_response(mhd);
    return result;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *connection, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **request_cls)
{
    http_server *server = cls;
    (void)version;

    request_state *state = *request_cls;
    if (state == NULL) {
        tracked_connection *tracked = find_tracked(connection);
        if (tracked != NULL)
            tracked->headers_received = 1;

        state = calloc(1, sizeof *state);
        if (state == NULL)
            return MHD_NO;
        state->limit = server->max_body;
        *request_cls = state;
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        if (append_body(state, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }

    http_request request = {
        .method = method,
        .path = url,
        .content_type =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .authorization =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .body = state->body,
        .body_size = state->size,
        .body_limit = state->limit,
        .body_too_large = state->too_large,
    };
    tracked_connection *tracked = find_tracked(connection);
    if (tracked != NULL)
        tracked->request_received = 1;

    http_response response = {.status = 500, .content_type = "text/plain"};
    server->handler(server->user, &request, &response);
    return queue(connection, &response);
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **request_cls,
                         enum MHD_RequestTerminationCode code)
{
    http_server *server = cls;
    (void)code;

    /* A kept-alive connection starts its next request now, so its deadlines restart. */
    tracked_connection *tracked = find_tracked(connection);
    if (tracked != NULL) {
        tracked->request_start_ms = uv_now(server->loop);
        tracked->headers_received = 0;
        tracked->request_received = 0;
    }

    request_state *state = *request_cls;
    if (state == NULL)
        return;
    free(state->body);
    free(state);
    *request_cls = NULL;
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    (void)status;
    (void)events;
    drive(poll->data);
}

static void on_timer(uv_timer_t *timer)
{
    drive(timer->data);
}

/* Lets libmicrohttpd do its pending work, enforces the request deadlines, then arms the timer
 * for the earliest of libmicrohttpd's timeout and the next deadline.
 *
 * libmicrohttpd 0.9.75 takes its listen socket out of its epoll set while it has
 * HTTP_CONNECTION_LIMIT connections, and puts it back only at the start of a later MHD_run.
 * Connections close at the end of a run, and once they are gone nothing in the epoll set may
 * become ready again, so waiting for the descriptor alone would never accept the clients
 * queued in the backlog. A run that closed connections is therefore followed by another one on
 * the next loop iteration. */
static void drive(http_server *server)
{
    server->closed_in_run = 0;
    MHD_run(server->daemon);
    uint64_t wait_ms = enforce_deadlines(server);

    MHD_UNSIGNED_LONG_LONG timeout_ms = 0;
    if (MHD_get_timeout(server->daemon, &timeout_ms) == MHD_YES && timeout_ms < wait_ms)
        wait_ms = timeout_ms;
    if (server->closed_in_run > 0)
        wait_ms = 0;

    if (wait_ms != UINT64_MAX)
        uv_timer_start(&server->timer, on_timer, wait_ms, 0);
    else
        uv_timer_stop(&server->timer);
}

int http_parse_listen(const char *listen, struct sockaddr_storage *address, char *error,
                      size_t error_size)
{
    char host[128];
    const char *port_text;

    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof host) {
            snprintf(error, error_size, "invalid listen address \"%s\"; expected [IPV6]:PORT",
                     listen);
            return -1;
        }
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        port_text = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (colon == NULL || (size_t)(colon - listen) >= sizeof host) {
            snprintf(error, error_size, "invalid listen address \"%s\"; expected ADDR:PORT",
                     listen);
            return -1;
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        port_text = colon + 1;
    }

    char *end = NULL;
    long port = strtol(port_text, &end, 10);
    if (end == port_text || *end != '\0' || port < 0 || port > 65535) {
        snprintf(error, error_size, "invalid port \"%s\" in \"%s\"; expected 0 to 65535", port_text,
                 listen);
        return -1;
    }

    /* Numeric hosts only: resolving names at startup would make the daemon depend on DNS. */
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *found = NULL;
    char port_buffer[8];
    snprintf(port_buffer, sizeof port_buffer, "%ld", port);
    int rc = getaddrinfo(host, port_buffer, &hints, &found);
    if (rc != 0) {
        snprintf(error, error_size,
                 "invalid address \"%s\" in \"%s\": %s; expected a numeric "
                 "IPv4 or IPv6 address",
                 host, listen, gai_strerror(rc));
        return -1;
    }
    memset(address, 0, sizeof *address);
    memcpy(address, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    return 0;
}

http_server *http_create(uv_loop_t *loop, const char *listen, size_t max_body, http_handler handler,
                         void *user, char *error, size_t error_size)
{
    struct sockaddr_storage address;
    if (http_parse_listen(listen, &address, error, error_size) != 0)
        return NULL;

    http_server *server = calloc(1, sizeof *server);
    if (server == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    server->loop = loop;
    server->max_body = max_body;
    server->handler = handler;
    server->user = user;

    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (address.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;

    /* The external logger comes first so that libmicrohttpd's messages about later options
     * reach it too. */
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, server, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, server,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, server, MHD_OPTION_NOTIFY_CONNECTION, on_connection, server,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONNECTION_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_PER_IP_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (server->daemon == NULL) {
        snprintf(error, error_size,
                 "listening on %s failed; check that the address is local and the port is free",
                 listen);
        free(server);
        return NULL;
    }

    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = port != NULL ? port->port : 0;

    uv_timer_init(loop, &server->timer);
    server->timer.data = server;
    server->open_handles = 1;
    if (info == NULL || uv_poll_init(loop, &server->poll, info->epoll_fd) != 0) {
        snprintf(error, error_size, "watching the HTTP server's descriptor failed");
        http_destroy(server);
        return NULL;
    }
    server->poll.data = server;
    server->open_handles = 2;
    uv_poll_start(&server->poll, UV_READABLE, on_poll);
    drive(server);
    return server;
}

void http_set_max_body(http_server *server, size_t max_body)
{
    if (server != NULL)
        server->max_body = max_body;
}

int http_port(const http_server *server)
{
    return server->port;
}

static void on_closed(uv_handle_t *handle)
{
    http_server *server = handle->data;
    if (--server->open_handles == 0)
        free(server);
}

void http_destroy(http_server *server)
{
    if (server == NULL)
        return;

    /* The poll stops first because libuv must not watch a descriptor that libmicrohttpd
     * closes. The daemon stops before the handles close, so no handler runs afterwards. */
    if (server->open_handles == 2)
        uv_poll_stop(&server->poll);
    if (server->daemon != NULL) {
        MHD_stop_daemon(server->daemon);
        server->daemon = NULL;
    }
    if (server->open_handles == 2)
        uv_close((uv_handle_t *)&server->poll, on_closed);
    uv_close((uv_handle_t *)&server->timer, on_closed);
}
