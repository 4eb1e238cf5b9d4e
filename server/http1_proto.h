/* http1_proto: HTTP/1.1 as a protocol on a connection.
 *
 * http1_proto.c owns the protocol's state on a connection, from h1_attach
 * to the connection's closed callback, and what HTTP/1.1 means there: its
 * parser (http1.c), the requests it has parsed in arrival order,
 * pipelining (requests are dispatched as soon as their head is complete,
 * so they run concurrently, while their responses leave in order through
 * the connection's slots), keep-alive and Connection: close, Expect:
 * 100-continue, the deadlines for a head, a body and an idle connection,
 * error answers for bad input, and the framing of responses
 * (Content-Length, chunked, close-delimited), and the opening handshake
 * of a WebSocket (an invalid one answered 400/426; a valid one marked for
 * the router, and the connection handed over after its 101).
 *
 * It is the connection's protocol (struct conn_proto) and each request's
 * io (struct request_io); it calls down into conn.h and request.h, and up
 * only through the dispatch function in struct request_ctx. */
#ifndef EVICORN_HTTP1_PROTO_H
#define EVICORN_HTTP1_PROTO_H

#include <stddef.h>

#include "conn.h"
#include "http1.h"
#include "request.h"

struct config;

/* Per-worker state of the protocol; the worker owns the instance. */
struct h1_server {
    const struct config *cfg;
    struct request_ctx *requests;
    struct request_pool pool; /* recycled requests of this protocol */
    struct h1_limits limits;
    char *default_headers; /* "x-a: b\r\n" lines from --header */
    size_t default_headers_len;
    bool websocket; /* --ws auto: upgrades to WebSocket are handshakes */
};

/* Returns 0, or -1 on out of memory. */
int h1_server_init(struct h1_server *s, const struct config *cfg, struct request_ctx *requests);
void h1_server_free(struct h1_server *s);
/* Serves HTTP/1.1 on a new connection; -1 on out of memory (the caller
 * closes the connection). */
int h1_attach(struct h1_server *s, struct conn *c);

#endif
