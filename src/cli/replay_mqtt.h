/*
 * The MQTT side of `babymamba replay`: one Eclipse Paho MQTTAsync client that publishes sample
 * batches with QoS 1 and receives the daemon's activity events.
 *
 * Publishing blocks while max_inflight messages wait for their PUBACK, so a replay as fast as
 * possible never outruns the broker and no message is dropped on the client side. Received
 * messages are handed to a callback on Paho's thread. Errors are printed with the broker URI.
 */
#ifndef BM_CLI_REPLAY_MQTT_H
#define BM_CLI_REPLAY_MQTT_H

#include <stddef.h>

typedef struct replay_mqtt replay_mqtt;

/* Called on Paho's thread for each received message. retained is nonzero for a message the
 * broker kept from before the subscription. */
typedef void (*replay_mqtt_message_fn)(void *user, const char *topic, const char *payload,
                                       size_t size, int retained);

/* Connects to uri (tcp://HOST:PORT, mqtt://HOST:PORT, or ssl:// and mqtts:// for TLS) and waits
 * up to timeout_s seconds for the broker to accept. on_message may be NULL when nothing is
 * subscribed. Returns NULL after printing why the connection failed. */
replay_mqtt *replay_mqtt_connect(const char *uri, int max_inflight, double timeout_s,
                                 replay_mqtt_message_fn on_message, void *user);

/* Subscribes to count topic filters with QoS 1 and waits for the broker's acknowledgement.
 * Returns 0 after printing an error. */
int replay_mqtt_subscribe(replay_mqtt *client, char *const *topics, int count, double timeout_s);

/* Publishes payload with QoS 1, not retained. Waits first while max_inflight messages are
 * unacknowledged. Returns 0 after printing an error, such as a lost connection. */
int replay_mqtt_publish(replay_mqtt *client, const char *topic, const char *payload, size_t size);

/* Waits up to timeout_s seconds until every published message is acknowledged. Returns 0
 * after printing an error when some are not. */
int replay_mqtt_flush(replay_mqtt *client, double timeout_s);

/* Returns the number of messages acknowledged by the broker so far. */
long replay_mqtt_acknowledged(replay_mqtt *client);

/* Disconnects and frees the client. Accepts NULL. */
void replay_mqtt_close(replay_mqtt *client);

#endif
