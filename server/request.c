/* request: the life of one HTTP exchange; see request.h.
 *
 * Requests are recycled through their protocol's pool with their buffers,
 * so a keep-alive connection serving small requests allocates nothing once
 * warm. */
#include "request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "access_log.h"
#include "config.h"
#include "container.h"
#include "log.h"
#include "metrics.h"
#include "proxy_trust.h"

/* Requests kept for reuse per pool, and the largest buffer kept with one:
 * bigger ones are freed rather than pinned. */
#define FREE_REQUESTS_MAX 256
#define KEEP_BUFFER_MAX   (64 * 1024)

static void request_complete(struct request *r);
static void body_arrived(struct request *r);

/* ---- life ---- */

void request_pool_init(struct request_pool *pool, const struct request_io *io)
{
    *pool = (struct request_pool){.io = io};
}

static void request_destroy(struct request *r)
{
    r->io->destroy(r);
    h1_head_free(&r->head);
    buf_free(&r->body);
    buf_free(&r->path_buf);
    free(r);
}

void request_pool_clear(struct request_pool *pool)
{
    while (pool->free) {
        struct request *r = pool->free;
        pool->free = r->next_free;
        request_destroy(r);
    }
    pool->nfree = 0;
}

struct request *request_alloc(struct request_pool *pool, struct request_ctx *ctx)
{
    struct request *r = pool->free;
    if (r) {
        pool->free = r->next_free;
        pool->nfree--;
    } else {
        r = calloc(1, pool->io->size);
        if (!r)
            return NULL;
    }
    /* Keep the storage of recycled buffers; reset everything else. */
    struct h1_head head = r->head;
    struct buf body = r->body, path_buf = r->path_buf;
    memset(r, 0, sizeof *r);
    h1_head_reset(&head);
    buf_clear(&body);
    buf_clear(&path_buf);
    r->head = head;
    r->body = body;
    r->path_buf = path_buf;
    r->ctx = ctx;
    r->io = pool->io;
    r->pool = pool;
    r->refs = 1; /* the protocol's */
    r->attached = true;
    r->scheme = "http";
    if (ctx->cfg && ctx->cfg->access_log_format)
        r->log_started = ev_time();
    r->io->reset(r);
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
    struct request_pool *pool = r->pool;
    if (pool->nfree >= FREE_REQUESTS_MAX) {
        request_destroy(r);
        return;
    }
    shrink(&r->head.store);
    shrink(&r->body);
    shrink(&r->path_buf);
    r->next_free = pool->free;
    pool->free = r;
    pool->nfree++;
}

static void run_dispatch(struct defer *d)
{
    struct request *r = container_of(d, struct request, dispatch_defer);
    if (r->resp != RESP_NONE || !r->attached) {
        /* Already answered with a parse error, or the client left. */
        request_finish(r, NULL);
        return;
    }
    r->ctx->dispatch(r, r->ctx->dispatch_ud);
}

void request_dispatch_later(struct request *r)
{
    r->dispatched = true;
    r->refs++; /* the handler's, dropped by request_finish */
    r->ctx->inflight++;
    metrics_request_dispatched(&r->metrics_start_ns);
    defer_schedule(r->ctx->defer, &r->dispatch_defer, run_dispatch);
}

void request_finish(struct request *r, const char *route)
{
    if (r->handler_done)
        return;
    r->handler_done = true;
    r->ctx->inflight--;
    metrics_request_finished();
    const char *what = route ? route : "handler";
    if (r->resp == RESP_NONE && r->attached) {
        log_error("%s returned without responding to \"%.*s %.*s\": answering 500", what,
                  (int)r->head.method_len, r->head.method, (int)r->raw_path_len, r->raw_path);
        request_respond_error(r, 500, NULL);
    } else if (r->resp == RESP_STARTED && r->attached) {
        log_error("%s finished without completing its response; closing the connection", what);
        r->io->abandon(r);
    }
    request_release(r);
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
        defer_schedule(r->ctx->defer, &r->event_defer, run_events);
    }
}

void request_detach(struct request *r)
{
    r->attached = false;
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
    body_arrived(r);
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
    return r->attached && r->io->writable(r);
}

void request_on_drain(struct request *r, request_event_fn fn, void *ud)
{
    r->drain_fn = fn;
    r->drain_ud = ud;
    if (fn && (request_writable(r) || !r->attached))
        request_drained(r);
}

/* ---- request body ---- */

/* Whether a waiting body continuation can run now: there is data (or the
 * end) to hand over, or nothing more can ever come. */
static bool body_ready(const struct request *r)
{
    bool gone = !r->attached;
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
        } else if (r->body_broken || r->body_final_delivered || !has_data) {
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
            if (r->attached)
                r->io->body_taken(r);
        }
    }
    request_release(r);
}

