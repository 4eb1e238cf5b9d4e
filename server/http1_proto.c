/* http1_proto: HTTP/1.1 on a connection; see http1_proto.h.
 *
 * Parser callbacks never close anything: they set state, and the
 * connection closes from its own callbacks once asked to. */
#include "http1_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "container.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "ws_handshake.h"

/* Requests parsed ahead of their responses on one connection; beyond this
 * the connection stops reading until responses go out. */
#define MAX_PIPELINE 32
/* Unconsumed request body held before reading pauses. */
#define BODY_HIGH_WATER (256 * 1024)
/* On shutdown, how long a just-accepted connection may take to send its
 * request before it is closed. */
#define SHUTDOWN_FRESH_GRACE 1.0

enum framing { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE, FRAME_NONE };

/* The protocol's state for one connection. */
struct h1_conn {
    struct h1_server *srv;
    struct conn *conn;
    struct h1_parser *parser;
    struct h1_stream *reading; /* request whose head or body is being parsed */
    unsigned queued;           /* requests not yet answered and handed back */
    unsigned served;
    bool no_more_requests; /* a response closes the connection: parse nothing more */
    bool need_linger;      /* the client may still be sending when we close */
    /* A WebSocket handshake was read: what follows it is not HTTP, so
     * nothing more is parsed; it is held for the protocol that takes over
     * after a 101 (or dropped with the connection after a refusal). */
    bool upgrading;
    ev_tstamp head_start; /* when the head being read began */
    ev_tstamp body_progress;
};

/* One exchange on the connection: the request, its place in the order of
 * output, and how its response is framed. */
struct h1_stream {
    struct request req; /* first: request.c allocates the whole stream */
    struct h1_conn *hc;
    struct conn_slot slot;
    bool keep_alive;
    bool sent_continue;
    /* Accepted WebSocket handshake: who takes the connection once the 101
     * has left in order. */
    void (*attach)(void *ud, struct conn *c);
    void *attach_ud;
    enum framing framing;
    uint64_t remaining; /* FRAME_LENGTH: body bytes still owed */
};

static struct h1_stream *stream_of(struct request *r)
{
    return container_of(r, struct h1_stream, req);
}

static const struct h1_stream *const_stream_of(const struct request *r)
{
    return container_of(r, const struct h1_stream, req);
}

static struct h1_stream *front(const struct h1_conn *hc)
{
    struct conn_slot *s = conn_slot_front(hc->conn);
    return s ? container_of(s, struct h1_stream, slot) : NULL;
}

static struct h1_conn *h1_of(const struct conn *c)
{
    return c->proto_state;
}

static void close_after_output(struct h1_conn *hc)
{
    conn_close_after_output(hc->conn, hc->need_linger);
}

static struct h1_stream *stream_new(struct h1_conn *hc)
{
    struct request *r = request_alloc(&hc->srv->pool, hc->srv->requests);
    if (!r)
        return NULL;
    struct h1_stream *s = stream_of(r);
    s->hc = hc;
    r->client = hc->conn->peer; /* for the access log, even if the head never completes */
    conn_slot_push(hc->conn, &s->slot);
    hc->queued++;
    return s;
}

/* ---- responses leaving in order ---- */

static void h1_free(struct h1_conn *hc)
{
    h1_parser_free(hc->parser);
    free(hc);
}

/* The accepted handshake's 101 is at the front: the connection goes to the
 * protocol that takes over (which attaches with conn_set_proto), and this
 * one ends. Bytes the client sent after the handshake stay held by the
 * connection for the new protocol. Never called while parsing: a
 * handshake is answered by its handler, after the parse that read it. */
