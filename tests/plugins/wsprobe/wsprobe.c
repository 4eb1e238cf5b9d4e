/* wsprobe: a test-only plugin for the WebSocket routes (ABI 1.2), built
 * twice (WSPROBE_VERSION "1" and "2") so that a hot-reload test can tell
 * old code from new. Every WebSocket route takes an optional ?tag=NAME:
 * when the connection ends, what the plugin saw (the on_close code and
 * reason, and the results of the calls the route made) is kept under that
 * name and answered by GET /wsprobe/closes/{tag}.
 *
 * WebSocket routes (async unless they end in _sync; the _sync twins run
 * the handler and every event on the thread pool):
 *   /wsprobe/echo, /wsprobe/echo_sync
 *       every message comes back as it was. The sync one also takes
 *       "sleep:MS" (blocks its pool thread, then answers "slept:MS") and
 *       "flood:N:SIZE" (N binary messages of SIZE bytes, each starting
 *       with its number as 4 big-endian bytes, then "flood-done:N").
 *   /wsprobe/version, /wsprobe/version_sync
 *       each text message MSG is answered "<version>:MSG".
 *   /wsprobe/reject, /wsprobe/reject_sync
 *       ws_close before accepting: the handshake is refused (403).
 *   /wsprobe/reject_custom, /wsprobe/reject_custom_sync
 *       refuses with its own response: 401, WWW-Authenticate and a JSON
 *       body.
 *   /wsprobe/subprotocol
 *       first tries to accept with a subprotocol the client did not offer
 *       and with a header that is not a token (both must fail with
 *       EVICORN_EINVAL and change nothing), then accepts with the first
 *       subprotocol offered and extra headers, some of them the host's
 *       own (which it must ignore); a second accept must fail with
 *       EVICORN_EALREADY. The message "scope" is answered with a JSON
 *       object of what the plugin sees; others are echoed.
 *   /wsprobe/noaccept, /wsprobe/noaccept_sync
 *       the handler returns without accepting or answering (500).
 *   /wsprobe/close, /wsprobe/close_sync
 *       "close:CODE:REASON" closes with that code and reason; when
 *       ws_close fails, "close-rc:RC" is sent instead. Others are echoed.
 *   /wsprobe/send_after_close, /wsprobe/send_after_close_sync
 *       the first message makes the plugin close (1000 "closing"), then
 *       call ws_send and ws_close again: both results are kept for
 *       /wsprobe/closes/{tag} (EVICORN_EPIPE expected).
 *   /wsprobe/late_accept?ms=N, /wsprobe/late_accept_sync?ms=N
 *       accepts only after N ms (an async sleep, or a blocked pool
 *       thread): the client may have gone by then.
 *   /wsprobe/pause
 *       "pause:MS" pauses the connection (ws_pause) and sleeps MS ms on
 *       it, then sends "resumed" and unpauses; the sleep's status is kept
 *       for /wsprobe/closes/{tag}. Others are echoed.
 * HTTP routes:
 *   GET /wsprobe/closes/{tag}   what the plugin saw, or 404 before the end
 *   GET /wsprobe/version        the plugin's version as text
 */
#define EVICORN_PLUGIN_MIN_ABI_MINOR 2
#include <evicorn/sdk.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef WSPROBE_VERSION
#define WSPROBE_VERSION "1"
#endif

#define TAG_MAX 64

/* One connection as the plugin sees it. */
struct conn {
    const char *route;
    char tag[TAG_MAX + 1];
    int accept_rc;
    int sleep_status;
    int second_accept;
    int close_rc;
    int send_after_close;
    int close_again;
    int pause_rc;
    unsigned messages;
};

/* What /wsprobe/closes/{tag} answers. */
struct record {
    struct record *next;
    struct conn c;
    int code;
    char reason[128];
    size_t reason_len;
};

static pthread_mutex_t records_mu = PTHREAD_MUTEX_INITIALIZER;
static struct record *records;

/* The value of ?name= as a long, or def. */
static long query_long(evicorn_request *req, const char *name, long def)
{
    return (long)evicorn_query_int(req, name, def, NULL);
}

