/* conn: reading, parsing, ordering and writing for one client connection;
 * see conn.h for the model.
 *
 * Closing is never done inside a parser callback or a handler call: those
 * only set flags, and the connection is closed from the event callbacks
 * (read, write, timer) or from the end-of-iteration flush, so no caller
 * holds a pointer to a freed connection. */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dispatch.h"
#include "log.h"
#include "worker.h"

/* Requests parsed ahead of their responses on one connection; beyond this
 * the connection stops reading until responses go out. */
#define MAX_PIPELINE 32
/* Output held for a client before reading from it pauses and streaming
 * handlers are told to wait. */
#define OUT_HIGH_WATER (256 * 1024)
#define OUT_LOW_WATER  (64 * 1024)
/* Unconsumed request body held before reading pauses. */
#define BODY_HIGH_WATER (256 * 1024)
/* After an error response, how long the client may keep sending before the
 * socket is closed (closing at once would reset the response away). */
#define LINGER_SECONDS 2.0
/* On shutdown, how long a just-accepted connection may take to send its
 * request before it is closed. */
#define SHUTDOWN_FRESH_GRACE 1.0

static void on_read(struct ev_loop *loop, ev_io *io, int revents);
static void on_write(struct ev_loop *loop, ev_io *io, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *t, int revents);
static void conn_close(struct conn *c);
static void conn_update(struct conn *c);
static void conn_received(struct conn *c, const char *data, size_t len);

static struct h1_head *on_begin(void *ud);
static int on_head(void *ud, struct h1_head *head);
static int on_body(void *ud, const char *data, size_t len);
static int on_complete(void *ud);

static const struct h1_callbacks parser_callbacks = {on_begin, on_head, on_body, on_complete};

/* ---- deferred callbacks ---- */

void defer_schedule(struct worker *w, struct defer *d, void (*fn)(struct defer *))
{
    if (d->queued)
        return;
    d->fn = fn;
    d->next = NULL;
    d->queued = true;
    if (w->defer_last)
        w->defer_last->next = d;
    else
        w->defer_first = d;
    w->defer_last = d;
}

/* ---- lifetime ---- */

static void conn_maybe_free(struct conn *c)
{
    if (c->fd >= 0 || c->dirty || c->resume_defer.queued)
        return;
    free(c);
}

