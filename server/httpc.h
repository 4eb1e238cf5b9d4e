/* httpc: outbound HTTP for plugins' async handlers (the role
 * httpx.AsyncClient plays in Python), on libcurl's multi interface driven
 * by the worker's libev loop.
 *
 * One struct httpc per worker owns one CURLM: its connection cache
 * (keep-alive, HTTP/2 multiplexing, bounded per host and in total) and the
 * loop watchers curl asks for through its socket and timer callbacks; and
 * one dns (dns.h): names resolved by c-ares on the same loop, cached with
 * their records' TTLs. Nothing blocks the loop: names are resolved
 * asynchronously (a proxy's by curl, on its resolver thread) and every
 * socket is non-blocking.
 *
 * An exchange is reported through callbacks, each run from the loop (an
 * I/O or timer event, or the next iteration), never from inside a curl
 * callback and never from inside an httpc call other than httpc_cancel:
 * a callback may call any httpc function, for its own exchange or another.
 *  - whole-response mode (no data callback): done gets status, headers and
 *    the whole body (up to max_response);
 *  - streaming mode: head once for the final response, data for each piece
 *    of the body (pausable), writable when a streamed request body has
 *    room again, then done (without a body).
 * done runs exactly once, last; the exchange is freed when it returns. */
#ifndef EVICORN_HTTPC_H
#define EVICORN_HTTPC_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct httpc;         /* one per worker */
struct httpc_request; /* one exchange */

struct httpc_limits {
    long max_connections;      /* open connections in total (in use and idle); <= 0: 64 */
    long max_host_connections; /* to one host and port; <= 0: 16 */
};

/* Option flags (the ABI's EVICORN_FETCH_* values, so the host passes them
 * through). */
#define HTTPC_FOLLOW_REDIRECTS 0x01u /* RFC 9110 15.4: 303 and POST on 301/302 become GET */
#define HTTPC_DECOMPRESS       0x02u /* Accept-Encoding with what curl decodes */
#define HTTPC_INSECURE         0x04u /* no certificate or host-name verification */
#define HTTPC_HTTP1_ONLY       0x08u /* never HTTP/2 */
#define HTTPC_STREAM_BODY      0x10u /* the request body comes through httpc_write */

struct httpc_options {
    const char *method;                /* "GET" when NULL */
    const char *url;                   /* http:// or https:// URL */
    const struct http_header *headers; /* extra request headers */
    size_t nheaders;
    const void *body; /* copied at start; ignored with HTTPC_STREAM_BODY */
    size_t body_len;
    double connect_timeout; /* seconds; <= 0: 5 */
    double timeout;         /* whole exchange (redirects included), seconds; <= 0: 30 */
    size_t max_response;    /* body bytes in whole-response mode; 0: 8 MiB */
    uint32_t flags;         /* HTTPC_* */
    int max_redirects;      /* with HTTPC_FOLLOW_REDIRECTS; <= 0: 10 */
    const char *ca_file;    /* PEM bundle trusted instead of the system's store, or NULL */
};

struct httpc_response {
    int error;             /* 0, or a negative errno: -ECONNREFUSED, -ETIMEDOUT (connect or total),
                              -EHOSTUNREACH (name did not resolve), -EPROTO (invalid response),
                              -EMSGSIZE (body over max_response), -ECANCELED (httpc_cancel),
                              -EINVAL (bad URL, scheme, method or header), -ECONNRESET (closed before a
                              response), -EIO (TLS and other failures), -ENOMEM */
    const char *error_msg; /* one human line when error != 0 */
    int status;            /* when error == 0 (and in head) */
    const char *http_version;          /* "1.0", "1.1" or "2" */
    const char *url;                   /* the URL that answered (after redirects) */
    int redirects;                     /* how many were followed */
    const struct http_header *headers; /* names lower-cased, in order */
    size_t nheaders;
    const char *body; /* whole-response mode: the body, NUL-terminated past body_len (never
                         NULL when error == 0); streaming mode: NULL */
    size_t body_len;
};

struct httpc_callbacks {
    /* Streaming mode: the final response's head (body NULL). */
    void (*head)(void *ud, const struct httpc_response *head);
    /* Streaming mode when set; whole-response mode when NULL. */
    void (*data)(void *ud, const char *data, size_t len);
    /* HTTPC_STREAM_BODY: httpc_write said "full" and there is room again. */
    void (*writable)(void *ud);
    /* Always set: the end. Everything res points to is valid during the
     * call only. */
    void (*done)(void *ud, const struct httpc_response *res);
};

/* Loop thread. NULL when curl cannot start (logged). */
struct httpc *httpc_new(struct ev_loop *loop, const struct httpc_limits *limits);
/* Loop thread, once no exchange is left (each ended or was cancelled):
 * closes the cached connections. Exchanges still live are a bug: they
 * are logged and freed without their done running. */
void httpc_free(struct httpc *hc);

/* Loop thread. Starts an exchange. Returns NULL only when out of memory
 * (done will not run); every other error (bad URL, method or header)
 * reaches done on a later iteration.
 *
 * Request headers: Host and User-Agent: evicorn unless the caller gives
 * them, Content-Length (or chunked, for a streamed body of unknown
 * length), then the caller's. Transfer-Encoding and Connection belong to
 * the client and are refused (-EINVAL), as is Content-Length except with
 * HTTPC_STREAM_BODY (where it announces the body's length); so are header
 * names that are not tokens and values with control bytes. Interim 1xx
 * responses are skipped; with HTTPC_FOLLOW_REDIRECTS so are the
 * redirects followed (credentials and Host are dropped when the origin
 * changes; a streamed body is not replayed: a 307/308 to it is the final
 * response). */
struct httpc_request *httpc_start(struct httpc *hc, const struct httpc_options *opt,
                                  const struct httpc_callbacks *cb, void *ud);

/* Streaming mode: paused stops data (and reading from the upstream)
 * until called with false. Pieces already read wait for the unpause. */
void httpc_pause(struct httpc_request *r, bool paused);

/* HTTPC_STREAM_BODY: queues (copies) a piece of the request body; more ==
 * false ends it. Returns 1 when more may be written now, 0 when the
 * buffer is full (writable runs once it drains), -EPIPE when the exchange
 * has ended, -EINVAL without HTTPC_STREAM_BODY or after the end, -ENOMEM. */
int httpc_write(struct httpc_request *r, const void *data, size_t len, bool more);

/* Stops the exchange at once (its connection is closed, never reused)
 * and runs done with -ECANCELED: before this returns, or, when called from
 * one of this exchange's own callbacks, right after that callback. */
void httpc_cancel(struct httpc_request *r);

/* Like httpc_cancel, but done runs on a later loop iteration (for callers
 * that must not see done inside their call). Nothing but done runs after. */
void httpc_abort(struct httpc_request *r);

#endif
