/* host_call: the life of a call (the host's side of one evicorn_request)
 * and of the operations its continuations wait on; see host.h.
 *
 * A call is created at dispatch and finished (the request finished, the
 * generation released, the call freed) once its handler has returned, no
 * operation is pending and no hold is taken. Every run of plugin code for
 * a call, from the handler to the last continuation, goes through
 * call_run: it keeps the call open while the code runs (the code may
 * release its last hold) and hands the code to plugin_run for the
 * watchdog, the scoreboard and the slow-callback warning. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "host_internal.h"
#include "log.h"
#include "plugin_run.h"
#include "plugins.h"
#include "request.h"

enum op_kind { OP_SLEEP, OP_OFFLOAD, OP_BODY, OP_WRITABLE };

struct op {
    struct op *prev, *next;
    struct call *c;
    enum op_kind kind;
    evicorn_event_fn event_fn;
    evicorn_body_fn body_fn;
    evicorn_work_fn work;
    void *ud;
    ev_timer timer;
    struct pool_job job;
    bool whole_body;
};

struct background {
    struct background *next;
    struct pool_job job;
    evicorn_work_fn fn;
    void *ud;
    struct generation *gen;
    struct host *host;
};

/* ---- finishing ---- */

static void run_background(struct pool_job *job)
{
    struct background *b = container_of(job, struct background, job);
    b->fn(b->ud);
}

static void background_done(struct pool_job *job)
{
    struct background *b = container_of(job, struct background, job);
    generation_release(b->gen);
    b->host->pending_jobs--;
    free(b);
}

void call_maybe_finish(struct call *c)
{
    if (c->finished || !c->returned || c->ops || c->fetches || c->holds > 0)
        return;
    struct host *h = c->host;
    c->finished = true;
    request_on_disconnect(c->r, NULL, NULL);
    request_finish(c->r, c->re->label);
    /* Background tasks start once the response is out, each keeping the
     * plugin's code mapped until it returns. */
    while (c->bg) {
        struct background *b = c->bg;
        c->bg = b->next;
        b->gen = c->gen;
        b->host = h;
        generation_retain(b->gen);
        b->job.work = run_background;
        b->job.done = background_done;
        h->pending_jobs++;
        if (pool_submit(h->pool, &b->job) < 0) {
            log_error("%s: cannot start a background task: %s", c->re->label, strerror(errno));
            background_done(&b->job);
        }
    }
    generation_request_ended(c->gen);
    generation_release(c->gen);
    route_table_release(c->table);
    buf_free(&c->body);
    free(c);
}

void call_run(struct call *c, void (*fn)(void *), void *arg)
{
    c->holds++;
    struct generation *prev = generation_enter(c->gen);
    plugin_run(c->host->site, &c->re->watch, 0, fn, arg);
    generation_leave(prev);
    c->holds--;
    call_maybe_finish(c);
}

/* Arguments of the kinds of continuation, for call_run. */
struct event_run {
    evicorn_event_fn fn;
    struct call *c;
    void *ud;
    int status;
};

static void run_event(void *arg)
{
    struct event_run *e = arg;
    e->fn(handle_of(e->c), e->ud, e->status);
}

static void call_event(struct call *c, evicorn_event_fn fn, void *ud, int status)
{
    struct event_run e = {fn, c, ud, status};
    call_run(c, run_event, &e);
}

/* ---- operations ---- */

static struct op *op_new(struct call *c, enum op_kind kind, void *ud)
{
    struct op *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->c = c;
    o->kind = kind;
    o->ud = ud;
    o->next = c->ops;
    if (c->ops)
        c->ops->prev = o;
    c->ops = o;
    return o;
}

static void op_unlink(struct op *o)
{
    struct call *c = o->c;
    if (o->prev)
        o->prev->next = o->next;
    else
        c->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
}

/* Ends an operation: its continuation runs, then the call may finish. */
static void op_complete(struct op *o, int status)
{
    struct call *c = o->c;
    op_unlink(o);
    evicorn_event_fn fn = o->event_fn;
    void *ud = o->ud;
    free(o);
    if (fn)
        call_event(c, fn, ud, status);
    else
        call_maybe_finish(c);
}

static void on_sleep_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    op_complete(t->data, 0);
}

static void offload_work(struct pool_job *job)
{
    struct op *o = container_of(job, struct op, job);
    o->work(o->ud);
}

static void offload_done(struct pool_job *job)
{
    struct op *o = container_of(job, struct op, job);
    o->c->host->pending_jobs--;
    op_complete(o, o->c->cancelled ? EVICORN_ECANCELED : 0);
}

struct body_run {
    evicorn_body_fn fn;
    struct call *c;
    void *ud;
    const char *data;
    size_t len;
    int more;
    int status;
};

