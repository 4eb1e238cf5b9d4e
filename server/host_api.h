/* host_api: evicorn's side of the plugin ABI: the function table handed to
 * every plugin, and the per-request state behind an evicorn_request.
 *
 * An evicorn_request is a `struct call`: the request, the route and
 * generation it was dispatched to, and what it has pending. The call
 * finishes the request when the handler has returned and nothing is
 * pending, and only then drops its reference to the generation. */
#ifndef EVICORN_HOST_API_H
#define EVICORN_HOST_API_H

#include "../abi/evicorn/abi.h"
#include "router.h"

struct worker;
struct request;
struct route_entry;
struct route_table;

int host_api_init(struct worker *w);
void host_api_shutdown(void);
const evicorn_api *host_api(void);
/* Runs the matched route's handler for r (async on the loop, sync on the
 * pool). Takes over the dispatch reference to r. */
void host_dispatch(struct request *r, struct route_entry *re, struct route_table *t,
                   const struct router_match *m);
/* Runs a plugin callback on the loop thread, timing it: a callback that
 * holds the loop longer than the threshold is logged with its route. */
double host_clock(void);
void host_check_slow(const char *what, double started);
/* Work still owned by plugins (background tasks, offloads) in this worker. */
long host_pending_jobs(void);

#endif
