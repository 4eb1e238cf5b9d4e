/* inspect: a test-only plugin that reports what reached its handler, so a
 * client can tell exactly how the server framed its bytes. Any method on
 * /inspect or /inspect/{rest:path} reads the whole body, then answers 200
 * with one "key=value" line per item:
 *   hit=N          calls of the handler since the plugin started
 *   method=, path=, raw_path=, query=, version=
 *   header=name: value   (each header, in order, names lower-cased)
 *   body_len=N
 * followed by "body=" and the body bytes as received. Each call is also
 * logged ("inspect hit N METHOD PATH"), and a body that fails to arrive
 * is logged ("inspect body failed N status S") instead of answered.
 * Nothing here includes a server header: it is a third-party plugin. */
#include <evicorn/abi.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const evicorn_api *api;
static atomic_long hits;

struct buf {
    char *p;
    size_t len, cap;
};

static int put(struct buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        char *n = realloc(b->p, cap);
        if (!n)
            return -1;
        b->p = n;
        b->cap = cap;
    }
    if (len > 0) /* data may be NULL when there is nothing to copy */
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static int put_str(struct buf *b, const char *key, evicorn_str v)
{
    return put(b, key, strlen(key)) | put(b, v.ptr, v.len) | put(b, "\n", 1);
}

static void body_done(evicorn_request *req, void *ud, const char *body, size_t len, int more,
                      int status)
{
    long hit = (long)(intptr_t)ud;
    (void)more;
    char line[96];
    if (status != 0) {
        snprintf(line, sizeof line, "inspect body failed %ld status %d", hit, status);
        api->log(req, 2, line);
        return;
    }
    struct buf b = {0};
    int rc = 0;
    snprintf(line, sizeof line, "hit=%ld\n", hit);
    rc |= put(&b, line, strlen(line));
    rc |= put_str(&b, "method=", api->method(req));
    rc |= put_str(&b, "path=", api->path(req));
    rc |= put_str(&b, "raw_path=", api->raw_path(req));
    rc |= put_str(&b, "query=", api->query_string(req));
    rc |= put_str(&b, "version=", api->http_version(req));
    for (size_t i = 0; i < api->header_count(req); i++) {
        evicorn_header h;
        if (api->header_at(req, i, &h) != 0)
            continue;
        rc |= put(&b, "header=", 7) | put(&b, h.name, h.name_len) | put(&b, ": ", 2);
        rc |= put(&b, h.value, h.value_len) | put(&b, "\n", 1);
    }
    snprintf(line, sizeof line, "body_len=%zu\nbody=", len);
    rc |= put(&b, line, strlen(line));
    rc |= put(&b, body, len);
    static const evicorn_header ct = {"content-type", 12, "text/plain", 10};
    if (rc == 0)
        api->respond(req, 200, &ct, 1, b.p, b.len);
    else
        api->respond(req, 500, &ct, 1, "out of memory", 13);
    free(b.p);
}

static void inspect(evicorn_request *req, void *data)
{
    (void)data;
    long hit = atomic_fetch_add(&hits, 1) + 1;
    evicorn_str m = api->method(req), p = api->path(req);
    char line[256];
    snprintf(line, sizeof line, "inspect hit %ld %.*s %.*s", hit, (int)(m.len > 32 ? 32 : m.len),
             m.ptr, (int)(p.len > 128 ? 128 : p.len), p.ptr);
    api->log(req, 2, line);
    api->read_body(req, body_done, (void *)(intptr_t)hit);
}

static const evicorn_route routes[] = {
    {sizeof(evicorn_route), "*", "/inspect", EVICORN_ASYNC, inspect, NULL},
    {sizeof(evicorn_route), "*", "/inspect/{rest:path}", EVICORN_ASYNC, inspect, NULL},
};

static const evicorn_plugin descriptor = {
    .size = sizeof(evicorn_plugin),
    .abi_major = EVICORN_ABI_MAJOR,
    .abi_minor = 0,
    .name = "inspect",
    .version = "1",
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .route_size = sizeof(evicorn_route),
};

EVICORN_EXPORT const evicorn_plugin *evicorn_plugin_entry(const evicorn_host *host)
{
    if (host->abi_major != EVICORN_ABI_MAJOR)
        return NULL;
    api = host->api;
    return &descriptor;
}
