/* request: the handler-facing side of one HTTP exchange; see request.h.
 *
 * Request objects are recycled through a per-worker free list with their
 * buffers, so a keep-alive connection serving small requests allocates
 * nothing once warm. */
#include "request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "log.h"
#include "response.h"
#include "worker.h"

/* Requests kept for reuse per worker, and the largest buffer kept with
 * one: bigger ones are freed rather than pinned. */
#define FREE_REQUESTS_MAX 256
#define KEEP_BUFFER_MAX   (64 * 1024)

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static void request_complete(struct request *r);

/* ---- lifetime ---- */

struct request *request_alloc(struct worker *w, struct conn *c)
{
    struct request *r = w->free_requests;
    if (r) {
        w->free_requests = r->next;
        w->nfree_requests--;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
    }
    /* Keep the storage of recycled buffers; reset everything else. */
    struct h1_head head = r->head;
    struct buf body = r->body, out = r->out, path_buf = r->path_buf;
    memset(r, 0, sizeof *r);
    h1_head_reset(&head);
    buf_clear(&body);
    buf_clear(&out);
    buf_clear(&path_buf);
    r->head = head;
    r->body = body;
    r->out = out;
    r->path_buf = path_buf;
    r->w = w;
    r->conn = c;
    r->refs = 1; /* the connection queue's */
    r->status = 0;
    r->scheme = "http";
    if (c->last)
        c->last->next = r;
    else
        c->first = r;
    c->last = r;
    c->queued++;
    memcpy(r->client, c->peer, sizeof r->client);
    return r;
}

static void shrink(struct buf *b)
{
    if (b->cap > KEEP_BUFFER_MAX)
        buf_free(b);
}

void request_retain(struct request *r)
{
    r->refs++;
}

void request_release(struct request *r)
{
    if (--r->refs > 0)
        return;
    struct worker *w = r->w;
    if (w->nfree_requests < FREE_REQUESTS_MAX) {
        shrink(&r->head.store);
        shrink(&r->body);
        shrink(&r->out);
        shrink(&r->path_buf);
        r->next = w->free_requests;
        w->free_requests = r;
        w->nfree_requests++;
        return;
    }
    h1_head_free(&r->head);
    buf_free(&r->body);
    buf_free(&r->out);
    buf_free(&r->path_buf);
    free(r);
}

/* ---- events: disconnect and drain ---- */

static void run_events(struct defer *d)
{
    struct request *r = container_of(d, struct request, event_defer);
    if (r->pending_disconnect) {
        r->pending_disconnect = false;
        request_event_fn fn = r->disconnect_fn;
        r->disconnect_fn = NULL;
        if (fn)
            fn(r, r->disconnect_ud);
    }
    if (r->pending_drain) {
        r->pending_drain = false;
        request_event_fn fn = r->drain_fn;
        r->drain_fn = NULL;
        if (fn)
            fn(r, r->drain_ud);
    }
    request_release(r);
}

static void schedule_events(struct request *r)
{
    if (!r->event_defer.queued) {
        request_retain(r);
        defer_schedule(r->w, &r->event_defer, run_events);
    }
}

void request_detach(struct request *r)
{
    r->conn = NULL;
    if (r->resp != RESP_DONE) {
        r->disconnected = true;
        if (r->disconnect_fn) {
            r->pending_disconnect = true;
            schedule_events(r);
        }
    }
    /* A handler waiting for room to write learns the client is gone. */
    if (r->drain_fn) {
        r->pending_drain = true;
        schedule_events(r);
    }
    request_body_arrived(r);
}

void request_on_disconnect(struct request *r, request_event_fn fn, void *ud)
{
    r->disconnect_fn = fn;
    r->disconnect_ud = ud;
    if (fn && r->disconnected) {
        r->pending_disconnect = true;
        schedule_events(r);
    }
}

bool request_disconnected(const struct request *r)
{
    return r->disconnected;
}

void request_drained(struct request *r)
{
    if (r->drain_fn) {
        r->pending_drain = true;
        schedule_events(r);
    }
}

