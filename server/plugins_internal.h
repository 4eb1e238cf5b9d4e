/* plugins_internal: the registry's layout, shared by plugins.c (which
 * owns it) and plugins_status.c (which reports it). Nothing else includes
 * this. */
#ifndef EVICORN_PLUGINS_INTERNAL_H
#define EVICORN_PLUGINS_INTERNAL_H

#include <limits.h>

#include "plugin_trust.h"
#include "plugins.h"

/* A file still being written is retried this often, this many times. */
#define PLUGINS_RETRY_SECONDS 0.1
#define PLUGINS_RETRY_MAX     100
#define PLUGINS_RETRIES_MAX   64

struct generation {
    struct plugins *owner;
    struct generation *next;
    char *file; /* name in the plugins folder, e.g. "hello.so" */
    char *path; /* where it was loaded from, for messages */
    void *dl;
    evicorn_plugin desc; /* zero-extended copy of the plugin's descriptor */
    struct route_entry *routes;
    size_t nroutes;
    void *state;
    unsigned refs;
    unsigned id;
    long inflight;
    bool retired;
    bool watched; /* by the watchdog: every plugin but the ASGI bridge */
    ev_timer drain_timer;
    ev_tstamp retired_at;
    char copy[PATH_MAX]; /* the private copy that was mapped */
};

struct plugin_retry {
    char name[256];
    int tries;
};

struct plugins {
    struct ev_loop *loop;
    const struct config *cfg;
    int worker;
    const struct plugin_site *site;
    const evicorn_api *api;
    struct generation *active;
    struct generation *retired;
    struct route_table *table;
    struct plugin_watch *watch;
    unsigned next_id;
    struct plugin_retry retries[PLUGINS_RETRIES_MAX];
    size_t nretries;
    ev_timer retry_timer;
    bool closed;               /* plugins_free ran; the last retired generation frees it */
    struct plugin_trust trust; /* whose files and folders may be loaded */
    char trust_name[64];
};

#endif
