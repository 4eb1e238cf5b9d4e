/* evicorn plugin ABI, version 1.
 *
 * This header is the whole contract between the evicorn server and a plugin
 * (a shared object dropped into the plugins folder). It holds declarations
 * only. The rules that keep it stable, after SQLite's extension table,
 * OpenXR/Vulkan negotiation and LV2's size-gated descriptors:
 *
 *  - A plugin exports exactly one symbol, evicorn_plugin_entry. Everything
 *    else it defines stays hidden (-fvisibility=hidden).
 *  - The host passes an evicorn_host with its ABI version and a table of
 *    functions (evicorn_api). The plugin calls the host only through that
 *    table; it never links against the server.
 *  - Every struct that crosses the boundary starts with a uint32_t size. A
 *    struct or table only ever grows at its end. Whoever reads a struct
 *    the other side filled reads min(size, sizeof what it knows) and treats
 *    the rest as zero. Before calling a function added in a later minor, a
 *    plugin checks that api->size covers it (EVICORN_API_HAS does this).
 *  - A different major version is refused; so is a plugin requiring a minor
 *    newer than the host's. Minors add, never change.
 *  - Requests and everything else are opaque handles. No layout of libev,
 *    http-parser or libc appears here, so the server may change them.
 *
 * The request model is ASGI's HTTP scope (and, from 1.2, its WebSocket
 * scope: see ws_accept): read the scope, receive the body
 * (whole, or in chunks with more_body), answer with a start and body chunks
 * (or one respond call), and hear of a disconnect.
 *
 * Handlers come in two kinds, chosen per route:
 *  - EVICORN_ASYNC handlers run on the worker's event loop and must never
 *    block. They continue by handing a continuation (a callback and a
 *    user-data pointer) to a host operation: a timer, an offload to the
 *    thread pool, an outbound HTTP request, the request body. Every
 *    continuation is called exactly once, on the loop thread, never before
 *    the call that registered it returns: with status 0 on success, or
 *    EVICORN_ECANCELED when the client disconnected first (so the plugin can
 *    always free its user data there).
 *  - EVICORN_SYNC handlers run on the worker's thread pool and may block.
 *    The whole request body is read before the handler starts (get it with
 *    api->body). They answer with the same respond/start/send calls; the
 *    host carries the response to the loop. From a sync handler, send waits
 *    while the client is slow to read (backpressure) instead of buffering
 *    without bound.
 *
 * A request is finished when its handler has returned, every continuation
 * it registered has run, and every hold is released (a continuation may
 * release the last hold: the request finishes once it has returned). If by
 * then no response was sent, the host answers 500 and logs the route (the
 * C twin of a forgotten await); a response started but not completed is
 * cut off.
 */
#ifndef EVICORN_ABI_H
#define EVICORN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVICORN_ABI_MAJOR 1
#define EVICORN_ABI_MINOR 5

/* The one symbol a plugin exports. */
#define EVICORN_PLUGIN_ENTRY "evicorn_plugin_entry"

#if defined(__GNUC__)
#define EVICORN_EXPORT __attribute__((visibility("default")))
#else
#define EVICORN_EXPORT
#endif

/* ---- results ---- */

/* Functions return 0 or one of these negative values (Linux errno values). */
#define EVICORN_OK           0
#define EVICORN_EPERM        (-1)   /* not allowed from this thread or kind of handler */
#define EVICORN_ENOENT       (-2)   /* no such header, parameter or item */
#define EVICORN_EIO          (-5)   /* the operation failed */
#define EVICORN_ENOMEM       (-12)  /* out of memory */
#define EVICORN_EBUSY        (-16)  /* a receive is already pending */
#define EVICORN_EEXIST       (-17)  /* the file exists (1.5) */
#define EVICORN_EINVAL       (-22)  /* bad argument, e.g. a header that could split the response */
#define EVICORN_EPIPE        (-32)  /* the client is gone */
#define EVICORN_EMSGSIZE     (-90)  /* the request body exceeds --limit-body */
#define EVICORN_ETIMEDOUT    (-110) /* an outbound request timed out */
#define EVICORN_ECONNREFUSED (-111)
#define EVICORN_EALREADY     (-114) /* the response was already sent */
#define EVICORN_ECANCELED    (-125) /* the client disconnected before this completed */

/* ---- values crossing the boundary ---- */

/* A byte string owned by the host, not NUL-terminated. Valid for as long
 * as the request it came from (scope values) or the call it was passed to. */