static void run_body(void *arg)
{
    struct body_run *b = arg;
    b->fn(handle_of(b->c), b->ud, b->data, b->len, b->more, b->status);
}

static void body_arrived(struct request *r, void *ud, const char *data, size_t len, bool more,
                         int err)
{
    (void)r;
    struct op *o = ud;
    struct call *c = o->c;
    int status = err == -EMSGSIZE ? EVICORN_EMSGSIZE : err ? EVICORN_ECANCELED : 0;
    if (o->whole_body && status == 0) {
        buf_clear(&c->body);
        if (buf_append(&c->body, data, len) < 0)
            status = EVICORN_ENOMEM;
        else
            c->body_ready = true;
        data = buf_start(&c->body);
        len = buf_size(&c->body);
    }
    op_unlink(o);
    struct body_run b = {o->body_fn,      c,     o->ud, status ? NULL : data, status ? 0 : len,
                         more && !status, status};
    free(o);
    call_run(c, run_body, &b);
}

static void writable_again(struct request *r, void *ud)
{
    (void)r;
    struct op *o = ud;
    op_complete(o, o->c->cancelled || request_disconnected(o->c->r) ? EVICORN_ECANCELED : 0);
}

/* The disconnect callback runs deferred, never inside the call that
 * registered it (on_disconnect after the client had already gone). */
static void run_disconnect_callback(struct defer *d)
{
    struct call *c = container_of(d, struct call, disconnect_defer);
    evicorn_event_fn fn = c->disconnect_fn;
    c->disconnect_fn = NULL;
    c->holds--; /* taken when it was scheduled */
    if (fn)
        call_event(c, fn, c->disconnect_ud, 0);
    else
        call_maybe_finish(c);
}

static void schedule_disconnect_callback(struct call *c)
{
    if (c->disconnect_defer.queued)
        return;
    c->holds++; /* the call must exist when it runs */
    defer_schedule(c->host->defer, &c->disconnect_defer, run_disconnect_callback);
}

/* The client left: every pending operation ends now with ECANCELED
 * (offloaded work cannot be interrupted: it reports ECANCELED when done),
 * and the plugin's disconnect callback runs. */
void call_cancel(struct call *c)
{
    c->cancelled = true;
    c->holds++; /* the call must outlive this loop even if every op ends */
    struct op *o = c->ops;
    while (o) {
        struct op *next = o->next;
        if (o->kind == OP_SLEEP) {
            ev_timer_stop(c->host->loop, &o->timer);
            op_complete(o, EVICORN_ECANCELED);
        }
        o = next;
    }
    if (c->fetches)
        host_fetch_cancel_call(c);
    if (c->watches)
        host_watch_cancel_call(c);
    if (c->disconnect_fn) {
        evicorn_event_fn fn = c->disconnect_fn;
        c->disconnect_fn = NULL;
        call_event(c, fn, c->disconnect_ud, 0);
    }
    c->holds--;
    call_maybe_finish(c);
}

static void call_disconnected(struct request *r, void *ud)
{
    (void)r;
    call_cancel(ud);
}

void call_writable(struct call *c, int status)
{
    struct op *o = c->ops;
    while (o) {
        struct op *next = o->next;
        if (o->kind == OP_WRITABLE)
            op_complete(o, status);
        o = next;
    }
}

/* ---- the API: body ---- */

static int start_body_op(evicorn_request *req, evicorn_body_fn fn, void *ud, bool whole)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    if (!fn)
        return EVICORN_EINVAL;
    struct op *o = op_new(c, OP_BODY, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->body_fn = fn;
    o->whole_body = whole;
    int rc =
        whole ? request_read_body(c->r, body_arrived, o) : request_receive(c->r, body_arrived, o);
    if (rc < 0) {
        op_unlink(o);
        free(o);
        return rc == -EBUSY ? EVICORN_EBUSY : rc == -EPIPE ? EVICORN_EPIPE : EVICORN_EIO;
    }
    return 0;
}

int api_receive(evicorn_request *req, evicorn_body_fn fn, void *ud)
{
    return start_body_op(req, fn, ud, false);
}

int api_read_body(evicorn_request *req, evicorn_body_fn fn, void *ud)
{
    return start_body_op(req, fn, ud, true);
}

/* ---- the API: response (any thread, through xcall_run) ---- */

/* request.c returns negative errno values, as the ABI does. */
static int do_respond(struct xcall *x)
{
    if ((x->n && !x->headers) || (x->len && !x->data))
        return EVICORN_EINVAL;
    return request_respond(x->c->r, x->status, (const struct http_header *)x->headers, x->n,
                           x->data, x->len);
}

