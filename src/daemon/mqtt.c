/*
 * The Paho MQTTAsync adapter (see mqtt.h).
 *
 * Paho's ownership rule kept here: the message and topic passed to the arrival callback belong
 * to the callback, which frees them with MQTTAsync_freeMessage and MQTTAsync_free. The strings
 * passed in options (filter, status topic) are the client's own copies, which live as long as
 * the Paho client. Paho's callbacks run on Paho's threads, so they touch nothing but the inbox
 * and values fixed at creation.
 */
#include "mqtt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <MQTTAsync.h>

#include "inbox.h"
#include "log.h"

enum item_kind {
    ITEM_MESSAGE,
    ITEM_CONNECTED,
    ITEM_CONNECTION_LOST,
    ITEM_CONNECT_FAILED,
    ITEM_SUBSCRIBE_FAILED,
    ITEM_PUBLISH_FAILED,
    ITEM_EVENT_DELIVERED,
    ITEM_EVENT_FAILED,
    ITEM_OFFLINE_DONE,
    ITEM_DISCONNECTED
};

struct mqtt_client {
    uv_loop_t *loop;
    MQTTAsync handle;
    mqtt_callbacks callbacks;
    inbox *box;
    uv_timer_t retry_timer;
    uv_timer_t stop_timer;
    int open_handles;

    /* Fixed at creation, read by Paho's threads. */
    int protocol;
    int qos;
    int keepalive_s;
    int reconnect_min_s;
    int reconnect_max_s;
    size_t max_payload;
    char *filter;
    char *status_topic;
    char *uri;

    /* Loop thread only. */
    int connected;
    int ever_connected;
    int stopping;
    int stopped;
    int offline_acknowledged;
    int retry_delay_s;
    int events_pending;          /* events accepted by Paho whose delivery is not reported yet */
    uint64_t messages_discarded; /* sensor messages skipped because the client is stopping */
    uint64_t reconnects;
};

static void start_connect(mqtt_client *client);
static void on_retry_timer(uv_timer_t *timer);
static void disconnect(mqtt_client *client, int timeout_ms);

/* Posts a control item; these bypass the inbox's bound. */
static void post(mqtt_client *client, int kind, int code, const char *text)
{
    inbox_item *item = inbox_item_create(kind, text, text != NULL ? strlen(text) : 0, NULL, 0);
    if (item == NULL) {
        LOG_ERROR("mqtt", "out of memory for a control notice (kind %d)", kind);
        return;
    }
    item->code = code;
    inbox_push(client->box, item, 1);
}

/* Routes Paho's own diagnostics into the daemon's logger. Paho owns message. */
static void on_trace(enum MQTTASYNC_TRACE_LEVELS level, char *message)
{
    if (level >= MQTTASYNC_TRACE_ERROR)
        LOG_ERROR("paho", "%s", message);
    else
        LOG_DEBUG("paho", "%s", message);
}

/* Paho thread. */
static int on_message_arrived(void *context, char *topic, int topic_length,
                              MQTTAsync_message *message)
{
    mqtt_client *client = context;
    size_t length = topic_length > 0 ? (size_t)topic_length : strlen(topic);
    size_t size = message->payloadlen > 0 ? (size_t)message->payloadlen : 0;

    /* An oversize payload is not copied. The loop still receives the topic and the size, so
     * the rejection is counted and logged with the device id. */
    int oversize = size > client->max_payload;
    inbox_item *item = inbox_item_create(ITEM_MESSAGE, topic, length,
                                         oversize ? NULL : message->payload, oversize ? 0 : size);
    if (item != NULL && oversize)
        item->full_size = size;

    MQTTAsync_freeMessage(&message);
    MQTTAsync_free(topic);

    /* When the inbox is full, the inbox drops and counts the message. Returning 0 instead
     * would make Paho redeliver it in a busy loop. Waiting here for room is no option either,
     * because Paho 1.3 calls this function with its client mutex held, which the loop thread
     * needs for every publish, so the loop could never make the room. Paho has already sent
     * the PUBACK of a QoS 1 message by now, so no backpressure reaches the broker from here.
     * NOTE: a QoS 1 message dropped here was already acknowledged to the broker, so a burst
     * beyond ingest.queue_capacity messages is lost. It is counted as queue_full in total,
     * not per device. A sender at real time never fills the queue. */
    if (item != NULL && inbox_push(client->box, item, 0) != 0)
        inbox_item_free(item);
    return 1;
}

