/* fetchprobe: a test-only plugin for the ABI's outbound HTTP (1.4), built
 * twice (FETCHPROBE_VERSION "1" and "2") for the hot-reload test. It calls
 * the 1.4 functions through the host's table (evicorn_host_api()).
 *
 * Every route takes the upstream and the options from its query string:
 *   url=U                  the upstream URL (required)
 *   method=M, body=B       method and request body (whole-response mode)
 *   h=name:value           a request header (repeatable)
 *   follow=1 max_redirects=N decompress=1 insecure=1 http1=1 ca_file=F
 *   timeout=S connect_timeout=S max_response=N
 *   oldsize=1              pass the options with their 1.3 size (no flags)
 *
 * Routes (all async except /fetch/errors_sync):
 *   GET  /fetch/get        one fetch (stream=1: fetch_start, collecting the
 *                          body): JSON {rc, status, error, error_message,
 *                          http_version, url, redirects, body_len, headers,
 *                          body_b64 (bodies up to 1 MiB), elapsed, ...}
 *   GET  /fetch/proxy      fetch_start piped to the client: the upstream's
 *                          status, content-type and (without decompress)
 *                          content-length and content-encoding; the fetch
 *                          pauses while the client is not writable. A
 *                          failure before the head answers 502/504 JSON; a
 *                          failure after it cuts the response off.
 *   POST /fetch/upload     reads its own body in pieces (receive) and
 *                          writes them to the upstream (STREAM_BODY):
 *                          {status, error, error_message, sent, upstream}
 *   GET  /fetch/many?n=N   N fetches one after the other (stream=1: with
 *                          fetch_start): {ok, errors, first_error, ...}
 *   GET  /fetch/hang       a fetch (whole=1: the whole-response kind) that
 *                          answers only if it ends by itself
 *   GET  /fetch/errors     results of calls that must fail
 *   GET  /fetch/errors_sync  fetch_start from a pool thread: EPERM
 *   GET  /fetch/stats      counters, the version, pid, VmRSS and VmHWM
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, strdup under -std=c17 */
#endif
#define EVICORN_PLUGIN_MIN_ABI_MINOR 4
#include <evicorn/sdk.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FETCHPROBE_VERSION
#define FETCHPROBE_VERSION "1"
#endif

#define BODY_SHOWN_MAX (1u << 20)
#define COLLECT_MAX    (64u << 20)

struct probe {
    long streams_started;
    long streams_ended;
    long streams_ok;
    long streams_cancelled;
    long streams_failed;
    long pauses;
    long data_while_paused;
    long hang_ended;
    int hang_last_error;
    long uploads_ended;
    long many_done;
};

static const evicorn_api *api(void)
{
    return evicorn_host_api();
}

