/* Internal declarations shared by asgi.c (the plugin: evicorn's loop side)
 * and pymod.c (the _evicorn extension module: the Python thread's side).
 * See README.md for the design. */
#ifndef EVICORN_ASGI_BRIDGE_H
#define EVICORN_ASGI_BRIDGE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <evicorn/abi.h>

#define ASGI_HIDDEN __attribute__((visibility("hidden")))

/* Log levels of the ABI (uvicorn's names). */
enum { LOG_CRITICAL, LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_TRACE };

/* Output queued by the app but not yet written by the loop, per request,
 * above which send() waits (and below which it is resumed). */
#define ASGI_SEND_HIGH (256 * 1024)
#define ASGI_SEND_LOW  (64 * 1024)

/* One request as both threads see it. The loop thread creates it in the
 * route handler; it is freed when the last reference goes: the loop
 * side's (until the final release), the Python Req object's, one per
 * message or continuation in flight, and an accepted WebSocket's (until
 * its close event). */
struct areq {
    evicorn_request *req;
    atomic_int refs;
    atomic_int gone;     /* the client disconnected before the response was done;
                            a WebSocket: the connection ended */
    atomic_int paused;   /* the connection's output is full (loop side decides) */
    atomic_long pending; /* body bytes posted by Python, not yet handed to the host */
    atomic_int waiting;  /* Python's send() waits for pending/paused to drop */
    int ws;              /* a WebSocket handshake (set before Python sees it) */
    /* WebSocket flow control (--ws-max-queue): messages handed to Python
     * that the app has not received yet, and whether the loop paused the
     * connection for them (Python clears it when it asks to resume). */
    atomic_int ws_queued;
    atomic_int ws_paused;
    /* loop thread only */
    int writable_armed;
    int ws_accepted;   /* ws_accept succeeded: on_close will come */
    int ws_ended;      /* the connection ended (or never opened): nothing more goes out */
    int ws_closing;    /* the app closed or returned: messages have no reader */
    int ws_pause_held; /* ws_pause(req, 1) is in force */
    /* Python thread only */
    PyObject *py; /* the Req object, borrowed; NULL once it is gone */
};

void areq_unref(struct areq *a) ASGI_HIDDEN;
static inline void areq_ref(struct areq *a)
{
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

/* Messages from the loop thread to the Python thread. */
enum in_kind {
    IN_REQUEST,    /* a new request (a->ws: a WebSocket handshake); may carry the
                      first body chunk */
    IN_BODY,       /* a body chunk (or the end of the body, or an error) */
    IN_DISCONNECT, /* the client has gone */
    IN_WRITABLE,   /* send() may go on */
    IN_WS_MESSAGE, /* a whole WebSocket message: data, more = binary */
    IN_WS_CLOSE    /* the WebSocket ended: status = close code, data = reason */
};

struct inmsg {
    struct inmsg *next;
    struct areq *a; /* holds a reference */
    int kind;
    int has_body; /* IN_REQUEST: data/more/status carry the first chunk */
    int no_body;  /* IN_REQUEST: the request has no body at all */
    int more;
    int status;
    size_t len;
    char data[];
};

/* Pushes a message to the Python thread (any thread; wakes it when the
 * queue was empty). */
void inq_push(struct inmsg *m) ASGI_HIDDEN;
struct inmsg *inmsg_new(struct areq *a, int kind, const char *data, size_t len) ASGI_HIDDEN;

/* Messages from the Python thread to the loop thread (api->call_on_loop). */
enum out_kind {
    OUT_SEND,      /* optional start, then body bytes */
    OUT_SEND_FILE, /* optional start, then body bytes from a file (fd: ours, closed
                      once the host has its own; offset, count) */
    OUT_RECEIVE,   /* ask the host for the next body chunk */
    OUT_FINISH,    /* the app returned: optional 500 or WebSocket close, then
                      release the request */
    OUT_WS_ACCEPT, /* accept the handshake: headers, body = subprotocol (NUL-ended)
                      when status != 0 */
    OUT_WS_SEND,   /* one message: body, more = binary */
    OUT_WS_CLOSE,  /* status = close code, body = reason (before accept: 403) */
    OUT_WS_RESUME  /* the app has received enough: unpause the connection */
};

struct outmsg {
    struct outmsg *next; /* in its batch */
    struct areq *a;
    int kind;
    int status; /* OUT_SEND: response status when it starts the response, else 0;
                   OUT_FINISH: 500 to answer it, else 0 */
    int code;   /* OUT_FINISH of an accepted WebSocket: the close code, or 0 */
    int more;
    size_t nheaders;
    evicorn_header *headers;
    const char *body;
    size_t len;
    int fd; /* OUT_SEND_FILE: the file, owned by the message; else -1 */
    int64_t offset, count;
    char blob[]; /* headers array, header bytes, body bytes */
};

/* Posts a batch (linked through next) to the loop thread in one
 * api->call_on_loop; 0 or a negative EVICORN_ code. */
int outmsg_post_batch(struct outmsg *first) ASGI_HIDDEN;
/* Frees a message that will not run (and closes its file). */
void outmsg_free(struct outmsg *m) ASGI_HIDDEN;

/* The host's table (set once by the entry point). */
extern const evicorn_api *asgi_api ASGI_HIDDEN;
/* --ws-max-queue: WebSocket messages the app has not received yet above
 * which the connection pauses. */
extern int asgi_ws_max_queue ASGI_HIDDEN;

/* Logging to the server's log, any thread, printf style. */
void asgi_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3))) ASGI_HIDDEN;

/* The eventfd the Python thread watches (loop.add_reader). */
int asgi_wake_fd(void) ASGI_HIDDEN;
/* Takes every queued message, in order; NULL when none. */
struct inmsg *inq_take(void) ASGI_HIDDEN;

/* pymod.c */
PyObject *asgi_pymod_init(void) ASGI_HIDDEN;

/* Whether the bridge's startup failed in loading the app (an import
 * error) rather than in its lifespan startup. */
int asgi_app_load_failed(void) ASGI_HIDDEN;

/* The request's Content-Length; -1 when absent or invalid. */
long long bridge_content_length(evicorn_request *req) ASGI_HIDDEN;
/* A Content-Length value (1 to 18 digits, nothing else); -1 when invalid. */
long long bridge_parse_length(const unsigned char *p, size_t n) ASGI_HIDDEN;
/* Whether an app's response header is one HTTP may carry (RFC 9110 §5):
 * a name that is a token, a value without control bytes but tab. */
int bridge_header_name_valid(const unsigned char *p, size_t n) ASGI_HIDDEN;
int bridge_header_value_valid(const unsigned char *p, size_t n) ASGI_HIDDEN;
/* The message of the Python exception being raised, as "what: Type:
 * message", into err; the exception is cleared. */
void bridge_python_error(const char *what, char *err, size_t errlen) ASGI_HIDDEN;

/* wsgi.c: --interface wsgi. wsgi_mode is set once configure_wsgi() (a
 * _evicorn function) has the app; the catch-all route then hands every
 * request to wsgi_handle (loop thread). */
extern int wsgi_mode ASGI_HIDDEN;
void wsgi_handle(evicorn_request *req) ASGI_HIDDEN;
PyObject *wsgi_configure(PyObject *mod, PyObject *args) ASGI_HIDDEN;

/* The bridge's plugin entry point, for the embedding (python/_core.c). */
const evicorn_plugin *asgi_bridge_entry(const evicorn_host *host) ASGI_HIDDEN;

#endif