static void upgrade_now(struct h1_conn *hc, struct h1_stream *f)
{
    struct conn *c = hc->conn;
    void (*attach)(void *, struct conn *) = f->attach;
    void *ud = f->attach_ud;
    f->attach = NULL;
    int rc = conn_slot_pop(c);
    request_detach(&f->req);
    request_release(&f->req); /* the connection's reference */
    h1_free(hc);
    c->proto = NULL;
    c->proto_state = NULL;
    attach(ud, rc < 0 ? NULL : c);
    if (rc < 0 || !c->proto)
        conn_abort(c);
}

/* Hands finished responses at the front back to request.c, moving the next
 * request's held output to the connection. */
static void responses_done(struct h1_conn *hc)
{
    struct conn *c = hc->conn;
    struct h1_stream *f;
    while ((f = front(hc)) && f->req.resp == RESP_DONE) {
        if (f == hc->reading) {
            /* Answered before its body arrived. A client still waiting for
             * 100 Continue will never send it: close instead of waiting. */
            if (f->req.head.expect_continue && !f->sent_continue) {
                hc->reading = NULL;
                hc->no_more_requests = true;
                f->keep_alive = false;
            } else {
                request_discard_body(&f->req);
                break;
            }
        }
        if (f->attach) {
            upgrade_now(hc, f);
            return;
        }
        bool keep = f->keep_alive;
        if (!keep) {
            /* Nothing queued after this response may leave. */
            hc->no_more_requests = true;
            close_after_output(hc);
        }
        int rc = conn_slot_pop(c);
        hc->queued--;
        hc->served++;
        request_detach(&f->req);
        request_release(&f->req); /* the connection's reference */
        if (!keep)
            break;
        if (rc < 0) {
            close_after_output(hc);
            break;
        }
    }
    if (!front(hc) && c->ctx->draining)
        close_after_output(hc);
    /* Requests held back by the pipeline limit can be parsed now. (Reading
     * interest is re-decided when the output is flushed.) */
    if (!c->closing && conn_has_held_input(c))
        conn_resume_input(c);
    /* A response may end without a byte of output left to flush (its body
     * went out before its end was known, as when a handler streams a body
     * of known length and then says it is done): no flush will re-decide
     * the connection's deadline, so do it here, or an idle keep-alive
     * connection would never time out. A response with output pending is
     * left to its flush, which does it (no second pass per response). */
    else if (!c->closing && !c->dirty && buf_size(&c->out) == 0 && !c->files.first)
        conn_update(c);
}

/* ---- reading and parsing ---- */

static bool may_parse(const struct h1_conn *hc)
{
    const struct h1_stream *r = hc->reading;
    if (hc->upgrading && !r)
        return false;
    /* The request being read gets its body even after the connection
     * stopped taking new requests (graceful shutdown). */
    if (hc->no_more_requests && !r)
        return false;
    if (hc->queued >= MAX_PIPELINE && !r)
        return false;
    if (r && request_body_held(&r->req) >= BODY_HIGH_WATER)
        return false;
    return true;
}

static void parse_failed(struct h1_conn *hc)
{
    int status;
    const char *reason = h1_parser_error(hc->parser, &status);
    struct h1_stream *s = hc->reading;
    hc->reading = NULL;
    hc->no_more_requests = true;
    hc->need_linger = true;
    if (log_enabled(LOG_DEBUG)) {
        char peer[ADDR_TEXT_MAX];
        log_debug("%s: invalid request: %s", conn_peer_text(hc->conn, peer), reason ? reason : "?");
    }
    if (status == 400)
        metrics_client_error(METRICS_CLIENT_BAD_REQUEST);
    else if (status == 413 || status == 414 || status == 431)
        metrics_client_error(METRICS_CLIENT_LIMITS);
    if (!s) {
        s = stream_new(hc);
        if (!s) {
            close_after_output(hc);
            return;
        }
    }
    struct request *r = &s->req;
    request_retain(r); /* answering may hand it back and release it */
    s->keep_alive = false;
    if (r->dispatched)
        request_body_failed(r, status == 413);
    else
        request_body_end(r);
    if (r->resp == RESP_NONE &&
        request_respond_error(r, status, reason ? reason : "Bad Request") < 0)
        close_after_output(hc);
    else if (r->resp == RESP_STARTED)
        close_after_output(hc); /* cannot answer mid-response: cut it */
    /* Answered before its body broke: it can leave the queue now, and as it
     * does not keep the connection alive, the connection closes. */
    if (r->resp == RESP_DONE)
        responses_done(hc);
    request_release(r);
}

