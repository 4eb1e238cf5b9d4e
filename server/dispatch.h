/* dispatch: the one place a parsed request enters application code.
 *
 * Matches the request against the live route table and hands it to the
 * host, or answers FastAPI's 404/405 itself (and the opt-in status page).
 * The worker installs dispatch_request as its requests' dispatch function
 * (struct request_ctx), so the protocol below never calls up into it. */
#ifndef EVICORN_DISPATCH_H
#define EVICORN_DISPATCH_H

struct host;
struct plugins;
struct request;

struct dispatcher {
    struct plugins *plugins;
    struct host *host;
    const char *status_path; /* --status-path, or NULL */
};

/* Called on the loop thread with the handler's reference to r; whoever
 * answers calls request_finish. ud is a struct dispatcher. */
void dispatch_request(struct request *r, void *ud);

#endif
