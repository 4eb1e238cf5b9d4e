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

static const struct evicorn_embedding embedding = {
    .bridge_entry = asgi_bridge_entry,
    .app_load_failed = asgi_app_load_failed,
    .before_fork = before_fork,
    .after_fork_parent = after_fork_parent,
    .after_fork_child = after_fork_child,
    .set_env = set_env,
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
