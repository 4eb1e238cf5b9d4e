/* host_ws: the plugin's side of a WebSocket connection (ABI 1.2); see
 * abi.h for the contract.
 *
 * A session is created when a handler accepts a handshake and lives until
 * its close event has run: it holds its call open (so the scope, the
 * plugin's generation and the route stay), carries messages from the
 * connection (ws_proto.c) to the plugin, on the loop for async routes and
 * one at a time on the pool for sync ones, and carries the plugin's sends
 * and close back. The connection may end first: the session then lives on
 * without it until the plugin has heard everything.
 *
 * Sessions on a replaced or removed plugin are closed with 1012 once
 * --timeout-websocket-drain has passed since the replacement. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "container.h"
#include "host_internal.h"
#include "log.h"
#include "plugin_run.h"
#include "plugins.h"
#include "request.h"
#include "utf8.h"
#include "ws_frame.h"
#include "ws_handshake.h"
#include "ws_proto.h"

/* How often sessions on retired plugins are checked against the drain
 * deadline. */
#define DRAIN_CHECK_SECONDS 1.0

struct ws_msg {
    struct ws_msg *next;
    bool binary;
    size_t len;
    char data[];
};

struct ws_session {
    struct ws_session *prev, *next; /* host->ws_sessions */
    struct call *c;
    struct ws_conn *wc; /* NULL once the connection ended */
    uint64_t id;
    evicorn_ws_message_fn on_message;
    evicorn_ws_close_fn on_close;
    void *ud;
    bool sync;
    bool paused;       /* by the plugin (async routes) */
    bool input_paused; /* reading paused: too many messages wait */
    bool delivering;   /* a message or the close is being handed to the plugin */
    bool ended;        /* the connection ended */
    bool close_sent;   /* by the plugin or the drain */
    struct ws_msg *qhead, *qtail;
    size_t qlen;
    struct ws_msg *current; /* sync: what the pool job delivers (NULL: the close) */
    uint16_t code;
    char *reason; /* allocated at the end, when there is one */
    size_t reason_len;
    struct pool_job job;
    struct xcall *send_waiters; /* sync sends waiting for room, through msg.next */
};

static void pump(struct ws_session *s);

/* ---- the host's list and the drain deadline ---- */

static void drain_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct host *h = t->data;
    double drain = h->cfg->timeout_websocket_drain;
    ev_tstamp now = ev_now(h->loop);
    for (struct ws_session *s = h->ws_sessions; s; s = s->next) {
        double since;
        if (!s->wc || s->close_sent || !generation_retired(s->c->gen, &since) ||
            now - since < drain)
            continue;
        if (ws_conn_close(s->wc, WS_CLOSE_SERVICE_RESTART, "", 0) == 0) {
            s->close_sent = true;
            log_info("%s: WebSocket %llu closed with 1012 after the plugin was replaced %.0f s ago",
                     s->c->re->label, (unsigned long long)s->id, now - since);
        }
    }
}

static void session_link(struct host *h, struct ws_session *s)
{
    s->next = h->ws_sessions;
    if (h->ws_sessions)
        h->ws_sessions->prev = s;
    h->ws_sessions = s;
    if (!ev_is_active(&h->ws_drain_timer)) {
        ev_timer_init(&h->ws_drain_timer, drain_check, DRAIN_CHECK_SECONDS, DRAIN_CHECK_SECONDS);
        h->ws_drain_timer.data = h;
        ev_timer_start(h->loop, &h->ws_drain_timer);
        ev_unref(h->loop); /* sessions keep the loop alive through their connections */
    }
}

static void session_unlink(struct host *h, struct ws_session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->ws_sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (!h->ws_sessions && ev_is_active(&h->ws_drain_timer)) {
        ev_ref(h->loop);
        ev_timer_stop(h->loop, &h->ws_drain_timer);
    }
}

/* ---- the session's end ---- */

static void finish_send_waiters(struct ws_session *s, int result)
{
    while (s->send_waiters) {
        struct xcall *x = s->send_waiters;
        s->send_waiters = (struct xcall *)x->msg.next;
        xcall_finish(x, result);
    }
}

