/*
 * A bounded queue that carries items from other threads to the libuv loop thread.
 *
 * Producers (Paho's threads) push heap-allocated items and the inbox wakes the loop with
 * uv_async_send. libuv coalesces wake-ups, so the loop callback drains every queued item each
 * time it runs, unless the consumer paused the inbox because it cannot take more data for now.
 * Data items beyond the capacity are rejected and counted. Control items (such as "connected")
 * bypass the bound, because losing one would leave the loop's view of the connection wrong.
 */
#ifndef BABYMAMBAD_INBOX_H
#define BABYMAMBAD_INBOX_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct inbox_item {
    struct inbox_item *next;
    int kind;         /* meaning defined by the producer */
    int code;         /* meaning defined by the producer */
    int is_control;   /* set by inbox_push */
    char *topic;      /* points into data, or NULL */
    void *payload;    /* points into data, or NULL */
    size_t size;      /* bytes of payload */
    size_t full_size; /* size of the original message when payload was not copied */
    char data[];
} inbox_item;

typedef struct inbox inbox;

/* Called on the loop thread for each item, in push order. The handler owns the item and frees
 * it with inbox_item_free. */
typedef void (*inbox_handler)(void *user, inbox_item *item);

/* Creates an inbox on loop holding at most capacity data items. */
inbox *inbox_create(uv_loop_t *loop, int capacity, inbox_handler handler, void *user);

/* Closes the wake-up handle and frees remaining items. Loop thread only; the inbox is freed in
 * the close callback, so the loop must run once more. Accepts NULL. */
void inbox_destroy(inbox *box);

/* Allocates an item with room for a NUL-terminated topic and a payload copy. Any thread. */
inbox_item *inbox_item_create(int kind, const char *topic, size_t topic_length, const void *payload,
                              size_t size);
void inbox_item_free(inbox_item *item);

/* Queues an item and wakes the loop. Any thread. Returns 0, or -1 when a data item finds the
 * inbox full; the caller then still owns the item. */
int inbox_push(inbox *box, inbox_item *item, int is_control);

/* Stops handing data items to the handler, from the next item on, until inbox_resume. Items
 * keep queuing up to the capacity. Loop thread only. */
void inbox_pause(inbox *box);

/* Ends a pause and drains the waiting items on the next loop iteration. Loop thread only. */
void inbox_resume(inbox *box);

/* Returns nonzero while the inbox is paused. Loop thread only. */
int inbox_paused(const inbox *box);

/* Returns the data items waiting now. Any thread. */
int inbox_depth(inbox *box);

/* Returns the data items rejected because the inbox was full, since creation. Any thread. */
uint64_t inbox_dropped(inbox *box);

#endif
