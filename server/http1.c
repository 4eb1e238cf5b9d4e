/* http1: http-parser behind evicorn's own interface; see http1.h. */
#include "http1.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "http1_guard.h"

/* The rest of a method http-parser did not know, as it is read. */
enum method_state { METHOD_IN, METHOD_ENDED, METHOD_BAD };

struct h1_parser {
    http_parser hp;
    struct h1_guard guard;
    struct h1_limits limits;
    const struct h1_callbacks *cb;
    void *ud;
    struct h1_head *head;
    bool in_value;    /* the last header callback was for a value */
    bool in_message;  /* between message begin and complete */
    bool in_trailers; /* past the head: header callbacks are trailers */
    /* http-parser refused the method before its end: the guard alone reads
     * on, and the method's remaining bytes are checked here, to tell an
     * unknown method (501) from an invalid one (400). */
    bool method_pending;
    uint8_t method_state; /* enum method_state */
    int err_status;       /* non-zero once failed */
    const char *err_reason;
};

int h1_head_find(const struct h1_head *h, const char *name, size_t name_len)
{
    for (uint32_t i = 0; i < h->nheaders; i++)
        if (h->headers[i].name_len == name_len && memcmp(h1_header_name(h, i), name, name_len) == 0)
            return (int)i;
    return -1;
}

void h1_head_reset(struct h1_head *h)
{
    buf_clear(&h->store);
    h->nheaders = 0;
    h->target_off = h->target_len = 0;
    h->method = NULL;
    h->method_len = 0;
    h->http_major = h->http_minor = 0;
    h->keep_alive = h->chunked = h->has_content_length = h->expect_continue = false;
    h->content_length = 0;
}

void h1_head_free(struct h1_head *h)
{
    buf_free(&h->store);
    free(h->headers);
    h->headers = NULL;
    h->headers_cap = h->nheaders = 0;
}

void h1_parser_fail(struct h1_parser *p, int status, const char *reason)
{
    if (!p->err_status) {
        p->err_status = status;
        p->err_reason = reason;
    }
}

static struct h1_parser *parser_of(http_parser *hp)
{
    return (struct h1_parser *)hp->data;
}

static int on_message_begin(http_parser *hp)
{
    struct h1_parser *p = parser_of(hp);
    p->head = p->cb->begin(p->ud);
    if (!p->head) {
        h1_parser_fail(p, 503, "Service Unavailable");
        return -1;
    }
    h1_head_reset(p->head);
    p->in_value = false;
    p->in_message = true;
    p->in_trailers = false;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(hp);
    if (buf_append(&p->head->store, at, len) < 0) {
        h1_parser_fail(p, 503, "Service Unavailable");
        return -1;
    }
    p->head->target_len += (uint32_t)len;
    return 0;
}

/* Trailing whitespace is not part of a field value (RFC 9110 5.5);
 * http-parser strips only the leading part. */
static void trim_last_value(struct h1_head *h)
{
    if (h->nheaders == 0)
        return;
    struct h1_header *hd = &h->headers[h->nheaders - 1];
    const char *v = buf_start(&h->store) + hd->value_off;
    while (hd->value_len > 0 && (v[hd->value_len - 1] == ' ' || v[hd->value_len - 1] == '\t'))
        hd->value_len--;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(hp);
    struct h1_head *h = p->head;
    /* Trailer fields of a chunked body are dropped: the head was handed
     * over already (a handler may be reading it), and a trailer must not
     * pose as a header field (RFC 9110 6.5.1). The guard checked and
     * bounded their bytes. */
    if (p->in_trailers)
        return 0;
    if (p->in_value || h->nheaders == 0) {
        trim_last_value(h);
        if (h->nheaders >= p->limits.max_headers) {
            h1_parser_fail(p, 431, "Too many header fields");
            return -1;
        }
        if (h->nheaders == h->headers_cap) {
            uint32_t cap = h->headers_cap ? h->headers_cap * 2 : 16;
            struct h1_header *n = realloc(h->headers, cap * sizeof *n);
            if (!n) {
                h1_parser_fail(p, 503, "Service Unavailable");
                return -1;
            }
            h->headers = n;
            h->headers_cap = cap;
        }
        h->headers[h->nheaders++] =
            (struct h1_header){.name_off = (uint32_t)h->store.len, .value_off = 0};
        p->in_value = false;
    }
    char *dst = buf_reserve(&h->store, len);
    if (!dst) {
        h1_parser_fail(p, 503, "Service Unavailable");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = at[i];
        dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    h->store.len += len;
    h->headers[h->nheaders - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(hp);
    struct h1_head *h = p->head;
    if (p->in_trailers)
        return 0;
    struct h1_header *hd = &h->headers[h->nheaders - 1];
    if (!p->in_value) {
        hd->value_off = (uint32_t)h->store.len;
        p->in_value = true;
    }
    if (buf_append(&h->store, at, len) < 0) {
        h1_parser_fail(p, 503, "Service Unavailable");
        return -1;
    }
    hd->value_len += (uint32_t)len;
    return 0;
}

static bool value_is(const struct h1_head *h, uint32_t i, const char *s)
{
    size_t n = strlen(s);
    return h->headers[i].value_len == n && strncasecmp(h1_header_value(h, i), s, n) == 0;
}

/* Whether s is a uri-host with an optional port (RFC 3986 3.2.2): no
 * whitespace, '/', '\\' or '@', which would let two readers see two hosts. */
static bool is_host(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c && strchr("-._~!$&'()*+,;=%:[]", c))))
            return false;
    }
    return true;
}

