/* _evicorn: the Python thread's side of the ASGI bridge, as an extension
 * module compiled into asgi.so.
 *
 * drain() runs on the asyncio loop (loop.add_reader on the bridge's
 * eventfd): it takes every message evicorn's loop queued and turns new
 * requests into Req objects and tasks. A Req builds the ASGI scope straight
 * from the host's request (the getters may be called from any thread while
 * the request is held) and implements receive() and send() in C: send()
 * validates the message as uvicorn does, copies it and posts it to
 * evicorn's loop with asgi_api->call_on_loop, and returns an already-completed
 * awaitable unless the client is slow (backpressure). A Req for a
 * WebSocket handshake speaks ASGI's websocket messages instead (see "----
 * WebSocket ----"). Everything here runs with the GIL, on the asyncio
 * thread. */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- module state (one interpreter per process) ---- */

static PyObject *ClientDisconnected;
static PyObject *g_run;           /* bridge.run: coroutine function run(req) */
static PyObject *g_create_task;   /* loop.create_task */
static PyObject *g_create_future; /* loop.create_future */
static PyObject *g_call_soon;     /* loop.call_soon */
static PyObject *g_state;         /* the lifespan state dict */
static PyObject *g_flush;         /* _evicorn._flush */
static PyObject *g_starts;        /* Reqs whose response start is not posted yet */
static PyObject *g_asgi;          /* {"version": "3.0", "spec_version": "2.4"} template */
static PyObject *g_server;        /* (host, port), once known */
static PyObject *g_root_path;
static PyObject *g_last_client; /* the last client host string, reused when equal */
/* The host can send files (ABI 1.5 send_file): HTTP scopes offer
 * http.response.pathsend and http.response.zerocopysend. */
static int g_files;

/* Interned strings. */
static PyObject *s_type, *s_status, *s_headers, *s_body, *s_more_body, *s_trailers, *s_asgi,
    *s_http_version, *s_method, *s_scheme, *s_path, *s_raw_path, *s_query_string, *s_root_path,
    *s_client, *s_server, *s_state, *s_extensions, *s_http, *s_https, *s_v11, *s_v10,
    *s_http_request, *s_http_disconnect, *s_set_result, *s_set_exception, *s_done;
/* Files */
static PyObject *s_file, *s_offset, *s_count, *s_pathsend, *s_zerocopysend;
/* WebSocket */
static PyObject *s_websocket, *s_ws, *s_wss, *s_subprotocols, *s_subprotocol, *s_code, *s_reason,
    *s_text, *s_bytes, *s_ws_connect, *s_ws_receive, *s_ws_disconnect, *s_ws_http_response,
    *s_future_blocking;
static PyObject *m_get, *m_post, *m_head, *m_put, *m_delete, *m_patch, *m_options;

/* ---- an already-completed awaitable ---- */

typedef struct {
    PyObject_HEAD PyObject *value; /* the await's result; NULL for None */
} ReadyObject;

static void Ready_dealloc(ReadyObject *self)
{
    Py_XDECREF(self->value);
    PyObject_Free(self);
}

static PyObject *Ready_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *Ready_next(ReadyObject *self)
{
    PyObject *v = self->value;
    if (!v)
        return NULL; /* StopIteration(None) */
    self->value = NULL;
    /* As _PyGen_SetStopIterationValue: a tuple or an exception must be
     * wrapped, anything else may ride as the exception's value. */
    if (PyTuple_Check(v) || PyExceptionInstance_Check(v)) {
        PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, v);
        if (e) {
            PyErr_SetObject(PyExc_StopIteration, e);
            Py_DECREF(e);
        }
    } else {
        PyErr_SetObject(PyExc_StopIteration, v);
    }
    Py_DECREF(v);
    return NULL;
}

static PyAsyncMethods Ready_async = {.am_await = Ready_await};

static PyTypeObject ReadyType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_evicorn.Ready",
    .tp_basicsize = sizeof(ReadyObject),
    .tp_dealloc = (destructor)Ready_dealloc,
    .tp_as_async = &Ready_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Ready_next,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An awaitable whose result is already known.",
};

static ReadyObject *ready_none;

/* A new awaitable returning v (stolen); NULL v: an error is set. */
static PyObject *ready(PyObject *v)
{
    if (!v)
        return NULL;
    ReadyObject *r = PyObject_New(ReadyObject, &ReadyType);
    if (!r) {
        Py_DECREF(v);
        return NULL;
    }
    r->value = v;
    return (PyObject *)r;
}

static PyObject *ready_nothing(void)
{
    Py_INCREF(ready_none);
    return (PyObject *)ready_none;
}

/* ---- messages ---- */

static PyObject *disconnect_message(void)
{
    PyObject *d = PyDict_New();
    if (d && PyDict_SetItem(d, s_type, s_http_disconnect) < 0)
        Py_CLEAR(d);
    return d;
}

static PyObject *request_message(const char *data, size_t len, int more)
{
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    PyObject *b = PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
    if (!b || PyDict_SetItem(d, s_type, s_http_request) < 0 || PyDict_SetItem(d, s_body, b) < 0 ||
        PyDict_SetItem(d, s_more_body, more ? Py_True : Py_False) < 0) {
        Py_XDECREF(b);
        Py_DECREF(d);
        return NULL;
    }
    Py_DECREF(b);
    return d;
}

/* ---- Req ---- */

enum { R_NONE, R_START_PENDING, R_STARTED, R_DONE };

typedef struct {
    PyObject_HEAD struct areq *a;
    PyObject *pending;        /* list: received messages no receive() has taken yet */
    Py_ssize_t pending_first; /* WebSocket: pending's first message not yet taken */
    PyObject *waiter;         /* receive()'s future */
    PyObject *drain;          /* send()'s future while output is full */
    /* the response start, until it is posted */
    int start_status;
    size_t start_n;
    size_t start_bytes;
    char *start_buf;  /* start_n (name_len, value_len) pairs, then the bytes */
    long long length; /* the app's Content-Length, or -1 */
    long long sent;
    unsigned char resp;
    unsigned char body_done;   /* the app has been given the whole body */
    unsigned char receiving;   /* an OUT_RECEIVE is outstanding */
    unsigned char waiter_body; /* the waiter expects body, not just a disconnect */
    unsigned char gone;        /* the client disconnected */
    unsigned char finished;    /* OUT_FINISH posted: the request is no longer ours */
    unsigned char is_head;     /* a HEAD request */
    /* WebSocket: the states of uvicorn's websockets implementation */
    unsigned char is_ws;
    unsigned char ws_connect_sent; /* receive() has returned websocket.connect */
    unsigned char ws_started;      /* accept, close or a response was sent */
    unsigned char ws_accepted;
    unsigned char ws_rejected; /* close before accept (403), or websocket.http.response */
    unsigned char ws_closed;   /* the app sent close, or received the disconnect */
    unsigned char ws_lost;     /* the connection ended before the app accepted */
} ReqObject;

static PyTypeObject ReqType;

static int is_gone(ReqObject *self)
{
    if (!self->gone && atomic_load(&self->a->gone))
        self->gone = 1;
    return self->gone;
}

/* Outgoing messages wait here until the end of this turn of the asyncio
 * loop (mod_flush, scheduled with call_soon), then go to evicorn's loop as
 * one batch: one wake-up for all the responses of a turn. */
static struct outmsg *out_head, **out_tail = &out_head;
static int flush_scheduled;

static int schedule_flush(void)
{
    if (flush_scheduled)
        return 0;
    PyObject *h = PyObject_CallOneArg(g_call_soon, g_flush);
    if (!h)
        return -1;
    Py_DECREF(h);
    flush_scheduled = 1;
    return 0;
}

static int post(struct outmsg *m)
{
    if (schedule_flush() < 0) {
        outmsg_free(m);
        return -1;
    }
    m->next = NULL;
    *out_tail = m;
    out_tail = &m->next;
    return 0;
}

static struct outmsg *outmsg_alloc(ReqObject *self, int kind, size_t extra)
{
    struct outmsg *m = malloc(sizeof *m + extra);
    if (!m) {
        PyErr_NoMemory();
        return NULL;
    }
    memset(m, 0, sizeof *m);
    m->a = self->a;
    m->kind = kind;
    m->fd = -1;
    return m;
}

/* Resolves fut with v (fut.set_result / set_exception by `how`); 1 if
 * it was waiting, 0 if it was already done (cancelled). */
static int resolve(PyObject *fut, PyObject *how, PyObject *v)
{
    PyObject *done = PyObject_CallMethodNoArgs(fut, s_done);
    if (!done)
        return -1;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done)
        return 0;
    PyObject *r = PyObject_CallMethodOneArg(fut, how, v);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 1;
}

