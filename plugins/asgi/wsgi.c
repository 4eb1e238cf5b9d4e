/* The WSGI side of the bridge (--interface wsgi, PEP 3333).
 *
 * A WSGI app is plain blocking code: it runs on the worker's thread pool,
 * FastAPI's `def` model for a whole application. The catch-all route's
 * handler (evicorn's loop thread) holds the request and hands it to the
 * pool with api->offload; a pool thread takes the GIL, builds the environ,
 * calls the app and walks its iterable. It never calls the host and waits:
 *
 *  - output goes to the loop as messages (api->call_on_loop), the first
 *    carrying the status and headers; the common response (one body
 *    string) is one message. Above WSGI_SEND_HIGH bytes posted and not yet
 *    handed to the host, or while the host reports the connection full,
 *    the thread waits (GIL released) until the loop has caught up: a slow
 *    client stalls the app, not memory;
 *  - wsgi.input is streamed: a read the buffered bytes cannot satisfy asks
 *    the loop for the next chunk (api->receive) and waits for it. Bodies up
 *    to 64 KiB with a Content-Length are read before the app runs;
 *  - the last message completes the response (or, after an exception in
 *    the middle of it, leaves it cut so the host closes the connection)
 *    and releases the request.
 *
 * Each pool thread keeps one Python thread state for its life, so taking
 * the GIL per request costs a lock, not a thread state. */
#include "bridge.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WSGI_SEND_HIGH (256 * 1024)
#define WSGI_SEND_LOW  (64 * 1024)
/* Bodies up to this size (with a Content-Length) are read before the app. */
#define WSGI_PREFETCH_MAX (64 * 1024)

int wsgi_mode;

/* Set by configure_wsgi(), read by the pool threads under the GIL. */
static PyObject *g_app;
static PyObject *g_format_exception; /* bridge.format_exception */
static PyObject *g_environ_base;     /* the keys every environ has, copied per request */
static PyInterpreterState *g_interp;

static PyObject *k_method, *k_script_name, *k_path_info, *k_query, *k_protocol, *k_server_name,
    *k_server_port, *k_remote_addr, *k_remote_port, *k_content_type, *k_content_length,
    *k_url_scheme, *k_input, *k_http11, *k_http10, *k_http, *k_https, *k_empty, *k_close;

/* ---- one request, as the loop thread and the pool thread see it ---- */

struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
};

struct wreq {
    evicorn_request *req;
    atomic_int refs; /* the final message's, the offload's done, one per continuation */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct chunk *head, *tail; /* body received, not yet read by the app */
    size_t head_off;
    bool receiving; /* a receive is outstanding */
    bool body_done; /* the whole body has arrived (or failed) */
    int body_error; /* EVICORN_E* once the body failed */
    bool gone;      /* the client disconnected */
    bool paused;    /* the host reported the connection full */
    long pending;   /* body bytes posted, not yet handed to the host */
    /* loop thread only */
    bool writable_armed;
    /* pool thread only */
    evicorn_str prefetched; /* the whole body, read before the app ran */
    size_t prefetched_off;
    bool has_prefetched;
};