static void body_arrived(struct request *r)
{
    if (r->body_fn && !r->body_defer.queued && body_ready(r)) {
        request_retain(r);
        defer_schedule(r->ctx->defer, &r->body_defer, deliver_body);
    }
}

int request_body_data(struct request *r, const char *data, size_t len)
{
    r->body_received += len;
    if (r->body_mode == BODY_DISCARD)
        return 0;
    if (buf_append(&r->body, data, len) < 0)
        return -ENOMEM;
    body_arrived(r);
    return 0;
}

void request_body_end(struct request *r)
{
    r->body_complete = true;
    body_arrived(r);
}

void request_body_failed(struct request *r, bool too_large)
{
    /* The handler may be reading a body that turned out broken: it gets an
     * error, never a truncated body presented as whole. */
    r->body_too_large = too_large;
    r->body_broken = true;
    body_arrived(r);
}

void request_discard_body(struct request *r)
{
    r->body_mode = BODY_DISCARD;
    buf_free(&r->body);
}

size_t request_body_held(const struct request *r)
{
    if (r->body_mode == BODY_WHOLE || r->body_mode == BODY_DISCARD)
        return 0; /* a whole body is wanted, or none: never pause for it */
    return buf_size(&r->body);
}

static int start_body(struct request *r, enum request_body_mode mode, request_body_fn fn, void *ud)
{
    if (r->body_fn)
        return -EBUSY;
    if (r->body_mode == BODY_DISCARD)
        return -EPIPE;
    r->body_mode = mode;
    r->body_fn = fn;
    r->body_ud = ud;
    if (r->attached)
        r->io->body_wanted(r);
    body_arrived(r);
    if (r->attached)
        r->io->body_taken(r); /* reading may have paused for us */
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

static bool name_is(const struct http_header *h, const char *name, size_t len)
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

int request_start(struct request *r, int status, const struct http_header *headers, size_t n,
                  int64_t content_length)
{
    if (r->resp != RESP_NONE)
        return -EALREADY;
    if (!r->attached)
        return -EPIPE;
    if (status < 200 || status > 999)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        const struct http_header *h = &headers[i];
        if (!http_is_token(h->name, h->name_len) || !http_field_value_valid(h->value, h->value_len))
            return -EINVAL;
        if (name_is(h, "content-length", 14)) {
            int64_t v;
            if (parse_length(h->value, h->value_len, &v) < 0)
                return -EINVAL;
            if (content_length < 0)
                content_length = v;
        }
    }
    int rc = r->io->start(r, status, headers, n, content_length);
    if (rc < 0)
        return rc;
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
    if (!r->attached)
        return -EPIPE;
    int rc = r->io->send(r, data, len, more);
    if (rc < 0)
        return rc;
    r->log_bytes += len;
    if (!more)
        request_complete(r);
    return 0;
}

int request_send_file(struct request *r, int fd, uint64_t off, uint64_t len, bool more)
{
    int rc = 0;
    if (r->resp == RESP_NONE)
        rc = -EINVAL;
    else if (r->resp == RESP_DONE)
        rc = -EALREADY;
    else if (!r->attached)
        rc = -EPIPE;
    else if (!r->io->send_file)
        rc = -EOPNOTSUPP;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    rc = r->io->send_file(r, fd, off, len, more);
    if (rc < 0)
        return rc;
    r->log_bytes += len;
    if (!more)
        request_complete(r);
    return 0;
}

int request_upgrade(struct request *r, const struct http_header *headers, size_t n,
                    void (*attach)(void *ud, struct conn *c), void *ud)
{
    if (!r->ws_handshake || !r->io->upgrade)
        return -EPERM;
    if (r->resp != RESP_NONE)
        return -EALREADY;
    if (!r->attached)
        return -EPIPE;
    for (size_t i = 0; i < n; i++)
        if (!http_is_token(headers[i].name, headers[i].name_len) ||
            !http_field_value_valid(headers[i].value, headers[i].value_len))
            return -EINVAL;
    int rc = r->io->upgrade(r, headers, n, attach, ud);
    if (rc < 0)
        return rc;
    r->status = 101;
    request_complete(r);
    return 0;
}

int request_respond(struct request *r, int status, const struct http_header *headers, size_t n,
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
        static const struct http_header plain = {"content-type", 12, "text/plain; charset=utf-8",
                                                 25};
        return request_respond(r, status, &plain, 1, text, strlen(text));
    }
    struct buf body = {0};
    if (http_json_detail(&body, detail) < 0) {
        buf_free(&body);
        return -ENOMEM;
    }
    static const struct http_header json = {"content-type", 12, "application/json", 16};
    int rc = request_respond(r, status, &json, 1, buf_start(&body), buf_size(&body));
    buf_free(&body);
    return rc;
}