static struct probe *probe_of(evicorn_request *req)
{
    return evicorn_state(req);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether the host filled `field` of a result (1.4 fields of an older
 * host read as zero). */
#define RES_HAS(res, field)                                                                        \
    ((res)->size >= offsetof(evicorn_fetch_result, field) + sizeof((res)->field))

static int startup(void **state, char *err, size_t errlen)
{
    struct probe *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    if (!EVICORN_HAS(fetch_start) || !EVICORN_HAS(fetch_cancel)) {
        snprintf(err, errlen, "the host lacks fetch_start (ABI 1.4)");
        free(p);
        return 1;
    }
    *state = p;
    return 0;
}

static void shutdown_probe(void *state)
{
    free(state);
}

/* ---- options from the query string ---- */

struct opts {
    evicorn_fetch_options o;
    char *url, *method, *body, *ca_file;
    evicorn_header *headers;
    char **header_lines;
    size_t nheaders;
};

static void opts_free(struct opts *x)
{
    free(x->url);
    free(x->method);
    free(x->body);
    free(x->ca_file);
    for (size_t i = 0; i < x->nheaders; i++)
        free(x->header_lines[i]);
    free(x->header_lines);
    free(x->headers);
    memset(x, 0, sizeof *x);
}

/* Fills x from the query; 0, or -1 after answering 422/500. */
static int opts_parse(evicorn_request *req, struct opts *x, uint32_t extra_flags)
{
    evicorn_errors errs = EVICORN_ERRORS_INIT;
    memset(x, 0, sizeof *x);
    evicorn_query_require(req, "url", &errs);
    x->url = evicorn_query_str(req, "url", NULL, &errs);
    x->method = evicorn_query_str(req, "method", NULL, &errs);
    x->body = evicorn_query_str(req, "body", NULL, &errs);
    x->ca_file = evicorn_query_str(req, "ca_file", NULL, &errs);
    uint32_t flags = extra_flags;
    if (evicorn_query_bool(req, "follow", 0, &errs))
        flags |= EVICORN_FETCH_FOLLOW_REDIRECTS;
    if (evicorn_query_bool(req, "decompress", 0, &errs))
        flags |= EVICORN_FETCH_DECOMPRESS;
    if (evicorn_query_bool(req, "insecure", 0, &errs))
        flags |= EVICORN_FETCH_INSECURE;
    if (evicorn_query_bool(req, "http1", 0, &errs))
        flags |= EVICORN_FETCH_HTTP1_ONLY;
    int max_redirects = (int)evicorn_query_int(req, "max_redirects", 0, &errs);
    double timeout = evicorn_query_float(req, "timeout", 0, &errs);
    double connect_timeout = evicorn_query_float(req, "connect_timeout", 0, &errs);
    long long max_response = evicorn_query_int(req, "max_response", 0, &errs);
    int oldsize = evicorn_query_bool(req, "oldsize", 0, &errs);
    json_t *hl = evicorn_query_list(req, "h");
    if (hl && json_array_size(hl)) {
        size_t n = json_array_size(hl);
        x->headers = calloc(n, sizeof *x->headers);
        x->header_lines = calloc(n, sizeof *x->header_lines);
        if (!x->headers || !x->header_lines) {
            json_decref(hl);
            opts_free(x);
            evicorn_respond_error(req, 500, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            const char *line = json_string_value(json_array_get(hl, i));
            const char *colon = line ? strchr(line, ':') : NULL;
            if (!colon)
                continue;
            char *copy = strdup(line);
            if (!copy)
                continue;
            size_t nl = (size_t)(colon - line);
            const char *v = copy + nl + 1;
            while (*v == ' ')
                v++;
            x->header_lines[x->nheaders] = copy;
            x->headers[x->nheaders++] = (evicorn_header){copy, nl, v, strlen(v)};
        }
    }
    json_decref(hl);
    if (evicorn_errors_any(&errs)) {
        opts_free(x);
        evicorn_respond_validation(req, &errs);
        return -1;
    }
    evicorn_errors_clear(&errs);
    x->o.size = oldsize ? (uint32_t)offsetof(evicorn_fetch_options, flags) : (uint32_t)sizeof x->o;
    x->o.method = x->method;
    x->o.url = x->url;
    x->o.headers = x->headers;
    x->o.nheaders = x->nheaders;
    x->o.body = x->body;
    x->o.body_len = x->body ? strlen(x->body) : 0;
    x->o.connect_timeout = connect_timeout;
    x->o.timeout = timeout;
    x->o.max_response = max_response > 0 ? (size_t)max_response : 0;
    if (!oldsize) {
        x->o.flags = flags;
        x->o.max_redirects = max_redirects;
        x->o.ca_file = x->ca_file;
    }
    return 0;
}

/* ---- JSON of a result ---- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static char *base64(const char *data, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    const unsigned char *in = (const unsigned char *)data;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static json_t *headers_json(const evicorn_fetch_result *res)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < res->nheaders; i++) {
        const evicorn_header *h = &res->headers[i];
        json_array_append_new(
            a, json_pack("[s#,s#]", h->name, (int)h->name_len, h->value, (int)h->value_len));
    }
    return a;
}

/* The fields of res as an object; the body from body/body_len (whole mode)
 * or from `collected` (stream mode). */
static json_t *result_json(const evicorn_fetch_result *res, const char *body, size_t body_len)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "result_size", json_integer(res->size));
    json_object_set_new(o, "status", json_integer(res->status_code));
    json_object_set_new(o, "error", json_integer(res->error));
    json_object_set_new(o, "error_message", str_or_null(res->error ? res->error_message : NULL));
    json_object_set_new(o, "http_version",
                        str_or_null(RES_HAS(res, http_version) ? res->http_version : NULL));
    json_object_set_new(o, "url", str_or_null(RES_HAS(res, url) ? res->url : NULL));
    json_object_set_new(o, "redirects", json_integer(RES_HAS(res, redirects) ? res->redirects : 0));
    json_object_set_new(o, "headers", headers_json(res));
    json_object_set_new(o, "body_len", json_integer((json_int_t)body_len));
    if (body_len <= BODY_SHOWN_MAX) {
        char *b = base64(body ? body : "", body_len);
        json_object_set_new(o, "body_b64", b ? json_string(b) : json_null());
        free(b);
    }
    return o;
}

