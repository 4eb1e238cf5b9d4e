/* host_api: the evicorn_api table and the per-request call behind every
 * evicorn_request; see host_api.h and abi/evicorn/abi.h for the contract.
 *
 * Threads: the loop thread owns every request. A sync handler runs on a
 * pool thread; the response calls it makes are carried to the loop as
 * cross-thread calls (struct xcall) and the pool thread waits for their
 * result, so error codes are exact and a slow client makes the handler
 * wait instead of making the worker buffer. Scope getters read data that
 * does not change after dispatch, so they need no hand-off. */
#include "host_api.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "httpc.h"
#include "log.h"
#include "mailbox.h"
#include "plugins.h"
#include "pool.h"
#include "request.h"
#include "scoreboard.h"
#include "watchdog.h"
#include "worker.h"

/* An async callback that holds the loop longer than this is logged, like
 * asyncio's slow-callback warning. */
#define SLOW_CALLBACK_SECONDS 0.1

enum op_kind { OP_SLEEP, OP_OFFLOAD, OP_FETCH, OP_BODY, OP_WRITABLE };

struct call;

struct op {
    struct op *prev, *next;
    struct call *c;
    enum op_kind kind;
    evicorn_event_fn event_fn;
    evicorn_body_fn body_fn;
    evicorn_fetch_fn fetch_fn;
    evicorn_work_fn work;
    void *ud;
    ev_timer timer;
    struct pool_job job;
    struct httpc_request *fetch;
    bool whole_body;
};

struct background {
    struct background *next;
    struct pool_job job;
    evicorn_work_fn fn;
    void *ud;
    struct generation *gen;
};

struct call {
    struct request *r;
    struct route_entry *re;
    struct generation *gen;
    struct route_table *table;
    struct router_match m;
    struct op *ops;
    int holds;
    bool returned; /* the handler has returned */
    bool finished;
    bool cancelled; /* the client disconnected */
    struct buf body;
    bool body_ready;
    struct background *bg;
    evicorn_event_fn disconnect_fn;
    void *disconnect_ud;
    struct pool_job sync_job;
};

static struct {
    struct worker *w;
    pthread_t loop_thread;
    long pending_jobs;
} H;

static const evicorn_api api_table;

static struct call *call_of(evicorn_request *req)
{
    return (struct call *)req;
}

static evicorn_request *handle_of(struct call *c)
{
    return (evicorn_request *)c;
}

static bool on_loop(void)
{
    return pthread_equal(pthread_self(), H.loop_thread);
}

static evicorn_str str_of(const char *p, size_t n)
{
    return (evicorn_str){p ? p : "", p ? n : 0};
}

double host_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void host_check_slow(const char *what, double started)
{
    double took = host_clock() - started;
    if (took > SLOW_CALLBACK_SECONDS)
        log_warning("%s held the event loop for %.0f ms; async handlers must not block (use a "
                    "sync route or offload)",
                    what, took * 1000);
}

long host_pending_jobs(void)
{
    return H.pending_jobs;
}

const evicorn_api *host_api(void)
{
    return &api_table;
}

int host_api_init(struct worker *w)
{
    H.w = w;
    H.loop_thread = pthread_self();
    /* Before plugins load: their loading and startup are watched too. */
    if (watchdog_start(w->cfg, w->index) < 0)
        log_warning("worker %d: no watchdog (%s): plugin code that blocks the event loop will "
                    "not be named",
                    w->index, strerror(errno));
    return 0;
}

void host_api_shutdown(void)
{
    watchdog_stop();
}

/* ---- finishing ---- */

static void run_background(struct pool_job *job)
{
    struct background *b = (struct background *)((char *)job - offsetof(struct background, job));
    b->fn(b->ud);
}

static void background_done(struct pool_job *job)
{
    struct background *b = (struct background *)((char *)job - offsetof(struct background, job));
    generation_release(b->gen);
    H.pending_jobs--;
    free(b);
}