/* The close event has run: the session lets its call go. */
static void session_free(struct ws_session *s)
{
    struct call *c = s->c;
    session_unlink(c->host, s);
    while (s->qhead) {
        struct ws_msg *m = s->qhead;
        s->qhead = m->next;
        free(m);
    }
    free(s->current);
    free(s->reason);
    c->ws = NULL;
    free(s);
    c->holds--; /* taken at accept */
    call_maybe_finish(c);
}

/* ---- delivering events ---- */

struct message_run {
    struct ws_session *s;
    bool binary;
    const char *p;
    size_t n;
};

static void run_message(void *arg)
{
    struct message_run *m = arg;
    struct ws_session *s = m->s;
    if (s->on_message)
        s->on_message(handle_of(s->c), s->ud, m->binary, m->p, m->n);
}

static void run_close(void *arg)
{
    struct ws_session *s = arg;
    if (s->on_close)
        s->on_close(handle_of(s->c), s->ud, s->code, s->reason ? s->reason : "", s->reason_len);
}

static void sync_work(struct pool_job *job)
{
    struct ws_session *s = container_of(job, struct ws_session, job);
    struct call *c = s->c;
    if (s->current) {
        struct message_run m = {s, s->current->binary, s->current->data, s->current->len};
        plugin_run(c->host->site, &c->re->watch, PLUGIN_RUN_POOL, run_message, &m);
    } else {
        plugin_run(c->host->site, &c->re->watch, PLUGIN_RUN_POOL, run_close, s);
    }
}

static void sync_done(struct pool_job *job)
{
    struct ws_session *s = container_of(job, struct ws_session, job);
    s->delivering = false;
    if (!s->current) {
        session_free(s); /* that was the close event */
        return;
    }
    free(s->current);
    s->current = NULL;
    pump(s);
}

static void submit(struct ws_session *s)
{
    struct call *c = s->c;
    s->delivering = true;
    s->job.work = sync_work;
    s->job.done = sync_done;
    if (pool_submit(c->host->pool, &s->job) < 0) {
        /* Run it here rather than lose it: the pool only fails when it
         * cannot start a thread at all. */
        log_error("%s: cannot run on the thread pool: %s", c->re->label, strerror(errno));
        sync_work(&s->job);
        sync_done(&s->job);
    }
}

/* Hands the plugin what waits, as far as it may take it now: messages in
 * order, then (once the connection ended) the close event. */
static void pump(struct ws_session *s)
{
    struct call *c = s->c;
    /* A sync handler's events wait for the handler itself to return. */
    if (s->delivering || (s->sync && !c->returned))
        return;
    while (s->qhead && (s->ended || !s->paused)) {
        struct ws_msg *m = s->qhead;
        s->qhead = m->next;
        if (!s->qhead)
            s->qtail = NULL;
        s->qlen--;
        if (s->sync) {
            s->current = m;
            submit(s);
            return;
        }
        struct message_run run = {s, m->binary, m->data, m->len};
        s->delivering = true;
        call_run(c, run_message, &run);
        s->delivering = false;
        free(m);
    }
    if (s->input_paused && s->wc && s->qlen < (size_t)c->host->cfg->ws_max_queue) {
        s->input_paused = false;
        if (!s->paused)
            ws_conn_pause(s->wc, false);
    }
    if (!s->ended || s->qhead)
        return;
    if (s->sync) {
        s->current = NULL;
        submit(s);
        return;
    }
    s->delivering = true;
    call_run(c, run_close, s);
    session_free(s);
}

/* ---- the connection's events ---- */