/* ---- /fetch/get ---- */

struct one {
    evicorn_request *req;
    struct opts x;
    double started;
    int stream;
    /* stream mode */
    evicorn_buf body;
    int head_seen;
    int head_status;
    long data_calls;
    size_t collected;
};

static void one_free(struct one *g)
{
    opts_free(&g->x);
    evicorn_buf_free(&g->body);
    free(g);
}

static void one_done(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct one *g = ud;
    if (res->error == EVICORN_ECANCELED && evicorn_disconnected(req)) {
        one_free(g);
        return;
    }
    json_t *o = g->stream ? result_json(res, g->body.data, g->collected)
                          : result_json(res, res->body, res->body_len);
    if (o) {
        json_object_set_new(o, "rc", json_integer(0));
        json_object_set_new(o, "elapsed", json_real(now() - g->started));
        json_object_set_new(o, "mode", json_string(g->stream ? "stream" : "whole"));
        if (g->stream) {
            json_object_set_new(o, "head_seen", json_boolean(g->head_seen));
            json_object_set_new(o, "head_status", json_integer(g->head_status));
            json_object_set_new(o, "data_calls", json_integer(g->data_calls));
        }
    }
    evicorn_respond_json(req, 200, o);
    one_free(g);
}

static void one_head(evicorn_request *req, void *ud, evicorn_exchange *f,
                     const evicorn_fetch_result *head)
{
    struct one *g = ud;
    (void)req;
    (void)f;
    g->head_seen++;
    g->head_status = head->status_code;
}

static void one_data(evicorn_request *req, void *ud, evicorn_exchange *f, const char *data,
                     size_t len)
{
    struct one *g = ud;
    (void)req;
    g->data_calls++;
    if (g->collected + len > COLLECT_MAX) {
        api()->fetch_cancel(f);
        return;
    }
    /* Past BODY_SHOWN_MAX only the length is kept. */
    if (g->collected + len <= BODY_SHOWN_MAX)
        evicorn_buf_append(&g->body, data, len);
    g->collected += len;
}

static void get_route(evicorn_request *req, void *data)
{
    (void)data;
    struct one *g = calloc(1, sizeof *g);
    if (!g) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    if (opts_parse(req, &g->x, 0) != 0) {
        free(g);
        return;
    }
    g->req = req;
    g->started = now();
    g->stream = evicorn_query_bool(req, "stream", 0, NULL);
    int rc;
    if (g->stream) {
        static const evicorn_fetch_events ev = {
            .size = sizeof ev, .on_head = one_head, .on_data = one_data, .on_end = one_done};
        evicorn_exchange *f = NULL;
        rc = api()->fetch_start(req, &g->x.o, &ev, g, &f);
    } else {
        rc = api()->fetch(req, &g->x.o, one_done, g);
    }
    if (rc != 0) {
        evicorn_respond_json(req, 200, json_pack("{s:i}", "rc", rc));
        one_free(g);
    }
}

/* ---- /fetch/proxy ---- */

struct proxy {
    evicorn_request *req;
    struct probe *p;
    struct opts x;
    evicorn_exchange *f; /* NULL after on_end */
    int refs;            /* the fetch, and a pending on_writable */
    int paused;
    int head_sent;
    int cancelled;
    uint64_t bytes;
};

static void proxy_unref(struct proxy *px)
{
    if (--px->refs == 0) {
        opts_free(&px->x);
        free(px);
    }
}

