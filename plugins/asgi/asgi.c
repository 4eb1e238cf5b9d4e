/* The ASGI bridge: evicorn's bridge to a Python ASGI application, built
 * into evicorn's Python module (python/_core.c) and loaded through its
 * entry point when evicorn runs inside the user's interpreter.
 *
 * This file is the evicorn side: the plugin entry, the catch-all route
 * handlers (HTTP and WebSocket) that run on the worker's event loop, the
 * queue that carries requests and WebSocket events to the Python thread,
 * the continuations that carry the app's responses and messages back
 * (asgi_api->call_on_loop), and the startup and shutdown hooks, which take
 * the interpreter's GIL to start and stop the Python side. pymod.c is the
 * Python side (the _evicorn module) and bridge.py the Python code that
 * runs the asyncio loop, the lifespan and each request. README.md explains
 * the design and why.
 *
 * Threads: the evicorn loop thread never takes the GIL once startup has
 * returned. It talks to the Python thread only through inq_push (a mutex
 * protected list plus an eventfd the asyncio loop watches) and reads the
 * atomics of struct areq. */
#include "bridge.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bridge_py.h"

const evicorn_api *asgi_api;
int asgi_ws_max_queue = 32; /* the server's default, when it does not say */

/* ---- logging ---- */

/* The host writes one line of at most ~2 KiB per call: long messages (a
 * traceback) go out in pieces cut at line ends. */
#define LOG_PIECE 1800

static void log_text(int level, const char *text)
{
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '\n')
        n--;
    if (n <= LOG_PIECE) {
        char buf[LOG_PIECE + 1];
        memcpy(buf, text, n);
        buf[n] = '\0';
        asgi_api->log(NULL, level, buf);
        return;
    }
    const char *p = text, *end = text + n;
    while (p < end) {
        size_t k = (size_t)(end - p);
        if (k > LOG_PIECE) {
            k = LOG_PIECE;
            const char *nl = NULL;
            for (const char *q = p + k; q > p; q--)
                if (*q == '\n') {
                    nl = q;
                    break;
                }
            if (nl)
                k = (size_t)(nl - p);
        }
        char buf[LOG_PIECE + 1];
        memcpy(buf, p, k);
        buf[k] = '\0';
        if (k > 0)
            asgi_api->log(NULL, level, buf);
        p += k;
        if (p < end && *p == '\n')
            p++;
    }
}

void asgi_log(int level, const char *fmt, ...)
{
    char stack[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stack, sizeof stack, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof stack) {
        log_text(level, stack);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        log_text(level, stack);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    log_text(level, big);
    free(big);
}

/* ---- the queue to the Python thread ---- */

static struct {
    pthread_mutex_t mu;
    struct inmsg *head, **tail;
    int efd;
} Q = {PTHREAD_MUTEX_INITIALIZER, NULL, &Q.head, -1};

int asgi_wake_fd(void)
{
    return Q.efd;
}

void inq_push(struct inmsg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&Q.mu);
    int was_empty = Q.head == NULL;
    *Q.tail = m;
    Q.tail = &m->next;
    pthread_mutex_unlock(&Q.mu);
    /* One wake-up per batch: a non-empty queue means the Python thread has
     * a wake-up pending that will take this message too (it reads the
     * eventfd before taking the queue). */
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w;
        do
            w = write(Q.efd, &one, sizeof one);
        while (w < 0 && errno == EINTR);
    }
}

struct inmsg *inq_take(void)
{
    pthread_mutex_lock(&Q.mu);
    struct inmsg *list = Q.head;
    Q.head = NULL;
    Q.tail = &Q.head;
    pthread_mutex_unlock(&Q.mu);
    return list;
}

struct inmsg *inmsg_new(struct areq *a, int kind, const char *data, size_t len)
{
    struct inmsg *m = malloc(sizeof *m + len);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->a = a;
    m->kind = kind;
    m->len = len;
    if (len)
        memcpy(m->data, data, len);
    return m;
}

/* ---- requests ---- */

void areq_unref(struct areq *a)
{
    if (atomic_fetch_sub(&a->refs, 1) == 1)
        free(a);
}

/* Sends an event to the Python thread; it owns a new reference to a. Out of
 * memory, the event is lost: the app then sees the request as it was. */
