/* fetch: outbound HTTP for async handlers, answering as a gateway when it
 * fails, and a reverse proxy that streams an upstream's response to the
 * client with backpressure.
 *
 * The proxy is a small state machine driven by the host's events: on_head
 * starts the client's response, on_data sends each piece and pauses the
 * fetch while the client's socket is full, on_end completes the response
 * (or answers 502/504 when no head came). Two things can refer to its
 * state at once, the fetch (until on_end) and a pending on_writable
 * continuation (which may run after on_end), so it is counted and freed
 * by whichever of them lets go last. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

int evicorn_fetch_get(evicorn_request *req, const char *url, double timeout, evicorn_fetch_fn fn,
                      void *ud)
{
    evicorn_fetch_options o = {
        .size = sizeof o,
        .method = "GET",
        .url = url,
        .timeout = timeout > 0 ? timeout : 0,
        /* The whole exchange includes connecting: a short timeout must not
         * wait out the host's longer connect default. */
        .connect_timeout = timeout > 0 && timeout < 5 ? timeout : 0,
    };
    return evicorn_sdk_api_->fetch(req, &o, fn, ud);
}

int evicorn_fetch_error_status(const evicorn_fetch_result *res)
{
    if (!res || res->error == 0)
        return 0;
    return res->error == EVICORN_ETIMEDOUT ? 504 : 502;
}

int evicorn_fetch_respond_error(evicorn_request *req, const evicorn_fetch_result *res)
{
    int status = evicorn_fetch_error_status(res);
    if (!status)
        return EVICORN_EINVAL;
    char detail[512];
    snprintf(detail, sizeof detail, "upstream request %s: %s",
             status == 504 ? "timed out" : "failed",
             res->error_message ? res->error_message : "unknown error");
    return evicorn_respond_error(req, status, detail);
}

evicorn_str evicorn_fetch_header(const evicorn_fetch_result *res, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; res && i < res->nheaders; i++) {
        const evicorn_header *h = &res->headers[i];
        if (h->name_len == n && strncmp(h->name, name, n) == 0)
            return (evicorn_str){h->value, h->value_len};
    }
    return (evicorn_str){NULL, 0};
}

/* ---- hop-by-hop headers (RFC 9110 7.6.1) ---- */

static bool name_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    return alen == blen && strncasecmp(a, b, blen) == 0;
}

/* The fixed list: RFC 9110's, Proxy-Connection (never standard, still
 * sent by old clients), and the RFC 2616 names (Keep-Alive, TE, Trailer,
 * Proxy-Authenticate, Proxy-Authorization) that proxies still strip. */