/* Hands msg (stolen) to a waiting receive(), or keeps it for the next. */
static int deliver(ReqObject *self, PyObject *msg)
{
    if (!msg)
        return -1;
    if (self->waiter) {
        PyObject *w = self->waiter;
        self->waiter = NULL;
        int rc = resolve(w, s_set_result, msg);
        Py_DECREF(w);
        if (rc != 0) {
            Py_DECREF(msg);
            return rc < 0 ? -1 : 0;
        }
    }
    if (!self->pending && !(self->pending = PyList_New(0))) {
        Py_DECREF(msg);
        return -1;
    }
    int rc = PyList_Append(self->pending, msg);
    Py_DECREF(msg);
    return rc;
}

/* After the response or on a disconnect, a receive() waiting for the
 * disconnect gets it. */
static int wake_disconnect_waiter(ReqObject *self)
{
    if (!self->waiter || (self->waiter_body && !self->gone))
        return 0;
    PyObject *w = self->waiter;
    self->waiter = NULL;
    PyObject *msg = disconnect_message();
    int rc = msg ? resolve(w, s_set_result, msg) : -1;
    Py_XDECREF(msg);
    Py_DECREF(w);
    return rc < 0 ? -1 : 0;
}

static void Req_dealloc(ReqObject *self)
{
    if (self->a) {
        self->a->py = NULL;
        areq_unref(self->a);
    }
    Py_XDECREF(self->pending);
    Py_XDECREF(self->waiter);
    Py_XDECREF(self->drain);
    free(self->start_buf);
    PyObject_Free(self);
}

/* ---- the scope ---- */

static PyObject *str_latin1(evicorn_str s)
{
    return PyUnicode_DecodeLatin1(s.ptr, (Py_ssize_t)s.len, NULL);
}

static PyObject *method_str(evicorn_str m)
{
    PyObject *known = NULL;
    switch (m.len) {
    case 3:
        known = memcmp(m.ptr, "GET", 3) == 0 ? m_get : memcmp(m.ptr, "PUT", 3) == 0 ? m_put : NULL;
        break;
    case 4:
        known = memcmp(m.ptr, "POST", 4) == 0   ? m_post
                : memcmp(m.ptr, "HEAD", 4) == 0 ? m_head
                                                : NULL;
        break;
    case 5:
        known = memcmp(m.ptr, "PATCH", 5) == 0 ? m_patch : NULL;
        break;
    case 6:
        known = memcmp(m.ptr, "DELETE", 6) == 0 ? m_delete : NULL;
        break;
    case 7:
        known = memcmp(m.ptr, "OPTIONS", 7) == 0 ? m_options : NULL;
        break;
    }
    if (known) {
        Py_INCREF(known);
        return known;
    }
    return str_latin1(m);
}

static PyObject *client_host_str(evicorn_str h)
{
    if (g_last_client && PyUnicode_GET_LENGTH(g_last_client) == (Py_ssize_t)h.len &&
        PyUnicode_KIND(g_last_client) == PyUnicode_1BYTE_KIND &&
        memcmp(PyUnicode_DATA(g_last_client), h.ptr, h.len) == 0) {
        Py_INCREF(g_last_client);
        return g_last_client;
    }
    PyObject *s = str_latin1(h);
    if (s) {
        Py_XSETREF(g_last_client, s);
        Py_INCREF(s);
    }
    return s;
}

static int set_steal(PyObject *d, PyObject *k, PyObject *v)
{
    if (!v)
        return -1;
    int rc = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return rc;
}

static PyObject *build_headers(evicorn_request *req)
{
    size_t n = asgi_api->header_count(req);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        evicorn_header h;
        if (asgi_api->header_at(req, i, &h) < 0) {
            h.name = h.value = "";
            h.name_len = h.value_len = 0;
        }
        PyObject *name = PyBytes_FromStringAndSize(h.name, (Py_ssize_t)h.name_len);
        PyObject *value = name ? PyBytes_FromStringAndSize(h.value, (Py_ssize_t)h.value_len) : NULL;
        PyObject *pair = value ? PyTuple_New(2) : NULL;
        if (!pair) {
            Py_XDECREF(name);
            Py_XDECREF(value);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(pair, 0, name);
        PyTuple_SET_ITEM(pair, 1, value);
        PyList_SET_ITEM(list, (Py_ssize_t)i, pair);
    }
    return list;
}

/* (host, port): a new tuple; host is stolen. */
static PyObject *pair(PyObject *host, int port)
{
    PyObject *p = host ? PyLong_FromLong(port) : NULL;
    PyObject *t = p ? PyTuple_New(2) : NULL;
    if (!t) {
        Py_XDECREF(host);
        Py_XDECREF(p);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, host);
    PyTuple_SET_ITEM(t, 1, p);
    return t;
}

/* The subprotocols the client offered, in order. */
static PyObject *subprotocols(evicorn_request *req)
{
    PyObject *list = PyList_New(0);
    evicorn_str v;
    for (size_t i = 0; list && asgi_api->ws_subprotocol_at(req, i, &v) == 0; i++) {
        PyObject *p = str_latin1(v);
        if (!p || PyList_Append(list, p) < 0)
            Py_CLEAR(list);
        Py_XDECREF(p);
    }
    return list;
}

/* The HTTP scope, or the websocket scope for a WebSocket handshake (no
 * method; scheme ws or wss; subprotocols; the websocket.http.response
 * extension). */
static PyObject *Req_scope(ReqObject *self, PyObject *unused)
{
    (void)unused;
    if (self->finished) {
        PyErr_SetString(PyExc_RuntimeError, "the request is finished");
        return NULL;
    }
    evicorn_request *req = self->a->req;
    int ws = self->is_ws;
    PyObject *d = _PyDict_NewPresized(15); /* no resizing on the way */
    if (!d)
        return NULL;
    if (PyDict_SetItem(d, s_type, ws ? s_websocket : s_http) < 0 ||
        set_steal(d, s_asgi, PyDict_Copy(g_asgi)) < 0)
        goto fail;
    evicorn_str v = asgi_api->http_version(req);
    if (PyDict_SetItem(d, s_http_version, v.len == 3 && v.ptr[2] == '0' ? s_v10 : s_v11) < 0)
        goto fail;
    if (!ws && set_steal(d, s_method, method_str(asgi_api->method(req))) < 0)
        goto fail;
    v = asgi_api->scheme(req);
    int tls = v.len == 5 && memcmp(v.ptr, "https", 5) == 0;
    if (PyDict_SetItem(d, s_scheme, ws ? (tls ? s_wss : s_ws) : (tls ? s_https : s_http)) < 0)
        goto fail;
    v = asgi_api->path(req);
    if (set_steal(d, s_path, PyUnicode_DecodeUTF8(v.ptr, (Py_ssize_t)v.len, "replace")) < 0)
        goto fail;
    v = asgi_api->raw_path(req);
    if (set_steal(d, s_raw_path, PyBytes_FromStringAndSize(v.ptr, (Py_ssize_t)v.len)) < 0)
        goto fail;
    v = asgi_api->query_string(req);
    if (set_steal(d, s_query_string, PyBytes_FromStringAndSize(v.ptr, (Py_ssize_t)v.len)) < 0)
        goto fail;
    v = asgi_api->root_path(req);
    if (!g_root_path || PyUnicode_GET_LENGTH(g_root_path) != (Py_ssize_t)v.len) {
        PyObject *rp = PyUnicode_DecodeUTF8(v.ptr, (Py_ssize_t)v.len, "replace");
        if (!rp)
            goto fail;
        Py_XSETREF(g_root_path, rp);
    }
    if (PyDict_SetItem(d, s_root_path, g_root_path) < 0)
        goto fail;
    if (set_steal(d, s_headers, build_headers(req)) < 0)
        goto fail;
    evicorn_str ch = asgi_api->client_host(req);
    if (ch.len == 0) { /* a unix socket: no client address */
        if (PyDict_SetItem(d, s_client, Py_None) < 0)
            goto fail;
    } else if (set_steal(d, s_client, pair(client_host_str(ch), asgi_api->client_port(req))) < 0) {
        goto fail;
    }
    if (!g_server) {
        evicorn_str sh = asgi_api->server_host(req);
        int sp = asgi_api->server_port(req);
        g_server = sp ? Py_BuildValue("(Ni)", str_latin1(sh), sp)
                      : Py_BuildValue("(NO)", str_latin1(sh), Py_None);
        if (!g_server)
            goto fail;
    }
    if (PyDict_SetItem(d, s_server, g_server) < 0)
        goto fail;
    if (set_steal(d, s_state, g_state ? PyDict_Copy(g_state) : PyDict_New()) < 0)
        goto fail;
    if (ws) {
        if (set_steal(d, s_subprotocols, subprotocols(req)) < 0 ||
            set_steal(d, s_extensions, Py_BuildValue("{O:{}}", s_ws_http_response)) < 0)
            goto fail;
    } else if (set_steal(d, s_extensions,
                         g_files ? Py_BuildValue("{O:{},O:{}}", s_pathsend, s_zerocopysend)
                                 : PyDict_New()) < 0) {
        goto fail;
    }
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

/* The future in *slot (a new reference), created when there is none. A
 * done one is replaced: an await that was cancelled (Starlette's
 * is_disconnected() cancels its receive() at once) leaves it behind. */
static PyObject *waiting_future(PyObject **slot)
{
    if (*slot) {
        PyObject *done = PyObject_CallMethodNoArgs(*slot, s_done);
        int is_done = done ? PyObject_IsTrue(done) : -1;
        Py_XDECREF(done);
        if (is_done < 0)
            return NULL;
        if (is_done)
            Py_CLEAR(*slot);
    }
    if (!*slot && !(*slot = PyObject_CallNoArgs(g_create_future)))
        return NULL;
    Py_INCREF(*slot);
    return *slot;
}

/* ---- receive ---- */

static PyObject *ws_receive(ReqObject *self);

static PyObject *Req_receive(ReqObject *self, PyObject *unused)
{
    (void)unused;
    if (self->is_ws)
        return ws_receive(self);
    /* As uvicorn: once the response is complete (or the client gone),
     * only the disconnect is left, even if body was never read. */
    if (is_gone(self) || self->finished || self->resp == R_DONE)
        return ready(disconnect_message());
    if (self->pending && PyList_GET_SIZE(self->pending) > 0) {
        PyObject *msg = PyList_GET_ITEM(self->pending, 0);
        Py_INCREF(msg);
        if (PyList_SetSlice(self->pending, 0, 1, NULL) < 0) {
            Py_DECREF(msg);
            return NULL;
        }
        return ready(msg);
    }
    if (!self->body_done && !self->receiving) {
        /* Flow control: the host is asked for the next chunk only now. */
        struct outmsg *m = outmsg_alloc(self, OUT_RECEIVE, 0);
        if (!m || post(m) < 0)
            return NULL;
        self->receiving = 1;
    }
    self->waiter_body = !self->body_done;
    return waiting_future(&self->waiter);
}

/* ---- send ---- */

/* A bytes-like view of o; release with PyBuffer_Release when view->obj. */
static int get_bytes(PyObject *o, Py_buffer *view, const char *what)
{
    if (PyBytes_CheckExact(o)) {
        view->obj = NULL;
        view->buf = PyBytes_AS_STRING(o);
        view->len = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

struct hdr_view {
    Py_buffer name, value;
};

static void release_views(struct hdr_view *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].name.obj)
            PyBuffer_Release(&v[i].name);
        if (v[i].value.obj)
            PyBuffer_Release(&v[i].value);
    }
}

