/* httpc: outbound HTTP on libcurl's multi interface, driven by the
 * worker's libev loop; see httpc.h.
 *
 * curl tells us which sockets to watch (socket callback: an ev_io per
 * socket, owned by a struct sock that curl_multi_assign ties to the
 * socket) and when it next needs to run (timer callback: one ev_timer).
 * Readiness and expiry go back to curl through curl_multi_socket_action;
 * finished transfers come out of curl_multi_info_read. This is curl's
 * documented event-loop integration (docs/examples/evhiperfifo.c), the one
 * Kore uses in src/curl.c.
 *
 * The rule that keeps this file simple: curl's callbacks (header, write,
 * read, socket, timer) only record. Heads, body pieces and room to write
 * are stored in the exchange, which is put on the ready list; the ready
 * list is delivered to the owner after curl_multi_socket_action has
 * returned, or from the kick timer on the next iteration when the change
 * came from an httpc call (httpc_pause, httpc_write). So no owner code
 * ever runs inside curl (where curl forbids removing or adding handles),
 * and no owner callback runs inside the httpc call that caused it.
 *
 * Flow control. Receiving: a body piece waits in r->in until delivered;
 * when r->in holds IN_HIGH bytes the write callback answers
 * CURL_WRITEFUNC_PAUSE (curl keeps that piece and stops reading the
 * socket), and httpc_pause pauses curl's receiving outright; curl is
 * unpaused once r->in has been delivered and the owner has not paused.
 * Sending (HTTPC_STREAM_BODY): httpc_write appends to r->out, bounded by
 * OUT_HIGH; the read callback answers CURL_READFUNC_PAUSE when r->out is
 * empty and the body has not ended, and httpc_write unpauses it. curl's
 * pause state covers both directions at once (curl_easy_pause takes the
 * whole mask), so both are tracked here and set together.
 *
 * Redirects are followed here rather than by curl (CURLOPT_FOLLOWLOCATION
 * keeps a CURLOPT_CUSTOMREQUEST method across a 303, against RFC 9110
 * 15.4.4): a followed 3xx's body is discarded, the handle is removed,
 * reconfigured for the next hop and added again; the connection it used
 * goes back to the cache.
 *
 * Names are resolved here too, by the worker's dns (c-ares, cached with
 * the records' TTLs), before each hop is handed to curl: the addresses go
 * to curl as the hop's CURLOPT_RESOLVE, and curl keeps no cache of its own.
 * A hop that goes through a proxy from the environment (http_proxy,
 * https_proxy, all_proxy, unless no_proxy names the host) is not
 * resolved here: the proxy resolves the target, and curl resolves the
 * proxy on its resolver thread. */
#include "httpc.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "buf.h"
#include "container.h"
#include "dns.h"
#include "log.h"

#define DEFAULT_CONNECT_TIMEOUT 5.0
#define DEFAULT_TIMEOUT         30.0
#define DEFAULT_MAX_RESPONSE    ((size_t)8 * 1024 * 1024)
#define DEFAULT_MAX_REDIRECTS   10
#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_MAX_HOST_CONNS  16
/* Response heads are small; these stop a hostile server from making the
 * worker buffer without bound. */
#define MAX_RESPONSE_HEAD    (64 * 1024)
#define MAX_RESPONSE_HEADERS 256
/* Body bytes read but not yet delivered before curl stops reading. */
#define IN_HIGH (64 * 1024)
/* A streamed request body the host holds before httpc_write says full. */
#define OUT_HIGH (256 * 1024)

struct sock {
    ev_io io;
    struct httpc *hc;
    curl_socket_t fd;
    struct sock *prev, *next;
};

struct httpc {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer; /* curl's next timeout */
    ev_timer kick;  /* ready exchanges changed outside a curl event */
    bool driving;   /* inside an event: the ready list is run before it returns */
    struct httpc_request *ready_first, *ready_last;
    struct httpc_request *all; /* live exchanges */
    struct sock *socks;
    const char *ca_file; /* SSL_CERT_FILE, SSL_CERT_DIR (as OpenSSL reads them) */
    const char *ca_dir;
    struct dns *dns;
    const char *http_proxy, *https_proxy, *no_proxy; /* from the environment, or NULL */
};

/* What kind of caller header a line is, for redirects. */
enum {
    HK_CREDENTIAL = 0x1, /* authorization, proxy-authorization, cookie */
    HK_HOST = 0x2,
    HK_CONTENT = 0x4, /* content-*: describes the body */
};

struct req_header {
    char *line; /* "Name: value", or "Name;" for an empty value (curl's way) */
    unsigned kind;
};

struct resp_header {
    size_t name_off, name_len, value_off, value_len;
};

struct httpc_request {
    struct httpc *hc;
    struct httpc_request *prev, *next; /* hc->all */
    struct httpc_request *ready_next;  /* hc->ready_first */
    bool ready;
    CURL *easy;
    bool in_multi;
    struct curl_slist *slist;   /* this hop's request headers */
    struct curl_slist *resolve; /* this hop's host and addresses, for curl */
    struct dns_wait *dns_wait;  /* the hop's name is being resolved */
    ev_timer dns_timer;         /* the exchange's deadline while it is */
    struct httpc_callbacks cb;
    void *ud;

    /* The request, as it stands for the current hop. */
    uint32_t flags;
    bool streaming; /* cb.data is set */
    char *method;
    char *url;
    char authority[300]; /* host:port of the current URL, for messages */
    struct req_header *headers;
    size_t nheaders;
    bool has_accept, has_content_type, has_expect;
    char *body; /* a copy of opt->body */
    size_t body_len;
    bool send_body;        /* this hop sends a body (buffered or streamed) */
    int64_t stream_len;    /* HTTPC_STREAM_BODY: Content-Length given, or -1 */
    bool drop_credentials; /* a redirect changed the origin */
    bool body_dropped;     /* a redirect turned the method into GET */
    double connect_timeout;
    ev_tstamp deadline;
    double timeout;
    size_t max_response;
    int max_redirects;
    int redirects;
    char *ca_file;

    /* The response of the current hop. */
    int status;
    char version[4];
    bool head_done; /* the final head is complete: later header lines are trailers */
    bool follow;    /* this hop's 3xx is followed: its body is dropped */
    char *next_url;
    char *location;
    struct buf head_text; /* lower-cased names and values */
    struct resp_header *rh;
    size_t nrh, rh_cap;
    struct buf body_buf; /* whole-response mode */
    struct buf in;       /* streaming: read, not yet delivered */
    struct buf spare;    /* storage lent to the data callback */

