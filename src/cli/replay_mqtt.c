/*
 * The Paho MQTTAsync client of `babymamba replay` (see replay_mqtt.h). Paho calls the callbacks
 * here on its own thread, so the counters they touch are guarded by one mutex and waits use a
 * condition variable on the monotonic clock.
 */
#include "replay_mqtt.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "cli_common.h"

/* State of a request that the caller waits for: the connect and the subscribe. */
enum { REQUEST_PENDING, REQUEST_DONE, REQUEST_FAILED };

struct replay_mqtt {
    MQTTAsync handle;
    char *uri;
    int max_inflight;
    replay_mqtt_message_fn on_message;
    void *user;

    pthread_mutex_t mutex;
    pthread_cond_t changed;
    int request; /* REQUEST_* of the connect or subscribe under way */
    char request_error[256];
    int lost; /* nonzero once the connection is lost */
    char lost_cause[256];
    long inflight; /* published, not yet acknowledged */
    long acknowledged;
    long failed; /* publishes that Paho reported as failed */
    char publish_error[256];
};

/* Describes a CONNACK return code of MQTT 3.1.1, which Paho passes as the failure code. */
static const char *connack_text(int code)
{
    switch (code) {
    case 1:
        return "the broker rejected the protocol version";
    case 2:
        return "the broker rejected the client identifier";
    case 3:
        return "the broker is unavailable";
    case 4:
        return "the broker rejected the user name or password";
    case 5:
        return "the broker refused the connection: not authorized";
    default:
        return NULL;
    }
}

static void describe_failure(const MQTTAsync_failureData *response, char *out, size_t size)
{
    if (response == NULL) {
        snprintf(out, size, "unknown error");
        return;
    }
    const char *text = response->message;
    if (text == NULL) {
        text = connack_text(response->code);
    }
    if (text == NULL) {
        text = MQTTAsync_strerror(response->code);
    }
    snprintf(out, size, "%s (code %d)", text != NULL ? text : "unknown error", response->code);
}

static void finish_request(replay_mqtt *client, int state, const MQTTAsync_failureData *failure)
{
    pthread_mutex_lock(&client->mutex);
    client->request = state;
    if (state == REQUEST_FAILED) {
        describe_failure(failure, client->request_error, sizeof client->request_error);
    }
    pthread_cond_broadcast(&client->changed);
    pthread_mutex_unlock(&client->mutex);
}

static void on_request_success(void *context, MQTTAsync_successData *response)
{
    (void)response;
    finish_request(context, REQUEST_DONE, NULL);
}

static void on_request_failure(void *context, MQTTAsync_failureData *response)
{
    finish_request(context, REQUEST_FAILED, response);
}

static void on_publish_success(void *context, MQTTAsync_successData *response)
{
    (void)response;
    replay_mqtt *client = context;
    pthread_mutex_lock(&client->mutex);
    client->inflight--;
    client->acknowledged++;
    pthread_cond_broadcast(&client->changed);
    pthread_mutex_unlock(&client->mutex);
}

static void on_publish_failure(void *context, MQTTAsync_failureData *response)
{
    replay_mqtt *client = context;
    pthread_mutex_lock(&client->mutex);
    client->inflight--;
    client->failed++;
    describe_failure(response, client->publish_error, sizeof client->publish_error);
    pthread_cond_broadcast(&client->changed);
    pthread_mutex_unlock(&client->mutex);
}

static void on_connection_lost(void *context, char *cause)
{
    replay_mqtt *client = context;
    pthread_mutex_lock(&client->mutex);
    client->lost = 1;
    snprintf(client->lost_cause, sizeof client->lost_cause, "%s",
             cause != NULL ? cause : "the broker closed the connection");
    pthread_cond_broadcast(&client->changed);
    pthread_mutex_unlock(&client->mutex);
}

static int on_message_arrived(void *context, char *topic, int topic_length,
                              MQTTAsync_message *message)
{
    replay_mqtt *client = context;
    (void)topic_length;
    if (client->on_message != NULL) {
        client->on_message(client->user, topic, message->payload, (size_t)message->payloadlen,
                           message->retained);
    }
    MQTTAsync_freeMessage(&message);
    MQTTAsync_free(topic);
    return 1;
}

static struct timespec deadline_after(double seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    long long nanoseconds = (long long)deadline.tv_nsec + (long long)(seconds * 1e9);
    deadline.tv_sec += (time_t)(nanoseconds / 1000000000LL);
    deadline.tv_nsec = (long)(nanoseconds % 1000000000LL);
    return deadline;
}

