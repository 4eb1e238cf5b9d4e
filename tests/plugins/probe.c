/* probe: a test-only plugin exercising every part of the ABI, built against
 * the frozen v1 header in tests/abi-v1 (so it also proves that plugins
 * built against 1.0 keep loading). Variants chosen at compile time:
 *   PROBE_VERSION   the string GET /probe/version answers
 *   PROBE_ABI_MAJOR claim another ABI major (must be refused)
 *   PROBE_NAME      the plugin's name (default "probe")
 *   PROBE_PREFIX    the prefix of every route (default "/probe"), so two
 *                   variants can be served side by side
 *   PROBE_STARTUP_HANGS startup never returns (the watchdog's case)
 *   PROBE_PADDING   bytes of read-only data that make the file that large
 *                   (loading and verifying a big plugin, in bench/)
 *   PROBE_STARTUP_FAILS, PROBE_CONFLICT, PROBE_BAD_PATTERN, PROBE_NO_ENTRY
 * Nothing here includes a server header: it is a third-party plugin. */
#include <evicorn/abi.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef PROBE_VERSION
#define PROBE_VERSION "1"
#endif
#ifndef PROBE_ABI_MAJOR
#define PROBE_ABI_MAJOR EVICORN_ABI_MAJOR
#endif
#ifndef PROBE_NAME
#define PROBE_NAME "probe"
#endif
#ifndef PROBE_PREFIX
#define PROBE_PREFIX "/probe"
#endif

static const evicorn_api *api;

static void reply(evicorn_request *req, int status, const char *text)
{
    static const evicorn_header h = {"content-type", 12, "text/plain", 10};
    api->respond(req, status, &h, 1, text, strlen(text));
}

static long param_long(evicorn_request *req, const char *name)
{
    evicorn_str v;
    char tmp[32] = "";
    if (api->param(req, name, &v) == 0 && v.len < sizeof tmp)
        memcpy(tmp, v.ptr, v.len);
    return atol(tmp);
}

static void log_line(evicorn_request *req, const char *fmt, long a)
{
    char msg[128];
    snprintf(msg, sizeof msg, fmt, a);
    api->log(req, 2, msg);
}

#ifdef PROBE_PADDING
/* Mapped with the code, as a big plugin's tables would be. */
__attribute__((used)) static const unsigned char padding[PROBE_PADDING] = {1, 2, 3};
#endif

/* GET /probe/version */
static void version(evicorn_request *req, void *data)
{
    (void)data;
    reply(req, 200, PROBE_VERSION);
}

/* GET /probe/delay/{ms:int}: answers after ms on a timer. */
static void delay_done(evicorn_request *req, void *ud, int status)
{
    (void)ud;
    if (status != 0) {
        api->log(req, 2, "delay cancelled");
        return;
    }
    char text[64];
    snprintf(text, sizeof text, "delay " PROBE_VERSION " %ld", param_long(req, "ms"));
    reply(req, 200, text);
}

static void delay(evicorn_request *req, void *data)
{
    (void)data;
    api->sleep(req, (double)param_long(req, "ms") / 1000.0, delay_done, NULL);
}

/* POST /probe/echo: the whole body back. */
static void echo_done(evicorn_request *req, void *ud, const char *body, size_t len, int more,
                      int status)
{
    (void)ud;
    (void)more;
    if (status != 0) {
        log_line(req, "echo body failed: %ld", status);
        return;
    }
    static const evicorn_header h = {"content-type", 12, "application/octet-stream", 24};
    api->respond(req, 200, &h, 1, body, len);
}

static void echo(evicorn_request *req, void *data)
{
    (void)data;
    api->read_body(req, echo_done, NULL);
}

/* POST /probe/chunks: counts the chunks the body arrived in. */
struct chunks {
    long n, bytes;
};

static void chunk_in(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                     int status)
{
    (void)data;
    struct chunks *c = ud;
    if (status != 0) {
        free(c);
        return;
    }
    c->n++;
    c->bytes += (long)len;
    if (more && api->receive(req, chunk_in, c) == 0)
        return;
    char text[96];
    snprintf(text, sizeof text, "{\"chunks\":%ld,\"bytes\":%ld}", c->n, c->bytes);
    reply(req, 200, text);
    free(c);
}

static void chunks(evicorn_request *req, void *data)
{
    (void)data;
    struct chunks *c = calloc(1, sizeof *c);
    if (c && api->receive(req, chunk_in, c) != 0)
        free(c);
}

/* GET /probe/stream/{n:int}: n chunks of 1 KiB with unknown length,
 * honouring backpressure. */
struct stream {
    long left;
    char block[1024];
};