static void notify(struct areq *a, int kind)
{
    struct inmsg *m = inmsg_new(a, kind, NULL, 0);
    if (!m) {
        asgi_log(LOG_ERROR, "out of memory notifying the ASGI app");
        return;
    }
    areq_ref(a);
    inq_push(m);
}

/* The client left before the response was done. */
static void on_gone(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status;
    struct areq *a = ud;
    atomic_store(&a->gone, 1);
    notify(a, IN_DISCONNECT);
}

/* A send() waiting for room may go on: output has drained below the low
 * mark, or the client is gone (then send() raises). */
static void wake_writer(struct areq *a)
{
    if (!atomic_load(&a->waiting))
        return;
    if (!atomic_load(&a->gone) &&
        (atomic_load(&a->paused) || atomic_load(&a->pending) > ASGI_SEND_LOW))
        return;
    if (atomic_exchange(&a->waiting, 0))
        notify(a, IN_WRITABLE);
}

static void on_room(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status;
    struct areq *a = ud;
    a->writable_armed = 0;
    atomic_store(&a->paused, 0);
    wake_writer(a);
    areq_unref(a);
}

static void on_body(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                    int status)
{
    (void)req;
    struct areq *a = ud; /* the reference taken for this continuation goes to the message */
    struct inmsg *m = inmsg_new(a, IN_BODY, status ? NULL : data, status ? 0 : len);
    if (!m) {
        m = inmsg_new(a, IN_BODY, NULL, 0);
        if (!m) {
            areq_unref(a);
            return;
        }
        status = EVICORN_ENOMEM;
    }
    m->more = status ? 0 : more;
    m->status = status;
    inq_push(m);
}

/* After output that may have filled the connection: send() waits until
 * the host says there is room again. */
static void watch_room(struct areq *a)
{
    if (asgi_api->writable(a->req))
        return;
    atomic_store(&a->paused, 1);
    if (a->writable_armed)
        return;
    a->writable_armed = 1;
    areq_ref(a);
    if (asgi_api->on_writable(a->req, on_room, a) < 0) {
        a->writable_armed = 0;
        atomic_store(&a->paused, 0);
        areq_unref(a);
    }
}

/* ---- WebSocket (ABI 1.2) ---- */

/* The connection's end, for the Python thread: the peer's close code and
 * reason, or 1006 when it was lost (also before the handshake). Takes a
 * reference of its own. */
static void ws_tell_end(struct areq *a, int code, const char *reason, size_t len)
{
    a->ws_ended = 1;
    a->ws_pause_held = 0;
    atomic_store(&a->gone, 1);
    struct inmsg *m = inmsg_new(a, IN_WS_CLOSE, reason, len);
    if (!m && !(m = inmsg_new(a, IN_WS_CLOSE, NULL, 0))) {
        asgi_log(LOG_ERROR, "out of memory telling the ASGI app its WebSocket closed");
        return;
    }
    m->status = code;
    areq_ref(a);
    inq_push(m);
}

/* A whole message from the client (loop thread). */
static void on_ws_message(evicorn_request *req, void *ud, int binary, const char *data, size_t len)
{
    struct areq *a = ud;
    if (a->ws_closing)
        return; /* the app has closed or returned: nobody reads it */
    struct inmsg *m = inmsg_new(a, IN_WS_MESSAGE, data, len);
    if (!m) {
        asgi_log(LOG_ERROR, "out of memory for a WebSocket message; closing with 1011");
        a->ws_closing = 1;
        asgi_api->ws_close(req, EVICORN_WS_INTERNAL_ERROR, NULL, 0);
        return;
    }
    m->more = binary;
    /* --ws-max-queue: once that many wait for the app, stop reading. The
     * flag is set before the message is pushed, so the receive() that takes
     * it (at the latest) sees the flag and asks to resume. */
    int queued = atomic_fetch_add(&a->ws_queued, 1) + 1;
    if (queued >= asgi_ws_max_queue && !a->ws_pause_held) {
        atomic_store(&a->ws_paused, 1);
        if (asgi_api->ws_pause(req, 1) == 0)
            a->ws_pause_held = 1;
        else
            atomic_store(&a->ws_paused, 0);
    }
    areq_ref(a);
    inq_push(m);
}