typedef struct evicorn_str {
    const char *ptr;
    size_t len;
} evicorn_str;

typedef struct evicorn_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} evicorn_header;

/* One HTTP exchange. Opaque. */
typedef struct evicorn_request evicorn_request;

/* ---- continuations ---- */

/* A timer or a hold-free event fired (status 0) or was cancelled. */
typedef void (*evicorn_event_fn)(evicorn_request *req, void *ud, int status);
/* Body bytes: data is valid only during the call; more is nonzero while
 * more body follows; status is 0, EVICORN_EPIPE/ECANCELED (client gone) or
 * EVICORN_EMSGSIZE (body over the limit). */
typedef void (*evicorn_body_fn)(evicorn_request *req, void *ud, const char *data, size_t len,
                                int more, int status);
/* Blocking work for the thread pool. */
typedef void (*evicorn_work_fn)(void *ud);
/* The result of an outbound HTTP request; see evicorn_fetch_result. */
typedef struct evicorn_fetch_result evicorn_fetch_result;
typedef void (*evicorn_fetch_fn)(evicorn_request *req, void *ud, const evicorn_fetch_result *res);
/* A whole WebSocket message (reassembled from its fragments, inflated when
 * compressed; text is valid UTF-8). data is valid only during the call. */
typedef void (*evicorn_ws_message_fn)(evicorn_request *ws, void *ud, int binary, const char *data,
                                      size_t len);
/* The WebSocket connection ended; the last event of a connection. code:
 * the peer's close code (1005 when its close frame had none), the code the
 * server closed with when the peer did not answer (1001 shutdown, 1002
 * protocol error, 1007 bad UTF-8, 1009 too big, 1011 no pong, 1012 plugin
 * replaced), or 1006 when the connection was lost without a close frame.
 * reason is valid only during the call. */
typedef void (*evicorn_ws_close_fn)(evicorn_request *ws, void *ud, int code, const char *reason,
                                    size_t len);

/* ---- file descriptors and timers (1.3) ---- */

/* A watch: interest in one file descriptor's readiness and/or a timer,
 * owned either by a request or by the plugin itself. Opaque. */
typedef struct evicorn_watch evicorn_watch;

/* What a watch waits for, and what its callback reports. */
#define EVICORN_READABLE 0x1u
#define EVICORN_WRITABLE 0x2u
#define EVICORN_TIMEOUT  0x4u /* the watch's timer expired (reported only) */

/* A watch's callback: events says what is ready (EVICORN_READABLE,
 * EVICORN_WRITABLE and/or EVICORN_TIMEOUT) with status 0; or status is
 * EVICORN_ECANCELED (events 0) when the request it is bound to lost its
 * client: the watch is gone after that call. */
typedef void (*evicorn_watch_fn)(evicorn_watch *w, void *ud, unsigned events, int status);

/* ---- files (1.5) ---- */

/* A file response (respond_file). Either path or fd names the file. */
typedef struct evicorn_file_response {
    uint32_t size;    /* sizeof(evicorn_file_response) */
    const char *path; /* NUL-terminated; opened by the host (NULL: use fd) */
    int fd;           /* an open regular file, used when path is NULL; the
                         host duplicates it, the caller keeps (and closes) its own */
    /* The part of the file that is the representation: offset and length
     * (length < 0: to the end of the file). Ranges asked by the client are
     * within this part. */
    int64_t offset;
    int64_t length;
    /* NULL: from the path's extension (/etc/mime.types), else
     * application/octet-stream. */
    const char *content_type;
    /* Added to the response (e.g. content-disposition, cache-control). */
    const evicorn_header *headers;
    size_t nheaders;
    uint32_t flags; /* EVICORN_FILE_* */
} evicorn_file_response;

/* Serve path.br or path.gz instead of path when the client accepts that
 * encoding and the sibling is at least as new (path responses only). */
#define EVICORN_FILE_PRECOMPRESSED 0x1u
/* No ETag/Last-Modified, no conditional requests, no ranges: the file's
 * bytes as a plain 200 (e.g. a file that is rewritten in place). */
#define EVICORN_FILE_NO_VALIDATORS 0x2u

/* What an async file operation produced; valid only during the callback. */
typedef struct evicorn_file_result {
    const char *data; /* file_read: the file's bytes (NULL otherwise) */
    size_t len;       /* file_read: bytes read; file_write: bytes written */
    int64_t size;     /* file_stat, file_read, file_write: the file's size */
    double mtime;     /* seconds since the epoch, with fractions */
    uint32_t mode;    /* st_mode: type and permission bits */
} evicorn_file_result;