static void wreq_unref(struct wreq *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    for (struct chunk *c = w->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void wreq_ref(struct wreq *w)
{
    atomic_fetch_add(&w->refs, 1);
}

/* ---- messages from the pool thread to the loop ---- */

enum { W_SEND, W_RECEIVE, W_FINISH };

struct wmsg {
    struct wreq *w;
    int kind;
    int status;     /* W_SEND: start the response with it first; 0: started */
    int64_t length; /* with status: the Content-Length, or -1 */
    bool more;      /* W_SEND: more body follows */
    bool finish;    /* W_SEND: then as W_FINISH */
    bool fail;      /* W_FINISH: answer 500 unless a response was started */
    size_t nheaders;
    evicorn_header *headers;
    const char *body;
    size_t len;
    char blob[]; /* headers, header bytes, body */
};

static const evicorn_header plain_500[] = {
    {"content-type", 12, "text/plain; charset=utf-8", 25},
    {"connection", 10, "close", 5},
};

static void wake(struct wreq *w)
{
    pthread_cond_broadcast(&w->cv);
}

static void on_gone(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status;
    struct wreq *w = ud;
    pthread_mutex_lock(&w->mu);
    w->gone = true;
    wake(w);
    pthread_mutex_unlock(&w->mu);
}

static void on_room(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status;
    struct wreq *w = ud;
    w->writable_armed = false;
    pthread_mutex_lock(&w->mu);
    w->paused = false;
    wake(w);
    pthread_mutex_unlock(&w->mu);
    wreq_unref(w);
}

static void on_body(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                    int status)
{
    (void)req;
    struct wreq *w = ud;
    struct chunk *c = NULL;
    if (status == 0 && len > 0) {
        c = malloc(sizeof *c + len);
        if (c) {
            c->next = NULL;
            c->len = len;
            memcpy(c->data, data, len);
        } else {
            status = EVICORN_ENOMEM;
        }
    }
    pthread_mutex_lock(&w->mu);
    if (c) {
        if (w->tail)
            w->tail->next = c;
        else
            w->head = c;
        w->tail = c;
    }
    w->receiving = false;
    if (status != 0) {
        w->body_error = status;
        w->body_done = true;
    } else if (!more) {
        w->body_done = true;
    }
    wake(w);
    pthread_mutex_unlock(&w->mu);
    wreq_unref(w);
}

static void finish(struct wreq *w, bool fail)
{
    evicorn_request *req = w->req;
    asgi_api->on_disconnect(req, NULL, NULL);
    if (fail)
        asgi_api->respond(req, 500, plain_500, 2, "Internal Server Error", 21);
    asgi_api->release(req);
    wreq_unref(w);
}

static void run_msg(evicorn_request *req, void *ud, int status)
{
    (void)status; /* the client may have gone: each kind copes */
    struct wmsg *m = ud;
    struct wreq *w = m->w;
    int rc = 0;
    switch (m->kind) {
    case W_SEND:
        if (!asgi_api->disconnected(req)) {
            if (m->status)
                rc = asgi_api->start(req, m->status, m->headers, m->nheaders, m->length);
            if (rc == 0 && (m->len > 0 || !m->more))
                rc = asgi_api->send(req, m->body, m->len, m->more);
            if (rc < 0 && rc != EVICORN_EPIPE)
                asgi_log(LOG_ERROR, "cannot send the WSGI app's response (error %d)", rc);
            if (rc == 0 && m->more && !asgi_api->writable(req) && !w->writable_armed) {
                w->writable_armed = true;
                wreq_ref(w);
                if (asgi_api->on_writable(req, on_room, w) < 0) {
                    w->writable_armed = false;
                    wreq_unref(w);
                } else {
                    pthread_mutex_lock(&w->mu);
                    w->paused = true;
                    pthread_mutex_unlock(&w->mu);
                }
            }
        }
        pthread_mutex_lock(&w->mu);
        w->pending -= (long)m->len;
        wake(w);
        pthread_mutex_unlock(&w->mu);
        if (m->finish)
            finish(w, false);
        break;
    case W_RECEIVE:
        wreq_ref(w);
        rc = asgi_api->receive(req, on_body, w);
        if (rc < 0)
            on_body(req, w, NULL, 0, 0, rc);
        break;
    case W_FINISH:
        finish(w, m->fail);
        break;
    }
    free(m);
}

static struct wmsg *wmsg_new(struct wreq *w, int kind, size_t extra)
{
    struct wmsg *m = calloc(1, sizeof *m + extra);
    if (m) {
        m->w = w;
        m->kind = kind;
        m->length = -1;
    }
    return m;
}

/* Posts m; on failure (out of memory in the host) it is lost, and so is the
 * response: the request is released by the final message, which is posted
 * the same way, so a failure there is logged. */
static int post(struct wmsg *m)
{
    int rc = asgi_api->call_on_loop(m->w->req, run_msg, m);
    if (rc < 0) {
        asgi_log(LOG_ERROR, "cannot hand the WSGI response to the loop (error %d)", rc);
        free(m);
    }
    return rc;
}

/* ---- the GIL on pool threads ---- */

static _Thread_local PyThreadState *pool_tstate;

static int gil_take(void)
{
    if (!pool_tstate && !(pool_tstate = PyThreadState_New(g_interp)))
        return -1;
    PyEval_RestoreThread(pool_tstate);
    return 0;
}

static void gil_drop(void)
{
    PyEval_SaveThread();
}

/* ---- logging an exception ---- */

/* The exception being raised, as one object with its traceback (what
 * PyErr_GetRaisedException gives from Python 3.12 on); NULL if none. */
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

static void restore_exception(PyObject *exc)
{
    if (exc)
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_XDECREF(exc);
}

static void log_exception(const char *what)
{
    PyObject *exc = take_exception();
    PyObject *text =
        exc && g_format_exception ? PyObject_CallOneArg(g_format_exception, exc) : NULL;
    const char *s = text ? PyUnicode_AsUTF8(text) : NULL;
    asgi_log(LOG_ERROR, "%s\n%s", what, s ? s : "(the traceback could not be formatted)");
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(exc);
}

/* ---- wsgi.input ---- */

typedef struct {
    PyObject_HEAD struct wreq *w; /* NULL once the request is over */
} InputObject;

/* Waits for body bytes (GIL released). Returns 1 when some are buffered or
 * prefetched, 0 at the end of the body, -1 with an exception set. */
static int input_wait(InputObject *self)
{
    struct wreq *w = self->w;
    if (!w) {
        PyErr_SetString(PyExc_ValueError, "wsgi.input read after the request ended");
        return -1;
    }
    if (w->has_prefetched)
        return w->prefetched_off < w->prefetched.len;
    int result, error = 0;
    bool gone;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&w->mu);
    for (;;) {
        if (w->head) {
            result = 1;
            break;
        }
        if (w->body_done || w->gone) {
            result = w->body_error || (w->gone && !w->body_done) ? -1 : 0;
            error = w->body_error;
            break;
        }
        if (!w->receiving) {
            w->receiving = true;
            pthread_mutex_unlock(&w->mu);
            struct wmsg *m = wmsg_new(w, W_RECEIVE, 0);
            int rc = m ? post(m) : EVICORN_ENOMEM;
            pthread_mutex_lock(&w->mu);
            if (rc < 0) {
                w->receiving = false;
                w->body_done = true;
                w->body_error = rc;
            }
            continue;
        }
        pthread_cond_wait(&w->cv, &w->mu);
    }
    gone = w->gone;
    pthread_mutex_unlock(&w->mu);
    Py_END_ALLOW_THREADS if (result < 0)
    {
        if (error == EVICORN_EMSGSIZE)
            PyErr_SetString(PyExc_OSError, "the request body exceeds --limit-body");
        else
            PyErr_SetString(PyExc_OSError, gone ? "the client disconnected"
                                                : "the request body could not be read");
    }
    return result;
}

/* The buffered bytes: a pointer and length, without consuming them. */
static void input_peek(InputObject *self, const char **p, size_t *n)
{
    struct wreq *w = self->w;
    if (w->has_prefetched) {
        *p = w->prefetched.ptr + w->prefetched_off;
        *n = w->prefetched.len - w->prefetched_off;
        return;
    }
    pthread_mutex_lock(&w->mu);
    *p = w->head->data + w->head_off;
    *n = w->head->len - w->head_off;
    pthread_mutex_unlock(&w->mu);
}

static void input_consume(InputObject *self, size_t n)
{
    struct wreq *w = self->w;
    if (w->has_prefetched) {
        w->prefetched_off += n;
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->head_off += n;
    if (w->head_off == w->head->len) {
        struct chunk *c = w->head;
        w->head = c->next;
        if (!w->head)
            w->tail = NULL;
        w->head_off = 0;
        free(c);
    }
    pthread_mutex_unlock(&w->mu);
}

static Py_ssize_t size_arg(PyObject *const *args, Py_ssize_t nargs, const char *name)
{
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument", name);
        return -2;
    }
    if (nargs == 0 || args[0] == Py_None)
        return -1;
    Py_ssize_t n = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        return -2;
    return n < 0 ? -1 : n;
}

/* Reads up to limit bytes (-1: all), stopping after a newline when line. */
static PyObject *input_read_some(InputObject *self, Py_ssize_t limit, bool line)
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, 0);
    Py_ssize_t have = 0;
    while (out && (limit < 0 || have < limit)) {
        int r = input_wait(self);
        if (r < 0) {
            Py_CLEAR(out);
            break;
        }
        if (r == 0)
            break;
        const char *p;
        size_t n;
        input_peek(self, &p, &n);
        if (limit >= 0 && n > (size_t)(limit - have))
            n = (size_t)(limit - have);
        bool eol = false;
        if (line) {
            const char *nl = memchr(p, '\n', n);
            if (nl) {
                n = (size_t)(nl - p) + 1;
                eol = true;
            }
        }
        if (_PyBytes_Resize(&out, have + (Py_ssize_t)n) < 0)
            break;
        memcpy(PyBytes_AS_STRING(out) + have, p, n);
        have += (Py_ssize_t)n;
        input_consume(self, n);
        if (eol)
            break;
    }
    return out;
}