/* An app's headers, checked as uvicorn checks them and copied: n pairs
 * of lengths, then the names (lower-cased, as uvicorn writes them) and
 * values. *length: the Content-Length among them, or -1. */
struct hdrs {
    char *buf;
    size_t n, bytes;
    long long length;
};

static int parse_headers(PyObject *headers, struct hdrs *out)
{
    PyObject *seq = headers ? PySequence_Fast(headers, "'headers' must be an iterable") : NULL;
    if (headers && !seq)
        return -1;
    size_t n = seq ? (size_t)PySequence_Fast_GET_SIZE(seq) : 0;
    struct hdr_view stack[32], *views = stack;
    if (n > 32 && !(views = PyMem_Malloc(n * sizeof *views))) {
        Py_XDECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    memset(views, 0, (n ? n : 1) * sizeof *views);
    size_t bytes = 0;
    long long length = -1;
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i);
        PyObject *name, *value;
        if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2) {
            name = PyTuple_GET_ITEM(item, 0);
            value = PyTuple_GET_ITEM(item, 1);
        } else if (PyList_Check(item) && PyList_GET_SIZE(item) == 2) {
            name = PyList_GET_ITEM(item, 0);
            value = PyList_GET_ITEM(item, 1);
        } else {
            PyErr_SetString(PyExc_TypeError, "each header must be a [name, value] pair");
            goto out;
        }
        if (get_bytes(name, &views[i].name, "header name") < 0 ||
            get_bytes(value, &views[i].value, "header value") < 0)
            goto out;
        const unsigned char *np = views[i].name.buf, *vp = views[i].value.buf;
        Py_ssize_t nl = views[i].name.len, vl = views[i].value.len;
        if (!bridge_header_name_valid(np, (size_t)nl)) {
            PyErr_SetString(PyExc_RuntimeError, "Invalid HTTP header name.");
            goto out;
        }
        if (!bridge_header_value_valid(vp, (size_t)vl)) {
            PyErr_SetString(PyExc_RuntimeError, "Invalid HTTP header value.");
            goto out;
        }
        if (nl == 14 && strncasecmp((const char *)np, "content-length", 14) == 0) {
            long long v = bridge_parse_length(vp, (size_t)vl);
            if (v < 0) {
                PyErr_SetString(PyExc_RuntimeError, "Invalid Content-Length header.");
                goto out;
            }
            length = v;
        }
        bytes += (size_t)nl + (size_t)vl;
    }
    char *buf = malloc(n * 2 * sizeof(size_t) + bytes + 1);
    if (!buf) {
        PyErr_NoMemory();
        goto out;
    }
    size_t *lens = (size_t *)buf;
    char *dst = buf + n * 2 * sizeof(size_t);
    for (size_t i = 0; i < n; i++) {
        size_t nl = (size_t)views[i].name.len, vl = (size_t)views[i].value.len;
        lens[2 * i] = nl;
        lens[2 * i + 1] = vl;
        const char *src = views[i].name.buf;
        for (size_t k = 0; k < nl; k++)
            dst[k] = (src[k] >= 'A' && src[k] <= 'Z') ? (char)(src[k] + 32) : src[k];
        dst += nl;
        memcpy(dst, views[i].value.buf, vl);
        dst += vl;
    }
    *out = (struct hdrs){buf, n, bytes, length};
    rc = 0;
out:
    release_views(views, n);
    if (views != stack)
        PyMem_Free(views);
    Py_XDECREF(seq);
    return rc;
}

/* Lays parsed headers out as evicorn_header entries at h, their bytes at
 * p; returns the end of the bytes. */
static char *place_headers(const struct hdrs *hs, evicorn_header *h, char *p)
{
    const size_t *lens = (const size_t *)hs->buf;
    memcpy(p, hs->buf + hs->n * 2 * sizeof(size_t), hs->bytes);
    for (size_t i = 0; i < hs->n; i++) {
        h[i].name = p;
        h[i].name_len = lens[2 * i];
        p += lens[2 * i];
        h[i].value = p;
        h[i].value_len = lens[2 * i + 1];
        p += lens[2 * i + 1];
    }
    return p;
}

static int parse_start(ReqObject *self, PyObject *msg)
{
    PyObject *status = PyDict_GetItemWithError(msg, s_status);
    if (!status) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "status");
        return -1;
    }
    long code = PyLong_AsLong(status);
    if (code == -1 && PyErr_Occurred())
        return -1;
    if (code < 200 || code > 999) {
        PyErr_Format(PyExc_RuntimeError, "Invalid HTTP status code %ld in 'http.response.start'.",
                     code);
        return -1;
    }
    PyObject *headers = PyDict_GetItemWithError(msg, s_headers);
    if (!headers && PyErr_Occurred())
        return -1;
    struct hdrs hs;
    if (parse_headers(headers, &hs) < 0)
        return -1;
    free(self->start_buf);
    self->start_buf = hs.buf;
    self->start_n = hs.n;
    self->start_bytes = hs.bytes;
    self->start_status = (int)code;
    self->length = hs.length;
    return 0;
}

/* An OUT_SEND carrying the pending start (if any) and body bytes. */
static struct outmsg *build_send(ReqObject *self, const char *body, size_t len, int more)
{
    int with_start = self->resp == R_START_PENDING;
    size_t hn = with_start ? self->start_n : 0, hb = with_start ? self->start_bytes : 0;
    struct outmsg *m = outmsg_alloc(self, OUT_SEND, hn * sizeof(evicorn_header) + hb + len);
    if (!m)
        return NULL;
    evicorn_header *h = (evicorn_header *)m->blob;
    char *p = m->blob + hn * sizeof(evicorn_header);
    if (with_start) {
        struct hdrs hs = {self->start_buf, hn, hb, -1};
        p = place_headers(&hs, h, p);
        m->status = self->start_status;
        m->headers = h;
        m->nheaders = hn;
        free(self->start_buf);
        self->start_buf = NULL;
        self->resp = R_STARTED;
    }
    if (len)
        memcpy(p, body, len);
    m->body = p;
    m->len = len;
    m->more = more;
    return m;
}

/* Posts the pending response start on its own (end of a loop iteration
 * in which the app sent no body after it). */
