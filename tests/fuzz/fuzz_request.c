/* fuzz_request: arbitrary client bytes through the real connection code.
 *
 * Each input is sent over a socketpair to a connection the worker's own
 * serving core takes over (worker_core_init, worker_serve_fd: the
 * transport, the HTTP/1.1 protocol, requests), and the loop runs between
 * writes, so the server reads the bytes in the pieces the input chooses:
 * the HTTP/1 adapter and its guard, the head, pipelining and body limits,
 * request_prepare (target, percent-decoding, proxy headers), the response
 * writer and the ordering of pipelined responses all run as in
 * production. The requests' dispatch function is this file's: it routes
 * through a fixed router table (static, {x:int}, {x:float}, {x:str} and
 * {x:path} routes) to handlers that answer at once, read the body whole,
 * read it in chunks, or stream the response.
 *
 * Input layout (split_input.h): options, the lengths of successive writes,
 * then the bytes the client sends. Options: bit 0 a 64-byte body limit
 * (413 paths) instead of 1 MiB; bit 1 --limit-concurrency 1 (503
 * shedding); bit 2 --no-proxy-headers; bit 3 the client closes without
 * shutting its write side first; bit 4 small head limits (512-byte head,
 * 128-byte request line, 8 header fields) so that inputs of a few KiB
 * reach them.
 *
 * Every request, buffer and connection is released before the input
 * returns (the pool of recycled requests too), so libFuzzer checks for
 * leaks after every input; a request still held by a handler at the end
 * aborts the run. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "request.h"
#include "router.h"
#include "split_input.h"
#include "worker.h"

/* Loop iterations run after each write before the server counts as idle
 * (a stalled connection, e.g. a full pipeline, stays busy). */
#define MAX_SPINS 16

enum handler { H_HELLO, H_SCOPE, H_READ_BODY, H_RECEIVE, H_STREAM, H_NO_BODY };

struct route_def {
    const char *method, *pattern;
    enum handler h;
};

static const struct route_def routes[] = {
    {"GET", "/", H_HELLO},
    {"GET", "/items/{x:int}", H_SCOPE},
    {"DELETE", "/items/{x:int}", H_HELLO},
    {"GET", "/price/{x:float}", H_SCOPE},
    {"GET", "/files/{x:path}", H_STREAM},
    {"GET", "/users/{x}", H_SCOPE},
    {"GET", "/users/me", H_HELLO},
    {"POST", "/upload", H_READ_BODY},
    {"PUT", "/upload/{x:int}", H_READ_BODY},
    {"POST", "/stream/{x:str}", H_RECEIVE},
    {"*", "/any/{x:int}/{rest:path}", H_NO_BODY},
};

static struct router *router;
static struct worker wk;
static struct config cfg;
static ev_prepare prepare;

/* ---- the requests' dispatch ---- */

static void answer(struct request *r, int status, const void *body, size_t len)
{
    static const struct http_header h = {"content-type", 12, "text/plain", 10};
    request_respond(r, status, &h, 1, body, len);
    request_finish(r, NULL);
}

/* The scope as a handler sees it, folded into a small response. */
static void handle_scope(struct request *r)
{
    size_t len, total = 0;
    request_method(r, &len);
    total += len;
    request_path(r, &len);
    total += len;
    request_raw_path(r, &len);
    total += len;
    request_query(r, &len);
    total += len;
    total += strlen(request_scheme(r)) + strlen(request_client(r)->ip);
    int major, minor;
    request_http_version(r, &major, &minor);
    for (size_t i = 0; i < request_header_count(r); i++) {
        const char *name, *value;
        size_t nlen, vlen;
        request_header_at(r, i, &name, &nlen, &value, &vlen);
        total += nlen + vlen;
    }
    const char *ct = request_header(r, "content-type", &len);
    char body[64];
    int n = snprintf(body, sizeof body, "%zu %d.%d", total, major, minor);
    if (ct) {
        /* A request header value echoed as a response header: the writer
         * must refuse anything that could split the response. */
        struct http_header h = {"x-echo", 6, ct, len};
        request_respond(r, 200, &h, 1, body, (size_t)n);
        request_finish(r, NULL);
        return;
    }
    answer(r, 200, body, (size_t)n);
}

static void on_whole_body(struct request *r, void *ud, const char *data, size_t len, bool more,
                          int err)
{
    (void)ud;
    (void)more;
    if (err == -EMSGSIZE) {
        request_respond_error(r, 413, "Request body too large");
        request_finish(r, NULL);
        return;
    }
    if (err) {
        request_finish(r, NULL);
        return;
    }
    answer(r, 200, data, len > 32 ? 32 : len);
}

static void on_chunk(struct request *r, void *ud, const char *data, size_t len, bool more, int err)
{
    (void)data;
    uintptr_t seen = (uintptr_t)ud + len;
    if (err) {
        request_finish(r, NULL);
        return;
    }
    if (more && request_receive(r, on_chunk, (void *)seen) == 0)
        return;
    char body[32];
    int n = snprintf(body, sizeof body, "%zu", (size_t)seen);
    answer(r, 200, body, (size_t)n);
}

/* A handler that wants to hear of a disconnect; the body callback or the
 * response path finishes the request, so this only asks. */
static void on_disconnect(struct request *r, void *ud)
{
    (void)ud;
    if (!request_disconnected(r))
        abort();
}

static void handle_stream(struct request *r)
{
    size_t len;
    const char *path = request_path(r, &len);
    request_on_disconnect(r, on_disconnect, NULL);
    /* Unknown length: chunked on HTTP/1.1, close-delimited on HTTP/1.0. */
    if (request_writable(r) && !request_response_started(r) &&
        request_start(r, 200, NULL, 0, -1) == 0 && request_send(r, path, len, true) == 0)
        request_send(r, "\n", 1, false);
    request_finish(r, NULL);
}