static PyObject *Input_read(InputObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t n = size_arg(args, nargs, "read");
    return n == -2 ? NULL : input_read_some(self, n, false);
}

static PyObject *Input_readline(InputObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t n = size_arg(args, nargs, "readline");
    return n == -2 ? NULL : input_read_some(self, n, true);
}

static PyObject *Input_readlines(InputObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t hint = size_arg(args, nargs, "readlines");
    if (hint == -2)
        return NULL;
    PyObject *lines = PyList_New(0);
    Py_ssize_t total = 0;
    while (lines) {
        PyObject *l = input_read_some(self, -1, true);
        if (!l) {
            Py_CLEAR(lines);
            break;
        }
        if (PyBytes_GET_SIZE(l) == 0) {
            Py_DECREF(l);
            break;
        }
        total += PyBytes_GET_SIZE(l);
        int rc = PyList_Append(lines, l);
        Py_DECREF(l);
        if (rc < 0)
            Py_CLEAR(lines);
        else if (hint > 0 && total >= hint)
            break;
    }
    return lines;
}

static PyObject *Input_next(InputObject *self)
{
    PyObject *l = input_read_some(self, -1, true);
    if (l && PyBytes_GET_SIZE(l) == 0) {
        Py_DECREF(l);
        return NULL; /* StopIteration */
    }
    return l;
}

static void Input_dealloc(InputObject *self)
{
    PyObject_Free(self);
}