/* An async file operation finished: status 0 with res filled, or a
 * negative errno value (EVICORN_ENOENT, EVICORN_EPERM for a file that
 * may not be read, EVICORN_EMSGSIZE over max_size, EVICORN_EIO,
 * EVICORN_ECANCELED when the client left first; res is then NULL). */
typedef void (*evicorn_file_fn)(evicorn_request *req, void *ud, int status,
                                const evicorn_file_result *res);

/* file_write flags. Without either, the file is replaced atomically (written
 * to a temporary file beside it, then renamed over it). */
#define EVICORN_FILE_APPEND    0x1u /* append to the file (created if missing) */
#define EVICORN_FILE_EXCLUSIVE 0x2u /* create it; EVICORN_EEXIST if it exists */

/* ---- outbound HTTP ---- */

typedef struct evicorn_fetch_options {
    uint32_t size;      /* sizeof(evicorn_fetch_options) */
    const char *method; /* NULL: "GET" */
    const char *url;    /* http:// or (from 1.4) https://host[:port]/path?query */
    const evicorn_header *headers;
    size_t nheaders;
    const void *body; /* copied by the host */
    size_t body_len;
    double connect_timeout; /* seconds; 0: 5 */
    double timeout;         /* seconds for the whole exchange; 0: 30 */
    size_t max_response;    /* body bytes; 0: 8 MiB (whole-response mode only) */
    /* ---- 1.4 ---- */
    uint32_t flags;      /* EVICORN_FETCH_* below */
    int max_redirects;   /* with EVICORN_FETCH_FOLLOW_REDIRECTS; 0: 10 */
    const char *ca_file; /* a PEM bundle trusted instead of the system's store */
} evicorn_fetch_options;

/* Options of an outbound request (1.4). Certificates and host names are
 * verified by default against the system's store (SSL_CERT_FILE and
 * SSL_CERT_DIR are honoured, as OpenSSL and httpx honour them); HTTP/2 is
 * used when the server offers it (ALPN), HTTP/1.1 otherwise; proxies come
 * from the standard environment variables (http_proxy, https_proxy,
 * no_proxy). */
#define EVICORN_FETCH_FOLLOW_REDIRECTS 0x01u /* 301/302/303/307/308, RFC 9110 15.4 */
#define EVICORN_FETCH_DECOMPRESS                                                                   \
    0x02u /* Accept-Encoding with what the host decodes (gzip, deflate, br, zstd); bodies          \
             decoded */
#define EVICORN_FETCH_INSECURE                                                                     \
    0x04u                              /* no certificate or host-name check (logged once           \
                                          per plugin) */
#define EVICORN_FETCH_HTTP1_ONLY 0x08u /* never HTTP/2 */
#define EVICORN_FETCH_STREAM_BODY                                                                  \
    0x10u /* fetch_start: the request body comes through                                           \
             fetch_write (opts->body is ignored); sent chunked unless a                            \
             content-length header announces its length; a 307/308                                 \
             (or 301/302 to other than POST) is then not followed: it is                           \
             the response, as the body cannot be sent twice */

struct evicorn_fetch_result {
    uint32_t size;                 /* filled by the host */
    int status_code;               /* HTTP status when error == 0 */
    int error;                     /* 0, EVICORN_ECONNREFUSED, EVICORN_ETIMEDOUT, EVICORN_ECANCELED,
                                      EVICORN_EMSGSIZE, EVICORN_EINVAL, EVICORN_EIO */
    const char *error_message;     /* one line when error != 0 */
    const evicorn_header *headers; /* names lower-cased */
    size_t nheaders;
    const char *body;
    size_t body_len;
    /* ---- 1.4 ---- */
    const char *http_version; /* "1.0", "1.1" or "2" when error == 0 */
    const char *url;          /* the URL that answered (after redirects) */
    int redirects;            /* how many were followed */
};

/* A streamed outbound request (fetch_start, 1.4): one exchange with an
 * upstream. Opaque. */
typedef struct evicorn_exchange evicorn_exchange;