static void proxy_head(evicorn_request *req, void *ud, evicorn_exchange *f,
                       const evicorn_fetch_result *head)
{
    struct proxy *px = ud;
    (void)f;
    evicorn_header hs[4];
    size_t n = 0;
    int64_t cl = -1;
    int decoded = (px->x.o.flags & EVICORN_FETCH_DECOMPRESS) != 0;
    for (size_t i = 0; i < head->nheaders; i++) {
        const evicorn_header *h = &head->headers[i];
        if (h->name_len == 12 && memcmp(h->name, "content-type", 12) == 0 && n < 4)
            hs[n++] = *h;
        else if (!decoded && h->name_len == 16 && memcmp(h->name, "content-encoding", 16) == 0 &&
                 n < 4)
            hs[n++] = *h;
        else if (!decoded && h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0) {
            long long v;
            if (evicorn_parse_int(h->value, h->value_len, &v) == 0 && v >= 0)
                cl = v;
        }
    }
    const char *ver = RES_HAS(head, http_version) && head->http_version ? head->http_version : "";
    hs[n++] = (evicorn_header){"x-upstream-http-version", 23, ver, strlen(ver)};
    if (evicorn_start(req, head->status_code, hs, n, cl) == 0)
        px->head_sent = 1;
}

static void proxy_writable(evicorn_request *req, void *ud, int status)
{
    struct proxy *px = ud;
    (void)req;
    if (status == 0 && px->f && px->paused) {
        px->paused = 0;
        api()->fetch_pause(px->f, 0);
    }
    proxy_unref(px);
}

static void proxy_data(evicorn_request *req, void *ud, evicorn_exchange *f, const char *data,
                       size_t len)
{
    struct proxy *px = ud;
    if (px->paused)
        px->p->data_while_paused++;
    px->bytes += len;
    if (px->cancelled)
        return;
    if (evicorn_send(req, data, len, 1) != 0) {
        px->cancelled = 1;
        api()->fetch_cancel(f);
        return;
    }
    if (!px->paused && !evicorn_writable(req)) {
        px->paused = 1;
        px->p->pauses++;
        api()->fetch_pause(f, 1);
        px->refs++;
        if (evicorn_on_writable(req, proxy_writable, px) != 0) {
            px->refs--;
            px->paused = 0;
            api()->fetch_pause(f, 0);
        }
    }
}

static void proxy_end(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct proxy *px = ud;
    px->f = NULL;
    px->p->streams_ended++;
    if (res->error == 0) {
        px->p->streams_ok++;
        if (px->head_sent)
            evicorn_send(req, NULL, 0, 0);
        else
            evicorn_respond_error(req, 500, "on_end without on_head");
    } else {
        if (res->error == EVICORN_ECANCELED)
            px->p->streams_cancelled++;
        else
            px->p->streams_failed++;
        if (!px->head_sent && res->error != EVICORN_ECANCELED) {
            int st = res->error == EVICORN_ETIMEDOUT ? 504 : 502;
            evicorn_respond_json(req, st,
                                 json_pack("{s:i,s:s}", "error", res->error, "error_message",
                                           res->error_message ? res->error_message : ""));
        } else if (px->head_sent) {
            evicorn_log(req, EVICORN_LOG_INFO, "proxy cut off after %llu bytes: %s",
                        (unsigned long long)px->bytes,
                        res->error_message ? res->error_message : "?");
        }
    }
    proxy_unref(px);
}

static void proxy_route(evicorn_request *req, void *data)
{
    (void)data;
    struct proxy *px = calloc(1, sizeof *px);
    if (!px) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    if (opts_parse(req, &px->x, 0) != 0) {
        free(px);
        return;
    }
    px->req = req;
    px->p = probe_of(req);
    px->refs = 1;
    static const evicorn_fetch_events ev = {
        .size = sizeof ev, .on_head = proxy_head, .on_data = proxy_data, .on_end = proxy_end};
    int rc = api()->fetch_start(req, &px->x.o, &ev, px, &px->f);
    if (rc != 0) {
        evicorn_respond_json(req, 500, json_pack("{s:i}", "rc", rc));
        opts_free(&px->x);
        free(px);
        return;
    }
    px->p->streams_started++;
}

/* ---- /fetch/upload ---- */

struct upload {
    evicorn_request *req;
    struct probe *p;
    struct opts x;
    evicorn_exchange *f; /* NULL after on_end */
    int refs;            /* the fetch, and a pending receive */
    int waiting;         /* fetch_write said full: on_writable receives next */
    int write_error;
    int fulls;
    uint64_t sent;
    int status;
    evicorn_buf resp;
};