static PyMethodDef Input_methods[] = {
    {"read", (PyCFunction)(void (*)(void))Input_read, METH_FASTCALL, "read(size=-1) -> bytes"},
    {"readline", (PyCFunction)(void (*)(void))Input_readline, METH_FASTCALL,
     "readline(size=-1) -> bytes"},
    {"readlines", (PyCFunction)(void (*)(void))Input_readlines, METH_FASTCALL,
     "readlines(hint=-1) -> list of bytes"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject InputType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_evicorn.WSGIInput",
    .tp_basicsize = sizeof(InputObject),
    .tp_dealloc = (destructor)Input_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Input_next,
    .tp_methods = Input_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.input: the request body, streamed from the connection.",
};

/* ---- wsgi.errors ---- */

typedef struct {
    PyObject_HEAD
} ErrorsObject;

static PyObject *Errors_write(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s)
        return NULL;
    /* One log line per line written; a bare newline is nothing to say. */
    Py_ssize_t len = n;
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    if (len > 0)
        asgi_log(LOG_ERROR, "%.*s", (int)len, s);
    return PyLong_FromSsize_t(n);
}

static PyObject *Errors_writelines(PyObject *self, PyObject *seq)
{
    PyObject *it = PyObject_GetIter(seq), *item;
    if (!it)
        return NULL;
    while ((item = PyIter_Next(it))) {
        PyObject *r = Errors_write(self, item);
        Py_DECREF(item);
        if (!r) {
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Errors_flush(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_RETURN_NONE;
}

static PyMethodDef Errors_methods[] = {
    {"write", Errors_write, METH_O, "write(str): to the server's log, at error level."},
    {"writelines", Errors_writelines, METH_O, "writelines(lines)"},
    {"flush", Errors_flush, METH_NOARGS, "flush()"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ErrorsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_evicorn.WSGIErrors",
    .tp_basicsize = sizeof(ErrorsObject),
    .tp_methods = Errors_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "wsgi.errors: lines written go to the server's log.",
};

/* ---- start_response, write() and the response ---- */

typedef struct {
    PyObject_HEAD struct wreq *w; /* NULL once the request is over */
    bool called;                  /* start_response was called */
    bool sent;                    /* the status and headers have been posted */
    int status;
    size_t nheaders, header_bytes;
    char *headers;    /* nheaders (name_len, value_len) pairs, then the bytes */
    long long length; /* the app's Content-Length, or -1 */
    long long body_sent;
} StartObject;

static void Start_dealloc(StartObject *self)
{
    free(self->headers);
    PyObject_Free(self);
}

/* status: "200 OK" (PEP 3333: a native string, three digits, a space). */
static int parse_status(PyObject *status)
{
    Py_ssize_t n;
    const char *s = PyUnicode_Check(status) ? PyUnicode_AsUTF8AndSize(status, &n) : NULL;
    if (!s) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "start_response: status must be a str");
        return -1;
    }
    if (n < 3 || s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
        (n > 3 && s[3] != ' ')) {
        PyErr_Format(PyExc_ValueError, "start_response: invalid status %R", status);
        return -1;
    }
    int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (code < 200) {
        PyErr_Format(PyExc_ValueError, "start_response: status %d is not a final response", code);
        return -1;
    }
    return code;
}

/* headers: a list of (name, value) str pairs, Latin-1, no line breaks. */
static int parse_headers(StartObject *self, PyObject *headers)
{
    if (!PyList_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "start_response: headers must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(headers);
    size_t bytes = 0;
    long long length = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(headers, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(t, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(t, 1))) {
            PyErr_SetString(PyExc_TypeError,
                            "start_response: each header must be a (str, str) tuple");
            return -1;
        }
        PyObject *name = PyTuple_GET_ITEM(t, 0), *value = PyTuple_GET_ITEM(t, 1);
        if (PyUnicode_KIND(name) != PyUnicode_1BYTE_KIND ||
            PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
            PyErr_Format(PyExc_ValueError, "start_response: header %R is not Latin-1", name);
            return -1;
        }
        const unsigned char *np = PyUnicode_1BYTE_DATA(name), *vp = PyUnicode_1BYTE_DATA(value);
        Py_ssize_t nl = PyUnicode_GET_LENGTH(name), vl = PyUnicode_GET_LENGTH(value);
        if (!bridge_header_name_valid(np, (size_t)nl) ||
            !bridge_header_value_valid(vp, (size_t)vl)) {
            PyErr_Format(PyExc_ValueError, "start_response: invalid header %R: %R", name, value);
            return -1;
        }
        if (nl == 14 && strncasecmp((const char *)np, "content-length", 14) == 0) {
            long long v = bridge_parse_length(vp, (size_t)vl);
            if (v < 0) {
                PyErr_Format(PyExc_ValueError, "start_response: invalid Content-Length %R", value);
                return -1;
            }
            length = v;
        }
        bytes += (size_t)nl + (size_t)vl;
    }
    char *buf = malloc((size_t)n * 2 * sizeof(size_t) + bytes + 1);
    if (!buf) {
        PyErr_NoMemory();
        return -1;
    }
    size_t *lens = (size_t *)buf;
    char *dst = buf + (size_t)n * 2 * sizeof(size_t);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(headers, i);
        PyObject *name = PyTuple_GET_ITEM(t, 0), *value = PyTuple_GET_ITEM(t, 1);
        size_t nl = (size_t)PyUnicode_GET_LENGTH(name), vl = (size_t)PyUnicode_GET_LENGTH(value);
        lens[2 * i] = nl;
        lens[2 * i + 1] = vl;
        memcpy(dst, PyUnicode_1BYTE_DATA(name), nl);
        dst += nl;
        memcpy(dst, PyUnicode_1BYTE_DATA(value), vl);
        dst += vl;
    }
    free(self->headers);
    self->headers = buf;
    self->nheaders = (size_t)n;
    self->header_bytes = bytes;
    self->length = length;
    return 0;
}

/* A W_SEND with the status and headers when not sent yet, and len body
 * bytes (cut to the app's Content-Length, as gunicorn does). */
static struct wmsg *build_send(StartObject *self, const char *body, size_t len, bool more)
{
    if (self->length >= 0 && (long long)len > self->length - self->body_sent)
        len = (size_t)(self->length - self->body_sent);
    bool with_start = !self->sent;
    size_t hn = with_start ? self->nheaders : 0, hb = with_start ? self->header_bytes : 0;
    struct wmsg *m = wmsg_new(self->w, W_SEND, hn * sizeof(evicorn_header) + hb + len);
    if (!m)
        return NULL;
    evicorn_header *h = (evicorn_header *)m->blob;
    char *p = m->blob + hn * sizeof(evicorn_header);
    if (with_start) {
        const size_t *lens = (const size_t *)self->headers;
        memcpy(p, self->headers + hn * 2 * sizeof(size_t), hb);
        for (size_t i = 0; i < hn; i++) {
            h[i] = (evicorn_header){p, lens[2 * i], p + lens[2 * i], lens[2 * i + 1]};
            p += lens[2 * i] + lens[2 * i + 1];
        }
        m->status = self->status;
        m->headers = h;
        m->nheaders = hn;
        /* The whole body in this message and no length given: say it. */
        m->length = self->length >= 0 ? self->length : more ? -1 : (int64_t)len;
        self->sent = true;
    }
    if (len)
        memcpy(p, body, len);
    m->body = p;
    m->len = len;
    m->more = more;
    self->body_sent += (long long)len;
    return m;
}

/* Posts body bytes, first waiting (GIL released) while the output is full.
 * -1 with OSError set when the client has gone. */
static int send_body(StartObject *self, const char *body, size_t len, bool more, bool finish)
{
    struct wreq *w = self->w;
    bool gone;
    Py_BEGIN_ALLOW_THREADS pthread_mutex_lock(&w->mu);
    while (!w->gone && (w->paused || w->pending > WSGI_SEND_HIGH - WSGI_SEND_LOW))
        pthread_cond_wait(&w->cv, &w->mu);
    gone = w->gone;
    if (!gone)
        w->pending += (long)len;
    pthread_mutex_unlock(&w->mu);
    Py_END_ALLOW_THREADS if (gone && !finish)
    {
        PyErr_SetString(PyExc_OSError, "the client disconnected");
        return -1;
    }
    struct wmsg *m = build_send(self, body, len, more);
    if (!m) {
        PyErr_NoMemory();
        return -1;
    }
    m->finish = finish;
    return post(m) < 0 ? -1 : 0;
}

static PyObject *Start_write(StartObject *self, PyObject *data)
{
    if (!self->w) {
        PyErr_SetString(PyExc_ValueError, "write() after the request ended");
        return NULL;
    }
    if (!self->called) {
        PyErr_SetString(PyExc_AssertionError, "write() before start_response()");
        return NULL;
    }
    Py_buffer view;
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "write() takes bytes");
        return NULL;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = (view.len > 0 || !self->sent)
                 ? send_body(self, view.buf, (size_t)view.len, true, false)
                 : 0;
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Start_call(StartObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"status", "headers", "exc_info", NULL};
    PyObject *status, *headers, *exc_info = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:start_response", kwlist, &status, &headers,
                                     &exc_info))
        return NULL;
    if (!self->w) {
        PyErr_SetString(PyExc_ValueError, "start_response() after the request ended");
        return NULL;
    }
    if (exc_info != Py_None) {
        /* PEP 3333: too late to change the response: re-raise. */
        if (self->sent) {
            if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
                PyErr_SetString(PyExc_TypeError, "exc_info must be a 3-tuple");
                return NULL;
            }
            PyObject *exc = PyTuple_GET_ITEM(exc_info, 1);
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            return NULL;
        }
    } else if (self->called) {
        PyErr_SetString(PyExc_AssertionError, "start_response() called twice without exc_info");
        return NULL;
    }
    int code = parse_status(status);
    if (code < 0 || parse_headers(self, headers) < 0)
        return NULL;
    self->status = code;
    self->called = true;
    return PyObject_GetAttrString((PyObject *)self, "write");
}