/* What a streamed outbound request tells, all on the loop thread, each
 * never inside the call that caused it:
 *   on_head once, when the final response's status and headers arrived
 *     (res->body is empty);
 *   on_data for each piece of the body as it arrives (decoded with
 *     EVICORN_FETCH_DECOMPRESS), data valid only during the call; the
 *     plugin may call fetch_pause to stop the flow while its own client
 *     is slow (the upstream is then not read: its TCP window closes);
 *   on_writable, with EVICORN_FETCH_STREAM_BODY, when fetch_write said
 *     "full" and the upload has room again;
 *   on_end last, exactly once: res->error 0 when the whole exchange
 *     ended cleanly (the connection may then be reused), or why it failed
 *     (EVICORN_ECANCELED when the client left or fetch_cancel was called);
 *     on_head may not have run. The handle is gone after it.
 * Any member may be NULL. */
typedef struct evicorn_fetch_events {
    uint32_t size; /* sizeof(evicorn_fetch_events) */
    void (*on_head)(evicorn_request *req, void *ud, evicorn_exchange *f,
                    const evicorn_fetch_result *head);
    void (*on_data)(evicorn_request *req, void *ud, evicorn_exchange *f, const char *data,
                    size_t len);
    void (*on_writable)(evicorn_request *req, void *ud, evicorn_exchange *f);
    void (*on_end)(evicorn_request *req, void *ud, const evicorn_fetch_result *res);
} evicorn_fetch_events;

/* ---- WebSocket (1.2) ---- */

/* What ws_accept answers the opening handshake with, and who hears the
 * connection's events. */
typedef struct evicorn_ws_accept_options {
    uint32_t size;                 /* sizeof(evicorn_ws_accept_options) */
    const char *subprotocol;       /* one of those offered (ws_subprotocol_at), or NULL */
    const evicorn_header *headers; /* extra response headers (Upgrade, Connection and
                                      Sec-WebSocket-* are the host's: ignored here) */
    size_t nheaders;
    evicorn_ws_message_fn on_message; /* may be NULL: messages are dropped */
    evicorn_ws_close_fn on_close;     /* may be NULL */
    void *ud;                         /* passed to both */
} evicorn_ws_accept_options;

/* Close codes (RFC 6455 7.4.1). */
#define EVICORN_WS_NORMAL          1000
#define EVICORN_WS_GOING_AWAY      1001
#define EVICORN_WS_PROTOCOL_ERROR  1002
#define EVICORN_WS_UNSUPPORTED     1003
#define EVICORN_WS_NO_STATUS       1005 /* received only: a close frame without a code */
#define EVICORN_WS_ABNORMAL        1006 /* received only: lost without a close frame */
#define EVICORN_WS_INVALID_DATA    1007
#define EVICORN_WS_POLICY          1008
#define EVICORN_WS_TOO_BIG         1009
#define EVICORN_WS_INTERNAL_ERROR  1011
#define EVICORN_WS_SERVICE_RESTART 1012

/* ---- the host's function table ---- */

