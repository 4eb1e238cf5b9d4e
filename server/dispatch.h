/* dispatch: the one place a parsed request enters application code.
 *
 * Called on the loop thread as soon as a request's head is complete (the
 * body may still be arriving). The callee owns one reference to the request
 * and must eventually call request_finish. */
#ifndef EVICORN_DISPATCH_H
#define EVICORN_DISPATCH_H

struct request;
struct worker;

int dispatch_init(struct worker *w);
void dispatch_request(struct request *r);
void dispatch_shutdown(struct worker *w);

#endif