static void on_ws_message(void *ud, bool binary, const char *p, size_t n)
{
    struct ws_session *s = ud;
    struct call *c = s->c;
    if (!s->sync && !s->paused && !s->qhead && !s->delivering) {
        struct message_run run = {s, binary, p, n};
        s->delivering = true;
        call_run(c, run_message, &run);
        s->delivering = false;
        return;
    }
    struct ws_msg *m = malloc(sizeof *m + n);
    if (!m) {
        log_error("%s: out of memory for a WebSocket message; closing", c->re->label);
        if (s->wc && ws_conn_close(s->wc, WS_CLOSE_INTERNAL_ERROR, "", 0) == 0)
            s->close_sent = true;
        return;
    }
    m->next = NULL;
    m->binary = binary;
    m->len = n;
    memcpy(m->data, p, n);
    if (s->qtail)
        s->qtail->next = m;
    else
        s->qhead = m;
    s->qtail = m;
    s->qlen++;
    if (!s->input_paused && s->qlen >= (size_t)c->host->cfg->ws_max_queue) {
        s->input_paused = true;
        ws_conn_pause(s->wc, true);
    }
    pump(s);
}

static void on_ws_writable(void *ud)
{
    struct ws_session *s = ud;
    finish_send_waiters(s, 0);
    call_writable(s->c, 0);
}

static void on_ws_closed(void *ud, uint16_t code, const char *reason, size_t n)
{
    struct ws_session *s = ud;
    struct call *c = s->c;
    s->wc = NULL;
    s->ended = true;
    s->code = code;
    if (n > 0 && (s->reason = malloc(n))) {
        memcpy(s->reason, reason, n);
        s->reason_len = n;
    }
    finish_send_waiters(s, EVICORN_EPIPE);
    /* Continuations waiting on the connection (writable, sleeps, fetches)
     * end as for an HTTP client that left, before the last events. */
    c->holds++;
    call_cancel(c);
    call_writable(c, EVICORN_ECANCELED);
    c->holds--;
    pump(s);
}

static const struct ws_events session_events = {on_ws_message, on_ws_writable, on_ws_closed};

/* ---- the API ---- */

/* The i-th item of a comma-separated list spread over every header line
 * with this name. */
static int list_item(struct request *r, const char *name, size_t i, evicorn_str *out)
{
    size_t count = request_header_count(r), k = 0;
    for (size_t h = 0; h < count; h++) {
        const char *hn, *v;
        size_t hn_len, v_len;
        request_header_at(r, h, &hn, &hn_len, &v, &v_len);
        if (hn_len != strlen(name) || memcmp(hn, name, hn_len) != 0)
            continue;
        const char *p = v, *end = v + v_len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end;
            const char *a = p, *b = e;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (b > a && k++ == i) {
                if (out)
                    *out = (evicorn_str){a, (size_t)(b - a)};
                return 0;
            }
            p = comma ? comma + 1 : end;
        }
    }
    return EVICORN_ENOENT;
}

int api_ws_subprotocol_at(evicorn_request *req, size_t i, evicorn_str *out)
{
    return list_item(call_of(req)->r, "sec-websocket-protocol", i, out);
}

int api_ws_extension_at(evicorn_request *req, size_t i, evicorn_str *out)
{
    return list_item(call_of(req)->r, "sec-websocket-extensions", i, out);
}

uint64_t api_ws_id(evicorn_request *req)
{
    struct ws_session *s = call_of(req)->ws;
    return s ? s->id : 0;
}

/* Headers the handshake's answer owns. */
static bool host_owned(const evicorn_header *h)
{
    return (h->name_len == 7 && strncasecmp(h->name, "upgrade", 7) == 0) ||
           (h->name_len == 10 && strncasecmp(h->name, "connection", 10) == 0) ||
           (h->name_len > 14 && strncasecmp(h->name, "sec-websocket-", 14) == 0);
}

/* Every Sec-WebSocket-Extensions line, joined with ", " (a list header). */
static int extension_offers(struct request *r, struct buf *out)
{
    size_t count = request_header_count(r);
    for (size_t h = 0; h < count; h++) {
        const char *hn, *v;
        size_t hn_len, v_len;
        request_header_at(r, h, &hn, &hn_len, &v, &v_len);
        if (hn_len != 24 || memcmp(hn, "sec-websocket-extensions", 24) != 0)
            continue;
        if ((buf_size(out) && buf_append(out, ", ", 2) < 0) || buf_append(out, v, v_len) < 0)
            return -1;
    }
    return 0;
}