/* The connection's last event: the reference the session held goes to
 * the message. */
static void on_ws_close(evicorn_request *req, void *ud, int code, const char *reason, size_t len)
{
    (void)req;
    struct areq *a = ud;
    ws_tell_end(a, code, reason, len);
    areq_unref(a);
}

/* The client left before the handshake was accepted (after it, the
 * connection's close event tells). */
static void on_ws_gone(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status;
    struct areq *a = ud;
    if (a->ws_accepted || a->ws_ended)
        return;
    ws_tell_end(a, EVICORN_WS_ABNORMAL, NULL, 0);
}

static void ws_accept_now(struct areq *a, struct outmsg *m)
{
    if (a->ws_ended || atomic_load(&a->gone))
        return; /* the app hears 1006 */
    evicorn_ws_accept_options o = {
        .size = sizeof o,
        .subprotocol = m->status ? m->body : NULL,
        .headers = m->headers,
        .nheaders = m->nheaders,
        .on_message = on_ws_message,
        .on_close = on_ws_close,
        .ud = a,
    };
    areq_ref(a); /* the session's, until on_close */
    int rc = asgi_api->ws_accept(a->req, &o);
    if (rc == 0) {
        a->ws_accepted = 1;
        return;
    }
    areq_unref(a);
    if (rc != EVICORN_EPIPE)
        asgi_log(LOG_ERROR, "cannot accept the WebSocket handshake (error %d)", rc);
    /* The app believes it accepted: it hears the connection is gone. */
    ws_tell_end(a, EVICORN_WS_ABNORMAL, NULL, 0);
}

/* The app closes (or returned): before accepting, the host answers 403. */
static void ws_close_now(struct areq *a, int code, const char *reason, size_t len)
{
    a->ws_closing = 1;
    if (a->ws_ended)
        return;
    /* The peer's answer to the close must be read. */
    if (a->ws_pause_held) {
        a->ws_pause_held = 0;
        asgi_api->ws_pause(a->req, 0);
    }
    int rc = asgi_api->ws_close(a->req, code, reason, len);
    if (rc < 0 && rc != EVICORN_EPIPE && rc != EVICORN_EALREADY)
        asgi_log(LOG_ERROR, "cannot close the WebSocket with %d (error %d)", code, rc);
}

static const evicorn_header plain_500[] = {
    {"content-type", 12, "text/plain; charset=utf-8", 25},
    {"connection", 10, "close", 5},
};

/* Runs on the loop thread: one message the Python thread posted. */
static void run_out(struct outmsg *m)
{
    struct areq *a = m->a;
    evicorn_request *req = a->req;
    int rc = 0;
    switch (m->kind) {
    case OUT_SEND:
        if (!atomic_load(&a->gone)) {
            /* A WebSocket rejection sent whole gets a Content-Length, as
             * uvicorn's (which buffers it); HTTP responses keep chunked. */
            if (m->status)
                rc = asgi_api->start(req, m->status, m->headers, m->nheaders,
                                     a->ws && !m->more ? (int64_t)m->len : -1);
            if (rc == 0 && (m->len > 0 || !m->more))
                rc = asgi_api->send(req, m->body, m->len, m->more);
            if (rc < 0 && rc != EVICORN_EPIPE)
                asgi_log(LOG_ERROR, "cannot send the app's response (error %d)", rc);
            if (rc == 0 && m->more)
                watch_room(a);
        }
        atomic_fetch_sub(&a->pending, (long)m->len);
        wake_writer(a);
        break;
    case OUT_SEND_FILE:
        /* pathsend or zerocopysend: the host sends the file with
         * sendfile(2) from its own duplicate of the fd. */
        if (!atomic_load(&a->gone)) {
            if (m->status)
                rc = asgi_api->start(req, m->status, m->headers, m->nheaders, -1);
            if (rc == 0)
                rc = asgi_api->send_file(req, m->fd, m->offset, m->count, m->more);
            if (rc < 0 && rc != EVICORN_EPIPE)
                asgi_log(LOG_ERROR, "cannot send the app's file (error %d)", rc);
            if (rc == 0 && m->more)
                watch_room(a);
        }
        break;
    case OUT_RECEIVE:
        areq_ref(a);
        rc = asgi_api->receive(req, on_body, a);
        if (rc < 0)
            on_body(req, a, NULL, 0, 0, rc);
        break;
    case OUT_WS_ACCEPT:
        ws_accept_now(a, m);
        break;
    case OUT_WS_SEND:
        if (a->ws_accepted && !a->ws_ended) {
            rc = asgi_api->ws_send(req, m->more, m->body, m->len);
            if (rc < 0 && rc != EVICORN_EPIPE)
                asgi_log(LOG_ERROR, "cannot send the app's WebSocket message (error %d)", rc);
            if (rc == 0)
                watch_room(a);
        }
        atomic_fetch_sub(&a->pending, (long)m->len);
        wake_writer(a);
        break;
    case OUT_WS_CLOSE:
        ws_close_now(a, m->status, m->body, m->len);
        break;
    case OUT_WS_RESUME:
        if (a->ws_pause_held && !a->ws_ended) {
            a->ws_pause_held = 0;
            /* Messages the host held meanwhile may arrive in this call. */
            asgi_api->ws_pause(req, 0);
        }
        break;
    case OUT_FINISH:
        asgi_api->on_disconnect(req, NULL, NULL);
        if (m->status && !atomic_load(&a->gone) && !a->ws_accepted)
            asgi_api->respond(req, m->status, plain_500, 2, "Internal Server Error", 21);
        else if (m->code && a->ws_accepted)
            ws_close_now(a, m->code, NULL, 0);
        a->ws_closing = 1;
        outmsg_free(m);
        /* The host keeps a request open until the continuation that
         * releases its last hold has returned (abi.h), so this is safe
         * even when req carries the batch. */
        asgi_api->release(req);
        areq_unref(a); /* the loop side's reference */
        return;
    }
    outmsg_free(m);
}

