/* worker: one worker process: its event loop, its connections, its pool.
 *
 * worker.c owns the worker's life (started, serving, draining, stopped),
 * its loop and what runs at the end of every iteration (the deferred-work
 * queue, then one write per connection with output, then the access log),
 * the accept path and the signals. Everything the worker holds hangs off
 * struct worker, and the loop thread alone touches it, except through the
 * mailbox. A few things live outside it, by their nature: what the master
 * maps before forking and every process shares, each process keeping a
 * pointer to its own part (the scoreboard, the metrics slots, the
 * heartbeat); what belongs to the process (the log's buffer, the access
 * log's writer thread and queue, the records bound for Python's logging,
 * the Date header's once-a-second cache, the MIME table read once, the
 * DNS library's one-time set-up); the generation whose code runs now
 * (plugins.c, for the watchdog's reports); and the one pointer the host
 * keeps for the ABI calls that take no request (host.c).
 *
 * The layers, each calling only downwards (and upwards only through the
 * function pointers it was handed):
 *   worker → conn (transport) → http1_proto (protocol) → request (exchange)
 *   request → [request_ctx.dispatch] → dispatch → host → plugins */
#ifndef EVICORN_WORKER_H
#define EVICORN_WORKER_H

#include <ev.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "config.h"
#include "conn.h"
#include "defer.h"
#include "dispatch.h"
#include "http1_proto.h"
#include "ws_proto.h"
#include "listener.h"
#include "plugin_run.h"
#include "request.h"

struct host;
struct mailbox;
struct plugins;
struct pool;
struct worker;

/* One listening socket's accept watcher. */
struct worker_accept {
    ev_io io;
    struct worker *w;
    struct listener *listener;
};

struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    int index; /* 0..workers-1, stable across restarts */

    struct listener *listeners;
    size_t nlisteners;
    struct worker_accept *accepts;
    ev_timer accept_retry; /* accept paused after EMFILE */
    struct {
        bool once;
        ev_tstamp at;
        unsigned long unreported;
    } accept_reports;   /* EMFILE warnings, rate-limited */
    ev_prepare prepare; /* end of iteration */
    ev_signal sig_term, sig_int, sig_quit;
    ev_signal sig_serve; /* a held worker (worker_run) starts accepting */
    ev_timer grace;      /* graceful-shutdown deadline */

    struct defer_queue defer;
    struct conn_ctx conns;
    struct request_ctx requests;
    struct h1_server http1;
    struct ws_server ws; /* WebSocket connections after a 101 */
    long served;         /* responses completed */
    long max_requests;   /* --limit-max-requests plus this worker's jitter; 0: none */

    struct mailbox *mailbox;
    struct pool *pool;
    struct plugin_site site; /* the watchdog and scoreboard slot */
    struct host *host;
    struct plugins *plugins;
    struct dispatcher dispatcher;
};

/* Runs a worker until it has shut down; returns the process exit status.
 * Once it could serve (plugins and the app loaded), it writes its pid to
 * ready_fd (the master's readiness pipe; -1 for none). A held worker (one
 * started with new code beside an old one) accepts connections only from
 * WORKER_SIGNAL_SERVE on: the master decides whether its code is the one
 * to serve. */
#define WORKER_SIGNAL_SERVE SIGUSR2

/* The signals a worker's loop handles. The master blocks them around
 * fork(2), and the worker unblocks them once its loop watches them: one
 * sent while it starts (a fast stop) waits for the loop, rather than
 * ending the worker mid-startup, before its app's lifespan shutdown. */
void worker_signals(sigset_t *set);
int worker_run(const struct config *cfg, struct listener *listeners, size_t nlisteners, int index,
               int ready_fd, bool held);

/* The serving core alone (connections, HTTP/1.1, requests), without
 * plugins, pool or signals: what worker_run builds first, and what a test
 * harness driving the loop itself builds (the fuzz target). The caller
 * sets w->requests.dispatch. Returns 0, or -1 on out of memory. */
int worker_core_init(struct worker *w, struct ev_loop *loop, const struct config *cfg);
void worker_core_free(struct worker *w);
/* Serves HTTP/1.1 on an accepted, non-blocking socket, which it takes
 * over. NULL on out of memory (fd is closed). */
struct conn *worker_serve_fd(struct worker *w, int fd, const struct addr *peer);
/* The end of one loop iteration: deferred work, then one write per
 * connection with output (repeated while either produced more), then the
 * access log. */
void worker_end_iteration(struct worker *w);

#endif