int api_respond(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                const void *body, size_t len)
{
    struct xcall x = {.fn = do_respond,
                      .c = call_of(req),
                      .status = status,
                      .headers = headers,
                      .n = n,
                      .data = body,
                      .len = len};
    return xcall_run(&x);
}

static int do_start(struct xcall *x)
{
    if (x->n && !x->headers)
        return EVICORN_EINVAL;
    return request_start(x->c->r, x->status, (const struct http_header *)x->headers, x->n,
                         x->content_length);
}

int api_start(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
              int64_t content_length)
{
    struct xcall x = {.fn = do_start,
                      .c = call_of(req),
                      .status = status,
                      .headers = headers,
                      .n = n,
                      .content_length = content_length};
    return xcall_run(&x);
}

static void send_drained(struct request *r, void *ud)
{
    (void)r;
    xcall_finish(ud, 0);
}

static int do_send(struct xcall *x)
{
    if (x->len && !x->data)
        return EVICORN_EINVAL;
    struct request *r = x->c->r;
    int rc = request_send(r, x->data, x->len, x->more != 0);
    /* Backpressure for a blocking handler: return once the client has read
     * enough, not as soon as the bytes are buffered. */
    if (x->wait && rc == 0 && x->more && !request_writable(r) && !request_disconnected(r)) {
        request_on_drain(r, send_drained, x);
        return XCALL_LATER;
    }
    return rc;
}

int api_send(evicorn_request *req, const void *data, size_t len, int more)
{
    struct xcall x = {.fn = do_send, .c = call_of(req), .data = data, .len = len, .more = more};
    return xcall_run(&x);
}

static int do_writable(struct xcall *x)
{
    if (x->c->ws)
        return host_ws_writable(x->c) ? 1 : 0;
    return request_writable(x->c->r) ? 1 : 0;
}

int api_writable(evicorn_request *req)
{
    struct xcall x = {.fn = do_writable, .c = call_of(req)};
    return xcall_run(&x);
}