    /* Streamed request body. */
    struct buf out;
    bool out_ended;
    bool want_writable;
    bool writable_pending;

    /* Delivery. */
    bool head_ready, head_reported;
    bool user_paused, recv_paused, send_paused;
    bool finished;   /* nothing more from curl; done is due */
    bool delivering; /* inside one of this exchange's callbacks */
    bool reported;
    int err;
    char *effective_url;
    char errbuf[CURL_ERROR_SIZE];
    char errmsg[CURL_ERROR_SIZE + 400];
};

static void mark_ready(struct httpc_request *r);
static void stop(struct httpc_request *r);
static int start_hop(struct httpc_request *r);

/* ---- small helpers ---- */

static void set_error(struct httpc_request *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error; later ones (a consequence) are ignored. */
static void set_error(struct httpc_request *r, int err, const char *fmt, ...)
{
    if (r->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    r->err = err;
}

static bool name_is(const struct http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static bool name_starts(const struct http_header *h, const char *prefix)
{
    size_t n = strlen(prefix);
    return h->name_len >= n && strncasecmp(h->name, prefix, n) == 0;
}

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- URLs ---- */

/* Parses url (absolute, or relative to base when base is set) into an
 * absolute http(s) URL. Returns a malloc'd URL, or NULL with *why set. */
static char *resolve_url(const char *base, const char *url, char *authority, size_t authority_len,
                         const char **why)
{
    *why = "invalid URL";
    CURLU *u = curl_url();
    if (!u) {
        *why = "out of memory";
        return NULL;
    }
    char *out = NULL, *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
    if (base && curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
        goto done;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        goto done;
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        *why = "URL scheme is not supported (only http and https)";
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
        *why = "URL has no host";
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        *why = "user info in URLs is not supported";
        goto done;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        strcmp(port, "0") == 0) {
        *why = "invalid port in URL";
        goto done;
    }
    if (authority)
        snprintf(authority, authority_len, "%.253s:%s", host, port);
    if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
        out = NULL;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_url_cleanup(u);
    return out;
}

/* scheme, host and port of two URLs equal (RFC 6454's origin). */
static bool same_origin(const char *a, const char *b)
{
    char oa[300], ob[300];
    const char *why;
    char *ua = resolve_url(NULL, a, oa, sizeof oa, &why);
    char *ub = resolve_url(NULL, b, ob, sizeof ob, &why);
    bool same = ua && ub && strncasecmp(ua, ub, 5) == 0 && strcasecmp(oa, ob) == 0;
    curl_free(ua);
    curl_free(ub);
    return same;
}

/* ---- the request ---- */

/* Validates and copies the caller's headers. Returns 0, -ENOMEM, or
 * -EINVAL with the message set. */
static int copy_headers(struct httpc_request *r, const struct httpc_options *opt)
{
    if (opt->nheaders && !opt->headers) {
        set_error(r, -EINVAL, "nheaders without headers");
        return r->err;
    }
    r->headers = calloc(opt->nheaders ? opt->nheaders : 1, sizeof *r->headers);
    if (!r->headers)
        return -ENOMEM;
    bool stream = r->flags & HTTPC_STREAM_BODY;
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
        if (name_is(h, "content-length") && stream) {
            /* The streamed body's announced length. */
            int64_t n = 0;
            for (size_t j = 0; j < h->value_len; j++) {
                char ch = h->value[j];
                if (ch < '0' || ch > '9' || n > (INT64_MAX - 9) / 10) {
                    set_error(r, -EINVAL, "invalid Content-Length \"%.*s\"",
                              (int)(h->value_len < 32 ? h->value_len : 32), h->value);
                    return r->err;
                }
                n = n * 10 + (ch - '0');
            }
            if (h->value_len == 0) {
                set_error(r, -EINVAL, "empty Content-Length");
                return r->err;
            }
            r->stream_len = n;
            continue;
        }
        if (name_is(h, "content-length") || name_is(h, "transfer-encoding") ||
            name_is(h, "connection")) {
            set_error(r, -EINVAL, "request header %.*s is set by the client", (int)h->name_len,
                      h->name);
            return r->err;
        }
        struct req_header *out = &r->headers[r->nheaders];
        size_t n = h->name_len + h->value_len + 3;
        out->line = malloc(n);
        if (!out->line)
            return -ENOMEM;
        if (h->value_len)
            snprintf(out->line, n, "%.*s: %.*s", (int)h->name_len, h->name, (int)h->value_len,
                     h->value);
        else
            snprintf(out->line, n, "%.*s;", (int)h->name_len, h->name);
        r->nheaders++;
        if (name_is(h, "authorization") || name_is(h, "proxy-authorization") ||
            name_is(h, "cookie"))
            out->kind = HK_CREDENTIAL;
        else if (name_is(h, "host"))
            out->kind = HK_HOST;
        else if (name_starts(h, "content-"))
            out->kind = HK_CONTENT;
        if (name_is(h, "accept"))
            r->has_accept = true;
        else if (name_is(h, "content-type"))
            r->has_content_type = true;
        else if (name_is(h, "expect"))
            r->has_expect = true;
    }
    return 0;
}

static int slist_add(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n)
        return -1;
    *l = n;
    return 0;
}

/* This hop's header list. curl adds Accept: * / *, and for a body
 * Content-Type: application/x-www-form-urlencoded and (for large or
 * chunked bodies) Expect: 100-continue; an empty "Name:" line removes
 * them, so the upstream sees what the caller sent. */
static int build_headers(struct httpc_request *r)
{
    curl_slist_free_all(r->slist);
    r->slist = NULL;
    for (size_t i = 0; i < r->nheaders; i++) {
        unsigned kind = r->headers[i].kind;
        if (r->drop_credentials && (kind & (HK_CREDENTIAL | HK_HOST)))
            continue;
        if (r->body_dropped && (kind & HK_CONTENT))
            continue;
        if (slist_add(&r->slist, r->headers[i].line) < 0)
            return -ENOMEM;
    }
    if ((!r->has_accept && slist_add(&r->slist, "Accept:") < 0) ||
        (!r->has_content_type && slist_add(&r->slist, "Content-Type:") < 0) ||
        (!r->has_expect && slist_add(&r->slist, "Expect:") < 0))
        return -ENOMEM;
    return 0;
}

/* Sets what changes from hop to hop: URL, method, body, headers and the
 * time left. */
static int configure_hop(struct httpc_request *r)
{
    CURL *e = r->easy;
    int rc = build_headers(r);
    if (rc < 0)
        return rc;
    double left = r->deadline - ev_now(r->hc->loop);
    long left_ms = left > 0.001 ? (long)(left * 1000) : 1;
    bool ok = curl_easy_setopt(e, CURLOPT_URL, r->url) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->slist) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left_ms) == CURLE_OK;
    /* Back to a plain GET (clears NOBODY, UPLOAD and POST), then the method. */
    ok = ok && curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL) == CURLE_OK;
    bool is_post = strcmp(r->method, "POST") == 0;
    if (r->send_body && (r->flags & HTTPC_STREAM_BODY)) {
        /* The read callback supplies the body; -1: chunked (HTTP/1.1). */
        ok = ok && curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->stream_len) ==
                       CURLE_OK;
    } else if (r->send_body) {
        ok = ok &&
             curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "") == CURLE_OK;
    } else if (strcmp(r->method, "HEAD") == 0) {
        ok = ok && curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK;
    }
    bool custom =
        r->send_body ? !is_post : strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0;
    if (custom)
        ok = ok && curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method) == CURLE_OK;
    return ok ? 0 : -ENOMEM;
}