bool request_writable(const struct request *r)
{
    return r->conn && !conn_output_full(r->conn, r);
}

void request_on_drain(struct request *r, request_event_fn fn, void *ud)
{
    r->drain_fn = fn;
    r->drain_ud = ud;
    if (fn && (request_writable(r) || !r->conn))
        request_drained(r);
}

/* ---- request body ---- */

/* Whether a waiting body continuation can run now: there is data (or the
 * end) to hand over, or nothing more can ever come. */
static bool body_ready(const struct request *r)
{
    bool gone = !r->conn;
    if (r->body_too_large || r->body_broken)
        return true;
    if (r->body_final_delivered)
        return gone; /* like ASGI: after the last chunk only the disconnect is left */
    if (r->body_complete)
        return true;
    if (r->body_mode == BODY_CHUNKS && buf_size(&r->body) > 0)
        return true;
    return gone;
}

static void deliver_body(struct defer *d)
{
    struct request *r = container_of(d, struct request, body_defer);
    request_body_fn fn = r->body_fn;
    if (fn && body_ready(r)) {
        void *ud = r->body_ud;
        r->body_fn = NULL;
        bool has_data = r->body_complete || (r->body_mode == BODY_CHUNKS && buf_size(&r->body));
        if (r->body_too_large) {
            fn(r, ud, NULL, 0, false, -EMSGSIZE);
        } else if (r->body_broken) {
            fn(r, ud, NULL, 0, false, -EPIPE);
        } else if (r->body_final_delivered || !has_data) {
            fn(r, ud, NULL, 0, false, -EPIPE);
        } else {
            struct buf data = r->body;
            r->body = (struct buf){0};
            bool more = !r->body_complete;
            if (!more)
                r->body_final_delivered = true;
            fn(r, ud, buf_start(&data), buf_size(&data), more, 0);
            if (r->body.cap == 0 && data.cap <= KEEP_BUFFER_MAX) {
                buf_clear(&data);
                r->body = data;
            } else {
                buf_free(&data);
            }
            if (r->conn)
                conn_body_consumed(r->conn);
        }
    }
    request_release(r);
}

void request_body_arrived(struct request *r)
{
    if (r->body_fn && !r->body_defer.queued && body_ready(r)) {
        request_retain(r);
        defer_schedule(r->w, &r->body_defer, deliver_body);
    }
}

/* Answers Expect: 100-continue the first time the handler asks for the
 * body, and only then, as RFC 9110 10.1.1 intends. */
static void maybe_continue(struct request *r)
{
    struct conn *c = r->conn;
    if (!r->head.expect_continue || r->sent_continue || r->body_complete || !c || c->first != r ||
        r->resp != RESP_NONE)
        return;
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (conn_request_output(c, r, line, sizeof line - 1) == 0)
        r->sent_continue = true;
}

static int start_body(struct request *r, enum body_mode mode, request_body_fn fn, void *ud)
{
    if (r->body_fn)
        return -EBUSY;
    if (r->body_mode == BODY_DISCARD)
        return -EPIPE;
    r->body_mode = mode;
    r->body_fn = fn;
    r->body_ud = ud;
    maybe_continue(r);
    request_body_arrived(r);
    if (r->conn)
        conn_body_consumed(r->conn); /* reading may have paused for us */
    return 0;
}

int request_receive(struct request *r, request_body_fn fn, void *ud)
{
    return start_body(r, BODY_CHUNKS, fn, ud);
}

int request_read_body(struct request *r, request_body_fn fn, void *ud)
{
    return start_body(r, BODY_WHOLE, fn, ud);
}

/* ---- response ---- */

