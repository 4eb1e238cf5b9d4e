/* evicorn._core: the whole server as a CPython extension module, so that
 * it runs inside the interpreter the user invoked and an APP is served with
 * that interpreter's sys.path and packages.
 *
 * run(argv) is the C binary's main, with two things the binary does not
 * have (embedding.h): the ASGI bridge, linked in here and loaded through
 * its entry point, and the interpreter's bookkeeping around each fork of a
 * worker. The master releases the GIL for as long as it runs: Python runs
 * only in the workers, on the bridge's own thread. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "embedding.h"
#include "log_sink.h"

/* The GIL state of the master's thread while it forks a worker. */
static PyGILState_STATE fork_gil;

/* The interpreter's locks must be in a known state in the child: taken
 * around fork(2), as os.fork() does. */
static void before_fork(void)
{
    fork_gil = PyGILState_Ensure();
    PyOS_BeforeFork();
}

static void after_fork_parent(void)
{
    PyOS_AfterFork_Parent();
    PyGILState_Release(fork_gil);
}

/* The worker's loop thread gives the GIL up at once; the bridge takes it
 * to start the app, then leaves Python to its own thread. */
static void after_fork_child(void)
{
    PyOS_AfterFork_Child();
    PyGILState_Release(fork_gil);
}

/* --env-file inside Python: through os.environ, which the app reads (it
 * sets the process environment too). */
static int set_env(void *ud, const char *name, const char *value)
{
    (void)ud;
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = -1;
    PyObject *os = PyImport_ImportModule("os");
    PyObject *env_map = os ? PyObject_GetAttrString(os, "environ") : NULL;
    PyObject *k = PyUnicode_DecodeFSDefault(name), *v = PyUnicode_DecodeFSDefault(value);
    if (env_map && k && v) {
        int has = PySequence_Contains(env_map, k);
        rc = has == 0 ? PyObject_SetItem(env_map, k, v) : has < 0 ? -1 : 0;
    }
    if (rc < 0)
        PyErr_Clear();
    Py_XDECREF(k);
    Py_XDECREF(v);
    Py_XDECREF(env_map);
    Py_XDECREF(os);
    PyGILState_Release(g);
    return rc;
}

/* os.environ is the interpreter's copy of the environment: a variable
 * the server removed from the process stays there unless removed too. */
static void unset_env(const char *name)
{
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *os = PyImport_ImportModule("os");
    PyObject *env_map = os ? PyObject_GetAttrString(os, "environ") : NULL;
    PyObject *r = env_map ? PyObject_CallMethod(env_map, "pop", "sO", name, Py_None) : NULL;
    if (!r)
        PyErr_Clear();
    Py_XDECREF(r);
    Py_XDECREF(env_map);
    Py_XDECREF(os);
    PyGILState_Release(g);
}

/* ---- logging (evicorn/logging.py) ---- */

static PyObject *logging_mod; /* evicorn.logging, once configured */

/* The message of the exception being raised, on one line, into err. */
static void error_line(const char *what, char *err, size_t errlen)
{
    bridge_python_error(what, err, errlen);
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

static int configure_logging(const char *log_config, const char *log_level, bool access_log,
                             int use_colors, char *err, size_t errlen)
{
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = -1;
    PyObject *mod = PyImport_ImportModule("evicorn.logging");
    PyObject *res = NULL;
    if (mod)
        res = PyObject_CallMethod(mod, "configure", "zzOO", log_config, log_level,
                                  access_log ? Py_True : Py_False,
                                  use_colors < 0 ? Py_None
                                  : use_colors   ? Py_True
                                                 : Py_False);
    if (res) {
        rc = 0;
        Py_XSETREF(logging_mod, mod);
        mod = NULL;
    } else if (log_config) {
        char what[512];
        snprintf(what, sizeof what, "--log-config %s", log_config);
        error_line(what, err, errlen);
    } else {
        error_line("cannot set up Python's logging", err, errlen);
    }
    Py_XDECREF(res);
    Py_XDECREF(mod);
    PyGILState_Release(g);
    return rc;
}

/* The sink's thread, around each batch (log_sink.h). */
static _Thread_local PyGILState_STATE sink_gil;

static void sink_acquire(void)
{
    sink_gil = PyGILState_Ensure();
}

static void sink_release(void)
{
    PyGILState_Release(sink_gil);
}

static bool sink_held(void)
{
    return Py_IsInitialized() && PyGILState_Check();
}

static void sink_without(void (*fn)(void *arg), void *arg)
{
    Py_BEGIN_ALLOW_THREADS fn(arg);
    Py_END_ALLOW_THREADS
}

/* A record Python's logging refused is not lost: it goes to stderr. */
static void sink_failed(const char *line)
{
    PyErr_Clear();
    fprintf(stderr, "%s\n", line);
}

static void sink_message(int level, const char *text)
{
    PyObject *r = logging_mod ? PyObject_CallMethod(logging_mod, "emit", "is", level, text) : NULL;
    if (!r)
        sink_failed(text);
    Py_XDECREF(r);
}

static void sink_access(const char *client, const char *method, const char *target,
                        const char *http_version, int status)
{
    PyObject *r = logging_mod ? PyObject_CallMethod(logging_mod, "emit_access", "ssssi", client,
                                                    method, target, http_version, status)
                              : NULL;
    if (!r) {
        char line[1200];
        snprintf(line, sizeof line, "%s - \"%s %s HTTP/%s\" %d", client, method, target,
                 http_version, status);
        sink_failed(line);
    }
    Py_XDECREF(r);
}

static const struct log_sink python_logging = {
    .acquire = sink_acquire,
    .release = sink_release,
    .held = sink_held,
    .without = sink_without,
    .message = sink_message,
    .access = sink_access,
};

static const struct evicorn_embedding embedding = {
    .bridge_entry = asgi_bridge_entry,
    .app_load_failed = asgi_app_load_failed,
    .before_fork = before_fork,
    .after_fork_parent = after_fork_parent,
    .after_fork_child = after_fork_child,
    .set_env = set_env,
    .unset_env = unset_env,
    .configure_logging = configure_logging,
    .log_sink = &python_logging,
};

static void free_argv(char **argv, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        free(argv[i]);
    free(argv);
}

PyDoc_STRVAR(run_doc, "run(argv) -> int\n\n"
                      "Runs evicorn with the command line argv (argv[0] is the program name)\n"
                      "until it stops; returns the exit status.");

static PyObject *run(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *seq = PySequence_Fast(arg, "argv must be a sequence of str");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    char **argv = calloc((size_t)n + 1, sizeof *argv);
    if (!argv) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *bytes = PyUnicode_Check(item) ? PyUnicode_EncodeFSDefault(item) : NULL;
        if (!bytes) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "argv must be a sequence of str");
            free_argv(argv, i);
            Py_DECREF(seq);
            return NULL;
        }
        argv[i] = strdup(PyBytes_AS_STRING(bytes));
        Py_DECREF(bytes);
        if (!argv[i]) {
            free_argv(argv, i);
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
    }
    Py_DECREF(seq);
    int status;
    Py_BEGIN_ALLOW_THREADS status = evicorn_run((int)n, argv, &embedding);
    Py_END_ALLOW_THREADS free_argv(argv, n);
    return PyLong_FromLong(status);
}

static PyMethodDef methods[] = {
    {"run", run, METH_O, run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "evicorn._core",
    .m_doc = "evicorn's server, run inside this interpreter.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModule_Create(&module);
}