static int flush_start(ReqObject *self)
{
    if (self->resp != R_START_PENDING || self->finished || is_gone(self))
        return 0;
    struct outmsg *m = build_send(self, NULL, 0, 1);
    return m ? post(m) : -1;
}

/* The end of a turn: response starts the app sent without a body yet go
 * out on their own, then the whole batch is posted. */
static PyObject *mod_flush(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    PyObject *list = g_starts;
    g_starts = NULL;
    if (list) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
            if (flush_start((ReqObject *)PyList_GET_ITEM(list, i)) < 0)
                PyErr_WriteUnraisable(NULL);
        Py_DECREF(list);
    }
    struct outmsg *batch = out_head;
    out_head = NULL;
    out_tail = &out_head;
    flush_scheduled = 0;
    if (batch) {
        int rc = outmsg_post_batch(batch);
        if (rc < 0) {
            /* Nothing else can reach evicorn's loop: the requests in the
             * batch stay held (a leak), but the process goes on. */
            asgi_log(LOG_CRITICAL, "cannot reach the event loop (error %d)", rc);
            while (batch) {
                struct outmsg *next = batch->next;
                outmsg_free(batch);
                batch = next;
            }
        }
    }
    Py_RETURN_NONE;
}

static int schedule_start(ReqObject *self)
{
    if (!g_starts && !(g_starts = PyList_New(0)))
        return -1;
    if (schedule_flush() < 0)
        return -1;
    return PyList_Append(g_starts, (PyObject *)self);
}

/* What send() returns after posting output: done, unless the connection's
 * output is full or too much is still on its way to the loop; then a
 * future that the loop's writable event resolves. */
static PyObject *backpressure(ReqObject *self)
{
    struct areq *a = self->a;
    if (!atomic_load(&a->paused) && atomic_load(&a->pending) <= ASGI_SEND_HIGH)
        return ready_nothing();
    atomic_store(&a->waiting, 1);
    if (!atomic_load(&a->gone) && !atomic_load(&a->paused) &&
        atomic_load(&a->pending) <= ASGI_SEND_LOW && atomic_exchange(&a->waiting, 0))
        return ready_nothing();
    return waiting_future(&self->drain);
}

/* uvicorn's checks of len more body bytes against the app's
 * Content-Length. A HEAD response's Content-Length describes a body that
 * is not sent: neither shorter nor longer is an error (as uvicorn). */
static int check_length(ReqObject *self, long long len, int more)
{
    if (self->length < 0 || self->is_head)
        return 0;
    if (self->sent + len > self->length) {
        PyErr_SetString(PyExc_RuntimeError, "Response content longer than Content-Length");
        return -1;
    }
    if (!more && self->sent + len < self->length) {
        PyErr_SetString(PyExc_RuntimeError, "Response content shorter than Content-Length");
        return -1;
    }
    return 0;
}

/* len body bytes are on their way: the response's state, and what send()
 * returns. */
static PyObject *body_posted(ReqObject *self, long long len, int more)
{
    self->sent += len;
    if (!more) {
        self->resp = R_DONE;
        if (!self->is_ws && wake_disconnect_waiter(self) < 0)
            return NULL;
        return ready_nothing();
    }
    return backpressure(self);
}

/* Posts len body bytes (copied), after the pending start if any. */
static PyObject *post_body(ReqObject *self, const char *body, size_t len, int more)
{
    if (len == 0 && more && self->resp != R_START_PENDING)
        return ready_nothing();
    struct outmsg *m = build_send(self, body, len, more);
    if (!m)
        return NULL;
    struct areq *a = self->a;
    atomic_fetch_add(&a->pending, (long)len);
    if (post(m) < 0) {
        atomic_fetch_sub(&a->pending, (long)len);
        return NULL;
    }
    return body_posted(self, (long long)len, more);
}

static PyObject *send_body(ReqObject *self, PyObject *msg)
{
    PyObject *body = PyDict_GetItemWithError(msg, s_body);
    if (!body && PyErr_Occurred())
        return NULL;
    PyObject *more_o = PyDict_GetItemWithError(msg, s_more_body);
    if (!more_o && PyErr_Occurred())
        return NULL;
    int more = more_o ? PyObject_IsTrue(more_o) : 0;
    if (more < 0)
        return NULL;
    Py_buffer view = {.obj = NULL, .buf = "", .len = 0};
    if (body && get_bytes(body, &view, "'body'") < 0)
        return NULL;
    PyObject *result = NULL;
    if (check_length(self, (long long)view.len, more) == 0)
        result = post_body(self, view.buf, (size_t)view.len, more);
    if (view.obj)
        PyBuffer_Release(&view);
    return result;
}

/* ---- files: http.response.pathsend and http.response.zerocopysend ----
 *
 * Offered when the host has send_file (ABI 1.5). send() opens the path
 * (pathsend) or duplicates the app's descriptor (zerocopysend, so the app
 * may close its file as soon as send() returns) here, on the Python
 * thread: evicorn's loop never waits for the disk's metadata, and a file
 * that cannot be opened raises in the app, as Python's open() would. The
 * loop thread then hands the descriptor to the host, which sends the
 * bytes with sendfile(2): none of them passes through Python. */

/* Posts count bytes of fd (taken) from offset, after the pending start. */
static PyObject *post_file(ReqObject *self, int fd, int64_t offset, int64_t count, int more)
{
    if (check_length(self, count, more) < 0) {
        close(fd);
        return NULL;
    }
    if (self->is_head || count == 0) {
        close(fd); /* a HEAD response has no body: nothing to read */
        return post_body(self, NULL, 0, more);
    }
    struct outmsg *m = build_send(self, NULL, 0, more);
    if (!m) {
        close(fd);
        return NULL;
    }
    m->kind = OUT_SEND_FILE;
    m->fd = fd;
    m->offset = offset;
    m->count = count;
    if (post(m) < 0)
        return NULL;
    return body_posted(self, count, more);
}

/* {"type": "http.response.pathsend", "path": str}: the whole file is the
 * body, the rest of it. A relative path is taken from the working
 * directory, where the app's own os.stat() found it (ASGI asks for an
 * absolute path; Starlette sends FileResponse's path as given). */
static PyObject *send_pathsend(ReqObject *self, PyObject *msg)
{
    PyObject *path = PyDict_GetItemWithError(msg, s_path);
    if (!path) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "path");
        return NULL;
    }
    PyObject *fs = NULL;
    if (!PyUnicode_FSConverter(path, &fs))
        return NULL;
    if (self->is_head) {
        Py_DECREF(fs);
        return post_body(self, NULL, 0, 0);
    }
    const char *name = PyBytes_AS_STRING(fs);
    struct stat st;
    int fd, err = 0;
    Py_BEGIN_ALLOW_THREADS
        /* O_NONBLOCK: a FIFO at that path must not hang the thread in open(). */
        fd = open(name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0)
        err = errno;
    Py_END_ALLOW_THREADS Py_DECREF(fs);
    if (err) {
        if (fd >= 0)
            close(fd);
        errno = err;
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return PyErr_Format(PyExc_RuntimeError,
                            "'http.response.pathsend': %R is not a regular file", path);
    }
    (void)fcntl(fd, F_SETFL, 0); /* a regular file: back to blocking reads */
    return post_file(self, fd, 0, (int64_t)st.st_size, 0);
}

/* An optional non-negative integer of msg, or -1 when absent or None. */
static int get_position(PyObject *msg, PyObject *key, int64_t *out)
{
    *out = -1;
    PyObject *o = PyDict_GetItemWithError(msg, key);
    if (!o)
        return PyErr_Occurred() ? -1 : 0;
    if (o == Py_None)
        return 0;
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "'%U' must not be negative", key);
        return -1;
    }
    *out = v;
    return 0;
}

/* {"type": "http.response.zerocopysend", "file": an object with fileno(),
 * "offset", "count", "more_body"}: count bytes (or to the end) from
 * offset, or from the file's position, which then moves past them as
 * with sendfile(2) without an offset. The app keeps (and closes) its
 * file. */
static PyObject *send_zerocopy(ReqObject *self, PyObject *msg)
{
    PyObject *file = PyDict_GetItemWithError(msg, s_file);
    if (!file) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "file");
        return NULL;
    }
    PyObject *more_o = PyDict_GetItemWithError(msg, s_more_body);
    if (!more_o && PyErr_Occurred())
        return NULL;
    int more = more_o ? PyObject_IsTrue(more_o) : 0;
    int64_t offset, count;
    if (more < 0 || get_position(msg, s_offset, &offset) < 0 ||
        get_position(msg, s_count, &count) < 0)
        return NULL;
    int app_fd = PyObject_AsFileDescriptor(file);
    if (app_fd < 0)
        return NULL;
    int fd = fcntl(app_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "'http.response.zerocopysend': 'file' is not a regular file");
        goto fail;
    }
    int from_position = offset < 0;
    if (from_position) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        if (pos < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        offset = (int64_t)pos;
    }
    int64_t left = st.st_size > offset ? (int64_t)st.st_size - offset : 0;
    if (count < 0) {
        count = left;
    } else if (count > left) {
        PyErr_Format(PyExc_RuntimeError,
                     "'http.response.zerocopysend': %lld bytes from offset %lld go past the end "
                     "of the file (%lld bytes)",
                     (long long)count, (long long)offset, (long long)st.st_size);
        goto fail;
    }
    if (from_position && lseek(fd, (off_t)(offset + count), SEEK_SET) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    return post_file(self, fd, offset, count, more);
fail:
    close(fd);
    return NULL;
}