/* An absolute-form target (RFC 9112 3.2.2) becomes origin-form, and its
 * authority becomes the Host value, which a server MUST then ignore: the
 * handler sees one host and the path it was routed by. An empty authority
 * or one with userinfo is refused (RFC 9110 4.2.1, 4.2.4). */
static int absolute_form(struct h1_parser *p, struct h1_head *h, int host)
{
    const char *t = h1_head_target(h);
    size_t n = h->target_len, start, end;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
        start = 7;
    else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
        start = 8;
    else
        return 0;
    for (end = start; end < n && t[end] != '/' && t[end] != '?' && t[end] != '#'; end++)
        ;
    if (end == start || !is_host(t + start, end - start)) {
        h1_parser_fail(p, 400, "Invalid HTTP request: invalid request target");
        return -1;
    }
    if (host >= 0) {
        h->headers[host].value_off = h->target_off + (uint32_t)start;
        h->headers[host].value_len = (uint32_t)(end - start);
    }
    size_t rest = n - end;
    if (rest > 0 && t[end] == '/') {
        h->target_off += (uint32_t)end;
        h->target_len = (uint32_t)rest;
        return 0;
    }
    /* No path ("http://h" or "http://h?q"): the path is "/". */
    char *d = buf_reserve(&h->store, rest + 1);
    if (!d) {
        h1_parser_fail(p, 503, "Service Unavailable");
        return -1;
    }
    d[0] = '/';
    memcpy(d + 1, h1_head_target(h) + end, rest);
    h->target_off = (uint32_t)buf_size(&h->store);
    h->target_len = (uint32_t)(rest + 1);
    h->store.len += rest + 1;
    return 0;
}

/* Header-level rules http-parser leaves to us; each is a smuggling or
 * confusion vector when two hops disagree. Returns 0 or fails the parse. */
static int check_request_head(struct h1_parser *p, struct h1_head *h)
{
    unsigned n_cl = 0, n_te = 0, n_host = 0;
    int te = -1, host = -1;
    for (uint32_t i = 0; i < h->nheaders; i++) {
        const struct h1_header *hd = &h->headers[i];
        const char *name = h1_header_name(h, i);
        if (hd->name_len == 4 && memcmp(name, "host", 4) == 0) {
            n_host++;
            host = (int)i;
        } else if (hd->name_len == 14 && memcmp(name, "content-length", 14) == 0) {
            n_cl++;
        } else if (hd->name_len == 17 && memcmp(name, "transfer-encoding", 17) == 0) {
            n_te++;
            te = (int)i;
        } else if (hd->name_len == 6 && memcmp(name, "expect", 6) == 0) {
            if (value_is(h, i, "100-continue"))
                h->expect_continue = true;
        }
    }
    if (h->http_major != 1) {
        h1_parser_fail(p, 505, "HTTP Version Not Supported");
        return -1;
    }
    if (n_te && n_cl) {
        h1_parser_fail(p, 400, "Invalid HTTP request: both Content-Length and Transfer-Encoding");
        return -1;
    }
    if (n_cl > 1) {
        h1_parser_fail(p, 400, "Invalid HTTP request: more than one Content-Length");
        return -1;
    }
    /* evicorn decodes no transfer coding but chunked, so anything else would
     * leave the body's framing unknown. */
    if (n_te > 1 || (n_te == 1 && (!value_is(h, (uint32_t)te, "chunked") || h->http_minor == 0))) {
        h1_parser_fail(p, 400, "Invalid HTTP request: unsupported Transfer-Encoding");
        return -1;
    }
    if (n_host > 1 || (n_host == 0 && h->http_minor >= 1)) {
        h1_parser_fail(p, 400,
                       n_host ? "Invalid HTTP request: more than one Host header"
                              : "Invalid HTTP request: missing Host header");
        return -1;
    }
    if (host >= 0 && !is_host(h1_header_value(h, (uint32_t)host), h->headers[host].value_len)) {
        h1_parser_fail(p, 400, "Invalid HTTP request: invalid Host header");
        return -1;
    }
    if (p->hp.method == HTTP_CONNECT) {
        h1_parser_fail(p, 400, "Invalid HTTP request: CONNECT is not supported");
        return -1;
    }
    /* asterisk-form is for a server-wide OPTIONS only (RFC 9112 3.2.4). */
    if (h->target_len == 1 && *h1_head_target(h) == '*' && p->hp.method != HTTP_OPTIONS) {
        h1_parser_fail(p, 400, "Invalid HTTP request: invalid request target");
        return -1;
    }
    return absolute_form(p, h, host);
}