static int do_ws_accept(struct xcall *x)
{
    struct call *c = x->c;
    struct host *h = c->host;
    struct request *r = c->r;
    const evicorn_ws_accept_options *o = x->data;
    if (!r->ws_handshake || !h->ws)
        return EVICORN_EPERM;
    if (c->ws || r->resp != RESP_NONE)
        return EVICORN_EALREADY;
    if (!o || (o->nheaders && !o->headers))
        return EVICORN_EINVAL;
    evicorn_str offered;
    size_t sp_len = o->subprotocol ? strlen(o->subprotocol) : 0;
    if (o->subprotocol) {
        size_t i = 0;
        for (;; i++) {
            if (api_ws_subprotocol_at(handle_of(c), i, &offered) < 0)
                return EVICORN_EINVAL; /* not offered: the client would fail */
            if (offered.len == sp_len && memcmp(offered.ptr, o->subprotocol, sp_len) == 0)
                break;
        }
    }

    char accept[WS_ACCEPT_LEN + 1], answer[160];
    if (ws_accept(r->ws_key, r->ws_key_len, accept) < 0)
        return EVICORN_EIO;
    struct ws_deflate_params params;
    bool deflate = false;
    if (h->ws->deflate) {
        struct buf offers = {0};
        if (extension_offers(r, &offers) < 0) {
            buf_free(&offers);
            return EVICORN_ENOMEM;
        }
        /* No context outlives a message, so an idle connection holds no
         * zlib state (RFC 7692 7.1.1 lets the server ask this of both). */
        deflate = buf_size(&offers) > 0 &&
                  ws_deflate_negotiate(buf_start(&offers), buf_size(&offers), false, &params,
                                       answer, sizeof answer) == 1;
        buf_free(&offers);
    }

    size_t n = 5 + o->nheaders, k = 0;
    struct http_header *hs = calloc(n, sizeof *hs);
    if (!hs)
        return EVICORN_ENOMEM;
    hs[k++] = (struct http_header){"upgrade", 7, "websocket", 9};
    hs[k++] = (struct http_header){"connection", 10, "Upgrade", 7};
    hs[k++] = (struct http_header){"sec-websocket-accept", 20, accept, WS_ACCEPT_LEN};
    if (o->subprotocol)
        hs[k++] = (struct http_header){"sec-websocket-protocol", 22, o->subprotocol, sp_len};
    if (deflate)
        hs[k++] = (struct http_header){"sec-websocket-extensions", 24, answer, strlen(answer)};
    for (size_t i = 0; i < o->nheaders; i++) {
        const evicorn_header *e = &o->headers[i];
        if (!e->name || (e->value_len && !e->value))
            goto invalid;
        if (!host_owned(e))
            hs[k++] = (struct http_header){e->name, e->name_len, e->value, e->value_len};
    }

    struct ws_session *s = calloc(1, sizeof *s);
    if (!s) {
        free(hs);
        return EVICORN_ENOMEM;
    }
    struct ws_conn *wc = ws_conn_new(h->ws, deflate ? &params : NULL, &session_events, s);
    if (!wc) {
        free(s);
        free(hs);
        return EVICORN_ENOMEM;
    }
    *s = (struct ws_session){
        .c = c,
        .wc = wc,
        .id = ++h->ws_next_id,
        .on_message = o->on_message,
        .on_close = o->on_close,
        .ud = o->ud,
        .sync = c->re->kind == EVICORN_SYNC,
    };
    /* Ready before the upgrade: the connection may be handed over (or
     * found gone) within request_upgrade. */
    c->ws = s;
    c->holds++; /* released when the close event has run */
    session_link(h, s);
    int rc = request_upgrade(r, hs, k, ws_conn_attach, wc);
    free(hs);
    if (rc < 0) {
        session_unlink(h, s);
        c->ws = NULL;
        c->holds--;
        ws_conn_discard(wc);
        free(s);
        return rc == -EINVAL ? EVICORN_EINVAL : rc == -EPIPE ? EVICORN_EPIPE : EVICORN_ENOMEM;
    }
    return 0;

invalid:
    free(hs);
    return EVICORN_EINVAL;
}

