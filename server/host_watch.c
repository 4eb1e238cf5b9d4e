/* host_watch: the ABI's watches (1.3), interest in a file descriptor's
 * readiness and/or a one-shot timer, owned by a request or by a plugin
 * version; see abi.h.
 *
 * A request's watch is one more reason for its call to stay open (a hold
 * taken at creation, given back when the watch goes) and is cancelled with
 * the call's other operations when the client leaves. A plugin's watch
 * belongs to the generation whose code created it; it does not count as a
 * reference (a pool of connections must not keep its own version from
 * draining, or the shutdown hook that closes the pool would never run),
 * and it does not keep a stopping worker's loop alive. Whatever is left
 * of a generation's watches once its shutdown hook has returned is logged
 * and stopped before its code is unmapped; the fds are the plugin's and
 * stay open.
 *
 * The callback may cancel its own watch, or any other: a watch being run
 * is only marked, and freed when its callback returns. */
#include <stdio.h>
#include <stdlib.h>

#include "container.h"
#include "host_internal.h"
#include "log.h"
#include "plugin_run.h"
#include "plugins.h"

struct evicorn_watch {
    struct host *host;
    struct call *c;                    /* the request it is bound to, or NULL */
    struct generation *gen;            /* whose code fn is */
    struct evicorn_watch *prev, *next; /* in c->watches or host->plugin_watches */
    int fd;
    unsigned events;
    evicorn_watch_fn fn;
    void *ud;
    ev_io io;
    ev_timer timer;
    int running;            /* nested runs of fn in progress */
    bool dead;              /* cancelled while running: freed when the run ends */
    struct watch_task task; /* plugin watches: what the watchdog names */
    char name[160];
};

static struct evicorn_watch **list_of(struct evicorn_watch *w)
{
    return w->c ? &w->c->watches : &w->host->plugin_watches;
}

static void link_watch(struct evicorn_watch *w)
{
    struct evicorn_watch **head = list_of(w);
    w->prev = NULL;
    w->next = *head;
    if (*head)
        (*head)->prev = w;
    *head = w;
}

static void unlink_watch(struct evicorn_watch *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *list_of(w) = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

/* A plugin's watchers do not keep the loop running (ev_unref after each
 * start, ev_ref before each stop), so a stopping worker is not held by a
 * pool's idle connections. */
static void io_stop(struct evicorn_watch *w)
{
    if (!ev_is_active(&w->io))
        return;
    if (!w->c)
        ev_ref(w->host->loop);
    ev_io_stop(w->host->loop, &w->io);
}

static void io_start(struct evicorn_watch *w)
{
    ev_io_start(w->host->loop, &w->io);
    if (!w->c)
        ev_unref(w->host->loop);
}

/* A one-shot timer that expired is no longer active but may still be
 * pending (its callback not run yet in this loop iteration): cancelling
 * it must clear that too, or the callback would run on a freed watch. */
static void timer_stop(struct evicorn_watch *w)
{
    if (ev_is_active(&w->timer)) {
        if (!w->c)
            ev_ref(w->host->loop);
        ev_timer_stop(w->host->loop, &w->timer);
    } else if (ev_is_pending(&w->timer)) {
        ev_clear_pending(w->host->loop, &w->timer);
        if (!w->c)
            ev_ref(w->host->loop); /* as on_timer would have */
    }
}

static void timer_start(struct evicorn_watch *w, double seconds)
{
    /* libev counts from the loop's cached time, which lags the clock by
     * however long this iteration's callbacks have run: add the lag, so
     * the timer fires `seconds` from now, not earlier. */
    ev_timer_set(&w->timer, seconds + (ev_time() - ev_now(w->host->loop)), 0);
    ev_timer_start(w->host->loop, &w->timer);
    if (!w->c)
        ev_unref(w->host->loop);
}

/* Stops and unlinks w; frees it unless its callback is running (then the
 * run frees it). A request's watch gives back its hold. */
static void watch_destroy(struct evicorn_watch *w)
{
    if (w->dead)
        return;
    w->dead = true;
    io_stop(w);
    timer_stop(w);
    unlink_watch(w);
    struct call *c = w->c;
    if (!c)
        watchdog_sync(w->host->site->watchdog); /* it may be naming w->task */
    if (w->running == 0)
        free(w);
    if (c) {
        c->holds--;
        call_maybe_finish(c);
    }
}

struct watch_run {
    struct evicorn_watch *w;
    unsigned events;
    int status;
};

static void run_watch(void *arg)
{
    struct watch_run *r = arg;
    r->w->fn(r->w, r->w->ud, r->events, r->status);
}

/* Runs the callback through the door every plugin entry takes: the call's
 * (which keeps the request open meanwhile) or, for a plugin's watch, the
 * watchdog's with the watch's own name. */
static void watch_fire(struct evicorn_watch *w, unsigned events, int status)
{
    struct watch_run r = {w, events, status};
    struct generation *gen = w->gen;
    bool bound = w->c != NULL;
    struct generation *prev = generation_enter(gen);
    w->running++;
    if (bound) {
        call_run(w->c, run_watch, &r); /* the call holds the generation */
    } else {
        /* What the callback does may end the generation's last request;
         * its code must stay mapped until the callback has returned. */
        generation_retain(gen);
        plugin_run(w->host->site, &w->task, 0, run_watch, &r);
    }
    w->running--;
    if (w->dead && w->running == 0)
        free(w);
    generation_leave(prev);
    if (!bound)
        generation_release(gen);
}

static void on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct evicorn_watch *w = container_of(io, struct evicorn_watch, io);
    unsigned events = ((revents & EV_READ) ? EVICORN_READABLE : 0) |
                      ((revents & EV_WRITE) ? EVICORN_WRITABLE : 0);
    /* An error or hang-up shows as readable and writable (poll's POLLERR
     * and POLLHUP): report only what was asked for. */
    events &= w->events;
    if (events)
        watch_fire(w, events, 0);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct evicorn_watch *w = container_of(t, struct evicorn_watch, timer);
    if (!w->c)
        ev_ref(w->host->loop); /* the timer stopped itself: balance timer_start's unref */
    watch_fire(w, EVICORN_TIMEOUT, 0);
}