/* Paho thread. */
static void on_connection_lost(void *context, char *cause)
{
    mqtt_client *client = context;
    post(client, ITEM_CONNECTION_LOST, 0, cause != NULL ? cause : "unknown cause");
}

static void on_subscribe_failure(void *context, MQTTAsync_failureData *response)
{
    post(context, ITEM_SUBSCRIBE_FAILED, response != NULL ? response->code : -1,
         response != NULL && response->message != NULL ? response->message : "rejected");
}

static void on_subscribe_failure5(void *context, MQTTAsync_failureData5 *response)
{
    post(context, ITEM_SUBSCRIBE_FAILED, response != NULL ? (int)response->reasonCode : -1,
         response != NULL && response->message != NULL ? response->message : "rejected");
}

static void on_subscribe_success(void *context, MQTTAsync_successData *response)
{
    if (response != NULL && response->alt.qos == 0x80)
        post(context, ITEM_SUBSCRIBE_FAILED, 0x80, "the broker refused the subscription");
}

static void on_subscribe_success5(void *context, MQTTAsync_successData5 *response)
{
    if (response != NULL && response->reasonCode >= 0x80)
        post(context, ITEM_SUBSCRIBE_FAILED, response->reasonCode,
             "the broker refused the subscription");
}

/* Paho thread: runs after every successful connection, first or automatic. The subscription
 * and the online status are sent from here so that they go out before any queued message. */
static void on_connected(void *context, char *cause)
{
    mqtt_client *client = context;
    (void)cause;

    MQTTAsync_responseOptions subscribe = MQTTAsync_responseOptions_initializer;
    subscribe.context = client;
    if (client->protocol == 5) {
        subscribe.onSuccess5 = on_subscribe_success5;
        subscribe.onFailure5 = on_subscribe_failure5;
    } else {
        subscribe.onSuccess = on_subscribe_success;
        subscribe.onFailure = on_subscribe_failure;
    }
    int rc = MQTTAsync_subscribe(client->handle, client->filter, client->qos, &subscribe);
    if (rc != MQTTASYNC_SUCCESS)
        post(client, ITEM_SUBSCRIBE_FAILED, rc, MQTTAsync_strerror(rc));

    MQTTAsync_message online = MQTTAsync_message_initializer;
    online.payload = "online";
    online.payloadlen = 6;
    online.qos = 1;
    online.retained = 1;
    rc = MQTTAsync_sendMessage(client->handle, client->status_topic, &online, NULL);
    if (rc != MQTTASYNC_SUCCESS)
        post(client, ITEM_PUBLISH_FAILED, rc, client->status_topic);

    post(client, ITEM_CONNECTED, 0, NULL);
}

static void on_connect_failure(void *context, MQTTAsync_failureData *response)
{
    post(context, ITEM_CONNECT_FAILED, response != NULL ? response->code : -1,
         response != NULL && response->message != NULL ? response->message : "no reply");
}

static void on_connect_failure5(void *context, MQTTAsync_failureData5 *response)
{
    post(context, ITEM_CONNECT_FAILED, response != NULL ? (int)response->reasonCode : -1,
         response != NULL && response->message != NULL ? response->message : "no reply");
}

static void on_publish_failure(void *context, MQTTAsync_failureData *response)
{
    post(context, ITEM_PUBLISH_FAILED, response != NULL ? response->code : -1, "delivery failed");
}