static size_t h1_received(struct conn *c, const char *data, size_t len)
{
    struct h1_conn *hc = h1_of(c);
    if (hc->no_more_requests && !hc->reading)
        return len; /* nothing more will be parsed on this connection */
    if (!hc->reading && !h1_parser_in_message(hc->parser) && !conn_has_held_input(c) &&
        hc->served > 0)
        hc->head_start = ev_now(c->ctx->loop);
    size_t off = 0;
    while (off < len && may_parse(hc)) {
        ssize_t n = h1_parser_feed(hc->parser, data + off, len - off);
        if (n < 0) {
            parse_failed(hc);
            return len;
        }
        off += (size_t)n;
    }
    return off;
}

/* ---- parser callbacks ---- */

static struct h1_head *on_begin(void *ud)
{
    struct h1_conn *hc = ud;
    struct h1_stream *s = stream_new(hc);
    if (!s)
        return NULL;
    hc->reading = s;
    return &s->req.head;
}

/* An upgrade to WebSocket (RFC 6455 4.2.1): a valid handshake is marked
 * for the router and ends HTTP on this connection; an invalid one is
 * answered here. 0, or -1 after answering. */
static int websocket_head(struct h1_conn *hc, struct h1_stream *s)
{
    struct request *r = &s->req;
    const char *why = NULL, *key = NULL;
    size_t key_len = 0;
    enum ws_check check = ws_handshake_check(&r->head, &why, &key, &key_len);
    if (check == WS_CHECK_NOT_WEBSOCKET)
        return 0;
    s->keep_alive = false;
    hc->upgrading = true;
    if (check == WS_CHECK_OK) {
        r->ws_handshake = true;
        r->ws_key = key;
        r->ws_key_len = key_len;
        return 0;
    }
    request_discard_body(r);
    hc->need_linger = true;
    metrics_client_error(METRICS_CLIENT_BAD_REQUEST);
    if (check == WS_CHECK_BAD_REQUEST) {
        request_respond_error(r, 400, why);
        return -1;
    }
    struct http_header h[2] = {{"content-type", 12, "application/json", 16}};
    if (check == WS_CHECK_NO_UPGRADE)
        h[1] = (struct http_header){"upgrade", 7, "websocket", 9};
    else
        h[1] = (struct http_header){"sec-websocket-version", 21, "13", 2};
    struct buf body = {0};
    if (http_json_detail(&body, why) == 0)
        request_respond(r, 426, h, 2, buf_start(&body), buf_size(&body));
    else
        request_respond_error(r, 503, NULL);
    buf_free(&body);
    return -1;
}

