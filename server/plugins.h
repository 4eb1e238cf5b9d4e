/* plugins: a worker's live set of plugins, and hot reload.
 *
 * Each file in the plugins folder is served by one generation at a time: a
 * private copy of the .so, opened with dlopen, negotiated and started. When
 * the file is replaced, a new generation is loaded beside the old one and
 * the route table is swapped in one step; requests, continuations and
 * background tasks that began on the old generation hold a reference to it
 * and finish on the old code, which is shut down and dlclose'd when the
 * last reference goes. Any failure leaves the previous generation serving.
 *
 * Like Kore's module vtable, a generation is the one kind of thing the rest
 * of the server knows: the ASGI bridge is a generation too.
 *
 * plugins.c owns a generation's life (loaded, serving, retired, drained,
 * unloaded); plugins_status.c only reads it. Loop thread only. */
#ifndef EVICORN_PLUGINS_H
#define EVICORN_PLUGINS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../abi/evicorn/abi.h"
#include "buf.h"
#include "plugin_run.h"

struct config;
struct router;
struct generation;
struct plugins;

struct route_entry {
    struct generation *gen;
    char *method;
    char *path;
    char *label;    /* "GET /items/{id} (hello.so)" for logs */
    uint32_t kind;  /* EVICORN_ASYNC or EVICORN_SYNC */
    bool websocket; /* serves WebSocket handshakes (in route_table.ws_router) */
    evicorn_handler_fn handler;
    void *data;
    struct watch_task watch; /* what the watchdog names while it runs */
};

/* A router and the entries it points to, shared by the requests that
 * matched through it; freed when the last one releases it. */
struct route_table {
    struct router *router;
    struct router *ws_router; /* WebSocket routes, matched for handshakes only */
    unsigned refs;
};

/* Loads what is in the folder and starts watching it; also loads the ASGI
 * bridge when the config names an APP. api is the table handed to every
 * plugin; site is where their code runs. NULL when the worker cannot
 * serve (out of memory, or the bridge was refused: its app did not
 * start); the reason is logged. */
struct plugins *plugins_new(struct ev_loop *loop, const struct config *cfg, int worker,
                            const struct plugin_site *site, const evicorn_api *api);
/* Retires every generation (each is unloaded when its last reference
 * goes) and frees the registry. */
void plugins_free(struct plugins *p);

struct route_table *plugins_routes(const struct plugins *p);
void route_table_retain(struct route_table *t);
void route_table_release(struct route_table *t);

void generation_retain(struct generation *g);
/* Whether g was replaced or removed (it serves what it has until it
 * drains), and since when (ev_now time). */
bool generation_retired(const struct generation *g, double *since);
void generation_release(struct generation *g);
void *generation_state(const struct generation *g);
const char *generation_name(const struct generation *g);
/* The generation whose code the loop thread is running (a handler, a
 * continuation, a watch callback, loading, startup or shutdown), for what
 * a plugin creates without naming a request (its own watches). enter
 * returns what it interrupted, for leave. NULL outside plugin code. */
struct generation *generation_enter(struct generation *g);
void generation_leave(struct generation *prev);
struct generation *generation_running(void);
/* fn(g) runs when g's code is about to be unmapped, after its shutdown
 * hook (or after a refused load): the host stops what g left behind. One
 * hook per process, set before any plugin loads. */
void plugins_on_unload(void (*fn)(struct generation *g));

/* Counts a request in flight on the generation (for the status page). */
void generation_request_started(struct generation *g);
void generation_request_ended(struct generation *g);

/* This worker's plugins, generations, routes and in-flight counts as JSON
 * (plugins_status.c). */
int plugins_status_json(const struct plugins *p, struct buf *out);

#endif