static void on_publish_failure5(void *context, MQTTAsync_failureData5 *response)
{
    post(context, ITEM_PUBLISH_FAILED, response != NULL ? (int)response->reasonCode : -1,
         "delivery failed");
}

/* Paho thread: an event was delivered, that is, acknowledged by the broker for QoS 1 and 2 or
 * written to the socket for QoS 0. */
static void on_event_delivered(void *context, MQTTAsync_successData *response)
{
    (void)response;
    post(context, ITEM_EVENT_DELIVERED, 0, NULL);
}

static void on_event_delivered5(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    post(context, ITEM_EVENT_DELIVERED, 0, NULL);
}

static void on_event_failed(void *context, MQTTAsync_failureData *response)
{
    post(context, ITEM_EVENT_FAILED, response != NULL ? response->code : -1, NULL);
}

static void on_event_failed5(void *context, MQTTAsync_failureData5 *response)
{
    post(context, ITEM_EVENT_FAILED, response != NULL ? (int)response->reasonCode : -1, NULL);
}

static void on_offline_sent(void *context, MQTTAsync_successData *response)
{
    (void)response;
    post(context, ITEM_OFFLINE_DONE, 0, NULL);
}

static void on_offline_failed(void *context, MQTTAsync_failureData *response)
{
    post(context, ITEM_OFFLINE_DONE, response != NULL ? response->code : -1, NULL);
}

static void on_offline_sent5(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    post(context, ITEM_OFFLINE_DONE, 0, NULL);
}

static void on_offline_failed5(void *context, MQTTAsync_failureData5 *response)
{
    post(context, ITEM_OFFLINE_DONE, response != NULL ? (int)response->reasonCode : -1, NULL);
}

static void on_disconnect_success(void *context, MQTTAsync_successData *response)
{
    (void)response;
    post(context, ITEM_DISCONNECTED, 0, NULL);
}

static void on_disconnect_failure(void *context, MQTTAsync_failureData *response)
{
    (void)response;
    post(context, ITEM_DISCONNECTED, -1, NULL);
}

static void on_disconnect_success5(void *context, MQTTAsync_successData5 *response)
{
    (void)response;
    post(context, ITEM_DISCONNECTED, 0, NULL);
}

static void on_disconnect_failure5(void *context, MQTTAsync_failureData5 *response)
{
    (void)response;
    post(context, ITEM_DISCONNECTED, -1, NULL);
}

static void finish_stop(mqtt_client *client)
{
    if (client->stopped)
        return;
    client->stopped = 1;
    uv_timer_stop(&client->stop_timer);
    if (client->callbacks.stopped != NULL)
        client->callbacks.stopped(client->callbacks.user);
}

static void schedule_retry(mqtt_client *client)
{
    if (client->stopping)
        return;

    LOG_INFO("mqtt", "retrying the connection to %s in %d s", client->uri, client->retry_delay_s);
    uv_timer_start(&client->retry_timer, on_retry_timer, (uint64_t)client->retry_delay_s * 1000, 0);

    client->retry_delay_s *= 2;
    if (client->retry_delay_s > client->reconnect_max_s)
        client->retry_delay_s = client->reconnect_max_s;
}