/* ---- curl's callbacks: they record, and never call the owner ---- */

static void reset_response(struct httpc_request *r)
{
    r->status = 0;
    r->version[0] = '\0';
    r->nrh = 0;
    buf_clear(&r->head_text);
    free(r->location);
    r->location = NULL;
}

static bool head_full(struct httpc_request *r, size_t more)
{
    if (r->nrh >= MAX_RESPONSE_HEADERS || buf_size(&r->head_text) + more > MAX_RESPONSE_HEAD) {
        set_error(r, -EPROTO, "response head from %s is too large", r->authority);
        return true;
    }
    return false;
}

static size_t trim(const char **p, size_t len)
{
    while (len && (**p == ' ' || **p == '\t')) {
        (*p)++;
        len--;
    }
    while (len && ((*p)[len - 1] == ' ' || (*p)[len - 1] == '\t'))
        len--;
    return len;
}

static bool status_line(struct httpc_request *r, const char *p, size_t len)
{
    /* "HTTP/1.1 200 OK", "HTTP/2 200" */
    reset_response(r);
    const char *sp = memchr(p, ' ', len);
    size_t vlen = sp ? (size_t)(sp - p) - 5 : 0;
    if (!sp || vlen == 0 || vlen >= sizeof r->version)
        return false;
    memcpy(r->version, p + 5, vlen);
    r->version[vlen] = '\0';
    size_t rest = len - (size_t)(sp + 1 - p);
    const char *d = sp + 1;
    if (rest < 3 || d[0] < '1' || d[0] > '9' || d[1] < '0' || d[1] > '9' || d[2] < '0' ||
        d[2] > '9')
        return false;
    r->status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    return true;
}