static int on_head(void *ud, struct h1_head *head)
{
    struct h1_conn *hc = ud;
    struct conn *c = hc->conn;
    const struct config *cfg = hc->srv->cfg;
    struct h1_stream *s = hc->reading;
    struct request *r = &s->req;
    if (request_prepare(r, &c->peer) < 0) {
        h1_parser_fail(hc->parser, 400, "Invalid HTTP request: invalid request target");
        return -1;
    }
    s->keep_alive = head->keep_alive && !c->ctx->draining;
    if (hc->srv->websocket && websocket_head(hc, s) < 0)
        return 0; /* refused with a 4xx */
    if (head->has_content_length && head->content_length > cfg->limit_body) {
        h1_parser_fail(hc->parser, 413, "Request body too large");
        return -1;
    }
    if (!head->chunked && head->content_length == 0)
        request_body_end(r);
    hc->body_progress = ev_now(c->ctx->loop);
    if (cfg->limit_concurrency > 0 && hc->srv->requests->inflight >= cfg->limit_concurrency) {
        /* Shed load before the handler runs, as uvicorn does. */
        s->keep_alive = false;
        request_discard_body(r);
        hc->need_linger = true;
        request_respond_error(r, 503, "Service Unavailable");
        return 0;
    }
    /* Dispatch at the end of this parse, not now: if the rest of what the
     * client sent (a broken chunk, a body over the limit) is already in
     * hand, that error is the answer, as in uvicorn, where the app runs as
     * a task after the bytes at hand are parsed. */
    request_dispatch_later(r);
    return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
    struct h1_conn *hc = ud;
    struct request *r = &hc->reading->req;
    hc->body_progress = ev_now(hc->conn->ctx->loop);
    if (r->body_received + len > hc->srv->cfg->limit_body) {
        h1_parser_fail(hc->parser, 413, "Request body too large");
        return -1;
    }
    if (request_body_data(r, data, len) < 0) {
        h1_parser_fail(hc->parser, 503, "Service Unavailable");
        return -1;
    }
    return 0;
}

static int on_complete(void *ud)
{
    struct h1_conn *hc = ud;
    struct h1_stream *s = hc->reading;
    hc->reading = NULL;
    request_body_end(&s->req);
    if (!s->keep_alive)
        hc->no_more_requests = true;
    /* A response finished before its body arrived waited for this. */
    if (s == front(hc) && s->req.resp == RESP_DONE)
        responses_done(hc);
    return 0;
}

static const struct h1_callbacks parser_callbacks = {on_begin, on_head, on_body, on_complete};

/* ---- the connection's view ---- */

static enum conn_input h1_input(const struct conn *c)
{
    const struct h1_conn *hc = h1_of(c);
    /* A handshake awaiting its handler: read once, so a client that
     * leaves is noticed; what it sends meanwhile is held for WebSocket. */
    if (hc->upgrading && !hc->reading)
        return conn_has_held_input(c) ? CONN_INPUT_PAUSED : CONN_INPUT_OPEN;
    if (hc->no_more_requests && !hc->reading)
        return CONN_INPUT_CLOSED;
    /* A full pipeline still reads once, so a client that leaves is
     * noticed; what it sends meanwhile is held. */
    if (hc->reading && !may_parse(hc))
        return CONN_INPUT_PAUSED;
    return CONN_INPUT_OPEN;
}

static ev_tstamp h1_deadline(const struct conn *c)
{
    const struct h1_conn *hc = h1_of(c);
    const struct config *cfg = hc->srv->cfg;
    const struct conn_ctx *ctx = c->ctx;
    bool has_front = conn_slot_front(c) != NULL;
    ev_tstamp at = 0;
    if (hc->reading && hc->reading->req.dispatched) {
        /* The body timeout runs only while we read it: a handler that does
         * not take its body is not the client's fault. */
        bool reading_now = !conn_output_full(c) &&
                           !(conn_has_held_input(c) && !hc->no_more_requests) && may_parse(hc);
        if (reading_now)
            at = hc->body_progress + cfg->timeout_body;
    } else if (hc->reading || h1_parser_in_message(hc->parser)) {
        at = hc->head_start + cfg->timeout_header;
    } else if (!has_front && hc->served == 0) {
        at = hc->head_start + cfg->timeout_header;
    } else if (!has_front) {
        at = ev_now(ctx->loop) + cfg->timeout_keep_alive;
    }
    if (ctx->draining && !has_front) {
        ev_tstamp grace = ctx->drain_started + SHUTDOWN_FRESH_GRACE;
        if (at == 0 || grace < at)
            at = grace;
    }
    return at;
}

