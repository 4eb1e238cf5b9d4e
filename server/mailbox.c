/* mailbox: a mutex-protected FIFO of intrusive messages plus one ev_async
 * watcher that wakes the owning loop.
 *
 * The mailbox owns only its own struct, the mutex and the watcher; messages
 * belong to whoever posted them and are merely linked through their next
 * field while queued. Posters append under the lock and send the wakeup only
 * when the queue goes from empty to non-empty: a non-empty queue means a send
 * is already outstanding whose callback has not yet taken the queue. Because
 * sends coalesce, the callback always takes the whole queue at once and runs
 * each message outside the lock, so a message's fn may post again. */
#include "mailbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mailbox {
    struct ev_loop *loop;
    ev_async async;
    pthread_mutex_t lock; /* guards head and tail */
    struct mailbox_msg *head;
    struct mailbox_msg **tail; /* &head when empty */
};

/* Lock and unlock only fail on a corrupted mutex, and posting has no way to
 * report an error, so such a failure stops the process. */
static void check_pthread(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "evicorn: mailbox: %s: %s\n", what, strerror(rc));
        abort();
    }
}

/* Detaches the whole queue; the caller runs it without holding the lock. */
static struct mailbox_msg *take_all(struct mailbox *mb)
{
    check_pthread(pthread_mutex_lock(&mb->lock), "pthread_mutex_lock");
    struct mailbox_msg *list = mb->head;
    mb->head = NULL;
    mb->tail = &mb->head;
    check_pthread(pthread_mutex_unlock(&mb->lock), "pthread_mutex_unlock");
    return list;
}

static void run_list(struct mailbox_msg *list)
{
    while (list) {
        /* Read next first: fn may free the message or post it again. */
        struct mailbox_msg *msg = list;
        list = msg->next;
        msg->fn(msg);
    }
}

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    /* One batch per wakeup: messages posted by this batch sent a new wakeup
     * and run on the next loop iteration, so a chatty poster cannot starve
     * the loop's other watchers. */
    run_list(take_all(w->data));
}

struct mailbox *mailbox_new(struct ev_loop *loop)
{
    struct mailbox *mb = malloc(sizeof(*mb));
    if (!mb)
        return NULL;
    int rc = pthread_mutex_init(&mb->lock, NULL);
    if (rc != 0) {
        free(mb);
        errno = rc;
        return NULL;
    }
    mb->loop = loop;
    mb->head = NULL;
    mb->tail = &mb->head;
    ev_async_init(&mb->async, async_cb);
    mb->async.data = mb;
    ev_async_start(loop, &mb->async);
    ev_unref(loop);
    return mb;
}

void mailbox_post(struct mailbox *mb, struct mailbox_msg *msg)
{
    msg->next = NULL;
    check_pthread(pthread_mutex_lock(&mb->lock), "pthread_mutex_lock");
    int was_empty = mb->head == NULL;
    *mb->tail = msg;
    mb->tail = &msg->next;
    /* Sent under the lock: once the loop thread can see this message, the
     * poster is done with mb, so running the message may free the mailbox. */
    if (was_empty)
        ev_async_send(mb->loop, &mb->async);
    check_pthread(pthread_mutex_unlock(&mb->lock), "pthread_mutex_unlock");
}

void mailbox_drain(struct mailbox *mb)
{
    struct mailbox_msg *list;
    while ((list = take_all(mb)) != NULL)
        run_list(list);
}

void mailbox_free(struct mailbox *mb)
{
    if (!mb)
        return;
    /* libev requires re-referencing an unref'd watcher before stopping it. */
    ev_ref(mb->loop);
    ev_async_stop(mb->loop, &mb->async);
    check_pthread(pthread_mutex_destroy(&mb->lock), "pthread_mutex_destroy");
    free(mb);
}