static struct conn *conn_new(evicorn_request *req, const char *route)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->route = route;
    char *tag = evicorn_query_str(req, "tag", "", NULL);
    if (tag) {
        snprintf(c->tag, sizeof c->tag, "%s", tag);
        free(tag);
    }
    return c;
}

/* Keeps what c saw under its tag (nothing without one). */
static void record(const struct conn *c, int code, const char *reason, size_t len)
{
    if (!c->tag[0])
        return;
    struct record *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->c = *c;
    r->code = code;
    if (len > sizeof r->reason)
        len = sizeof r->reason;
    if (len)
        memcpy(r->reason, reason, len);
    r->reason_len = len;
    pthread_mutex_lock(&records_mu);
    r->next = records;
    records = r;
    pthread_mutex_unlock(&records_mu);
}

static void on_close(evicorn_request *ws, void *ud, int code, const char *reason, size_t len)
{
    (void)ws;
    struct conn *c = ud;
    record(c, code, reason, len);
    free(c);
}

/* A connection that was never accepted: kept with code 0. */
static void not_accepted(struct conn *c)
{
    record(c, 0, NULL, 0);
    free(c);
}

static void send_back(evicorn_request *ws, int binary, const char *data, size_t len)
{
    if (binary)
        evicorn_ws_send_binary(ws, data, len);
    else
        evicorn_ws_send_textn(ws, data, len);
}

/* "prefix..." at the start of data: the rest as a NUL-terminated copy. */
static char *after(const char *prefix, const char *data, size_t len)
{
    size_t n = strlen(prefix);
    if (len < n || memcmp(data, prefix, n) != 0)
        return NULL;
    char *rest = malloc(len - n + 1);
    if (!rest)
        return NULL;
    memcpy(rest, data + n, len - n);
    rest[len - n] = '\0';
    return rest;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Accepts req with the route's handlers, or refuses it (500) and keeps
 * the failure. */
static void accept_or_fail(evicorn_request *req, struct conn *c, evicorn_ws_message_fn on_message)
{
    if (!c) {
        evicorn_respond_error(req, 503, NULL);
        return;
    }
    c->accept_rc = evicorn_ws_accept(req, NULL, on_message, on_close, c);
    if (c->accept_rc != 0) {
        evicorn_respond_error(req, 500, NULL);
        not_accepted(c);
    }
}

/* ---- echo ---- */

static void echo_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct conn *c = ud;
    c->messages++;
    send_back(ws, binary, data, len);
}

static void echo(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "echo"), echo_message);
}

static void flood(evicorn_request *ws, const char *spec)
{
    long n = 0, size = 0;
    if (sscanf(spec, "%ld:%ld", &n, &size) != 2 || n < 0 || size < 4 || size > (1L << 24))
        return;
    char *buf = calloc(1, (size_t)size);
    if (!buf)
        return;
    long sent = 0;
    for (long i = 0; i < n; i++) {
        buf[0] = (char)(i >> 24);
        buf[1] = (char)(i >> 16);
        buf[2] = (char)(i >> 8);
        buf[3] = (char)i;
        if (evicorn_ws_send_binary(ws, buf, (size_t)size) != 0)
            break;
        sent++;
    }
    free(buf);
    char done[48];
    snprintf(done, sizeof done, "flood-done:%ld", sent);
    evicorn_ws_send_text(ws, done);
}

static void echo_sync_message(evicorn_request *ws, void *ud, int binary, const char *data,
                              size_t len)
{
    struct conn *c = ud;
    c->messages++;
    char *arg;
    if (!binary && (arg = after("sleep:", data, len)) != NULL) {
        sleep_ms(atol(arg));
        char reply[64];
        snprintf(reply, sizeof reply, "slept:%s", arg);
        free(arg);
        evicorn_ws_send_text(ws, reply);
        return;
    }
    if (!binary && (arg = after("flood:", data, len)) != NULL) {
        flood(ws, arg);
        free(arg);
        return;
    }
    send_back(ws, binary, data, len);
}

static void echo_sync(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "echo_sync"), echo_sync_message);
}

/* ---- version ---- */