static bool always_hop_by_hop(const char *name, size_t len)
{
    static const char *const names[] = {
        "connection",          "keep-alive", "proxy-authenticate",
        "proxy-authorization", "te",         "trailer",
        "transfer-encoding",   "upgrade",    "proxy-connection",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (name_eq(name, len, names[i]))
            return true;
    return false;
}

/* Whether name is one of the comma-separated tokens of list (OWS around
 * each, any case). */
static bool in_token_list(const char *name, size_t len, const char *list, size_t list_len)
{
    size_t i = 0;
    while (i < list_len) {
        while (i < list_len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t start = i;
        while (i < list_len && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (end - start == len && len > 0 && strncasecmp(list + start, name, len) == 0)
            return true;
    }
    return false;
}

int evicorn_header_hop_by_hop(const char *name, size_t len, const char *connection,
                              size_t connection_len)
{
    return always_hop_by_hop(name, len) ||
           (connection && in_token_list(name, len, connection, connection_len));
}

/* Whether name is hop-by-hop in a message with these headers (every
 * Connection header of the message counts). */
static bool hop_in(const char *name, size_t len, const evicorn_header *hs, size_t n)
{
    if (always_hop_by_hop(name, len))
        return true;
    for (size_t i = 0; i < n; i++)
        if (name_eq(hs[i].name, hs[i].name_len, "connection") &&
            in_token_list(name, len, hs[i].value, hs[i].value_len))
            return true;
    return false;
}

/* Appends to via (a Via value being built) the entries of every header
 * named via in hs. */
static void gather_via(evicorn_buf *via, const evicorn_header *hs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!name_eq(hs[i].name, hs[i].name_len, "via") || hs[i].value_len == 0)
            continue;
        if (via->len)
            evicorn_buf_puts(via, ", ");
        evicorn_buf_append(via, hs[i].value, hs[i].value_len);
    }
}

/* Adds our own entry: "<version> <pseudonym>". */
static void add_via_entry(evicorn_buf *via, const char *version, size_t version_len,
                          const char *pseudonym)
{
    if (via->len)
        evicorn_buf_puts(via, ", ");
    if (version_len == 0)
        version = "1.1", version_len = 3;
    evicorn_buf_append(via, version, version_len);
    evicorn_buf_printf(via, " %s", pseudonym);
}

/* ---- the proxy ---- */

struct proxy {
    evicorn_request *req;
    evicorn_exchange *f; /* NULL once on_end has run */
    int refs;            /* the fetch until on_end, a pending on_writable */
    bool decoding;       /* EVICORN_FETCH_DECOMPRESS: lengths and encodings are gone */
    bool head_sent;      /* the client's response has started */
    bool answered;       /* the client got a whole response of ours instead */
    bool paused;
    bool waiting_writable;
    char *via;             /* pseudonym */
    evicorn_header *extra; /* copies, in the same block */
    size_t nextra;
};

static void proxy_unref(struct proxy *px)
{
    if (--px->refs == 0)
        free(px);
}

/* One block holding the state, the extra headers and their strings. */
static struct proxy *proxy_new(evicorn_request *req, const evicorn_fetch_proxy_options *p,
                               const evicorn_fetch_options *opts)
{
    const evicorn_header *hs = p->headers;
    size_t n = hs ? p->nheaders : 0;
    const char *via = p->via && *p->via ? p->via : "evicorn";
    size_t bytes = sizeof(struct proxy) + n * sizeof(evicorn_header) + strlen(via) + 1;
    for (size_t i = 0; i < n; i++)
        bytes += hs[i].name_len + hs[i].value_len;
    struct proxy *px = calloc(1, bytes);
    if (!px)
        return NULL;
    px->req = req;
    px->refs = 1;
    px->decoding = (opts->flags & EVICORN_FETCH_DECOMPRESS) != 0;
    px->extra = (evicorn_header *)(px + 1);
    px->nextra = n;
    char *s = (char *)(px->extra + n);
    for (size_t i = 0; i < n; i++) {
        memcpy(s, hs[i].name, hs[i].name_len);
        px->extra[i].name = s, px->extra[i].name_len = hs[i].name_len;
        s += hs[i].name_len;
        memcpy(s, hs[i].value, hs[i].value_len);
        px->extra[i].value = s, px->extra[i].value_len = hs[i].value_len;
        s += hs[i].value_len;
    }
    px->via = strcpy(s, via);
    return px;
}

/* Content-Length's value, or -1 when it is not a plain number (the
 * response is then chunked). */
static int64_t content_length_of(const evicorn_header *h)
{
    if (h->value_len == 0 || h->value_len > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return -1;
        v = v * 10 + (h->value[i] - '0');
    }
    return v;
}

static void proxy_resume(evicorn_request *req, void *ud, int status)
{
    (void)req;
    struct proxy *px = ud;
    px->waiting_writable = false;
    if (status == 0 && px->f && px->paused) {
        px->paused = false;
        evicorn_fetch_pause(px->f, 0);
    }
    proxy_unref(px);
}

static void proxy_on_head(evicorn_request *req, void *ud, evicorn_exchange *f,
                          const evicorn_fetch_result *head)
{
    struct proxy *px = ud;
    size_t n = head->nheaders;
    evicorn_header *out = malloc((n + px->nextra + 1) * sizeof *out);
    evicorn_buf via = EVICORN_BUF_INIT;
    if (!out) {
        px->answered = evicorn_respond_error(req, 502, "upstream response: out of memory") == 0;
        evicorn_fetch_cancel(f);
        return;
    }
    size_t k = 0;
    int64_t length = -1;
    for (size_t i = 0; i < n; i++) {
        const evicorn_header *h = &head->headers[i];
        if (hop_in(h->name, h->name_len, head->headers, n) || name_eq(h->name, h->name_len, "via"))
            continue;
        if (name_eq(h->name, h->name_len, "content-length")) {
            if (!px->decoding)
                length = content_length_of(h);
            continue; /* the host writes the framing from `length` */
        }
        if (px->decoding && name_eq(h->name, h->name_len, "content-encoding"))
            continue;
        out[k++] = *h;
    }
    for (size_t i = 0; i < px->nextra; i++)
        out[k++] = px->extra[i];
    const char *version =
        head->size >= offsetof(evicorn_fetch_result, http_version) + sizeof head->http_version
            ? head->http_version
            : NULL;
    gather_via(&via, head->headers, n);
    add_via_entry(&via, version, version ? strlen(version) : 0, px->via);
    if (!via.failed)
        out[k++] = (evicorn_header){"via", 3, via.data, via.len};
    int rc = evicorn_start(req, head->status_code, out, k, length);
    free(out);
    evicorn_buf_free(&via);
    if (rc == 0) {
        px->head_sent = true;
        return;
    }
    if (rc == EVICORN_EINVAL) {
        evicorn_log(req, EVICORN_LOG_WARNING,
                    "upstream answered %d with a header that cannot be forwarded",
                    head->status_code);
        px->answered = evicorn_respond_error(req, 502,
                                             "upstream response has a header that cannot be "
                                             "forwarded") == 0;
    }
    evicorn_fetch_cancel(f);
}

static void proxy_on_data(evicorn_request *req, void *ud, evicorn_exchange *f, const char *data,
                          size_t len)
{
    struct proxy *px = ud;
    if (!px->head_sent)
        return;
    if (evicorn_send(req, data, len, 1) < 0) {
        evicorn_fetch_cancel(f);
        return;
    }
    if (px->paused || evicorn_writable(req))
        return;
    /* The client is behind: stop reading the upstream until it catches
     * up, so its TCP window closes rather than our buffers growing. */
    if (!px->waiting_writable) {
        if (evicorn_on_writable(req, proxy_resume, px) < 0) {
            evicorn_fetch_cancel(f);
            return;
        }
        px->waiting_writable = true;
        px->refs++;
    }
    px->paused = true;
    evicorn_fetch_pause(f, 1);
}

static void proxy_on_end(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct proxy *px = ud;
    px->f = NULL;
    if (res->error == 0) {
        if (px->head_sent)
            evicorn_send(req, NULL, 0, 0);
    } else if (px->head_sent) {
        /* Nothing can be said in a response under way: leaving it
         * incomplete makes the host cut the connection, so the client sees
         * a truncated body rather than a short complete one. */
        if (res->error != EVICORN_ECANCELED)
            evicorn_log(req, EVICORN_LOG_WARNING, "upstream response cut off: %s",
                        res->error_message ? res->error_message : "unknown error");
    } else if (!px->answered && res->error != EVICORN_ECANCELED) {
        evicorn_fetch_respond_error(req, res);
    }
    proxy_unref(px);
}

static const evicorn_fetch_events proxy_events = {
    .size = sizeof(evicorn_fetch_events),
    .on_head = proxy_on_head,
    .on_data = proxy_on_data,
    .on_end = proxy_on_end,
};

/* Whether a header of this name is among hs. */
static bool has_header(const evicorn_header *hs, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (hs[i].name_len == len && strncasecmp(hs[i].name, name, len) == 0)
            return true;
    return false;
}

/* opts->headers, then the client's end-to-end request headers, then Via:
 * into *out (free() it) and via (evicorn_buf_free it). */
static int forward_headers(evicorn_request *req, const evicorn_fetch_options *opts,
                           const char *pseudonym, evicorn_header **out, size_t *nout,
                           evicorn_buf *via)
{
    size_t nclient = evicorn_header_count(req);
    evicorn_header *client = malloc((nclient + 1) * sizeof *client);
    evicorn_header *hs = malloc((opts->nheaders + nclient + 1) * sizeof *hs);
    if (!client || !hs) {
        free(client);
        free(hs);
        return EVICORN_ENOMEM;
    }
    size_t m = 0;
    for (size_t i = 0; i < nclient; i++)
        if (evicorn_header_at(req, i, &client[m]) == 0)
            m++;
    size_t k = 0;
    for (size_t i = 0; i < opts->nheaders; i++)
        hs[k++] = opts->headers[i];
    for (size_t i = 0; i < m; i++) {
        const evicorn_header *h = &client[i];
        if (hop_in(h->name, h->name_len, client, m) || name_eq(h->name, h->name_len, "host") ||
            name_eq(h->name, h->name_len, "content-length") ||
            name_eq(h->name, h->name_len, "expect") || name_eq(h->name, h->name_len, "via") ||
            has_header(opts->headers, opts->nheaders, h->name, h->name_len))
            continue;
        hs[k++] = *h;
    }
    if (!has_header(opts->headers, opts->nheaders, "via", 3)) {
        evicorn_str version = evicorn_http_version(req);
        gather_via(via, client, m);
        add_via_entry(via, version.ptr, version.len, pseudonym);
        if (via->failed) {
            free(client);
            free(hs);
            return EVICORN_ENOMEM;
        }
        hs[k++] = (evicorn_header){"via", 3, via->data, via->len};
    }
    free(client);
    *out = hs;
    *nout = k;
    return 0;
}

int evicorn_fetch_proxy(evicorn_request *req, const evicorn_fetch_options *opts,
                        const evicorn_fetch_proxy_options *p)
{
    if (!EVICORN_HAS(fetch_start))
        return EVICORN_ENOSYS;
    if (!opts)
        return EVICORN_EINVAL;
    /* Both structs may come from code built against another SDK: read
     * what their size covers, the rest is zero. */
    evicorn_fetch_proxy_options po = {0};
    if (p)
        memcpy(&po, p, p->size < sizeof po ? p->size : sizeof po);
    evicorn_fetch_options o = {0};
    memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
    o.size = sizeof o;
    struct proxy *px = proxy_new(req, &po, &o);
    if (!px)
        return EVICORN_ENOMEM;
    evicorn_header *hs = NULL;
    evicorn_buf via = EVICORN_BUF_INIT;
    if (po.flags & EVICORN_PROXY_CLIENT_HEADERS) {
        int rc = forward_headers(req, &o, px->via, &hs, &o.nheaders, &via);
        if (rc < 0) {
            free(px);
            return rc;
        }
        o.headers = hs;
    }
    int rc = evicorn_fetch_start(req, &o, &proxy_events, px, &px->f);
    free(hs);
    evicorn_buf_free(&via);
    if (rc < 0)
        free(px);
    return rc;
}