/* Loop thread: one item from Paho's threads. */
static void on_item(void *user, inbox_item *item)
{
    mqtt_client *client = user;

    switch (item->kind) {
    case ITEM_MESSAGE:
        if (client->stopping)
            client->messages_discarded++;
        else
            client->callbacks.message(client->callbacks.user, item->topic, item->payload,
                                      item->size, item->full_size);
        break;
    case ITEM_CONNECTED:
        if (client->ever_connected)
            client->reconnects++;
        client->ever_connected = 1;
        client->connected = 1;
        client->retry_delay_s = client->reconnect_min_s;
        LOG_INFO("mqtt", "connected to %s, subscribed to %s", client->uri, client->filter);
        client->callbacks.connection(client->callbacks.user, 1);
        break;
    case ITEM_CONNECTION_LOST:
        client->connected = 0;
        LOG_WARN("mqtt", "connection to %s lost (%s); reconnecting automatically", client->uri,
                 item->topic);
        client->callbacks.connection(client->callbacks.user, 0);
        break;
    case ITEM_CONNECT_FAILED:
        LOG_WARN("mqtt", "connecting to %s failed (code %d: %s)", client->uri, item->code,
                 item->topic);
        schedule_retry(client);
        break;
    case ITEM_SUBSCRIBE_FAILED:
        LOG_ERROR("mqtt",
                  "subscribing to %s failed (code %d: %s); no sensor data arrives over "
                  "MQTT until the next connection",
                  client->filter, item->code, item->topic);
        break;
    case ITEM_PUBLISH_FAILED:
        client->callbacks.publish_failed(client->callbacks.user,
                                         item->topic != NULL ? item->topic : "",
                                         "the client could not deliver it");
        break;
    case ITEM_EVENT_DELIVERED:
        client->events_pending--;
        client->callbacks.event_delivered(client->callbacks.user);
        break;
    case ITEM_EVENT_FAILED:
        client->events_pending--;
        client->callbacks.event_failed(client->callbacks.user, item->code);
        break;
    case ITEM_OFFLINE_DONE:
        client->offline_acknowledged = item->code == 0;
        if (item->code != 0)
            LOG_WARN("mqtt",
                     "publishing \"offline\" to %s failed (code %d); the broker keeps "
                     "the previous status until the connection closes",
                     client->status_topic, item->code);
        disconnect(client, 0);
        break;
    case ITEM_DISCONNECTED:
        client->connected = 0;
        finish_stop(client);
        break;
    }
    inbox_item_free(item);
}

static void on_retry_timer(uv_timer_t *timer)
{
    start_connect(timer->data);
}

static void on_stop_timer(uv_timer_t *timer)
{
    mqtt_client *client = timer->data;
    LOG_WARN("mqtt", "disconnect from %s timed out", client->uri);
    finish_stop(client);
}

/* Builds the connect options and starts one connection attempt. */
static void start_connect(mqtt_client *client)
{
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    will.topicName = client->status_topic;
    will.message = "offline";
    will.retained = 1;
    will.qos = 1;

    MQTTAsync_connectOptions options = MQTTAsync_connectOptions_initializer;
    if (client->protocol == 5) {
        MQTTAsync_connectOptions options5 = MQTTAsync_connectOptions_initializer5;
        options = options5;
        options.cleanstart = 1;
        options.onFailure5 = on_connect_failure5;
    } else {
        options.cleansession = 1;
        options.onFailure = on_connect_failure;
    }
    options.keepAliveInterval = client->keepalive_s;
    options.automaticReconnect = 1;
    options.minRetryInterval = client->reconnect_min_s;
    options.maxRetryInterval = client->reconnect_max_s;
    options.connectTimeout = 10;
    options.will = &will;
    options.context = client;

    int rc = MQTTAsync_connect(client->handle, &options);
    if (rc != MQTTASYNC_SUCCESS) {
        LOG_WARN("mqtt", "starting a connection to %s failed: %s", client->uri,
                 MQTTAsync_strerror(rc));
        schedule_retry(client);
    }
}