static bool is_redirect(int status)
{
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* The head of a 3xx is complete: whether this hop is followed (r->follow),
 * the final response, or an error. */
static bool decide_redirect(struct httpc_request *r)
{
    if (!(r->flags & HTTPC_FOLLOW_REDIRECTS) || !is_redirect(r->status) || !r->location)
        return true;
    const char *why;
    char *next = resolve_url(r->url, r->location, NULL, 0, &why);
    if (!next)
        return true; /* not an http(s) URL we can follow: the 3xx is the answer */
    bool keeps_body = r->status == 307 || r->status == 308 ||
                      (r->status != 303 && strcmp(r->method, "POST") != 0);
    if (keeps_body && r->send_body && (r->flags & HTTPC_STREAM_BODY)) {
        curl_free(next); /* a streamed body cannot be sent again */
        return true;
    }
    if (r->redirects >= r->max_redirects) {
        curl_free(next);
        set_error(r, -EIO, "too many redirects (more than %d) from %s", r->max_redirects,
                  r->authority);
        return false;
    }
    free(r->next_url);
    r->next_url = strdup(next);
    curl_free(next);
    if (!r->next_url) {
        set_error(r, -ENOMEM, "out of memory following a redirect");
        return false;
    }
    r->follow = true;
    return true;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct httpc_request *r = ud;
    size_t total = size * n, len = total;
    if (r->head_done || r->follow)
        return total; /* trailers, or a redirect's */
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        if (!status_line(r, p, len)) {
            set_error(r, -EPROTO, "invalid status line from %s", r->authority);
            return 0;
        }
        return total;
    }
    if (len == 0) { /* the end of a head */
        if (r->status >= 100 && r->status < 200) {
            if (r->status == 101) {
                set_error(r, -EPROTO, "unexpected 101 Switching Protocols from %s", r->authority);
                return 0;
            }
            reset_response(r); /* interim: the final response follows */
            return total;
        }
        if (!decide_redirect(r))
            return 0;
        if (!r->follow) {
            r->head_done = true;
            if (r->streaming) {
                r->head_ready = true;
                mark_ready(r);
            }
        }
        return total;
    }
    if (p[0] == ' ' || p[0] == '\t') { /* obs-fold: continues the last value */
        const char *v = p;
        size_t vlen = trim(&v, len);
        if (r->nrh == 0 || head_full(r, vlen + 1))
            return r->nrh == 0 ? total : 0;
        if (buf_append(&r->head_text, " ", 1) < 0 || buf_append(&r->head_text, v, vlen) < 0)
            goto oom;
        r->rh[r->nrh - 1].value_len += vlen + 1;
        return total;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p) {
        set_error(r, -EPROTO, "invalid header line from %s", r->authority);
        return 0;
    }
    size_t name_len = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = trim(&v, len - name_len - 1);
    if (head_full(r, name_len + vlen))
        return 0;
    if (r->nrh == r->rh_cap) {
        size_t cap = r->rh_cap ? r->rh_cap * 2 : 16;
        struct resp_header *rh = realloc(r->rh, cap * sizeof *rh);
        if (!rh)
            goto oom;
        r->rh = rh;
        r->rh_cap = cap;
    }
    struct resp_header *h = &r->rh[r->nrh];
    h->name_off = buf_size(&r->head_text);
    h->name_len = name_len;
    char *dst = buf_reserve(&r->head_text, name_len);
    if (!dst)
        goto oom;
    for (size_t i = 0; i < name_len; i++) {
        char ch = p[i];
        dst[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    r->head_text.len += name_len;
    h->value_off = buf_size(&r->head_text);
    h->value_len = vlen;
    if (buf_append(&r->head_text, v, vlen) < 0)
        goto oom;
    r->nrh++;
    if (name_len == 8 && strncasecmp(p, "location", 8) == 0 && !r->location) {
        r->location = strndup(v, vlen);
        if (!r->location)
            goto oom;
    }
    return total;
oom:
    set_error(r, -ENOMEM, "out of memory reading the response from %s", r->authority);
    return 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct httpc_request *r = ud;
    size_t len = size * n;
    if (r->follow || r->finished)
        return len; /* a followed redirect's body, or nobody listens any more */
    if (!r->streaming) {
        if (len > r->max_response - buf_size(&r->body_buf)) {
            set_error(r, -EMSGSIZE, "response body from %s is over the limit of %zu bytes",
                      r->authority, r->max_response);
            return 0;
        }
    } else if (buf_size(&r->in) >= IN_HIGH) {
        r->recv_paused = true;
        return CURL_WRITEFUNC_PAUSE; /* curl keeps this piece for the unpause */
    }
    if (buf_append(r->streaming ? &r->in : &r->body_buf, p, len) < 0) {
        set_error(r, -ENOMEM, "out of memory reading the response from %s", r->authority);
        return 0;
    }
    if (r->streaming)
        mark_ready(r);
    return len;
}

static size_t on_read(char *dst, size_t size, size_t n, void *ud)
{
    struct httpc_request *r = ud;
    size_t cap = size * n, have = buf_size(&r->out);
    if (have == 0) {
        if (r->out_ended)
            return 0;
        r->send_paused = true;
        return CURL_READFUNC_PAUSE; /* httpc_write unpauses */
    }
    size_t k = have < cap ? have : cap;
    memcpy(dst, buf_start(&r->out), k);
    buf_consume(&r->out, k);
    if (r->want_writable && buf_size(&r->out) < OUT_HIGH / 2) {
        r->want_writable = false;
        r->writable_pending = true;
        mark_ready(r);
    }
    return k;
}

/* ---- pause state ---- */

static void apply_pause(struct httpc_request *r)
{
    if (!r->in_multi)
        return;
    int mask = (r->recv_paused ? CURLPAUSE_RECV : 0) | (r->send_paused ? CURLPAUSE_SEND : 0);
    CURLcode rc = curl_easy_pause(r->easy, mask);
    if (rc != CURLE_OK)
        set_error(r, -EIO, "pausing the exchange with %s failed: %s", r->authority,
                  curl_easy_strerror(rc));
}

/* Receiving pauses when the owner paused and resumes when the owner has
 * taken what was read. curl may write its held piece from inside
 * curl_easy_pause: on_write only appends to r->in. */
static void sync_recv_pause(struct httpc_request *r)
{
    bool want = r->user_paused || buf_size(&r->in) >= IN_HIGH;
    if (want == r->recv_paused || r->finished)
        return;
    r->recv_paused = want;
    apply_pause(r);
}

/* ---- delivery to the owner ---- */

static void ready_unlink(struct httpc_request *r)
{
    if (!r->ready)
        return;
    struct httpc *hc = r->hc;
    struct httpc_request **pp = &hc->ready_first, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->ready_next;
    }
    if (*pp)
        *pp = r->ready_next;
    if (hc->ready_last == r)
        hc->ready_last = prev;
    r->ready_next = NULL;
    r->ready = false;
}

static void mark_ready(struct httpc_request *r)
{
    struct httpc *hc = r->hc;
    if (!r->ready && !r->reported) {
        r->ready = true;
        r->ready_next = NULL;
        if (hc->ready_last)
            hc->ready_last->ready_next = r;
        else
            hc->ready_first = r;
        hc->ready_last = r;
    }
    if (!hc->driving && !ev_is_active(&hc->kick))
        ev_timer_start(hc->loop, &hc->kick);
}

static void fill_response(struct httpc_request *r, struct httpc_response *res,
                          struct http_header *hdrs)
{
    const char *text = buf_start(&r->head_text);
    for (size_t i = 0; i < r->nrh; i++)
        hdrs[i] = (struct http_header){text + r->rh[i].name_off, r->rh[i].name_len,
                                       text + r->rh[i].value_off, r->rh[i].value_len};
    *res = (struct httpc_response){
        .status = r->status,
        .http_version = r->version,
        .url = r->effective_url ? r->effective_url : r->url,
        .redirects = r->redirects,
        .headers = hdrs,
        .nheaders = r->nrh,
    };
}

static void request_free(struct httpc_request *r)
{
    struct httpc *hc = r->hc;
    ready_unlink(r);
    if (r->prev)
        r->prev->next = r->next;
    else if (hc->all == r)
        hc->all = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->easy) {
        if (r->in_multi)
            curl_multi_remove_handle(hc->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    dns_cancel(r->dns_wait);
    ev_timer_stop(hc->loop, &r->dns_timer);
    curl_slist_free_all(r->slist);
    curl_slist_free_all(r->resolve);
    for (size_t i = 0; i < r->nheaders; i++)
        free(r->headers[i].line);
    free(r->headers);
    free(r->method);
    free(r->url);
    free(r->body);
    free(r->ca_file);
    free(r->next_url);
    free(r->location);
    free(r->effective_url);
    free(r->rh);
    buf_free(&r->head_text);
    buf_free(&r->body_buf);
    buf_free(&r->in);
    buf_free(&r->spare);
    buf_free(&r->out);
    free(r);
}

/* Runs done once, then frees the exchange. */
static void report_done(struct httpc_request *r)
{
    r->reported = true;
    ready_unlink(r);
    struct http_header *hdrs = NULL;
    struct httpc_response res = {.error = r->err};
    if (r->err == 0) {
        hdrs = calloc(r->nrh ? r->nrh : 1, sizeof *hdrs);
        char *end = r->streaming ? NULL : buf_reserve(&r->body_buf, 1);
        if (!hdrs || (!r->streaming && !end)) {
            set_error(r, -ENOMEM, "out of memory reading the response from %s", r->authority);
        } else {
            fill_response(r, &res, hdrs);
            if (!r->streaming) {
                *end = '\0'; /* past the content: body_len is unchanged */
                res.body = buf_start(&r->body_buf);
                res.body_len = buf_size(&r->body_buf);
            }
        }
    }
    if (r->err) {
        res = (struct httpc_response){
            .error = r->err, .error_msg = r->errmsg, .url = r->url, .redirects = r->redirects};
        if (r->err != -ECANCELED)
            log_debug("httpc: request to %s failed: %s", r->authority, r->errmsg);
    }
    r->cb.done(r->ud, &res);
    free(hdrs);
    request_free(r);
}

static void call_head(struct httpc_request *r)
{
    struct http_header *hdrs = calloc(r->nrh ? r->nrh : 1, sizeof *hdrs);
    if (!hdrs) {
        set_error(r, -ENOMEM, "out of memory reading the response from %s", r->authority);
        stop(r);
        return;
    }
    struct httpc_response res;
    fill_response(r, &res, hdrs);
    if (!r->effective_url)
        res.url = r->url;
    r->cb.head(r->ud, &res);
    free(hdrs);
}

/* Hands the owner what is ready, in order (head, body pieces, room to
 * write), then done when the exchange is over. Re-entered from one of
 * those callbacks (through httpc_cancel), it returns at once: the outer
 * run goes on after the callback. */
static void deliver(struct httpc_request *r)
{
    if (r->delivering || r->reported)
        return;
    r->delivering = true;
    for (;;) {
        /* A streamed exchange that failed after its head came still
         * delivers the head and the bytes that arrived (while not paused),
         * then the failure: what the owner sees does not depend on whether
         * the failure came in the same read as the rest. A cancellation
         * delivers nothing more. */
        if (r->finished && (!r->streaming || r->err == -ECANCELED))
            break;
        if (r->head_ready && !r->head_reported) {
            r->head_reported = true;
            if (r->cb.head)
                call_head(r);
            continue;
        }
        if (buf_size(&r->in) > 0 && !r->user_paused && r->head_reported) {
            /* The piece moves out of r->in, which curl may append to
             * while the owner runs (it unpauses from the callback). */
            struct buf piece = r->in;
            r->in = r->spare;
            r->spare = (struct buf){0};
            r->cb.data(r->ud, buf_start(&piece), buf_size(&piece));
            buf_clear(&piece);
            if (!r->spare.data)
                r->spare = piece;
            else
                buf_free(&piece);
            continue;
        }
        if (r->writable_pending && !r->finished) {
            r->writable_pending = false;
            if (r->cb.writable)
                r->cb.writable(r->ud);
            continue;
        }
        sync_recv_pause(r);
        if (buf_size(&r->in) > 0 && !r->user_paused)
            continue; /* curl wrote its held piece */
        if (r->finished && buf_size(&r->in) == 0)
            break;
        r->delivering = false;
        return;
    }
    r->delivering = false;
    report_done(r);
}

static void run_ready(struct httpc *hc)
{
    struct httpc_request *r;
    while ((r = hc->ready_first)) {
        hc->ready_first = r->ready_next;
        if (!hc->ready_first)
            hc->ready_last = NULL;
        r->ready = false;
        r->ready_next = NULL;
        deliver(r);
    }
}

/* ---- finished transfers ---- */

static int curl_error(struct httpc_request *r, CURLcode rc)
{
    const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    long os_err = 0;
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_err);
        if (os_err == ECONNREFUSED)
            set_error(r, -ECONNREFUSED, "connect to %s refused", r->authority);
        else if (os_err == ETIMEDOUT)
            set_error(r, -ETIMEDOUT, "connect to %s timed out", r->authority);
        else
            set_error(r, -EIO, "connect to %s failed: %s", r->authority, why);
        break;
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t connected = 0;
        curl_easy_getinfo(r->easy, CURLINFO_CONNECT_TIME_T, &connected);
        if (connected == 0)
            set_error(r, -ETIMEDOUT, "connect to %s timed out (%s)", r->authority, why);
        else
            set_error(r, -ETIMEDOUT, "request to %s timed out after %g s", r->authority,
                      r->timeout);
        break;
    }
    case CURLE_COULDNT_RESOLVE_HOST: {
        const char *colon = strrchr(r->authority, ':');
        int host_len = colon ? (int)(colon - r->authority) : (int)strlen(r->authority);
        set_error(r, -EHOSTUNREACH, "could not resolve host %.*s", host_len, r->authority);
        break;
    }
    case CURLE_COULDNT_RESOLVE_PROXY:
        set_error(r, -EHOSTUNREACH, "could not resolve the proxy: %s", why);
        break;
    case CURLE_FILESIZE_EXCEEDED:
        set_error(r, -EMSGSIZE, "response body from %s is over the limit of %zu bytes",
                  r->authority, r->max_response);
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        set_error(r, -EINVAL, "invalid request to %s: %s", r->authority, why);
        break;
    case CURLE_GOT_NOTHING:
        set_error(r, -ECONNRESET, "connection to %s closed before a response", r->authority);
        break;
    case CURLE_PARTIAL_FILE:
        set_error(r, -EPROTO, "response from %s cut short: %s", r->authority, why);
        break;
    case CURLE_UNSUPPORTED_PROTOCOL: /* the URL was checked: an HTTP/0.9 answer */
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
        set_error(r, -EPROTO, "invalid response from %s: %s", r->authority, why);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        set_error(r, -EIO, "TLS with %s failed: %s", r->authority, why);
        break;
    case CURLE_OUT_OF_MEMORY:
        set_error(r, -ENOMEM, "out of memory talking to %s", r->authority);
        break;
    default:
        set_error(r, -EIO, "request to %s failed: %s", r->authority, why);
        break;
    }
    return r->err;
}

