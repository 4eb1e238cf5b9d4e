/* redis_adapter: hiredis's event hooks on the host's watches.
 *
 * hiredis's adapters/libev.h keeps two ev_io watchers per context and
 * starts or stops them from the addRead/delRead/addWrite/delWrite hooks;
 * cleanup stops both and frees them. We cannot reach the server's loop,
 * so the same shape is built on one plugin-level watch of the ABI (1.3):
 * the hooks change the watch's interest (READABLE | WRITABLE), the
 * watch's callback calls redisAsyncHandleRead/Write, and cleanup cancels
 * the watch (hiredis calls it before it closes the socket, so the host
 * never watches a closed or reused fd). The watch's timer is spare, and
 * the connection code uses it to bound a connection attempt, which
 * hiredis 0.14 cannot do for an async context.
 *
 * The one subtlety: hiredis may free the context (and call cleanup)
 * from inside redisAsyncHandleRead, while our callback still runs. Then
 * cleanup only marks the adapter dead, and the callback frees it when it
 * unwinds, touching neither the context nor the watch again. */
#include <stdlib.h>

#include "redis_internal.h"

struct radapter {
    redisAsyncContext *ac;
    evicorn_watch *watch;
    unsigned events;
    int busy; /* inside on_ready */
    int dead; /* cleanup ran */
    void (*on_timeout)(redisAsyncContext *ac);
};

static void set_interest(struct radapter *a, unsigned events)
{
    if (a->dead || !a->watch || a->events == events)
        return;
    int rc = evicorn_watch_set(a->watch, events, -1);
    if (rc != 0) {
        /* Only a host bug gets here (the watch and fd are ours); the
         * connection then stalls until its timeouts end it. */
        evicorn_log(NULL, EVICORN_LOG_ERROR, "redis: cannot watch the connection's socket (%d)",
                    rc);
        return;
    }
    a->events = events;
}

static void add_read(void *privdata)
{
    struct radapter *a = privdata;
    set_interest(a, a->events | EVICORN_READABLE);
}

static void del_read(void *privdata)
{
    struct radapter *a = privdata;
    set_interest(a, a->events & ~EVICORN_READABLE);
}

static void add_write(void *privdata)
{
    struct radapter *a = privdata;
    set_interest(a, a->events | EVICORN_WRITABLE);
}

static void del_write(void *privdata)
{
    struct radapter *a = privdata;
    set_interest(a, a->events & ~EVICORN_WRITABLE);
}

static void cleanup(void *privdata)
{
    struct radapter *a = privdata;
    /* hiredis 0.14 calls cleanup once, but nothing stops a hook from
     * being called after it: unhook everything. */
    a->ac->ev.addRead = a->ac->ev.delRead = NULL;
    a->ac->ev.addWrite = a->ac->ev.delWrite = NULL;
    a->ac->ev.cleanup = NULL;
    a->ac->ev.data = NULL;
    a->dead = 1;
    if (a->watch)
        evicorn_watch_cancel(a->watch);
    a->watch = NULL;
    if (!a->busy)
        free(a);
}

static void on_ready(evicorn_watch *w, void *ud, unsigned events, int status)
{
    struct radapter *a = ud;
    (void)w;
    if (status != 0) {
        /* Plugin-level watches are not cancelled by the host; if one
         * were, it is gone: forget it, the timeouts end the connection. */
        a->watch = NULL;
        return;
    }
    a->busy = 1;
    if ((events & EVICORN_TIMEOUT) && a->on_timeout)
        a->on_timeout(a->ac);
    if (!a->dead && (events & EVICORN_READABLE))
        redisAsyncHandleRead(a->ac);
    if (!a->dead && (events & EVICORN_WRITABLE))
        redisAsyncHandleWrite(a->ac);
    a->busy = 0;
    if (a->dead)
        free(a);
}

int redis_adapter_attach(redisAsyncContext *ac, void (*on_timeout)(redisAsyncContext *ac))
{
    if (ac->ev.data != NULL)
        return EVICORN_EINVAL;
    struct radapter *a = calloc(1, sizeof *a);
    if (!a)
        return EVICORN_ENOMEM;
    a->ac = ac;
    a->on_timeout = on_timeout;
    int rc = evicorn_watch_new(NULL, ac->c.fd, on_ready, a, &a->watch);
    if (rc != 0) {
        free(a);
        return rc;
    }
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = a;
    return 0;
}

void redis_adapter_timer(redisAsyncContext *ac, double seconds)
{
    struct radapter *a = ac->ev.data;
    if (!a || a->dead || !a->watch)
        return;
    int rc = evicorn_watch_set(a->watch, a->events, seconds > 0 ? seconds : 0);
    if (rc != 0)
        evicorn_log(NULL, EVICORN_LOG_ERROR, "redis: cannot set the connection's timer (%d)", rc);
}