/* Waits with the mutex held until the request under way finishes or the deadline passes.
 * Returns the request state, REQUEST_PENDING on a time-out. */
static int wait_request(replay_mqtt *client, double timeout_s)
{
    struct timespec deadline = deadline_after(timeout_s);
    while (client->request == REQUEST_PENDING && !client->lost) {
        if (pthread_cond_timedwait(&client->changed, &client->mutex, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    return client->request;
}

static int init_sync(replay_mqtt *client)
{
    pthread_condattr_t attributes;
    if (pthread_condattr_init(&attributes) != 0) {
        return 0;
    }
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    int ok = pthread_cond_init(&client->changed, &attributes) == 0;
    pthread_condattr_destroy(&attributes);
    if (ok && pthread_mutex_init(&client->mutex, NULL) != 0) {
        pthread_cond_destroy(&client->changed);
        ok = 0;
    }
    return ok;
}

static int is_tls_uri(const char *uri)
{
    return strncmp(uri, "ssl://", 6) == 0 || strncmp(uri, "mqtts://", 8) == 0;
}

replay_mqtt *replay_mqtt_connect(const char *uri, int max_inflight, double timeout_s,
                                 replay_mqtt_message_fn on_message, void *user)
{
    replay_mqtt *client = calloc(1, sizeof *client);
    if (client == NULL || (client->uri = strdup(uri)) == NULL) {
        cli_error("replay", "out of memory");
        free(client);
        return NULL;
    }
    if (!init_sync(client)) {
        cli_error("replay", "cannot create the MQTT client's mutex");
        free(client->uri);
        free(client);
        return NULL;
    }
    client->max_inflight = max_inflight;
    client->on_message = on_message;
    client->user = user;

    /* The process id keeps concurrent replays from taking over each other's session. */
    char client_id[64];
    snprintf(client_id, sizeof client_id, "babymamba-replay-%ld", (long)getpid());
    int rc = MQTTAsync_create(&client->handle, uri, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        cli_error("replay", "invalid MQTT broker URI '%s': %s; expected tcp://HOST:PORT", uri,
                  MQTTAsync_strerror(rc));
        client->handle = NULL;
        replay_mqtt_close(client);
        return NULL;
    }
    MQTTAsync_setCallbacks(client->handle, client, on_connection_lost, on_message_arrived, NULL);

    MQTTAsync_connectOptions options = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions tls = MQTTAsync_SSLOptions_initializer;
    options.keepAliveInterval = 30;
    options.cleansession = 1;
    options.maxInflight = max_inflight;
    options.connectTimeout = timeout_s < 1.0 ? 1 : (int)timeout_s;
    options.onSuccess = on_request_success;
    options.onFailure = on_request_failure;
    options.context = client;
    if (is_tls_uri(uri)) {
        /* NOTE: TLS uses Paho's defaults (server certificate verified) and is untested here,
         * because the tests run a plain loopback broker. */
        options.ssl = &tls;
    }

    pthread_mutex_lock(&client->mutex);
    client->request = REQUEST_PENDING;
    pthread_mutex_unlock(&client->mutex);
    rc = MQTTAsync_connect(client->handle, &options);
    if (rc != MQTTASYNC_SUCCESS) {
        cli_error("replay", "cannot connect to MQTT broker %s: %s", uri, MQTTAsync_strerror(rc));
        replay_mqtt_close(client);
        return NULL;
    }

    pthread_mutex_lock(&client->mutex);
    int state = wait_request(client, timeout_s + 1.0);
    pthread_mutex_unlock(&client->mutex);
    if (state == REQUEST_PENDING) {
        cli_error("replay",
                  "cannot connect to MQTT broker %s: timed out after %g s; check that the "
                  "broker runs and the address is right",
                  uri, timeout_s);
        replay_mqtt_close(client);
        return NULL;
    }
    if (state == REQUEST_FAILED) {
        cli_error("replay", "cannot connect to MQTT broker %s: %s; check that the broker runs", uri,
                  client->request_error);
        replay_mqtt_close(client);
        return NULL;
    }
    return client;
}

int replay_mqtt_subscribe(replay_mqtt *client, char *const *topics, int count, double timeout_s)
{
    /* Subscribing in chunks keeps each SUBSCRIBE packet small for many devices. */
    enum { CHUNK = 100 };
    int qos[CHUNK];
    for (int i = 0; i < CHUNK; i++) {
        qos[i] = 1;
    }

    for (int first = 0; first < count; first += CHUNK) {
        int n = count - first < CHUNK ? count - first : CHUNK;
        MQTTAsync_responseOptions response = MQTTAsync_responseOptions_initializer;
        response.onSuccess = on_request_success;
        response.onFailure = on_request_failure;
        response.context = client;

        pthread_mutex_lock(&client->mutex);
        client->request = REQUEST_PENDING;
        pthread_mutex_unlock(&client->mutex);
        int rc = MQTTAsync_subscribeMany(client->handle, n, topics + first, qos, &response);
        if (rc != MQTTASYNC_SUCCESS) {
            cli_error("replay", "cannot subscribe to %s on %s: %s", topics[first], client->uri,
                      MQTTAsync_strerror(rc));
            return 0;
        }

        pthread_mutex_lock(&client->mutex);
        int state = wait_request(client, timeout_s);
        pthread_mutex_unlock(&client->mutex);
        if (state != REQUEST_DONE) {
            cli_error("replay", "cannot subscribe to %s on %s: %s", topics[first], client->uri,
                      state == REQUEST_PENDING ? "timed out" : client->request_error);
            return 0;
        }
    }
    return 1;
}

int replay_mqtt_publish(replay_mqtt *client, const char *topic, const char *payload, size_t size)
{
    pthread_mutex_lock(&client->mutex);
    while (client->inflight >= client->max_inflight && !client->lost && client->failed == 0) {
        pthread_cond_wait(&client->changed, &client->mutex);
    }
    if (client->lost || client->failed > 0) {
        cli_error("replay", "cannot publish to %s on %s: %s", topic, client->uri,
                  client->lost ? client->lost_cause : client->publish_error);
        pthread_mutex_unlock(&client->mutex);
        return 0;
    }
    client->inflight++;
    pthread_mutex_unlock(&client->mutex);

    MQTTAsync_message message = MQTTAsync_message_initializer;
    message.payload = (void *)payload;
    message.payloadlen = (int)size;
    message.qos = 1;
    message.retained = 0;
    MQTTAsync_responseOptions response = MQTTAsync_responseOptions_initializer;
    response.onSuccess = on_publish_success;
    response.onFailure = on_publish_failure;
    response.context = client;

    int rc = MQTTAsync_sendMessage(client->handle, topic, &message, &response);
    if (rc != MQTTASYNC_SUCCESS) {
        pthread_mutex_lock(&client->mutex);
        client->inflight--;
        pthread_mutex_unlock(&client->mutex);
        cli_error("replay", "cannot publish to %s on %s: %s", topic, client->uri,
                  MQTTAsync_strerror(rc));
        return 0;
    }
    return 1;
}

int replay_mqtt_flush(replay_mqtt *client, double timeout_s)
{
    struct timespec deadline = deadline_after(timeout_s);
    pthread_mutex_lock(&client->mutex);
    while (client->inflight > 0 && !client->lost) {
        if (pthread_cond_timedwait(&client->changed, &client->mutex, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    long inflight = client->inflight;
    long failed = client->failed;
    int lost = client->lost;
    pthread_mutex_unlock(&client->mutex);

    if (lost) {
        cli_error("replay",
                  "connection to MQTT broker %s lost with %ld messages unacknowledged: %s",
                  client->uri, inflight, client->lost_cause);
        return 0;
    }
    if (inflight > 0) {
        cli_error("replay", "%ld messages not acknowledged by %s after %g s", inflight, client->uri,
                  timeout_s);
        return 0;
    }
    if (failed > 0) {
        cli_error("replay", "%ld messages failed on %s: %s", failed, client->uri,
                  client->publish_error);
        return 0;
    }
    return 1;
}

long replay_mqtt_acknowledged(replay_mqtt *client)
{
    pthread_mutex_lock(&client->mutex);
    long acknowledged = client->acknowledged;
    pthread_mutex_unlock(&client->mutex);
    return acknowledged;
}

void replay_mqtt_close(replay_mqtt *client)
{
    if (client == NULL) {
        return;
    }
    if (client->handle != NULL) {
        if (MQTTAsync_isConnected(client->handle)) {
            MQTTAsync_disconnectOptions options = MQTTAsync_disconnectOptions_initializer;
            options.timeout = 1000;
            MQTTAsync_disconnect(client->handle, &options);
            /* Paho sends DISCONNECT on its own thread; give it the time it was granted. */
            for (int i = 0; i < 100 && MQTTAsync_isConnected(client->handle); i++) {
                usleep(10000);
            }
        }
        MQTTAsync_destroy(&client->handle);
    }
    pthread_cond_destroy(&client->changed);
    pthread_mutex_destroy(&client->mutex);
    free(client->uri);
    free(client);
}