static int add_handle(struct httpc_request *r)
{
    r->errbuf[0] = '\0';
    CURLMcode mc = curl_multi_add_handle(r->hc->multi, r->easy);
    if (mc != CURLM_OK) {
        set_error(r, mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO, "cannot start a request to %s: %s",
                  r->authority, curl_multi_strerror(mc));
        return r->err;
    }
    r->in_multi = true;
    return 0;
}

/* ---- resolving each hop's host ---- */

static const char *env_first(const char *const *names)
{
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v)
            return v;
    }
    return NULL;
}

/* no_proxy names host: "*", or an entry equal to host or to one of its
 * parent domains (a leading dot is optional), as curl reads it. Where this
 * and curl disagree nothing breaks: a proxied hop ignores CURLOPT_RESOLVE,
 * and a direct hop not resolved here is resolved by curl. */
static bool no_proxy_names(const char *list, const char *host)
{
    size_t hlen = strlen(host);
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - start);
        if (len == 1 && *start == '*')
            return true;
        if (len && *start == '.') {
            start++;
            len--;
        }
        if (len && len <= hlen && strncasecmp(host + hlen - len, start, len) == 0 &&
            (len == hlen || host[hlen - len - 1] == '.'))
            return true;
    }
    return false;
}

static bool proxied(const struct httpc *hc, bool https, const char *host)
{
    const char *proxy = https ? hc->https_proxy : hc->http_proxy;
    return proxy && !(hc->no_proxy && no_proxy_names(hc->no_proxy, host));
}