int api_watch(evicorn_request *req, int fd, evicorn_watch_fn fn, void *ud, evicorn_watch **out)
{
    struct host *h = req ? call_of(req)->host : host_current();
    if (!h || !host_on_loop(h))
        return EVICORN_EPERM;
    if (!fn || !out || fd < -1)
        return EVICORN_EINVAL;
    struct call *c = req ? call_of(req) : NULL;
    struct generation *gen = c ? c->gen : generation_running();
    if (!gen)
        return EVICORN_EPERM; /* no plugin code is running: whose would it be? */
    if (c && (c->finished || c->cancelled))
        return EVICORN_EPIPE;
    struct evicorn_watch *w = calloc(1, sizeof *w);
    if (!w)
        return EVICORN_ENOMEM;
    *w = (struct evicorn_watch){.host = h, .c = c, .gen = gen, .fd = fd, .fn = fn, .ud = ud};
    ev_io_init(&w->io, on_io, fd < 0 ? 0 : fd, 0);
    ev_timer_init(&w->timer, on_timer, 0, 0);
    if (!c) {
        snprintf(w->name, sizeof w->name, "%s fd %d watch", generation_name(gen), fd);
        w->task =
            (struct watch_task){.kind = WATCH_CALLBACK, .role = "watch of plugin", .name = w->name};
    } else {
        c->holds++;
    }
    link_watch(w);
    *out = w;
    return 0;
}

int api_watch_set(evicorn_watch *w, unsigned events, double timeout)
{
    if (!w || !host_on_loop(w->host))
        return EVICORN_EPERM;
    if (w->dead || (events & ~(EVICORN_READABLE | EVICORN_WRITABLE)) || timeout != timeout)
        return EVICORN_EINVAL;
    if (events && w->fd < 0)
        return EVICORN_EINVAL;
    if (events != w->events) {
        io_stop(w);
        w->events = events;
        if (events) {
            int ev = ((events & EVICORN_READABLE) ? EV_READ : 0) |
                     ((events & EVICORN_WRITABLE) ? EV_WRITE : 0);
            ev_io_set(&w->io, w->fd, ev);
            io_start(w);
        }
    }
    if (timeout >= 0)
        timer_stop(w);
    if (timeout > 0)
        timer_start(w, timeout);
    return 0;
}

void api_watch_cancel(evicorn_watch *w)
{
    if (!w || !host_on_loop(w->host))
        return;
    watch_destroy(w);
}

void host_watch_cancel_call(struct call *c)
{
    /* Each gets its last callback; one may cancel the next (it is then
     * gone before its turn), so restart from the head every time. */
    while (c->watches) {
        struct evicorn_watch *w = c->watches;
        io_stop(w);
        timer_stop(w);
        unlink_watch(w);
        w->c = NULL; /* off the call's list: destroy must not unlink again */
        w->dead = true;
        struct watch_run r = {w, 0, EVICORN_ECANCELED};
        struct generation *prev = generation_enter(w->gen);
        w->running++;
        call_run(c, run_watch, &r);
        w->running--;
        generation_leave(prev);
        free(w);
        c->holds--;
    }
    call_maybe_finish(c);
}

void host_watch_unloading(struct generation *g)
{
    struct host *h = host_current();
    if (!h)
        return;
    size_t left = 0;
    char fds[128];
    size_t used = 0;
    fds[0] = '\0';
    struct evicorn_watch *w = h->plugin_watches;
    while (w) {
        struct evicorn_watch *next = w->next;
        if (w->gen == g) {
            left++;
            if (used < sizeof fds - 16)
                used += (size_t)snprintf(fds + used, sizeof fds - used, "%s%d",
                                         left > 1 ? ", " : "", w->fd);
            watch_destroy(w);
        }
        w = next;
    }
    if (left)
        log_warning("plugin %s left %zu watch(es) at unload (fd %s): stopped; the plugin's "
                    "shutdown hook should cancel them (its fds are not closed)",
                    generation_name(g), left, fds);
}