static void version_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct conn *c = ud;
    c->messages++;
    evicorn_buf b = EVICORN_BUF_INIT;
    evicorn_buf_puts(&b, WSPROBE_VERSION ":");
    evicorn_buf_append(&b, data, len);
    if (!b.failed)
        send_back(ws, binary, b.data, b.len);
    evicorn_buf_free(&b);
}

static void version(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "version"), version_message);
}

static void version_sync(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "version_sync"), version_message);
}

static void http_version(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_respond_text(req, 200, NULL, WSPROBE_VERSION);
}

/* ---- refusals ---- */

static void reject(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_ws_close(req, EVICORN_WS_NORMAL, NULL);
}

static void reject_custom(evicorn_request *req, void *data)
{
    (void)data;
    static const char body[] = "{\"detail\":\"missing token\"}";
    static const char auth[] = "Bearer realm=\"wsprobe\"";
    const evicorn_header h[] = {
        {"content-type", 12, "application/json", 16},
        {"www-authenticate", 16, auth, sizeof auth - 1},
    };
    evicorn_respond(req, 401, h, 2, body, sizeof body - 1);
}

static void noaccept(evicorn_request *req, void *data)
{
    (void)req;
    (void)data;
}

/* ---- subprotocols, headers and the scope ---- */

static json_t *str_json(evicorn_str s)
{
    return json_stringn(s.ptr ? s.ptr : "", s.len);
}

static json_t *list_json(evicorn_request *req, int (*at)(evicorn_request *, size_t, evicorn_str *))
{
    json_t *a = json_array();
    evicorn_str s;
    for (size_t i = 0; a && at(req, i, &s) == 0; i++)
        json_array_append_new(a, str_json(s));
    return a;
}

static void scope_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct conn *c = ud;
    c->messages++;
    if (binary || len != 5 || memcmp(data, "scope", 5) != 0) {
        send_back(ws, binary, data, len);
        return;
    }
    const evicorn_api *api = evicorn_host_api();
    evicorn_str probe = {NULL, 0};
    evicorn_header_get(ws, "x-probe", &probe);
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(WSPROBE_VERSION));
    json_object_set_new(o, "method", str_json(evicorn_method(ws)));
    json_object_set_new(o, "path", str_json(evicorn_path(ws)));
    json_object_set_new(o, "raw_path", str_json(evicorn_raw_path(ws)));
    json_object_set_new(o, "query", str_json(evicorn_query_string(ws)));
    json_object_set_new(o, "route", str_json(evicorn_route_pattern(ws)));
    json_object_set_new(o, "http_version", str_json(evicorn_http_version(ws)));
    json_object_set_new(o, "x_probe", str_json(probe));
    json_object_set_new(o, "subprotocols", list_json(ws, api->ws_subprotocol_at));
    json_object_set_new(o, "extensions", list_json(ws, api->ws_extension_at));
    json_object_set_new(o, "second_accept", json_integer(c->second_accept));
    json_object_set_new(o, "id", json_integer((json_int_t)evicorn_ws_id(ws)));
    evicorn_ws_send_json(ws, o);
}

static void subprotocol(evicorn_request *req, void *data)
{
    (void)data;
    const evicorn_api *api = evicorn_host_api();
    struct conn *c = conn_new(req, "subprotocol");
    if (!c) {
        evicorn_respond_error(req, 503, NULL);
        return;
    }
    /* Neither of these may answer the handshake. */
    evicorn_ws_accept_options bad = {.size = sizeof bad, .subprotocol = "wsprobe-never-offered"};
    int bad_sub = api->ws_accept(req, &bad);
    const evicorn_header bad_header[] = {{"not a token", 11, "x", 1}};
    bad = (evicorn_ws_accept_options){.size = sizeof bad, .headers = bad_header, .nheaders = 1};
    int bad_hdr = api->ws_accept(req, &bad);

    char rcs[64];
    int rcs_len = snprintf(rcs, sizeof rcs, "subprotocol=%d header=%d", bad_sub, bad_hdr);
    evicorn_str first = evicorn_ws_subprotocol(req, 0);
    char *sub = first.ptr ? evicorn_strdup(first) : NULL;
    const evicorn_header h[] = {
        {"x-wsprobe-version", 17, WSPROBE_VERSION, sizeof WSPROBE_VERSION - 1},
        {"x-failed-accepts", 16, rcs, (size_t)rcs_len},
        /* The host's own: ignored. */
        {"Sec-WebSocket-Accept", 20, "forged", 6},
        {"Connection", 10, "close", 5},
        {"upgrade", 7, "h2c", 3},
    };
    evicorn_ws_accept_options o = {
        .size = sizeof o,
        .subprotocol = sub,
        .headers = h,
        .nheaders = sizeof h / sizeof h[0],
        .on_message = scope_message,
        .on_close = on_close,
        .ud = c,
    };
    c->accept_rc = api->ws_accept(req, &o);
    if (c->accept_rc != 0) {
        free(sub);
        evicorn_respond_error(req, 500, NULL);
        not_accepted(c);
        return;
    }
    /* Accepted: c belongs to the connection, and on_close (which frees
     * it) cannot run before this handler returns. */
    c->second_accept = api->ws_accept(req, &o);
    free(sub);
}

