/* dispatch: the one place a parsed request enters application code.
 *
 * Answers the opt-in status, metrics and health paths (which no plugin
 * sees), then the --static folders (static.h), then matches the request
 * against the live route table and hands it to the host, or answers
 * FastAPI's 404/405 itself. Each request is labelled with its route
 * template for the metrics before it is answered.
 * The worker installs dispatch_request as its requests' dispatch function
 * (struct request_ctx), so the protocol below never calls up into it. */
#ifndef EVICORN_DISPATCH_H
#define EVICORN_DISPATCH_H

#include <stdbool.h>

struct host;
struct plugins;
struct request;
struct static_mounts;

struct dispatcher {
    struct plugins *plugins;
    struct host *host;
    const char *status_path;       /* --status-path, or NULL */
    struct static_mounts *statics; /* --static, or NULL; the worker owns them */
    const char *metrics_path;      /* --metrics-path, or NULL */
    const char *health_path;       /* --health-path, or NULL */
    const bool *draining;          /* the worker's: it no longer accepts */
};

/* Called on the loop thread with the handler's reference to r; whoever
 * answers calls request_finish. ud is a struct dispatcher. */
void dispatch_request(struct request *r, void *ud);

#endif