struct conn *conn_accept(struct worker *w, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->parser = h1_parser_new(H1_REQUEST, &w->limits, &parser_callbacks, c);
    if (!c->parser) {
        free(c);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    c->rio.data = c->wio.data = c->timer.data = c;
    ev_io_start(w->loop, &c->rio);
    /* A new connection must deliver its first head within the header
     * timeout, counted from the accept. */
    c->head_start = ev_now(w->loop);
    conn_update(c);
    return c;
}

/* Final close: requests still held by handlers are detached and told. */
static void conn_close(struct conn *c)
{
    struct worker *w = c->w;
    if (c->fd < 0)
        return;
    while (c->first) {
        struct request *r = c->first;
        c->first = r->next;
        r->next = NULL;
        request_detach(r);
        request_release(r); /* the queue's reference */
    }
    c->last = c->reading = NULL;
    c->queued = 0;
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    h1_parser_free(c->parser);
    c->parser = NULL;
    buf_free(&c->in);
    buf_free(&c->out);
    worker_conn_closed(w, c);
    conn_maybe_free(c);
}

void conn_abort(struct conn *c)
{
    conn_close(c);
}

/* Closes after a response that the client may be racing with more bytes:
 * shut the write side and read until the client closes or LINGER_SECONDS. */
static void conn_linger(struct conn *c)
{
    if (c->lingering)
        return;
    c->lingering = true;
    c->head_start = ev_now(c->w->loop);
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    conn_update(c);
}

void conn_shutdown(struct conn *c)
{
    if (!c->first) {
        /* A request that already arrived is served (with connection: close)
         * rather than reset away; and a connection accepted a moment ago
         * gets the shutdown grace to send its request. Idle keep-alive
         * connections close at once. */
        ssize_t n;
        do
            n = read(c->fd, c->w->scratch, c->w->scratch_cap);
        while (n < 0 && errno == EINTR);
        if (n > 0) {
            conn_received(c, c->w->scratch, (size_t)n);
            conn_schedule_flush(c);
            conn_update(c);
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && c->served == 0) {
            conn_update(c);
            return;
        }
        conn_close(c);
        return;
    }
    c->no_more_requests = true;
    conn_update(c);
}

/* ---- reading and parsing ---- */

static bool conn_may_parse(const struct conn *c)
{
    if (c->no_more_requests || c->fd < 0)
        return false;
    if (c->queued >= MAX_PIPELINE && !c->reading)
        return false;
    const struct request *r = c->reading;
    if (r && r->body_mode != BODY_WHOLE && r->body_mode != BODY_DISCARD &&
        buf_size(&r->body) >= BODY_HIGH_WATER)
        return false;
    return true;
}

static void conn_parse_failed(struct conn *c)
{
    int status;
    const char *reason = h1_parser_error(c->parser, &status);
    struct request *r = c->reading;
    c->reading = NULL;
    c->no_more_requests = true;
    c->need_linger = true;
    log_debug("%s: invalid request: %s", c->peer, reason ? reason : "?");
    if (!r) {
        r = request_alloc(c->w, c);
        if (!r) {
            c->closing = true;
            return;
        }
    }
    request_retain(r); /* answering may pop and release it */
    r->keep_alive = false;
    if (r->dispatched) {
        /* The handler may be reading a body that turned out broken: it
         * gets an error, never a truncated body presented as whole. */
        r->body_too_large = status == 413;
        r->body_broken = true;
        request_body_arrived(r);
    } else {
        r->body_complete = true;
    }
    if (r->resp == RESP_NONE &&
        request_respond_error(r, status, reason ? reason : "Bad Request") < 0)
        c->closing = true;
    else if (r->resp == RESP_STARTED)
        c->closing = true; /* cannot answer mid-response: cut it */
    /* Answered before its body broke: it can leave the queue now, and as it
     * does not keep the connection alive, the connection closes. */
    if (r->resp == RESP_DONE)
        conn_response_done(c, r);
    request_release(r);
}

/* Parses from data; returns how much was consumed. */
static size_t conn_parse(struct conn *c, const char *data, size_t len)
{
    size_t off = 0;
    while (off < len && conn_may_parse(c)) {
        ssize_t n = h1_parser_feed(c->parser, data + off, len - off);
        if (n < 0) {
            conn_parse_failed(c);
            return len;
        }
        off += (size_t)n;
    }
    return off;
}

static void conn_received(struct conn *c, const char *data, size_t len)
{
    if (c->lingering || c->no_more_requests)
        return; /* nothing more will be parsed on this connection */
    if (!c->reading && !h1_parser_in_message(c->parser) && buf_size(&c->in) == 0 && c->served > 0)
        c->head_start = ev_now(c->w->loop);
    if (buf_size(&c->in) > 0) {
        if (buf_append(&c->in, data, len) < 0) {
            conn_close(c);
            return;
        }
        size_t n = conn_parse(c, buf_start(&c->in), buf_size(&c->in));
        buf_consume(&c->in, n);
    } else {
        size_t n = conn_parse(c, data, len);
        if (n < len && buf_append(&c->in, data + n, len - n) < 0) {
            conn_close(c);
            return;
        }
    }
}

static void conn_resume(struct defer *d)
{
    struct conn *c = (struct conn *)((char *)d - offsetof(struct conn, resume_defer));
    if (c->fd < 0) {
        conn_maybe_free(c);
        return;
    }
    if (buf_size(&c->in) > 0) {
        size_t n = conn_parse(c, buf_start(&c->in), buf_size(&c->in));
        buf_consume(&c->in, n);
    }
    conn_schedule_flush(c);
    conn_update(c);
}

void conn_body_consumed(struct conn *c)
{
    if (buf_size(&c->in) > 0)
        defer_schedule(c->w, &c->resume_defer, conn_resume);
    else
        conn_update(c);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = io->data;
    struct worker *w = c->w;
    ssize_t n;
    do
        n = read(c->fd, w->scratch, w->scratch_cap);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        /* The client closed (or reset): whatever it had in flight is now
         * disconnected, and its handlers hear of it. */
        if (c->first && !c->lingering)
            log_debug("%s: client disconnected with %u request(s) in flight", c->peer, c->queued);
        conn_close(c);
        return;
    }
    conn_received(c, w->scratch, (size_t)n);
    if (c->fd >= 0) {
        conn_schedule_flush(c);
        conn_update(c);
    }
}

/* ---- parser callbacks ---- */

static struct h1_head *on_begin(void *ud)
{
    struct conn *c = ud;
    struct request *r = request_alloc(c->w, c);
    if (!r)
        return NULL;
    c->reading = r;
    return &r->head;
}

static void run_dispatch(struct defer *d)
{
    struct request *r = (struct request *)((char *)d - offsetof(struct request, dispatch_defer));
    if (r->resp != RESP_NONE || !r->conn) {
        /* Already answered with a parse error, or the client left. */
        request_finish(r, NULL);
        return;
    }
    dispatch_request(r);
}

