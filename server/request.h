/* request: one HTTP exchange as a handler sees it, whatever protocol
 * carries it.
 *
 * request.c owns a request's life: allocated (from a per-protocol pool,
 * recycled with its buffers), head parsed (request_prepare), dispatched
 * (request_dispatch_later), body delivered, response written, finished by
 * its handler (request_finish), and recycled when the last reference goes.
 * It is ASGI-shaped: the handler receives the body whole or in chunks
 * through one-shot continuations, and answers with a start (status and
 * headers) followed by body chunks, or with one respond call. Every
 * continuation runs on the loop thread, after the call that registered it
 * has returned.
 *
 * The protocol that carries the request (HTTP/1.1 today, HTTP/2 later)
 * embeds struct request at the start of its own per-exchange struct and
 * provides struct request_io: how response bytes are framed and written,
 * whether more may be written, and what happens when the handler wants
 * the body or is done. The request never sees the connection; the protocol
 * feeds it the body (request_body_data, request_body_end,
 * request_body_failed) and tells it the client left (request_detach).
 *
 * All functions here are for the loop thread. They return 0 or a negative
 * errno value: -EPIPE once the client is gone, -EALREADY for a second
 * response, -EINVAL for a header that could split the response. */
#ifndef EVICORN_REQUEST_H
#define EVICORN_REQUEST_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "buf.h"
#include "defer.h"
#include "http.h"
#include "http1.h"

struct config;
struct conn;
struct request;

/* Body continuation: data is valid only during the call. err is 0, -EPIPE
 * (client gone) or -EMSGSIZE (body over --limit-body). more is false on the
 * last call. */
typedef void (*request_body_fn)(struct request *r, void *ud, const char *data, size_t len,
                                bool more, int err);
typedef void (*request_event_fn)(struct request *r, void *ud);

/* What the protocol carrying a request provides. Called on the loop thread
 * by request.c only, while the request is attached (not after
 * request_detach). */
struct request_io {
    /* The protocol's per-exchange struct, with struct request first. */
    size_t size;
    /* Clears the protocol's part for a new exchange (buffers kept), and
     * frees it for good. */
    void (*reset)(struct request *r);
    void (*destroy)(struct request *r);
    /* Frames and queues the response head. Headers were checked (names are
     * tokens, values hold no CR/LF/NUL); content_length < 0 is unknown. */
    int (*start)(struct request *r, int status, const struct http_header *headers, size_t n,
                 int64_t content_length);
    /* Frames and queues body bytes; more == false ends the body. */
    int (*send)(struct request *r, const void *data, size_t len, bool more);
    /* Frames and queues len bytes of the file fd from off as body bytes,
     * sent with sendfile(2); fd is taken (closed once sent or dropped, and
     * by the callee on error). more == false ends the body. */
    int (*send_file)(struct request *r, int fd, uint64_t off, uint64_t len, bool more);
    /* Whether more output may be queued now (backpressure). */
    bool (*writable)(const struct request *r);
    /* The handler asked for the body (HTTP/1.1 answers 100-continue). */
    void (*body_wanted)(struct request *r);
    /* The handler accepted a WebSocket handshake: frames and queues the
     * 101 head (headers checked) and, once it has left in order, hands
     * the connection to attach (see request_upgrade). NULL when the
     * protocol cannot upgrade. */
    int (*upgrade)(struct request *r, const struct http_header *headers, size_t n,
                   void (*attach)(void *ud, struct conn *c), void *ud);
    /* The handler took body bytes: reading may resume. */
    void (*body_taken)(struct request *r);
    /* The response is complete. */
    void (*done)(struct request *r);
    /* The handler finished with its response started but not complete:
     * the response is cut and the connection cannot be reused. */
    void (*abandon)(struct request *r);
};

/* Per-worker state shared by every request; the worker owns it. */
struct request_ctx {
    struct ev_loop *loop;
    const struct config *cfg;
    struct defer_queue *defer;
    /* Where a dispatched request goes (dispatch.c's router, or a test's). */
    void (*dispatch)(struct request *r, void *ud);
    void *dispatch_ud;
    /* A response completed (the worker counts them for
     * --limit-max-requests); may be NULL. */
    void (*served)(void *ud);
    void *served_ud;
    long inflight; /* requests dispatched and not yet finished by their handler */
};

/* Recycled requests of one protocol (they share a size). */
struct request_pool {
    const struct request_io *io;
    struct request *free;
    size_t nfree;
};

enum request_body_mode { BODY_UNREAD, BODY_CHUNKS, BODY_WHOLE, BODY_DISCARD };
enum request_resp { RESP_NONE, RESP_STARTED, RESP_DONE };

struct request {
    struct request_ctx *ctx;
    const struct request_io *io;
    struct request_pool *pool;
    struct request *next_free;
    unsigned refs;
    bool attached; /* the protocol still carries it; false once the client left
                      or the response was done and handed back */