typedef struct evicorn_api {
    uint32_t size; /* sizeof(evicorn_api) as the host knows it */

    /* Logging. level: 0 critical .. 5 trace (uvicorn's names). req may be
     * NULL. The host prefixes the plugin's name. Any thread. */
    void (*log)(evicorn_request *req, int level, const char *message);

    /* -- scope (ASGI HTTP scope); any thread while the request is live -- */
    evicorn_str (*method)(evicorn_request *req);
    evicorn_str (*path)(evicorn_request *req);         /* percent-decoded */
    evicorn_str (*raw_path)(evicorn_request *req);     /* as received */
    evicorn_str (*query_string)(evicorn_request *req); /* still encoded, no '?' */
    evicorn_str (*root_path)(evicorn_request *req);
    evicorn_str (*scheme)(evicorn_request *req);       /* "http" or, via proxy headers, "https" */
    evicorn_str (*http_version)(evicorn_request *req); /* "1.0" or "1.1" */
    /* client and server addresses; port 0 when unknown (unix sockets) */
    evicorn_str (*client_host)(evicorn_request *req);
    int (*client_port)(evicorn_request *req);
    evicorn_str (*server_host)(evicorn_request *req);
    int (*server_port)(evicorn_request *req);
    /* Headers in order, names lower-cased, duplicates kept. */
    size_t (*header_count)(evicorn_request *req);
    int (*header_at)(evicorn_request *req, size_t i, evicorn_header *out);
    /* First header with this lower-case name: 0, or EVICORN_ENOENT. */
    int (*header)(evicorn_request *req, const char *name, evicorn_str *value);
    /* The route's path parameters ("/items/{id:int}"), as matched text. */
    size_t (*param_count)(evicorn_request *req);
    int (*param_at)(evicorn_request *req, size_t i, evicorn_str *name, evicorn_str *value);
    int (*param)(evicorn_request *req, const char *name, evicorn_str *value);
    /* The route pattern that matched, e.g. "/items/{id:int}". */
    evicorn_str (*route)(evicorn_request *req);
    /* The plugin's lifespan state (what startup stored); any thread. */
    void *(*state)(evicorn_request *req);

    /* -- body (ASGI http.request) -- */
    /* Async: the next chunk (everything that arrived since the last call);
     * more == 0 on the last. Sends 100 Continue when the client asked. */
    int (*receive)(evicorn_request *req, evicorn_body_fn fn, void *ud);
    /* Async: the whole body at once, when it has arrived. */
    int (*read_body)(evicorn_request *req, evicorn_body_fn fn, void *ud);
    /* The whole body once it has been read: always in a sync handler, and
     * in an async one after read_body completed. Empty otherwise. */
    evicorn_str (*body)(evicorn_request *req);

    /* -- response (ASGI http.response.start / http.response.body) -- */
    /* Status, headers and the whole body, with Content-Length. */
    int (*respond)(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                   const void *body, size_t len);
    /* Starts a response; content_length < 0 when unknown (then chunked). */
    int (*start)(evicorn_request *req, int status, const evicorn_header *headers, size_t n,
                 int64_t content_length);
    /* Body bytes; more == 0 completes the response. Each call's bytes are
     * flushed to the client. From a sync handler, blocks while the client
     * is slow (backpressure). */
    int (*send)(evicorn_request *req, const void *data, size_t len, int more);
    /* Async backpressure: 1 when more output may be queued now. Otherwise
     * on_writable's continuation runs when the client has caught up. */
    int (*writable)(evicorn_request *req);
    int (*on_writable)(evicorn_request *req, evicorn_event_fn fn, void *ud);
    /* Nonzero once the client has gone (ASGI http.disconnect). */
    int (*disconnected)(evicorn_request *req);
    /* fn runs once if the client disconnects before the response is done;
     * it does not keep the request open. */
    int (*on_disconnect)(evicorn_request *req, evicorn_event_fn fn, void *ud);

    /* -- async operations (loop thread only; EVICORN_EPERM elsewhere) -- */
    /* asyncio.sleep: fn runs after seconds (status 0), or on disconnect
     * with EVICORN_ECANCELED. */
    int (*sleep)(evicorn_request *req, double seconds, evicorn_event_fn fn, void *ud);
    /* Starlette's run_in_threadpool: work(ud) runs on the pool, then
     * done runs on the loop (status 0, or EVICORN_ECANCELED when the
     * client left meanwhile; work itself is never interrupted). */
    int (*offload)(evicorn_request *req, evicorn_work_fn work, evicorn_event_fn done, void *ud);
    /* An outbound HTTP request that never blocks the loop (from 1.4:
     * HTTPS, HTTP/2, a per-worker cache of keep-alive connections, and
     * the flags of evicorn_fetch_options). fn gets the whole response
     * (its error is EVICORN_ECANCELED on disconnect). */
    int (*fetch)(evicorn_request *req, const evicorn_fetch_options *opts, evicorn_fetch_fn fn,
                 void *ud);
    /* Keeps the request open until release, for plugins that continue from
     * events of their own. Any thread. */
    int (*hold)(evicorn_request *req);
    void (*release)(evicorn_request *req);

    /* FastAPI's BackgroundTasks: fn(ud) runs on the thread pool after the
     * response has been sent (even if the client has gone). Any thread. */
    int (*background)(evicorn_request *req, evicorn_work_fn fn, void *ud);

    /* ---- added in 1.1 ---- */

    /* Any thread: fn(req, ud, status) runs soon on the loop thread (status
     * EVICORN_ECANCELED if the client has gone). Calls from one thread run
     * in order; many calls share one wake-up of the loop. The caller must
     * keep the request open with a hold (taken on the loop thread) until
     * fn has run. This is how a plugin running its own thread (an embedded
     * interpreter, a client library) hands work back to the loop. */
    int (*call_on_loop)(evicorn_request *req, evicorn_event_fn fn, void *ud);
    /* A server setting by name, or NULL: "app", "app_dir", "factory"
     * ("1"/"0"), "lifespan" ("auto"/"on"/"off"), "interface"
     * ("auto"/"asgi3"/"asgi2"/"wsgi"), "loop" ("auto"/"asyncio"/"uvloop"/
     * "none" or module:attr), "root_path", "workers", "worker" (this
     * worker's index), "threads", "log_level", and from 1.2 "ws_max_queue". Any thread; the string
     * lives as long as the server. Unknown names give NULL, so a plugin asks for newer ones safely.
     */
    const char *(*config)(const char *name);

    /* ---- added in 1.2: WebSocket ----
     *
     * A route whose kind has EVICORN_WEBSOCKET gets the opening handshake
     * of a WebSocket connection (RFC 6455) at its path, as a request with
     * the usual scope (method GET, path, query, headers, params, state).
     * Its handler either accepts with ws_accept, or rejects by answering
     * an ordinary HTTP response with respond or start/send (ASGI's
     * websocket.http.response); the connection closes after a rejection.
     * A handler that finishes without doing either is answered 500 (and
     * the route is logged), as uvicorn answers an ASGI app that returns
     * without a handshake; ws_close before accepting answers 403, as
     * uvicorn answers websocket.close before websocket.accept. A WebSocket
     * handshake at a path with no WebSocket route is answered 403.
     *
     * Once accepted, the same handle stands for the connection until its
     * close event has run: the scope stays readable, and the request
     * stays open without a hold. Whole messages arrive through on_message;
     * the plugin sends with ws_send and closes with ws_close; on_close is
     * the last event (the peer closed, the server closed, or the
     * connection was lost). Pings, pongs, keepalive (--ws-ping-interval),
     * fragmentation, compression (permessage-deflate) and the size limit
     * (--ws-max-size) are the host's.
     *
     * Threads, by the route's kind:
     *  - EVICORN_ASYNC: the events run on the loop thread and must not
     *    block; ws_send queues and never blocks (use writable/on_writable
     *    for backpressure, as for HTTP bodies); ws_pause stops delivering
     *    messages (reading from the socket pauses) until unpaused.
     *  - EVICORN_SYNC: the handler runs on the thread pool; so does every
     *    event, one at a time per connection, in the order received, and
     *    each may block. Messages that arrive meanwhile wait (at most
     *    --ws-max-queue of them, then reading pauses). From the pool,
     *    ws_send blocks while the client is slow to read.
     * ws_send and ws_close may be called from any thread while the
     * connection is open (a plugin thread too); they return EVICORN_EPIPE
     * once it has closed, or a close was sent.
     *
     * Hot reload: a connection keeps the plugin version it was accepted
     * on. When that version is replaced or removed, its connections go on
     * until --timeout-websocket-drain, then are closed with 1012; graceful
     * shutdown closes them with 1001. */

    /* Accepts the handshake: the host answers 101 with the subprotocol,
     * negotiates permessage-deflate and adds the headers. EVICORN_EINVAL
     * for a subprotocol that was not offered or a bad header; EVICORN_EPERM
     * when req is not a WebSocket handshake; EVICORN_EALREADY after a
     * response or an accept. */
    int (*ws_accept)(evicorn_request *req, const evicorn_ws_accept_options *opts);
    /* One whole message, text (valid UTF-8, else EVICORN_EINVAL) or
     * binary; the host frames (and compresses) it. */
    int (*ws_send)(evicorn_request *req, int binary, const void *data, size_t len);
    /* Starts the closing handshake with code (1000-1003, 1007-1014 or
     * 3000-4999; else EVICORN_EINVAL) and a UTF-8 reason (cut to 123
     * bytes). on_close runs once the peer answers (or 5 s pass). Before
     * accepting: rejects the handshake with 403. */
    int (*ws_close)(evicorn_request *req, int code, const char *reason, size_t len);
    /* Async routes: paused != 0 stops message delivery (and reading)
     * until called with 0. Loop thread only. */
    int (*ws_pause)(evicorn_request *req, int paused);
    /* The subprotocols the client offered (Sec-WebSocket-Protocol), in
     * order: 0, or EVICORN_ENOENT past the last. */
    int (*ws_subprotocol_at)(evicorn_request *req, size_t i, evicorn_str *out);
    /* The extensions the client offered (Sec-WebSocket-Extensions), one
     * per item with its parameters, e.g. "permessage-deflate;
     * client_max_window_bits". */
    int (*ws_extension_at)(evicorn_request *req, size_t i, evicorn_str *out);
    /* A number naming the connection, unique in this worker. */
    uint64_t (*ws_id)(evicorn_request *req);

    /* ---- added in 1.3: file descriptors and timers ----
     *
     * A watch lets async code continue when a file descriptor it owns
     * becomes readable or writable, or when a timer expires: enough to
     * run any non-blocking client library on the loop (libpq, hiredis,
     * c-ares, libcurl's multi interface). Loop thread only (EVICORN_EPERM
     * elsewhere, *out untouched).
     *
     * Unlike other continuations, a watch's callback runs each time what
     * it waits for is ready, until the watch is cancelled; it never runs
     * inside the call that armed it. Readiness is level-triggered (as
     * poll(2)): a callback that does not drain the fd is called again.
     * The host never reads, writes or closes the fd.
     *
     * Owner, chosen at creation:
     *  - a request (req != NULL): the watch keeps the request open (like
     *    a hold) until cancelled. When the client disconnects, the
     *    callback runs once more with EVICORN_ECANCELED and the watch is
     *    gone: cancel there what was in flight (e.g. the query).
     *  - the plugin (req == NULL), for what outlives requests: pools of
     *    connections, reconnect back-off, maintenance timers. It belongs
     *    to the plugin version whose code made the call (a handler, a
     *    continuation, a watch callback or the startup hook), and keeps
     *    that version's code mapped while it lives; it does not keep the
     *    version from draining, so its shutdown hook is where such
     *    watches are cancelled. Watches still live after shutdown are a
     *    plugin bug: the host logs them (by plugin and fd), stops them and
     *    closes nothing.
     * A timer alone is a watch on fd -1. */

    /* Creates a watch on fd (or -1), idle until watch_set arms it. */
    int (*watch)(evicorn_request *req, int fd, evicorn_watch_fn fn, void *ud, evicorn_watch **out);
    /* Sets what the watch waits for: events (EVICORN_READABLE |
     * EVICORN_WRITABLE, or 0 for nothing) replaces the previous interest;
     * timeout > 0 (re)starts the timer to fire once after that many
     * seconds, 0 stops it, < 0 leaves it as it is. EVICORN_EINVAL for
     * fd events on a watch of fd -1. */
    int (*watch_set)(evicorn_watch *w, unsigned events, double timeout);
    /* Stops and frees the watch: its callback does not run again (also
     * when called from that callback). */
    void (*watch_cancel)(evicorn_watch *w);

    /* ---- added in 1.4: streamed outbound HTTP ----
     *
     * fetch_start is fetch with the response delivered as it arrives (head,
     * then body pieces, with backpressure) and, with
     * EVICORN_FETCH_STREAM_BODY, the request body written in pieces: a
     * handler can proxy a body of any size without holding it. Bound to
     * the request (a client that disconnects cancels it: on_end gets
     * EVICORN_ECANCELED). Loop thread only. */
    int (*fetch_start)(evicorn_request *req, const evicorn_fetch_options *opts,
                       const evicorn_fetch_events *events, void *ud, evicorn_exchange **out);
    /* paused != 0 stops on_data (and reading from the upstream) until
     * called with 0. */
    int (*fetch_pause)(evicorn_exchange *f, int paused);
    /* A piece of the request body (EVICORN_FETCH_STREAM_BODY), copied;
     * more == 0 ends it. Returns 1 when more may be written now, 0 when
     * the host holds enough (wait for on_writable), or an error
     * (EVICORN_EPIPE once the exchange ended, EVICORN_EINVAL without
     * STREAM_BODY or after the last piece). */
    int (*fetch_write)(evicorn_exchange *f, const void *data, size_t len, int more);
    /* Aborts the exchange: on_end runs with EVICORN_ECANCELED (soon, not
     * inside this call) and the connection is not reused. */
    void (*fetch_cancel)(evicorn_exchange *f);

    /* ---- added in 1.5: files ----
     *
     * respond_file answers with a file the host sends with sendfile(2),
     * never reading it into memory, and with what a static file server
     * does: Content-Type, a strong ETag and Last-Modified, conditional
     * requests (If-Match, If-Unmodified-Since, If-None-Match,
     * If-Modified-Since: 304/412), Range (206, multipart/byteranges for
     * several, 416 when unsatisfiable, If-Range) and HEAD. The response is
     * complete when it returns 0. EVICORN_ENOENT when the path does not
     * exist, EVICORN_EPERM when it may not be read or is not a regular
     * file: no response was sent, the handler answers. Either thread. */
    int (*respond_file)(evicorn_request *req, const evicorn_file_response *file);
    /* Body bytes from a file after start (ASGI's zerocopysend): count
     * bytes of fd from offset (count < 0: to the end of the file), sent
     * with sendfile(2). The host duplicates fd; the caller keeps its own.
     * A file that turns out shorter than promised ends the response early
     * and closes the connection. more == 0 completes the response.
     * Either thread. */
    int (*send_file)(evicorn_request *req, int fd, int64_t offset, int64_t count, int more);
    /* File I/O on the thread pool for async handlers (aiofiles): the
     * continuation runs on the loop thread. Bound to the request: a client
     * that disconnects first gets EVICORN_ECANCELED (the operation itself
     * may still complete). Paths are used as given (relative to the
     * server's working directory); check names taken from clients.
     * Loop thread only; sync handlers use the C library directly. */
    /* The whole file, up to max_size bytes (EVICORN_EMSGSIZE beyond). */
    int (*file_read)(evicorn_request *req, const char *path, size_t max_size, evicorn_file_fn fn,
                     void *ud);
    /* Writes len bytes (copied before the call returns) per flags
     * (EVICORN_FILE_APPEND, EVICORN_FILE_EXCLUSIVE, or replace); new files
     * get mode 0644 less the umask. */
    int (*file_write)(evicorn_request *req, const char *path, const void *data, size_t len,
                      unsigned flags, evicorn_file_fn fn, void *ud);
    int (*file_stat)(evicorn_request *req, const char *path, evicorn_file_fn fn, void *ud);
} evicorn_api;