static PyMethodDef Start_methods[] = {
    {"write", (PyCFunction)Start_write, METH_O, "write(bytes): the legacy write callable."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StartType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_evicorn.StartResponse",
    .tp_basicsize = sizeof(StartObject),
    .tp_dealloc = (destructor)Start_dealloc,
    .tp_call = (ternaryfunc)Start_call,
    .tp_methods = Start_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "start_response(status, headers, exc_info=None) -> write",
};

/* ---- the environ ---- */

static PyObject *latin1(evicorn_str s)
{
    return PyUnicode_DecodeLatin1(s.ptr, (Py_ssize_t)s.len, NULL);
}

static int set_new(PyObject *d, PyObject *k, PyObject *v)
{
    if (!v)
        return -1;
    int rc = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return rc;
}

/* HTTP_<NAME> for a header; CONTENT_TYPE and CONTENT_LENGTH without the
 * prefix. Names with '_' are dropped (as gunicorn and nginx do): they
 * would read the same as the '-' spelling a proxy may have vouched for. */
static int add_header(PyObject *env, const evicorn_header *h)
{
    char key[256];
    if (h->name_len > sizeof key - 6 || memchr(h->name, '_', h->name_len))
        return 0;
    PyObject *k;
    if (h->name_len == 12 && memcmp(h->name, "content-type", 12) == 0) {
        k = k_content_type;
        Py_INCREF(k);
    } else if (h->name_len == 14 && memcmp(h->name, "content-length", 14) == 0) {
        k = k_content_length;
        Py_INCREF(k);
    } else {
        memcpy(key, "HTTP_", 5);
        for (size_t i = 0; i < h->name_len; i++) {
            char c = h->name[i];
            key[5 + i] = c == '-' ? '_' : (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
        k = PyUnicode_DecodeLatin1(key, (Py_ssize_t)h->name_len + 5, NULL);
        if (!k)
            return -1;
    }
    PyObject *v = PyUnicode_DecodeLatin1(h->value, (Py_ssize_t)h->value_len, NULL);
    PyObject *old = v ? PyDict_GetItemWithError(env, k) : NULL;
    if (old) { /* a repeated header: joined with "," (RFC 9110 5.3) */
        PyObject *joined = PyUnicode_FromFormat("%U,%U", old, v);
        Py_SETREF(v, joined);
    }
    int rc = v ? PyDict_SetItem(env, k, v) : -1;
    Py_DECREF(k);
    Py_XDECREF(v);
    return rc;
}

static PyObject *build_environ(evicorn_request *req, PyObject *input)
{
    PyObject *env = PyDict_Copy(g_environ_base);
    if (!env)
        return NULL;
    evicorn_str method = asgi_api->method(req), path = asgi_api->path(req),
                root = asgi_api->root_path(req), scheme = asgi_api->scheme(req);
    /* PATH_INFO is below SCRIPT_NAME (root_path), as uvicorn builds it. */
    if (root.len && path.len >= root.len && memcmp(path.ptr, root.ptr, root.len) == 0) {
        path.ptr += root.len;
        path.len -= root.len;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", asgi_api->server_port(req));
    char rport[16];
    snprintf(rport, sizeof rport, "%d", asgi_api->client_port(req));
    evicorn_str v = asgi_api->http_version(req);
    PyObject *proto = v.len == 3 && v.ptr[2] == '0' ? k_http10 : k_http11;
    Py_INCREF(proto);
    PyObject *url_scheme = scheme.len == 5 ? k_https : k_http;
    Py_INCREF(url_scheme);
    Py_INCREF(input);
    if (set_new(env, k_method, latin1(method)) < 0 ||
        set_new(env, k_script_name, latin1(root)) < 0 ||
        set_new(env, k_path_info, latin1(path)) < 0 ||
        set_new(env, k_query, latin1(asgi_api->query_string(req))) < 0 ||
        set_new(env, k_protocol, proto) < 0 ||
        set_new(env, k_server_name, latin1(asgi_api->server_host(req))) < 0 ||
        set_new(env, k_server_port, PyUnicode_FromString(port)) < 0 ||
        set_new(env, k_remote_addr, latin1(asgi_api->client_host(req))) < 0 ||
        set_new(env, k_remote_port, PyUnicode_FromString(rport)) < 0 ||
        set_new(env, k_url_scheme, url_scheme) < 0 || set_new(env, k_input, input) < 0) {
        Py_DECREF(env);
        return NULL;
    }
    size_t n = asgi_api->header_count(req);
    for (size_t i = 0; i < n; i++) {
        evicorn_header h;
        if (asgi_api->header_at(req, i, &h) == 0 && add_header(env, &h) < 0) {
            Py_DECREF(env);
            return NULL;
        }
    }
    return env;
}

/* ---- running the app (a pool thread) ---- */

static bool body_over_limit(struct wreq *w)
{
    pthread_mutex_lock(&w->mu);
    bool over = w->body_error == EVICORN_EMSGSIZE;
    pthread_mutex_unlock(&w->mu);
    return over;
}

/* Calls result.close() if it has one (PEP 3333: always, even after an
 * error); an exception from it is logged. */
static void close_result(PyObject *result)
{
    PyObject *saved = take_exception();
    PyObject *close = PyObject_GetAttr(result, k_close);
    if (close) {
        PyObject *r = PyObject_CallNoArgs(close);
        if (!r)
            log_exception("Exception in the WSGI response's close()");
        Py_XDECREF(r);
        Py_DECREF(close);
    } else {
        PyErr_Clear();
    }
    restore_exception(saved);
}

/* The app's response: each body string as the iterable yields it. Returns
 * 0 when the response is complete (and the request released), -1 with an
 * exception set. */
static int respond(StartObject *start, PyObject *result)
{
    /* A list or tuple: the last item is known, so it completes the
     * response in the same message (one message for the usual app). */
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(result);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(result, i);
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError, "the WSGI app yielded %.100s, not bytes",
                             Py_TYPE(item)->tp_name);
                return -1;
            }
            if (!start->called) {
                PyErr_SetString(PyExc_AssertionError, "the WSGI app did not call start_response");
                return -1;
            }
            bool last = i == n - 1;
            Py_INCREF(item);
            int rc = PyBytes_GET_SIZE(item) == 0 && !last
                         ? 0
                         : send_body(start, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item),
                                     !last, last);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
        }
        if (n > 0)
            return 0;
    } else {
        PyObject *it = PyObject_GetIter(result), *item;
        if (!it)
            return -1;
        while ((item = PyIter_Next(it))) {
            int rc = 0;
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError, "the WSGI app yielded %.100s, not bytes",
                             Py_TYPE(item)->tp_name);
                rc = -1;
            } else if (!start->called) {
                PyErr_SetString(PyExc_AssertionError, "the WSGI app did not call start_response");
                rc = -1;
            } else if (PyBytes_GET_SIZE(item) > 0) {
                /* Headers go with the first non-empty string (PEP 3333). */
                rc = send_body(start, PyBytes_AS_STRING(item), (size_t)PyBytes_GET_SIZE(item), true,
                               false);
            }
            Py_DECREF(item);
            if (rc < 0) {
                Py_DECREF(it);
                return -1;
            }
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return -1;
    }
    if (!start->called) {
        PyErr_SetString(PyExc_AssertionError, "the WSGI app did not call start_response");
        return -1;
    }
    return send_body(start, NULL, 0, false, true);
}

