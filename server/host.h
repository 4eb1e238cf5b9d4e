/* host: evicorn's side of the plugin ABI: the function table handed to
 * every plugin, and what stands behind an evicorn_request.
 *
 * An evicorn_request is a `struct call`: the request, the route and
 * generation it was dispatched to, and what it has pending. The call
 * finishes the request when the handler has returned and nothing is
 * pending, and only then drops its reference to the generation.
 *
 * The host is split along its seams:
 *  - host.c: the table, the host's own life, the calls that take no
 *    request (config);
 *  - host_call.c owns the life of a call (dispatched, running, waiting,
 *    finished) and of the operations it waits on (timers, offloads, body
 *    reads, writability), and call_run, the door every request-bound
 *    entry into plugin code goes through;
 *  - host_fetch.c: outbound HTTP (fetch, fetch_start and the streamed
 *    exchange's calls) over the worker's httpc client, each fetch bound to
 *    its call;
 *  - host_ws.c: WebSocket sessions; host_watch.c: file descriptors and
 *    timers (watches);
 *  - host_file.c: files (respond_file and send_file, and file I/O on the
 *    thread pool as offloads);
 *  - host_scope.c: the request-scope getters (method, path, headers, ...);
 *  - host_xcall.c: carrying a sync handler's calls from its pool thread to
 *    the loop thread. */
#ifndef EVICORN_HOST_H
#define EVICORN_HOST_H

#include <ev.h>

#include "../abi/evicorn/abi.h"
#include "router.h"

struct config;
struct defer_queue;
struct listener;
struct mailbox;
struct plugin_site;
struct pool;
struct request;
struct route_entry;
struct route_table;
struct ws_server;
struct host;

struct host_params {
    struct ev_loop *loop;
    const struct config *cfg;
    int worker; /* index, 0..workers-1 */
    struct mailbox *mailbox;
    struct pool *pool;
    struct defer_queue *defer;
    const struct plugin_site *site;
    const struct listener *listener; /* the server address plugins see */
    struct ws_server *ws;            /* NULL with --ws none */
};

/* Loop thread. NULL on out of memory. */
struct host *host_new(const struct host_params *p);
void host_free(struct host *h);
/* The table every plugin is handed. */
const evicorn_api *host_api(void);
/* Runs the matched route's handler for r (async on the loop, sync on the
 * pool). Takes over the dispatch reference to r. */
void host_dispatch(struct host *h, struct request *r, struct route_entry *re, struct route_table *t,
                   const struct router_match *m);
/* Work still owned by plugins (background tasks, offloads): graceful
 * shutdown waits for it. */
long host_pending_jobs(const struct host *h);

#endif