static bool h1_timeout(struct conn *c)
{
    const struct h1_conn *hc = h1_of(c);
    /* Part of a request that did not arrive in time; an idle connection
     * closing is no error. */
    if (hc->reading || h1_parser_in_message(hc->parser))
        metrics_client_error(METRICS_CLIENT_TIMEOUT);
    if (log_enabled(LOG_DEBUG)) {
        char peer[ADDR_TEXT_MAX];
        log_debug("%s: %s timeout", conn_peer_text(c, peer),
                  hc->reading          ? (hc->reading->req.dispatched ? "body" : "header")
                  : conn_slot_front(c) ? "request"
                                       : "keep-alive");
    }
    return true;
}

static void h1_writable(struct conn *c)
{
    struct h1_stream *f = front(h1_of(c));
    if (f)
        request_drained(&f->req);
}

static void h1_shutdown(struct conn *c)
{
    struct h1_conn *hc = h1_of(c);
    if (front(hc)) {
        hc->no_more_requests = true;
        conn_update(c);
        return;
    }
    /* A request that already arrived is served (with connection: close)
     * rather than reset away; and a connection accepted a moment ago gets
     * the shutdown grace to send its request. Idle keep-alive connections
     * close at once. */
    ssize_t n = conn_read_now(c);
    if (n > 0 || (n == -EAGAIN && hc->served == 0)) {
        conn_update(c);
        return;
    }
    close_after_output(hc);
}

static void h1_closed(struct conn *c, enum conn_end why)
{
    struct h1_conn *hc = h1_of(c);
    if (why == CONN_END_PEER && hc->queued > 0 && log_enabled(LOG_DEBUG)) {
        char peer[ADDR_TEXT_MAX];
        log_debug("%s: client disconnected with %u request(s) in flight", conn_peer_text(c, peer),
                  hc->queued);
    }
    struct h1_stream *f;
    while ((f = front(hc))) {
        conn_slot_pop(c);
        request_detach(&f->req);
        /* An accepted handshake whose 101 never left: its taker hears
         * that the connection is gone. */
        void (*attach)(void *, struct conn *) = f->attach;
        f->attach = NULL;
        if (attach)
            attach(f->attach_ud, NULL);
        request_release(&f->req); /* the connection's reference */
    }
    h1_free(hc);
}

static const struct conn_proto h1_conn_proto = {
    .name = "http/1.1",
    .received = h1_received,
    .input = h1_input,
    .deadline = h1_deadline,
    .timeout = h1_timeout,
    .writable = h1_writable,
    .shutdown = h1_shutdown,
    .closed = h1_closed,
};

/* ---- the request's view: framing the response ---- */