void outmsg_free(struct outmsg *m)
{
    if (m->fd >= 0)
        close(m->fd);
    free(m);
}

/* A batch: everything the Python thread produced in one turn of its
 * loop, for any number of requests, in order. It rides on its first
 * message's request (held until that request's OUT_FINISH has run, which
 * is in this batch or a later one); each message acts on its own request.
 * One call_on_loop per batch means one wake-up of evicorn's loop. */
static void on_batch(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status; /* the carrier's; each message checks its own request */
    struct outmsg *m = ud;
    while (m) {
        struct outmsg *next = m->next;
        run_out(m);
        m = next;
    }
}

int outmsg_post_batch(struct outmsg *first)
{
    return asgi_api->call_on_loop(first->a->req, on_batch, first);
}

long long bridge_parse_length(const unsigned char *p, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

long long bridge_content_length(evicorn_request *req)
{
    evicorn_str v;
    if (asgi_api->header(req, "content-length", &v) != 0)
        return -1;
    return bridge_parse_length((const unsigned char *)v.ptr, v.len);
}

/* RFC 9110's tchar: "!#$%&'*+-.^_`|~", digits and letters. */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,  ['~'] = 1, ['0'] = 1,
    ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,  ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1,  ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1,  ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1,
    ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,  ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,  ['L'] = 1, ['M'] = 1,
    ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,  ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
};

int bridge_header_name_valid(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!tchar[p[i]])
            return 0;
    return 1;
}

int bridge_header_value_valid(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return 0;
    return 1;
}

/* The first body chunk of a small request arrived with it: hand both to
 * Python at once (one trip instead of two for a typical JSON POST). */
static void on_prefetch(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                        int status)
{
    (void)req;
    struct areq *a = ud;
    if (status != 0) {
        /* Over --limit-body (the host has answered 413), or the client left
         * before its body arrived: the app never runs. */
        asgi_api->on_disconnect(req, NULL, NULL);
        asgi_api->release(req);
        areq_unref(a);
        areq_unref(a);
        return;
    }
    struct inmsg *m = inmsg_new(a, IN_REQUEST, data, len);
    if (!m) {
        asgi_api->on_disconnect(req, NULL, NULL);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        asgi_api->release(req);
        areq_unref(a);
        areq_unref(a);
        return;
    }
    m->has_body = 1;
    m->more = more;
    inq_push(m);
}

/* Bodies up to this size are read before the app is called. */
#define PREFETCH_MAX (64 * 1024)

