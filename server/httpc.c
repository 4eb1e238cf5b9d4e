/* httpc: outbound HTTP/1.1 client on the worker's loop; see httpc.h.
 *
 * One struct httpc_request owns everything an exchange needs: the socket and
 * its watchers, the serialized request (head and a copy of the body), the
 * response parser, head and body, and the resolved address list. It is
 * freed right after the done callback returns, and only there, so the caller
 * never sees a half-freed request. One TCP connection per request, closed at
 * the end (Connection: close): no connection pooling in this version.
 *
 * Name resolution is the one blocking step; it runs as a pool job that owns
 * a small struct dns_job (host, port, result). The request points to the
 * job and the job back to the request; when the request ends first
 * (cancelled or timed out) it clears the job's back pointer, and the job's
 * done callback, finding it NULL, frees the result and itself. Both pointers
 * are touched only on the loop thread; the pool thread only fills in the
 * result.
 *
 * Errors found inside httpc_start (bad URL, a connect to a literal address
 * that fails at once) are held and reported by a zero-delay timer, so done
 * never runs inside httpc_start. */
#include "httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "buf.h"
#include "container.h"
#include "log.h"
#include "pool.h"

#define DEFAULT_CONNECT_TIMEOUT 5.0
#define DEFAULT_TIMEOUT         30.0
#define DEFAULT_MAX_RESPONSE    ((size_t)8 * 1024 * 1024)
/* Response heads are small; these only stop a hostile server from making
 * the worker buffer without bound. */
#define MAX_RESPONSE_HEAD    (64 * 1024)
#define MAX_STATUS_LINE      (8 * 1024)
#define MAX_RESPONSE_HEADERS 256
#define READ_CHUNK           (16 * 1024)
/* Reads per readiness event, so one fast server cannot starve the loop. */
#define READS_PER_EVENT 16
#define MAX_HOST_LEN    253 /* longest DNS name */

enum state {
    ST_STARTING,   /* inside httpc_start, or an error waits for the kick timer */
    ST_RESOLVING,  /* a dns_job is in flight */
    ST_CONNECTING, /* non-blocking connect in progress */
    ST_EXCHANGING, /* connected: writing the request and reading the response */
    ST_DONE,       /* done is running; the request is freed when it returns */
};

struct httpc_request;

/* Owned by the pool job while it runs, then by whoever sees it last on the
 * loop thread: dns_done frees it. */
struct dns_job {
    struct pool_job job;
    struct httpc_request *req; /* loop thread only; NULL once the request ended */
    struct addrinfo *res;      /* written by the pool thread */
    int gai_err, sys_err;
    char port[8];
    char host[]; /* NUL-terminated */
};

struct httpc_request {
    struct ev_loop *loop;
    struct pool *pool;
    httpc_done_fn done;
    void *ud;
    enum state state;
    bool literal;   /* the host is an IP address */
    bool is_head;   /* HEAD request: the response has no body */
    bool got_bytes; /* any response byte arrived */
    bool interim;   /* the message being parsed is a 1xx */
    bool complete;  /* the final response is complete */
    int err;        /* error held for the kick timer or set by a parser callback */
    int last_err;   /* errno of the last failed connection attempt */
    int write_err;  /* errno of a failed send; reading goes on */
    double connect_timeout, timeout;
    size_t max_response;
    char host[MAX_HOST_LEN + 1];      /* without brackets */
    char authority[MAX_HOST_LEN + 9]; /* host[:port] as in the URL, for Host and messages */
    char port_str[8];
    uint16_t port;
    char peer[MAX_HOST_LEN + ADDR_TEXT_MAX + 16]; /* the address being connected, for messages */

    int fd;
    ev_io io;
    ev_timer connect_timer; /* resolution, then each connection attempt */
    ev_timer total_timer;   /* the whole exchange */
    ev_timer kick;          /* reports an error found inside httpc_start */

    struct dns_job *dns;      /* in flight, or NULL */
    struct addrinfo *ai_list; /* from getaddrinfo (freed with the request), or NULL */
    struct addrinfo *ai_next; /* next address to try */
    struct addrinfo lit_ai;   /* the one address of a literal host */
    struct sockaddr_storage lit_addr;