/* True when the host's table has function `fn` (added in some minor). */
#define EVICORN_API_HAS(api, fn)                                                                   \
    ((api)->size >= offsetof(evicorn_api, fn) + sizeof((api)->fn) && (api)->fn != NULL)

/* ---- negotiation ---- */

/* What the host hands to evicorn_plugin_entry. */
typedef struct evicorn_host {
    uint32_t size;      /* sizeof(evicorn_host) as the host knows it */
    uint16_t abi_major; /* EVICORN_ABI_MAJOR of the host */
    uint16_t abi_minor; /* EVICORN_ABI_MINOR of the host */
    const evicorn_api *api;
    const char *server_version; /* "0.1.0" */
    const char *plugin_file;    /* the file the operator dropped, for messages */
} evicorn_host;

enum evicorn_handler_kind {
    EVICORN_ASYNC = 1, /* runs on the event loop; must not block */
    EVICORN_SYNC = 2,  /* runs on the thread pool; may block */
};

/* OR'ed into a route's kind (1.2): the route serves WebSocket handshakes
 * at its path (method "GET"); see ws_accept. */
#define EVICORN_WEBSOCKET 0x100u

typedef void (*evicorn_handler_fn)(evicorn_request *req, void *route_data);

typedef struct evicorn_route {
    uint32_t size;      /* sizeof(evicorn_route) */
    const char *method; /* "GET", "POST", ... or "*" for any */
    const char *path;   /* template: "/items/{id}", "{id:int}", "{x:float}", "{rest:path}" */
    uint32_t kind;      /* enum evicorn_handler_kind */
    evicorn_handler_fn handler;
    void *data; /* passed to the handler as route_data */
} evicorn_route;