/* A send() waiting for room learns that the client has gone. */
static void fail_drain(ReqObject *r)
{
    if (!r->drain)
        return;
    PyObject *d = r->drain;
    r->drain = NULL;
    PyObject *exc = PyObject_CallFunction(ClientDisconnected, "s", "the client has disconnected");
    if (!exc || resolve(d, s_set_exception, exc) < 0)
        PyErr_WriteUnraisable((PyObject *)r);
    Py_XDECREF(exc);
    Py_DECREF(d);
}

/* ---- WebSocket ----
 *
 * A Req for a WebSocket handshake runs the app with the websocket scope
 * and follows the states of uvicorn's websockets implementation:
 * receive() gives websocket.connect, then (once accepted) each message,
 * then websocket.disconnect; send() takes websocket.accept, close (before
 * accepting: 403) or the websocket.http.response extension's messages
 * first, then websocket.send and websocket.close. Messages wait in
 * `pending` until the app receives them; with --ws-max-queue of them
 * waiting, the loop pauses the connection (asgi.c), and receive() asks it
 * to resume. */

static int type_is(PyObject *type, const char *name)
{
    return PyUnicode_CompareWithASCIIString(type, name) == 0;
}

/* {"type": type} */
static PyObject *typed(PyObject *type)
{
    PyObject *d = PyDict_New();
    if (d && PyDict_SetItem(d, s_type, type) < 0)
        Py_CLEAR(d);
    return d;
}

/* websocket.disconnect with code, and reason unless NULL. */
static PyObject *ws_disconnect(int code, PyObject *reason)
{
    PyObject *d = typed(s_ws_disconnect);
    if (!d)
        return NULL;
    if (set_steal(d, s_code, PyLong_FromLong(code)) < 0 ||
        (reason && PyDict_SetItem(d, s_reason, reason) < 0))
        Py_CLEAR(d);
    return d;
}

/* Wakes a receive() waiting for the next event (it takes it itself). */
static int ws_wake(ReqObject *self)
{
    if (!self->waiter)
        return 0;
    PyObject *w = self->waiter;
    self->waiter = NULL;
    int rc = resolve(w, s_set_result, Py_None);
    Py_DECREF(w);
    return rc < 0 ? -1 : 0;
}

/* The app took a message: below --ws-max-queue again, a paused
 * connection resumes (asgi.c pauses it; whoever clears ws_paused posts). */
static int ws_consumed(ReqObject *self, int may_resume)
{
    struct areq *a = self->a;
    int left = atomic_fetch_sub(&a->ws_queued, 1) - 1;
    if (!may_resume || self->finished || left >= asgi_ws_max_queue || !atomic_load(&a->ws_paused) ||
        !atomic_exchange(&a->ws_paused, 0))
        return 0;
    struct outmsg *m = outmsg_alloc(self, OUT_WS_RESUME, 0);
    return m ? post(m) : -1;
}

/* The next event for receive(): 1 with *out set, 0 when it must wait,
 * -1 on error. As uvicorn: after a refused handshake or a connection lost
 * before it, 1006; after the app closed or received the disconnect, 1005. */
static int ws_take(ReqObject *self, PyObject **out)
{
    if (!self->ws_connect_sent) {
        self->ws_connect_sent = 1;
        *out = typed(s_ws_connect);
        return *out ? 1 : -1;
    }
    if (self->ws_rejected || self->ws_lost || self->ws_closed) {
        *out = ws_disconnect(self->ws_closed && !self->ws_rejected && !self->ws_lost ? 1005 : 1006,
                             NULL);
        return *out ? 1 : -1;
    }
    if (!self->pending || self->pending_first >= PyList_GET_SIZE(self->pending))
        return 0;
    /* Take the list's reference: PyList_SET_ITEM does not release the
     * item it overwrites. */
    PyObject *msg = PyList_GET_ITEM(self->pending, self->pending_first);
    Py_INCREF(Py_None);
    PyList_SET_ITEM(self->pending, self->pending_first, Py_None);
    self->pending_first++;
    /* Drop what was taken once it is most of the list. */
    if (self->pending_first == PyList_GET_SIZE(self->pending) ||
        (self->pending_first >= 64 && self->pending_first * 2 >= PyList_GET_SIZE(self->pending))) {
        if (PyList_SetSlice(self->pending, 0, self->pending_first, NULL) < 0) {
            Py_DECREF(msg);
            return -1;
        }
        self->pending_first = 0;
    }
    if (PyDict_GetItemWithError(msg, s_type) == s_ws_disconnect) {
        self->ws_closed = 1;
    } else if (ws_consumed(self, 1) < 0) {
        Py_DECREF(msg);
        return -1;
    }
    *out = msg;
    return 1;
}

static int ws_queue(ReqObject *self, PyObject *msg)
{
    if (!msg)
        return -1;
    if (!self->pending && !(self->pending = PyList_New(0))) {
        Py_DECREF(msg);
        return -1;
    }
    int rc = PyList_Append(self->pending, msg);
    Py_DECREF(msg);
    return rc < 0 ? -1 : ws_wake(self);
}

/* receive()'s awaitable: it takes the next event when the await
 * completes, not when the event arrives, so an event is never lost to a
 * receive() cancelled meanwhile (asyncio.wait_for, anyio's cancel
 * scopes): the future it suspends on only wakes it. */
typedef struct {
    PyObject_HEAD ReqObject *req;
} TakeObject;

static void Take_dealloc(TakeObject *self)
{
    Py_XDECREF(self->req);
    PyObject_Free(self);
}

static PyObject *Take_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *Take_next(TakeObject *self)
{
    PyObject *msg;
    int rc = ws_take(self->req, &msg);
    if (rc < 0)
        return NULL;
    if (rc > 0) {
        PyErr_SetObject(PyExc_StopIteration, msg); /* a dict: no wrapping needed */
        Py_DECREF(msg);
        return NULL;
    }
    /* Suspend on a future, as asyncio.Future.__await__ does. */
    PyObject *fut = waiting_future(&self->req->waiter);
    if (fut && PyObject_SetAttr(fut, s_future_blocking, Py_True) < 0)
        Py_CLEAR(fut);
    return fut;
}

static PyAsyncMethods Take_async = {.am_await = Take_await};

static PyTypeObject TakeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_evicorn.WebSocketReceive",
    .tp_basicsize = sizeof(TakeObject),
    .tp_dealloc = (destructor)Take_dealloc,
    .tp_as_async = &Take_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Take_next,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The next WebSocket event, taken when the await completes.",
};

/* Nothing is taken until the await: a receive() never awaited has no
 * effect, as a coroutine's. */
static PyObject *ws_receive(ReqObject *self)
{
    TakeObject *t = PyObject_New(TakeObject, &TakeType);
    if (!t)
        return NULL;
    Py_INCREF(self);
    t->req = self;
    return (PyObject *)t;
}

/* websocket.accept: the subprotocol must be one the client offered (the
 * host refuses others; uvicorn would send it and the client fail). */