static void work(void *ud)
{
    struct wreq *w = ud;
    if (gil_take() < 0) {
        struct wmsg *m = wmsg_new(w, W_FINISH, 0);
        if (m) {
            m->fail = true;
            post(m);
        }
        return;
    }
    InputObject *input = PyObject_New(InputObject, &InputType);
    StartObject *start = input ? PyObject_New(StartObject, &StartType) : NULL;
    PyObject *env = NULL, *result = NULL;
    bool done = false;
    if (start) {
        input->w = w;
        start->w = w;
        start->called = start->sent = false;
        start->headers = NULL;
        start->nheaders = start->header_bytes = 0;
        start->length = -1;
        start->body_sent = 0;
        env = build_environ(w->req, (PyObject *)input);
    }
    if (env)
        result = PyObject_CallFunctionObjArgs(g_app, env, (PyObject *)start, NULL);
    if (result) {
        done = respond(start, result) == 0;
        close_result(result);
    }
    if (!done) {
        /* The client left, or its body was over --limit-body (the host has
         * answered 413): the app's OSError says so, it is not a bug. */
        bool input_failed = PyErr_ExceptionMatches(PyExc_OSError) &&
                            (asgi_api->disconnected(w->req) || body_over_limit(w));
        if (input_failed)
            PyErr_Clear();
        else
            log_exception("Exception in WSGI application");
        /* Before anything was sent: a 500. After: the response is cut,
         * so the client sees it end early (the host closes). */
        struct wmsg *m = wmsg_new(w, W_FINISH, 0);
        if (m) {
            m->fail = start && !start->sent && !input_failed;
            post(m);
        }
    }
    /* The objects may outlive the request (an app keeping the environ). */
    if (input)
        input->w = NULL;
    if (start)
        start->w = NULL;
    Py_XDECREF(result);
    Py_XDECREF(env);
    Py_XDECREF(start);
    Py_XDECREF(input);
    gil_drop();
}

