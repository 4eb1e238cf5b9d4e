/* metrics: the instance's counters for --metrics-path and the state behind
 * --health-path, in memory shared by the master and every worker.
 *
 * The master maps one region before it forks (like the scoreboard) when
 * either flag is given. It holds the instance's own part, which only the
 * master writes (whether graceful shutdown has begun, how many workers
 * serve, worker restarts by cause), and a fixed number of process slots.
 * The master lends each worker process a free slot as it starts and takes
 * it back when it has reaped the process, so a slot has one writer at a
 * time even while old and new workers of the same index run side by side
 * (--reload, SIGHUP). Counters in a slot are never reset: a later process
 * continues them, so the sum over slots is monotonic; gauges (connections
 * open, requests in flight...) are zeroed by the master when it reaps the
 * process that held them.
 *
 * Inside a worker, the slot is written by one thread at a time without
 * locks (relaxed atomic loads and stores, plain moves on the usual CPUs):
 * the loop thread for requests and connections, the pool's threads under
 * the pool's own lock for its gauges. A scrape sums every slot as it finds
 * it; a counter read mid-update is simply a moment older.
 *
 * Routes are labelled by template ("/items/{id}"), never by raw path: each
 * slot keeps a table of at most METRICS_ROUTES_MAX names, shared by the
 * processes that hold it in turn, and what does not fit is "<other>".
 *
 * With neither flag, nothing is mapped and every call below is a no-op. */
#ifndef EVICORN_METRICS_H
#define EVICORN_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct buf;

#define METRICS_ROUTES_MAX 64

/* Route ids every slot has. */
enum {
    METRICS_ROUTE_REJECTED = 0,  /* answered by the protocol before routing (400, 413...) */
    METRICS_ROUTE_UNMATCHED = 1, /* no route or mount: 404, 405, a refused WebSocket */
    METRICS_ROUTE_OTHER = 2,     /* the table was full */
};

enum metrics_restart_cause {
    METRICS_RESTART_CRASH,        /* died from a signal or exited with an error */
    METRICS_RESTART_WATCHDOG,     /* its watchdog ended it (loop blocked, startup hung) */
    METRICS_RESTART_HEALTHCHECK,  /* killed for missing --timeout-worker-healthcheck */
    METRICS_RESTART_MAX_REQUESTS, /* exited after --limit-max-requests */
    METRICS_RESTART_EXITED,       /* exited 0 for another reason */
    METRICS_RESTART_RELOAD,       /* replaced with new code (--reload) */
    METRICS_RESTART_SIGHUP,       /* replaced on SIGHUP */
    METRICS_RESTART_CAUSES
};

enum metrics_client_error {
    METRICS_CLIENT_BAD_REQUEST, /* 400 and 426: the request could not be parsed or upgraded */
    METRICS_CLIENT_LIMITS,      /* 413, 414, 431: over a size limit */
    METRICS_CLIENT_TIMEOUT,     /* the head or body did not arrive in time (closed) */
    METRICS_CLIENT_ERRORS
};

/* ---- the master ---- */

/* Maps the region for up to nworkers workers (plus room for replacements
 * running beside them). 0, or -1 with errno set. */
int metrics_create(int nworkers);
/* Before fork: a free slot for a new worker, or -1 when there is none (or
 * no region); then, in the parent, metrics_bind with the child's pid, or
 * metrics_unclaim when fork failed. */
int metrics_claim(void);
void metrics_bind(int slot, pid_t pid);
void metrics_unclaim(int slot);
/* The process pid was reaped: its slot's gauges are zeroed and the slot is
 * free again. */
void metrics_release(pid_t pid);
void metrics_count_restart(enum metrics_restart_cause cause);
void metrics_set_workers_ready(int n);
/* Graceful shutdown has begun: --health-path answers 503 from now on. */
void metrics_set_stopping(void);

/* ---- a worker ---- */

/* In the child after fork: this process writes slot (-1: no slot, nothing
 * is counted). Registers the fixed route names. */
void metrics_attach(int slot);

/* Whether the instance takes work: no shutdown begun and at least one
 * worker serving (self_serving: the caller serves, whatever the master has
 * heard yet). Without a region, self_serving alone. */
bool metrics_instance_healthy(bool self_serving);
int metrics_workers_ready(void);

/* The id of a route label (a template, a mount prefix, a configured path),
 * registered on first use; METRICS_ROUTE_OTHER when the table is full or
 * the name too long, METRICS_ROUTE_REJECTED without a slot. Loop thread. */
uint16_t metrics_route(const char *name);

/* Loop thread. A request was dispatched (*start_ns gets the time, 0 when
 * metrics are off), its handler finished, its response completed. */
void metrics_request_dispatched(uint64_t *start_ns);
void metrics_request_finished(void);
void metrics_request_done(uint16_t route, const char *method, size_t method_len, int status,
                          uint64_t start_ns);

/* Loop thread: connections and their bytes (after TLS, when there is one,
 * bytes are the socket's). */
void metrics_conn_opened(void);
void metrics_conn_closed(void);
void metrics_bytes_received(uint64_t n);
void metrics_bytes_sent(uint64_t n);
void metrics_websocket_opened(void);
void metrics_websocket_closed(void);
void metrics_client_error(enum metrics_client_error reason);

/* Under the pool's lock: its current counts. */
void metrics_pool_state(unsigned busy, unsigned queued);

/* Loop thread: plugin generations loaded, plugin files refused, and the
 * generations now mapped (active and draining). */
void metrics_plugin_loaded(void);
void metrics_plugin_refused(void);
void metrics_plugin_generations(unsigned n);

/* Appends the Prometheus text exposition (format 0.0.4) of the whole
 * instance to out. 0, or -1 on out of memory. */
int metrics_render(struct buf *out);

#endif
