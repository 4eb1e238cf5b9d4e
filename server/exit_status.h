/* exit_status: every status an evicorn process exits with, in one place.
 * The master reads its workers' statuses; operators and tests read the
 * server's. */
#ifndef EVICORN_EXIT_STATUS_H
#define EVICORN_EXIT_STATUS_H

enum exit_status {
    EXIT_OK = 0,
    /* The server could not start or run (bind failed, out of memory, the
     * ASGI app failed to import), or a second SIGINT cut it short. */
    EXIT_ERROR = 1,
    /* A bad flag or value on the command line. */
    EXIT_USAGE = 2,
    /* A worker could not start and must not be restarted (an app whose
     * lifespan startup failed): the master stops and exits with it. */
    EXIT_WORKER_STARTUP_FAILED = 3,
    /* A worker could not import the APP: the master stops and exits with
     * EXIT_ERROR, as uvicorn does for an app it cannot load. */
    EXIT_APP_LOAD_FAILED = 4,
    /* A worker its watchdog ended: plugin code held the event loop past
     * --timeout-worker. */
    EXIT_LOOP_BLOCKED = 90,
    /* A worker its watchdog ended: a plugin's loading or startup outlived
     * --timeout-startup (the file is quarantined). */
    EXIT_STARTUP_HUNG = 91,
    /* A child that could not exec its program (the shell's convention). */
    EXIT_EXEC_FAILED = 127,
};

#endif