static int on_head(void *ud, struct h1_head *head)
{
    struct conn *c = ud;
    struct worker *w = c->w;
    struct request *r = c->reading;
    (void)head;
    if (request_prepare(r) < 0) {
        h1_parser_fail(c->parser, 400, "Invalid HTTP request: invalid request target");
        return -1;
    }
    if (r->head.has_content_length && r->head.content_length > w->cfg->limit_body) {
        h1_parser_fail(c->parser, 413, "Request body too large");
        return -1;
    }
    r->body_complete = !r->head.chunked && r->head.content_length == 0;
    c->body_progress = ev_now(w->loop);
    if (w->cfg->limit_concurrency > 0 && w->inflight >= w->cfg->limit_concurrency) {
        /* Shed load before the handler runs, as uvicorn does. */
        r->keep_alive = false;
        r->body_mode = BODY_DISCARD;
        c->need_linger = true;
        request_respond_error(r, 503, "Service Unavailable");
        return 0;
    }
    /* Dispatch at the end of this parse, not now: if the rest of what the
     * client sent (a broken chunk, a body over the limit) is already in
     * hand, that error is the answer, as in uvicorn, where the app runs as
     * a task after the bytes at hand are parsed. */
    r->dispatched = true;
    r->refs++; /* the handler's reference */
    w->inflight++;
    defer_schedule(w, &r->dispatch_defer, run_dispatch);
    return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
    struct conn *c = ud;
    struct request *r = c->reading;
    r->body_received += len;
    c->body_progress = ev_now(c->w->loop);
    if (r->body_received > c->w->cfg->limit_body) {
        h1_parser_fail(c->parser, 413, "Request body too large");
        return -1;
    }
    if (r->body_mode == BODY_DISCARD)
        return 0;
    if (buf_append(&r->body, data, len) < 0) {
        h1_parser_fail(c->parser, 503, "Service Unavailable");
        return -1;
    }
    request_body_arrived(r);
    return 0;
}

static int on_complete(void *ud)
{
    struct conn *c = ud;
    struct request *r = c->reading;
    c->reading = NULL;
    r->body_complete = true;
    request_body_arrived(r);
    if (!r->keep_alive)
        c->no_more_requests = true;
    /* A response finished before its body arrived waited for this. */
    if (r == c->first && r->resp == RESP_DONE)
        conn_response_done(c, r);
    return 0;
}

/* ---- output ---- */

void conn_schedule_flush(struct conn *c)
{
    if (c->dirty || c->fd < 0)
        return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

int conn_request_output(struct conn *c, struct request *r, const void *data, size_t len)
{
    if (r == c->first) {
        if (buf_append(&c->out, data, len) < 0)
            return -ENOMEM;
        conn_schedule_flush(c);
        return 0;
    }
    return buf_append(&r->out, data, len) < 0 ? -ENOMEM : 0;
}

struct buf *conn_output_for(struct conn *c, struct request *r)
{
    if (r == c->first) {
        conn_schedule_flush(c);
        return &c->out;
    }
    return &r->out;
}

/* Pops finished responses off the front of the queue, moving the next
 * request's buffered output to the connection. */
void conn_response_done(struct conn *c, struct request *r)
{
    (void)r;
    while (c->first && c->first->resp == RESP_DONE) {
        struct request *f = c->first;
        if (f == c->reading) {
            /* Answered before its body arrived. A client still waiting for
             * 100 Continue will never send it: close instead of waiting. */
            if (f->head.expect_continue && !f->sent_continue) {
                c->reading = NULL;
                c->no_more_requests = true;
                f->keep_alive = false;
            } else {
                f->body_mode = BODY_DISCARD;
                buf_free(&f->body);
                break;
            }
        }
        c->first = f->next;
        if (!c->first)
            c->last = NULL;
        c->queued--;
        f->next = NULL;
        bool keep = f->keep_alive;
        f->conn = NULL;
        request_release(f);
        c->served++;
        if (!keep) {
            c->no_more_requests = true;
            c->closing = true;
            break;
        }
        if (c->first && buf_move(&c->out, &c->first->out) < 0) {
            c->closing = true;
            break;
        }
    }
    if (!c->first && c->w->draining)
        c->closing = true;
    conn_schedule_flush(c);
    if (buf_size(&c->in) > 0 && !c->closing)
        defer_schedule(c->w, &c->resume_defer, conn_resume);
}

static void conn_notify_drain(struct conn *c)
{
    struct request *r = c->first;
    if (r && r->drain_fn && buf_size(&c->out) < OUT_LOW_WATER)
        request_drained(r);
}

bool conn_output_full(const struct conn *c, const struct request *r)
{
    if (r == c->first)
        return buf_size(&c->out) >= OUT_HIGH_WATER;
    return buf_size(&r->out) >= OUT_HIGH_WATER;
}

void conn_flush(struct conn *c)
{
    struct worker *w = c->w;
    if (c->fd < 0) {
        conn_maybe_free(c); /* closed while it waited on the dirty list */
        return;
    }
    while (buf_size(&c->out) > 0) {
        ssize_t n = write(c->fd, buf_start(&c->out), buf_size(&c->out));
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            c->write_progress = ev_now(w->loop);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!ev_is_active(&c->wio)) {
                c->write_progress = ev_now(w->loop);
                ev_io_start(w->loop, &c->wio);
            }
            conn_notify_drain(c);
            conn_update(c);
            return;
        }
        log_debug("%s: write failed: %s", c->peer, strerror(errno));
        conn_close(c);
        return;
    }
    ev_io_stop(w->loop, &c->wio);
    /* Keep a small output buffer for the next response on this connection
     * (no allocation per request); give back a large one. */
    if (c->out.cap > 4096)
        buf_free(&c->out);
    conn_notify_drain(c);
    if (c->closing) {
        if (c->need_linger)
            conn_linger(c);
        else
            conn_close(c);
        return;
    }
    conn_update(c);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush(io->data);
}