    struct buf out; /* request bytes not yet sent */
    struct h1_parser *parser;
    struct h1_head head;
    struct buf body;
    char errmsg[512];
};

static void finish(struct httpc_request *r, int err);

/* ---- small helpers ---- */

static void set_error(struct httpc_request *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct httpc_request *r, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    r->err = err;
}

/* Reports r->err: now from the loop, or through the kick timer when still
 * inside httpc_start. */
static void fail(struct httpc_request *r)
{
    if (r->state == ST_STARTING) {
        ev_timer_start(r->loop, &r->kick);
        return;
    }
    finish(r, r->err);
}

static bool name_is(const struct http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static int put(struct buf *b, const char *s, size_t n)
{
    return buf_append(b, s, n);
}

static int put_header(struct buf *b, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    if (put(b, name, name_len) < 0 || put(b, ": ", 2) < 0 || put(b, value, value_len) < 0 ||
        put(b, "\r\n", 2) < 0)
        return -1;
    return 0;
}

/* ---- URL ---- */

static bool host_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Splits url into host, port and request target (a run of url). Returns 0,
 * or an error with the message set. */
static int parse_url(struct httpc_request *r, const char *url, const char **target,
                     size_t *target_len)
{
    if (!url) {
        set_error(r, -EINVAL, "no URL");
        return r->err;
    }
    const char *sep = strstr(url, "://");
    size_t scheme_len = sep ? (size_t)(sep - url) : 0;
    bool scheme_ok = scheme_len > 0 && ((url[0] | 0x20) >= 'a' && (url[0] | 0x20) <= 'z');
    for (size_t i = 0; scheme_ok && i < scheme_len; i++) {
        unsigned char c = (unsigned char)url[i];
        scheme_ok = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
                    c == '+' || c == '-' || c == '.';
    }
    if (!scheme_ok) {
        set_error(r, -EINVAL, "invalid URL \"%.200s\"", url);
        return r->err;
    }
    if (scheme_len != 4 || strncasecmp(url, "http", 4) != 0) {
        set_error(r, -EPROTONOSUPPORT, "URL scheme \"%.*s\" is not supported (only http)",
                  (int)(scheme_len > 32 ? 32 : scheme_len), url);
        return r->err;
    }

    const char *auth = sep + 3;
    size_t auth_len = strcspn(auth, "/?#");
    const char *auth_end = auth + auth_len;
    if (memchr(auth, '@', auth_len)) {
        set_error(r, -EINVAL, "user info in URLs is not supported");
        return r->err;
    }
    const char *host = auth, *host_end, *after;
    if (auth_len > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (!close) {
            set_error(r, -EINVAL, "invalid IPv6 address in URL \"%.200s\"", url);
            return r->err;
        }
        host = auth + 1;
        host_end = close;
        after = close + 1;
    } else {
        host_end = memchr(auth, ':', auth_len);
        if (!host_end)
            host_end = auth_end;
        after = host_end;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0) {
        set_error(r, -EINVAL, "URL \"%.200s\" has no host", url);
        return r->err;
    }
    if (host_len > MAX_HOST_LEN) {
        set_error(r, -EINVAL, "host name in URL is too long");
        return r->err;
    }
    memcpy(r->host, host, host_len);
    r->host[host_len] = '\0';

    /* Port: empty means the default, like an absent one (RFC 3986 3.2.3). */
    unsigned long port = 80;
    size_t authority_len = auth_len;
    if (after < auth_end) {
        if (*after != ':') {
            set_error(r, -EINVAL, "invalid host in URL \"%.200s\"", url);
            return r->err;
        }
        const char *p = after + 1;
        size_t digits = (size_t)(auth_end - p);
        if (digits == 0) {
            authority_len--; /* drop the lone ':' from Host */
        } else {
            port = 0;
            for (size_t i = 0; i < digits; i++) {
                if (p[i] < '0' || p[i] > '9' || port > 65535) {
                    port = 0;
                    break;
                }
                port = port * 10 + (unsigned long)(p[i] - '0');
            }
            if (port == 0 || port > 65535) {
                set_error(r, -EINVAL, "invalid port in URL \"%.200s\"", url);
                return r->err;
            }
        }
    }
    r->port = (uint16_t)port;
    snprintf(r->port_str, sizeof r->port_str, "%u", (unsigned)r->port);
    memcpy(r->authority, auth, authority_len);
    r->authority[authority_len] = '\0';

    if (auth[0] == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->lit_addr;
        if (inet_pton(AF_INET6, r->host, &sin6->sin6_addr) != 1) {
            set_error(r, -EINVAL, "invalid IPv6 address in URL \"%.200s\"", url);
            return r->err;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(r->port);
        r->lit_ai.ai_family = AF_INET6;
        r->lit_ai.ai_addrlen = sizeof *sin6;
        r->literal = true;
    } else {
        for (size_t i = 0; i < host_len; i++) {
            if (!host_char((unsigned char)r->host[i])) {
                set_error(r, -EINVAL, "invalid host in URL \"%.200s\"", url);
                return r->err;
            }
        }
        struct sockaddr_in *sin = (struct sockaddr_in *)&r->lit_addr;
        if (inet_pton(AF_INET, r->host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons(r->port);
            r->lit_ai.ai_family = AF_INET;
            r->lit_ai.ai_addrlen = sizeof *sin;
            r->literal = true;
        }
    }
    if (r->literal) {
        r->lit_ai.ai_socktype = SOCK_STREAM;
        r->lit_ai.ai_addr = (struct sockaddr *)&r->lit_addr;
        r->ai_next = &r->lit_ai;
    }

    /* The target: path and query, without the fragment (never sent). */
    *target = auth_end;
    *target_len = strcspn(auth_end, "#");
    for (size_t i = 0; i < *target_len; i++) {
        unsigned char c = (unsigned char)auth_end[i];
        if (c <= 0x20 || c == 0x7f) {
            set_error(r, -EINVAL, "invalid character in URL path \"%.200s\"", url);
            return r->err;
        }
    }
    return 0;
}

/* ---- building the request ---- */

/* Validates the options and serializes the request into r->out. Returns 0,
 * -ENOMEM, or another error with the message set. */
static int prepare(struct httpc_request *r, const struct httpc_options *opt)
{
    const char *target = NULL;
    size_t target_len = 0;
    if (parse_url(r, opt->url, &target, &target_len) < 0)
        return r->err;

    const char *method = opt->method ? opt->method : "GET";
    size_t method_len = strlen(method);
    if (!http_is_token(method, method_len)) {
        set_error(r, -EINVAL, "invalid method \"%.40s\"", method);
        return r->err;
    }
    r->is_head = strcmp(method, "HEAD") == 0;
    if (opt->body_len && !opt->body) {
        set_error(r, -EINVAL, "body_len without a body");
        return r->err;
    }
    if (opt->nheaders && !opt->headers) {
        set_error(r, -EINVAL, "nheaders without headers");
        return r->err;
    }

    const struct http_header *host_h = NULL, *agent_h = NULL;
    for (size_t i = 0; i < opt->nheaders; i++) {
        const struct http_header *h = &opt->headers[i];
        if ((h->name_len && !h->name) || !http_is_token(h->name, h->name_len)) {
            set_error(r, -EINVAL, "invalid request header name \"%.*s\"",
                      (int)(h->name && h->name_len < 64 ? h->name_len : 0), h->name ? h->name : "");
            return r->err;
        }
        if ((h->value_len && !h->value) || !http_field_value_valid(h->value, h->value_len)) {
            set_error(r, -EINVAL, "invalid value for request header %.*s",
                      (int)(h->name_len < 64 ? h->name_len : 64), h->name);
            return r->err;
        }
        if (name_is(h, "content-length") || name_is(h, "transfer-encoding") ||
            name_is(h, "connection")) {
            set_error(r, -EINVAL, "request header %.*s is set by httpc", (int)h->name_len, h->name);
            return r->err;
        }
        if (name_is(h, "host"))
            host_h = h;
        else if (name_is(h, "user-agent"))
            agent_h = h;
    }

    struct buf *b = &r->out;
    bool with_length = opt->body_len > 0 || strcmp(method, "POST") == 0 ||
                       strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    if (put(b, method, method_len) < 0 || put(b, " ", 1) < 0)
        return -ENOMEM;
    if (target_len == 0 || target[0] == '?') {
        if (put(b, "/", 1) < 0)
            return -ENOMEM;
    }
    if (put(b, target, target_len) < 0 || put(b, " HTTP/1.1\r\n", 11) < 0)
        return -ENOMEM;
    int rc = host_h ? put_header(b, "Host", 4, host_h->value, host_h->value_len)
                    : put_header(b, "Host", 4, r->authority, strlen(r->authority));
    if (rc < 0)
        return -ENOMEM;
    rc = agent_h ? put_header(b, "User-Agent", 10, agent_h->value, agent_h->value_len)
                 : put_header(b, "User-Agent", 10, "evicorn", 7);
    if (rc < 0)
        return -ENOMEM;
    for (size_t i = 0; i < opt->nheaders; i++) {
        const struct http_header *h = &opt->headers[i];
        if (h == host_h || h == agent_h || name_is(h, "host") || name_is(h, "user-agent"))
            continue; /* one of each: the last given wins */
        if (put_header(b, h->name, h->name_len, h->value, h->value_len) < 0)
            return -ENOMEM;
    }
    if (put_header(b, "Connection", 10, "close", 5) < 0)
        return -ENOMEM;
    if (with_length) {
        char len[24];
        int n = snprintf(len, sizeof len, "%zu", opt->body_len);
        if (put_header(b, "Content-Length", 14, len, (size_t)n) < 0)
            return -ENOMEM;
    }
    if (put(b, "\r\n", 2) < 0 || (opt->body_len && put(b, opt->body, opt->body_len) < 0))
        return -ENOMEM;
    return 0;
}

/* ---- response parsing ---- */

static struct h1_head *on_begin(void *ud)
{
    struct httpc_request *r = ud;
    return &r->head;
}

static int on_head(void *ud, struct h1_head *head)
{
    struct httpc_request *r = ud;
    if (head->status < 100) {
        set_error(r, -EPROTO, "invalid status %u from %s", (unsigned)head->status, r->peer);
        return -1;
    }
    if (head->status == 101) {
        set_error(r, -EPROTO, "unexpected 101 Switching Protocols from %s", r->peer);
        return -1;
    }
    if (head->status < 200) { /* interim: skipped */
        r->interim = true;
        return 0;
    }
    if (r->is_head)
        return H1_SKIP_BODY;
    if (!head->chunked && head->has_content_length && head->content_length > r->max_response) {
        set_error(r, -EMSGSIZE, "response body from %s is %llu bytes, over the limit of %zu",
                  r->peer, (unsigned long long)head->content_length, r->max_response);
        return -1;
    }
    return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
    struct httpc_request *r = ud;
    if (len > r->max_response - buf_size(&r->body)) {
        set_error(r, -EMSGSIZE, "response body from %s is over the limit of %zu bytes", r->peer,
                  r->max_response);
        return -1;
    }
    if (buf_append(&r->body, data, len) < 0) {
        set_error(r, -ENOMEM, "out of memory reading the response from %s", r->peer);
        return -1;
    }
    return 0;
}

static int on_complete(void *ud)
{
    struct httpc_request *r = ud;
    if (r->interim)
        r->interim = false; /* the final response follows */
    else
        r->complete = true;
    return 0;
}

static const struct h1_callbacks parser_callbacks = {
    .begin = on_begin,
    .head = on_head,
    .body = on_body,
    .complete = on_complete,
};

static const struct h1_limits parser_limits = {
    .max_head = MAX_RESPONSE_HEAD,
    .max_line = MAX_STATUS_LINE,
    .max_headers = MAX_RESPONSE_HEADERS,
};

/* The parser failed: our own callback's error, or the parser's. */
static void parse_failed(struct httpc_request *r)
{
    if (r->err == 0) {
        int status;
        const char *reason = h1_parser_error(r->parser, &status);
        if (status == 503) { /* the adapter's out-of-memory answer */
            set_error(r, -ENOMEM, "out of memory reading the response from %s", r->peer);
        } else {
            static const char prefix[] = "Invalid HTTP request: ";
            if (!reason)
                reason = "unparsable";
            if (strncmp(reason, prefix, sizeof prefix - 1) == 0)
                reason += sizeof prefix - 1;
            set_error(r, -EPROTO, "invalid response from %s: %s", r->peer, reason);
        }
    }
    finish(r, r->err);
}

/* Feeds response bytes; returns true when the request has finished (and is
 * freed). */
static bool feed(struct httpc_request *r, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = h1_parser_feed(r->parser, data, len);
        if (n <= 0) { /* 0 would mean no progress: never expected */
            parse_failed(r);
            return true;
        }
        if (r->complete) { /* bytes after the response are ignored */
            finish(r, 0);
            return true;
        }
        data += n;
        len -= (size_t)n;
    }
    return false;
}

static void on_eof(struct httpc_request *r)
{
    int rc = h1_parser_finish(r->parser);
    if (rc == 0 && r->complete) {
        finish(r, 0);
        return;
    }
    if (rc < 0 && r->err) {
        finish(r, r->err);
        return;
    }
    if (!r->got_bytes) {
        int e = r->write_err;
        if (e && e != EPIPE && e != ECONNRESET)
            set_error(r, -e, "sending the request to %s failed: %s", r->peer, strerror(e));
        else
            set_error(r, -ECONNRESET, "connection to %s closed before a response", r->peer);
    } else {
        set_error(r, -EPROTO, "response from %s cut short by the connection closing", r->peer);
    }
    finish(r, r->err);
}

/* ---- socket I/O ---- */

static void watch(struct httpc_request *r, int events)
{
    ev_io_stop(r->loop, &r->io);
    ev_io_set(&r->io, r->fd, events);
    ev_io_start(r->loop, &r->io);
}

static void close_socket(struct httpc_request *r)
{
    if (r->fd >= 0) {
        ev_io_stop(r->loop, &r->io);
        close(r->fd);
        r->fd = -1;
    }
}

/* Sends what the socket takes. A failed send is remembered and the request
 * dropped: the server may still have answered (early 413, say), so reading
 * goes on and decides. */
static void do_write(struct httpc_request *r)
{
    while (buf_size(&r->out) > 0) {
        ssize_t n = send(r->fd, buf_start(&r->out), buf_size(&r->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&r->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        r->write_err = n < 0 ? errno : EPIPE;
        break;
    }
    buf_free(&r->out);
    watch(r, EV_READ);
}

/* Returns true when the request has finished (and is freed). */
static bool do_read(struct httpc_request *r)
{
    char data[READ_CHUNK];
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = recv(r->fd, data, sizeof data, 0);
        if (n > 0) {
            r->got_bytes = true;
            if (feed(r, data, (size_t)n))
                return true;
            if ((size_t)n < sizeof data)
                return false;
            continue;
        }
        if (n == 0) {
            on_eof(r);
            return true;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
        int e = errno;
        if (e == ECONNRESET)
            set_error(r, -ECONNRESET, "connection to %s reset", r->peer);
        else
            set_error(r, -e, "reading from %s failed: %s", r->peer, strerror(e));
        finish(r, r->err);
        return true;
    }
    return false;
}

static void connect_next(struct httpc_request *r);

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct httpc_request *r = container_of(w, struct httpc_request, io);
    if (r->state == ST_CONNECTING) {
        int so_err = 0;
        socklen_t len = sizeof so_err;
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &so_err, &len) < 0)
            so_err = errno;
        if (so_err) {
            close_socket(r);
            r->last_err = so_err;
            connect_next(r);
            return;
        }
        ev_timer_stop(r->loop, &r->connect_timer);
        r->state = ST_EXCHANGING;
        watch(r, EV_READ | EV_WRITE);
        revents = EV_WRITE;
    }
    if (revents & EV_WRITE && buf_size(&r->out) > 0)
        do_write(r);
    if (revents & EV_READ)
        do_read(r);
}

/* Describes addr for messages: "ip:port", or "name:port (ip)" for names. */
static void describe_peer(struct httpc_request *r, const struct sockaddr *sa)
{
    struct addr a;
    addr_from_sockaddr(&a, sa);
    bool v6 = sa->sa_family == AF_INET6;
    if (r->literal)
        snprintf(r->peer, sizeof r->peer, "%s%s%s:%u", v6 ? "[" : "", a.ip, v6 ? "]" : "",
                 (unsigned)r->port);
    else
        snprintf(r->peer, sizeof r->peer, "%s:%u (%s)", r->host, (unsigned)r->port, a.ip);
}

/* Tries the remaining addresses in turn; reports the last failure when none
 * is left. */
static void connect_next(struct httpc_request *r)
{
    while (r->ai_next) {
        struct addrinfo *ai = r->ai_next;
        r->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        describe_peer(r, ai->ai_addr);
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r->last_err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            r->last_err = errno;
            close(fd);
            continue;
        }
        /* Connected or in progress: writability says which, with SO_ERROR. */
        r->fd = fd;
        if (r->state != ST_STARTING)
            r->state = ST_CONNECTING; /* httpc_start sets it */
        ev_io_init(&r->io, on_io, fd, EV_WRITE);
        ev_io_start(r->loop, &r->io);
        ev_timer_stop(r->loop, &r->connect_timer);
        ev_timer_set(&r->connect_timer, r->connect_timeout, 0.);
        ev_timer_start(r->loop, &r->connect_timer);
        return;
    }
    int e = r->last_err;
    if (e == 0)
        set_error(r, -EHOSTUNREACH, "host %s has no IPv4 or IPv6 address", r->host);
    else if (e == ECONNREFUSED)
        set_error(r, -ECONNREFUSED, "connect to %s refused", r->peer);
    else if (e == ETIMEDOUT)
        set_error(r, -ETIMEDOUT, "connect to %s timed out after %g s", r->peer, r->connect_timeout);
    else
        set_error(r, -e, "connect to %s failed: %s", r->peer, strerror(e));
    fail(r);
}