static void upload_unref(struct upload *u)
{
    if (--u->refs == 0) {
        opts_free(&u->x);
        evicorn_buf_free(&u->resp);
        free(u);
    }
}

static void upload_body(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                        int status);

static void upload_receive(struct upload *u)
{
    u->refs++;
    if (evicorn_receive(u->req, upload_body, u) != 0) {
        u->refs--;
        if (u->f)
            api()->fetch_cancel(u->f);
    }
}

static void upload_body(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                        int status)
{
    struct upload *u = ud;
    (void)req;
    if (!u->f) {
        upload_unref(u);
        return;
    }
    if (status != 0) {
        u->write_error = status;
        api()->fetch_cancel(u->f);
        upload_unref(u);
        return;
    }
    int rc = api()->fetch_write(u->f, data, len, more);
    if (rc < 0) {
        u->write_error = rc;
        api()->fetch_cancel(u->f);
    } else {
        u->sent += len;
        if (more) {
            if (rc == 1) {
                upload_receive(u);
            } else {
                u->fulls++;
                u->waiting = 1;
            }
        }
    }
    upload_unref(u);
}

static void upload_writable(evicorn_request *req, void *ud, evicorn_exchange *f)
{
    struct upload *u = ud;
    (void)req;
    (void)f;
    if (u->waiting) {
        u->waiting = 0;
        upload_receive(u);
    }
}

static void upload_head(evicorn_request *req, void *ud, evicorn_exchange *f,
                        const evicorn_fetch_result *head)
{
    struct upload *u = ud;
    (void)req;
    (void)f;
    u->status = head->status_code;
}

static void upload_data(evicorn_request *req, void *ud, evicorn_exchange *f, const char *data,
                        size_t len)
{
    struct upload *u = ud;
    (void)req;
    (void)f;
    if (u->resp.len + len <= 65536)
        evicorn_buf_append(&u->resp, data, len);
}

static void upload_end(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct upload *u = ud;
    u->f = NULL;
    u->p->uploads_ended++;
    json_t *up = u->resp.data ? json_loadb(u->resp.data, u->resp.len, 0, NULL) : NULL;
    if (!up)
        up = u->resp.data ? json_stringn_nocheck(u->resp.data, u->resp.len) : json_null();
    evicorn_respond_json(req, 200,
                         json_pack("{s:i,s:i,s:o,s:I,s:i,s:i,s:o}", "status",
                                   res->error ? 0 : u->status, "error", res->error, "error_message",
                                   str_or_null(res->error ? res->error_message : NULL), "sent",
                                   (json_int_t)u->sent, "write_error", u->write_error, "fulls",
                                   u->fulls, "upstream", up));
    upload_unref(u);
}

static void upload_route(evicorn_request *req, void *data)
{
    (void)data;
    struct upload *u = calloc(1, sizeof *u);
    if (!u) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    if (opts_parse(req, &u->x, EVICORN_FETCH_STREAM_BODY) != 0) {
        free(u);
        return;
    }
    if (!u->x.method)
        u->x.o.method = "POST";
    u->req = req;
    u->p = probe_of(req);
    u->refs = 1;
    static const evicorn_fetch_events ev = {.size = sizeof ev,
                                            .on_head = upload_head,
                                            .on_data = upload_data,
                                            .on_writable = upload_writable,
                                            .on_end = upload_end};
    int rc = api()->fetch_start(req, &u->x.o, &ev, u, &u->f);
    if (rc != 0) {
        evicorn_respond_json(req, 500, json_pack("{s:i}", "rc", rc));
        opts_free(&u->x);
        free(u);
        return;
    }
    upload_receive(u);
}

/* ---- /fetch/many ---- */

struct many {
    evicorn_request *req;
    struct opts x;
    long n, done, ok, errors;
    int stream;
    int first_error;
    char first_message[256];
    json_t *versions; /* version -> count */
    json_t *statuses; /* status -> count */
    double started;
};

static void many_free(struct many *m)
{
    opts_free(&m->x);
    json_decref(m->versions);
    json_decref(m->statuses);
    free(m);
}

static void many_next(struct many *m);

static void bump(json_t *counts, const char *key)
{
    json_t *v = json_object_get(counts, key);
    json_object_set_new(counts, key, json_integer(v ? json_integer_value(v) + 1 : 1));
}

