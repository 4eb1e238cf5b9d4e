/* plugins: the worker's live set of plugins, and hot reload.
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
 * of the server knows: the embedded-Python bridge is a generation too. */
#ifndef EVICORN_PLUGINS_H
#define EVICORN_PLUGINS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../abi/evicorn/abi.h"
#include "buf.h"
#include "watchdog.h"

struct worker;
struct router;
struct generation;

struct route_entry {
    struct generation *gen;
    char *method;
    char *path;
    char *label; /* "GET /items/{id} (plugin hello)" for logs */
    uint32_t kind;
    evicorn_handler_fn handler;
    void *data;
    struct watch_task watch; /* what the watchdog names while it runs */
};

/* A router and the entries it points to, shared by the requests that
 * matched through it; freed when the last one releases it. */
struct route_table {
    struct router *router;
    unsigned refs;
};

/* Loads what is in the folder and starts watching it. Also loads the extra
 * plugin (the Python bridge) when the config names an APP. */
int plugins_init(struct worker *w);
void plugins_shutdown(struct worker *w);

struct route_table *plugins_routes(void);
void route_table_retain(struct route_table *t);
void route_table_release(struct route_table *t);

void generation_retain(struct generation *g);
void generation_release(struct generation *g);
void *generation_state(const struct generation *g);
const char *generation_name(const struct generation *g);
/* Counts a request in flight on the generation (for the status page). */
void generation_request_started(struct generation *g);
void generation_request_ended(struct generation *g);

/* This worker's plugins, generations, routes and in-flight counts as JSON. */
int plugins_status_json(struct buf *out);

/* Whether any generation (current or retired) is still busy: graceful
 * shutdown waits for them. */
bool plugins_busy(void);

#endif