/* ---- timers ---- */

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct httpc_request *r = container_of(w, struct httpc_request, connect_timer);
    if (r->state == ST_RESOLVING) {
        set_error(r, -ETIMEDOUT, "resolving %s timed out after %g s", r->host, r->connect_timeout);
        finish(r, r->err);
        return;
    }
    /* A connection attempt hung: try the next address. */
    close_socket(r);
    r->last_err = ETIMEDOUT;
    connect_next(r);
}

static void on_total_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct httpc_request *r = container_of(w, struct httpc_request, total_timer);
    set_error(r, -ETIMEDOUT, "request to %s timed out after %g s", r->authority, r->timeout);
    finish(r, r->err);
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct httpc_request *r = container_of(w, struct httpc_request, kick);
    finish(r, r->err);
}

/* ---- name resolution ---- */

static void dns_work(struct pool_job *j)
{
    struct dns_job *d = container_of(j, struct dns_job, job);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_protocol = IPPROTO_TCP,
        .ai_flags = AI_NUMERICSERV,
    };
    errno = 0;
    d->gai_err = getaddrinfo(d->host, d->port, &hints, &d->res);
    d->sys_err = errno;
    if (d->gai_err)
        d->res = NULL;
}

static void dns_done(struct pool_job *j)
{
    struct dns_job *d = container_of(j, struct dns_job, job);
    struct httpc_request *r = d->req;
    if (!r) { /* the request ended while this ran */
        if (d->res)
            freeaddrinfo(d->res);
        free(d);
        return;
    }
    r->dns = NULL;
    int gai_err = d->gai_err, sys_err = d->sys_err;
    r->ai_list = r->ai_next = d->res;
    free(d);
    if (gai_err == EAI_MEMORY) {
        set_error(r, -ENOMEM, "out of memory resolving %s", r->host);
        fail(r);
    } else if (gai_err == EAI_SYSTEM && sys_err) {
        set_error(r, -sys_err, "resolving %s failed: %s", r->host, strerror(sys_err));
        fail(r);
    } else if (gai_err) {
        set_error(r, -EHOSTUNREACH, "could not resolve host %s: %s", r->host,
                  gai_strerror(gai_err));
        fail(r);
    } else {
        connect_next(r);
    }
}