static void call_maybe_finish(struct call *c)
{
    if (c->finished || !c->returned || c->ops || c->holds > 0)
        return;
    c->finished = true;
    request_on_disconnect(c->r, NULL, NULL);
    request_finish(c->r, c->re->label);
    /* Background tasks start once the response is out, each keeping the
     * plugin's code mapped until it returns. */
    while (c->bg) {
        struct background *b = c->bg;
        c->bg = b->next;
        b->gen = c->gen;
        generation_retain(b->gen);
        b->job.work = run_background;
        b->job.done = background_done;
        H.pending_jobs++;
        if (pool_submit(H.w->pool, &b->job) < 0) {
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

/* Around every plugin callback: the callback may release the request's
 * last hold, and the call must still exist when it returns. leave() then
 * finishes the call if that was the last thing keeping it open. */
/* The watchdog is told too (two atomic stores): it names a callback that
 * never returns. enter returns what the loop was running before, for
 * leave. */
static const struct watch_task *callback_enter(struct call *c)
{
    c->holds++;
    scoreboard_enter(H.w->index, c->re->label);
    return watchdog_enter(&c->re->watch);
}

static void callback_leave(struct call *c, double started, const struct watch_task *prev)
{
    watchdog_leave(prev);
    scoreboard_leave(H.w->index);
    host_check_slow(c->re->label, started);
    c->holds--;
    call_maybe_finish(c);
}

/* ---- async operations ---- */

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

/* Ends an operation: its continuation runs (timed), then the call may be
 * finished. */
static void op_complete(struct op *o, int status)
{
    struct call *c = o->c;
    op_unlink(o);
    double t0 = host_clock();
    const struct watch_task *prev = callback_enter(c);
    if (o->event_fn)
        o->event_fn(handle_of(c), o->ud, status);
    free(o);
    callback_leave(c, t0, prev);
}

static void on_sleep_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    op_complete(t->data, 0);
}

static void offload_work(struct pool_job *job)
{
    struct op *o = (struct op *)((char *)job - offsetof(struct op, job));
    o->work(o->ud);
}

static void offload_done(struct pool_job *job)
{
    struct op *o = (struct op *)((char *)job - offsetof(struct op, job));
    H.pending_jobs--;
    op_complete(o, o->c->cancelled ? EVICORN_ECANCELED : 0);
}

static void fetch_done(void *ud, const struct httpc_response *res)
{
    struct op *o = ud;
    struct call *c = o->c;
    evicorn_fetch_result out = {.size = sizeof out};
    evicorn_header *hdrs = NULL;
    if (res->error) {
        switch (res->error) {
        case -ECONNREFUSED:
            out.error = EVICORN_ECONNREFUSED;
            break;
        case -ETIMEDOUT:
            out.error = EVICORN_ETIMEDOUT;
            break;
        case -ECANCELED:
            out.error = EVICORN_ECANCELED;
            break;
        case -EMSGSIZE:
            out.error = EVICORN_EMSGSIZE;
            break;
        case -EINVAL:
        case -EPROTONOSUPPORT:
            out.error = EVICORN_EINVAL;
            break;
        default:
            out.error = EVICORN_EIO;
            break;
        }
        out.error_message = res->error_msg ? res->error_msg : "request failed";
    } else {
        out.status_code = res->status;
        out.body = res->body;
        out.body_len = res->body_len;
        const struct h1_head *h = res->head;
        if (h && h->nheaders) {
            hdrs = calloc(h->nheaders, sizeof *hdrs);
            if (hdrs) {
                for (uint32_t i = 0; i < h->nheaders; i++)
                    hdrs[i] = (evicorn_header){h1_header_name(h, i), h->headers[i].name_len,
                                               h1_header_value(h, i), h->headers[i].value_len};
                out.headers = hdrs;
                out.nheaders = h->nheaders;
            }
        }
    }
    o->fetch = NULL;
    op_unlink(o);
    double t0 = host_clock();
    const struct watch_task *prev = callback_enter(c);
    o->fetch_fn(handle_of(c), o->ud, &out);
    free(hdrs);
    free(o);
    callback_leave(c, t0, prev);
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
    double t0 = host_clock();
    const struct watch_task *prev = callback_enter(c);
    o->body_fn(handle_of(c), o->ud, status ? NULL : data, status ? 0 : len, more && !status,
               status);
    free(o);
    callback_leave(c, t0, prev);
}

static void writable_again(struct request *r, void *ud)
{
    (void)r;
    struct op *o = ud;
    op_complete(o, o->c->cancelled || request_disconnected(o->c->r) ? EVICORN_ECANCELED : 0);
}

/* The client left: every pending operation ends now with ECANCELED
 * (offloaded work cannot be interrupted: it reports ECANCELED when done). */
static void call_disconnected(struct request *r, void *ud)
{
    (void)r;
    struct call *c = ud;
    c->cancelled = true;
    c->holds++; /* the call must outlive this loop even if every op ends */
    struct op *o = c->ops;
    while (o) {
        struct op *next = o->next;
        if (o->kind == OP_SLEEP) {
            ev_timer_stop(H.w->loop, &o->timer);
            op_complete(o, EVICORN_ECANCELED);
        } else if (o->kind == OP_FETCH && o->fetch) {
            httpc_cancel(o->fetch); /* runs fetch_done with ECANCELED */
        }
        o = next;
    }
    if (c->disconnect_fn) {
        evicorn_event_fn fn = c->disconnect_fn;
        c->disconnect_fn = NULL;
        const struct watch_task *prev = watchdog_enter(&c->re->watch);
        fn(handle_of(c), c->disconnect_ud, 0);
        watchdog_leave(prev);
    }
    c->holds--;
    call_maybe_finish(c);
}

/* ---- cross-thread calls from sync handlers ---- */

enum xcall_op {
    X_RESPOND,
    X_START,
    X_SEND,
    X_DISCONNECTED,
    X_ON_DISCONNECT,
    X_HOLD,
    X_RELEASE,
    X_BACKGROUND,
    X_WRITABLE
};

struct xcall {
    struct mailbox_msg msg;
    enum xcall_op op;
    struct call *c;
    int status;
    const evicorn_header *headers;
    size_t n;
    const void *data;
    size_t len;
    int64_t content_length;
    int more;
    evicorn_event_fn event_fn;
    evicorn_work_fn work;
    void *ud;
    int result;
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static int api_respond(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                       const void *body, size_t len);
static int api_start(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                     int64_t content_length);
static int api_send(evicorn_request *req, const void *data, size_t len, int more);
static int api_disconnected(evicorn_request *req);
static int api_on_disconnect(evicorn_request *req, evicorn_event_fn fn, void *ud);
static int api_hold(evicorn_request *req);
static void api_release(evicorn_request *req);
static int api_background(evicorn_request *req, evicorn_work_fn fn, void *ud);
static int api_writable(evicorn_request *req);

static void xcall_signal(struct xcall *x)
{
    pthread_mutex_lock(&x->mu);
    x->done = true;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

static void xcall_drained(struct request *r, void *ud)
{
    (void)r;
    xcall_signal(ud);
}

static void xcall_run(struct mailbox_msg *msg)
{
    struct xcall *x = (struct xcall *)msg;
    evicorn_request *req = handle_of(x->c);
    switch (x->op) {
    case X_RESPOND:
        x->result = api_respond(req, x->status, x->headers, x->n, x->data, x->len);
        break;
    case X_START:
        x->result = api_start(req, x->status, x->headers, x->n, x->content_length);
        break;
    case X_SEND:
        x->result = api_send(req, x->data, x->len, x->more);
        /* Backpressure for a blocking handler: return once the client has
         * read enough, not as soon as the bytes are buffered. */
        if (x->result == 0 && x->more && !request_writable(x->c->r) &&
            !request_disconnected(x->c->r)) {
            request_on_drain(x->c->r, xcall_drained, x);
            return;
        }
        break;
    case X_DISCONNECTED:
        x->result = api_disconnected(req);
        break;
    case X_ON_DISCONNECT:
        x->result = api_on_disconnect(req, x->event_fn, x->ud);
        break;
    case X_HOLD:
        x->result = api_hold(req);
        break;
    case X_RELEASE:
        api_release(req);
        break;
    case X_BACKGROUND:
        x->result = api_background(req, x->work, x->ud);
        break;
    case X_WRITABLE:
        x->result = api_writable(req);
        break;
    }
    xcall_signal(x);
}

/* Runs x on the loop thread and waits for its result. */
static int xcall(struct xcall *x)
{
    x->done = false;
    if (pthread_mutex_init(&x->mu, NULL) != 0 || pthread_cond_init(&x->cv, NULL) != 0)
        return EVICORN_ENOMEM;
    x->msg.fn = xcall_run;
    mailbox_post(H.w->mailbox, &x->msg);
    pthread_mutex_lock(&x->mu);
    while (!x->done)
        pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    return x->result;
}

/* ---- the API: logging and scope ---- */

/* The plugin file whose code is at addr, e.g. "asgi.so", into buf; NULL
 * when addr is not in a plugin. Plugins are mapped from private copies
 * named "p<pid>-u<n>-g<n>-<file>" (plugins.c), so the name needs no lookup
 * in the loop thread's registry and works from any thread. */
static const char *plugin_file_at(const void *addr, char *buf, size_t len)
{
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fname)
        return NULL;
    const char *base = strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    if (base[0] != 'p')
        return NULL;
    for (int dashes = 0; dashes < 3; dashes++) {
        base = strchr(base, '-');
        if (!base)
            return NULL;
        base++;
    }
    snprintf(buf, len, "%s", base);
    return buf;
}

static void api_log(evicorn_request *req, int level, const char *message)
{
    if (level < LOG_CRITICAL)
        level = LOG_CRITICAL;
    if (level > LOG_TRACE)
        level = LOG_TRACE;
    if (!log_enabled((enum log_level)level))
        return;
    char file[256];
    const char *who = req ? generation_name(call_of(req)->gen)
                          : plugin_file_at(__builtin_return_address(0), file, sizeof file);
    log_msg((enum log_level)level, "%s: %s", who ? who : "plugin", message ? message : "");
}

static evicorn_str api_method(evicorn_request *req)
{
    size_t n;
    const char *p = request_method(call_of(req)->r, &n);
    return str_of(p, n);
}

static evicorn_str api_path(evicorn_request *req)
{
    size_t n;
    const char *p = request_path(call_of(req)->r, &n);
    return str_of(p, n);
}

static evicorn_str api_raw_path(evicorn_request *req)
{
    size_t n;
    const char *p = request_raw_path(call_of(req)->r, &n);
    return str_of(p, n);
}

static evicorn_str api_query_string(evicorn_request *req)
{
    size_t n;
    const char *p = request_query(call_of(req)->r, &n);
    return str_of(p, n);
}

static evicorn_str api_root_path(evicorn_request *req)
{
    (void)req;
    const char *p = H.w->cfg->root_path;
    return str_of(p, strlen(p));
}

static evicorn_str api_scheme(evicorn_request *req)
{
    const char *s = request_scheme(call_of(req)->r);
    return str_of(s, strlen(s));
}

static evicorn_str api_http_version(evicorn_request *req)
{
    int major, minor;
    request_http_version(call_of(req)->r, &major, &minor);
    return minor ? str_of("1.1", 3) : str_of("1.0", 3);
}

/* "ip:port" (IPv6 addresses have colons: the port follows the last). */
static void split_addr(const char *addr, evicorn_str *host, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || strcmp(addr, "unix") == 0) {
        *host = str_of("", 0);
        *port = 0;
        return;
    }
    *host = str_of(addr, (size_t)(colon - addr));
    *port = atoi(colon + 1);
}

static evicorn_str api_client_host(evicorn_request *req)
{
    evicorn_str h;
    int port;
    split_addr(request_client(call_of(req)->r), &h, &port);
    return h;
}

static int api_client_port(evicorn_request *req)
{
    evicorn_str h;
    int port;
    split_addr(request_client(call_of(req)->r), &h, &port);
    return port;
}

static evicorn_str api_server_host(evicorn_request *req)
{
    (void)req;
    evicorn_str h;
    int port;
    split_addr(H.w->listeners[0].addr, &h, &port);
    return h;
}

static int api_server_port(evicorn_request *req)
{
    (void)req;
    evicorn_str h;
    int port;
    split_addr(H.w->listeners[0].addr, &h, &port);
    return port;
}

static size_t api_header_count(evicorn_request *req)
{
    return request_header_count(call_of(req)->r);
}

static int api_header_at(evicorn_request *req, size_t i, evicorn_header *out)
{
    struct request *r = call_of(req)->r;
    if (!out || i >= request_header_count(r))
        return EVICORN_ENOENT;
    request_header_at(r, i, &out->name, &out->name_len, &out->value, &out->value_len);
    return 0;
}

static int api_header(evicorn_request *req, const char *name, evicorn_str *value)
{
    size_t n;
    const char *v = name ? request_header(call_of(req)->r, name, &n) : NULL;
    if (!v)
        return EVICORN_ENOENT;
    if (value)
        *value = str_of(v, n);
    return 0;
}

static size_t api_param_count(evicorn_request *req)
{
    return call_of(req)->m.nparams;
}

static int api_param_at(evicorn_request *req, size_t i, evicorn_str *name, evicorn_str *value)
{
    const struct router_match *m = &call_of(req)->m;
    if (i >= m->nparams)
        return EVICORN_ENOENT;
    if (name)
        *name = str_of(m->params[i].name, m->params[i].name_len);
    if (value)
        *value = str_of(m->params[i].value, m->params[i].value_len);
    return 0;
}

static int api_param(evicorn_request *req, const char *name, evicorn_str *value)
{
    const struct router_match *m = &call_of(req)->m;
    size_t n = name ? strlen(name) : 0;
    for (size_t i = 0; i < m->nparams; i++)
        if (m->params[i].name_len == n && memcmp(m->params[i].name, name, n) == 0) {
            if (value)
                *value = str_of(m->params[i].value, m->params[i].value_len);
            return 0;
        }
    return EVICORN_ENOENT;
}

static evicorn_str api_route(evicorn_request *req)
{
    const char *p = call_of(req)->re->path;
    return str_of(p, strlen(p));
}

static void *api_state(evicorn_request *req)
{
    return generation_state(call_of(req)->gen);
}

/* ---- body ---- */

static int start_body_op(evicorn_request *req, evicorn_body_fn fn, void *ud, bool whole)
{
    struct call *c = call_of(req);
    if (!on_loop())
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

static int api_receive(evicorn_request *req, evicorn_body_fn fn, void *ud)
{
    return start_body_op(req, fn, ud, false);
}

static int api_read_body(evicorn_request *req, evicorn_body_fn fn, void *ud)
{
    return start_body_op(req, fn, ud, true);
}

static evicorn_str api_body(evicorn_request *req)
{
    struct call *c = call_of(req);
    if (!c->body_ready)
        return str_of("", 0);
    return str_of(buf_start(&c->body), buf_size(&c->body));
}

/* ---- response ---- */

static int api_respond(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                       const void *body, size_t len)
{
    if (!on_loop()) {
        struct xcall x = {.op = X_RESPOND,
                          .c = call_of(req),
                          .status = status,
                          .headers = headers,
                          .n = n,
                          .data = body,
                          .len = len};
        return xcall(&x);
    }
    if ((n && !headers) || (len && !body))
        return EVICORN_EINVAL;
    /* request.c returns negative errno values, as the ABI does. */
    return (request_respond(call_of(req)->r, status, (const struct resp_header *)headers, n, body,
                            len));
}

static int api_start(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                     int64_t content_length)
{
    if (!on_loop()) {
        struct xcall x = {.op = X_START,
                          .c = call_of(req),
                          .status = status,
                          .headers = headers,
                          .n = n,
                          .content_length = content_length};
        return xcall(&x);
    }
    if (n && !headers)
        return EVICORN_EINVAL;
    return (request_start(call_of(req)->r, status, (const struct resp_header *)headers, n,
                          content_length));
}

static int api_send(evicorn_request *req, const void *data, size_t len, int more)
{
    if (!on_loop()) {
        struct xcall x = {.op = X_SEND, .c = call_of(req), .data = data, .len = len, .more = more};
        return xcall(&x);
    }
    if (len && !data)
        return EVICORN_EINVAL;
    return (request_send(call_of(req)->r, data, len, more != 0));
}

static int api_writable(evicorn_request *req)
{
    if (!on_loop()) {
        struct xcall x = {.op = X_WRITABLE, .c = call_of(req)};
        return xcall(&x);
    }
    return request_writable(call_of(req)->r) ? 1 : 0;
}

static int api_on_writable(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    struct call *c = call_of(req);
    if (!on_loop())
        return EVICORN_EPERM;
    if (!fn)
        return EVICORN_EINVAL;
    struct op *o = op_new(c, OP_WRITABLE, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->event_fn = fn;
    request_on_drain(c->r, writable_again, o);
    return 0;
}

static int api_disconnected(evicorn_request *req)
{
    if (!on_loop()) {
        struct xcall x = {.op = X_DISCONNECTED, .c = call_of(req)};
        return xcall(&x);
    }
    return request_disconnected(call_of(req)->r) ? 1 : 0;
}

static int api_on_disconnect(evicorn_request *req, evicorn_event_fn fn, void *ud)
{
    struct call *c = call_of(req);
    if (!on_loop()) {
        struct xcall x = {.op = X_ON_DISCONNECT, .c = c, .event_fn = fn, .ud = ud};
        return xcall(&x);
    }
    c->disconnect_fn = fn;
    c->disconnect_ud = ud;
    if (fn && c->cancelled) {
        c->disconnect_fn = NULL;
        fn(req, ud, 0);
    }
    return 0;
}

/* ---- async operations ---- */

static int api_sleep(evicorn_request *req, double seconds, evicorn_event_fn fn, void *ud)
{
    struct call *c = call_of(req);
    if (!on_loop())
        return EVICORN_EPERM;
    if (!fn || !(seconds >= 0))
        return EVICORN_EINVAL;
    if (c->cancelled)
        return EVICORN_EPIPE;
    struct op *o = op_new(c, OP_SLEEP, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->event_fn = fn;
    ev_timer_init(&o->timer, on_sleep_timer, seconds, 0);
    o->timer.data = o;
    ev_timer_start(H.w->loop, &o->timer);
    return 0;
}

static int api_offload(evicorn_request *req, evicorn_work_fn work, evicorn_event_fn done, void *ud)
{
    struct call *c = call_of(req);
    if (!on_loop())
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
    H.pending_jobs++;
    if (pool_submit(H.w->pool, &o->job) < 0) {
        H.pending_jobs--;
        op_unlink(o);
        free(o);
        return EVICORN_EIO;
    }
    return 0;
}

static int api_fetch(evicorn_request *req, const evicorn_fetch_options *opts, evicorn_fetch_fn fn,
                     void *ud)
{
    struct call *c = call_of(req);
    if (!on_loop())
        return EVICORN_EPERM;
    if (!opts || !fn || opts->size < offsetof(evicorn_fetch_options, connect_timeout))
        return EVICORN_EINVAL;
    evicorn_fetch_options o2 = {0};
    memcpy(&o2, opts, opts->size < sizeof o2 ? opts->size : sizeof o2);
    if (!o2.url)
        return EVICORN_EINVAL;
    if (c->cancelled)
        return EVICORN_EPIPE;
    struct op *o = op_new(c, OP_FETCH, ud);
    if (!o)
        return EVICORN_ENOMEM;
    o->fetch_fn = fn;
    struct httpc_options ho = {
        .method = o2.method,
        .url = o2.url,
        .headers = (const struct resp_header *)o2.headers,
        .nheaders = o2.nheaders,
        .body = o2.body,
        .body_len = o2.body_len,
        .connect_timeout = o2.connect_timeout,
        .timeout = o2.timeout,
        .max_response = o2.max_response,
    };
    o->fetch = httpc_start(H.w->loop, H.w->pool, &ho, fetch_done, o);
    if (!o->fetch) {
        op_unlink(o);
        free(o);
        return EVICORN_ENOMEM;
    }
    return 0;
}

static int api_hold(evicorn_request *req)
{
    struct call *c = call_of(req);
    if (!on_loop()) {
        struct xcall x = {.op = X_HOLD, .c = c};
        return xcall(&x);
    }
    c->holds++;
    return 0;
}

static void api_release(evicorn_request *req)
{
    struct call *c = call_of(req);
    if (!on_loop()) {
        struct xcall x = {.op = X_RELEASE, .c = c};
        xcall(&x);
        return;
    }
    if (c->holds > 0) {
        c->holds--;
        call_maybe_finish(c);
    }
}

static int api_background(evicorn_request *req, evicorn_work_fn fn, void *ud)
{
    struct call *c = call_of(req);
    if (!on_loop()) {
        struct xcall x = {.op = X_BACKGROUND, .c = c, .work = fn, .ud = ud};
        return xcall(&x);
    }
    if (!fn)
        return EVICORN_EINVAL;
    struct background *b = calloc(1, sizeof *b);
    if (!b)
        return EVICORN_ENOMEM;
    b->fn = fn;
    b->ud = ud;
    /* Keep the order they were added in. */
    struct background **pp = &c->bg;
    while (*pp)
        pp = &(*pp)->next;
    *pp = b;
    return 0;
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
    struct remote *rm = (struct remote *)msg;
    struct call *c = rm->c;
    double t0 = host_clock();
    const struct watch_task *prev = callback_enter(c);
    rm->fn(handle_of(c), rm->ud, c->cancelled ? EVICORN_ECANCELED : 0);
    free(rm);
    callback_leave(c, t0, prev);
}

static int api_call_on_loop(evicorn_request *req, evicorn_event_fn fn, void *ud)
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
    mailbox_post(H.w->mailbox, &rm->msg);
    return 0;
}

static const char *api_config(const char *name)
{
    const struct config *cfg = H.w->cfg;
    static char workers[16], worker[16], threads[16];
    static const char *const levels[] = {"critical", "error", "warning", "info", "debug", "trace"};
    if (!name)
        return NULL;
    if (strcmp(name, "app") == 0)
        return cfg->app;
    if (strcmp(name, "app_dir") == 0)
        return cfg->app_dir;
    if (strcmp(name, "factory") == 0)
        return cfg->factory ? "1" : "0";
    if (strcmp(name, "lifespan") == 0)
        return cfg->lifespan == LIFESPAN_ON ? "on" : cfg->lifespan == LIFESPAN_OFF ? "off" : "auto";
    if (strcmp(name, "root_path") == 0)
        return cfg->root_path;
    if (strcmp(name, "log_level") == 0)
        return levels[cfg->log_level];
    if (strcmp(name, "workers") == 0) {
        snprintf(workers, sizeof workers, "%d", cfg->workers);
        return workers;
    }
    if (strcmp(name, "worker") == 0) {
        snprintf(worker, sizeof worker, "%d", H.w->index);
        return worker;
    }
    if (strcmp(name, "threads") == 0) {
        snprintf(threads, sizeof threads, "%d", cfg->threads);
        return threads;
    }
    return NULL;
}

static const evicorn_api api_table = {
    .size = sizeof(evicorn_api),
    .log = api_log,
    .method = api_method,
    .path = api_path,
    .raw_path = api_raw_path,
    .query_string = api_query_string,
    .root_path = api_root_path,
    .scheme = api_scheme,
    .http_version = api_http_version,
    .client_host = api_client_host,
    .client_port = api_client_port,
    .server_host = api_server_host,
    .server_port = api_server_port,
    .header_count = api_header_count,
    .header_at = api_header_at,
    .header = api_header,
    .param_count = api_param_count,
    .param_at = api_param_at,
    .param = api_param,
    .route = api_route,
    .state = api_state,
    .receive = api_receive,
    .read_body = api_read_body,
    .body = api_body,
    .respond = api_respond,
    .start = api_start,
    .send = api_send,
    .writable = api_writable,
    .on_writable = api_on_writable,
    .disconnected = api_disconnected,
    .on_disconnect = api_on_disconnect,
    .sleep = api_sleep,
    .offload = api_offload,
    .fetch = api_fetch,
    .hold = api_hold,
    .release = api_release,
    .background = api_background,
    .call_on_loop = api_call_on_loop,
    .config = api_config,
};

/* ---- dispatch ---- */

static void sync_work(struct pool_job *job)
{
    struct call *c = (struct call *)((char *)job - offsetof(struct call, sync_job));
    scoreboard_enter(H.w->index, c->re->label);
    c->re->handler(handle_of(c), c->re->data);
    scoreboard_leave(H.w->index);
}

static void sync_done(struct pool_job *job)
{
    struct call *c = (struct call *)((char *)job - offsetof(struct call, sync_job));
    c->returned = true;
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
    if (pool_submit(H.w->pool, &c->sync_job) < 0) {
        log_error("%s: cannot run on the thread pool: %s", c->re->label, strerror(errno));
        request_respond_error(c->r, 503, NULL);
        c->returned = true;
        call_maybe_finish(c);
    }
}

void host_dispatch(struct request *r, struct route_entry *re, struct route_table *t,
                   const struct router_match *m)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c) {
        request_respond_error(r, 503, NULL);
        request_finish(r, re->label);
        return;
    }
    c->r = r;
    c->re = re;
    c->gen = re->gen;
    c->table = t;
    c->m = *m;
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
    double t0 = host_clock();
    scoreboard_enter(H.w->index, re->label);
    const struct watch_task *prev = watchdog_enter(&re->watch);
    re->handler(handle_of(c), re->data);
    watchdog_leave(prev);
    scoreboard_leave(H.w->index);
    host_check_slow(re->label, t0);
    c->returned = true;
    call_maybe_finish(c);
}