    struct h1_head head;  /* method, target and headers */
    const char *raw_path; /* into head.store */
    size_t raw_path_len;
    const char *query;
    size_t query_len;
    const char *path; /* raw_path, or path_buf when percent-decoding changed it */
    size_t path_len;
    struct buf path_buf;
    struct addr client; /* the peer, or what a trusted proxy says */
    const char *scheme;
    bool is_head;
    /* A valid WebSocket opening handshake (set by the protocol with the
     * head, when WebSockets are served): the key points into head.store. */
    bool ws_handshake;
    const char *ws_key;
    size_t ws_key_len;

    bool dispatched;
    bool disconnected;
    bool handler_done;
    bool body_complete;
    bool body_too_large;
    bool body_broken;          /* the body failed to parse after dispatch */
    bool body_final_delivered; /* the last body call (more == false) happened */
    bool pending_disconnect;
    bool pending_drain;

    /* Request body not yet handed to the handler. */
    enum request_body_mode body_mode;
    struct buf body;
    uint64_t body_received;
    request_body_fn body_fn;
    void *body_ud;
    struct defer body_defer;

    request_event_fn disconnect_fn;
    void *disconnect_ud;
    request_event_fn drain_fn;
    void *drain_ud;
    struct defer event_defer;
    struct defer dispatch_defer;

    enum request_resp resp;
    int status;

    /* For --access-log-format: when the head began (0 without the flag),
     * body bytes sent, and the matched route's template (the dispatcher
     * sets it; the route table it points into outlives the response). */
    double log_started;
    uint64_t log_bytes;
    const char *log_route;

    /* For the metrics: the route's label id (metrics.h), set by the
     * dispatcher, and when the request was dispatched (0: never). */
    uint16_t metrics_route;
    uint64_t metrics_start_ns;
};

/* ---- life (for the protocol) ---- */

void request_pool_init(struct request_pool *pool, const struct request_io *io);
/* Frees every recycled request of the pool. */
void request_pool_clear(struct request_pool *pool);
/* A new request holding one reference (the protocol's); NULL on out of
 * memory. */
struct request *request_alloc(struct request_pool *pool, struct request_ctx *ctx);
void request_retain(struct request *r);
void request_release(struct request *r);
/* Derives path, query, scheme and client from a complete head and the
 * connection's peer (proxy headers are applied when the peer is trusted);
 * -1 when the target is invalid. */
int request_prepare(struct request *r, const struct addr *peer);
/* Hands the request to ctx->dispatch at the end of this loop iteration,
 * with a reference the handler drops through request_finish. */
void request_dispatch_later(struct request *r);
/* The client left (or the protocol is done with the request): pending
 * continuations hear of it, later calls report -EPIPE. */
void request_detach(struct request *r);
/* Body bytes arrived / the body is complete / the body broke after
 * dispatch (too_large: over --limit-body). */
int request_body_data(struct request *r, const char *data, size_t len);
void request_body_end(struct request *r);
void request_body_failed(struct request *r, bool too_large);
/* No handler will read the body: what arrives is dropped. */
void request_discard_body(struct request *r);
/* Unread body bytes held (the protocol pauses reading beyond a mark). */
size_t request_body_held(const struct request *r);
/* The writable event: a handler waiting for room may continue. */
void request_drained(struct request *r);

/* ---- for handlers ---- */

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
int request_start(struct request *r, int status, const struct http_header *headers, size_t n,
                  int64_t content_length);
/* Sends body bytes; more == false completes the response. */
int request_send(struct request *r, const void *data, size_t len, bool more);
/* Sends len bytes of the open regular file fd from off as body bytes,
 * with sendfile(2) when the connection's turn comes, never read into
 * memory. fd is taken: closed once sent or dropped, and before returning
 * on error. A file that turns out shorter than len ends the response early
 * and closes the connection. more == false completes the response. */
int request_send_file(struct request *r, int fd, uint64_t off, uint64_t len, bool more);
/* Start and whole body in one call, with Content-Length. */
int request_respond(struct request *r, int status, const struct http_header *headers, size_t n,
                    const void *body, size_t len);
/* Accepts a WebSocket handshake: answers 101 with the headers (the
 * handshake's own and the handler's, checked like start's) and completes
 * the response. attach(ud, c) runs once, on the loop thread, when the 101
 * is the connection's next output: c is then the caller's, to switch to
 * its protocol with conn_set_proto, and NULL when the client left first.
 * -EPERM for a request that is not a handshake, -EALREADY after a
 * response. */
int request_upgrade(struct request *r, const struct http_header *headers, size_t n,
                    void (*attach)(void *ud, struct conn *c), void *ud);
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
const struct addr *request_client(const struct request *r);
size_t request_header_count(const struct request *r);
/* Header i: name lower-cased, order and duplicates as received. */
void request_header_at(const struct request *r, size_t i, const char **name, size_t *name_len,
                       const char **value, size_t *value_len);
/* First header with this lower-case name; NULL when absent. */
const char *request_header(const struct request *r, const char *name, size_t *len);

#endif