static PyObject *ws_accept(ReqObject *self, PyObject *msg)
{
    evicorn_request *req = self->a->req;
    PyObject *sp = PyDict_GetItemWithError(msg, s_subprotocol);
    if (!sp && PyErr_Occurred())
        return NULL;
    const char *sp_utf8 = NULL;
    Py_ssize_t sp_len = 0;
    if (sp && sp != Py_None) {
        if (!PyUnicode_Check(sp)) {
            PyErr_Format(PyExc_TypeError, "'subprotocol' must be a str or None, not %.100s",
                         Py_TYPE(sp)->tp_name);
            return NULL;
        }
        if (!(sp_utf8 = PyUnicode_AsUTF8AndSize(sp, &sp_len)))
            return NULL;
        evicorn_str v;
        size_t i = 0;
        for (; asgi_api->ws_subprotocol_at(req, i, &v) == 0; i++)
            if (v.len == (size_t)sp_len && memcmp(v.ptr, sp_utf8, v.len) == 0)
                break;
        if (asgi_api->ws_subprotocol_at(req, i, &v) != 0) {
            PyErr_Format(PyExc_RuntimeError,
                         "Subprotocol '%U' in 'websocket.accept' was not offered by the client.",
                         sp);
            return NULL;
        }
    }
    PyObject *headers = PyDict_GetItemWithError(msg, s_headers);
    if (!headers && PyErr_Occurred())
        return NULL;
    struct hdrs hs = {NULL, 0, 0, -1};
    if (headers && headers != Py_None && parse_headers(headers, &hs) < 0)
        return NULL;
    self->ws_started = 1;
    self->ws_accepted = 1;
    /* Lost already: uvicorn accepts all the same, and the app hears 1006. */
    if (is_gone(self)) {
        free(hs.buf);
        return ready_nothing();
    }
    size_t extra = hs.n * sizeof(evicorn_header) + hs.bytes + (size_t)sp_len + 1;
    struct outmsg *m = outmsg_alloc(self, OUT_WS_ACCEPT, extra);
    if (!m) {
        free(hs.buf);
        return NULL;
    }
    evicorn_header *h = (evicorn_header *)m->blob;
    char *p = m->blob + hs.n * sizeof(evicorn_header);
    if (hs.n)
        p = place_headers(&hs, h, p);
    free(hs.buf);
    m->headers = h;
    m->nheaders = hs.n;
    if (sp_utf8) {
        memcpy(p, sp_utf8, (size_t)sp_len);
        p[sp_len] = '\0';
        m->body = p;
        m->status = 1;
    }
    if (post(m) < 0)
        return NULL;
    return ready_nothing();
}

/* websocket.send: exactly one of bytes and text. */
static PyObject *ws_send_message(ReqObject *self, PyObject *msg)
{
    PyObject *bytes = PyDict_GetItemWithError(msg, s_bytes);
    if (!bytes && PyErr_Occurred())
        return NULL;
    PyObject *text = bytes && bytes != Py_None ? NULL : PyDict_GetItemWithError(msg, s_text);
    if (!text && PyErr_Occurred())
        return NULL;
    Py_buffer view = {.obj = NULL};
    const char *data;
    Py_ssize_t len;
    int binary = bytes && bytes != Py_None;
    if (binary) {
        if (get_bytes(bytes, &view, "'bytes'") < 0)
            return NULL;
        data = view.buf;
        len = view.len;
    } else if (text && text != Py_None) {
        if (!PyUnicode_Check(text)) {
            PyErr_Format(PyExc_TypeError, "'text' must be a str, not %.100s",
                         Py_TYPE(text)->tp_name);
            return NULL;
        }
        if (!(data = PyUnicode_AsUTF8AndSize(text, &len)))
            return NULL;
    } else {
        PyErr_SetString(PyExc_TypeError,
                        "'websocket.send' needs a 'bytes' or a 'text' value, not None.");
        return NULL;
    }
    struct outmsg *m = outmsg_alloc(self, OUT_WS_SEND, (size_t)len);
    if (m) {
        memcpy(m->blob, data, (size_t)len);
        m->body = m->blob;
        m->len = (size_t)len;
        m->more = binary;
    }
    if (view.obj)
        PyBuffer_Release(&view);
    if (!m)
        return NULL;
    struct areq *a = self->a;
    atomic_fetch_add(&a->pending, (long)len);
    if (post(m) < 0) {
        atomic_fetch_sub(&a->pending, (long)len);
        return NULL;
    }
    return backpressure(self);
}

/* The codes an endpoint may send (RFC 6455 7.4, as websockets checks). */
static int close_code_valid(long code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* websocket.close: code (default 1000) and reason (default ""). Before
 * accepting, the host answers 403: both are ignored, unchecked (FastAPI
 * closes a refused handshake with its validation errors, a list, as the
 * reason). */
static PyObject *ws_close(ReqObject *self, PyObject *msg)
{
    if (!self->ws_started) {
        struct outmsg *m = outmsg_alloc(self, OUT_WS_CLOSE, 0);
        if (!m)
            return NULL;
        m->status = 1000;
        if (post(m) < 0)
            return NULL;
        self->ws_started = self->ws_rejected = self->ws_closed = 1;
        if (ws_wake(self) < 0)
            return NULL;
        return ready_nothing();
    }
    PyObject *code_o = PyDict_GetItemWithError(msg, s_code);
    if (!code_o && PyErr_Occurred())
        return NULL;
    long code = 1000;
    if (code_o && code_o != Py_None) {
        code = PyLong_AsLong(code_o);
        if (code == -1 && PyErr_Occurred())
            return NULL;
    }
    PyObject *reason = PyDict_GetItemWithError(msg, s_reason);
    if (!reason && PyErr_Occurred())
        return NULL;
    const char *r = "";
    Py_ssize_t rlen = 0;
    if (reason && reason != Py_None) {
        if (!PyUnicode_Check(reason)) {
            PyErr_Format(PyExc_TypeError, "'reason' must be a str, not %.100s",
                         Py_TYPE(reason)->tp_name);
            return NULL;
        }
        if (!(r = PyUnicode_AsUTF8AndSize(reason, &rlen)))
            return NULL;
    }
    if (!close_code_valid(code)) {
        PyErr_Format(PyExc_RuntimeError, "Invalid WebSocket close code %ld in 'websocket.close'.",
                     code);
        return NULL;
    }
    struct outmsg *m = outmsg_alloc(self, OUT_WS_CLOSE, (size_t)rlen);
    if (!m)
        return NULL;
    memcpy(m->blob, r, (size_t)rlen);
    m->body = m->blob;
    m->len = (size_t)rlen;
    m->status = (int)code;
    if (post(m) < 0)
        return NULL;
    self->ws_closed = 1;
    return ready_nothing();
}

static PyObject *ws_send(ReqObject *self, PyObject *msg, PyObject *type)
{
    if (!self->ws_started) {
        if (type_is(type, "websocket.accept"))
            return ws_accept(self, msg);
        if (type_is(type, "websocket.close"))
            return ws_close(self, msg);
        if (type_is(type, "websocket.http.response.start")) {
            if (parse_start(self, msg) < 0 || schedule_start(self) < 0)
                return NULL;
            self->resp = R_START_PENDING;
            self->ws_started = 1;
            self->ws_rejected = 1;
            if (ws_wake(self) < 0)
                return NULL;
            return ready_nothing();
        }
        PyErr_Format(PyExc_RuntimeError,
                     "Expected ASGI message 'websocket.accept', 'websocket.close', or "
                     "'websocket.http.response.start' but got '%U'.",
                     type);
        return NULL;
    }
    if (self->ws_rejected) {
        if (!type_is(type, "websocket.http.response.body")) {
            PyErr_Format(PyExc_RuntimeError,
                         "Expected ASGI message 'websocket.http.response.body' but got '%U'.",
                         type);
            return NULL;
        }
        /* After the 403, or the response's end: nothing more goes out. */
        if (self->resp == R_NONE || self->resp == R_DONE)
            return ready_nothing();
        return send_body(self, msg);
    }
    int is_send = type_is(type, "websocket.send");
    if (!is_send && !type_is(type, "websocket.close")) {
        if (self->ws_closed)
            PyErr_Format(PyExc_RuntimeError,
                         "Unexpected ASGI message '%U', after sending 'websocket.close' or "
                         "response already completed.",
                         type);
        else
            PyErr_Format(PyExc_RuntimeError,
                         "Expected ASGI message 'websocket.send' or 'websocket.close', but got "
                         "'%U'.",
                         type);
        return NULL;
    }
    /* ASGI 2.4: on a closed connection, an OSError. */
    if (self->ws_closed || is_gone(self)) {
        PyErr_SetString(ClientDisconnected, "the WebSocket is closed");
        return NULL;
    }
    return is_send ? ws_send_message(self, msg) : ws_close(self, msg);
}

/* The app returned (failed: its exception). As uvicorn: 500 when it never
 * answered the handshake; a response it began is completed. Once
 * accepted, the connection is closed with 1000 (1011 after an exception),
 * where uvicorn drops it without a close frame. */
static PyObject *ws_finish(ReqObject *self, PyObject *failed_o)
{
    int failed = PyExceptionInstance_Check(failed_o) || failed_o == Py_True;
    int quiet = PyExceptionInstance_Check(failed_o) &&
                PyObject_IsInstance(failed_o, ClientDisconnected) == 1;
    if (PyErr_Occurred())
        return NULL;
    if (self->ws_rejected && (self->resp == R_START_PENDING || self->resp == R_STARTED)) {
        struct outmsg *end = build_send(self, NULL, 0, 0);
        if (!end || post(end) < 0)
            return NULL;
        self->resp = R_DONE;
    }
    struct outmsg *m = outmsg_alloc(self, OUT_FINISH, 0);
    if (!m)
        return NULL;
    if (!self->ws_started) {
        m->status = 500;
        if (!failed)
            asgi_log(LOG_ERROR, "ASGI callable returned without sending handshake.");
    } else if (self->ws_accepted && !self->ws_closed && !is_gone(self)) {
        m->code = failed && !quiet ? 1011 : 1000;
    }
    if (post(m) < 0)
        return NULL;
    self->finished = 1;
    /* The request is no longer ours: what other tasks still send fails or
     * is dropped as on a closed connection, and receive() ends as uvicorn's
     * (1006 without a handshake, 1005 after one). */
    if (!self->ws_started)
        self->ws_started = self->ws_rejected = 1;
    else if (!self->ws_rejected)
        self->ws_closed = 1;
    if (ws_wake(self) < 0)
        PyErr_Clear();
    return PyBool_FromLong(failed && !quiet);
}

/* A message from the client, or the connection's end (drain). */
static void ws_message_arrived(ReqObject *r, struct inmsg *m)
{
    if (r->ws_closed) {
        ws_consumed(r, 0); /* the app closed: nobody receives it */
        return;
    }
    /* The host hands over valid UTF-8 for text. */
    PyObject *data = m->more ? PyBytes_FromStringAndSize(m->data, (Py_ssize_t)m->len)
                             : PyUnicode_DecodeUTF8(m->data, (Py_ssize_t)m->len, "replace");
    PyObject *msg = data ? typed(s_ws_receive) : NULL;
    if (msg && PyDict_SetItem(msg, m->more ? s_bytes : s_text, data) < 0)
        Py_CLEAR(msg);
    Py_XDECREF(data);
    if (ws_queue(r, msg) < 0)
        PyErr_WriteUnraisable((PyObject *)r);
}

static void ws_ended(ReqObject *r, struct inmsg *m)
{
    r->gone = 1;
    if (!r->ws_accepted && !r->ws_rejected) {
        r->ws_lost = 1;
        if (ws_wake(r) < 0)
            PyErr_WriteUnraisable((PyObject *)r);
    } else if (r->ws_accepted) {
        PyObject *reason = PyUnicode_DecodeUTF8(m->data, (Py_ssize_t)m->len, "replace");
        PyObject *msg = reason ? ws_disconnect(m->status, reason) : NULL;
        Py_XDECREF(reason);
        if (ws_queue(r, msg) < 0)
            PyErr_WriteUnraisable((PyObject *)r);
    }
    fail_drain(r);
}

static PyObject *Req_send(ReqObject *self, PyObject *msg)
{
    PyObject *owned = NULL;
    if (!PyDict_Check(msg)) {
        if (!(owned = PyDict_New()) || PyDict_Merge(owned, msg, 1) < 0) {
            Py_XDECREF(owned);
            return NULL;
        }
        msg = owned;
    }
    PyObject *result = NULL;
    PyObject *type = PyDict_GetItemWithError(msg, s_type);
    if (!type) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "type");
        goto out;
    }
    if (!PyUnicode_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "ASGI message 'type' must be a str");
        goto out;
    }
    if (self->is_ws) {
        result = ws_send(self, msg, type);
        goto out;
    }
    int is_start = PyUnicode_CompareWithASCIIString(type, "http.response.start") == 0;
    int is_body = !is_start && PyUnicode_CompareWithASCIIString(type, "http.response.body") == 0;
    if (self->resp == R_DONE || self->finished) {
        /* After more_body=False, further messages are ignored (ASGI). */
        if (is_start || is_body ||
            PyUnicode_CompareWithASCIIString(type, "http.response.trailers") == 0) {
            result = ready_nothing();
            goto out;
        }
        PyErr_Format(PyExc_RuntimeError,
                     "Unexpected ASGI message '%U' sent, after response already completed.", type);
        goto out;
    }
    if (is_gone(self)) {
        PyErr_SetString(ClientDisconnected, "the client has disconnected");
        goto out;
    }
    if (self->resp == R_NONE) {
        if (!is_start) {
            PyErr_Format(PyExc_RuntimeError,
                         "Expected ASGI message 'http.response.start', but got '%U'.", type);
            goto out;
        }
        if (parse_start(self, msg) < 0 || schedule_start(self) < 0)
            goto out;
        self->resp = R_START_PENDING;
        result = ready_nothing();
        goto out;
    }
    if (is_body) {
        result = send_body(self, msg);
        goto out;
    }
    if (g_files && type_is(type, "http.response.pathsend")) {
        result = send_pathsend(self, msg);
        goto out;
    }
    if (g_files && type_is(type, "http.response.zerocopysend")) {
        result = send_zerocopy(self, msg);
        goto out;
    }
    if (PyUnicode_CompareWithASCIIString(type, "http.response.trailers") == 0) {
        /* The host has no trailers: accepted and dropped (the app should
         * not send them: scope["extensions"] does not offer them). */
        result = ready_nothing();
        goto out;
    }
    PyErr_Format(PyExc_RuntimeError, "Expected ASGI message 'http.response.body', but got '%U'.",
                 type);