/* ---- closing ---- */

static void close_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct conn *c = ud;
    c->messages++;
    char *spec;
    if (binary || (spec = after("close:", data, len)) == NULL) {
        send_back(ws, binary, data, len);
        return;
    }
    char *reason = strchr(spec, ':');
    if (reason)
        *reason++ = '\0';
    int rc = evicorn_ws_close(ws, atoi(spec), reason && *reason ? reason : NULL);
    c->close_rc = rc;
    free(spec);
    if (rc != 0) {
        char reply[32];
        snprintf(reply, sizeof reply, "close-rc:%d", rc);
        evicorn_ws_send_text(ws, reply);
    }
}

static void close_route(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "close"), close_message);
}

static void close_sync(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "close_sync"), close_message);
}

static void send_after_close_message(evicorn_request *ws, void *ud, int binary, const char *data,
                                     size_t len)
{
    struct conn *c = ud;
    (void)binary;
    (void)data;
    (void)len;
    if (c->messages++ > 0)
        return;
    c->close_rc = evicorn_ws_close(ws, EVICORN_WS_NORMAL, "closing");
    c->send_after_close = evicorn_ws_send_text(ws, "too late");
    c->close_again = evicorn_ws_close(ws, EVICORN_WS_NORMAL, "again");
}

static void send_after_close(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "send_after_close"), send_after_close_message);
}

static void send_after_close_sync(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "send_after_close_sync"), send_after_close_message);
}

/* ---- pausing ---- */

static void unpause(evicorn_request *ws, void *ud, int status)
{
    struct conn *c = ud;
    c->sleep_status = status;
    if (status != 0)
        return; /* the connection is gone: on_close comes next */
    evicorn_ws_send_text(ws, "resumed");
    c->pause_rc = evicorn_host_api()->ws_pause(ws, 0);
}

static void pause_message(evicorn_request *ws, void *ud, int binary, const char *data, size_t len)
{
    struct conn *c = ud;
    c->messages++;
    char *arg;
    if (binary || (arg = after("pause:", data, len)) == NULL) {
        send_back(ws, binary, data, len);
        return;
    }
    int rc = evicorn_host_api()->ws_pause(ws, 1);
    if (rc == 0)
        rc = evicorn_sleep(ws, (double)atol(arg) / 1000.0, unpause, c);
    free(arg);
    c->pause_rc = rc;
    if (rc != 0) {
        char reply[32];
        snprintf(reply, sizeof reply, "pause-rc:%d", rc);
        evicorn_ws_send_text(ws, reply);
    }
}

static void pause_route(evicorn_request *req, void *data)
{
    (void)data;
    accept_or_fail(req, conn_new(req, "pause"), pause_message);
}

/* ---- accepting late ---- */

static void late_accept_timer(evicorn_request *req, void *ud, int status)
{
    struct conn *c = ud;
    c->sleep_status = status;
    c->accept_rc = evicorn_ws_accept(req, NULL, echo_message, on_close, c);
    if (c->accept_rc != 0)
        not_accepted(c);
}