int api_ws_accept(evicorn_request *req, const evicorn_ws_accept_options *opts)
{
    struct xcall x = {.fn = do_ws_accept, .c = call_of(req), .data = opts};
    return xcall_run(&x);
}

static int do_ws_send(struct xcall *x)
{
    struct ws_session *s = x->c->ws;
    if (!s)
        return EVICORN_EPERM; /* not accepted */
    if (!s->wc || s->close_sent)
        return EVICORN_EPIPE;
    if (x->len && !x->data)
        return EVICORN_EINVAL;
    int rc = ws_conn_send(s->wc, x->more != 0, x->data, x->len);
    if (rc < 0)
        return rc == -EINVAL ? EVICORN_EINVAL : rc == -EPIPE ? EVICORN_EPIPE : EVICORN_ENOMEM;
    /* Backpressure for a blocking caller: return once the client has read
     * enough. */
    if (x->wait && !ws_conn_writable(s->wc)) {
        x->msg.next = (struct mailbox_msg *)s->send_waiters;
        s->send_waiters = x;
        return XCALL_LATER;
    }
    return 0;
}

int api_ws_send(evicorn_request *req, int binary, const void *data, size_t len)
{
    struct xcall x = {
        .fn = do_ws_send, .c = call_of(req), .data = data, .len = len, .more = binary};
    return xcall_run(&x);
}

static int do_ws_close(struct xcall *x)
{
    struct call *c = x->c;
    struct ws_session *s = c->ws;
    if (!s) {
        /* Before accepting: the handshake is refused, as uvicorn refuses
         * an ASGI app's websocket.close before websocket.accept. */
        if (!c->r->ws_handshake)
            return EVICORN_EPERM;
        int rc = request_respond(c->r, 403, NULL, 0, NULL, 0);
        return rc == -EALREADY ? EVICORN_EALREADY : rc < 0 ? EVICORN_EPIPE : 0;
    }
    if (!ws_close_code_valid((unsigned)x->status) ||
        (x->len && (!x->data || !utf8_valid(x->data, x->len))))
        return EVICORN_EINVAL;
    if (!s->wc || s->close_sent)
        return EVICORN_EPIPE;
    int rc = ws_conn_close(s->wc, (uint16_t)x->status, x->data, x->len);
    if (rc < 0)
        return rc == -EPIPE ? EVICORN_EPIPE : EVICORN_ENOMEM;
    s->close_sent = true;
    return 0;
}

int api_ws_close(evicorn_request *req, int code, const char *reason, size_t len)
{
    struct xcall x = {
        .fn = do_ws_close, .c = call_of(req), .status = code, .data = reason, .len = len};
    return xcall_run(&x);
}

int api_ws_pause(evicorn_request *req, int paused)
{
    struct call *c = call_of(req);
    if (!host_on_loop(c->host))
        return EVICORN_EPERM;
    struct ws_session *s = c->ws;
    if (!s)
        return EVICORN_EPERM;
    s->paused = paused != 0;
    if (s->wc && !s->input_paused)
        ws_conn_pause(s->wc, s->paused);
    if (!s->paused)
        pump(s);
    return 0;
}

/* ---- for host_call.c ---- */

bool host_ws_writable(const struct call *c)
{
    return c->ws->wc && ws_conn_writable(c->ws->wc);
}

static void writable_now(struct defer *d)
{
    struct call *c = container_of(d, struct call, ws_writable_defer);
    c->holds--; /* taken when it was scheduled */
    call_writable(c, c->cancelled ? EVICORN_ECANCELED : 0);
    call_maybe_finish(c);
}

void host_ws_want_writable(struct call *c)
{
    struct ws_session *s = c->ws;
    if (c->ws_writable_defer.queued || (s->wc && !ws_conn_writable(s->wc)))
        return;
    c->holds++; /* the call must exist when it runs */
    defer_schedule(c->host->defer, &c->ws_writable_defer, writable_now);
}

void host_ws_handler_returned(struct call *c)
{
    pump(c->ws);
}