/* The exchange's deadline passed while its name was being resolved. */
static void on_dns_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct httpc_request *r = container_of(w, struct httpc_request, dns_timer);
    set_error(r, -ETIMEDOUT, "request to %s timed out after %g s (resolving the name)",
              r->authority, r->timeout);
    stop(r);
}

/* Hands the hop to curl with the addresses of its host. */
static int use_answer(struct httpc_request *r, const char *host, const char *port,
                      const struct dns_answer *a)
{
    if (a->error == -ENOMEM) {
        set_error(r, -ENOMEM, "out of memory resolving %s", host);
        return r->err;
    }
    if (a->error) {
        if (strcmp(a->why, "no such name") == 0)
            set_error(r, -EHOSTUNREACH, "could not resolve host %s", host);
        else
            set_error(r, -EHOSTUNREACH, "could not resolve host %s: %s", host, a->why);
        return r->err;
    }
    struct curl_slist *list = NULL;
    if (!a->literal) {
        /* "host:port:addr,[v6addr],..." */
        size_t cap = strlen(host) + strlen(port) + 3 + a->naddrs * (sizeof a->addrs[0].text + 3);
        char *line = malloc(cap);
        if (line) {
            size_t len = (size_t)snprintf(line, cap, "%s:%s:", host, port);
            for (size_t i = 0; i < a->naddrs; i++) {
                const struct dns_addr *x = &a->addrs[i];
                len += (size_t)snprintf(line + len, cap - len,
                                        x->family == AF_INET6 ? "%s[%s]" : "%s%s", i ? "," : "",
                                        x->text);
            }
        }
        int rc = line ? slist_add(&list, line) : -1;
        free(line);
        if (rc < 0) {
            set_error(r, -ENOMEM, "out of memory resolving %s", host);
            return r->err;
        }
    }
    /* The previous hop's list was read when that hop started. */
    curl_easy_setopt(r->easy, CURLOPT_RESOLVE, list);
    curl_slist_free_all(r->resolve);
    r->resolve = list;
    double left = r->deadline - ev_now(r->hc->loop);
    if (left <= 0) {
        set_error(r, -ETIMEDOUT, "request to %s timed out after %g s", r->authority, r->timeout);
        return r->err;
    }
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, left > 0.001 ? (long)(left * 1000) : 1L);
    return add_handle(r);
}

/* The parts of the current hop's URL start_hop needs. */
struct hop_host {
    char host[256]; /* as curl connects to it (IDN in punycode); an IPv6 literal in brackets */
    char port[8];
    bool https;
};

static bool hop_host(const char *url, struct hop_host *h)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *scheme = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, CURLU_PUNYCODE) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              strlen(host) < sizeof h->host && strlen(port) < sizeof h->port;
    if (ok) {
        strcpy(h->host, host);
        strcpy(h->port, port);
        h->https = strcmp(scheme, "https") == 0;
    }
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    curl_url_cleanup(u);
    return ok;
}

static void on_resolved(void *ud, const struct dns_answer *a)
{
    struct httpc_request *r = ud;
    r->dns_wait = NULL;
    ev_timer_stop(r->hc->loop, &r->dns_timer);
    struct hop_host h;
    int rc = hop_host(r->url, &h) ? use_answer(r, h.host, h.port, a) : -EINVAL;
    if (rc < 0) {
        if (!r->err)
            set_error(r, -EINVAL, "invalid URL: \"%.200s\"", r->url);
        stop(r);
    }
}

/* Starts the current hop: at once when its host is known (cached, an IP
 * literal, or left to a proxy), else once dns has answered. 0, or an error
 * with the message set. */
static int start_hop(struct httpc_request *r)
{
    struct hop_host h;
    if (!hop_host(r->url, &h)) {
        set_error(r, -EINVAL, "invalid URL: \"%.200s\"", r->url);
        return r->err;
    }
    if (h.host[0] == '[' || proxied(r->hc, h.https, h.host)) {
        /* curl needs no lookup for an IPv6 literal, and a proxy resolves
         * the target itself. */
        curl_easy_setopt(r->easy, CURLOPT_RESOLVE, NULL);
        curl_slist_free_all(r->resolve);
        r->resolve = NULL;
        return add_handle(r);
    }
    struct dns_answer a;
    int rc = dns_resolve(r->hc->dns, h.host, on_resolved, r, &r->dns_wait, &a);
    if (rc < 0) {
        set_error(r, rc, "out of memory resolving %s", h.host);
        return rc;
    }
    if (rc == 1)
        return use_answer(r, h.host, h.port, &a);
    double left = r->deadline - ev_now(r->hc->loop);
    ev_timer_set(&r->dns_timer, left > 0 ? left : 0., 0.);
    ev_timer_start(r->hc->loop, &r->dns_timer);
    return 0;
}

/* The followed 3xx is complete: the next hop starts on the same handle. */
static int next_hop(struct httpc_request *r)
{
    int status = r->status;
    if (status == 303 ? strcmp(r->method, "HEAD") != 0
                      : (status == 301 || status == 302) && strcmp(r->method, "POST") == 0) {
        free(r->method);
        r->method = strdup("GET");
        if (!r->method)
            return -ENOMEM;
        r->send_body = false;
        r->body_dropped = true;
    }
    if (!same_origin(r->url, r->next_url))
        r->drop_credentials = true;
    free(r->url);
    r->url = r->next_url;
    r->next_url = NULL;
    const char *why;
    char *check = resolve_url(NULL, r->url, r->authority, sizeof r->authority, &why);
    curl_free(check);
    r->redirects++;
    r->follow = false;
    r->head_done = false;
    reset_response(r);
    buf_clear(&r->body_buf);
    if (ev_now(r->hc->loop) >= r->deadline) {
        set_error(r, -ETIMEDOUT, "request to %s timed out after %g s", r->authority, r->timeout);
        return r->err;
    }
    int rc = configure_hop(r);
    if (rc < 0) {
        set_error(r, rc, "out of memory following a redirect");
        return rc;
    }
    return start_hop(r);
}