static void work_done(evicorn_request *req, void *ud, int status)
{
    (void)req;
    (void)status; /* the final message answers for the request */
    wreq_unref(ud);
}

static void start_work(struct wreq *w)
{
    int rc = asgi_api->offload(w->req, work, work_done, w);
    if (rc < 0) {
        asgi_log(LOG_ERROR, "cannot hand the request to the thread pool (error %d)", rc);
        wreq_unref(w); /* the done continuation's */
        finish(w, true);
    }
}

static void on_prefetched(evicorn_request *req, void *ud, const char *data, size_t len, int more,
                          int status)
{
    (void)data;
    (void)len;
    (void)more;
    struct wreq *w = ud;
    if (status != 0) {
        /* Over --limit-body (the host answered 413) or the client left:
         * the app never runs. */
        wreq_unref(w); /* the done continuation's: no work */
        finish(w, false);
        return;
    }
    w->prefetched = asgi_api->body(req);
    w->has_prefetched = true;
    start_work(w);
}

void wsgi_handle(evicorn_request *req)
{
    struct wreq *w = calloc(1, sizeof *w);
    if (!w || pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    w->req = req;
    atomic_init(&w->refs, 2); /* the final message's and the offload's done */
    if (asgi_api->hold(req) < 0) {
        wreq_unref(w);
        wreq_unref(w);
        asgi_api->respond(req, 503, plain_500, 1, "Service Unavailable", 19);
        return;
    }
    asgi_api->on_disconnect(req, on_gone, w);
    evicorn_str v;
    int chunked = asgi_api->header(req, "transfer-encoding", &v) == 0;
    long long length = bridge_content_length(req);
    int expect = asgi_api->header(req, "expect", &v) == 0;
    if (!chunked && length <= 0) {
        /* No body: reads see its end at once. */
        w->has_prefetched = true;
    } else if (!chunked && length <= WSGI_PREFETCH_MAX && !expect &&
               asgi_api->read_body(req, on_prefetched, w) == 0) {
        return;
    }
    start_work(w);
}

/* ---- configure_wsgi(app, file_wrapper, format_exception) ---- */

static int intern_keys(void)
{
    struct {
        PyObject **slot;
        const char *s;
    } t[] = {
        {&k_method, "REQUEST_METHOD"},
        {&k_script_name, "SCRIPT_NAME"},
        {&k_path_info, "PATH_INFO"},
        {&k_query, "QUERY_STRING"},
        {&k_protocol, "SERVER_PROTOCOL"},
        {&k_server_name, "SERVER_NAME"},
        {&k_server_port, "SERVER_PORT"},
        {&k_remote_addr, "REMOTE_ADDR"},
        {&k_remote_port, "REMOTE_PORT"},
        {&k_content_type, "CONTENT_TYPE"},
        {&k_content_length, "CONTENT_LENGTH"},
        {&k_url_scheme, "wsgi.url_scheme"},
        {&k_input, "wsgi.input"},
        {&k_http11, "HTTP/1.1"},
        {&k_http10, "HTTP/1.0"},
        {&k_http, "http"},
        {&k_https, "https"},
        {&k_empty, ""},
        {&k_close, "close"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!(*t[i].slot = PyUnicode_InternFromString(t[i].s)))
            return -1;
    return 0;
}

PyObject *wsgi_configure(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *app, *file_wrapper, *format_exception;
    if (!PyArg_ParseTuple(args, "OOO:configure_wsgi", &app, &file_wrapper, &format_exception))
        return NULL;
    if (PyType_Ready(&InputType) < 0 || PyType_Ready(&ErrorsType) < 0 ||
        PyType_Ready(&StartType) < 0 || intern_keys() < 0)
        return NULL;
    PyObject *errors = (PyObject *)PyObject_New(ErrorsObject, &ErrorsType);
    const char *workers = asgi_api->config("workers");
    PyObject *base =
        errors
            ? Py_BuildValue("{s:(ii),s:N,s:O,s:O,s:O,s:O,s:O,s:O}", "wsgi.version", 1, 0,
                            "wsgi.errors", errors, "wsgi.multithread", Py_True, "wsgi.multiprocess",
                            workers && strcmp(workers, "1") != 0 ? Py_True : Py_False,
                            "wsgi.run_once", Py_False, "wsgi.input_terminated", Py_True,
                            "wsgi.file_wrapper", file_wrapper, "SERVER_SOFTWARE", k_empty)
            : NULL;
    if (!base)
        return NULL;
    PyObject *software = PyUnicode_FromString("evicorn");
    if (!software || PyDict_SetItemString(base, "SERVER_SOFTWARE", software) < 0) {
        Py_XDECREF(software);
        Py_DECREF(base);
        return NULL;
    }
    Py_DECREF(software);
    Py_INCREF(app);
    Py_INCREF(format_exception);
    Py_XSETREF(g_app, app);
    Py_XSETREF(g_format_exception, format_exception);
    Py_XSETREF(g_environ_base, base);
    g_interp = PyThreadState_GetInterpreter(PyThreadState_Get());
    wsgi_mode = 1;
    Py_RETURN_NONE;
}
