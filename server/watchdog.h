/* watchdog: notices plugin code that holds a worker's event loop.
 *
 * The loop thread says what plugin code it is running by publishing a
 * pointer to a struct watch_task (watchdog_enter/leave): an atomic store
 * and an atomic increment, no lock and no clock call, so it can sit around
 * every async callback. A thread of the watchdog's own samples that state
 * every 100 ms. When the same task has been running for a second it logs
 * one warning naming it; past the task's limit it logs an error and ends
 * the worker with a distinct exit status, which the master reports before
 * starting a replacement:
 *
 *  - plugin callbacks (async handlers and their continuations, shutdown
 *    hooks): --timeout-worker, exit status EXIT_LOOP_BLOCKED;
 *  - loading a plugin file and its startup hook: --timeout-startup, exit
 *    status EXIT_STARTUP_HUNG, after recording the file in the
 *    scoreboard's quarantine so the next worker refuses it.
 *
 * A limit of 0 means never. The watchdog reads the task's strings only
 * while the loop is still inside that task (see watchdog_sync), so what it
 * logs is never freed under it. */
#ifndef EVICORN_WATCHDOG_H
#define EVICORN_WATCHDOG_H

#include "scoreboard.h"

struct config;
/* One worker's watchdog thread and what the loop publishes to it. Every
 * function accepts NULL (a worker whose watchdog could not start runs
 * unwatched). */
struct watchdog;

/* How long a task may hold the loop before the watchdog warns once. */
#define WATCHDOG_WARN_SECONDS 1.0

enum watch_kind {
    WATCH_CALLBACK, /* limited by --timeout-worker */
    WATCH_STARTUP,  /* limited by --timeout-startup; quarantines file */
};

struct watch_task {
    enum watch_kind kind;
    const char *role; /* "async handler", "startup of plugin", ... */
    const char *name; /* "GET /x (probe.so)", "probe (probe.so)" */
    /* WATCH_STARTUP only: the phase named in the error ("startup",
     * "loading") and the identity of the plugin file. */
    const char *phase;
    struct plugin_file_id file;
};

/* Starts the watchdog thread for the worker in scoreboard slot `slot`.
 * Call on the loop thread. NULL with errno set on failure. */
struct watchdog *watchdog_start(const struct config *cfg, int slot);
/* Stops and joins the thread, and frees the watchdog. */
void watchdog_stop(struct watchdog *wd);

/* Loop thread only. Publishes t as what the loop is running and returns
 * the task it interrupted (for nested callbacks), to hand to
 * watchdog_leave. t must stay valid until watchdog_leave and
 * watchdog_sync have returned. */
const struct watch_task *watchdog_enter(struct watchdog *wd, const struct watch_task *t);
void watchdog_leave(struct watchdog *wd, const struct watch_task *prev);
/* Loop thread only. Waits until the watchdog no longer reads a task that
 * was left: call before freeing or reusing a task's memory. Cheap (a fence
 * and a load) unless the watchdog is reading at that instant. */
void watchdog_sync(struct watchdog *wd);

#endif
