/* httpc: outbound HTTP/1.1 requests from the loop thread, for plugins'
 * async handlers (the role httpx.AsyncClient plays in Python).
 *
 * A request never blocks the worker's event loop: the connect is
 * non-blocking, name resolution (getaddrinfo blocks) runs on the worker's
 * pool, and the response is parsed by http1 in response mode as bytes
 * arrive. Each request uses its own TCP connection, closed when the
 * exchange ends: there is no connection pooling in this version, and no
 * TLS, proxy, redirect or decompression support. The caller gets one
 * callback with the whole response (or an error) and nothing after it. */
#ifndef EVICORN_HTTPC_H
#define EVICORN_HTTPC_H

#include <ev.h>
#include <stddef.h>

#include "http1.h"
#include "http.h"

struct pool;
struct httpc_request; /* opaque: one outbound exchange */

struct httpc_options {
    const char *method;                /* "GET" when NULL */
    const char *url;                   /* http://host[:port][/path][?query]; host may be a name,
                                          IPv4, or [IPv6] */
    const struct http_header *headers; /* extra request headers */
    size_t nheaders;
    const void *body; /* copied at start */
    size_t body_len;
    double connect_timeout; /* seconds; <= 0: 5 */
    double timeout;         /* whole exchange, seconds; <= 0: 30 */
    size_t max_response;    /* body bytes; 0: 8 MiB */
};

struct httpc_response {
    int error; /* 0, or a negative errno: -ECONNREFUSED, -ETIMEDOUT (connect or total timeout),
                  -EHOSTUNREACH (name did not resolve), -EPROTO (invalid response),
                  -EMSGSIZE (body over max_response), -ECANCELED (httpc_cancel), -EINVAL (bad URL,
                  method or header), -EPROTONOSUPPORT (https or other scheme), -ECONNRESET,
                  -ENOMEM */
    const char *error_msg;      /* one human line when error != 0, e.g. "connect to 127.0.0.1:9
                                   refused" */
    int status;                 /* when error == 0 */
    const struct h1_head *head; /* response head (headers via h1_header_name/h1_header_value/
                                   h1_head_find); NULL on error */
    const char *body;           /* de-chunked body (NUL-terminated for convenience; never NULL
                                   when error == 0) */
    size_t body_len;
};

/* Called exactly once per started request, on the loop thread, never from
 * inside httpc_start (errors detected at start are reported from the loop on
 * the next iteration). The response and everything it points to are valid
 * only during the call. */
typedef void (*httpc_done_fn)(void *ud, const struct httpc_response *res);

/* Loop thread. Starts a request; name resolution runs on pool (getaddrinfo
 * blocks), literal IPs skip it (pool may be NULL when only literal IPs are
 * used). Returns NULL only when out of memory (done will not be called).
 *
 * Request headers: Host (host[:port] as in the URL), User-Agent: evicorn,
 * Connection: close, Content-Length when a body is given or the method is
 * POST, PUT or PATCH, then the caller's headers. A caller's Host or
 * User-Agent replaces the default; Content-Length, Transfer-Encoding and
 * Connection belong to httpc and are refused (-EINVAL), as are header names
 * that are not tokens and values with control bytes (CR, LF, NUL, ...).
 *
 * Interim 1xx responses (100 Continue, 103 Early Hints) are skipped; 101
 * Switching Protocols is -EPROTO (httpc never asks for an upgrade). A
 * connection closed before any response byte is -ECONNRESET; one closed in
 * the middle of a response is -EPROTO.
 *
 * connect_timeout bounds name resolution and each connection attempt (every
 * address a name resolves to is tried in turn); timeout bounds everything
 * from httpc_start to the end of the response. If the pool is freed while a
 * resolution is in flight, its completion waits in the mailbox: drain the
 * mailbox (mailbox_drain) before freeing it, as for any pool job. */
struct httpc_request *httpc_start(struct ev_loop *loop, struct pool *pool,
                                  const struct httpc_options *opt, httpc_done_fn done, void *ud);

/* Loop thread. Aborts; done is called synchronously with -ECANCELED before
 * this returns (unless it already ran, in which case the handle is no longer
 * valid and must not be passed here). */
void httpc_cancel(struct httpc_request *r);

#endif