static void resolve(struct httpc_request *r)
{
    if (!r->pool) {
        set_error(r, -EINVAL, "no pool to resolve host %s", r->host);
        fail(r);
        return;
    }
    size_t host_len = strlen(r->host);
    struct dns_job *d = calloc(1, sizeof *d + host_len + 1);
    if (!d) {
        set_error(r, -ENOMEM, "out of memory resolving %s", r->host);
        fail(r);
        return;
    }
    d->job.work = dns_work;
    d->job.done = dns_done;
    d->req = r;
    memcpy(d->host, r->host, host_len + 1);
    memcpy(d->port, r->port_str, sizeof d->port);
    if (pool_submit(r->pool, &d->job) < 0) {
        int e = errno ? errno : EAGAIN;
        free(d);
        set_error(r, -e, "could not start resolving %s: %s", r->host, strerror(e));
        fail(r);
        return;
    }
    r->dns = d;
    ev_timer_set(&r->connect_timer, r->connect_timeout, 0.);
    ev_timer_start(r->loop, &r->connect_timer);
}

/* ---- lifecycle ---- */

static void request_free(struct httpc_request *r)
{
    ev_timer_stop(r->loop, &r->kick);
    ev_timer_stop(r->loop, &r->connect_timer);
    ev_timer_stop(r->loop, &r->total_timer);
    close_socket(r);
    if (r->dns) /* its done callback frees it */
        r->dns->req = NULL;
    if (r->ai_list)
        freeaddrinfo(r->ai_list);
    if (r->parser)
        h1_parser_free(r->parser);
    h1_head_free(&r->head);
    buf_free(&r->out);
    buf_free(&r->body);
    free(r);
}

