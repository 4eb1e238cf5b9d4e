/* embedding: what a process that runs evicorn inside itself provides.
 *
 * The Python module (python/evicorn/_core.c) runs the server inside the
 * interpreter the user invoked, so an APP is served with that
 * interpreter's sys.path and packages. It hands evicorn_run this: the ASGI
 * bridge, linked into the module (a plugin, loaded through its entry point
 * rather than from a file), and what the interpreter must do around each
 * fork of a worker. The C binary embeds nothing; given an APP it hands the
 * process to a Python interpreter that runs the module (app_launch.h). */
#ifndef EVICORN_EMBEDDING_H
#define EVICORN_EMBEDDING_H

#include <stdbool.h>
#include <stddef.h>

#include "../abi/evicorn/abi.h"

struct log_sink;

struct evicorn_embedding {
    /* The ASGI bridge's plugin entry, loaded when an APP is given. */
    evicorn_plugin_entry_fn bridge_entry;
    /* After the bridge was refused: whether the APP could not be imported
     * (the server exits 1, as uvicorn does) rather than failed its
     * lifespan startup (3). */
    int (*app_load_failed)(void);
    /* Called by the master around fork(2): the interpreter's locks must
     * be in a known state in the child (PyOS_BeforeFork and friends). */
    void (*before_fork)(void);
    void (*after_fork_parent)(void);
    void (*after_fork_child)(void);
    /* Sets an environment variable where the interpreter sees it
     * (os.environ), unless it is set (--env-file); 0 or -1. */
    int (*set_env)(void *ud, const char *name, const char *value);
    /* Removes a variable from where the interpreter sees it (os.environ
     * is a copy made at its start), after the server removed it from the
     * process environment (socket activation's LISTEN_*). */
    void (*unset_env)(const char *name);
    /* Python's logging, set up as uvicorn does before the workers start:
     * log_config (a file, or NULL for uvicorn's default), log_level (a
     * name, or NULL when not given), whether the access log is on, colours
     * (-1 when not given). -1 with one line in err. */
    int (*configure_logging)(const char *log_config, const char *log_level, bool access_log,
                             int use_colors, char *err, size_t errlen);
    /* Where the server's lines go with --log-config (log_sink.h). */
    const struct log_sink *log_sink;
};

/* The whole server: parses argv, opens the listeners, runs the master and
 * its workers; returns the process exit status. emb is NULL for the C
 * binary. */
int evicorn_run(int argc, char **argv, const struct evicorn_embedding *emb);

#endif