static void dispatch(struct request *r, void *ud)
{
    (void)ud;
    size_t mlen, plen;
    const char *method = request_method(r, &mlen);
    const char *path = request_path(r, &plen);
    struct router_match m;
    enum router_result res = router_match(router, method, mlen, path, plen, &m);
    if (res == ROUTER_METHOD_NOT_ALLOWED) {
        struct http_header h = {"allow", 5, m.allow, strlen(m.allow)};
        request_respond(r, 405, &h, 1, "{}", 2);
        request_finish(r, NULL);
        return;
    }
    if (res != ROUTER_FOUND) {
        request_respond_error(r, 404, "Not Found");
        request_finish(r, NULL);
        return;
    }
    switch (((const struct route_def *)m.target)->h) {
    case H_HELLO:
        answer(r, 200, "hello", 5);
        break;
    case H_SCOPE:
        handle_scope(r);
        break;
    case H_READ_BODY:
        if (request_read_body(r, on_whole_body, NULL) < 0)
            request_finish(r, NULL);
        break;
    case H_RECEIVE:
        request_on_disconnect(r, on_disconnect, NULL);
        if (request_receive(r, on_chunk, NULL) < 0)
            request_finish(r, NULL);
        break;
    case H_STREAM:
        handle_stream(r);
        break;
    case H_NO_BODY:
        answer(r, 204, NULL, 0);
        break;
    }
}

/* ---- the loop, driven as worker.c's on_prepare drives it ---- */

static void on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    worker_end_iteration(p->data);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_threshold = LOG_CRITICAL;
    router = router_new();
    if (!router)
        abort();
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char err[256];
        if (router_add(router, routes[i].method, routes[i].pattern, (void *)&routes[i], err,
                       sizeof err) < 0) {
            fprintf(stderr, "fuzz_request: %s\n", err);
            abort();
        }
    }
    /* The server's own defaults (config_parse), with the flags that make
     * more of the code reachable. */
    char *args[] = {"evicorn",
                    "--threads",
                    "1",
                    "--header",
                    "x-fuzz:1",
                    "--log-level",
                    "critical",
                    "--no-access-log",
                    "--proxy-headers",
                    "--forwarded-allow-ips",
                    "127.0.0.1, 10.0.0.0/8"};
    char err[256];
    if (config_parse(&cfg, (int)(sizeof args / sizeof args[0]), args, err, sizeof err) !=
            CONFIG_OK ||
        config_apply_env(&cfg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_request: %s\n", err);
        abort();
    }
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop || worker_core_init(&wk, loop, &cfg) < 0)
        abort();
    wk.requests.dispatch = dispatch;
    ev_prepare_init(&prepare, on_prepare);
    prepare.data = &wk;
    ev_prepare_start(wk.loop, &prepare);
    ev_unref(wk.loop); /* the prepare watcher alone must not keep the loop busy */
    return 0;
}

/* Reads and drops whatever the server wrote; true when something came. */
static bool drain_client(int fd)
{
    char sink[16384];
    bool any = false;
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n <= 0)
            return any;
        any = true;
    }
}

static void run_until_idle(int client)
{
    for (int i = 0; i < MAX_SPINS; i++) {
        ev_run(wk.loop, EVRUN_NOWAIT);
        bool got = client >= 0 && drain_client(client);
        if (!got && !wk.defer.first && !wk.conns.dirty && i > 0)
            break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct split_input in;
    if (!split_input_parse(&in, data, size))
        return 0;
    uint8_t opts = in.opts;
    const uint8_t *payload = in.payload;
    size_t len = in.len;

    cfg.limit_body = (opts & 1) ? 64 : 1024 * 1024;
    cfg.limit_concurrency = (opts & 2) ? 1 : 0;
    cfg.proxy_headers = !(opts & 4);
    if (opts & 16)
        wk.http1.limits = (struct h1_limits){.max_head = 512, .max_line = 128, .max_headers = 8};
    else
        wk.http1.limits =
            (struct h1_limits){.max_head = 16 * 1024, .max_line = 8 * 1024, .max_headers = 128};

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    struct addr peer;
    addr_set(&peer, "127.0.0.1", 9, 40000);
    if (!worker_serve_fd(&wk, sv[0], &peer))
        abort();

    size_t off = 0;
    while (off < len) {
        size_t n = split_input_piece(&in, len - off);
        ssize_t sent = send(sv[1], payload + off, n, MSG_NOSIGNAL);
        if (sent <= 0)
            break; /* the server closed, or stopped reading */
        off += (size_t)sent;
        run_until_idle(sv[1]);
    }
    if (!(opts & 8)) {
        shutdown(sv[1], SHUT_WR);
        run_until_idle(sv[1]);
    }
    close(sv[1]);
    run_until_idle(-1);

    /* Whatever is still open (a connection waiting on a stalled pipeline)
     * is aborted, as on a forced shutdown. */
    conn_abort_all(&wk.conns);
    run_until_idle(-1);
    if (wk.requests.inflight != 0 || wk.defer.first || wk.conns.dirty) {
        fprintf(stderr, "fuzz_request: %ld request(s) still in flight after close\n",
                wk.requests.inflight);
        abort();
    }
    /* The protocol keeps finished requests for reuse; give them back, so
     * each input frees all it allocated and libFuzzer keeps checking for
     * leaks after every input. */
    request_pool_clear(&wk.http1.pool);
    return 0;
}