/* Calls done once, then frees the request. */
static void finish(struct httpc_request *r, int err)
{
    r->state = ST_DONE;
    ev_timer_stop(r->loop, &r->kick);
    ev_timer_stop(r->loop, &r->connect_timer);
    ev_timer_stop(r->loop, &r->total_timer);
    close_socket(r);
    if (r->dns) {
        r->dns->req = NULL;
        r->dns = NULL;
    }

    struct httpc_response res = {.error = err};
    if (err == 0) {
        char *end = buf_reserve(&r->body, 1);
        if (end) {
            *end = '\0'; /* past the content: body_len is unchanged */
            res.status = r->head.status;
            res.head = &r->head;
            res.body = buf_start(&r->body);
            res.body_len = buf_size(&r->body);
        } else {
            set_error(r, -ENOMEM, "out of memory reading the response from %s", r->peer);
            res.error = err = r->err;
        }
    }
    if (err) {
        res.error_msg = r->errmsg;
        if (err != -ECANCELED)
            log_debug("httpc: request to %s failed: %s", r->authority, r->errmsg);
    }
    r->done(r->ud, &res);
    request_free(r);
}

struct httpc_request *httpc_start(struct ev_loop *loop, struct pool *pool,
                                  const struct httpc_options *opt, httpc_done_fn done, void *ud)
{
    struct httpc_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->pool = pool;
    r->done = done;
    r->ud = ud;
    r->state = ST_STARTING;
    r->fd = -1;
    ev_init(&r->io, on_io);
    ev_timer_init(&r->connect_timer, on_connect_timeout, 0., 0.);
    ev_timer_init(&r->total_timer, on_total_timeout, 0., 0.);
    ev_timer_init(&r->kick, on_kick, 0., 0.);
    r->parser = h1_parser_new(H1_RESPONSE, &parser_limits, &parser_callbacks, r);
    if (!r->parser) {
        request_free(r);
        return NULL;
    }

    if (!opt) {
        set_error(r, -EINVAL, "no options");
        fail(r);
        return r;
    }
    /* !(x > 0) also takes NaN to the default. */
    r->connect_timeout = opt->connect_timeout > 0 ? opt->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
    r->timeout = opt->timeout > 0 ? opt->timeout : DEFAULT_TIMEOUT;
    r->max_response = opt->max_response ? opt->max_response : DEFAULT_MAX_RESPONSE;

    int rc = prepare(r, opt);
    if (rc == -ENOMEM) {
        request_free(r);
        return NULL;
    }
    if (rc < 0) {
        fail(r);
        return r;
    }
    snprintf(r->peer, sizeof r->peer, "%s", r->authority);

    ev_timer_set(&r->total_timer, r->timeout, 0.);
    ev_timer_start(loop, &r->total_timer);
    if (r->literal)
        connect_next(r); /* errors wait for the kick timer */
    else
        resolve(r);
    if (ev_is_active(&r->kick))
        return r; /* an error is held: the state stays ST_STARTING */
    r->state = r->literal ? ST_CONNECTING : ST_RESOLVING;
    return r;
}

void httpc_cancel(struct httpc_request *r)
{
    if (!r || r->state == ST_DONE)
        return; /* called from its own done: nothing left to cancel */
    set_error(r, -ECANCELED, "request to %s cancelled", r->authority);
    finish(r, r->err);
}