static void stream_more(evicorn_request *req, void *ud, int status)
{
    struct stream *s = ud;
    if (status != 0) {
        free(s);
        return;
    }
    while (s->left > 0) {
        if (!api->writable(req)) {
            api->on_writable(req, stream_more, s);
            return;
        }
        s->left--;
        if (api->send(req, s->block, sizeof s->block, 1) != 0) {
            free(s);
            return;
        }
    }
    api->send(req, NULL, 0, 0);
    free(s);
}

static void stream(evicorn_request *req, void *data)
{
    (void)data;
    struct stream *s = malloc(sizeof *s);
    if (!s)
        return;
    s->left = param_long(req, "n");
    memset(s->block, 'x', sizeof s->block);
    static const evicorn_header h = {"content-type", 12, "text/plain", 10};
    api->start(req, 200, &h, 1, -1);
    stream_more(req, s, 0);
}

/* GET /probe/no-response: forgets to answer (the host must send 500). */
static void no_response(evicorn_request *req, void *data)
{
    (void)req;
    (void)data;
}

/* GET /probe/double: answers twice; the second must be refused. */
static void double_response(evicorn_request *req, void *data)
{
    (void)data;
    reply(req, 200, "first");
    int rc = api->respond(req, 200, NULL, 0, "second", 6);
    log_line(req, "second respond returned %ld", rc);
}

/* GET /probe/bad-header: a header value with CRLF is refused. */
static void bad_header(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_header h = {"x-evil", 6, "a\r\nset-cookie: x=1", 19};
    int rc = api->respond(req, 200, &h, 1, "", 0);
    char text[32];
    snprintf(text, sizeof text, "rc=%d", rc);
    reply(req, 200, text);
}

/* GET /probe/block/{ms:int}: an async handler that wrongly blocks. */
static void block(evicorn_request *req, void *data)
{
    (void)data;
    usleep((useconds_t)param_long(req, "ms") * 1000);
    reply(req, 200, "blocked");
}

/* GET /probe/sync-sleep/{ms:int}, sync: may block. */
static void sync_sleep(evicorn_request *req, void *data)
{
    (void)data;
    usleep((useconds_t)param_long(req, "ms") * 1000);
    reply(req, 200, "slept");
}

/* POST /probe/sync-echo, sync: the body is read before the handler runs. */
static void sync_echo(evicorn_request *req, void *data)
{
    (void)data;
    evicorn_str b = api->body(req);
    api->respond(req, 200, NULL, 0, b.ptr, b.len);
}

/* GET /probe/sync-stream/{n:int}, sync: n chunks of 64 KiB, blocking on
 * backpressure. */
static void sync_stream(evicorn_request *req, void *data)
{
    (void)data;
    static char block[65536];
    memset(block, 'y', sizeof block);
    long n = param_long(req, "n");
    api->start(req, 200, NULL, 0, n * (long)sizeof block);
    for (long i = 0; i < n; i++)
        if (api->send(req, block, sizeof block, i + 1 < n) != 0) {
            api->log(req, 2, "sync stream stopped: client gone");
            return;
        }
}

/* GET /probe/offload/{ms:int}: blocking work on the pool, answer on the loop. */
static void offload_work(void *ud)
{
    usleep((useconds_t)(long)ud * 1000);
}

static void offload_done(evicorn_request *req, void *ud, int status)
{
    (void)ud;
    if (status == 0)
        reply(req, 200, "offloaded");
}

static void offload(evicorn_request *req, void *data)
{
    (void)data;
    api->offload(req, offload_work, offload_done, (void *)param_long(req, "ms"));
}

/* GET /probe/watch: waits 30 s; a disconnect must cancel it at once. */
static void watch_disconnect(evicorn_request *req, void *ud, int status)
{
    (void)ud;
    (void)status;
    api->log(req, 2, "client disconnected");
}

static void watch(evicorn_request *req, void *data)
{
    (void)data;
    api->on_disconnect(req, watch_disconnect, NULL);
    api->sleep(req, 30, delay_done, NULL);
}

/* GET /probe/late-disconnect: registers on_disconnect only after the
 * client has gone; the callback must still run after the registering call
 * returns, never inside it. */
static int registering;

static void late_disconnect_cb(evicorn_request *req, void *ud, int status)
{
    (void)ud;
    (void)status;
    api->log(req, 2,
             registering ? "disconnect callback ran inside on_disconnect"
                         : "disconnect callback ran after on_disconnect returned");
}

static void late_disconnect_wake(evicorn_request *req, void *ud, int status)
{
    (void)ud;
    (void)status; /* ECANCELED: the client has gone */
    registering = 1;
    api->on_disconnect(req, late_disconnect_cb, NULL);
    registering = 0;
}

static void late_disconnect(evicorn_request *req, void *data)
{
    (void)data;
    api->sleep(req, 30, late_disconnect_wake, NULL);
}

