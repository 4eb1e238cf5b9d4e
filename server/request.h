/* request: what a handler may do with one HTTP exchange.
 *
 * This is the interface dispatch and the plugin layer build on; it is
 * ASGI-shaped. The handler receives the body whole or in chunks through
 * one-shot continuations, and answers with a start (status and headers)
 * followed by body chunks, or with one respond call. Every continuation runs
 * on the loop thread, after the call that registered it has returned.
 *
 * All functions here are for the loop thread. They return 0 or a negative
 * errno value: -EPIPE once the client is gone, -EALREADY for a second
 * response, -EINVAL for a header that could split the response. */
#ifndef EVICORN_REQUEST_H
#define EVICORN_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct request;

struct resp_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Body continuation: data is valid only during the call. err is 0, -EPIPE
 * (client gone) or -EMSGSIZE (body over --limit-body). more is false on the
 * last call. */
typedef void (*request_body_fn)(struct request *r, void *ud, const char *data, size_t len,
                                bool more, int err);
typedef void (*request_event_fn)(struct request *r, void *ud);

/* A handler holds one reference from dispatch until request_finish. */
void request_retain(struct request *r);
void request_release(struct request *r);
/* The handler is done: responds 500 if it never responded (and logs it),
 * then drops the handler's reference. */
void request_finish(struct request *r, const char *route);

/* Next chunk of the body (everything that arrived since the last call). */
int request_receive(struct request *r, request_body_fn fn, void *ud);
/* The whole body, once it has arrived. */
int request_read_body(struct request *r, request_body_fn fn, void *ud);
/* Called once if the client disconnects before the response is complete. */
void request_on_disconnect(struct request *r, request_event_fn fn, void *ud);
bool request_disconnected(const struct request *r);

/* Starts the response. content_length < 0: unknown (chunked on HTTP/1.1). */
int request_start(struct request *r, int status, const struct resp_header *headers, size_t n,
                  int64_t content_length);
/* Sends body bytes; more == false completes the response. */
int request_send(struct request *r, const void *data, size_t len, bool more);
/* Start and whole body in one call, with Content-Length. */
int request_respond(struct request *r, int status, const struct resp_header *headers, size_t n,
                    const void *body, size_t len);
/* FastAPI's error shape: {"detail": "..."} as JSON (500 and 503 as plain
 * text, like Starlette and uvicorn). */
int request_respond_error(struct request *r, int status, const char *detail);
bool request_response_started(const struct request *r);
/* Whether more output may be queued now; when false, fn runs once the
 * client has read enough (write backpressure for streamed responses). */
bool request_writable(const struct request *r);
void request_on_drain(struct request *r, request_event_fn fn, void *ud);

/* The ASGI scope. Strings are not NUL-terminated. */
const char *request_method(const struct request *r, size_t *len);
const char *request_path(const struct request *r, size_t *len);     /* percent-decoded */
const char *request_raw_path(const struct request *r, size_t *len); /* as received */
const char *request_query(const struct request *r, size_t *len);    /* still encoded */
void request_http_version(const struct request *r, int *major, int *minor);
const char *request_scheme(const struct request *r);
const char *request_client(const struct request *r); /* "ip:port" */
size_t request_header_count(const struct request *r);
/* Header i: name lower-cased, order and duplicates as received. */
void request_header_at(const struct request *r, size_t i, const char **name, size_t *name_len,
                       const char **value, size_t *value_len);
/* First header with this lower-case name; NULL when absent. */
const char *request_header(const struct request *r, const char *name, size_t *len);

#endif