static void transfer_done(struct httpc_request *r, CURLcode rc)
{
    struct httpc *hc = r->hc;
    char *eff = NULL;
    if (curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff) {
        free(r->effective_url);
        r->effective_url = strdup(eff);
    }
    curl_multi_remove_handle(hc->multi, r->easy);
    r->in_multi = false;
    r->recv_paused = r->send_paused = false;
    if (rc == CURLE_OK && r->follow && next_hop(r) == 0)
        return;
    if (rc != CURLE_OK && !r->err)
        curl_error(r, rc);
    if (!r->err && !r->head_done)
        set_error(r, -EPROTO, "no response from %s", r->authority);
    r->finished = true;
    mark_ready(r);
}

static void check_finished(struct httpc *hc)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(hc->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        if (priv)
            transfer_done((struct httpc_request *)(void *)priv, rc);
    }
}

/* ---- the loop side ---- */

static void drive(struct httpc *hc, curl_socket_t fd, int flags)
{
    hc->driving = true;
    int running;
    CURLMcode mc = curl_multi_socket_action(hc->multi, fd, flags, &running);
    if (mc != CURLM_OK)
        log_error("httpc: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    check_finished(hc);
    run_ready(hc);
    hc->driving = false;
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sock *s = container_of(w, struct sock, io);
    int flags =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    drive(s->hc, s->fd, flags); /* s may be freed inside */
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct httpc *hc = container_of(w, struct httpc, timer);
    drive(hc, CURL_SOCKET_TIMEOUT, 0);
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct httpc *hc = container_of(w, struct httpc, kick);
    hc->driving = true;
    check_finished(hc);
    run_ready(hc);
    hc->driving = false;
}

static void sock_free(struct httpc *hc, struct sock *s)
{
    ev_io_stop(hc->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        hc->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp)
{
    (void)easy;
    struct httpc *hc = ud;
    struct sock *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_free(hc, s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->hc = hc;
        s->fd = fd;
        ev_init(&s->io, on_io);
        s->next = hc->socks;
        if (hc->socks)
            hc->socks->prev = s;
        hc->socks = s;
        curl_multi_assign(hc->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_stop(hc->loop, &s->io);
    ev_io_set(&s->io, fd, events);
    if (events)
        ev_io_start(hc->loop, &s->io);
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *ud)
{
    (void)multi;
    struct httpc *hc = ud;
    ev_timer_stop(hc->loop, &hc->timer);
    if (timeout_ms >= 0) {
        /* 0: as soon as possible, but from the loop (not inside curl). */
        ev_timer_set(&hc->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(hc->loop, &hc->timer);
    }
    return 0;
}

/* ---- the interface ---- */

struct httpc *httpc_new(struct ev_loop *loop, const struct httpc_limits *limits)
{
    CURLcode gc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (gc != CURLE_OK) {
        log_error("httpc: cannot start libcurl: %s", curl_easy_strerror(gc));
        return NULL;
    }
    struct httpc *hc = calloc(1, sizeof *hc);
    if (!hc)
        goto err;
    hc->loop = loop;
    hc->multi = curl_multi_init();
    if (!hc->multi)
        goto err;
    long total =
        limits && limits->max_connections > 0 ? limits->max_connections : DEFAULT_MAX_CONNECTIONS;
    long per_host = limits && limits->max_host_connections > 0 ? limits->max_host_connections
                                                               : DEFAULT_MAX_HOST_CONNS;
    ev_timer_init(&hc->timer, on_timer, 0., 0.);
    ev_timer_init(&hc->kick, on_kick, 0., 0.);
    /* The cache: idle connections kept up to the total; more requests to a
     * host than per_host, or in all than total, wait in curl's queue for a
     * connection. HTTP/2 connections carry many requests each. */
    bool ok = curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, on_socket) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, total) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, total) == CURLM_OK &&
              curl_multi_setopt(hc->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX) == CURLM_OK;
    if (!ok)
        goto err;
    /* OpenSSL reads these for its default store; curl's OpenSSL backend
     * uses the paths it was built with unless told, so tell it. */
    const char *f = getenv("SSL_CERT_FILE"), *d = getenv("SSL_CERT_DIR");
    hc->ca_file = f && *f ? f : NULL;
    hc->ca_dir = d && *d ? d : NULL;
    /* The variables curl reads for its proxy (lower case only for http). */
    static const char *const http_vars[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
    static const char *const https_vars[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                                             NULL};
    static const char *const no_vars[] = {"no_proxy", "NO_PROXY", NULL};
    hc->http_proxy = env_first(http_vars);
    hc->https_proxy = env_first(https_vars);
    hc->no_proxy = env_first(no_vars);
    hc->dns = dns_new(loop);
    if (!hc->dns)
        goto err;
    return hc;
err:
    log_error("httpc: cannot start libcurl's multi interface");
    if (hc && hc->multi)
        curl_multi_cleanup(hc->multi);
    free(hc);
    curl_global_cleanup();
    return NULL;
}

void httpc_free(struct httpc *hc)
{
    if (!hc)
        return;
    while (hc->all) {
        struct httpc_request *r = hc->all;
        log_error("httpc: request to %s still in flight at shutdown", r->authority);
        r->reported = true;
        request_free(r);
    }
    ev_timer_stop(hc->loop, &hc->timer);
    ev_timer_stop(hc->loop, &hc->kick);
    curl_multi_cleanup(hc->multi); /* closes the cached connections */
    while (hc->socks)
        sock_free(hc, hc->socks);
    ev_timer_stop(hc->loop, &hc->timer); /* cleanup may have set it again */
    dns_free(hc->dns);
    free(hc);
    curl_global_cleanup();
}

static int setup_easy(struct httpc_request *r)
{
    struct httpc *hc = r->hc;
    CURL *e = r->easy;
    long connect_ms = (long)(r->connect_timeout * 1000);
    if (connect_ms < 1)
        connect_ms = 1;
    const char *ca_file = r->ca_file ? r->ca_file : hc->ca_file;
    bool ok = true;
#define SET(opt, val) ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* followed here: see the top of this file */
    SET(CURLOPT_PATH_AS_IS, 1L);     /* the target as the caller wrote it */
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_USERAGENT, "evicorn");
    SET(CURLOPT_HTTP_VERSION,
        (long)(r->flags & HTTPC_HTTP1_ONLY ? CURL_HTTP_VERSION_1_1 : CURL_HTTP_VERSION_2TLS));
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_DNS_CACHE_TIMEOUT, 0L); /* names are cached by dns.c, with their TTLs */
    /* A cancelled resolution must not make the loop wait for curl's
     * resolver thread: it is left to finish on its own. */
    SET(CURLOPT_QUICK_EXIT, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, (void *)r);
    if (r->flags & HTTPC_INSECURE) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        SET(CURLOPT_SSL_VERIFYPEER, 1L);
        SET(CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (ca_file)
        SET(CURLOPT_CAINFO, ca_file);
    if (r->ca_file)
        SET(CURLOPT_CAPATH, NULL); /* the caller's bundle only */
    else if (hc->ca_dir)
        SET(CURLOPT_CAPATH, hc->ca_dir);
    if (r->flags & HTTPC_DECOMPRESS)
        SET(CURLOPT_ACCEPT_ENCODING, ""); /* every encoding this curl decodes */
    if (!r->streaming)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_response);
#undef SET
    return ok ? 0 : -ENOMEM;
}

/* Checks and copies the options; 0, -ENOMEM, or another error with the
 * message set. */
static int prepare(struct httpc_request *r, const struct httpc_options *opt)
{
    r->flags = opt->flags;
    r->connect_timeout = opt->connect_timeout > 0 ? opt->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
    r->timeout = opt->timeout > 0 ? opt->timeout : DEFAULT_TIMEOUT;
    r->deadline = ev_now(r->hc->loop) + r->timeout;
    r->max_response = opt->max_response ? opt->max_response : DEFAULT_MAX_RESPONSE;
    r->max_redirects = opt->max_redirects > 0 ? opt->max_redirects : DEFAULT_MAX_REDIRECTS;
    r->stream_len = -1;
    if (!opt->url) {
        set_error(r, -EINVAL, "no URL");
        return r->err;
    }
    snprintf(r->authority, sizeof r->authority, "%.200s", opt->url);
    const char *why;
    char *url = resolve_url(NULL, opt->url, r->authority, sizeof r->authority, &why);
    if (!url) {
        set_error(r, -EINVAL, "%s: \"%.200s\"", why, opt->url);
        return r->err;
    }
    r->url = strdup(url);
    curl_free(url);
    const char *method = opt->method ? opt->method : "GET";
    if (!http_is_token(method, strlen(method))) {
        set_error(r, -EINVAL, "invalid method \"%.40s\"", method);
        return r->err;
    }
    r->method = strdup(method);
    if (!r->url || !r->method)
        return -ENOMEM;
    if (opt->body_len && !opt->body && !(r->flags & HTTPC_STREAM_BODY)) {
        set_error(r, -EINVAL, "body_len without a body");
        return r->err;
    }
    int rc = copy_headers(r, opt);
    if (rc < 0)
        return rc;
    if (r->flags & HTTPC_STREAM_BODY) {
        r->send_body = true;
    } else {
        r->send_body = opt->body_len > 0 || strcmp(method, "POST") == 0 ||
                       strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
        if (opt->body_len) {
            r->body = malloc(opt->body_len);
            if (!r->body)
                return -ENOMEM;
            memcpy(r->body, opt->body, opt->body_len);
            r->body_len = opt->body_len;
        }
    }
    if (opt->ca_file) {
        r->ca_file = dup_str(opt->ca_file);
        if (!r->ca_file)
            return -ENOMEM;
    }
    r->easy = curl_easy_init();
    if (!r->easy)
        return -ENOMEM;
    rc = setup_easy(r);
    if (rc == 0)
        rc = configure_hop(r);
    return rc;
}

struct httpc_request *httpc_start(struct httpc *hc, const struct httpc_options *opt,
                                  const struct httpc_callbacks *cb, void *ud)
{
    if (!cb || !cb->done)
        return NULL;
    struct httpc_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->hc = hc;
    r->cb = *cb;
    r->ud = ud;
    r->streaming = cb->data != NULL;
    ev_timer_init(&r->dns_timer, on_dns_timeout, 0., 0.);
    r->next = hc->all;
    if (hc->all)
        hc->all->prev = r;
    hc->all = r;
    int rc = opt ? prepare(r, opt) : (set_error(r, -EINVAL, "no options"), -EINVAL);
    if (rc == -ENOMEM && !r->err) {
        r->reported = true;
        request_free(r);
        return NULL;
    }
    if (rc == 0)
        rc = start_hop(r);
    if (rc < 0) { /* reported from the loop (or the delivery running), never from here */
        r->finished = true;
        mark_ready(r);
    }
    return r;
}

void httpc_pause(struct httpc_request *r, bool paused)
{
    if (!r || r->reported || r->user_paused == paused)
        return;
    r->user_paused = paused;
    if (paused) {
        sync_recv_pause(r);
        return;
    }
    /* What waits is delivered from the loop (or by the delivery running),
     * never inside this call. */
    if (!r->delivering)
        mark_ready(r);
}

int httpc_write(struct httpc_request *r, const void *data, size_t len, bool more)
{
    if (!(r->flags & HTTPC_STREAM_BODY))
        return -EINVAL;
    if (r->finished || r->reported)
        return -EPIPE;
    if (r->out_ended || (len && !data))
        return -EINVAL;
    if (r->send_body && len && buf_append(&r->out, data, len) < 0)
        return -ENOMEM;
    if (!more)
        r->out_ended = true;
    if (r->send_paused && (buf_size(&r->out) > 0 || r->out_ended)) {
        r->send_paused = false;
        apply_pause(r);
    }
    if (buf_size(&r->out) >= OUT_HIGH && !r->out_ended) {
        r->want_writable = true;
        return 0;
    }
    return 1;
}

/* Ends the exchange with r->err: curl lets go of it now, done follows
 * from the loop. */
static void stop(struct httpc_request *r)
{
    dns_cancel(r->dns_wait);
    r->dns_wait = NULL;
    ev_timer_stop(r->hc->loop, &r->dns_timer);
    if (r->in_multi) {
        /* A connection left in the middle of an exchange is never put back
         * in the cache: curl closes one removed mid-transfer, and this makes
         * sure of it (an HTTP/2 connection closes once its last stream is
         * gone; the stream itself is reset). */
        curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
        curl_multi_remove_handle(r->hc->multi, r->easy);
        r->in_multi = false;
    }
    r->finished = true;
    buf_free(&r->in);
    r->head_ready = r->head_reported;
    r->writable_pending = false;
    mark_ready(r);
}

void httpc_abort(struct httpc_request *r)
{
    if (!r || r->reported)
        return;
    r->err = 0; /* a failure not yet reported becomes the cancellation */
    set_error(r, -ECANCELED, "request to %s cancelled", r->authority);
    stop(r);
}

void httpc_cancel(struct httpc_request *r)
{
    if (!r || r->reported)
        return;
    httpc_abort(r);
    if (!r->delivering)
        deliver(r); /* done runs now */
}
