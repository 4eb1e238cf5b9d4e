/* dispatch: routes a request to a --static folder or the plugin route that
 * matches it, or answers FastAPI's 404/405 (and the opt-in status page);
 * see dispatch.h. */
#include "dispatch.h"

#include <string.h>

#include "buf.h"
#include "host.h"
#include "metrics.h"
#include "plugins.h"
#include "request.h"
#include "router.h"
#include "static.h"

static void respond_status(const struct dispatcher *d, struct request *r)
{
    struct buf body = {0};
    static const struct http_header json = {"content-type", 12, "application/json", 16};
    if (plugins_status_json(d->plugins, &body) < 0)
        request_respond_error(r, 500, NULL);
    else
        request_respond(r, 200, &json, 1, buf_start(&body), buf_size(&body));
    buf_free(&body);
}

static void respond_metrics(struct request *r)
{
    struct buf body = {0};
    static const struct http_header h[] = {
        {"content-type", 12, "text/plain; version=0.0.4; charset=utf-8", 40},
        {"cache-control", 13, "no-store", 8}};
    if (metrics_render(&body) < 0)
        request_respond_error(r, 500, NULL);
    else
        request_respond(r, 200, h, 2, buf_start(&body), buf_size(&body));
    buf_free(&body);
}

/* 200 while the instance takes work; 503 once its shutdown has begun (a
 * load balancer then stops sending before connections close) or while no
 * worker serves. */
static void respond_health(const struct dispatcher *d, struct request *r)
{
    static const struct http_header h[] = {{"content-type", 12, "application/json", 16},
                                           {"cache-control", 13, "no-store", 8}};
    bool serving = !(d->draining && *d->draining);
    if (metrics_instance_healthy(serving)) {
        static const char ok[] = "{\"status\":\"ok\"}";
        request_respond(r, 200, h, 2, ok, sizeof ok - 1);
    } else {
        static const char down[] = "{\"status\":\"unavailable\"}";
        request_respond(r, 503, h, 2, down, sizeof down - 1);
    }
}

static bool is_path(const char *want, const char *path, size_t len)
{
    return want && strlen(want) == len && memcmp(want, path, len) == 0;
}

void dispatch_request(struct request *r, void *ud)
{
    const struct dispatcher *d = ud;
    size_t mlen, plen;
    const char *method = request_method(r, &mlen);
    const char *path = request_path(r, &plen);

    if (is_path(d->status_path, path, plen)) {
        r->metrics_route = metrics_route(d->status_path);
        respond_status(d, r);
        request_finish(r, NULL);
        return;
    }
    if (is_path(d->health_path, path, plen)) {
        r->metrics_route = metrics_route(d->health_path);
        respond_health(d, r);
        request_finish(r, NULL);
        return;
    }
    if (is_path(d->metrics_path, path, plen)) {
        r->metrics_route = metrics_route(d->metrics_path);
        respond_metrics(r);
        request_finish(r, NULL);
        return;
    }
    /* Folders come before routes; a WebSocket handshake is never a file. */
    if (!r->ws_handshake && static_serve(d->statics, r)) {
        request_finish(r, "static file");
        return;
    }
    struct route_table *t = plugins_routes(d->plugins);
    struct router_match m;
    if (r->ws_handshake) {
        /* A WebSocket handshake goes to WebSocket routes only; with none
         * at its path it is refused with Starlette's status (403). */
        if (router_match(t->ws_router, "GET", 3, path, plen, &m) == ROUTER_FOUND) {
            r->metrics_route = metrics_route(m.pattern);
            r->log_route = m.pattern;
            host_dispatch(d->host, r, m.target, t, &m);
            return;
        }
        r->metrics_route = METRICS_ROUTE_UNMATCHED;
        request_respond_error(r, 403, "No WebSocket route at this path");
        request_finish(r, NULL);
        return;
    }
    enum router_result res = router_match(t->router, method, mlen, path, plen, &m);
    if (res == ROUTER_FOUND) {
        r->metrics_route = metrics_route(m.pattern);
        r->log_route = m.pattern;
        host_dispatch(d->host, r, m.target, t, &m);
        return;
    }
    r->metrics_route = METRICS_ROUTE_UNMATCHED;
    if (res == ROUTER_METHOD_NOT_ALLOWED) {
        static const char body[] = "{\"detail\":\"Method Not Allowed\"}";
        struct http_header h[2] = {{"content-type", 12, "application/json", 16},
                                   {"allow", 5, m.allow, strlen(m.allow)}};
        request_respond(r, 405, h, 2, body, sizeof body - 1);
    } else {
        request_respond_error(r, 404, "Not Found");
    }
    request_finish(r, NULL);
}