static void late_accept(evicorn_request *req, void *data)
{
    (void)data;
    struct conn *c = conn_new(req, "late_accept");
    if (!c) {
        evicorn_respond_error(req, 503, NULL);
        return;
    }
    long ms = query_long(req, "ms", 0);
    int rc = evicorn_sleep(req, (double)ms / 1000.0, late_accept_timer, c);
    if (rc != 0) {
        c->sleep_status = rc;
        evicorn_respond_error(req, 500, NULL);
        not_accepted(c);
    }
}

static void late_accept_sync(evicorn_request *req, void *data)
{
    (void)data;
    struct conn *c = conn_new(req, "late_accept_sync");
    if (!c) {
        evicorn_respond_error(req, 503, NULL);
        return;
    }
    sleep_ms(query_long(req, "ms", 0));
    c->accept_rc = evicorn_ws_accept(req, NULL, echo_message, on_close, c);
    if (c->accept_rc != 0)
        not_accepted(c);
}

/* ---- GET /wsprobe/closes/{tag} ---- */

static void closes(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_str tag = evicorn_path_str(req, "tag", NULL);
    json_t *o = NULL;
    pthread_mutex_lock(&records_mu);
    for (struct record *r = records; r; r = r->next) {
        if (strlen(r->c.tag) != tag.len || memcmp(r->c.tag, tag.ptr, tag.len) != 0)
            continue;
        o = json_object();
        json_object_set_new(o, "route", json_string(r->c.route));
        json_object_set_new(o, "code", json_integer(r->code));
        json_object_set_new(o, "reason", json_stringn(r->reason, r->reason_len));
        json_object_set_new(o, "messages", json_integer(r->c.messages));
        json_object_set_new(o, "accept_rc", json_integer(r->c.accept_rc));
        json_object_set_new(o, "sleep_status", json_integer(r->c.sleep_status));
        json_object_set_new(o, "close_rc", json_integer(r->c.close_rc));
        json_object_set_new(o, "send_after_close", json_integer(r->c.send_after_close));
        json_object_set_new(o, "close_again", json_integer(r->c.close_again));
        json_object_set_new(o, "pause_rc", json_integer(r->c.pause_rc));
        break;
    }
    pthread_mutex_unlock(&records_mu);
    if (o)
        evicorn_respond_json(req, 200, o);
    else
        evicorn_respond_error(req, 404, "no close recorded");
}

static void shutdown_plugin(void *state)
{
    (void)state;
    pthread_mutex_lock(&records_mu);
    while (records) {
        struct record *r = records;
        records = r->next;
        free(r);
    }
    pthread_mutex_unlock(&records_mu);
}

static const evicorn_route routes[] = {
    EVICORN_WS("/wsprobe/echo", echo),
    EVICORN_WS_SYNC("/wsprobe/echo_sync", echo_sync),
    EVICORN_WS("/wsprobe/version", version),
    EVICORN_WS_SYNC("/wsprobe/version_sync", version_sync),
    EVICORN_WS("/wsprobe/reject", reject),
    EVICORN_WS_SYNC("/wsprobe/reject_sync", reject),
    EVICORN_WS("/wsprobe/reject_custom", reject_custom),
    EVICORN_WS_SYNC("/wsprobe/reject_custom_sync", reject_custom),
    EVICORN_WS("/wsprobe/subprotocol", subprotocol),
    EVICORN_WS("/wsprobe/noaccept", noaccept),
    EVICORN_WS_SYNC("/wsprobe/noaccept_sync", noaccept),
    EVICORN_WS("/wsprobe/close", close_route),
    EVICORN_WS_SYNC("/wsprobe/close_sync", close_sync),
    EVICORN_WS("/wsprobe/send_after_close", send_after_close),
    EVICORN_WS_SYNC("/wsprobe/send_after_close_sync", send_after_close_sync),
    EVICORN_WS("/wsprobe/late_accept", late_accept),
    EVICORN_WS_SYNC("/wsprobe/late_accept_sync", late_accept_sync),
    EVICORN_WS("/wsprobe/pause", pause_route),
    EVICORN_GET("/wsprobe/closes/{tag}", closes),
    EVICORN_GET("/wsprobe/version", http_version),
};

EVICORN_PLUGIN("wsprobe", WSPROBE_VERSION, routes, NULL, shutdown_plugin)