int api_on_writable(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    if (!fn)
        return EVICORN_EINVAL;
    struct op *o = op_new(c, OP_WRITABLE, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->event_fn = fn;
    if (c->ws) {
        /* The session's writable event completes it (call_writable). */
        host_ws_want_writable(c);
        return 0;
    }
    request_on_drain(c->r, writable_again, o);
    return 0;
}

static int do_disconnected(struct xcall *x)
{
    return x->c->cancelled || request_disconnected(x->c->r) ? 1 : 0;
}

int api_disconnected(evicorn_request *req)
{
    struct xcall x = {.fn = do_disconnected, .c = call_of(req)};
    return xcall_run(&x);
}

static int do_on_disconnect(struct xcall *x)
{
    struct call *c = x->c;
    c->disconnect_fn = x->event_fn;
    c->disconnect_ud = x->ud;
    if (x->event_fn && c->cancelled)
        schedule_disconnect_callback(c);
    return 0;
}

int api_on_disconnect(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    struct xcall x = {.fn = do_on_disconnect, .c = call_of(req), .event_fn = fn, .ud = ud};
    return xcall_run(&x);
}

/* ---- the API: async operations (loop thread only) ---- */

int api_sleep(evicorn_request *req, double seconds, evicorn_event_fn fn, void *ud)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    if (!fn || !(seconds >= 0))
        return EVICORN_EINVAL;
    if (c->cancelled)
        return EVICORN_EPIPE;
    struct op *o = op_new(c, OP_SLEEP, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->event_fn = fn;
    /* From now, not from the loop's cached time (see host_watch.c). */
    ev_timer_init(&o->timer, on_sleep_timer, seconds + (ev_time() - ev_now(c->host->loop)), 0);
    o->timer.data = o;
    ev_timer_start(c->host->loop, &o->timer);
    return 0;
}

int api_offload(evicorn_request *req, evicorn_work_fn work, evicorn_event_fn done, void *ud)
{
    struct call *c = call_of(req);
    struct host *h = c->host;
    if (!host_on_loop(h))
        return EVICORN_EPERM;
    if (!work || !done)
        return EVICORN_EINVAL;
    struct op *o = op_new(c, OP_OFFLOAD, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->event_fn = done;
    o->work = work;
    o->job.work = offload_work;
    o->job.done = offload_done;
    h->pending_jobs++;
    if (pool_submit(h->pool, &o->job) < 0) {
        h->pending_jobs--;
        op_unlink(o);
        free(o);
        return EVICORN_EIO;
    }
    return 0;
}

/* ---- the API: holds and background tasks (any thread) ---- */

static int do_hold(struct xcall *x)
{
    x->c->holds++;
    return 0;
}

int api_hold(evicorn_request *req)
{
    struct xcall x = {.fn = do_hold, .c = call_of(req)};
    return xcall_run(&x);
}

static int do_release(struct xcall *x)
{
    struct call *c = x->c;
    if (c->holds > 0) {
        c->holds--;
        call_maybe_finish(c);
    }
    return 0;
}

void api_release(evicorn_request *req)
{
    struct xcall x = {.fn = do_release, .c = call_of(req)};
    xcall_run(&x);
}

static int do_background(struct xcall *x)
{
    if (!x->work)
        return EVICORN_EINVAL;
    struct background *b = calloc(1, sizeof *b);
    if (!b)
        return EVICORN_ENOMEM;
    b->fn = x->work;
    b->ud = x->ud;
    /* Keep the order they were added in. */
    struct background **pp = &x->c->bg;
    while (*pp)
        pp = &(*pp)->next;
    *pp = b;
    return 0;
}

int api_background(evicorn_request *req, evicorn_work_fn fn, void *ud)
{
    struct xcall x = {.fn = do_background, .c = call_of(req), .work = fn, .ud = ud};
    return xcall_run(&x);
}

/* ---- added in 1.1 ---- */

struct remote {
    struct mailbox_msg msg;
    struct call *c;
    evicorn_event_fn fn;
    void *ud;
};

static void remote_run(struct mailbox_msg *msg)
{
    struct remote *rm = container_of(msg, struct remote, msg);
    struct call *c = rm->c;
    evicorn_event_fn fn = rm->fn;
    void *ud = rm->ud;
    free(rm);
    call_event(c, fn, ud, c->cancelled ? EVICORN_ECANCELED : 0);
}

int api_call_on_loop(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    if (!fn)
        return EVICORN_EINVAL;
    struct remote *rm = malloc(sizeof *rm);
    if (!rm)
        return EVICORN_ENOMEM;
    rm->msg.fn = remote_run;
    rm->c = call_of(req);
    rm->fn = fn;
    rm->ud = ud;
    mailbox_post(rm->c->host->mailbox, &rm->msg);
    return 0;
}

/* ---- dispatch ---- */

static void run_sync_handler(void *arg)
{
    struct call *c = arg;
    c->re->handler(handle_of(c), c->re->data);
}

static void sync_work(struct pool_job *job)
{
    struct call *c = container_of(job, struct call, sync_job);
    plugin_run(c->host->site, &c->re->watch, PLUGIN_RUN_POOL, run_sync_handler, c);
}

static void sync_done(struct pool_job *job)
{
    struct call *c = container_of(job, struct call, sync_job);
    c->returned = true;
    if (c->ws)
        host_ws_handler_returned(c);
    call_maybe_finish(c);
}

/* A sync handler gets its whole body before it starts, as FastAPI's def
 * endpoints get their parsed body. */
static void sync_body_ready(struct request *r, void *ud, const char *data, size_t len, bool more,
                            int err)
{
    (void)r;
    (void)more;
    struct call *c = ud;
    if (err || buf_append(&c->body, data, len) < 0) {
        /* Client gone, or the body was refused (413 already sent). */
        c->returned = true;
        call_maybe_finish(c);
        return;
    }
    c->body_ready = true;
    c->sync_job.work = sync_work;
    c->sync_job.done = sync_done;
    if (pool_submit(c->host->pool, &c->sync_job) < 0) {
        log_error("%s: cannot run on the thread pool: %s", c->re->label, strerror(errno));
        request_respond_error(c->r, 503, NULL);
        c->returned = true;
        call_maybe_finish(c);
    }
}

static void run_async_handler(void *arg)
{
    struct call *c = arg;
    c->re->handler(handle_of(c), c->re->data);
    c->returned = true;
}

void host_dispatch(struct host *h, struct request *r, struct route_entry *re, struct route_table *t,
                   const struct router_match *m)
{
    struct call *c = calloc(1, sizeof *c + m->nparams * sizeof c->params[0]);
    if (!c) {
        request_respond_error(r, 503, NULL);
        request_finish(r, re->label);
        return;
    }
    c->host = h;
    c->r = r;
    c->re = re;
    c->gen = re->gen;
    c->table = t;
    c->nparams = m->nparams;
    memcpy(c->params, m->params, m->nparams * sizeof c->params[0]);
    generation_retain(c->gen);
    generation_request_started(c->gen);
    route_table_retain(t);
    request_on_disconnect(r, call_disconnected, c);

    if (re->kind == EVICORN_SYNC) {
        if (request_read_body(r, sync_body_ready, c) < 0) {
            c->returned = true;
            call_maybe_finish(c);
        }
        return;
    }
    call_run(c, run_async_handler, c);
}