mqtt_client *mqtt_create(uv_loop_t *loop, const mqtt_options *options,
                         const mqtt_callbacks *callbacks, char *error, size_t error_size)
{
    mqtt_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    client->loop = loop;
    client->callbacks = *callbacks;
    client->protocol = options->protocol;
    client->qos = options->qos;
    client->keepalive_s = options->keepalive_s;
    client->reconnect_min_s = options->reconnect_min_s;
    client->reconnect_max_s = options->reconnect_max_s;
    client->retry_delay_s = options->reconnect_min_s;
    client->max_payload = options->max_payload;
    client->filter = strdup(options->filter);
    client->status_topic = strdup(options->status_topic);
    client->uri = strdup(options->uri);
    if (client->filter == NULL || client->status_topic == NULL || client->uri == NULL) {
        snprintf(error, error_size, "out of memory");
        goto fail;
    }

    MQTTAsync_setTraceCallback(on_trace);
    MQTTAsync_setTraceLevel(log_enabled(LOG_LEVEL_DEBUG) ? MQTTASYNC_TRACE_PROTOCOL
                                                         : MQTTASYNC_TRACE_ERROR);

    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
    create.sendWhileDisconnected = 1;
    create.maxBufferedMessages = options->max_buffered;
    create.MQTTVersion = options->protocol == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    int rc = MQTTAsync_createWithOptions(&client->handle, options->uri, options->client_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &create);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(error, error_size, "creating the client for %s failed: %s", options->uri,
                 MQTTAsync_strerror(rc));
        client->handle = NULL;
        goto fail;
    }

    rc = MQTTAsync_setCallbacks(client->handle, client, on_connection_lost, on_message_arrived,
                                NULL);
    if (rc == MQTTASYNC_SUCCESS)
        rc = MQTTAsync_setConnected(client->handle, client, on_connected);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(error, error_size, "setting the client callbacks failed: %s",
                 MQTTAsync_strerror(rc));
        goto fail;
    }

    client->box = inbox_create(loop, options->queue_capacity, on_item, client);
    if (client->box == NULL) {
        snprintf(error, error_size, "creating the message queue failed");
        goto fail;
    }
    uv_timer_init(loop, &client->retry_timer);
    uv_timer_init(loop, &client->stop_timer);
    client->retry_timer.data = client;
    client->stop_timer.data = client;
    client->open_handles = 2;
    return client;

fail:
    mqtt_destroy(client);
    return NULL;
}

int mqtt_start(mqtt_client *client)
{
    LOG_INFO("mqtt", "connecting to broker %s (MQTT %s)", client->uri,
             client->protocol == 5 ? "5" : "3.1.1");
    start_connect(client);
    return 0;
}

int mqtt_publish(mqtt_client *client, const char *topic, const void *payload, size_t size, int qos,
                 int retain, int is_event)
{
    if (client->stopping)
        return -1;

    MQTTAsync_message message = MQTTAsync_message_initializer;
    message.payload = (void *)payload;
    message.payloadlen = (int)size;
    message.qos = qos;
    message.retained = retain;

    MQTTAsync_responseOptions options = MQTTAsync_responseOptions_initializer;
    options.context = client;
    if (is_event && client->protocol == 5) {
        options.onSuccess5 = on_event_delivered5;
        options.onFailure5 = on_event_failed5;
    } else if (is_event) {
        options.onSuccess = on_event_delivered;
        options.onFailure = on_event_failed;
    } else if (client->protocol == 5) {
        options.onFailure5 = on_publish_failure5;
    } else {
        options.onFailure = on_publish_failure;
    }

    int rc = MQTTAsync_sendMessage(client->handle, topic, &message, &options);
    if (rc != MQTTASYNC_SUCCESS) {
        LOG_DEBUG("mqtt", "publishing to %s failed: %s", topic, MQTTAsync_strerror(rc));
        return -1;
    }
    if (is_event)
        client->events_pending++;
    return 0;
}

/* Sends the DISCONNECT. Paho's timeout is how long it may wait for messages in flight. */
static void disconnect(mqtt_client *client, int timeout_ms)
{
    MQTTAsync_disconnectOptions options = MQTTAsync_disconnectOptions_initializer;
    if (client->protocol == 5) {
        MQTTAsync_disconnectOptions options5 = MQTTAsync_disconnectOptions_initializer5;
        options = options5;
        options.onSuccess5 = on_disconnect_success5;
        options.onFailure5 = on_disconnect_failure5;
    } else {
        options.onSuccess = on_disconnect_success;
        options.onFailure = on_disconnect_failure;
    }
    options.timeout = timeout_ms;
    options.context = client;

    if (MQTTAsync_disconnect(client->handle, &options) != MQTTASYNC_SUCCESS)
        finish_stop(client);
}