static void many_one_done(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct many *m = ud;
    if (res->error == EVICORN_ECANCELED && evicorn_disconnected(req)) {
        many_free(m);
        return;
    }
    m->done++;
    if (res->error == 0) {
        m->ok++;
        char st[16];
        snprintf(st, sizeof st, "%d", res->status_code);
        bump(m->statuses, st);
        bump(m->versions,
             RES_HAS(res, http_version) && res->http_version ? res->http_version : "?");
    } else {
        if (m->errors++ == 0) {
            m->first_error = res->error;
            snprintf(m->first_message, sizeof m->first_message, "%s",
                     res->error_message ? res->error_message : "");
        }
    }
    if (m->done < m->n) {
        many_next(m);
        return;
    }
    probe_of(req)->many_done++;
    evicorn_respond_json(req, 200,
                         json_pack("{s:I,s:I,s:I,s:i,s:s,s:O,s:O,s:f}", "n", (json_int_t)m->n, "ok",
                                   (json_int_t)m->ok, "errors", (json_int_t)m->errors,
                                   "first_error", m->first_error, "first_message", m->first_message,
                                   "versions", m->versions, "statuses", m->statuses, "elapsed",
                                   now() - m->started));
    many_free(m);
}

static void many_next(struct many *m)
{
    int rc;
    if (m->stream) {
        static const evicorn_fetch_events ev = {.size = sizeof ev, .on_end = many_one_done};
        evicorn_exchange *f = NULL;
        rc = api()->fetch_start(m->req, &m->x.o, &ev, m, &f);
    } else {
        rc = api()->fetch(m->req, &m->x.o, many_one_done, m);
    }
    if (rc != 0) {
        evicorn_respond_json(m->req, 200,
                             json_pack("{s:i,s:I}", "rc", rc, "done", (json_int_t)m->done));
        many_free(m);
    }
}

static void many_route(evicorn_request *req, void *data)
{
    (void)data;
    struct many *m = calloc(1, sizeof *m);
    if (!m) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    if (opts_parse(req, &m->x, 0) != 0) {
        free(m);
        return;
    }
    m->req = req;
    m->n = (long)evicorn_query_int(req, "n", 10, NULL);
    m->stream = evicorn_query_bool(req, "stream", 0, NULL);
    m->versions = json_object();
    m->statuses = json_object();
    m->started = now();
    if (m->n < 1)
        m->n = 1;
    many_next(m);
}

/* ---- /fetch/hang ---- */

struct hang {
    struct probe *p;
    struct opts x;
};

static void hang_end(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct hang *h = ud;
    h->p->hang_ended++;
    h->p->hang_last_error = res->error;
    if (res->error != EVICORN_ECANCELED)
        evicorn_respond_json(req, 200,
                             json_pack("{s:i,s:i,s:o}", "status", res->status_code, "error",
                                       res->error, "error_message",
                                       str_or_null(res->error ? res->error_message : NULL)));
    opts_free(&h->x);
    free(h);
}

static void hang_route(evicorn_request *req, void *data)
{
    (void)data;
    struct hang *h = calloc(1, sizeof *h);
    if (!h) {
        evicorn_respond_error(req, 500, "out of memory");
        return;
    }
    if (opts_parse(req, &h->x, 0) != 0) {
        free(h);
        return;
    }
    h->p = probe_of(req);
    if (h->x.o.timeout == 0)
        h->x.o.timeout = 120;
    int rc;
    if (evicorn_query_bool(req, "whole", 0, NULL)) {
        rc = api()->fetch(req, &h->x.o, hang_end, h);
    } else {
        static const evicorn_fetch_events ev = {.size = sizeof ev, .on_end = hang_end};
        evicorn_exchange *f = NULL;
        rc = api()->fetch_start(req, &h->x.o, &ev, h, &f);
    }
    if (rc != 0) {
        evicorn_respond_json(req, 500, json_pack("{s:i}", "rc", rc));
        opts_free(&h->x);
        free(h);
    }
}

/* ---- /fetch/errors ---- */

struct errs {
    int no_url, null_opts, write_without_stream, write_after_cancel, end_error, ends;
    int head_seen;
};

