/*
 * The libcurl client of `babymamba replay` (see replay_http.h).
 */
#include "replay_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cli_common.h"

/* The response body is stored up to this size for error messages; the rest is discarded. */
enum { RESPONSE_KEEP_BYTES = 2048 };

/* Total seconds one POST may spend waiting for retries after 503 or 429 before the replay
 * fails. The daemon requests 1 s per retry while its inference slots are busy. */
#define RETRY_MAX_TOTAL_WAIT_S 60.0

/* Seconds to wait when a 503 or 429 carries no Retry-After header, and the cap on a header's
 * value, so that one odd reply cannot stall the replay for long. */
#define RETRY_DEFAULT_WAIT_S 1.0
#define RETRY_MAX_WAIT_S     10.0

struct replay_http {
    CURL *curl;
    struct curl_slist *headers;
    char *base_url;
    char *url; /* buffer for the URL of one POST */
    size_t url_size;
    char error[CURL_ERROR_SIZE];
    char response[RESPONSE_KEEP_BYTES + 1];
    size_t response_length;
};

static size_t keep_response(char *data, size_t size, size_t count, void *user)
{
    replay_http *http = user;
    size_t length = size * count;
    size_t room = RESPONSE_KEEP_BYTES - http->response_length;
    size_t kept = length < room ? length : room;
    memcpy(http->response + http->response_length, data, kept);
    http->response_length += kept;
    http->response[http->response_length] = '\0';
    return length;
}

replay_http *replay_http_open(const char *base_url, double timeout_s)
{
    if (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0) {
        cli_error("replay", "invalid value '%s' for --http: expected http://HOST:PORT", base_url);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cli_error("replay", "cannot initialise libcurl");
        return NULL;
    }

    replay_http *http = calloc(1, sizeof *http);
    if (http == NULL) {
        cli_error("replay", "out of memory");
        curl_global_cleanup();
        return NULL;
    }
    http->base_url = strdup(base_url);
    http->url_size = strlen(base_url) + 128;
    http->url = malloc(http->url_size);
    http->curl = curl_easy_init();
    http->headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* An empty Expect header stops curl from sending "Expect: 100-continue" for large bodies
     * and waiting for the server's interim response. */
    if (http->headers != NULL && curl_slist_append(http->headers, "Expect:") == NULL) {
        curl_slist_free_all(http->headers);
        http->headers = NULL;
    }
    if (http->base_url == NULL || http->url == NULL || http->curl == NULL ||
        http->headers == NULL) {
        cli_error("replay", "out of memory");
        replay_http_close(http);
        return NULL;
    }

    /* A trailing slash would double the one that starts the endpoint's path. */
    size_t length = strlen(http->base_url);
    while (length > 0 && http->base_url[length - 1] == '/') {
        http->base_url[--length] = '\0';
    }

    CURL *curl = http->curl;
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, http->headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, http->error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_response);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, http);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000.0));
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    /* The samples go to the daemon named on the command line and never through a proxy from
     * the environment (http_proxy and friends). */
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    return http;
}

static void sleep_seconds(double seconds)
{
    struct timespec delay = {.tv_sec = (time_t)seconds,
                             .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&delay, &delay) != 0) {
    }
}

/* Removes trailing newlines, which would split the daemon's message in an error line. */
static void trim_response(replay_http *http)
{
    while (http->response_length > 0 && (http->response[http->response_length - 1] == '\n' ||
                                         http->response[http->response_length - 1] == '\r')) {
        http->response[--http->response_length] = '\0';
    }
}

/* Sends one POST. Returns the HTTP status, or 0 after printing the transfer's failure. */
static long post_once(replay_http *http, const char *body, size_t size)
{
    CURL *curl = http->curl;
    http->error[0] = '\0';
    http->response_length = 0;
    http->response[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, http->url);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);

    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        cli_error("replay", "POST %s failed: %s", http->url,
                  http->error[0] != '\0' ? http->error : curl_easy_strerror(rc));
        return 0;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

int replay_http_post(replay_http *http, const char *device, const char *body, size_t size)
{
    int written =
        snprintf(http->url, http->url_size, "%s/api/v1/devices/%s/samples", http->base_url, device);
    if (written < 0 || (size_t)written >= http->url_size) {
        cli_error("replay", "device id '%s' is too long for the URL", device);
        return 0;
    }

    /* 503 and 429 mean that the daemon rejected the whole message and kept nothing of it,
     * because its inference slots or another limit were busy. Sending the same message again
     * after Retry-After loses no sample. */
    double waited_s = 0.0;
    long status;
    for (;;) {
        status = post_once(http, body, size);
        if (status == 0)
            return 0;
        if (status != 503 && status != 429)
            break;

        curl_off_t retry_after = -1;
        double wait_s = RETRY_DEFAULT_WAIT_S;
        if (curl_easy_getinfo(http->curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
            retry_after > 0)
            wait_s =
                retry_after < (curl_off_t)RETRY_MAX_WAIT_S ? (double)retry_after : RETRY_MAX_WAIT_S;
        if (waited_s + wait_s > RETRY_MAX_TOTAL_WAIT_S)
            break;
        sleep_seconds(wait_s);
        waited_s += wait_s;
    }

    if (status < 200 || status > 299) {
        trim_response(http);
        cli_error("replay", "POST %s failed with HTTP status %ld%s: %s", http->url, status,
                  waited_s > 0.0 ? " after retrying for the maximum wait" : "",
                  http->response_length > 0 ? http->response : "(empty response body)");
        return 0;
    }
    if (strstr(http->response, "\"windows_dropped\":0") == NULL &&
        strstr(http->response, "\"windows_dropped\"") != NULL) {
        trim_response(http);
        cli_error("replay", "POST %s was accepted but the daemon dropped windows: %s", http->url,
                  http->response);
    }
    return 1;
}

void replay_http_close(replay_http *http)
{
    if (http == NULL) {
        return;
    }
    if (http->curl != NULL) {
        curl_easy_cleanup(http->curl);
    }
    curl_slist_free_all(http->headers);
    free(http->url);
    free(http->base_url);
    free(http);
    curl_global_cleanup();
}