void mqtt_pause_messages(mqtt_client *client)
{
    if (client != NULL && !client->stopping)
        inbox_pause(client->box);
}

void mqtt_resume_messages(mqtt_client *client)
{
    if (client != NULL)
        inbox_resume(client->box);
}

void mqtt_stop(mqtt_client *client, int timeout_ms)
{
    if (client->stopping)
        return;
    client->stopping = 1;

    /* Messages are discarded from now on, and the disconnect's notices must not wait behind
     * them. */
    inbox_resume(client->box);
    uv_timer_stop(&client->retry_timer);
    uv_timer_start(&client->stop_timer, on_stop_timer, (uint64_t)timeout_ms + 500, 0);

    /* The "offline" status is published explicitly because a clean disconnect does not fire
     * the last will. The DISCONNECT follows once the broker acknowledged it, because Paho
     * 1.3.11 waits out its whole disconnect timeout even when nothing is in flight. */
    MQTTAsync_message offline = MQTTAsync_message_initializer;
    offline.payload = "offline";
    offline.payloadlen = 7;
    offline.qos = 1;
    offline.retained = 1;

    MQTTAsync_responseOptions options = MQTTAsync_responseOptions_initializer;
    options.context = client;
    if (client->protocol == 5) {
        options.onSuccess5 = on_offline_sent5;
        options.onFailure5 = on_offline_failed5;
    } else {
        options.onSuccess = on_offline_sent;
        options.onFailure = on_offline_failed;
    }

    if (!client->connected || MQTTAsync_sendMessage(client->handle, client->status_topic, &offline,
                                                    &options) != MQTTASYNC_SUCCESS)
        disconnect(client, timeout_ms);
}

static void on_handle_closed(uv_handle_t *handle)
{
    mqtt_client *client = handle->data;
    if (--client->open_handles == 0)
        free(client);
}

void mqtt_destroy(mqtt_client *client)
{
    if (client == NULL)
        return;

    /* NOTE: the inbox closes after MQTTAsync_destroy on the assumption that Paho starts no
     * callback of a destroyed client; a late one would push into a closed inbox. */
    if (client->handle != NULL)
        MQTTAsync_destroy(&client->handle);
    inbox_destroy(client->box);
    free(client->filter);
    free(client->status_topic);
    free(client->uri);

    if (client->open_handles == 0) {
        free(client);
        return;
    }
    uv_close((uv_handle_t *)&client->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&client->stop_timer, on_handle_closed);
}

int mqtt_is_connected(const mqtt_client *client)
{
    return client != NULL && client->connected;
}

int mqtt_queue_depth(mqtt_client *client)
{
    return client != NULL ? inbox_depth(client->box) : 0;
}

uint64_t mqtt_queue_dropped(mqtt_client *client)
{
    return client != NULL ? inbox_dropped(client->box) : 0;
}

int mqtt_events_pending(const mqtt_client *client)
{
    return client != NULL ? client->events_pending : 0;
}

uint64_t mqtt_messages_discarded(mqtt_client *client)
{
    if (client == NULL)
        return 0;
    return client->messages_discarded + (uint64_t)inbox_depth(client->box);
}

int mqtt_offline_acknowledged(const mqtt_client *client)
{
    return client != NULL && client->offline_acknowledged;
}

int mqtt_ever_connected(const mqtt_client *client)
{
    return client != NULL && client->ever_connected;
}

uint64_t mqtt_reconnects(const mqtt_client *client)
{
    return client != NULL ? client->reconnects : 0;
}