static void errs_head(evicorn_request *req, void *ud, evicorn_exchange *f,
                      const evicorn_fetch_result *head)
{
    struct errs *e = ud;
    (void)req;
    (void)f;
    (void)head;
    e->head_seen++;
}

static void errs_end(evicorn_request *req, void *ud, const evicorn_fetch_result *res)
{
    struct errs *e = ud;
    e->ends++;
    e->end_error = res->error;
    evicorn_respond_json(req, 200,
                         json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "no_url", e->no_url, "null_opts",
                                   e->null_opts, "write_without_stream", e->write_without_stream,
                                   "end_error", e->end_error, "ends", e->ends, "head_seen",
                                   e->head_seen));
    free(e);
}

static void errors_route(evicorn_request *req, void *data)
{
    (void)data;
    struct errs *e = calloc(1, sizeof *e);
    char *url = evicorn_query_str(req, "url", NULL, NULL);
    if (!e || !url) {
        free(e);
        free(url);
        evicorn_respond_error(req, 422, "url required");
        return;
    }
    static const evicorn_fetch_events ev = {
        .size = sizeof ev, .on_head = errs_head, .on_end = errs_end};
    evicorn_fetch_options o = {.size = sizeof o};
    evicorn_exchange *f = NULL;
    e->no_url = api()->fetch_start(req, &o, &ev, e, &f);
    e->null_opts = api()->fetch_start(req, NULL, &ev, e, &f);
    o.url = url;
    int rc = api()->fetch_start(req, &o, &ev, e, &f);
    free(url);
    if (rc != 0) {
        evicorn_respond_json(req, 200, json_pack("{s:i}", "rc", rc));
        free(e);
        return;
    }
    e->write_without_stream = api()->fetch_write(f, "x", 1, 1);
    api()->fetch_cancel(f); /* on_end: ECANCELED, not inside this call */
    if (e->ends != 0)
        evicorn_log(req, EVICORN_LOG_ERROR, "on_end ran inside fetch_cancel");
}

static void errors_sync_route(evicorn_request *req, void *data)
{
    (void)data;
    static const evicorn_fetch_events ev = {.size = sizeof ev};
    evicorn_fetch_options o = {.size = sizeof o, .url = "http://127.0.0.1:9/"};
    evicorn_exchange *f = NULL;
    int rc = api()->fetch_start(req, &o, &ev, NULL, &f);
    evicorn_respond_json(req, 200, json_pack("{s:i}", "fetch_start", rc));
}

/* ---- /fetch/stats ---- */

static long status_kb(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(fp);
    return v;
}

static void stats_route(evicorn_request *req, void *data)
{
    (void)data;
    struct probe *p = probe_of(req);
    json_t *o = json_pack(
        "{s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:I,s:I,s:I,s:I}", "version",
        FETCHPROBE_VERSION, "pid", (int)getpid(), "rss_kb", (json_int_t)status_kb("VmRSS"),
        "hwm_kb", (json_int_t)status_kb("VmHWM"), "streams_started", (json_int_t)p->streams_started,
        "streams_ended", (json_int_t)p->streams_ended, "streams_ok", (json_int_t)p->streams_ok,
        "streams_cancelled", (json_int_t)p->streams_cancelled, "streams_failed",
        (json_int_t)p->streams_failed, "pauses", (json_int_t)p->pauses, "data_while_paused",
        (json_int_t)p->data_while_paused, "hang_last_error", p->hang_last_error, "hang_ended",
        (json_int_t)p->hang_ended, "uploads_ended", (json_int_t)p->uploads_ended, "many_done",
        (json_int_t)p->many_done, "api_size", (json_int_t)api()->size);
    evicorn_respond_json(req, 200, o);
}

static const evicorn_route routes[] = {
    EVICORN_GET("/fetch/get", get_route),
    EVICORN_GET("/fetch/proxy", proxy_route),
    EVICORN_POST("/fetch/upload", upload_route),
    EVICORN_GET("/fetch/many", many_route),
    EVICORN_GET("/fetch/hang", hang_route),
    EVICORN_GET("/fetch/errors", errors_route),
    EVICORN_GET_SYNC("/fetch/errors_sync", errors_sync_route),
    EVICORN_GET("/fetch/stats", stats_route),
};

EVICORN_PLUGIN("fetchprobe", FETCHPROBE_VERSION, routes, startup, shutdown_probe)
