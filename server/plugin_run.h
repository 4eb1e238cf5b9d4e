/* plugin_run: the one door through which the server runs plugin code.
 *
 * Every entry into code a plugin supplied goes through plugin_run: async
 * handlers and their continuations, disconnect callbacks, sync handlers on
 * the pool, a plugin's loading (its constructors and entry point) and its
 * startup and shutdown hooks. It does the bookkeeping that makes plugin
 * code observable:
 *
 *  - the watchdog (loop thread only) learns what runs, so code that holds
 *    the loop is named after a second and, past its limit, its worker is
 *    replaced (watchdog.h);
 *  - the scoreboard records the route, so the master can name what a
 *    crashed worker was running (scoreboard.h);
 *  - async code that held the loop longer than 100 ms is named in a
 *    warning afterwards, like asyncio's slow-callback warning.
 *
 * Runs nest (a continuation run while a handler runs, a generation's
 * shutdown run at a request's end): each restores what it interrupted.
 * Keeping a request open across the run is the caller's part (host.c). */
#ifndef EVICORN_PLUGIN_RUN_H
#define EVICORN_PLUGIN_RUN_H

#include "watchdog.h"

/* Where plugin code runs: one per worker. */
struct plugin_site {
    struct watchdog *watchdog; /* NULL: unwatched */
    int slot;                  /* the worker's scoreboard slot */
};

enum plugin_run_flags {
    /* On a pool thread (sync handlers): the loop is not held, so only the
     * scoreboard hears of it. */
    PLUGIN_RUN_POOL = 1,
    /* Not async request code (loading, lifespan hooks): no slow-callback
     * warning. */
    PLUGIN_RUN_UNTIMED = 2,
};

/* Runs fn(arg) as task (its name is what the logs show). An untimed
 * task need only outlive the call; any other must stay valid until
 * watchdog_sync is called after its last run (generations do this). */
void plugin_run(const struct plugin_site *site, const struct watch_task *task, unsigned flags,
                void (*fn)(void *arg), void *arg);

#endif