/* What a plugin returns from evicorn_plugin_entry. It must stay valid until
 * shutdown has returned. */
typedef struct evicorn_plugin {
    uint32_t size;      /* sizeof(evicorn_plugin) as the plugin knows it */
    uint16_t abi_major; /* EVICORN_ABI_MAJOR the plugin was built against */
    uint16_t abi_minor; /* the oldest host minor the plugin works with */
    const char *name;   /* short, e.g. "hello"; used in logs and the status page */
    const char *version;
    /* Routes as an array whose element size is route_size, so the route
     * struct may grow without breaking old plugins. */
    const evicorn_route *routes;
    uint32_t nroutes;
    uint32_t route_size;
    /* ASGI lifespan. startup runs on the loop thread before any route is
     * served; it may store a state pointer (handed to handlers through
     * api->state). It returns 0, or nonzero after writing a reason into err
     * (then the plugin is refused and the previous version keeps
     * serving). shutdown runs when this version is unloaded, after its last
     * request, continuation and background task finished. Either may be
     * NULL. */
    int (*startup)(void **state, char *err, size_t errlen);
    void (*shutdown)(void *state);
} evicorn_plugin;

/* The entry point: returns the plugin's descriptor, or NULL to refuse to
 * load (after logging why through host->api->log). Called on the loop
 * thread, once per load of the file. */
typedef const evicorn_plugin *(*evicorn_plugin_entry_fn)(const evicorn_host *host);

#ifdef __cplusplus
}
#endif

#endif