bool request_response_started(const struct request *r)
{
    return r->resp != RESP_NONE;
}

static const char *header_for_log(const void *ud, const char *name, size_t *len)
{
    return request_header(ud, name, len);
}

/* The access-log line of --access-log-format (access_log.h). */
static void log_access_formatted_request(struct request *r)
{
    struct access_entry e = {
        .client = &r->client,
        .method = r->head.method,
        .method_len = r->head.method ? r->head.method_len : 0,
        .target = r->head.method ? h1_head_target(&r->head) : NULL,
        .target_len = r->head.method ? r->head.target_len : 0,
        .http_minor = r->head.method ? r->head.http_minor : 1,
        .status = r->status,
        .bytes = r->log_bytes,
        .duration = r->log_started > 0 ? ev_time() - r->log_started : 0,
        .route = r->log_route,
        .header = r->head.method ? header_for_log : NULL,
        .header_ud = r,
    };
    log_access_formatted(r->ctx->cfg->access_log_format, &e);
}

static void request_complete(struct request *r)
{
    struct request_ctx *ctx = r->ctx;
    r->resp = RESP_DONE;
    metrics_request_done(r->metrics_route, r->head.method, r->head.method_len, r->status,
                         r->metrics_start_ns);
    if (ctx->cfg->access_log && ctx->cfg->access_log_format)
        log_access_formatted_request(r);
    else if (ctx->cfg->access_log) {
        if (r->head.method)
            log_access(&r->client, r->head.method, r->head.method_len, h1_head_target(&r->head),
                       r->head.target_len, r->head.http_minor, r->status);
        else
            log_access(&r->client, "-", 1, "-", 1, 1, r->status);
    }
    if (ctx->served)
        ctx->served(ctx->served_ud);
    if (r->attached)
        r->io->done(r);
}

/* ---- scope ---- */

/* Whether the head has X-Forwarded-Proto or X-Forwarded-For (names are
 * lowercased by the parser). */
static bool has_forwarded_headers(const struct request *r)
{
    for (uint32_t i = 0; i < r->head.nheaders; i++) {
        size_t n = r->head.headers[i].name_len;
        if ((n == 15 || n == 17) && memcmp(h1_header_name(&r->head, i), "x-forwarded-", 12) == 0)
            return true;
    }
    return false;
}

/* X-Forwarded-Proto and X-Forwarded-For from a trusted proxy, as uvicorn
 * reads them (proxy_trust.h). */
static void apply_proxy_headers(struct request *r)
{
    size_t len;
    const char *proto = request_header(r, "x-forwarded-proto", &len);
    if (proto) {
        while (len && (*proto == ' ' || *proto == '\t'))
            proto++, len--;
        while (len && (proto[len - 1] == ' ' || proto[len - 1] == '\t'))
            len--;
        if (len == 5 && memcmp(proto, "https", 5) == 0)
            r->scheme = "https";
        else if (len == 4 && memcmp(proto, "http", 4) == 0)
            r->scheme = "http";
    }
    const char *values[16];
    size_t lens[16], n = 0;
    for (uint32_t i = 0; i < r->head.nheaders && n < 16; i++)
        if (r->head.headers[i].name_len == 15 &&
            memcmp(h1_header_name(&r->head, i), "x-forwarded-for", 15) == 0) {
            values[n] = h1_header_value(&r->head, i);
            lens[n++] = r->head.headers[i].value_len;
        }
    struct forwarded_client fc;
    if (n && proxy_trust_client(r->ctx->cfg->proxy_trust, values, lens, n, &fc) &&
        fc.host_len < ADDR_IP_MAX)
        addr_set(&r->client, fc.host, fc.host_len, (uint16_t)fc.port);
}

int request_prepare(struct request *r, const struct addr *peer)
{
    const char *t = h1_head_target(&r->head);
    size_t n = r->head.target_len;
    r->is_head = r->head.method_len == 4 && memcmp(r->head.method, "HEAD", 4) == 0;
    r->client = *peer;

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
            if (ch == '%' && i + 2 < r->raw_path_len &&
                (hi = http_hex_digit((unsigned char)r->raw_path[i + 1])) >= 0 &&
                (lo = http_hex_digit((unsigned char)r->raw_path[i + 2])) >= 0) {
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
    /* The peer's trust is looked up only for a request that carries the
     * headers: the lookup parses its address, on every request otherwise. */
    const struct proxy_trust *trust = r->ctx->cfg->proxy_trust;
    if (r->ctx->cfg->proxy_headers && trust && has_forwarded_headers(r) &&
        (peer->unix_socket ? proxy_trust_everyone(trust)
                           : proxy_trust_has(trust, peer->ip, strlen(peer->ip))))
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

const struct addr *request_client(const struct request *r)
{
    return &r->client;
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