static bool name_is(const struct http_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static int h1_start(struct request *r, int status, const struct http_header *headers, size_t n,
                    int64_t content_length)
{
    struct h1_stream *s = stream_of(r);
    struct h1_conn *hc = s->hc;
    struct h1_server *srv = hc->srv;
    const struct config *cfg = srv->cfg;
    struct conn *c = hc->conn;

    bool have_server = false, have_date = false;
    size_t need = 128 + srv->default_headers_len;
    for (size_t i = 0; i < n; i++) {
        const struct http_header *h = &headers[i];
        need += h->name_len + h->value_len + 4;
        if (name_is(h, "connection", 10)) {
            if (http_connection_has(h->value, h->value_len, "close"))
                s->keep_alive = false;
        } else if (name_is(h, "server", 6)) {
            have_server = true;
        } else if (name_is(h, "date", 4)) {
            have_date = true;
        }
    }
    if (c->ctx->draining)
        s->keep_alive = false;
    /* Answered before asking for a body the client holds back until 100
     * Continue: that body will never come, so this response ends the
     * connection (and says so). */
    if (r->head.expect_continue && !s->sent_continue && !r->body_complete)
        s->keep_alive = false;

    if (!http_status_has_body(status)) {
        s->framing = FRAME_NONE;
    } else if (content_length >= 0) {
        s->framing = FRAME_LENGTH;
        s->remaining = (uint64_t)content_length;
    } else if (r->head.http_minor >= 1) {
        s->framing = FRAME_CHUNKED;
    } else {
        s->framing = FRAME_CLOSE; /* HTTP/1.0 has no chunked encoding */
        s->keep_alive = false;
    }

    struct buf *out = conn_slot_output(c, &s->slot);
    char *start = buf_reserve(out, need);
    if (!start)
        return -ENOMEM;
    char *p = PUT_LIT(start, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    /* RFC 9110's phrase; none for a code it does not assign (the phrase is
     * optional, and clients ignore it: RFC 9112 4). */
    const char *reason = http_reason(status);
    if (strcmp(reason, "Unknown") == 0)
        reason = "";
    p = put(p, reason, strlen(reason));
    p = PUT_LIT(p, "\r\n");
    if (cfg->server_header && !have_server)
        p = PUT_LIT(p, "server: evicorn\r\n");
    if (cfg->date_header && !have_date) {
        p = PUT_LIT(p, "date: ");
        p = put(p, http_date((time_t)ev_now(c->ctx->loop)), 29);
        p = PUT_LIT(p, "\r\n");
    }
    p = put(p, srv->default_headers, srv->default_headers_len);
    for (size_t i = 0; i < n; i++) {
        const struct http_header *h = &headers[i];
        /* Framing is evicorn's to decide (ASGI servers ignore an app's). */
        if (name_is(h, "content-length", 14) || name_is(h, "transfer-encoding", 17) ||
            name_is(h, "connection", 10))
            continue;
        p = put(p, h->name, h->name_len);
        p = PUT_LIT(p, ": ");
        p = put(p, h->value, h->value_len);
        p = PUT_LIT(p, "\r\n");
    }
    if (s->framing == FRAME_LENGTH) {
        p = PUT_LIT(p, "content-length: ");
        p = http_u64(p, s->remaining);
        p = PUT_LIT(p, "\r\n");
    } else if (s->framing == FRAME_CHUNKED && !r->is_head) {
        p = PUT_LIT(p, "transfer-encoding: chunked\r\n");
    }
    if (!s->keep_alive)
        p = PUT_LIT(p, "connection: close\r\n");
    else if (r->head.http_minor == 0)
        p = PUT_LIT(p, "connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    out->len += (size_t)(p - start);
    return 0;
}

static int h1_upgrade(struct request *r, const struct http_header *headers, size_t n,
                      void (*attach)(void *ud, struct conn *c), void *ud)
{
    struct h1_stream *s = stream_of(r);
    struct h1_conn *hc = s->hc;
    struct h1_server *srv = hc->srv;
    const struct config *cfg = srv->cfg;
    struct conn *c = hc->conn;
    size_t need = 128 + srv->default_headers_len;
    for (size_t i = 0; i < n; i++)
        need += headers[i].name_len + headers[i].value_len + 4;
    struct buf *out = conn_slot_output(c, &s->slot);
    char *start = buf_reserve(out, need);
    if (!start)
        return -ENOMEM;
    char *p = PUT_LIT(start, "HTTP/1.1 101 Switching Protocols\r\n");
    if (cfg->server_header)
        p = PUT_LIT(p, "server: evicorn\r\n");
    if (cfg->date_header) {
        p = PUT_LIT(p, "date: ");
        p = put(p, http_date((time_t)ev_now(c->ctx->loop)), 29);
        p = PUT_LIT(p, "\r\n");
    }
    p = put(p, srv->default_headers, srv->default_headers_len);
    for (size_t i = 0; i < n; i++) {
        p = put(p, headers[i].name, headers[i].name_len);
        p = PUT_LIT(p, ": ");
        p = put(p, headers[i].value, headers[i].value_len);
        p = PUT_LIT(p, "\r\n");
    }
    p = PUT_LIT(p, "\r\n");
    out->len += (size_t)(p - start);
    s->attach = attach;
    s->attach_ud = ud;
    return 0;
}

static int h1_send(struct request *r, const void *data, size_t len, bool more)
{
    struct h1_stream *s = stream_of(r);
    struct conn *c = s->hc->conn;
    /* A HEAD response's Content-Length is the GET body's: nothing of it
     * is sent, whatever the handler hands over (RFC 9110 9.3.2). */
    if (s->framing == FRAME_LENGTH && !r->is_head) {
        if (len > s->remaining)
            return -EINVAL; /* more than the Content-Length promised */
        s->remaining -= len;
    }
    bool write_body = !r->is_head && s->framing != FRAME_NONE;
    if (len > 0 && write_body) {
        struct buf *out = conn_slot_output(c, &s->slot);
        if (s->framing == FRAME_CHUNKED) {
            char *p = buf_reserve(out, len + 24);
            if (!p)
                return -ENOMEM;
            static const char hex[] = "0123456789abcdef";
            char tmp[16];
            size_t k = 0;
            for (size_t v = len; v; v >>= 4)
                tmp[k++] = hex[v & 15];
            char *q = p;
            while (k)
                *q++ = tmp[--k];
            q = PUT_LIT(q, "\r\n");
            q = put(q, data, len);
            q = PUT_LIT(q, "\r\n");
            out->len += (size_t)(q - p);
        } else if (buf_append(out, data, len) < 0) {
            return -ENOMEM;
        }
    }
    if (!more) {
        if (s->framing == FRAME_CHUNKED && write_body &&
            conn_slot_write(c, &s->slot, "0\r\n\r\n", 5) < 0)
            return -ENOMEM;
        if (s->framing == FRAME_LENGTH && s->remaining > 0 && !r->is_head) {
            /* The framing promised more than was sent: the connection
             * cannot carry another response. */
            char client[ADDR_TEXT_MAX];
            log_warning("%s: response shorter than its Content-Length; closing",
                        addr_text(&r->client, client));
            s->keep_alive = false;
        }
        if (s->framing == FRAME_CLOSE)
            s->keep_alive = false;
    }
    return 0;
}

static int h1_send_file(struct request *r, int fd, uint64_t off, uint64_t len, bool more)
{
    struct h1_stream *s = stream_of(r);
    struct conn *c = s->hc->conn;
    bool write_body = !r->is_head && s->framing != FRAME_NONE && len > 0;
    if (s->framing == FRAME_LENGTH && !r->is_head && len > s->remaining) {
        close(fd);
        return -EINVAL; /* more than the Content-Length promised */
    }
    if (!write_body) {
        close(fd);
        return h1_send(r, NULL, 0, more);
    }
    if (s->framing == FRAME_CHUNKED) {
        char line[24];
        int k = snprintf(line, sizeof line, "%llx\r\n", (unsigned long long)len);
        if (conn_slot_write(c, &s->slot, line, (size_t)k) < 0) {
            close(fd);
            return -ENOMEM;
        }
    }
    if (conn_slot_send_file(c, &s->slot, fd, off, len) < 0)
        return -ENOMEM;
    if (s->framing == FRAME_LENGTH)
        s->remaining -= len;
    if (s->framing == FRAME_CHUNKED && conn_slot_write(c, &s->slot, "\r\n", 2) < 0)
        return -ENOMEM;
    return h1_send(r, NULL, 0, more);
}

static bool h1_writable_now(const struct request *r)
{
    const struct h1_stream *s = const_stream_of(r);
    return !conn_slot_full(s->hc->conn, &s->slot);
}

/* Answers Expect: 100-continue the first time the handler asks for the
 * body, and only then, as RFC 9110 10.1.1 intends. */
static void h1_body_wanted(struct request *r)
{
    struct h1_stream *s = stream_of(r);
    struct conn *c = s->hc->conn;
    if (!r->head.expect_continue || s->sent_continue || r->body_complete || s != front(s->hc) ||
        r->resp != RESP_NONE)
        return;
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (conn_slot_write(c, &s->slot, line, sizeof line - 1) == 0)
        s->sent_continue = true;
}

static void h1_body_taken(struct request *r)
{
    conn_resume_input(stream_of(r)->hc->conn);
}

static void h1_done(struct request *r)
{
    responses_done(stream_of(r)->hc);
}

static void h1_abandon(struct request *r)
{
    struct h1_stream *s = stream_of(r);
    s->keep_alive = false;
    close_after_output(s->hc);
}

static void h1_reset(struct request *r)
{
    struct h1_stream *s = stream_of(r);
    s->hc = NULL;
    conn_slot_reset(&s->slot);
    s->keep_alive = s->sent_continue = false;
    s->attach = NULL;
    s->attach_ud = NULL;
    s->framing = FRAME_NONE;
    s->remaining = 0;
}

static void h1_destroy(struct request *r)
{
    conn_slot_free(&stream_of(r)->slot);
}

static const struct request_io h1_request_io = {
    .size = sizeof(struct h1_stream),
    .reset = h1_reset,
    .destroy = h1_destroy,
    .start = h1_start,
    .send = h1_send,
    .send_file = h1_send_file,
    .writable = h1_writable_now,
    .body_wanted = h1_body_wanted,
    .upgrade = h1_upgrade,
    .body_taken = h1_body_taken,
    .done = h1_done,
    .abandon = h1_abandon,
};

/* ---- per worker ---- */

/* "--header name:value" becomes "name: value\r\n", ready to copy into each
 * response head. */
static int build_default_headers(struct h1_server *s)
{
    const struct config *cfg = s->cfg;
    size_t cap = 1;
    for (size_t i = 0; i < cfg->headers.n; i++)
        cap += strlen(cfg->headers.items[i]) + 4;
    s->default_headers = malloc(cap);
    if (!s->default_headers)
        return -1;
    char *p = s->default_headers;
    for (size_t i = 0; i < cfg->headers.n; i++) {
        const char *h = cfg->headers.items[i], *colon = strchr(h, ':'), *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        /* Lower-cased like every header evicorn writes (and as uvicorn
         * writes --header). */
        for (const char *q = h; q < colon; q++)
            *p++ = (*q >= 'A' && *q <= 'Z') ? (char)(*q + 32) : *q;
        p = PUT_LIT(p, ": ");
        p = put(p, v, strlen(v));
        p = PUT_LIT(p, "\r\n");
    }
    s->default_headers_len = (size_t)(p - s->default_headers);
    return 0;
}

int h1_server_init(struct h1_server *s, const struct config *cfg, struct request_ctx *requests)
{
    /* --h11-max-incomplete-event-size bounds the head; its request line
     * may take half (414 beyond): 16 KiB and 8 KiB by default. */
    uint32_t head = cfg->max_head ? (uint32_t)cfg->max_head : 16 * 1024;
    *s = (struct h1_server){
        .cfg = cfg,
        .requests = requests,
        .limits = {.max_head = head, .max_line = head / 2, .max_headers = 128},
        .websocket = strcmp(cfg->ws, "none") != 0,
    };
    request_pool_init(&s->pool, &h1_request_io);
    return build_default_headers(s);
}

void h1_server_free(struct h1_server *s)
{
    request_pool_clear(&s->pool);
    free(s->default_headers);
    s->default_headers = NULL;
}

int h1_attach(struct h1_server *s, struct conn *c)
{
    struct h1_conn *hc = calloc(1, sizeof *hc);
    if (!hc)
        return -1;
    hc->parser = h1_parser_new(&s->limits, &parser_callbacks, hc);
    if (!hc->parser) {
        free(hc);
        return -1;
    }
    hc->srv = s;
    hc->conn = c;
    /* A new connection must deliver its first head within the header
     * timeout, counted from the accept. */
    hc->head_start = ev_now(c->ctx->loop);
    conn_set_proto(c, &h1_conn_proto, hc);
    return 0;
}
