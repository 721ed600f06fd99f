/*
 * The cross-thread queue into the loop (see inbox.h).
 */
#include "inbox.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct inbox {
    uv_async_t async;
    pthread_mutex_t lock;
    inbox_item *head;
    inbox_item *tail;
    int depth;
    int capacity;
    uint64_t dropped;
    int closing;
    int paused; /* loop thread only */
    inbox_handler handler;
    void *user;
};

/* Takes one item at a time under the lock and handles it outside, so producers never wait for
 * the handler and see room as soon as an item leaves. While the inbox is paused, the first data
 * item stops the drain and items behind it wait, so that they keep their order. */
static void on_wake(uv_async_t *async)
{
    inbox *box = async->data;

    for (;;) {
        pthread_mutex_lock(&box->lock);
        inbox_item *item = box->head;
        if (item == NULL || (box->paused && !item->is_control && !box->closing)) {
            pthread_mutex_unlock(&box->lock);
            return;
        }
        box->head = item->next;
        if (box->head == NULL)
            box->tail = NULL;
        if (!item->is_control)
            box->depth--;
        pthread_mutex_unlock(&box->lock);

        item->next = NULL;
        if (box->closing)
            inbox_item_free(item);
        else
            box->handler(box->user, item);
    }
}

inbox *inbox_create(uv_loop_t *loop, int capacity, inbox_handler handler, void *user)
{
    inbox *box = calloc(1, sizeof *box);
    if (box == NULL)
        return NULL;

    box->capacity = capacity;
    box->handler = handler;
    box->user = user;
    if (pthread_mutex_init(&box->lock, NULL) != 0) {
        free(box);
        return NULL;
    }
    if (uv_async_init(loop, &box->async, on_wake) != 0) {
        pthread_mutex_destroy(&box->lock);
        free(box);
        return NULL;
    }
    box->async.data = box;
    return box;
}

static void on_closed(uv_handle_t *handle)
{
    inbox *box = handle->data;

    inbox_item *item = box->head;
    while (item != NULL) {
        inbox_item *next = item->next;
        inbox_item_free(item);
        item = next;
    }
    pthread_mutex_destroy(&box->lock);
    free(box);
}

void inbox_destroy(inbox *box)
{
    if (box == NULL)
        return;

    pthread_mutex_lock(&box->lock);
    box->closing = 1;
    pthread_mutex_unlock(&box->lock);
    uv_close((uv_handle_t *)&box->async, on_closed);
}

inbox_item *inbox_item_create(int kind, const char *topic, size_t topic_length, const void *payload,
                              size_t size)
{
    size_t topic_bytes = topic != NULL ? topic_length + 1 : 0;
    inbox_item *item = malloc(sizeof *item + topic_bytes + size);
    if (item == NULL)
        return NULL;

    memset(item, 0, sizeof *item);
    item->kind = kind;
    if (topic != NULL) {
        item->topic = item->data;
        memcpy(item->topic, topic, topic_length);
        item->topic[topic_length] = '\0';
    }
    if (payload != NULL) {
        item->payload = item->data + topic_bytes;
        memcpy(item->payload, payload, size);
        item->size = size;
    }
    return item;
}

void inbox_item_free(inbox_item *item)
{
    free(item);
}

int inbox_push(inbox *box, inbox_item *item, int is_control)
{
    pthread_mutex_lock(&box->lock);
    if (box->closing || (!is_control && box->depth >= box->capacity)) {
        box->dropped++;
        pthread_mutex_unlock(&box->lock);
        return -1;
    }

    item->next = NULL;
    item->is_control = is_control;
    if (box->tail != NULL)
        box->tail->next = item;
    else
        box->head = item;
    box->tail = item;
    if (!is_control)
        box->depth++;
    pthread_mutex_unlock(&box->lock);

    uv_async_send(&box->async);
    return 0;
}

void inbox_pause(inbox *box)
{
    box->paused = 1;
}

void inbox_resume(inbox *box)
{
    if (!box->paused)
        return;
    box->paused = 0;
    /* The drain runs on the next loop iteration, outside the caller's stack. */
    uv_async_send(&box->async);
}

int inbox_paused(const inbox *box)
{
    return box->paused;
}

int inbox_depth(inbox *box)
{
    pthread_mutex_lock(&box->lock);
    int depth = box->depth;
    pthread_mutex_unlock(&box->lock);
    return depth;
}

uint64_t inbox_dropped(inbox *box)
{
    pthread_mutex_lock(&box->lock);
    uint64_t dropped = box->dropped;
    pthread_mutex_unlock(&box->lock);
    return dropped;
}
