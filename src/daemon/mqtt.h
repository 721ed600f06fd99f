/*
 * The MQTT adapter: the only module that includes Paho (the MQTTAsync API, MQTT 3.1.1 or 5).
 *
 * Paho runs its own threads. Its callbacks copy each message (topic and payload) into the
 * inbox, free Paho's copies and return; the loop thread then calls the mqtt_callbacks below.
 * The client subscribes to the ingest filter and publishes "online" (retained) to the status
 * topic after every connection, and leaves a last will of "offline" (retained). Reconnects are
 * automatic with a growing delay. Every function here is called on the loop thread.
 */
#ifndef BABYMAMBAD_MQTT_H
#define BABYMAMBAD_MQTT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct mqtt_options {
    const char *uri;
    const char *client_id;
    const char *filter;       /* ingest subscription */
    const char *status_topic; /* retained online/offline */
    int protocol;             /* 4 (3.1.1) or 5 */
    int qos;                  /* of the subscription */
    int keepalive_s;
    int reconnect_min_s;
    int reconnect_max_s;
    int max_buffered;   /* outgoing messages held while disconnected */
    int queue_capacity; /* incoming messages waiting for the loop */
    size_t max_payload; /* larger messages are reported without their payload */
    /* TODO: username, password and TLS (MQTTAsync_SSLOptions) belong here, read from
     * mqtt.* keys and a credentials file. start_connect builds all connect options, so they
     * plug in there. */
} mqtt_options;

typedef struct mqtt_callbacks {
    /* A message arrived. payload is NULL, and oversize the original size, when the message was
     * larger than max_payload. */
    void (*message)(void *user, const char *topic, const void *payload, size_t size,
                    size_t oversize);
    /* The connection came up (connected = 1) or went down (0). */
    void (*connection)(void *user, int connected);
    /* A publish other than an event was not delivered; topic names it. */
    void (*publish_failed)(void *user, const char *topic, const char *why);
    /* An event published with is_event was acknowledged by the broker (QoS 1 and 2) or
     * written to the socket (QoS 0). */
    void (*event_delivered)(void *user);
    /* An event published with is_event was not delivered; code is Paho's. */
    void (*event_failed)(void *user, int code);
    /* The disconnect that mqtt_stop started finished. */
    void (*stopped)(void *user);
    void *user;
} mqtt_callbacks;

typedef struct mqtt_client mqtt_client;

/* Creates a client; it does not connect yet. On failure returns NULL with the reason in error. */
mqtt_client *mqtt_create(uv_loop_t *loop, const mqtt_options *options,
                         const mqtt_callbacks *callbacks, char *error, size_t error_size);

/* Starts connecting; failures are retried in the background. Returns 0, or -1 when the client
 * could not even start. */
int mqtt_start(mqtt_client *client);

/* Queues a publish. Returns 0, or -1 when the client's buffer is full or it is stopping. For
 * an event (is_event = 1), exactly one of callbacks.event_delivered and callbacks.event_failed
 * follows a 0 return, unless the client stops first; mqtt_events_pending counts the events
 * still waiting for either. */
int mqtt_publish(mqtt_client *client, const char *topic, const void *payload, size_t size, int qos,
                 int retain, int is_event);

/* Stops delivering messages to callbacks.message until mqtt_resume_messages, for backpressure.
 * Arriving messages wait in the bounded queue (mqtt_options.queue_capacity); beyond it they
 * are dropped and counted in mqtt_queue_dropped. Connection notices keep flowing once the
 * messages queued before them are delivered. */
void mqtt_pause_messages(mqtt_client *client);

/* Delivers the waiting messages again, from the next loop iteration on. Accepts NULL. */
void mqtt_resume_messages(mqtt_client *client);

/* Publishes "offline" (retained) to the status topic, then disconnects; callbacks.stopped runs
 * when done or after timeout_ms. */
void mqtt_stop(mqtt_client *client, int timeout_ms);

/* Frees the client; its inbox handle closes on the next loop iteration. Accepts NULL. */
void mqtt_destroy(mqtt_client *client);

int mqtt_is_connected(const mqtt_client *client);
int mqtt_queue_depth(mqtt_client *client);
uint64_t mqtt_queue_dropped(mqtt_client *client);
uint64_t mqtt_reconnects(const mqtt_client *client);

/* Returns the events accepted by mqtt_publish whose delivery or failure is not reported yet. At
 * stop these are the events Paho discards. */
int mqtt_events_pending(const mqtt_client *client);

/* Returns the sensor messages that arrived and were not handed to callbacks.message because the
 * client was stopping: those skipped since mqtt_stop and those still waiting in the queue,
 * which mqtt_destroy frees.
 * NOTE: a message that Paho delivers between this call and mqtt_destroy is freed uncounted. */
uint64_t mqtt_messages_discarded(mqtt_client *client);

/* Returns nonzero when the broker acknowledged the "offline" status that mqtt_stop sent. */
int mqtt_offline_acknowledged(const mqtt_client *client);

/* Returns nonzero when the client was connected at least once. */
int mqtt_ever_connected(const mqtt_client *client);

#endif