static int on_headers_complete(http_parser *hp)
{
    struct h1_parser *p = parser_of(hp);
    struct h1_head *h = p->head;
    trim_last_value(h);
    h->http_major = (uint8_t)hp->http_major;
    h->http_minor = (uint8_t)hp->http_minor;
    h->keep_alive = http_should_keep_alive(hp) != 0;
    h->chunked = (hp->flags & F_CHUNKED) != 0;
    h->has_content_length = (hp->flags & F_CONTENTLENGTH) != 0;
    h->content_length = h->has_content_length ? hp->content_length : 0;
    h->method = http_method_str((enum http_method)hp->method);
    h->method_len = (uint8_t)strlen(h->method);
    if (check_request_head(p, h) < 0)
        return -1;
    enum h1_body_kind body =
        h->chunked ? H1_BODY_CHUNKED : (h->content_length ? H1_BODY_LENGTH : H1_BODY_NONE);

    p->in_trailers = true;
    if (p->cb->head(p->ud, h) < 0) {
        h1_parser_fail(p, 400, "Bad Request");
        return -1;
    }
    h1_guard_set_body(&p->guard, body, h->content_length);
    /* Whenever there is no body, tell http-parser so: the guard and the
     * parser then agree that the message ends with its head. */
    return body == H1_BODY_NONE ? 1 : 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct h1_parser *p = parser_of(hp);
    if (p->cb->body(p->ud, at, len) < 0) {
        h1_parser_fail(p, 400, "Bad Request");
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct h1_parser *p = parser_of(hp);
    p->in_message = false;
    p->head = NULL; /* the caller may recycle it from now on */
    if (p->cb->complete(p->ud) < 0) {
        h1_parser_fail(p, 400, "Bad Request");
        return -1;
    }
    /* Stop after each message so the caller decides when the next
     * pipelined one may start. */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

struct h1_parser *h1_parser_new(const struct h1_limits *limits, const struct h1_callbacks *cb,
                                void *ud)
{
    struct h1_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->limits = *limits;
    p->cb = cb;
    p->ud = ud;
    h1_parser_reset(p);
    return p;
}

void h1_parser_reset(struct h1_parser *p)
{
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    h1_guard_init(&p->guard, p->limits.max_head, p->limits.max_line);
    h1_guard_set_first_line(&p->guard, H1_FIRST_LINE_REQUEST);
    p->head = NULL;
    p->in_value = p->in_message = p->in_trailers = false;
    p->method_pending = false;
    p->err_status = 0;
    p->err_reason = NULL;
}

void h1_parser_free(struct h1_parser *p)
{
    free(p);
}

bool h1_parser_in_message(const struct h1_parser *p)
{
    return p->in_message || h1_guard_in_message(&p->guard);
}

const char *h1_parser_error(const struct h1_parser *p, int *status)
{
    *status = p->err_status;
    return p->err_reason;
}

/* Whether the head stored so far has a field with this lower-case name. */
static bool head_has(const struct h1_parser *p, const char *name)
{
    return p->head && h1_head_find(p->head, name, strlen(name)) >= 0;
}

/* Follows the method through data: every byte a tchar up to the SP that
 * ends it (RFC 9110 9.1). The bytes before the one http-parser refused
 * were a prefix of a method it knows, so only these need a look. */
static void scan_method(struct h1_parser *p, const char *data, size_t len)
{
    for (size_t i = 0; i < len && p->method_state == METHOD_IN; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == ' ')
            p->method_state = METHOD_ENDED;
        else if (!http_is_tchar(c))
            p->method_state = METHOD_BAD;
    }
}

/* The method http-parser does not know: once the guard has seen the whole
 * head, a method that is a valid token in an HTTP/1.x request is merely
 * unimplemented (RFC 9110 9.1: 501); an invalid method is 400, and so is a
 * request line of another version (the HTTP/2 connection preface,
 * "PRI * HTTP/2.0"), which is not an HTTP/1 request at all. Returns 0
 * while still reading the head, or -1 with the answer. */
static ssize_t unknown_method(struct h1_parser *p, enum h1_guard_result g)
{
    if (p->method_state == METHOD_BAD) {
        h1_parser_fail(p, 400, "Invalid HTTP request: invalid method");
        return -1;
    }
    if (g == H1_GUARD_ERROR) {
        h1_parser_fail(p, p->guard.status, p->guard.reason);
        return -1;
    }
    if (g == H1_GUARD_MORE) {
        p->method_pending = true;
        p->in_message = true;
        return 0;
    }
    if (p->method_state == METHOD_ENDED && h1_guard_version_major(&p->guard) == '1')
        h1_parser_fail(p, 501, "Not Implemented: unknown method");
    else
        h1_parser_fail(p, 400, "Invalid HTTP request: invalid method");
    return -1;
}

static ssize_t parse_error(struct h1_parser *p)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (!p->err_status) {
        /* http-parser's own description names the exact problem. */
        p->err_status = 400;
        switch (e) {
        case HPE_INVALID_METHOD:
            p->err_reason = "Invalid HTTP request: invalid method";
            break;
        case HPE_INVALID_URL:
            p->err_reason = "Invalid HTTP request: invalid request target";
            break;
        case HPE_INVALID_VERSION:
            p->err_reason = "Invalid HTTP request: invalid HTTP version";
            break;
        case HPE_INVALID_HEADER_TOKEN:
            p->err_reason = "Invalid HTTP request: invalid character in header";
            break;
        case HPE_INVALID_CONTENT_LENGTH:
            p->err_reason = "Invalid HTTP request: invalid Content-Length";
            break;
        case HPE_UNEXPECTED_CONTENT_LENGTH:
            /* http-parser raises this for a second Content-Length and for
             * Content-Length beside Transfer-Encoding alike. */
            p->err_reason = head_has(p, "transfer-encoding")
                                ? "Invalid HTTP request: both Content-Length and Transfer-Encoding"
                                : "Invalid HTTP request: more than one Content-Length";
            break;
        case HPE_INVALID_CHUNK_SIZE:
            p->err_reason = "Invalid HTTP request: invalid chunk size";
            break;
        case HPE_INVALID_TRANSFER_ENCODING:
            p->err_reason = "Invalid HTTP request: unsupported Transfer-Encoding";
            break;
        default:
            p->err_reason = "Invalid HTTP request";
            break;
        }
    }
    return -1;
}