/* The catch-all route: every request no native plugin route took. */
static void handle(evicorn_request *req, void *data)
{
    (void)data;
    if (wsgi_mode) {
        wsgi_handle(req);
        return;
    }
    struct areq *a = calloc(1, sizeof *a);
    if (!a) {
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    a->req = req;
    atomic_init(&a->refs, 2); /* the loop side's, and the Python Req's */
    if (asgi_api->hold(req) < 0) {
        free(a);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    asgi_api->on_disconnect(req, on_gone, a);

    evicorn_str v;
    int chunked = asgi_api->header(req, "transfer-encoding", &v) == 0;
    long long length = bridge_content_length(req);
    int expect = asgi_api->header(req, "expect", &v) == 0;
    if (!chunked && length > 0 && length <= PREFETCH_MAX && !expect &&
        asgi_api->receive(req, on_prefetch, a) == 0)
        return;
    struct inmsg *m = inmsg_new(a, IN_REQUEST, NULL, 0);
    if (!m) {
        asgi_api->on_disconnect(req, NULL, NULL);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        asgi_api->release(req);
        free(a);
        return;
    }
    m->no_body = !chunked && length <= 0;
    inq_push(m);
}

/* The WebSocket catch-all route: every handshake no native plugin's
 * WebSocket route took. The app runs with a websocket scope and accepts,
 * closes (403) or answers with an HTTP response. */
static void handle_ws(evicorn_request *req, void *data)
{
    (void)data;
    if (wsgi_mode) {
        /* WSGI has no WebSockets: refused as the server refuses a
         * handshake at a path without a WebSocket route. */
        static const char body[] = "{\"detail\":\"No WebSocket route at this path\"}";
        static const evicorn_header json = {"content-type", 12, "application/json", 16};
        asgi_api->respond(req, 403, &json, 1, body, sizeof body - 1);
        return;
    }
    struct areq *a = calloc(1, sizeof *a);
    if (!a) {
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    a->req = req;
    a->ws = 1;
    atomic_init(&a->refs, 2); /* the loop side's, and the Python Req's */
    if (asgi_api->hold(req) < 0) {
        free(a);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    asgi_api->on_disconnect(req, on_ws_gone, a);
    struct inmsg *m = inmsg_new(a, IN_REQUEST, NULL, 0);
    if (!m) {
        asgi_api->on_disconnect(req, NULL, NULL);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        asgi_api->release(req);
        free(a);
        return;
    }
    inq_push(m);
}

/* ---- embedding CPython ---- */

/* The GIL state this (the loop) thread had before startup took it. */
static PyGILState_STATE loop_gil;
static PyObject *bridge_mod;
static int started, serving;
static int app_load_failed; /* startup failed in importing the app */

int asgi_app_load_failed(void)
{
    return app_load_failed;
}

void bridge_python_error(const char *what, char *err, size_t errlen)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *s = value ? PyObject_Str(value) : NULL;
    const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(err, errlen, "%s: %s: %s", what, type ? ((PyTypeObject *)type)->tp_name : "error",
             msg ? msg : "?");
    PyErr_Clear();
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

static int bridge_startup(void **state, char *err, size_t errlen)
{
    (void)state;
    if (started) {
        snprintf(err, errlen, "the ASGI bridge cannot be loaded twice in one process");
        return -1;
    }
    started = 1;
    if (!asgi_api->config("app")) {
        snprintf(err, errlen, "no APP (module:attribute) to serve");
        return -1;
    }
    const char *mq = asgi_api->config("ws_max_queue");
    if (mq) {
        char *end;
        errno = 0;
        long v = strtol(mq, &end, 10);
        if (errno == 0 && end != mq && *end == '\0' && v >= 1 && v <= INT_MAX)
            asgi_ws_max_queue = (int)v;
    }
    Q.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (Q.efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -1;
    }
    if (!Py_IsInitialized()) {
        snprintf(err, errlen, "the ASGI bridge runs only inside Python (python -m evicorn)");
        return -1;
    }
    /* The worker's loop thread takes the GIL for the start only. */
    loop_gil = PyGILState_Ensure();
    PyObject *mod = asgi_pymod_init();
    if (!mod || PyDict_SetItemString(PyImport_GetModuleDict(), "_evicorn", mod) < 0) {
        Py_XDECREF(mod);
        bridge_python_error("cannot register the _evicorn module", err, errlen);
        return -1;
    }
    Py_DECREF(mod);

    /* Threads Python starts (the asyncio thread, and the threads it starts
     * in turn) inherit this mask: signals only ever reach evicorn's loop
     * thread, as with the server's own thread pool. */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);

    int rc = -1;
    PyObject *code = Py_CompileString(bridge_py, "<evicorn>/plugins/asgi/bridge.py", Py_file_input);
    if (code)
        bridge_mod = PyImport_ExecCodeModuleEx("_evicorn_bridge", code, "<evicorn>/bridge.py");
    Py_XDECREF(code);
    if (!bridge_mod) {
        bridge_python_error("cannot load the bridge's Python code", err, errlen);
        goto out;
    }
    PyObject *res = PyObject_CallMethod(bridge_mod, "startup", NULL);
    if (!res) {
        bridge_python_error("ASGI bridge startup failed", err, errlen);
        goto out;
    }
    if (res == Py_None) {
        rc = 0;
    } else {
        PyObject *lf = PyObject_GetAttrString(bridge_mod, "load_failed");
        app_load_failed = lf && PyObject_IsTrue(lf) == 1;
        Py_XDECREF(lf);
        PyErr_Clear();
        const char *msg = PyUnicode_Check(res) ? PyUnicode_AsUTF8(res) : NULL;
        snprintf(err, errlen, "%s", msg ? msg : "startup failed");
        PyErr_Clear();
    }
    Py_DECREF(res);
out:
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (rc == 0) { /* From here on, only the Python thread runs Python. */
        serving = 1;
        PyGILState_Release(loop_gil);
    }
    /* On failure this thread keeps the GIL: the worker is about to exit and
     * nothing may run Python in the meantime. */
    return rc;
}

static void bridge_shutdown(void *state)
{
    (void)state;
    if (!serving)
        return;
    serving = 0;
    PyGILState_Ensure();
    PyObject *res = PyObject_CallMethod(bridge_mod, "shutdown", NULL);
    if (!res) {
        char err[512];
        bridge_python_error("ASGI bridge shutdown failed", err, sizeof err);
        asgi_log(LOG_ERROR, "%s", err);
    }
    Py_XDECREF(res);
    /* The interpreter is not finalised: finalisation joins threads the app
     * may have left running, which could hang the exit. This thread keeps
     * the GIL, so no Python code runs while the worker exits. */
}

/* ---- the plugin ---- */

static const evicorn_route routes[] = {
    {sizeof(evicorn_route), "*", "/{path:path}", EVICORN_ASYNC, handle, NULL},
    {sizeof(evicorn_route), "GET", "/{path:path}", EVICORN_ASYNC | EVICORN_WEBSOCKET, handle_ws,
     NULL},
};

static const evicorn_plugin plugin = {
    .size = sizeof(evicorn_plugin),
    .abi_major = EVICORN_ABI_MAJOR,
    .abi_minor = 2, /* call_on_loop and config (1.1), WebSocket (1.2); send_file
                       (1.5) is used when the host has it */
    .name = "asgi",
    .version = "1.0.0",
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .route_size = sizeof(evicorn_route),
    .startup = bridge_startup,
    .shutdown = bridge_shutdown,
};

const evicorn_plugin *asgi_bridge_entry(const evicorn_host *host)
{
    if (!host || host->size < offsetof(evicorn_host, plugin_file) || !host->api)
        return NULL;
    const evicorn_api *a = host->api;
    if (host->abi_major != EVICORN_ABI_MAJOR || host->abi_minor < 2 ||
        !EVICORN_API_HAS(a, call_on_loop) || !EVICORN_API_HAS(a, config) ||
        !EVICORN_API_HAS(a, ws_accept) || !EVICORN_API_HAS(a, ws_send) ||
        !EVICORN_API_HAS(a, ws_close) || !EVICORN_API_HAS(a, ws_pause) ||
        !EVICORN_API_HAS(a, ws_subprotocol_at)) {
        if (a->log)
            a->log(NULL, LOG_ERROR,
                   "the ASGI bridge needs evicorn ABI 1.2 or newer (call_on_loop, config, "
                   "WebSocket)");
        return NULL;
    }
    asgi_api = a;
    return &plugin;
}