/* GET /probe/scope/{name}: the ASGI scope as JSON-ish text. */
static void scope(evicorn_request *req, void *data)
{
    (void)data;
    char out[8192];
    size_t n = 0;
    evicorn_str m = api->method(req), p = api->path(req), rp = api->raw_path(req),
                q = api->query_string(req), root = api->root_path(req), sc = api->scheme(req),
                v = api->http_version(req), ch = api->client_host(req), sh = api->server_host(req),
                rt = api->route(req), nm = {0};
    api->param(req, "name", &nm);
    n += (size_t)snprintf(out + n, sizeof out - n,
                          "method=%.*s\npath=%.*s\nraw_path=%.*s\nquery=%.*s\nroot_path=%.*s\n"
                          "scheme=%.*s\nversion=%.*s\nclient=%.*s:%d\nserver=%.*s:%d\n"
                          "route=%.*s\nparam=%.*s\n",
                          (int)m.len, m.ptr, (int)p.len, p.ptr, (int)rp.len, rp.ptr, (int)q.len,
                          q.ptr, (int)root.len, root.ptr, (int)sc.len, sc.ptr, (int)v.len, v.ptr,
                          (int)ch.len, ch.ptr, api->client_port(req), (int)sh.len, sh.ptr,
                          api->server_port(req), (int)rt.len, rt.ptr, (int)nm.len, nm.ptr);
    for (size_t i = 0; i < api->header_count(req) && n < sizeof out - 256; i++) {
        evicorn_header h;
        api->header_at(req, i, &h);
        n += (size_t)snprintf(out + n, sizeof out - n, "header=%.*s: %.*s\n", (int)h.name_len,
                              h.name, (int)h.value_len, h.value);
    }
    reply(req, 200, out);
}

/* GET /probe/crash: dies, for the supervision tests. */
static void crash(evicorn_request *req, void *data)
{
    (void)req;
    (void)data;
    raise(SIGSEGV);
}

static const evicorn_route routes[] = {
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/version", EVICORN_ASYNC, version, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/delay/{ms:int}", EVICORN_ASYNC, delay, NULL},
    {sizeof(evicorn_route), "POST", PROBE_PREFIX "/echo", EVICORN_ASYNC, echo, NULL},
    {sizeof(evicorn_route), "POST", PROBE_PREFIX "/chunks", EVICORN_ASYNC, chunks, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/stream/{n:int}", EVICORN_ASYNC, stream, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/no-response", EVICORN_ASYNC, no_response, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/double", EVICORN_ASYNC, double_response, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/bad-header", EVICORN_ASYNC, bad_header, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/block/{ms:int}", EVICORN_ASYNC, block, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/sync-sleep/{ms:int}", EVICORN_SYNC, sync_sleep,
     NULL},
    {sizeof(evicorn_route), "POST", PROBE_PREFIX "/sync-echo", EVICORN_SYNC, sync_echo, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/sync-stream/{n:int}", EVICORN_SYNC, sync_stream,
     NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/offload/{ms:int}", EVICORN_ASYNC, offload, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/watch", EVICORN_ASYNC, watch, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/late-disconnect", EVICORN_ASYNC, late_disconnect,
     NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/scope/{name}", EVICORN_ASYNC, scope, NULL},
    {sizeof(evicorn_route), "GET", PROBE_PREFIX "/crash", EVICORN_ASYNC, crash, NULL},
#ifdef PROBE_CONFLICT
    /* Conflicts with the hello example's GET /. */
    {sizeof(evicorn_route), "GET", "/", EVICORN_ASYNC, version, NULL},
#endif
#ifdef PROBE_BAD_PATTERN
    {sizeof(evicorn_route), "GET", "/broken/{id", EVICORN_ASYNC, version, NULL},
#endif
};

static int startup(void **state, char *err, size_t errlen)
{
    (void)state;
#if defined(PROBE_STARTUP_HANGS)
    (void)err;
    (void)errlen;
    static volatile int forever = 1;
    while (forever)
        sleep(60);
    return 0;
#elif defined(PROBE_STARTUP_FAILS)
    snprintf(err, errlen, "database unreachable");
    return 1;
#else
    (void)err;
    (void)errlen;
    return 0;
#endif
}

static const evicorn_plugin descriptor = {
    .size = sizeof(evicorn_plugin),
    .abi_major = PROBE_ABI_MAJOR,
    .abi_minor = 0,
    .name = PROBE_NAME,
    .version = PROBE_VERSION,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .route_size = sizeof(evicorn_route),
    .startup = startup,
};

#ifndef PROBE_NO_ENTRY
EVICORN_EXPORT const evicorn_plugin *evicorn_plugin_entry(const evicorn_host *host)
{
    if (host->abi_major != EVICORN_ABI_MAJOR)
        return NULL;
    api = host->api;
    return &descriptor;
}
#else
EVICORN_EXPORT const evicorn_plugin *probe_not_the_entry(const evicorn_host *host)
{
    (void)host;
    return &descriptor;
}
#endif