ssize_t h1_parser_feed(struct h1_parser *p, const char *data, size_t len)
{
    if (p->err_status)
        return -1;
    if (p->method_pending) {
        size_t used;
        enum h1_guard_result g = h1_guard_scan(&p->guard, data, len, &used);
        scan_method(p, data, used);
        ssize_t n = unknown_method(p, g);
        return n < 0 ? -1 : (ssize_t)used;
    }
    size_t total = 0;
    while (total < len) {
        size_t used;
        enum h1_guard_result g = h1_guard_scan(&p->guard, data + total, len - total, &used);
        if (g == H1_GUARD_ERROR) {
            h1_parser_fail(p, p->guard.status, p->guard.reason);
            return -1;
        }
        size_t n = http_parser_execute(&p->hp, &settings, data + total, used);
        enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
        if (e == HPE_INVALID_METHOD) {
            /* n is where http-parser stopped: at the byte it refused. */
            p->method_state = METHOD_IN;
            scan_method(p, data + total + n, used - n);
            ssize_t k = unknown_method(p, g);
            return k < 0 ? -1 : (ssize_t)(total + used);
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(&p->hp, 0);
            total += n;
            /* The guard and the parser must agree on where a message ends;
             * if they do not, the framing is ambiguous: refuse it. */
            if (n != used || h1_guard_in_message(&p->guard)) {
                h1_parser_fail(p, 400, "Invalid HTTP request: ambiguous message framing");
                return -1;
            }
            return (ssize_t)total;
        }
        if (e != HPE_OK)
            return parse_error(p);
        if (n != used || g == H1_GUARD_MESSAGE_END) {
            h1_parser_fail(p, 400, "Invalid HTTP request: ambiguous message framing");
            return -1;
        }
        total += n;
    }
    return (ssize_t)total;
}

int h1_parser_finish(struct h1_parser *p)
{
    if (p->err_status)
        return -1;
    if (!h1_parser_in_message(p))
        return 0;
    /* A request's body is never delimited by the close (RFC 9112 6.3). */
    h1_parser_fail(p, 400, "message cut short by end of stream");
    return -1;
}
