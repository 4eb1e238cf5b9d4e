/* dispatch: routes a request to a --static folder or the plugin route that
 * matches it, or answers FastAPI's 404/405 (and the opt-in status page);
 * see dispatch.h. */
#include "dispatch.h"

#include <string.h>

#include "buf.h"
#include "host.h"
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

void dispatch_request(struct request *r, void *ud)
{
    const struct dispatcher *d = ud;
    size_t mlen, plen;
    const char *method = request_method(r, &mlen);
    const char *path = request_path(r, &plen);

    if (d->status_path && strlen(d->status_path) == plen &&
        memcmp(d->status_path, path, plen) == 0) {
        respond_status(d, r);
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
            host_dispatch(d->host, r, m.target, t, &m);
            return;
        }
        request_respond_error(r, 403, "No WebSocket route at this path");
        request_finish(r, NULL);
        return;
    }
    enum router_result res = router_match(t->router, method, mlen, path, plen, &m);
    if (res == ROUTER_FOUND) {
        host_dispatch(d->host, r, m.target, t, &m);
        return;
    }
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
