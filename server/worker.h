/* worker: one worker process: its event loop, its connections, its pool.
 *
 * Each worker accepts from the listening sockets it inherited from the
 * master, runs one libev loop on its main thread and owns a thread pool for
 * blocking work. Everything a worker holds is reachable from struct worker;
 * the loop thread alone touches it, except through the mailbox. */
#ifndef EVICORN_WORKER_H
#define EVICORN_WORKER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http1.h"

struct conn;
struct request;
struct defer;
struct mailbox;
struct pool;

struct listener {
    int fd;
    bool unix_socket;
    char name[128]; /* "http://127.0.0.1:8000", "unix:/path" */
    char addr[64];  /* host:port as the ASGI server field shows it */
};

struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    int index; /* 0..workers-1, stable across restarts */

    struct listener *listeners;
    size_t nlisteners;
    ev_io *accept_io;
    ev_timer accept_retry; /* accept paused after EMFILE */
    ev_prepare prepare;    /* end of iteration: deferred callbacks, then writes */
    ev_signal sig_term, sig_int, sig_quit;
    ev_timer grace; /* graceful-shutdown deadline */

    struct conn *conns; /* all connections */
    size_t nconns;
    struct conn *dirty; /* connections with output to write */
    struct defer *defer_first, *defer_last;
    struct request *free_requests;
    size_t nfree_requests;

    long inflight; /* requests dispatched and not yet finished by their handler */
    long served;   /* responses completed */
    bool draining;
    ev_tstamp drain_started;

    struct h1_limits limits;
    char *default_headers; /* "server: evicorn\r\n" and --header lines */
    size_t default_headers_len;
    char *scratch; /* read buffer shared by all connections */
    size_t scratch_cap;

    struct mailbox *mailbox;
    struct pool *pool;
};

/* Runs a worker until it has shut down; returns the process exit status. */
int worker_run(const struct config *cfg, struct listener *listeners, size_t nlisteners, int index);
/* A response completed (for --limit-max-requests). */
void worker_request_served(struct worker *w);
/* The end of one loop iteration (run from the loop's prepare watcher):
 * deferred continuations, one write per connection with output, the access
 * log. Also what an embedder driving the loop itself must run. */
void worker_end_iteration(struct worker *w);
/* Connection bookkeeping, for conn.c. */
void worker_conn_closed(struct worker *w, struct conn *c);

#endif