/* ---- timeouts and read interest ---- */

/* Arms the connection's one timer for `at` (0: none). The timer is re-armed
 * lazily: a later deadline is noticed when the earlier one fires, so a busy
 * connection does not touch the timer heap on every request. */
static void conn_arm(struct conn *c, ev_tstamp at)
{
    struct ev_loop *loop = c->w->loop;
    c->deadline = at;
    if (at == 0)
        return;
    if (ev_is_active(&c->timer) && c->timer_at <= at)
        return;
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, at - ev_now(loop), 0);
    ev_timer_start(loop, &c->timer);
    c->timer_at = at;
}

static void conn_update(struct conn *c)
{
    struct worker *w = c->w;
    const struct config *cfg = w->cfg;
    if (c->fd < 0)
        return;

    /* Read interest: keep reading while a request is in flight so a client
     * that goes away is noticed at once; stop when the client is not reading
     * its responses, when too many requests are queued, or when a handler
     * is not keeping up with a body. */
    bool want = true;
    if (buf_size(&c->out) >= OUT_HIGH_WATER)
        want = false;
    else if (buf_size(&c->in) > 0 && !c->no_more_requests)
        want = false; /* parsing is paused; bytes are already waiting */
    else if (c->reading && !conn_may_parse(c))
        want = false;
    if (want && !ev_is_active(&c->rio))
        ev_io_start(w->loop, &c->rio);
    else if (!want && ev_is_active(&c->rio))
        ev_io_stop(w->loop, &c->rio);

    ev_tstamp at = 0;
    if (c->lingering)
        at = c->head_start + LINGER_SECONDS;
    else if (ev_is_active(&c->wio))
        at = c->write_progress + cfg->timeout_write;
    else if (c->reading && c->reading->dispatched) {
        if (want)
            at = c->body_progress + cfg->timeout_body;
    } else if (c->reading || h1_parser_in_message(c->parser))
        at = c->head_start + cfg->timeout_header;
    else if (!c->first && c->served == 0)
        at = c->head_start + cfg->timeout_header;
    else if (!c->first)
        at = ev_now(w->loop) + cfg->timeout_keep_alive;
    if (w->draining && !c->first && !c->lingering) {
        ev_tstamp grace = w->drain_started + SHUTDOWN_FRESH_GRACE;
        if (at == 0 || grace < at)
            at = grace;
    }
    conn_arm(c, at);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct conn *c = t->data;
    ev_tstamp now = ev_now(loop);
    if (c->deadline == 0)
        return;
    if (now < c->deadline) {
        ev_timer_set(&c->timer, c->deadline - now, 0);
        ev_timer_start(loop, &c->timer);
        c->timer_at = c->deadline;
        return;
    }
    if (!c->lingering)
        log_debug("%s: %s timeout", c->peer,
                  ev_is_active(&c->wio) ? "write"
                  : c->reading          ? (c->reading->dispatched ? "body" : "header")
                  : c->first            ? "request"
                                        : "keep-alive");
    conn_close(c);
}