out:
    Py_XDECREF(owned);
    return result;
}

/* ---- the end of the app call ---- */

/* finish(failed): the app returned (failed: it raised). Completes what the
 * app left undone, posts the release, and returns whether the exception
 * deserves an error log (not when the client had simply gone). */
static PyObject *Req_finish(ReqObject *self, PyObject *failed_o)
{
    if (self->finished)
        Py_RETURN_FALSE;
    if (self->is_ws)
        return ws_finish(self, failed_o);
    int failed = PyExceptionInstance_Check(failed_o) || PyObject_IsTrue(failed_o) == 1;
    if (PyErr_Occurred())
        return NULL;
    int gone = is_gone(self);
    int want500 = 0;
    switch (self->resp) {
    case R_NONE:
        want500 = 1;
        if (!failed && !gone)
            asgi_log(LOG_ERROR, "ASGI callable returned without starting response.");
        break;
    case R_START_PENDING:
        if (failed) {
            want500 = 1; /* the start never left: the client gets a clean 500 */
            break;
        }
        if (flush_start(self) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
        if (!gone)
            asgi_log(LOG_ERROR, "ASGI callable returned without completing response.");
        break;
    case R_STARTED:
        if (!failed && !gone)
            asgi_log(LOG_ERROR, "ASGI callable returned without completing response.");
        break;
    }
    struct outmsg *m = outmsg_alloc(self, OUT_FINISH, 0);
    if (!m)
        return NULL;
    m->status = want500 && !gone ? 500 : 0;
    if (post(m) < 0)
        return NULL;
    self->finished = 1;
    if (self->resp == R_START_PENDING)
        self->resp = R_NONE;
    if (wake_disconnect_waiter(self) < 0)
        PyErr_Clear();
    if (failed && !gone)
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyObject *Req_gone(ReqObject *self, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(is_gone(self));
}

static PyMethodDef Req_methods[] = {
    {"scope", (PyCFunction)Req_scope, METH_NOARGS, "The ASGI HTTP scope (a new dict)."},
    {"receive", (PyCFunction)Req_receive, METH_NOARGS, "ASGI receive()."},
    {"send", (PyCFunction)Req_send, METH_O, "ASGI send(message)."},
    {"finish", (PyCFunction)Req_finish, METH_O,
     "finish(exc): the app returned (exc: its exception, or False); True when the exception "
     "should be logged."},
    {"gone", (PyCFunction)Req_gone, METH_NOARGS, "Whether the client has disconnected."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReqType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_evicorn.Req",
    .tp_basicsize = sizeof(ReqObject),
    .tp_dealloc = (destructor)Req_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One HTTP request handed to the ASGI app.",
    .tp_methods = Req_methods,
};

/* ---- messages from evicorn's loop ---- */

static int start_request(struct inmsg *m)
{
    struct areq *a = m->a;
    ReqObject *r = PyObject_New(ReqObject, &ReqType);
    if (!r)
        return -1;
    r->a = a; /* takes the message's reference */
    m->a = NULL;
    r->pending = r->waiter = r->drain = NULL;
    r->pending_first = 0;
    r->start_status = 0;
    r->start_n = r->start_bytes = 0;
    r->start_buf = NULL;
    r->length = -1;
    r->sent = 0;
    r->resp = R_NONE;
    r->body_done = (unsigned char)m->no_body;
    r->receiving = r->waiter_body = 0;
    r->gone = 0;
    r->finished = 0;
    r->is_ws = (unsigned char)a->ws;
    r->ws_connect_sent = r->ws_started = r->ws_accepted = r->ws_rejected = 0;
    r->ws_closed = r->ws_lost = 0;
    evicorn_str method = asgi_api->method(a->req);
    r->is_head = method.len == 4 && memcmp(method.ptr, "HEAD", 4) == 0;
    a->py = (PyObject *)r;
    if (m->no_body) {
        PyObject *msg = request_message("", 0, 0);
        if (!msg || deliver(r, msg) < 0)
            goto fail;
    } else if (m->has_body) {
        r->body_done = !m->more;
        PyObject *msg = request_message(m->data, m->len, m->more);
        if (!msg || deliver(r, msg) < 0)
            goto fail;
    }
    PyObject *coro = PyObject_CallOneArg(g_run, (PyObject *)r);
    if (!coro)
        goto fail;
    PyObject *task = PyObject_CallOneArg(g_create_task, coro);
    Py_DECREF(coro);
    if (!task)
        goto fail;
    Py_DECREF(task);
    Py_DECREF(r);
    return 0;
fail:
    /* The request cannot reach the app: answer 500 and let it go. */
    PyErr_WriteUnraisable((PyObject *)r);
    PyObject *res = Req_finish(r, Py_True);
    if (!res)
        PyErr_WriteUnraisable((PyObject *)r);
    Py_XDECREF(res);
    Py_DECREF(r);
    return 0;
}

static void body_arrived(ReqObject *r, struct inmsg *m)
{
    r->receiving = 0;
    PyObject *msg;
    if (m->status) {
        r->body_done = 1;
        r->gone = 1;
        msg = disconnect_message();
    } else {
        if (!m->more)
            r->body_done = 1;
        msg = request_message(m->data, m->len, m->more);
    }
    if (deliver(r, msg) < 0)
        PyErr_WriteUnraisable((PyObject *)r);
}

static void disconnected(ReqObject *r)
{
    r->gone = 1;
    if (wake_disconnect_waiter(r) < 0)
        PyErr_WriteUnraisable((PyObject *)r);
    fail_drain(r);
}

static void writable(ReqObject *r)
{
    if (r->drain) {
        if (is_gone(r)) {
            /* A WebSocket's end comes with its close code (ws_ended). */
            if (r->is_ws)
                fail_drain(r);
            else
                disconnected(r);
            return;
        }
        PyObject *d = r->drain;
        r->drain = NULL;
        if (resolve(d, s_set_result, Py_None) < 0)
            PyErr_WriteUnraisable((PyObject *)r);
        Py_DECREF(d);
    }
}

static PyObject *mod_drain(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    uint64_t v;
    /* Read the wake-up before taking the queue: a push after the take
     * writes it again. */
    while (read(asgi_wake_fd(), &v, sizeof v) < 0 && errno == EINTR)
        ;
    struct inmsg *list = inq_take();
    while (list) {
        struct inmsg *m = list;
        list = m->next;
        if (m->kind == IN_REQUEST) {
            start_request(m);
        } else {
            ReqObject *r = (ReqObject *)m->a->py;
            if (r) {
                Py_INCREF(r);
                if (m->kind == IN_BODY)
                    body_arrived(r, m);
                else if (m->kind == IN_DISCONNECT)
                    disconnected(r);
                else if (m->kind == IN_WRITABLE)
                    writable(r);
                else if (m->kind == IN_WS_MESSAGE)
                    ws_message_arrived(r, m);
                else if (m->kind == IN_WS_CLOSE)
                    ws_ended(r, m);
                Py_DECREF(r);
            }
        }
        if (m->a)
            areq_unref(m->a);
        free(m);
    }
    Py_RETURN_NONE;
}

/* ---- module functions ---- */

static PyObject *mod_log(PyObject *mod, PyObject *args)
{
    (void)mod;
    int level;
    const char *msg;
    if (!PyArg_ParseTuple(args, "is:log", &level, &msg))
        return NULL;
    asgi_log(level, "%s", msg);
    Py_RETURN_NONE;
}

static PyObject *mod_config(PyObject *mod, PyObject *arg)
{
    (void)mod;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return NULL;
    const char *v = asgi_api->config(name);
    if (!v)
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(v);
}

static PyObject *mod_fd(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    return PyLong_FromLong(asgi_wake_fd());
}

/* configure(run, loop, state): what drain() needs to start requests. */
static PyObject *mod_configure(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *run, *loop, *state;
    if (!PyArg_ParseTuple(args, "OOO:configure", &run, &loop, &state))
        return NULL;
    PyObject *ct = PyObject_GetAttrString(loop, "create_task");
    PyObject *cf = ct ? PyObject_GetAttrString(loop, "create_future") : NULL;
    PyObject *cs = cf ? PyObject_GetAttrString(loop, "call_soon") : NULL;
    if (!cs) {
        Py_XDECREF(ct);
        Py_XDECREF(cf);
        return NULL;
    }
    Py_INCREF(run);
    Py_XSETREF(g_run, run);
    Py_XSETREF(g_create_task, ct);
    Py_XSETREF(g_create_future, cf);
    Py_XSETREF(g_call_soon, cs);
    if (state == Py_None) {
        Py_CLEAR(g_state);
    } else {
        Py_INCREF(state);
        Py_XSETREF(g_state, state);
    }
    Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"log", mod_log, METH_VARARGS,
     "log(level, message): the server's log (0 critical .. 5 trace)."},
    {"config", mod_config, METH_O, "config(name): a server setting, or None."},
    {"fd", mod_fd, METH_NOARGS, "The eventfd that signals queued requests."},
    {"drain", mod_drain, METH_NOARGS, "Takes the queued requests and events (loop.add_reader)."},
    {"configure", mod_configure, METH_VARARGS, "configure(run, loop, state)."},
    {"configure_wsgi", wsgi_configure, METH_VARARGS,
     "configure_wsgi(app, file_wrapper, format_exception): serve a WSGI app on the pool."},
    {"_flush", mod_flush, METH_NOARGS, "Posts what this turn of the loop produced."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, .m_name = "_evicorn",     .m_doc = "evicorn's ASGI bridge, Python side.",
    .m_size = -1,          .m_methods = mod_methods,
};

static int intern_all(void)
{
    struct {
        PyObject **slot;
        const char *s;
    } t[] = {
        {&s_type, "type"},
        {&s_status, "status"},
        {&s_headers, "headers"},
        {&s_body, "body"},
        {&s_more_body, "more_body"},
        {&s_trailers, "trailers"},
        {&s_asgi, "asgi"},
        {&s_http_version, "http_version"},
        {&s_method, "method"},
        {&s_scheme, "scheme"},
        {&s_path, "path"},
        {&s_raw_path, "raw_path"},
        {&s_query_string, "query_string"},
        {&s_root_path, "root_path"},
        {&s_client, "client"},
        {&s_server, "server"},
        {&s_state, "state"},
        {&s_extensions, "extensions"},
        {&s_http, "http"},
        {&s_https, "https"},
        {&s_v11, "1.1"},
        {&s_v10, "1.0"},
        {&s_http_request, "http.request"},
        {&s_http_disconnect, "http.disconnect"},
        {&s_set_result, "set_result"},
        {&s_set_exception, "set_exception"},
        {&s_done, "done"},
        {&m_get, "GET"},
        {&m_post, "POST"},
        {&m_head, "HEAD"},
        {&m_put, "PUT"},
        {&m_delete, "DELETE"},
        {&m_patch, "PATCH"},
        {&m_options, "OPTIONS"},
        {&s_websocket, "websocket"},
        {&s_ws, "ws"},
        {&s_wss, "wss"},
        {&s_subprotocols, "subprotocols"},
        {&s_subprotocol, "subprotocol"},
        {&s_code, "code"},
        {&s_reason, "reason"},
        {&s_text, "text"},
        {&s_bytes, "bytes"},
        {&s_ws_connect, "websocket.connect"},
        {&s_ws_receive, "websocket.receive"},
        {&s_ws_disconnect, "websocket.disconnect"},
        {&s_ws_http_response, "websocket.http.response"},
        {&s_future_blocking, "_asyncio_future_blocking"},
        {&s_file, "file"},
        {&s_offset, "offset"},
        {&s_count, "count"},
        {&s_pathsend, "http.response.pathsend"},
        {&s_zerocopysend, "http.response.zerocopysend"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!(*t[i].slot = PyUnicode_InternFromString(t[i].s)))
            return -1;
    return 0;
}

PyObject *asgi_pymod_init(void)
{
    if (PyType_Ready(&ReadyType) < 0 || PyType_Ready(&ReqType) < 0 || PyType_Ready(&TakeType) < 0 ||
        intern_all() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    ready_none = PyObject_New(ReadyObject, &ReadyType);
    if (!ready_none)
        goto fail;
    ready_none->value = NULL;
    g_files = EVICORN_API_HAS(asgi_api, send_file);
    g_asgi = Py_BuildValue("{s:s,s:s}", "version", "3.0", "spec_version", "2.4");
    if (!g_asgi)
        goto fail;
    ClientDisconnected = PyErr_NewExceptionWithDoc(
        "_evicorn.ClientDisconnected",
        "send() on a request whose client has gone (ASGI 2.4: an OSError).", PyExc_OSError, NULL);
    if (!ClientDisconnected ||
        PyModule_AddObjectRef(m, "ClientDisconnected", ClientDisconnected) < 0)
        goto fail;
    g_flush = PyObject_GetAttrString(m, "_flush");
    if (!g_flush)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