static bool name_is(const struct resp_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

static int parse_length(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

int request_start(struct request *r, int status, const struct resp_header *headers, size_t n,
                  int64_t content_length)
{
    struct conn *c = r->conn;
    struct worker *w = r->w;
    const struct config *cfg = w->cfg;
    if (r->resp != RESP_NONE)
        return -EALREADY;
    if (!c)
        return -EPIPE;
    if (status < 200 || status > 999)
        return -EINVAL;

    bool have_server = false, have_date = false;
    size_t need = 128 + w->default_headers_len;
    for (size_t i = 0; i < n; i++) {
        const struct resp_header *h = &headers[i];
        if (!http_header_name_valid(h->name, h->name_len) ||
            !http_header_value_valid(h->value, h->value_len))
            return -EINVAL;
        need += h->name_len + h->value_len + 4;
        if (name_is(h, "content-length", 14)) {
            int64_t v;
            if (parse_length(h->value, h->value_len, &v) < 0)
                return -EINVAL;
            if (content_length < 0)
                content_length = v;
        } else if (name_is(h, "connection", 10)) {
            if (h->value_len >= 5 && strcasestr(h->value, "close"))
                r->keep_alive = false;
        } else if (name_is(h, "server", 6)) {
            have_server = true;
        } else if (name_is(h, "date", 4)) {
            have_date = true;
        }
    }
    if (w->draining)
        r->keep_alive = false;
    /* Answered before asking for a body the client holds back until 100
     * Continue: that body will never come, so this response ends the
     * connection (and says so). */
    if (r->head.expect_continue && !r->sent_continue && !r->body_complete)
        r->keep_alive = false;

    if (!http_status_has_body(status)) {
        r->framing = FRAME_NONE;
    } else if (content_length >= 0) {
        r->framing = FRAME_LENGTH;
        r->resp_remaining = (uint64_t)content_length;
    } else if (r->head.http_minor >= 1) {
        r->framing = FRAME_CHUNKED;
    } else {
        r->framing = FRAME_CLOSE; /* HTTP/1.0 has no chunked encoding */
        r->keep_alive = false;
    }

    struct buf *out = conn_output_for(c, r);
    char *start = buf_reserve(out, need);
    if (!start)
        return -ENOMEM;
    char *p = PUT_LIT(start, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    const char *reason = http_reason(status);
    p = put(p, reason, strlen(reason));
    p = PUT_LIT(p, "\r\n");
    if (cfg->server_header && !have_server)
        p = PUT_LIT(p, "server: evicorn\r\n");
    if (cfg->date_header && !have_date) {
        p = PUT_LIT(p, "date: ");
        p = put(p, http_date((time_t)ev_now(w->loop)), 29);
        p = PUT_LIT(p, "\r\n");
    }
    p = put(p, w->default_headers, w->default_headers_len);
    for (size_t i = 0; i < n; i++) {
        const struct resp_header *h = &headers[i];
        /* Framing is evicorn's to decide (ASGI servers ignore an app's). */
        if (name_is(h, "content-length", 14) || name_is(h, "transfer-encoding", 17) ||
            name_is(h, "connection", 10))
            continue;
        p = put(p, h->name, h->name_len);
        p = PUT_LIT(p, ": ");
        p = put(p, h->value, h->value_len);
        p = PUT_LIT(p, "\r\n");
    }
    if (r->framing == FRAME_LENGTH) {
        p = PUT_LIT(p, "content-length: ");
        p = http_u64(p, r->resp_remaining);
        p = PUT_LIT(p, "\r\n");
    } else if (r->framing == FRAME_CHUNKED && !r->is_head) {
        p = PUT_LIT(p, "transfer-encoding: chunked\r\n");
    }
    if (!r->keep_alive)
        p = PUT_LIT(p, "connection: close\r\n");
    else if (r->head.http_minor == 0)
        p = PUT_LIT(p, "connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    out->len += (size_t)(p - start);
    r->resp = RESP_STARTED;
    r->status = status;
    return 0;
}

int request_send(struct request *r, const void *data, size_t len, bool more)
{
    if (r->resp == RESP_NONE)
        return -EINVAL;
    if (r->resp == RESP_DONE)
        return -EALREADY;
    struct conn *c = r->conn;
    if (!c)
        return -EPIPE;
    if (r->framing == FRAME_LENGTH) {
        if (len > r->resp_remaining)
            return -EINVAL; /* more than the Content-Length promised */
        r->resp_remaining -= len;
    }
    bool write_body = !r->is_head && r->framing != FRAME_NONE;
    if (len > 0 && write_body) {
        struct buf *out = conn_output_for(c, r);
        if (r->framing == FRAME_CHUNKED) {
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
        if (r->framing == FRAME_CHUNKED && write_body &&
            conn_request_output(c, r, "0\r\n\r\n", 5) < 0)
            return -ENOMEM;
        if (r->framing == FRAME_LENGTH && r->resp_remaining > 0) {
            /* The framing promised more than was sent: the connection
             * cannot carry another response. */
            log_warning("%s: response shorter than its Content-Length; closing", r->client);
            r->keep_alive = false;
        }
        if (r->framing == FRAME_CLOSE)
            r->keep_alive = false;
        request_complete(r);
    }
    return 0;
}

int request_respond(struct request *r, int status, const struct resp_header *headers, size_t n,
                    const void *body, size_t len)
{
    int rc = request_start(r, status, headers, n, (int64_t)len);
    if (rc < 0)
        return rc;
    return request_send(r, body, len, false);
}

int request_respond_error(struct request *r, int status, const char *detail)
{
    if (status == 500 || status == 503) {
        const char *text = http_reason(status);
        static const struct resp_header plain = {"content-type", 12, "text/plain; charset=utf-8",
                                                 25};
        return request_respond(r, status, &plain, 1, text, strlen(text));
    }
    struct buf body = {0};
    if (http_json_detail(&body, detail) < 0) {
        buf_free(&body);
        return -ENOMEM;
    }
    static const struct resp_header json = {"content-type", 12, "application/json", 16};
    int rc = request_respond(r, status, &json, 1, buf_start(&body), buf_size(&body));
    buf_free(&body);
    return rc;
}

bool request_response_started(const struct request *r)
{
    return r->resp != RESP_NONE;
}

static void request_complete(struct request *r)
{
    struct worker *w = r->w;
    r->resp = RESP_DONE;
    if (w->cfg->access_log) {
        if (r->head.method)
            log_access(r->client, r->head.method, r->head.method_len, h1_head_target(&r->head),
                       r->head.target_len, r->head.http_minor, r->status);
        else
            log_access(r->client, "-", 1, "-", 1, 1, r->status);
    }
    worker_request_served(w);
    if (r->conn)
        conn_response_done(r->conn, r);
}

void request_finish(struct request *r, const char *route)
{
    if (r->handler_done)
        return;
    r->handler_done = true;
    r->w->inflight--;
    const char *what = route ? route : "handler";
    if (r->resp == RESP_NONE && r->conn) {
        log_error("%s returned without responding to \"%.*s %.*s\": answering 500", what,
                  (int)r->head.method_len, r->head.method, (int)r->raw_path_len, r->raw_path);
        request_respond_error(r, 500, NULL);
    } else if (r->resp == RESP_STARTED && r->conn) {
        log_error("%s finished without completing its response; closing the connection", what);
        r->keep_alive = false;
        r->conn->closing = true;
        conn_schedule_flush(r->conn);
    }
    request_release(r);
}

/* ---- scope ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Whether the connection's peer may speak for the client (proxy headers). */
static bool peer_trusted(const struct request *r)
{
    const char *allow = r->w->cfg->forwarded_allow_ips;
    const struct conn *c = r->conn;
    if (strcmp(allow, "*") == 0)
        return true;
    if (c->unix_socket)
        return false;
    size_t n = c->peer_ip_len;
    for (const char *p = allow; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && memcmp(p, c->peer, n) == 0)
            return true;
        p = e;
    }
    return false;
}

static void apply_proxy_headers(struct request *r)
{
    size_t len;
    const char *proto = request_header(r, "x-forwarded-proto", &len);
    if (proto) {
        if (len == 5 && strncasecmp(proto, "https", 5) == 0)
            r->scheme = "https";
        else if (len == 4 && strncasecmp(proto, "http", 4) == 0)
            r->scheme = "http";
    }
    const char *xff = request_header(r, "x-forwarded-for", &len);
    if (xff && len > 0) {
        /* The last hop is the one our trusted proxy saw. */
        const char *end = xff + len, *p = end;
        while (p > xff && p[-1] != ',')
            p--;
        while (p < end && *p == ' ')
            p++;
        size_t n = (size_t)(end - p);
        if (n > 0 && n < sizeof r->client - 3)
            snprintf(r->client, sizeof r->client, "%.*s:0", (int)n, p);
    }
}

int request_prepare(struct request *r)
{
    const char *t = h1_head_target(&r->head);
    size_t n = r->head.target_len;
    r->is_head = r->head.method_len == 4 && memcmp(r->head.method, "HEAD", 4) == 0;
    r->keep_alive = r->head.keep_alive && !r->w->draining;

    /* The parser turned an absolute-form target into origin-form. */
    const char *hash = memchr(t, '#', n);
    if (hash)
        n = (size_t)(hash - t);
    const char *q = memchr(t, '?', n);
    r->raw_path = t;
    r->raw_path_len = q ? (size_t)(q - t) : n;
    r->query = q ? q + 1 : t + n;
    r->query_len = q ? (size_t)(t + n - q - 1) : 0;
    if (r->raw_path_len == 0) {
        r->raw_path = "/";
        r->raw_path_len = 1;
    }
    if (r->raw_path[0] != '/' && !(r->raw_path_len == 1 && r->raw_path[0] == '*'))
        return -1;

    r->path = r->raw_path;
    r->path_len = r->raw_path_len;
    if (memchr(r->raw_path, '%', r->raw_path_len)) {
        buf_clear(&r->path_buf);
        char *d = buf_reserve(&r->path_buf, r->raw_path_len);
        if (!d)
            return -1;
        size_t k = 0;
        for (size_t i = 0; i < r->raw_path_len; i++) {
            char ch = r->raw_path[i];
            int hi, lo;
            if (ch == '%' && i + 2 < r->raw_path_len && (hi = hexval(r->raw_path[i + 1])) >= 0 &&
                (lo = hexval(r->raw_path[i + 2])) >= 0) {
                ch = (char)(hi << 4 | lo);
                if (ch == '\0')
                    return -1; /* a NUL would truncate the path for C code */
                i += 2;
            }
            d[k++] = ch;
        }
        r->path_buf.len = k;
        r->path = buf_start(&r->path_buf);
        r->path_len = k;
    }
    if (r->w->cfg->proxy_headers && r->conn && peer_trusted(r))
        apply_proxy_headers(r);
    return 0;
}

const char *request_method(const struct request *r, size_t *len)
{
    *len = r->head.method_len;
    return r->head.method;
}

const char *request_path(const struct request *r, size_t *len)
{
    *len = r->path_len;
    return r->path;
}

const char *request_raw_path(const struct request *r, size_t *len)
{
    *len = r->raw_path_len;
    return r->raw_path;
}

const char *request_query(const struct request *r, size_t *len)
{
    *len = r->query_len;
    return r->query;
}

void request_http_version(const struct request *r, int *major, int *minor)
{
    *major = r->head.http_major;
    *minor = r->head.http_minor;
}

const char *request_scheme(const struct request *r)
{
    return r->scheme;
}

const char *request_client(const struct request *r)
{
    return r->client;
}

size_t request_header_count(const struct request *r)
{
    return r->head.nheaders;
}

void request_header_at(const struct request *r, size_t i, const char **name, size_t *name_len,
                       const char **value, size_t *value_len)
{
    *name = h1_header_name(&r->head, (uint32_t)i);
    *name_len = r->head.headers[i].name_len;
    *value = h1_header_value(&r->head, (uint32_t)i);
    *value_len = r->head.headers[i].value_len;
}

const char *request_header(const struct request *r, const char *name, size_t *len)
{
    int i = h1_head_find(&r->head, name, strlen(name));
    if (i < 0)
        return NULL;
    *len = r->head.headers[i].value_len;
    return h1_header_value(&r->head, (uint32_t)i);
}
